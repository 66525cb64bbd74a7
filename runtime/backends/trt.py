"""Native TensorRT backend (TensorRT 10+, buffers and streams through cuda-python).

Loads a serialized engine written by ``engan export`` (``model.<gpu>.trt<ver>.fp16.engine``)
together with its JSON sidecar (``<engine>.json``), refuses an engine whose sidecar names another GPU or
TensorRT version (:mod:`engan.runtime.engine_meta`), and runs it with the
TensorRT 10 name-based API: ``set_input_shape`` within the engine's optimisation
profile, ``set_tensor_address`` for every I/O tensor, ``execute_async_v3`` on a CUDA
stream, host<->device copies with ``cudaMemcpyAsync``.

``tensorrt`` and ``cuda-python`` are imported only when a backend is created; the
helpers at module level (dtype mapping, profile checks, CUDA error checks) need
neither, so they are tested on CPU-only machines.

Thread safety: one execution context per backend; :class:`engan.runtime.Enhancer`
serialises calls with a lock.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from engan.runtime._optional import import_cudart, require
from engan.runtime.backends.base import BackendError, BackendInfo, BackendOptions, BaseBackend, ModelLoadError
from engan.runtime.backends.ort import parse_device
from engan.runtime.meta import ArtefactMeta

#: TensorRT DataType member name -> numpy dtype (bf16/fp8/int4 have no numpy twin).
_DTYPES: dict[str, Any] = {
    "FLOAT": np.float32,
    "HALF": np.float16,
    "INT8": np.int8,
    "INT32": np.int32,
    "INT64": np.int64,
    "BOOL": np.bool_,
    "UINT8": np.uint8,
}


def trt_dtype_to_numpy(dtype: Any) -> np.dtype:
    """Map a ``tensorrt.DataType`` (or its name) to a numpy dtype.

    Raises:
        BackendError: for types numpy cannot hold (BF16, FP8, INT4).
    """
    name = getattr(dtype, "name", None) or str(dtype)
    name = name.split(".")[-1].upper()
    if name not in _DTYPES:
        raise BackendError(
            f"engine I/O type {name} has no numpy equivalent; build the engine with float32 (or float16) I/O "
            "(`engan export` keeps float32 I/O)"
        )
    return np.dtype(_DTYPES[name])


def check_profile(
    shape: Sequence[int],
    shape_min: Sequence[int],
    shape_max: Sequence[int],
    engine: str | os.PathLike = "the engine",
) -> None:
    """Raise :class:`BackendError` unless ``shape`` lies within the profile's [min, max] per dimension."""
    shape, lo, hi = tuple(int(s) for s in shape), tuple(int(s) for s in shape_min), tuple(int(s) for s in shape_max)
    if len(shape) != len(lo) or any(s < a or s > b for s, a, b in zip(shape, lo, hi)):
        raise BackendError(
            f"input {'x'.join(map(str, shape))} (after padding) is outside {engine}'s optimisation profile "
            f"min {'x'.join(map(str, lo))} .. max {'x'.join(map(str, hi))}; lower max_pixels/--tile so the "
            "tiles fit (tile side <= the profile's max H and W), or rebuild the engine with a larger max shape "
            "(see `engan export --help`)"
        )


def cuda_check(result: Any, what: str) -> Any:
    """Unpack a cuda-python call result ``(err, *values)``; raise :class:`BackendError` on error.

    Returns:
        None, the single value, or a tuple of values.
    """
    if not isinstance(result, tuple):
        result = (result,)
    err, values = result[0], result[1:]
    code = int(getattr(err, "value", err))
    if code != 0:
        raise BackendError(f"CUDA call {what} failed with {getattr(err, 'name', err)} (code {code})")
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def local_gpu(index: int = 0) -> tuple[str, tuple[int, int]]:
    """``(name, (major, minor))`` of CUDA device ``index`` through cuda-python."""
    cudart = import_cudart()
    props = cuda_check(cudart.cudaGetDeviceProperties(index), "cudaGetDeviceProperties")
    name = props.name
    if isinstance(name, (bytes, bytearray)):
        name = bytes(name).split(b"\0", 1)[0].decode("utf-8", "replace")
    return str(name), (int(props.major), int(props.minor))


def check_engine_compatible(engine: Path, gpu_name: str, capability: tuple[int, int], trt_version: str) -> Any:
    """Read the engine's sidecar and refuse it when it names another GPU or TensorRT version.

    Uses :mod:`engan.runtime.engine_meta` (``read_sidecar`` raising ``SidecarError``,
    ``check_compatible`` raising ``EngineMismatchError``; both name the file and the fix).

    Returns:
        The :class:`engan.runtime.engine_meta.EngineSidecar`.
    """
    from engan.runtime import engine_meta

    sidecar = engine_meta.read_sidecar(engine)
    engine_meta.check_compatible(sidecar, gpu_name, capability, trt_version, engine_path=engine)
    return sidecar


def _sidecar_meta(engine: Path) -> ArtefactMeta:
    """The artefact metadata from the engine's sidecar, or defaults when it has none."""
    from engan.runtime import engine_meta

    try:
        return engine_meta.read_sidecar(engine).artefact_meta()
    except engine_meta.EngineMetaError:
        return ArtefactMeta(model_name=engine.stem, precision="fp16")


