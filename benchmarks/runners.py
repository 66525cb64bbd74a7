"""Every backend/precision the benchmark can run, as a callable on float32 NCHW arrays.

Each :class:`RunnerSpec` says what it is; :func:`skip_reason` says why it cannot run
here (pytest reports it as the skip reason); :func:`build_runner` makes the
:class:`Runner`. Runners take and return numpy float32 ``N x 3 x H x W`` arrays in
[0, 1], exactly like the runtime's backends, and the ONNX Runtime / TensorRT rows *are*
the runtime's backends (``engan.runtime.backends``): the benchmark measures what users
run. GPU runners include the host<->device copies in their time (what a caller with
numpy images sees).

Each device group has its own reference (eager FP32 on that device): timing rounds
interleave a group's runners with its reference, and speedups and parity are against it.
"""
from __future__ import annotations

import importlib.util
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from benchmarks.models import BenchModel


@dataclass(frozen=True)
class RunnerSpec:
    """One row kind of the results table.

    Attributes:
        key: stable id (test ids, JSON).
        backend: what the table shows.
        precision: ``fp32``, ``int8``, ``fp16`` or ``bf16``.
        device: ``cpu`` or ``cuda``.
        full_only: measured only in full mode (e.g. torch.compile: ~30 s per shape).
        reference: the group's eager FP32 reference.
    """

    key: str
    backend: str
    precision: str
    device: str
    full_only: bool = False
    reference: bool = False


SPECS: tuple[RunnerSpec, ...] = (
    RunnerSpec("eager-fp32", "torch eager", "fp32", "cpu", reference=True),
    RunnerSpec("eager-cl-fp32", "torch eager channels_last", "fp32", "cpu"),
    RunnerSpec("compile-fp32", "torch.compile (inductor)", "fp32", "cpu", full_only=True),
    RunnerSpec("eager-bf16", "torch eager autocast", "bf16", "cpu"),
    RunnerSpec("ort-fp32", "onnxruntime CPU", "fp32", "cpu"),
    RunnerSpec("ort-int8", "onnxruntime CPU", "int8", "cpu"),
    RunnerSpec("cuda-eager-fp32", "torch eager", "fp32", "cuda", reference=True),
    RunnerSpec("cuda-eager-fp16", "torch eager autocast", "fp16", "cuda"),
    RunnerSpec("cuda-graph-fp16", "torch CUDA graph + autocast", "fp16", "cuda"),
    RunnerSpec("ort-cuda-fp32", "onnxruntime CUDA EP", "fp32", "cuda"),
    RunnerSpec("ort-trt-fp16", "onnxruntime TensorRT EP", "fp16", "cuda"),
    RunnerSpec("trt-fp32", "TensorRT", "fp32", "cuda"),
    RunnerSpec("trt-fp16", "TensorRT", "fp16", "cuda"),
)
SPEC_BY_KEY = {s.key: s for s in SPECS}
#: Lowest PSNR (dB) against the group's eager FP32 reference that a row may show.
#: INT8: the measured safe floor with trained-like weights is ~33 dB (see docs/int8.md).
PARITY_DB = {"fp32": 50.0, "fp16": 35.0, "bf16": 30.0, "int8": 30.0}


@dataclass
class Runner:
    """A ready-to-time backend: ``run(x) -> y`` on numpy arrays, ``close()`` when done."""

    spec: RunnerSpec
    run: Callable[[np.ndarray], np.ndarray]
    close: Callable[[], None] = lambda: None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def reference_of(spec: RunnerSpec) -> RunnerSpec:
    """The eager FP32 reference of ``spec``'s device group."""
    return next(s for s in SPECS if s.reference and s.device == spec.device)


# --------------------------------------------------------------------------- availability
def _cuda_reason() -> str | None:
    try:
        import torch
    except ImportError:
        return "no CUDA GPU (torch not installed)"
    if torch.version.cuda is None:
        return f"no CUDA GPU (torch {torch.__version__} is a CPU-only build)"
    if not torch.cuda.is_available():
        return "no CUDA GPU visible (torch.cuda.is_available() is False)"
    return None


