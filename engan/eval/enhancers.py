"""Turn "the model to score" into ``enhance(uint8 HxWx3 RGB) -> uint8 HxWx3 RGB``.

Every model runs through ``engan.runtime.Enhancer`` (the code users run), whole (no
tiling), on the file as given (no INT8 substitution):

* ``.safetensors`` file or ``engan train`` run folder: the runtime's eager PyTorch backend,
  FP32 on the CPU, torch threads = physical cores.
* ``.onnx`` / ``.engine``: the backend ``--backend`` names (``auto``: the runtime's choice).
* nothing / ``default`` / ``shipped`` / another shipped name: the model that ships in the
  package (``engan.runtime.shipped``).

The runtime pads to 16 (centred reflect), crops back and rounds to uint8 (round half to
even of ``x * 255`` after clipping to [0, 1]), which is what the metrics are computed on.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from engan.runtime.backends.ort import physical_cores

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


def identity_fn(img: np.ndarray) -> np.ndarray:
    """The input-as-output baseline."""
    return img


def runtime_enhance_fn(model: str | os.PathLike | None, backend: str = "auto",
                       fade: tuple[float, float] | None = None, device: str = "auto",
                       threads: int | None = None) -> tuple[EnhanceFn, dict[str, Any]]:
    """Enhance function through ``engan.runtime.Enhancer`` (a model file, a shipped name or None).

    Tiling is switched off (``max_pixels=0``) so every image runs whole, and the INT8 copy
    next to an ``.onnx`` is not substituted (``cpu_int8=False``): the file given is scored.
    """
    from engan.runtime.meta import file_sha256
    from engan.runtime import Enhancer
    from engan.runtime import ModelLoadError as RuntimeModelLoadError

    try:
        enh = Enhancer.load(model, backend=backend, device=device, threads=threads, max_pixels=0, cpu_int8=False,
                            fade=fade)
    except (FileNotFoundError, RuntimeModelLoadError) as e:  # not shipped, missing, corrupt: the message names it
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
        info["sha256"] = file_sha256(info["path"])
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
    if p.suffix.lower() in (".safetensors", ".onnx", ".engine", ".plan", ".xml"):
        return p.resolve().parent.name if p.stem in ("generator", "model") else p.stem.replace(".", "-")
    return p.name


def make_enhance_fn(model: str | os.PathLike | None = None, backend: str = "auto",
                    fade: tuple[float, float] | None = None) -> Method:
    """Resolve a model argument to the method ("ours") the evaluation scores.

    Args:
        model: ``.safetensors`` file or run folder (the runtime's torch backend, fp32 on the
            CPU); ``.onnx``/``.engine``; a shipped model name; ``None``/``default``/``shipped``
            = the shipped default model.
        backend: ``auto`` or a runtime backend (``ort``, ``openvino``, ``trt``, ``torch``); ``ort``
            needs an ONNX model. For the shipped model, ``torch`` runs its safetensors twin
            through the runtime's torch backend.
        fade: ``(lo, hi)``: fade the enhancement out for photos that are not dark, as
            ``engan-infer --fade-bright`` does (:func:`engan.runtime.prepost.fade_bright`).

    Returns:
        A :class:`Method` whose ``fn`` maps uint8 HxWx3 RGB to uint8 HxWx3 RGB.

    Raises:
        ModelLoadError: missing/corrupt file, nothing shipped, or a backend that cannot run it.
    """
    from engan.runtime.select import canonical_backend

    try:
        backend = canonical_backend(backend)
    except ValueError as e:
        raise ModelLoadError(str(e)) from None
    name = model_display_name(model)
    if model is not None and str(model) in SHIPPED_ALIASES and not Path(model).exists():
        model = None
    t0 = time.perf_counter()
    p = Path(model) if model is not None else None
    if p is not None and (p.is_dir() or p.suffix.lower() == ".safetensors"):
        if not p.exists():
            raise ModelLoadError(f"model file not found: {p}")
        if backend in ("ort", "openvino", "trt"):
            needs = {"ort": "an .onnx", "openvino": "an .onnx or .xml", "trt": "a TensorRT .engine"}[backend]
            raise ModelLoadError(f"--backend {backend} needs {needs} model; {p} is a torch checkpoint (export it with "
                                 "`engan export`)")
        fn, info = runtime_enhance_fn(p, "torch", fade, device="cpu", threads=physical_cores())
    else:
        if p is not None and p.suffix.lower() == ".onnx" and not p.exists():
            raise ModelLoadError(f"model file not found: {p}")
        fn, info = runtime_enhance_fn(model, backend, fade)
    info["load_s"] = round(time.perf_counter() - t0, 3)
    if fade is not None:
        info["fade"] = list(fade)
        name = f"{name} + fade-bright"
    return Method(label=f"EnlightenGAN (ours: {name})", fn=fn, kind="ours", info={"name": name, **info})
