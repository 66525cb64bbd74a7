"""Levers of the ONNX Runtime CPU path, each measured against the runtime's default session.

Rows (group ``levers``): the runtime's own ``OrtBackend`` (the default: all graph
optimisations, physical-core threads, no thread spinning), then sessions that change
one thing: thread spinning, intra-op threads, graph optimisation level, the CPU memory
arena / memory pattern, IO binding into a preallocated output, and the INT8 model with
the same levers; and batch size for CPU throughput. All variants of
one test run interleaved in the same rounds. Parity against the default is asserted
(FP32 variants must stay >= 50 dB, INT8 >= its floor); speed is only reported.

Size: the LOL photo size 400x608 (HxW) in full mode, 256x256 in ``--quick``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from benchmarks.images import bench_inputs
from benchmarks.measure import percentile, time_interleaved
from benchmarks.runners import PARITY_DB, Runner, RunnerSpec
from benchmarks.session import BenchSession, settings_of

FULL_HW, QUICK_HW = (400, 608), (256, 256)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "lever_preset" in metafunc.fixturenames:
        metafunc.parametrize("lever_preset", settings_of(metafunc.config).presets)


def ort_session_runner(name: str, path: Path, precision: str, threads: int, *, opt_level: str = "all",
                       spinning: bool = False, arena: bool = True, mem_pattern: bool = True,
                       io_binding: bool = False) -> Runner:
    """A CPU ONNX Runtime session with one set of options, as a :class:`Runner`."""
    import onnxruntime as ort

    levels = {"basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
              "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
              "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}
    so = ort.SessionOptions()
    so.graph_optimization_level = levels[opt_level]
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.enable_cpu_mem_arena = arena
    so.enable_mem_pattern = mem_pattern
    so.log_severity_level = 3
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    spec = RunnerSpec(f"lever-{precision}-{name}", f"onnxruntime CPU [{name}]", precision, "cpu")
    if not io_binding:
        return Runner(spec, lambda x: session.run(["output"], {"input": x})[0])
    binding = session.io_binding()
    outputs: dict[tuple[int, ...], np.ndarray] = {}

    def run(x: np.ndarray) -> np.ndarray:
        out = outputs.get(x.shape)
        if out is None:
            out = outputs[x.shape] = np.empty(x.shape, dtype=np.float32)
        binding.bind_cpu_input("input", x)
        binding.bind_output("output", "cpu", 0, np.float32, list(x.shape), out.ctypes.data)
        session.run_with_iobinding(binding)
        return out

    return Runner(spec, run)


def runtime_default(path: Path, precision: str, threads: int) -> Runner:
    """The runtime's own backend (what ``engan-infer`` runs): the reference of the lever rows."""
    from engan.runtime.backends.ort import OrtBackend

    backend = OrtBackend(path, device="cpu", threads=threads)
    spec = RunnerSpec(f"lever-{precision}-runtime-default", "onnxruntime CPU [engan.runtime default]",
                      precision, "cpu", reference=True)
    return Runner(spec, backend.run, close=backend.close)


def _measure(bench: BenchSession, runners: list[Runner], hw: tuple[int, int], batch: int,
             preset: str, variants: dict[str, str]) -> list[dict[str, Any]]:
    st = bench.settings
    inputs, source = bench_inputs(hw, st.parity_images, batch)
    for r in runners:
        r.run(inputs[0])  # warm-up (+ estimate of one round)
    rounds = st.rounds or (3 if st.quick else 7)
    try:
        samples = time_interleaved(runners, inputs, rounds, warmup=1)
    finally:
        for r in runners:
            r.close()
    model = bench.model(preset)
    ref_ips = batch / percentile(samples[runners[0].spec.key].latencies, 50)
    ref_cpu_ips = batch / percentile(samples[runners[0].spec.key].cpu_seconds, 50)
    rows = []
    for r in runners:
        s = samples[r.spec.key]
        p50 = percentile(s.latencies, 50)
        b = int(r.extra.get("batch", batch))
        rows.append({
            "group": "levers", "key": r.spec.key, "backend": r.spec.backend, "precision": r.spec.precision,
            "device": "cpu", "preset": preset, "height": hw[0], "width": hw[1], "batch": b,
            "variant": variants.get(r.spec.key, r.spec.backend), "rounds": rounds,
            "p50_ms": round(p50 * 1e3, 2), "p90_ms": round(percentile(s.latencies, 90) * 1e3, 2),
            "throughput_ips": round(b / p50, 3), "speedup_vs_default": round((b / p50) / ref_ips, 3),
            "cpu_ms": round(percentile(s.cpu_seconds, 50) * 1e3, 2),
            "cpu_speedup_vs_default": round((b / percentile(s.cpu_seconds, 50)) / ref_cpu_ips, 3),
            "psnr_vs_default_db": 999.0 if s.psnr_db == float("inf") else round(s.psnr_db, 2),
            "max_abs_vs_default": round(s.max_abs, 6),
            "achieved_gflops": round(model.gflop(hw[0], hw[1], b) / p50, 1),
            "weights": model.weights_source, "inputs": source,
        })
    return rows


