"""OpenVINO rows (engan[openvino]): FP32, BF16 (CPUs with AMX/AVX512-BF16), OpenVINO's default
(dynamic shape, its own precision choice) and an NNCF INT8 IR, against eager FP32 and ONNX Runtime.

One interleaved run per (preset, size): eager FP32 (the reference), ONNX Runtime FP32 and INT8
(the runtime's default on a CPU), then every OpenVINO row, all on the same inputs, so each
row's speedup vs eager and vs ONNX Runtime INT8 (``vs_ort_int8``) comes from the same rounds.
BF16 rows report their share of the measured bf16 matmul peak (``pct_of_peak``). These are
the figures behind :data:`engan.runtime.backends.openvino.PREFER_OPENVINO_WHEN`.
"""
from __future__ import annotations

import pytest

from benchmarks.images import bench_inputs
from benchmarks.measure import percentile, time_interleaved
from benchmarks.runners import PARITY_DB, SPEC_BY_KEY, Runner, RunnerSpec, build_runner
from benchmarks.session import BenchSession, Measured, settings_of
from engan.runtime._optional import is_installed

OV_SPECS: tuple[RunnerSpec, ...] = (
    RunnerSpec("ov-fp32", "openvino CPU (static shapes)", "fp32", "cpu"),
    RunnerSpec("ov-bf16", "openvino CPU (static shapes)", "bf16", "cpu"),
    RunnerSpec("ov-default", "openvino CPU default (dynamic shape)", "auto", "cpu"),
    RunnerSpec("ov-int8", "openvino CPU NNCF INT8 IR (static shapes)", "int8", "cpu"),
)
#: ONNX Runtime rows measured in the same rounds (the runtime's CPU default is ort-int8).
ORT_KEYS = ("ort-fp32", "ort-int8")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "ov_case" in metafunc.fixturenames:
        st = settings_of(metafunc.config)
        cases = [(p, hw) for p in st.presets for hw in st.sizes]
        metafunc.parametrize("ov_case", cases, ids=[f"{p}-{h}x{w}" for p, (h, w) in cases])


def _skip_reason(spec: RunnerSpec) -> str | None:
    from engan.runtime.cpu import bf16_capable, cpu_info

    if spec.key == "ov-bf16" and not bf16_capable():
        return (f"CPU ({cpu_info().describe()}) has no native bf16: OpenVINO would emulate it (the backend refuses "
                "precision='bf16' here)")
    if spec.key == "ov-int8" and not is_installed("nncf"):
        return "nncf not installed (pip install nncf)"
    return None


def _ov_runner(spec: RunnerSpec, bench: BenchSession, preset: str) -> Runner:
    from engan.runtime.backends.openvino import OpenVINOBackend

    model, threads = bench.model(preset), bench.settings.threads
    if spec.key == "ov-default":
        return _ov_default_runner(spec, model.onnx_fp32, threads)
    path = model.onnx_fp32
    if spec.key == "ov-int8":
        path = _nncf_ir(bench, preset)
    precision = {"ov-fp32": "fp32", "ov-bf16": "bf16"}.get(spec.key)
    be = OpenVINOBackend(path, threads=threads, precision=precision)
    return Runner(spec, be.run, close=be.close, note=f"engan.runtime OpenVINOBackend, hint {be.hint}, "
                                                     f"openvino {be.info.versions['openvino']}")


def _ov_default_runner(spec: RunnerSpec, onnx_path, threads: int) -> Runner:
    """What a plain ``core.compile_model(onnx)`` gives: one dynamic-shape model, OpenVINO's own precision."""
    import numpy as np
    import openvino as ov

    compiled = ov.Core().compile_model(str(onnx_path), "CPU", {"INFERENCE_NUM_THREADS": threads})
    request = compiled.create_infer_request()
    hint = compiled.get_property("INFERENCE_PRECISION_HINT")

    def run(x):
        request.infer({0: x})
        return np.array(request.get_output_tensor(0).data)

    return Runner(spec, run, note=f"openvino default compile, dynamic shape, precision {hint}")


def _nncf_ir(bench: BenchSession, preset: str):
    """The NNCF INT8 IR of ``preset`` (made once per session, on the --int8 calibration images)."""
    from engan.export.onnx import read_metadata
    from engan.export.openvino import quantize_ir_int8

    model = bench.model(preset)
    target = bench.workdir / preset / "model.ov-int8.xml"
    if not target.is_file():
        quantize_ir_int8(model.onnx_fp32, target, read_metadata(model.onnx_fp32),
                         num_images=bench.settings.calib_images)
    return target


def test_openvino_rows(bench: BenchSession, ov_case) -> None:
    if not is_installed("openvino"):
        bench.record_skip("openvino", "openvino not installed (pip install 'engan[openvino]')")
        pytest.skip("openvino not installed (pip install 'engan[openvino]')")
    preset, size = ov_case
    st, model = bench.settings, bench.model(preset)
    specs = [SPEC_BY_KEY["eager-fp32"]] + [SPEC_BY_KEY[k] for k in ORT_KEYS if bench.skip_reason(SPEC_BY_KEY[k], preset)
                                            is None]
    runners: list[Runner] = []
    for spec in specs:
        runners.append(build_runner(spec, model, st.threads, bench.workdir))
    for spec in OV_SPECS:
        reason = _skip_reason(spec)
        if reason:
            bench.record_skip(f"{spec.backend} {spec.precision}", reason)
            continue
        runners.append(_ov_runner(spec, bench, preset))
    inputs, source = bench_inputs(size, st.parity_images)
    warm = Measured()
    runners, per_round = bench._warm(runners, inputs[0], warm)
    assert not warm.errors, warm.errors
    rounds = st.rounds_for(per_round)
    try:
        samples = time_interleaved(runners, inputs, rounds, warmup=0)
    finally:
        for r in runners:
            r.close()
    ref = samples["eager-fp32"]
    ref_p50, ref_cpu = percentile(ref.latencies, 50), percentile(ref.cpu_seconds, 50)
    int8_p50 = percentile(samples["ort-int8"].latencies, 50) if "ort-int8" in samples else None
    for runner in runners[1:]:
        spec = runner.spec
        # memory: the fresh-process probe knows only the shared runner table (test_bench_backends has ORT's)
        bench._memory[(preset, spec.key)] = ({}, "not measured in the OpenVINO run")
        row = bench._row(model, runner, samples[spec.key], size, 1, ref_p50, ref_cpu, rounds, source)
        row["group"] = "openvino"
        if int8_p50:
            row["vs_ort_int8"] = round(int8_p50 / percentile(samples[spec.key].latencies, 50), 3)
        bench.record(row)
        if spec.key.startswith("ov-"):
            floor = PARITY_DB["bf16" if spec.precision == "auto" else spec.precision]
            assert row["psnr_vs_eager_db"] >= floor, (
                f"{spec.backend} {spec.precision} on {preset} at {size[0]}x{size[1]}: PSNR vs eager "
                f"{row['psnr_vs_eager_db']} dB < {floor} dB")
