"""ONNX Runtime backend: whichever ``onnxruntime`` wheel is installed (CPU or -gpu).

* Providers come from ``onnxruntime.get_available_providers()`` filtered by the
  requested device (``cpu`` -> CPU; ``cuda[:N]`` -> CUDA then CPU; the TensorRT
  execution provider only when asked for through ``providers=``), and the session's
  actual providers are checked after it is created: a CUDA request that silently
  lands on the CPU is an error (or, under ``device="auto"``, a warning and a note in
  ``info``).
* Session options are tuned: all graph optimisations, intra-op threads = physical
  cores (overridable), no thread spinning, sequential execution, memory pattern and
  CPU arena on.
* The input/output names and pad multiple come from the model's ``engan.*``
  metadata (:class:`engan.runtime.meta.ArtefactMeta`), not hard-coded. A model
  without engan metadata is accepted only if it has exactly one 4-D float input
  with 3 channels (or a symbolic channel dimension).

``onnxruntime`` is imported when a backend is created, never at module import.
"""
from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from engan.runtime._optional import BackendUnavailable, require
from engan.runtime.backends.base import (
    BackendError, BackendInfo, BackendOptions, BaseBackend, ModelLoadError, model_label,
)
from engan.runtime.meta import PREFIX, ArtefactMeta

CPU_EP = "CPUExecutionProvider"
CUDA_EP = "CUDAExecutionProvider"
TRT_EP = "TensorrtExecutionProvider"

_FLOAT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}

#: ONNX Runtime exception class names that mean "this file is not a loadable model".
_LOAD_ERRORS = {"InvalidProtobuf", "InvalidGraph", "NoModel", "NoSuchFile"}


