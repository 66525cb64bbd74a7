"""``Enhancer``: the object users touch. It owns one backend and the shared pre/post.

>>> from engan.runtime import Enhancer
>>> enh = Enhancer.load("exports/x/model.onnx")        # or a shipped name, or None
>>> out = enh.enhance(photo)                           # numpy HxWx3 uint8 or PIL image
>>> enh.info["backend"], enh.info["reason"]

What ``enhance`` accepts and returns (always the same kind and size as the input):

* numpy ``HxWx3`` RGB, ``HxW`` / ``HxWx1`` grayscale, ``HxWx2`` gray+alpha, ``HxWx4``
  RGBA; dtype ``uint8``, ``uint16`` (processed in float, returned 16-bit) or float in
  [0, 1] (returned as the same float dtype);
* PIL images: ``RGB``; ``L``/``LA`` (the gray channel is replicated to RGB, the
  result's Rec.601 luma comes back as gray); ``RGBA``/``LA``/``PA`` (alpha is carried
  through untouched); ``I;16``/``I;16B``/``I;16L``/``I`` 16-bit grayscale (returned in
  the same mode); ``F`` (float gray in [0, 1]); ``1`` (returned as ``L``); ``P``
  palette images come back as ``RGB`` (``RGBA`` when the palette has transparency),
  ``CMYK``/``YCbCr``/``LAB``/``HSV`` as ``RGB``; ``RGBX``/``RGBa``/``La`` in their own
  mode. The returned image carries the input's ``info`` (ICC profile, EXIF bytes, dpi)
  whenever its mode is unchanged. EXIF orientation is the caller's job (``engan-infer``
  applies it when decoding files).

Thread safety: an Enhancer may be shared by threads. Pre/post-processing runs in
the calling thread; the backend call itself is serialised by a lock (TensorRT
execution contexts are not thread-safe; ONNX Runtime already uses every core per
call, and one call at a time keeps memory within ``max_pixels``). Results are
identical to sequential use.
"""
from __future__ import annotations

import contextlib
import os
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from engan.runtime import prepost
from engan.runtime.backends.base import Backend, BackendOptions, bound_threads
from engan.runtime.kinds import ImageLike, image_hw, prepare
from engan.runtime.resolve import resolve_model_source
from engan.runtime.select import Selection, backend_label, canonical_backend, open_backend
from engan.runtime.shipped import shipped_version


def resolve_model(model: str | os.PathLike | None, backend: str = "auto") -> Path:
    """Map ``model`` (a path, a shipped model name or None) to a file or run folder for ``backend``.

    Raises:
        ModelNotShippedError: ``None`` or a shipped name while no such model ships.
        FileNotFoundError: a path that does not exist (the message says what to pass).
    """
    return resolve_model_source(model, "safetensors" if canonical_backend(backend) == "torch" else "onnx")


def _check_tiling(max_pixels: int | None, tile: int | None, overlap: int) -> None:
    """Refuse tiling settings that cannot work, before any model is loaded."""
    if max_pixels is not None and max_pixels < 0:
        raise ValueError(f"max_pixels must be >= 0 (0 or None: no limit), got {max_pixels}")
    if overlap < 0:
        raise ValueError(f"overlap must be >= 0 pixels, got {overlap}")
    if tile is None:
        return
    if tile <= 0 or tile % prepost.PAD_MULTIPLE:
        raise ValueError(f"tile must be a positive multiple of {prepost.PAD_MULTIPLE}, got {tile}")
    if max_pixels and tile * tile > max_pixels:
        raise ValueError(f"tile {tile}x{tile} exceeds max_pixels={max_pixels}; lower the tile or raise max_pixels")
    if tile - overlap < prepost.PAD_MULTIPLE:
        raise ValueError(f"tile {tile} leaves no room beside a {overlap} px overlap; use a tile of at least {overlap + 16}")


