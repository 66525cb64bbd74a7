"""Turn "the model to score" into ``enhance(uint8 HxWx3 RGB) -> uint8 HxWx3 RGB``.

* ``.safetensors`` file or ``engan train`` run folder: eager torch (``load_generator`` +
  ``enhance_tensor``: centred reflect padding to 16 and crop back), ``eval()``, no_grad,
  torch threads = physical cores.
* ``.onnx``: ``engan.runtime.Enhancer.load(path, backend=...)``; when that runtime is not
  importable, a plain ONNX Runtime session with the same centred reflect padding.
* nothing / ``default`` / ``shipped`` / another shipped name: the model that ships in the
  package (``engan.runtime.shipped``).

Every output is rounded to uint8 (round half to even of ``x * 255`` after clipping to
[0, 1]), which is what the metrics are computed on.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

EnhanceFn = Callable[[np.ndarray], np.ndarray]

#: Names that mean "the model shipped in the package".
SHIPPED_ALIASES = ("default", "shipped")


class ModelLoadError(RuntimeError):
    """The model to evaluate could not be resolved or loaded; the message says what to pass instead."""


@dataclass
class Method:
    """One row of the comparison: a label, the enhance function and what describes it."""

    label: str
    fn: EnhanceFn
    kind: str  # ours | peer | identity
    info: dict[str, Any] = field(default_factory=dict)

    def __call__(self, img: np.ndarray) -> np.ndarray:
        """A Method is itself an enhance function: ``evaluate_paired(make_enhance_fn(p), lol)`` works."""
        return self.fn(img)


def sha256_of(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def identity_fn(img: np.ndarray) -> np.ndarray:
    """The input-as-output baseline."""
    return img


def physical_cores() -> int:
    """Physical CPU cores (Linux /proc/cpuinfo), else the logical count."""
    try:
        cores = set()
        phys = core = None
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("physical id"):
                    phys = line.split(":")[1].strip()
                elif line.startswith("core id"):
                    core = line.split(":")[1].strip()
                elif not line.strip():
                    if core is not None:
                        cores.add((phys, core))
                    phys = core = None
        if core is not None:
            cores.add((phys, core))
        if cores:
            return len(cores)
    except OSError:
        pass
    return os.cpu_count() or 1


def torch_enhance_fn(model_path: str | os.PathLike, fade: tuple[float, float] | None = None) -> tuple[EnhanceFn, dict[str, Any]]:
    """Eager torch enhance function for a safetensors generator or run folder (``fade``: as the runtime's)."""
    import torch

    from engan.models import count_parameters, enhance_tensor
    from engan.models.checkpoint import CheckpointError, file_sha256, load_generator, read_metadata, resolve_checkpoint
    from engan.runtime.prepost import fade_bright

    try:
        path = resolve_checkpoint(model_path)
        g = load_generator(path).eval()
        meta = read_metadata(path)
    except CheckpointError as e:
        raise ModelLoadError(str(e)) from None
    torch.set_num_threads(physical_cores())

    @torch.no_grad()
    def enhance(img: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(img[..., :3])).permute(2, 0, 1)[None].float().div_(255.0)
        y = enhance_tensor(g, x).clamp_(0, 1)
        if fade is not None:
            y = torch.from_numpy(fade_bright(x.numpy(), y.numpy(), fade))
        return y[0].mul_(255.0).round_().permute(1, 2, 0).to(torch.uint8).numpy()

    info = {
        "path": str(path), "backend": "torch (eager, fp32)", "preset": meta.get("engan.preset", "?"),
        "params": int(count_parameters(g)),
        "sha256": file_sha256(path), "threads": torch.get_num_threads(),
        "metadata": {k: v for k, v in meta.items() if k.startswith("engan.")},
    }
    return enhance, info


def _pad_reflect(x: np.ndarray, multiple: int = 16) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Centred reflect padding of an NCHW array to a multiple (replicate when too small), like engan.models.pad_to_multiple."""
    h, w = x.shape[-2:]
    dh, dw = (-h) % multiple, (-w) % multiple
    t, l = dh // 2, dw // 2
    b, r = dh - t, dw - l
    if not (dh or dw):
        return x, (0, 0, 0, 0)
    mode = "reflect" if (t < h and b < h and l < w and r < w) else "edge"
    return np.pad(x, ((0, 0), (0, 0), (t, b), (l, r)), mode=mode), (t, b, l, r)


def ort_session_enhance_fn(onnx_path: str | os.PathLike) -> tuple[EnhanceFn, dict[str, Any]]:
    """Plain ONNX Runtime enhance function (CPU provider unless a GPU provider is available)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = physical_cores()
    providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()]
    try:
        sess = ort.InferenceSession(str(onnx_path), opts, providers=providers)
    except Exception as e:  # noqa: BLE001 - onnxruntime raises several unrelated types
        raise ModelLoadError(f"{onnx_path} could not be loaded by ONNX Runtime ({e}); re-export it with `engan export`") from None
    in_name, out_name = sess.get_inputs()[0].name, sess.get_outputs()[0].name

    def enhance(img: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(img[..., :3].transpose(2, 0, 1)[None], dtype=np.float32) / np.float32(255.0)
        xp, (t, b, l, r) = _pad_reflect(x)
        y = sess.run([out_name], {in_name: xp})[0]
        y = y[..., t : y.shape[-2] - b, l : y.shape[-1] - r][0]
        return np.clip(np.rint(np.clip(y, 0, 1) * 255.0), 0, 255).astype(np.uint8).transpose(1, 2, 0)

    props = sess.get_modelmeta().custom_metadata_map
    info = {"path": str(onnx_path), "backend": f"onnxruntime {ort.__version__} ({sess.get_providers()[0]})",
            "preset": props.get("engan.preset", "?"), "metadata": dict(props)}
    return enhance, info


def runtime_enhance_fn(model: str | os.PathLike | None, backend: str = "auto",
                       fade: tuple[float, float] | None = None) -> tuple[EnhanceFn, dict[str, Any]]:
    """Enhance function through ``engan.runtime.Enhancer`` (an .onnx/.engine file, a shipped name or None).

    Tiling is switched off (``max_pixels=0``) so every image runs whole, like the torch path.
    When the runtime is not importable, an ``.onnx`` file runs in a plain ONNX Runtime session.
    """
    try:
        from engan.runtime.enhancer import Enhancer
    except ImportError:
        if model is not None and Path(model).suffix.lower() == ".onnx" and backend in ("auto", "ort") and fade is None:
            return ort_session_enhance_fn(model)
        raise ModelLoadError(
            "engan.runtime.Enhancer is not available in this install; pass --model FILE.onnx with --backend ort, "
            "or a .safetensors generator / run folder"
        ) from None
    try:
        enh = Enhancer.load(model, backend=backend, max_pixels=0, cpu_int8=False, fade=fade)  # the file as given
    except FileNotFoundError as e:  # includes ModelNotShippedError
        raise ModelLoadError(str(e)) from None
    except Exception as e:  # noqa: BLE001 - surface any runtime failure with the model named
        raise ModelLoadError(f"{model or 'the shipped model'} could not be loaded with backend {backend!r}: {e}") from None

    def enhance(img: np.ndarray) -> np.ndarray:
        return np.asarray(enh.enhance(np.ascontiguousarray(img)), dtype=np.uint8)

    ei = enh.info
    info: dict[str, Any] = {
        "path": str(ei.get("model", model)), "backend": f"engan.runtime {ei.get('backend')} ({ei.get('device')}, {ei.get('precision')})",
        "preset": ei.get("preset") or "?", "params": ei.get("params") or None, "threads": ei.get("threads"),
        "runtime_reason": ei.get("reason"),
    }
    if info["path"] and Path(info["path"]).is_file():
        info["sha256"] = sha256_of(info["path"])
    return enhance, info


def model_display_name(model: str | os.PathLike | None) -> str:
    """Short name for a model argument: run-folder name, file stem, or the shipped model's name."""
    if model is None or str(model) in SHIPPED_ALIASES:
        try:
            from engan.runtime.shipped import default_model_path

            return Path(default_model_path()).stem
        except Exception:  # noqa: BLE001 - nothing ships yet: a generic name
            return "shipped"
    p = Path(model)
    if p.is_dir():
        return p.resolve().name
    if p.suffix.lower() in (".safetensors", ".onnx", ".engine", ".plan"):
        return p.resolve().parent.name if p.stem in ("generator", "model") else p.stem.replace(".", "-")
    return p.name


def make_enhance_fn(model: str | os.PathLike | None = None, backend: str = "auto",
                    fade: tuple[float, float] | None = None) -> Method:
    """Resolve a model argument to the method ("ours") the evaluation scores.

    Args:
        model: ``.safetensors`` file or run folder (eager torch, fp32); ``.onnx``/``.engine``
            (``engan.runtime.Enhancer``); a shipped model name; ``None``/``default``/``shipped``
            = the shipped default model.
        backend: ``auto`` | ``ort`` | ``torch``; ``ort`` needs an ONNX model. For the shipped
            model, ``torch`` runs its safetensors twin through the runtime's torch backend.
        fade: ``(lo, hi)``: fade the enhancement out for photos that are not dark, as
            ``engan-infer --fade-bright`` does (:func:`engan.runtime.prepost.fade_bright`).

    Returns:
        A :class:`Method` whose ``fn`` maps uint8 HxWx3 RGB to uint8 HxWx3 RGB.

    Raises:
        ModelLoadError: missing/corrupt file, nothing shipped, or a backend that cannot run it.
    """
    if backend not in ("auto", "ort", "torch"):
        raise ModelLoadError(f"unknown backend {backend!r}; use auto, ort or torch")
    name = model_display_name(model)
    if model is not None and str(model) in SHIPPED_ALIASES and not Path(model).exists():
        model = None
    t0 = time.perf_counter()
    p = Path(model) if model is not None else None
    if p is not None and (p.is_dir() or p.suffix.lower() == ".safetensors"):
        if not p.exists():
            raise ModelLoadError(f"model file not found: {p}")
        if backend == "ort":
            raise ModelLoadError(f"--backend ort needs an .onnx model; {p} is a torch checkpoint (export it with `engan export`)")
        fn, info = torch_enhance_fn(p, fade)
    else:
        if p is not None and p.suffix.lower() == ".onnx" and not p.exists():
            raise ModelLoadError(f"model file not found: {p}")
        fn, info = runtime_enhance_fn(model, backend, fade)
    info["load_s"] = round(time.perf_counter() - t0, 3)
    if fade is not None:
        info["fade"] = list(fade)
        name = f"{name} + fade-bright"
    return Method(label=f"EnlightenGAN (ours: {name})", fn=fn, kind="ours", info={"name": name, **info})