def physical_cores() -> int:
    """Physical CPU cores this process may use (hyper-threads, affinity and cgroup quota considered)."""
    logical = os.cpu_count() or 1
    try:
        allowed = len(os.sched_getaffinity(0))  # type: ignore[attr-defined]
    except (AttributeError, OSError):
        allowed = logical
    physical = logical
    try:
        cores: set[tuple[str, str]] = set()
        phys = core = None
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, val = line.partition(":")
                key = key.strip()
                if key == "physical id":
                    phys = val.strip()
                elif key == "core id":
                    core = val.strip()
                elif not line.strip():
                    if core is not None:
                        cores.add((phys or "0", core))
                    phys = core = None
        if core is not None:
            cores.add((phys or "0", core))
        if cores:
            physical = len(cores)
    except OSError:
        pass
    quota = logical
    try:
        with open("/sys/fs/cgroup/cpu.max", encoding="utf-8") as f:
            q, period = f.read().split()[:2]
        if q != "max":
            quota = max(1, int(int(q) // int(period)))
    except (OSError, ValueError):
        pass
    # physical cores scaled to the share of logical CPUs we may use
    share = max(1, round(physical * min(allowed, quota) / logical))
    return max(1, min(share, allowed, quota))


def parse_device(device: str) -> tuple[str, int]:
    """``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` -> (kind, index)."""
    d = (device or "auto").strip().lower()
    if d in ("auto", "cpu", "cuda", "gpu"):
        return ("cuda" if d == "gpu" else d), 0
    m = re.fullmatch(r"(cuda|gpu):(\d+)", d)
    if m:
        return "cuda", int(m.group(2))
    raise ValueError(f"unknown device {device!r}; use 'auto', 'cpu', 'cuda' or 'cuda:N'")


def choose_providers(
    available: Sequence[str],
    device: str = "auto",
    providers: Sequence[str] | None = None,
) -> list[Any]:
    """The provider list to request from ONNX Runtime.

    Args:
        available: ``onnxruntime.get_available_providers()``.
        device: ``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda`` or ``cuda:N``.
        providers: an explicit list (e.g. ``["TensorrtExecutionProvider", "CUDAExecutionProvider",
            "CPUExecutionProvider"]``); each must be available. Overrides ``device``.

    Raises:
        BackendUnavailable: the device or a provider is not in this onnxruntime build.
    """
    avail = list(available)
    if providers:
        missing = [p for p in providers if p not in avail]
        if missing:
            raise BackendUnavailable(
                f"ONNX Runtime providers {missing} are not available in this onnxruntime build "
                f"(available: {avail}); install onnxruntime-gpu for CUDA/TensorRT providers"
            )
        return list(providers)
    kind, index = parse_device(device)
    if kind == "cpu" or (kind == "auto" and CUDA_EP not in avail):
        return [CPU_EP]
    if CUDA_EP not in avail:
        raise BackendUnavailable(
            f"device={device!r} needs ONNX Runtime's CUDAExecutionProvider, which this onnxruntime build lacks "
            f"(available: {avail}); install onnxruntime-gpu instead of onnxruntime (never both), "
            "or use device='cpu'"
        )
    cuda_opts = {"device_id": index, "arena_extend_strategy": "kSameAsRequested"}
    return [(CUDA_EP, cuda_opts), CPU_EP]


def _provider_name(p: Any) -> str:
    return p[0] if isinstance(p, tuple) else p


class OrtBackend(BaseBackend):
    """Run an engan ONNX model with ONNX Runtime.

    Args:
        path: the ``.onnx`` file.
        options: :class:`BackendOptions` (or its fields as keywords); this backend reads
            ``device`` (``auto``, ``cpu``, ``cuda`` or ``cuda:N``), ``threads`` (intra-op
            threads, default: physical cores) and ``providers`` (explicit ONNX Runtime
            providers, e.g. to use the TensorRT EP).
    """

    name = "onnxruntime"

    def __init__(self, path: str | os.PathLike, options: BackendOptions | None = None, **overrides: Any) -> None:
        super().__init__()
        opts = BackendOptions.of(options, **overrides)
        device, threads, providers = opts.device, opts.threads, opts.providers
        ort = require("onnxruntime", "the ONNX Runtime backend")
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelLoadError(f"ONNX model not found: {self.path}; pass an .onnx file written by `engan export`")
        requested = choose_providers(ort.get_available_providers(), device, providers)
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.intra_op_num_threads = int(threads) if threads else physical_cores()
        so.inter_op_num_threads = 1
        so.enable_mem_pattern = True
        so.enable_cpu_mem_arena = True
        # Idle intra-op threads sleep instead of spinning: same speed for FP32, faster INT8
        # (1.17x at 400x608 on 2 cores) and no stolen cycles from engan-infer's decode/encode
        # threads or other processes (benchmarks/test_bench_levers.py measures both).
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        so.log_severity_level = 3  # errors only; we report provider fallbacks ourselves
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # ORT warns about providers; we check them below
                self._session = ort.InferenceSession(str(self.path), sess_options=so, providers=requested)
        except Exception as e:  # onnxruntime raises its own pybind exception classes
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            if type(e).__name__ in _LOAD_ERRORS or "Load model" in first or "Protobuf" in first:
                raise ModelLoadError(
                    f"{self.path} is not a loadable ONNX model ({type(e).__name__}: {first}); the file is corrupt, "
                    "truncated or not ONNX: re-run `engan export` or copy the file again"
                ) from None
            raise BackendError(
                f"ONNX Runtime could not create a session for {self.path} with providers "
                f"{[_provider_name(p) for p in requested]} ({type(e).__name__}: {first}); "
                "try device='cpu' or check the GPU driver/CUDA installation"
            ) from None
        actual = tuple(self._session.get_providers())
        wanted = [_provider_name(p) for p in requested]
        self.fallback_note = ""
        if wanted[0] != CPU_EP and wanted[0] not in actual:
            msg = (
                f"ONNX Runtime could not start {wanted[0]} for {self.path} and runs on {list(actual)} instead "
                "(check the CUDA/cuDNN libraries onnxruntime-gpu needs)"
            )
            if parse_device(device)[0] == "auto" and not providers:
                warnings.warn(msg, RuntimeWarning, stacklevel=2)
                self.fallback_note = msg
            else:
                self._session = None
                raise BackendError(msg + "; use device='cpu' to run on the CPU on purpose")
        self.meta, self._input, self._output, self._in_dtype, static = self._read_contract()
        self.engan_model = any(k.startswith(PREFIX) for k in self._session.get_modelmeta().custom_metadata_map)
        on_cuda = actual[0] in (CUDA_EP, TRT_EP)
        index = parse_device(device)[1]
        self.info = BackendInfo(
            name=self.name,
            device=f"cuda:{index}" if on_cuda else "cpu",
            precision=self.meta.precision or "fp32",
            providers=actual,
            versions={"onnxruntime": ort.__version__},
            model_path=str(self.path),
            threads=so.intra_op_num_threads,
            shape_min=static,
            shape_max=static,
        )

    # ------------------------------------------------------------------ contract
    def _read_contract(self) -> tuple[ArtefactMeta, str, str, Any, tuple[int, ...] | None]:
        sess = self._session
        props = dict(sess.get_modelmeta().custom_metadata_map)
        inputs, outputs = sess.get_inputs(), sess.get_outputs()
        is_engan = any(k.startswith(PREFIX) for k in props)
        meta = ArtefactMeta.from_props(props) if is_engan else ArtefactMeta(model_name=model_label(self.path))
        if not meta.model_name:
            meta.model_name = model_label(self.path)
        if len(inputs) != 1:
            raise ModelLoadError(
                f"{self.path} has {len(inputs)} inputs ({[i.name for i in inputs]}); an engan model has one image "
                "input (float32 Nx3xHxW RGB in [0, 1]); export the generator with `engan export`"
            )
        inp = inputs[0]
        if is_engan and inp.name != meta.input_name:
            raise ModelLoadError(
                f"{self.path}: its metadata names the input '{meta.input_name}' but the graph's input is "
                f"'{inp.name}'; the file was edited after `engan export`: export it again"
            )
        if inp.type not in _FLOAT_TYPES:
            raise ModelLoadError(
                f"{self.path} takes {inp.type} input; an engan model takes float32 (or float16) Nx3xHxW RGB in "
                "[0, 1]: export the generator with `engan export`"
            )
        shape = list(inp.shape)
        if len(shape) != 4:
            raise ModelLoadError(
                f"{self.path} takes a {len(shape)}-D input {shape}; an engan model takes 4-D Nx3xHxW RGB: "
                "export the generator with `engan export`"
            )
        if isinstance(shape[1], int) and shape[1] != 3:
            raise ModelLoadError(
                f"{self.path} takes {shape[1]} input channels; engan models take 3 (RGB): pass a model exported "
                "by `engan export`"
            )
        self._check_fixed_dims(shape, int(meta.pad_multiple or 16))
        if is_engan and (meta.layout.upper() != "NCHW" or meta.color.upper() != "RGB"):
            raise ModelLoadError(
                f"{self.path} declares layout {meta.layout} / colour {meta.color}; this runtime feeds NCHW RGB: "
                "re-export with `engan export`"
            )
        names = [o.name for o in outputs]
        if is_engan and meta.output_name in names:
            out = meta.output_name
        elif is_engan:
            raise ModelLoadError(
                f"{self.path}: its metadata names the output '{meta.output_name}' but the graph outputs {names}; "
                "export it again with `engan export`"
            )
        else:
            out = names[0]
            warnings.warn(
                f"{self.path} has no engan metadata; assuming float RGB [0, 1] NCHW in and out "
                f"(input '{inp.name}', output '{out}')",
                RuntimeWarning,
                stacklevel=3,
            )
            meta.input_name, meta.output_name = inp.name, out
        static = None
        if all(isinstance(d, int) for d in shape):
            static = tuple(int(d) for d in shape)
        return meta, inp.name, out, _FLOAT_TYPES[inp.type], static

    def _check_fixed_dims(self, shape: list, multiple: int) -> None:
        """Refuse fixed (non-symbolic) dimensions the pre/post-processing cannot feed.

        Served: all of N/H/W free (engan's contract), a fully fixed ``1x3xHxW`` graph with
        H and W multiples of ``multiple`` (images are padded/tiled to exactly that size), and
        a batch fixed to 1 with free H/W (batches are run one image at a time).
        """
        n, h, w = shape[0], shape[2], shape[3]
        shown = " x ".join(str(d) for d in shape)
        fix = "export the generator with `engan export` (free N, H and W)"
        if isinstance(h, int) != isinstance(w, int) or (isinstance(h, int) and not isinstance(n, int)):
            raise ModelLoadError(
                f"{self.path} takes input {shown}, with some of N/H/W fixed and others free; the runtime feeds "
                f"graphs whose N, H and W are all free, or a fully fixed 1 x 3 x H x W: {fix}"
            )
        if isinstance(n, int) and n != 1:
            raise ModelLoadError(
                f"{self.path} takes input {shown}, a fixed batch of {n}; the runtime feeds one image per call to "
                f"graphs with a fixed batch, so it must be 1: {fix}"
            )
        if isinstance(h, int) and (h % multiple or w % multiple or h <= 0 or w <= 0):
            raise ModelLoadError(
                f"{self.path} takes a fixed {h}x{w} input, which is not a multiple of {multiple}; images are padded "
                f"to multiples of {multiple}, so they can never match it: {fix}"
            )
        self._one_per_call = isinstance(n, int)

    # ------------------------------------------------------------------ running
    def _run(self, x: np.ndarray) -> np.ndarray:
        static = self.info.shape_min
        if static is not None and tuple(x.shape) != static:
            raise BackendError(
                f"{self.path} is a static-shape graph for {static}, got {tuple(x.shape)}; export with dynamic "
                "shapes (`engan export`, the default) or use --tile so every tile matches"
            )
        if getattr(self, "_one_per_call", False) and x.shape[0] > 1:  # batch fixed to 1 in the graph
            return np.concatenate([self._run(x[i : i + 1]) for i in range(x.shape[0])])
        feed = x if self._in_dtype == np.float32 else x.astype(self._in_dtype)
        try:
            y = self._session.run([self._output], {self._input: feed})[0]
        except Exception as e:  # onnxruntime's own pybind exception classes
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise BackendError(
                f"ONNX Runtime failed to run {self.path} on input {tuple(x.shape)} ({type(e).__name__}: {first})"
            ) from None
        return np.asarray(y, dtype=np.float32)

    def _close(self) -> None:
        self._session = None