class Enhancer:
    """Low-light enhancement with one backend (ONNX Runtime, TensorRT or PyTorch).

    Build it with :meth:`load`. See the module docstring for accepted image kinds and
    thread safety.

    Args:
        backend: a loaded backend (see :mod:`engan.runtime.backends`).
        max_pixels: the most pixels (N*H*W after padding) one backend call may see;
            larger images are tiled, larger batches split. None/0: no limit.
        tile: force square tiles of this side (a multiple of 16).
        overlap: tile overlap in pixels.
        reason: why this backend was chosen (shown in :attr:`info`); default: the selection's.
        selection: the backend decision (:func:`engan.runtime.select.select_backend`), if any.
        notes: things the user should know about the setup (a lowered thread count, a
            provider fallback); appended to the reason.
        fade: ``(lo, hi)`` mean-luma range over which the enhancement fades out for photos
            that are not dark (:func:`engan.runtime.prepost.fade_bright`; the default range is
            :data:`engan.runtime.prepost.FADE_RANGE`). None (default): the model's output as it is.
    """

    def __init__(
        self,
        backend: Backend,
        max_pixels: int | None = prepost.DEFAULT_MAX_PIXELS,
        tile: int | None = None,
        overlap: int = prepost.DEFAULT_OVERLAP,
        reason: str = "",
        fade: tuple[float, float] | None = None,
        selection: Selection | None = None,
        notes: Sequence[str] = (),
    ) -> None:
        _check_tiling(max_pixels, tile, overlap)
        self.fade = None if fade is None else prepost.check_fade_range(fade)
        self.backend = backend
        self.max_pixels = max_pixels
        self.tile = tile
        self.overlap = overlap
        self.selection = selection
        self.notes = tuple(n for n in notes if n)
        self.reason = "; ".join(p for p in (reason or (selection.reason if selection else ""), *self.notes) if p)
        self._lock = threading.Lock()
        shape_max, shape_min = backend.info.shape_max, backend.info.shape_min
        self._max_batch = int(shape_max[0]) if shape_max else None
        self._max_hw = (int(shape_max[2]), int(shape_max[3])) if shape_max else None
        self._min_hw = (int(shape_min[2]), int(shape_min[3])) if shape_min else None

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(
        cls,
        model: str | os.PathLike | None = None,
        backend: str = "auto",
        device: str = "auto",
        max_pixels: int | None = prepost.DEFAULT_MAX_PIXELS,
        tile: int | None = None,
        threads: int | None = None,
        overlap: int = prepost.DEFAULT_OVERLAP,
        providers: Sequence[str] | None = None,
        precision: str = "fp32",
        cpu_int8: bool = True,
        fade: tuple[float, float] | None = None,
    ) -> "Enhancer":
        """Load a model on the best (or the named) backend.

        Args:
            model: an ``.onnx`` file (ONNX Runtime), an ``.engine``/``.plan`` (TensorRT), a
                ``.safetensors`` generator or run folder (PyTorch), a shipped model name
                (e.g. ``"engan-lite"``), or None for the shipped default.
            backend: ``auto`` (TensorRT > ONNX Runtime CUDA > ONNX Runtime CPU for an
                ``.onnx``), ``ort``, ``trt`` or ``torch``.
            device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
            max_pixels: per-call pixel budget; images above it are tiled (default
                :data:`engan.runtime.prepost.DEFAULT_MAX_PIXELS`, sized for a 4K photo
                within ~2 GB on a CPU with the paper model). None/0: never tile.
            tile: force tiling with square tiles of this side (multiple of 16).
            threads: CPU intra-op threads (default: physical cores); more than the CPUs this
                process may use are lowered to that number, with a RuntimeWarning and a note
                in ``info["reason"]``.
            overlap: tile overlap in pixels.
            providers: explicit ONNX Runtime providers (e.g. with ``TensorrtExecutionProvider``).
            precision: ``fp32``/``fp16`` for the PyTorch backend (fp16 on CUDA only);
                for ONNX/TensorRT the precision is the artefact's (pick ``model.fp16.onnx``).
            cpu_int8: with ``backend="auto"`` on a CPU, run the INT8 copy
                (``<stem>.int8.onnx``, same checkpoint) next to an ``.onnx`` when there is
                one, as the shipped model has; False runs the given file (``engan eval``
                scores models as given).
            fade: ``(lo, hi)``: fade the enhancement out for photos whose mean luma is above
                ``lo`` (none left from ``hi``), so well-exposed photos in a mixed folder are not
                washed out; ``prepost.FADE_RANGE`` is the measured default range. None (default):
                the model's output as it is.

        Raises:
            ModelNotShippedError: no model given and none ships (the message says what to pass).
            FileNotFoundError / ModelLoadError: missing, corrupt or foreign model files (named).
            BackendUnavailable: the backend's library is missing (the message names the pip extra).
        """
        _check_tiling(max_pixels, tile, overlap)
        if fade is not None:
            prepost.check_fade_range(fade)  # before any model is loaded
        threads, threads_note = bound_threads(threads)
        if threads_note:
            warnings.warn(threads_note, RuntimeWarning, stacklevel=2)
        path = resolve_model(model, backend)
        options = BackendOptions.of(device=(device or "auto").strip().lower(), threads=threads, precision=precision,
                                    providers=providers or None)
        be, sel = open_backend(path, backend, options, cpu_int8=cpu_int8)
        notes = (getattr(be, "fallback_note", ""), threads_note)
        return cls(be, max_pixels=max_pixels, tile=tile, overlap=overlap, fade=fade, selection=sel, notes=notes)

    # ------------------------------------------------------------------ info
    @property
    def model_label(self) -> str:
        """The model's name and release, ``<name> <release>`` (the release from a shipped model's card, else the
        training step in the file's metadata, else the name alone)."""
        meta = self.backend.meta
        path = Path(self.backend.info.model_path or ".")
        name = meta.model_name or path.stem
        release = shipped_version(path) or (f"step {meta.extra['step']}" if meta.extra.get("step") else "")
        return f"{name} {release}".strip()

    @property
    def summary(self) -> str:
        """One line: model, precision, backend and device, e.g. ``<name> <release> · INT8 · ONNX Runtime CPU``."""
        bi = self.backend.info
        device = (bi.device or "").upper()
        device = "CUDA" if device == "CUDA:0" else device
        return " · ".join(part for part in (self.model_label, (bi.precision or "").upper(),
                                            f"{backend_label(bi.name)} {device}".strip()) if part)

    @property
    def info(self) -> dict[str, Any]:
        """Backend, device, precision, model name/version, providers, versions, reason, tiling settings.

        ``summary`` is the one-line description; ``reason`` the full one-line reason for the
        backend; ``chosen``, ``passed_over`` and ``notes`` the same in parts.
        """
        bi, meta = self.backend.info, self.backend.meta
        sel = self.selection
        return {
            "backend": bi.name,
            "device": bi.device,
            "precision": bi.precision,
            "model": bi.model_path,
            "model_name": meta.model_name,
            "model_version": meta.version,
            "preset": meta.preset,
            "params": meta.params,
            "providers": list(bi.providers),
            "versions": dict(bi.versions),
            "threads": bi.threads,
            "reason": self.reason,
            "max_pixels": self.max_pixels,
            "tile": self.tile,
            "overlap": self.overlap,
            "fade": list(self.fade) if self.fade else None,
            "pad_multiple": int(meta.pad_multiple or prepost.PAD_MULTIPLE),
            "label": self.model_label,
            "summary": self.summary,
            "chosen": f"{sel.label}: {sel.why}" if sel else "",
            "passed_over": [list(p) for p in sel.passed_over] if sel else [],
            "notes": list(self.notes),
        }

    def __repr__(self) -> str:
        i = self.info
        return f"Enhancer(backend={i['backend']!r}, device={i['device']!r}, model={i['model_name']!r})"

    # ------------------------------------------------------------------ running
    def _run_backend(self, x: np.ndarray) -> np.ndarray:
        pads = (0, 0, 0, 0)
        if self._min_hw and (x.shape[2] < self._min_hw[0] or x.shape[3] < self._min_hw[1]):
            x, pads = prepost.pad_to_at_least(x, *self._min_hw)  # e.g. below a TensorRT profile's min shape
        with self._lock:
            y = self.backend.run(np.ascontiguousarray(x))
        return prepost.crop_padding(y, pads) if any(pads) else y

    def enhance_nchw(self, x: np.ndarray, progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        """Enhance float32 NCHW RGB in [0, 1] of any size (padding/tiling done here).

        Args:
            x: float32 array N x 3 x H x W, values in [0, 1].
            progress: optional ``progress(done, total)`` called per tile of tiled images.

        Returns:
            float32 array of the same shape, values in [0, 1].
        """
        return prepost.enhance_nchw(
            self._run_backend,
            x,
            max_pixels=self.max_pixels,
            tile=self.tile,
            overlap=self.overlap,
            multiple=int(self.backend.meta.pad_multiple or prepost.PAD_MULTIPLE),
            progress=progress,
            max_batch=self._max_batch,
            max_hw=self._max_hw,
            fade=self.fade,
        )

    def enhance(self, image: ImageLike, progress: Callable[[int, int], None] | None = None) -> ImageLike:
        """Enhance one image; returns the same kind (numpy array or PIL image), size and mode.

        Args:
            image: see the module docstring for the accepted arrays and PIL modes.
            progress: optional ``progress(done, total)`` per tile when the image is tiled.
        """
        hw = image_hw(image)
        with _memory_checked([hw] if hw else []):
            rgb, restore = prepare(image)
            x = prepost.hwc_to_nchw(rgb)
            del rgb  # keep one float copy of a large image alive, not two
            y = self.enhance_nchw(x, progress)
            del x
            return restore(prepost.nchw_to_hwc(y)[0])

    def enhance_batch(self, images: Sequence[ImageLike]) -> list[ImageLike]:
        """Enhance several images; same-size images run stacked along N, others one by one.

        Returns:
            The results in input order, each of its input's kind.
        """
        with _memory_checked([hw for hw in map(image_hw, images) if hw]):
            prepared = [prepare(im) for im in images]
            out: list[Any] = [None] * len(prepared)
            groups: dict[tuple[int, ...], list[int]] = {}
            for i, (rgb, _) in enumerate(prepared):
                groups.setdefault(rgb.shape, []).append(i)
            for idxs in groups.values():
                stack = np.stack([prepared[i][0] for i in idxs])
                y = prepost.nchw_to_hwc(self.enhance_nchw(prepost.hwc_to_nchw(stack)))
                for k, i in enumerate(idxs):
                    out[i] = prepared[i][1](y[k])
            return out

    def enhance_video(self, src: str | os.PathLike, dst: str | os.PathLike, **kwargs: Any) -> Any:
        """Enhance video ``src`` into ``dst`` (a file or folder): :func:`engan.runtime.video.enhance_video`
        with this enhancer, the same keywords (``crf``, ``preset``, ``progress``...). Needs PyAV."""
        from engan.runtime.video.api import enhance_video

        return enhance_video(self, src, dst, **kwargs)

    def warmup(self, size: tuple[int, int] | None = None, runs: int = 1) -> float:
        """Run the backend on a blank image so the first real call is not slow.

        Args:
            size: (H, W) to warm up at (rounded up to 16, kept inside a TensorRT
                profile's min/max); default 256x256.
            runs: how many calls.

        Returns:
            Seconds the last call took.
        """
        h, w = size or (256, 256)
        m = int(self.backend.meta.pad_multiple or prepost.PAD_MULTIPLE)
        h, w = max(m, -(-h // m) * m), max(m, -(-w // m) * m)
        if self._max_hw:
            h, w = min(h, self._max_hw[0]), min(w, self._max_hw[1])
        smin = self.backend.info.shape_min
        if smin:
            h, w = max(h, int(smin[2])), max(w, int(smin[3]))
        x = np.zeros((1, 3, h, w), dtype=np.float32)
        elapsed = 0.0
        for _ in range(max(1, runs)):
            t0 = time.perf_counter()
            self._run_backend(x)
            elapsed = time.perf_counter() - t0
        return elapsed

    def close(self) -> None:
        """Release the backend (sessions, engines, device memory)."""
        self.backend.close()

    def __enter__(self) -> "Enhancer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


#: Bytes of working memory a pixel needs at least while it is enhanced: two float32 RGB
#: copies (the HWC input and the NCHW one, or the NCHW output and its HWC copy).
_BYTES_PER_PIXEL = 2 * 3 * 4


def available_memory() -> int | None:
    """Bytes this machine can still give a process (MemAvailable + SwapFree), None when unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            fields = {k: int(v.split()[0]) * 1024 for k, v in (line.split(":", 1) for line in fh)
                      if k in ("MemAvailable", "SwapFree")}
        return sum(fields.values()) if "MemAvailable" in fields else None
    except (OSError, ValueError):
        return None


def _size(n: int) -> str:
    if n >= 2**30:
        return f"{n / 2**30:.1f} GiB"
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{-(-n // 1024)} KiB"


@contextlib.contextmanager
def _memory_checked(sizes: Sequence[tuple[int, int]]) -> Iterator[None]:
    """Refuse, before allocating, images whose working copies cannot fit in memory; turn a
    MemoryError while enhancing into one that says how much was needed and what to do."""
    need = sum(h * w for h, w in sizes) * _BYTES_PER_PIXEL
    what = (f"a {sizes[0][1]}x{sizes[0][0]} image" if len(sizes) == 1 else f"{len(sizes)} images")
    fix = "downscale or crop it first (or free memory)" if len(sizes) == 1 else "enhance fewer or smaller images at once"
    have = available_memory()
    if have is not None and need > have:
        raise MemoryError(f"enhancing {what} needs at least {_size(need)} of memory (float32 working copies "
                          f"of its pixels) and this machine has {_size(have)} available; {fix}")
    try:
        yield
    except MemoryError as e:
        raise MemoryError(f"out of memory enhancing {what} (at least {_size(need)} of float32 working copies; "
                          f"{str(e) or 'MemoryError'}); {fix}") from None


def load(model: str | os.PathLike | None = None, **kwargs: Any) -> Enhancer:
    """Shortcut for :meth:`Enhancer.load` (same arguments)."""
    return Enhancer.load(model, **kwargs)