class TrtBackend(BaseBackend):
    """Run a serialized TensorRT engine.

    Args:
        path: the ``.engine``/``.plan`` file (its ``.json`` sidecar next to it).
        options: :class:`BackendOptions` (or its fields as keywords); this backend reads
            ``device`` (``auto``/``cuda`` is device 0, or ``cuda:N``; ``cpu`` is refused) and
            ``check_sidecar`` (refuse engines whose sidecar names another GPU/TensorRT
            version; leave on, off only for engines built outside engan). The engine's
            precision and threads are fixed when it is built.
    """

    name = "tensorrt"

    def __init__(self, path: str | os.PathLike, options: BackendOptions | None = None, **overrides: Any) -> None:
        super().__init__()
        opts = BackendOptions.of(options, **overrides)
        device, check_sidecar = opts.device, opts.check_sidecar
        self.path = Path(path)
        kind, index = parse_device(device)
        if kind == "cpu":
            raise BackendError(
                f"TensorRT runs on CUDA GPUs only, device='cpu' was asked for {self.path}; run the .onnx next to "
                "it with backend='ort' instead"
            )
        if not self.path.is_file():
            raise ModelLoadError(f"TensorRT engine not found: {self.path}; build one with `engan export --trt`")
        trt = require("tensorrt", "the TensorRT backend")
        cudart = import_cudart()
        self._trt, self._cudart = trt, cudart
        self._buffers: dict[str, tuple[int, int]] = {}
        self._stream = None
        self._context = self._engine = self._runtime = None
        cuda_check(cudart.cudaSetDevice(index), "cudaSetDevice")
        gpu_name, capability = local_gpu(index)
        if check_sidecar:
            self.meta = check_engine_compatible(self.path, gpu_name, capability, trt.__version__).artefact_meta()
        else:
            self.meta = _sidecar_meta(self.path)
        self._runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self._engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self._engine is None:
            raise ModelLoadError(
                f"{self.path} could not be deserialised by TensorRT {trt.__version__}: the file is corrupt or was "
                "built by another TensorRT version; rebuild it on this machine with `engan export --trt`"
            )
        inputs, outputs = [], []
        for i in range(self._engine.num_io_tensors):
            tname = self._engine.get_tensor_name(i)
            mode = self._engine.get_tensor_mode(tname)
            (inputs if mode == trt.TensorIOMode.INPUT else outputs).append(tname)
        if len(inputs) != 1 or not outputs:
            raise ModelLoadError(
                f"{self.path} has inputs {inputs} and outputs {outputs}; an engan engine has one image input "
                "and one image output: build it from `engan export`'s ONNX"
            )
        self._input = inputs[0]
        self._output = self.meta.output_name if self.meta.output_name in outputs else outputs[0]
        self._outputs = outputs
        self._dtypes = {n: trt_dtype_to_numpy(self._engine.get_tensor_dtype(n)) for n in inputs + outputs}
        pmin, popt, pmax = (tuple(int(d) for d in s) for s in self._engine.get_tensor_profile_shape(self._input, 0))
        self.profile = (pmin, popt, pmax)
        self._context = self._engine.create_execution_context()
        self._stream = cuda_check(cudart.cudaStreamCreate(), "cudaStreamCreate")
        self.info = BackendInfo(
            name=self.name,
            device=f"cuda:{index}",
            precision=self.meta.precision or "fp16",
            versions={"tensorrt": trt.__version__, "gpu": gpu_name, "compute_capability": f"{capability[0]}.{capability[1]}"},
            model_path=str(self.path),
            shape_min=pmin,
            shape_max=pmax,
        )

    def _device_buffer(self, name: str, nbytes: int) -> int:
        """A device allocation of at least ``nbytes`` for tensor ``name`` (grown, never shrunk)."""
        ptr, size = self._buffers.get(name, (0, 0))
        if size >= nbytes:
            return ptr
        if ptr:
            cuda_check(self._cudart.cudaFree(ptr), "cudaFree")
        ptr = int(cuda_check(self._cudart.cudaMalloc(nbytes), "cudaMalloc"))
        self._buffers[name] = (ptr, nbytes)
        return ptr

    def _run(self, x: np.ndarray) -> np.ndarray:
        cudart, ctx = self._cudart, self._context
        check_profile(x.shape, self.profile[0], self.profile[2], self.path)
        xin = np.ascontiguousarray(x, dtype=self._dtypes[self._input])
        if not ctx.set_input_shape(self._input, tuple(xin.shape)):
            raise BackendError(f"TensorRT refused input shape {xin.shape} for {self.path}")
        d_in = self._device_buffer(self._input, xin.nbytes)
        ctx.set_tensor_address(self._input, d_in)
        host_out = None
        for name in self._outputs:
            shape = tuple(int(d) for d in ctx.get_tensor_shape(name))
            arr = np.empty(shape, dtype=self._dtypes[name])
            ctx.set_tensor_address(name, self._device_buffer(name, max(arr.nbytes, 1)))
            if name == self._output:
                host_out = arr
        h2d = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        d2h = cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        cuda_check(cudart.cudaMemcpyAsync(d_in, xin.ctypes.data, xin.nbytes, h2d, self._stream), "cudaMemcpyAsync(H2D)")
        if not ctx.execute_async_v3(self._stream):
            raise BackendError(f"TensorRT execution failed for {self.path} on input {xin.shape}")
        assert host_out is not None
        d_out = self._buffers[self._output][0]
        cuda_check(
            cudart.cudaMemcpyAsync(host_out.ctypes.data, d_out, host_out.nbytes, d2h, self._stream),
            "cudaMemcpyAsync(D2H)",
        )
        cuda_check(cudart.cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")
        return host_out.astype(np.float32, copy=False)

    def _close(self) -> None:
        cudart = getattr(self, "_cudart", None)
        if cudart is None:
            return
        for ptr, _ in getattr(self, "_buffers", {}).values():
            if ptr:
                cudart.cudaFree(ptr)
        self._buffers = {}
        if getattr(self, "_stream", None) is not None:
            cudart.cudaStreamDestroy(self._stream)
            self._stream = None
        self._context = self._engine = self._runtime = None
