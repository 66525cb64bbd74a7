"""The benchmark's "% peak": every row is compared with the measured peak of its own device."""
from __future__ import annotations

import pytest

from benchmarks.machine import measure_gpu_peak_gflops, peak_for
from benchmarks.report import markdown_report

CPU_PEAK = {"fp32": 100.0, "fp32_conv": 80.0, "bf16": 40.0, "method": "cpu"}
GPU_PEAK = {"fp32": 50000.0, "fp16": 600000.0, "method": "cuda events"}


@pytest.mark.parametrize("device, precision, expected", [
    ("cpu", "fp32", (100.0, "fp32")), ("cpu", "int8", (100.0, "fp32")), ("cpu", "bf16", (40.0, "bf16")),
    ("cuda", "fp32", (50000.0, "gpu fp32")), ("cuda", "fp16", (600000.0, "gpu fp16")),
])
def test_rows_use_the_peak_of_their_device_and_precision(device, precision, expected):
    assert peak_for({"peak_gflops": CPU_PEAK, "gpu_peak_gflops": GPU_PEAK}, device, precision) == expected


def test_gpu_rows_never_fall_back_to_the_cpu_peak():
    # The H200 run of 2026-11-26 divided GPU GFLOP/s by the CPU's peak and printed "113 %".
    assert peak_for({"peak_gflops": CPU_PEAK}, "cuda", "fp16") == (None, None)
    assert peak_for({"peak_gflops": CPU_PEAK, "gpu_peak_gflops": None}, "cuda", "fp32") == (None, None)
    assert peak_for({}, "cpu", "fp32") == (None, None)


def test_gpu_peak_is_none_without_a_cuda_gpu():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        peak = measure_gpu_peak_gflops(quick=True)
        assert peak["fp16"] > peak["fp32"] > 0
    else:
        assert measure_gpu_peak_gflops(quick=True) is None


def test_report_header_names_the_gpu_peak_only_when_measured():
    machine = {"cpu": {"model_name": "X", "microarchitecture": "", "flags": {}, "logical_cpus": 2}, "threads": 2,
               "peak_gflops": CPU_PEAK, "libraries": {}}
    assert "measured GPU peak" not in markdown_report([], [], machine, {"mode": "quick"})
    machine.update(gpu={"name": "NVIDIA H200", "capability": "9.0", "memory_gib": 139.8}, gpu_peak_gflops=GPU_PEAK)
    md = markdown_report([], [], machine, {"mode": "full"})
    assert "measured GPU peak: fp32 matmul 50000.0 GFLOP/s, fp16 matmul 600000.0 GFLOP/s (cuda events)" in md
