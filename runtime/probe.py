"""What a model file is, and what this machine and the model's folder offer (decided without loading).

The facts the backend rule in :mod:`engan.runtime.select` is made of: the kind of a model
file by its suffix, CUDA GPUs (asked of the driver through ctypes, not of a library),
ONNX Runtime's providers, TensorRT engines and the INT8 copy next to an ONNX file, and
whether an engine suits this GPU. Standard library only at import time.
"""
from __future__ import annotations

from pathlib import Path

from engan.runtime._optional import is_installed

#: model kind -> the file suffixes of that kind (a folder is a run folder: ``checkpoint``).
MODEL_KINDS: dict[str, tuple[str, ...]] = {
    "onnx": (".onnx",),
    "engine": (".engine", ".plan"),
    "checkpoint": (".safetensors",),
    "ir": (".xml",),
}
ENGINE_SUFFIXES = MODEL_KINDS["engine"]


def model_kind(path: Path) -> str:
    """``"onnx"``, ``"engine"``, ``"checkpoint"`` or ``"ir"`` (OpenVINO) from the suffix (a folder is a run folder).

    Raises:
        ValueError: for any other suffix, naming the file and the accepted kinds.
    """
    if path.is_dir():
        return "checkpoint"
    suffix = path.suffix.lower()
    for kind, suffixes in MODEL_KINDS.items():
        if suffix in suffixes:
            return kind
    raise ValueError(
        f"{path}: unknown model type '{suffix or '(no suffix)'}'; pass an .onnx file (from `engan export`), a "
        "TensorRT .engine/.plan, an OpenVINO .xml, a generator .safetensors file or a run folder"
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