def _ort_provider_reason(provider: str) -> str | None:
    import onnxruntime as ort

    if provider not in ort.get_available_providers():
        return (f"onnxruntime {ort.__version__} has no {provider} (available: {ort.get_available_providers()}); "
                "install onnxruntime-gpu on a CUDA machine")
    return None


def _trt_reason() -> str | None:
    if importlib.util.find_spec("tensorrt") is None:
        return "tensorrt not installed (pip install 'engan[trt]' on a CUDA machine)"
    from engan.export.tensorrt import probe_environment, skip_reason

    return skip_reason(probe_environment())


def skip_reason(spec: RunnerSpec, model: BenchModel | None, quick: bool, cpu: dict[str, Any]) -> str | None:
    """Why ``spec`` cannot run here (None when it can)."""
    if spec.full_only and quick:
        return f"{spec.backend} runs in full mode only (compiling takes ~30 s per shape); run without --quick"
    if spec.device == "cuda":
        reason = _cuda_reason()
        if reason:
            return reason
    if spec.key == "eager-bf16":
        flags = cpu["flags"]
        if not (flags.get("avx512_bf16") or flags.get("amx_bf16")):
            return (f"CPU ({cpu['model_name']}) has no native bf16 (no AVX-512 BF16/AMX): bf16 is emulated and "
                    "far slower than fp32 here (compare machine.peak_gflops bf16 vs fp32 in the results)")
    if spec.key == "compile-fp32" and shutil.which("g++") is None and shutil.which("c++") is None:
        return "torch.compile (inductor) needs a C++ compiler (g++) on the CPU"
    if spec.key == "ort-int8" and model is not None and model.onnx_int8 is None:
        return model.int8_error or "no INT8 model"
    if spec.key == "ort-cuda-fp32":
        return _ort_provider_reason("CUDAExecutionProvider")
    if spec.key == "ort-trt-fp16":
        return _ort_provider_reason("TensorrtExecutionProvider")
    if spec.key.startswith("trt-"):
        return _trt_reason()
    return None


# --------------------------------------------------------------------------- builders
def _torch_runner(spec: RunnerSpec, model: BenchModel, threads: int) -> Runner:
    import torch

    from engan.models.checkpoint import load_generator

    torch.set_num_threads(threads)
    device = torch.device(spec.device)
    net = load_generator(model.weights).to(device).eval()
    channels_last = spec.key == "eager-cl-fp32"
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    if spec.key == "compile-fp32":
        net = torch.compile(net, dynamic=False)
    amp = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(spec.precision)
    cuda = spec.device == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = False  # the reference is true FP32
        torch.backends.cudnn.allow_tf32 = False

    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode(), torch.autocast(spec.device, dtype=amp or torch.float32, enabled=amp is not None):
            t = torch.from_numpy(x).to(device).contiguous(memory_format=fmt)
            return net(t).float().cpu().numpy()

    return Runner(spec, run, note=f"torch {torch.__version__}, {threads} threads" if not cuda else "")


def _cuda_graph_runner(spec: RunnerSpec, model: BenchModel) -> Runner:
    """FP16 autocast captured in a CUDA graph per input shape (static buffers, one replay per call)."""
    import torch

    from engan.models.checkpoint import load_generator

    net = load_generator(model.weights).cuda().eval()
    graphs: dict[tuple[int, ...], tuple[Any, torch.Tensor, torch.Tensor]] = {}

    def capture(shape: tuple[int, ...]):
        static_in = torch.zeros(shape, device="cuda")
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream), torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16):
            for _ in range(2):
                net(static_in)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph), torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16):
            static_out = net(static_in)
        return graph, static_in, static_out

    def run(x: np.ndarray) -> np.ndarray:
        key = tuple(x.shape)
        if key not in graphs:
            graphs[key] = capture(key)
        graph, static_in, static_out = graphs[key]
        static_in.copy_(torch.from_numpy(x), non_blocking=False)
        graph.replay()
        return static_out.float().cpu().numpy()

    return Runner(spec, run, close=graphs.clear)