def _check(rows: list[dict[str, Any]], reference_precision: str) -> None:
    for row in rows:
        floor = PARITY_DB["int8" if "int8" in (row["precision"], reference_precision) else "fp32"]
        assert row["psnr_vs_default_db"] >= floor, (
            f"{row['variant']} ({row['precision']}) at {row['height']}x{row['width']}: PSNR vs the runtime default "
            f"{row['psnr_vs_default_db']} dB < {floor} dB"
        )


def test_ort_session_options(bench: BenchSession, lever_preset: str) -> None:
    st = bench.settings
    hw = QUICK_HW if st.quick else FULL_HW
    model = bench.model(lever_preset)
    t = st.threads
    make: list[tuple[str, Callable[[], Runner]]] = [
        ("engan.runtime default (OrtBackend)", lambda: runtime_default(model.onnx_fp32, "fp32", t)),
        ("thread spinning on", lambda: ort_session_runner("spin", model.onnx_fp32, "fp32", t, spinning=True)),
        ("1 intra-op thread", lambda: ort_session_runner("1thread", model.onnx_fp32, "fp32", 1)),
        ("opt level basic", lambda: ort_session_runner("basic", model.onnx_fp32, "fp32", t, opt_level="basic")),
        ("opt level extended", lambda: ort_session_runner("extended", model.onnx_fp32, "fp32", t,
                                                          opt_level="extended")),
        ("arena + mem pattern off", lambda: ort_session_runner("noarena", model.onnx_fp32, "fp32", t,
                                                               arena=False, mem_pattern=False)),
        ("IO binding, preallocated output", lambda: ort_session_runner("iobind", model.onnx_fp32, "fp32", t,
                                                                       io_binding=True)),
    ]
    if model.onnx_int8 is not None:
        make += [
            ("INT8 (OrtBackend)", lambda: runtime_default(model.onnx_int8, "int8", t)),
            ("INT8, thread spinning on", lambda: ort_session_runner("int8-spin", model.onnx_int8, "int8", t,
                                                                    spinning=True)),
            ("INT8, IO binding", lambda: ort_session_runner("int8-iobind", model.onnx_int8, "int8", t,
                                                            io_binding=True)),
        ]
    else:
        bench.record_skip("INT8 levers", model.int8_error or "no INT8 model")
    runners = [factory() for _, factory in make]
    # runtime_default of the INT8 model is a second 'reference' spec: give it its own key
    variants = {r.spec.key: label for r, (label, _) in zip(runners, make)}
    for r in runners[1:]:
        if r.spec.reference:
            r.spec = RunnerSpec(r.spec.key + "-b", r.spec.backend, r.spec.precision, "cpu")
            variants[r.spec.key] = "INT8 (OrtBackend)"
    rows = _measure(bench, runners, hw, 1, lever_preset, variants)
    for row in rows:
        bench.record(row)
    _check(rows, "fp32")


def batched(runner: Runner, batch: int, label: str) -> Runner:
    """Run ``runner`` on ``batch`` copies of the input, returning the first image.

    The stacked batch is cached per input (the stacking is not timed after the first
    call on an input); returning image 0 lets parity compare it with the batch-1 output.
    """
    stacks: dict[int, np.ndarray] = {}

    def run(x: np.ndarray) -> np.ndarray:
        key = id(x)
        if key not in stacks:
            stacks.clear()
            stacks[key] = np.ascontiguousarray(np.repeat(x, batch, axis=0))
        return runner.run(stacks[key])[:1]

    spec = RunnerSpec(f"{runner.spec.key}-batch{batch}", label, runner.spec.precision, "cpu")
    return Runner(spec, run, close=runner.close, extra={"batch": batch})


def test_cpu_batch_throughput(bench: BenchSession, lever_preset: str) -> None:
    """Images/s of the runtime's ORT backend at batch 1, 2, 4 (FP32 and INT8): does batching pay on a CPU?"""
    st = bench.settings
    hw = QUICK_HW if st.quick else FULL_HW
    batches = (2,) if st.quick else (2, 4)
    model = bench.model(lever_preset)
    paths = [("fp32", model.onnx_fp32)] + ([("int8", model.onnx_int8)] if model.onnx_int8 else [])
    for precision, path in paths:
        ref = runtime_default(path, precision, st.threads)
        runners = [ref] + [batched(runtime_default(path, precision, st.threads), b,
                                   f"{precision} OrtBackend, batch {b}") for b in batches]
        variants = {ref.spec.key: f"{precision} OrtBackend, batch 1"}
        variants.update({r.spec.key: r.spec.backend for r in runners[1:]})
        rows = _measure(bench, runners, hw, 1, lever_preset, variants)
        for row in rows:
            bench.record(row)
        _check(rows, precision)
