"""One row per (preset, size, backend/precision): latency, throughput, memory, speedup, parity.

Absent backends skip with the reason. Every present one must stay within the parity
threshold of its precision against eager FP32 (:data:`benchmarks.runners.PARITY_DB`);
speed is reported, never asserted.
"""
from __future__ import annotations

import pytest

from benchmarks.runners import PARITY_DB, SPECS, RunnerSpec
from benchmarks.session import GPU_BATCHES, BenchSession, settings_of

#: The size of the GPU best-batch sweep (HxW of a 608x400 photo padded to 16).
THROUGHPUT_HW = (400, 608)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    st = settings_of(metafunc.config)
    if "case" in metafunc.fixturenames:
        cases = [(p, hw, s) for p in st.presets for hw in st.sizes for s in SPECS]
        metafunc.parametrize("case", cases, ids=[f"{p}-{h}x{w}-{s.key}" for p, (h, w), s in cases])
    if "gpu_preset" in metafunc.fixturenames:
        metafunc.parametrize("gpu_preset", st.presets)


def _label(spec: RunnerSpec) -> str:
    return f"{spec.backend} {spec.precision} ({spec.device})"


def test_backend(bench: BenchSession, case: tuple[str, tuple[int, int], RunnerSpec]) -> None:
    preset, (h, w), spec = case
    reason = bench.skip_reason(spec, preset)
    if reason:
        bench.record_skip(_label(spec), reason)
        pytest.skip(reason)
    measured = bench.measured(preset, (h, w), spec.device)
    if spec.key in measured.errors:
        pytest.fail(f"{_label(spec)} failed on {preset} at {h}x{w} (HxW): {measured.errors[spec.key]}")
    row = measured.rows[spec.key]
    bench.record(row)
    floor = PARITY_DB[spec.precision]
    assert row["psnr_vs_eager_db"] >= floor, (
        f"{_label(spec)} on {preset} at {h}x{w}: PSNR vs eager FP32 {row['psnr_vs_eager_db']} dB < {floor} dB "
        f"(max |Δ| {row['max_abs_vs_eager']}, worst image {row['psnr_worst_image_db']} dB)"
    )
    assert row["throughput_ips"] > 0 and row["p90_ms"] >= row["p50_ms"] > 0


def test_gpu_best_batch(bench: BenchSession, gpu_preset: str) -> None:
    """On a GPU: every CUDA runner at batches 1..16 (400x608); the best-throughput batch becomes a row."""
    spec = next(s for s in SPECS if s.device == "cuda" and s.reference)
    reason = bench.skip_reason(spec, gpu_preset)
    if reason:
        pytest.skip(reason)
    best: dict[str, dict] = {}
    for batch in GPU_BATCHES:
        try:
            measured = bench.measured(gpu_preset, THROUGHPUT_HW, "cuda", batch=batch)
        except RuntimeError as e:  # out of memory at a large batch ends the sweep
            bench.notes.append(f"GPU batch sweep stopped at batch {batch}: {e}")
            break
        for key, row in measured.rows.items():
            if key not in best or row["throughput_ips"] > best[key]["throughput_ips"]:
                best[key] = row
    assert best, "no CUDA runner produced a row"
    for key, row in best.items():
        bench.record({**row, "note": f"best-throughput batch of {GPU_BATCHES}; " + row.get("note", "")})
        floor = PARITY_DB[row["precision"]]
        assert row["psnr_vs_eager_db"] >= floor, f"{key} batch {row['batch']}: PSNR {row['psnr_vs_eager_db']} < {floor}"