def _ort_runner(spec: RunnerSpec, model: BenchModel, threads: int) -> Runner:
    from engan.runtime.backends.ort import OrtBackend

    path = model.onnx_int8 if spec.precision == "int8" else model.onnx_fp32
    device = "cpu" if spec.device == "cpu" else "cuda"
    backend = OrtBackend(path, device=device, threads=threads if spec.device == "cpu" else None)
    return Runner(spec, backend.run, close=backend.close,
                  note=f"engan.runtime OrtBackend, providers {list(backend.info.providers)}")


def _ort_trt_runner(spec: RunnerSpec, model: BenchModel, workdir: Path) -> Runner:
    import onnxruntime as ort

    cache = workdir / "ort-trt-cache"
    cache.mkdir(parents=True, exist_ok=True)
    trt_opts = {"trt_fp16_enable": True, "trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache)}
    so = ort.SessionOptions()
    so.log_severity_level = 3
    session = ort.InferenceSession(str(model.onnx_fp32), so, providers=[
        ("TensorrtExecutionProvider", trt_opts), "CUDAExecutionProvider", "CPUExecutionProvider"])

    def run(x: np.ndarray) -> np.ndarray:
        return session.run(["output"], {"input": x})[0]

    return Runner(spec, run, note="TensorRT EP fp16 with engine cache")


def _trt_runner(spec: RunnerSpec, model: BenchModel, workdir: Path, min_hw: tuple[int, int],
                max_hw: tuple[int, int], max_batch: int) -> Runner:
    """Build (once per precision and profile) an engine with the exporter and run it with the runtime backend."""
    import dataclasses
    import json

    from engan.export.profile import ShapeProfile
    from engan.export.tensorrt import build_engine, probe_environment
    from engan.runtime.backends.trt import TrtBackend
    from engan.runtime.meta import ArtefactMeta

    fp16 = spec.precision == "fp16"
    engine = workdir / f"{model.preset}.{spec.precision}.{max_hw[0]}x{max_hw[1]}b{max_batch}.engine"
    if not engine.is_file():
        opt_hw = tuple(max(lo, min(hi, o)) for lo, o, hi in zip(min_hw, (400, 608), max_hw))
        profile = ShapeProfile(min_hw=min_hw, opt_hw=opt_hw, max_hw=max_hw, max_batch=max_batch)
        build_engine(model.onnx_fp32, engine, profile, fp16=fp16, log=lambda s: None)
        env = probe_environment()
        side = dataclasses.asdict(ArtefactMeta(preset=model.preset, precision=spec.precision))
        side.update({"gpu_name": env.gpu_name, "compute_capability": env.compute_capability,
                     "trt_version": env.trt_version})
        engine.with_suffix(".json").write_text(json.dumps(side), encoding="utf-8")
    backend = TrtBackend(engine, device="cuda", check_sidecar=False)
    return Runner(spec, backend.run, close=backend.close, note=f"engine {engine.name}")


def build_runner(spec: RunnerSpec, model: BenchModel, threads: int, workdir: Path,
                 min_hw: tuple[int, int] = (256, 256), max_hw: tuple[int, int] = (1088, 1920),
                 max_batch: int = 1) -> Runner:
    """Make the runner of ``spec`` (call :func:`skip_reason` first)."""
    if spec.key in ("ort-fp32", "ort-int8", "ort-cuda-fp32"):
        return _ort_runner(spec, model, threads)
    if spec.key == "ort-trt-fp16":
        return _ort_trt_runner(spec, model, workdir)
    if spec.key.startswith("trt-"):
        return _trt_runner(spec, model, workdir, min_hw, max_hw, max_batch)
    if spec.key == "cuda-graph-fp16":
        return _cuda_graph_runner(spec, model)
    return _torch_runner(spec, model, threads)
