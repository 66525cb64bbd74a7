"""Which backend runs a model here, and why (decided without importing what is not needed).

``available_backends()`` asks :func:`importlib.util.find_spec`, so it imports
nothing. :func:`select_backend` maps a model file to a backend:

* ``.onnx`` under ``backend="auto"``: TensorRT when ``tensorrt`` + ``cuda-python``
  are importable, a CUDA GPU is present and an engine built for this GPU/TensorRT
  lies next to the ONNX (``model.*.engine`` / ``.plan``); else ONNX Runtime with
  CUDA when ``CUDAExecutionProvider`` is available and a GPU is present; else ONNX
  Runtime on the CPU, running the INT8 copy ``<stem>.int8.onnx`` when one made from
  the same checkpoint lies next to the ONNX (``engan export --int8`` writes it; the
  shipped model has one) and the given file otherwise;
* ``.engine`` / ``.plan``: TensorRT;
* ``.safetensors`` or a run folder: eager PyTorch (needs the ``train`` extra).

The decision carries a one-line ``reason`` that :class:`engan.runtime.Enhancer`
reports in its ``info``.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engan.runtime._optional import is_installed

#: backend name -> "module:Class" (imported only when that backend is used).
BACKENDS: dict[str, str] = {
    "trt": "engan.runtime.backends.trt:TrtBackend",
    "ort": "engan.runtime.backends.ort:OrtBackend",
    "torch": "engan.runtime.backends.torch_backend:TorchBackend",
}

#: backend name -> the modules it needs.
BACKEND_MODULES: dict[str, tuple[str, ...]] = {
    "trt": ("tensorrt", "cuda"),
    "ort": ("onnxruntime",),
    "torch": ("torch", "safetensors"),
}

#: accepted spellings -> canonical backend name.
ALIASES: dict[str, str] = {
    "auto": "auto",
    "ort": "ort", "onnxruntime": "ort", "onnx": "ort",
    "trt": "trt", "tensorrt": "trt",
    "torch": "torch", "pytorch": "torch",
}

ENGINE_SUFFIXES = (".engine", ".plan")
CHECKPOINT_SUFFIXES = (".safetensors",)


@dataclass(frozen=True)
class Selection:
    """A backend decision.

    Attributes:
        backend: ``"trt"``, ``"ort"`` or ``"torch"``.
        model: the file (or run folder) that backend loads.
        device: ``"cpu"``, ``"cuda"``/``"cuda:N"`` or ``"auto"`` (the backend decides).
        reason: one line saying why.
    """

    backend: str
    model: Path
    device: str
    reason: str


def available_backends() -> list[str]:
    """Backends whose libraries are installed (``trt``, ``ort``, ``torch``), best first; imports nothing."""
    return [name for name, mods in BACKEND_MODULES.items() if all(is_installed(m) for m in mods)]


def canonical_backend(name: str) -> str:
    """Normalise a backend name (``auto``, ``ort``/``onnxruntime``, ``trt``/``tensorrt``, ``torch``)."""
    key = (name or "auto").strip().lower()
    if key not in ALIASES:
        raise ValueError(f"unknown backend {name!r}; use one of: auto, ort, trt, torch")
    return ALIASES[key]


def backend_class(name: str) -> Any:
    """Import and return the backend class registered under ``name``."""
    module, attr = BACKENDS[canonical_backend(name)].split(":")
    return getattr(importlib.import_module(module), attr)


def model_kind(path: Path) -> str:
    """``"onnx"``, ``"engine"`` or ``"checkpoint"`` from the suffix (a folder is a run folder).

    Raises:
        ValueError: for any other suffix, naming the file and the accepted kinds.
    """
    if path.is_dir():
        return "checkpoint"
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return "onnx"
    if suffix in ENGINE_SUFFIXES:
        return "engine"
    if suffix in CHECKPOINT_SUFFIXES:
        return "checkpoint"
    raise ValueError(
        f"{path}: unknown model type '{suffix or '(no suffix)'}'; pass an .onnx file (from `engan export`), a "
        "TensorRT .engine/.plan, a generator .safetensors file or a run folder"
    )


def cuda_device_count() -> int:
    """CUDA GPUs visible to this process, asked of the driver (libcuda) through ctypes; 0 when none/no driver."""
    import ctypes
    import ctypes.util

    def candidates():
        yield from ("libcuda.so.1", "libcuda.so", "nvcuda.dll")
        yield ctypes.util.find_library("cuda")  # slower (may run ldconfig): last

    for name in candidates():
        if not name:
            continue
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        try:
            if lib.cuInit(0) != 0:
                return 0
            count = ctypes.c_int(0)
            if lib.cuDeviceGetCount(ctypes.byref(count)) != 0:
                return 0
            return int(count.value)
        except AttributeError:
            return 0
    return 0


def ort_providers() -> list[str]:
    """``onnxruntime.get_available_providers()``, or ``[]`` when onnxruntime is not installed."""
    if not is_installed("onnxruntime"):
        return []
    import onnxruntime

    return list(onnxruntime.get_available_providers())


def find_engines(onnx_path: Path) -> list[Path]:
    """TensorRT engines next to an ONNX file: ``<stem>.engine``, ``<stem>.*.engine`` (and ``.plan``), sorted."""
    folder, stem = onnx_path.parent, onnx_path.stem
    if not folder.is_dir():
        return []
    found = [
        p for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in ENGINE_SUFFIXES and (p.stem == stem or p.name.startswith(stem + "."))
    ]
    return sorted(found)


#: Name ending of the INT8 copy `engan export --int8` writes next to the FP32 ONNX.
INT8_ENDING = ".int8.onnx"


def find_int8(onnx_path: Path) -> tuple[Path | None, str]:
    """The INT8 copy of an FP32 ONNX (``<stem>.int8.onnx`` beside it), or None and why not.

    The copy is used only when its engan metadata says ``int8`` and names the same
    checkpoint (sha256) as the FP32 file, so a stale copy left by an older export of
    another checkpoint is never picked. The reason is empty when there is no copy at
    all, and says why when a copy exists but is refused (a malformed file is refused in
    milliseconds whatever its size: :func:`engan.runtime.meta.read_onnx_metadata` is bounded).
    """
    from engan.runtime.meta import read_onnx_metadata

    name = onnx_path.name.lower()
    if name.endswith((INT8_ENDING, ".fp16.onnx")):
        return None, ""
    candidate = onnx_path.with_name(onnx_path.name[: -len(".onnx")] + INT8_ENDING)
    if not candidate.is_file():
        return None, ""
    keys = ("engan.precision", "engan.checkpoint_sha256")
    found = []
    for f in (onnx_path, candidate):  # bounded reads: a garbage file of any size is refused at once
        try:
            found.append(read_onnx_metadata(f, keys))
        except OSError as e:
            return None, f"{f.name} unreadable ({(e.strerror or str(e)).lower()})"
        except ValueError as e:
            return None, f"{f.name} unreadable ({getattr(e, 'detail', e)})"
    fp32, int8 = found
    if int8.get("engan.precision") != "int8" or fp32.get("engan.precision", "fp32") != "fp32":
        return None, f"{candidate.name} is not an engan INT8 copy of an FP32 model"
    if int8.get("engan.checkpoint_sha256") != fp32.get("engan.checkpoint_sha256"):
        return None, f"{candidate.name} was made from another checkpoint than {onnx_path.name} (stale; re-export)"
    return candidate, ""


def engine_compatibility(engine: Path, device_index: int = 0) -> str | None:
    """None when ``engine`` suits this GPU and TensorRT version, else why not (one line)."""
    try:
        import tensorrt

        from engan.runtime.backends.trt import check_engine_compatible, local_gpu

        gpu, capability = local_gpu(device_index)
        check_engine_compatible(engine, gpu, capability, tensorrt.__version__)
    except Exception as e:  # mismatch, missing sidecar, broken install: all mean "not this engine"
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        return f"{engine.name}: {first}"
    return None


def _device_index(device: str) -> int:
    d = (device or "auto").lower()
    return int(d.split(":", 1)[1]) if ":" in d and d.split(":", 1)[1].isdigit() else 0


def _why_not_trt(onnx_path: Path, device: str) -> tuple[Path | None, str]:
    """The engine TensorRT would run for ``onnx_path``, or None and why not."""
    if device == "cpu":
        return None, "device='cpu' requested"
    missing = [m for m in BACKEND_MODULES["trt"] if not is_installed(m)]
    if missing:
        return None, f"{' and '.join(missing)} not installed (pip install 'engan[trt]')"
    engines = find_engines(onnx_path)
    if not engines:
        return None, f"no TensorRT engine next to {onnx_path.name} (looked for {onnx_path.stem}.*.engine/.plan)"
    if cuda_device_count() < 1:
        return None, "no CUDA GPU found"
    problems = []
    for engine in engines:
        problem = engine_compatibility(engine, _device_index(device))
        if problem is None:
            return engine, ""
        problems.append(problem)
    return None, "no engine built for this GPU/TensorRT (" + "; ".join(problems) + ")"


def _why_not_ort_cuda(device: str) -> str:
    """Empty when ONNX Runtime can run on CUDA here, else why not."""
    if device == "cpu":
        return "device='cpu' requested"
    providers = ort_providers()
    if "CUDAExecutionProvider" not in providers:
        return f"onnxruntime has no CUDAExecutionProvider (providers: {providers}; install onnxruntime-gpu for CUDA)"
    if cuda_device_count() < 1:
        return "CUDAExecutionProvider is available but no CUDA GPU was found"
    return ""


def select_backend(model: str | Path, backend: str = "auto", device: str = "auto",
                   cpu_int8: bool = True) -> Selection:
    """Decide which backend runs ``model`` and say why.

    Args:
        model: an ``.onnx``, ``.engine``/``.plan`` or ``.safetensors`` file, or a run folder.
        backend: ``auto`` or a backend name (see :data:`ALIASES`).
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        cpu_int8: under ``auto`` on a CPU, run the INT8 copy next to an ``.onnx`` when
            there is one (see :func:`find_int8`); False runs the file as given.

    Returns:
        The :class:`Selection`.

    Raises:
        ValueError: a backend that cannot run this kind of model (the message says what would).
    """
    path = Path(model)
    name = canonical_backend(backend)
    kind = model_kind(path)
    dev = (device or "auto").strip().lower()

    if name == "auto":
        if kind == "engine":
            return Selection("trt", path, dev, f"TensorRT: the model is a TensorRT engine ({path.suffix})")
        if kind == "checkpoint":
            return Selection(
                "torch", path, dev,
                "PyTorch: the model is a .safetensors checkpoint/run folder (export it with `engan export` to run "
                "without torch)",
            )
        engine, no_trt = _why_not_trt(path, dev)
        if engine is not None:
            return Selection(
                "trt", engine, dev,
                f"TensorRT: engine {engine.name} next to {path.name} matches this GPU, tensorrt importable, "
                "CUDA GPU present",
            )
        no_cuda = _why_not_ort_cuda(dev)
        if not no_cuda:
            return Selection(
                "ort", path, "cuda" if dev == "auto" else dev,
                f"ONNX Runtime CUDA: CUDAExecutionProvider available and a CUDA GPU present (TensorRT not used: {no_trt})",
            )
        int8, no_int8 = find_int8(path) if kind == "onnx" and cpu_int8 else (None, "")
        if int8 is not None:
            return Selection(
                "ort", int8, "cpu" if dev == "auto" else dev,
                f"ONNX Runtime CPU INT8: {int8.name}, the INT8 copy of {path.name} (about 2x faster than FP32 "
                f"on a CPU; --backend ort runs {path.name} as given); {no_cuda} "
                f"(TensorRT not used: {no_trt})",
            )
        return Selection(
            "ort", path, "cpu" if dev == "auto" else dev,
            f"ONNX Runtime CPU: {no_cuda} (TensorRT not used: {no_trt})"
            + (f" (INT8 copy not used: {no_int8})" if no_int8 else ""),
        )

    requested = f"backend '{name}' requested"
    if name == "ort":
        if kind != "onnx":
            raise ValueError(
                f"backend 'ort' runs .onnx files; {path} is a {kind}: export it with `engan export`, or use "
                f"backend='{'trt' if kind == 'engine' else 'torch'}'"
            )
        return Selection("ort", path, dev, f"ONNX Runtime: {requested} (device {dev})")
    if name == "trt":
        if kind == "engine":
            return Selection("trt", path, dev, f"TensorRT: {requested}")
        if kind == "onnx":
            engines = find_engines(path)
            if not engines:
                raise ValueError(
                    f"backend 'trt' needs a TensorRT engine and none lies next to {path} (looked for "
                    f"{path.stem}.*.engine/.plan); build one with `engan export --trt` or pass the .engine file"
                )
            compatible = [e for e in engines if engine_compatibility(e, _device_index(dev)) is None]
            engine = (compatible or engines)[0]
            return Selection("trt", engine, dev, f"TensorRT: {requested}, engine {engine.name} next to {path.name}")
        raise ValueError(
            f"backend 'trt' runs TensorRT engines; {path} is a checkpoint: export it with `engan export --trt`"
        )
    # torch
    if kind == "checkpoint":
        return Selection("torch", path, dev, f"PyTorch: {requested}")
    sibling = path.with_suffix(".safetensors")
    if sibling.is_file():
        return Selection("torch", sibling, dev, f"PyTorch: {requested}, weights {sibling.name} next to {path.name}")
    raise ValueError(
        f"backend 'torch' runs .safetensors checkpoints or run folders; {path} is a {kind} file "
        f"(and no {sibling.name} lies next to it): use backend='{'ort' if kind == 'onnx' else 'trt'}'"
    )
