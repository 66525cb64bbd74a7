"""The benchmark run: prepares models once, measures each (preset, size, device) once, collects rows.

Tests ask :class:`BenchSession` for a row; the first request for a (preset, size,
device) measures every available runner of that device group in one interleaved run
(see :mod:`benchmarks.measure`) and caches all their rows, so each test only reports
and asserts. ``conftest.py`` writes the collected rows at the end of the session.
"""
from __future__ import annotations

import math
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmarks.images import bench_inputs
from benchmarks.machine import effective_seconds, machine_info, peak_for
from benchmarks.measure import Samples, percentile, probe_memory, time_interleaved
from benchmarks.models import BenchModel, prepare_model
from benchmarks.runners import SPECS, Runner, RunnerSpec, build_runner, reference_of, skip_reason
from benchmarks.settings import BenchSettings

#: Where conftest keeps the settings and the session on the pytest config.
SETTINGS_KEY = pytest.StashKey[BenchSettings]()
SESSION_KEY = pytest.StashKey["BenchSession"]()

#: Batches tried for the best-throughput rows on a GPU.
GPU_BATCHES = (1, 2, 4, 8, 16)


@dataclass
class Measured:
    """All rows of one interleaved run, plus the runners that failed to build or run."""

    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


def settings_of(config: pytest.Config) -> BenchSettings:
    """The :class:`BenchSettings` of this pytest run (set by ``benchmarks/conftest.py``)."""
    return config.stash[SETTINGS_KEY]


class BenchSession:
    """State shared by every benchmark test of one pytest session."""

    def __init__(self, settings: BenchSettings) -> None:
        self.settings = settings
        self.workdir = Path(tempfile.mkdtemp(prefix="engan-bench-"))
        self._machine: dict[str, Any] | None = None
        self._models: dict[str, BenchModel] = {}
        self._measured: dict[tuple, Measured] = {}
        self._memory: dict[tuple[str, str], tuple[dict[str, float], str]] = {}
        self.rows: list[dict[str, Any]] = []
        self.skipped: list[dict[str, Any]] = []
        self.notes: list[str] = []

    # ------------------------------------------------------------------ shared state
    @property
    def machine(self) -> dict[str, Any]:
        if self._machine is None:
            self._machine = machine_info(self.settings.threads, quick=self.settings.quick)
        return self._machine

    def model(self, preset: str) -> BenchModel:
        """The exported/quantized artefacts of ``preset`` (built once per session)."""
        if preset not in self._models:
            self._models[preset] = prepare_model(preset, self.workdir / preset, self.settings.weights,
                                                 self.settings.calib_images)
        return self._models[preset]

    def skip_reason(self, spec: RunnerSpec, preset: str | None = None) -> str | None:
        model = self.model(preset) if preset and spec.key == "ort-int8" else None
        return skip_reason(spec, model, self.settings.quick, self.machine["cpu"])

    def record(self, row: dict[str, Any]) -> None:
        self.rows.append(row)

    def record_skip(self, what: str, reason: str) -> None:
        if not any(s["what"] == what for s in self.skipped):
            self.skipped.append({"what": what, "reason": reason})

    # ------------------------------------------------------------------ measuring
    def measured(self, preset: str, size: tuple[int, int], device: str, batch: int = 1) -> Measured:
        """Rows of every available runner of ``device`` at ``size`` (measured on first request)."""
        key = (preset, size, device, batch)
        if key not in self._measured:
            self._measured[key] = self._measure(preset, size, device, batch)
        return self._measured[key]

    def _available(self, preset: str, device: str) -> list[RunnerSpec]:
        ref = next(s for s in SPECS if s.reference and s.device == device)
        others = [s for s in SPECS if s.device == device and not s.reference]
        return [ref] + [s for s in others if self.skip_reason(s, preset) is None]

    def _measure(self, preset: str, size: tuple[int, int], device: str, batch: int) -> Measured:
        st = self.settings
        model = self.model(preset)
        out = Measured()
        runners: list[Runner] = []
        sizes = sorted(st.sizes, key=lambda hw: hw[0] * hw[1])
        # TensorRT profiles: every size at batch 1; the batch sweep gets one engine for its size.
        lo, hi, max_batch = (sizes[0], sizes[-1], 1) if batch == 1 else (size, size, max(GPU_BATCHES))
        for spec in self._available(preset, device):
            try:
                runners.append(build_runner(spec, model, st.threads, self.workdir, min_hw=lo, max_hw=hi,
                                            max_batch=max_batch))
            except Exception as e:  # noqa: BLE001 - the test of that runner fails with this message
                out.errors[spec.key] = f"{type(e).__name__}: {e}"
        if not runners or not runners[0].spec.reference:
            return out
        inputs, source = bench_inputs(size, st.parity_images, batch)
        runners, per_round = self._warm(runners, inputs[0], out)
        rounds = st.rounds_for(per_round)
        bar = _progress(f"{preset} {size[0]}x{size[1]} b{batch} {device}", rounds, st.quick)
        try:
            samples = time_interleaved(runners, inputs, rounds, warmup=0,
                                       on_round=lambda r, n: bar.update(1) if bar else None)
        finally:
            if bar:
                bar.close()
            for r in runners:
                r.close()
        ref = samples[runners[0].spec.key]
        ref_p50, ref_cpu = percentile(ref.latencies, 50), percentile(ref.cpu_seconds, 50)
        for runner in runners:
            s = samples[runner.spec.key]
            out.rows[runner.spec.key] = self._row(model, runner, s, size, batch, ref_p50, ref_cpu, rounds, source)
        return out

    def _warm(self, runners: list[Runner], x: np.ndarray, out: Measured) -> tuple[list[Runner], float]:
        """Warm every runner up (drop the ones that fail); returns them and the seconds of one round."""
        import time

        kept, per_round = [], 0.0
        for runner in runners:
            try:
                for _ in range(max(1, self.settings.warmup)):
                    t = time.perf_counter()
                    runner.run(x)
                    dt = time.perf_counter() - t
            except Exception as e:  # noqa: BLE001
                out.errors[runner.spec.key] = f"{type(e).__name__}: {e}"
                runner.close()
                continue
            kept.append(runner)
            per_round += dt
        return kept, per_round

    def _row(self, model: BenchModel, runner: Runner, s: Samples, size: tuple[int, int], batch: int,
             ref_p50: float, ref_cpu: float, rounds: int, source: str) -> dict[str, Any]:
        h, w = size
        p50, p90 = percentile(s.latencies, 50), percentile(s.latencies, 90)
        paired = [r / c for r, c in zip(s.ref_latencies, s.latencies)]
        gflop = model.gflop(h, w, batch)
        peak_ref, peak_name = peak_for(self.machine, runner.spec.device, runner.spec.precision)
        cpu50 = percentile(s.cpu_seconds, 50)
        threads = self.settings.threads if runner.spec.device == "cpu" else 1
        effective = effective_seconds(p50, cpu50, threads) if runner.spec.device == "cpu" else p50
        mem, mem_kind = self.memory(model.preset, runner.spec, size) if batch == 1 else (
            None, "not measured for batch > 1")
        achieved = gflop / effective
        return {
            "group": "backends",
            "key": runner.spec.key,
            "backend": runner.spec.backend,
            "precision": runner.spec.precision,
            "device": runner.spec.device,
            "preset": model.preset,
            "height": h,
            "width": w,
            "batch": batch,
            "rounds": rounds,
            "p50_ms": round(p50 * 1e3, 2),
            "p90_ms": round(p90 * 1e3, 2),
            "min_ms": round(min(s.latencies) * 1e3, 2),
            "cpu_ms": round(cpu50 * 1e3, 2),
            "throughput_ips": round(batch / p50, 3),
            "peak_mem_mb": mem,
            "mem_kind": mem_kind,
            "speedup_vs_eager": round(ref_p50 / p50, 3),
            "speedup_cpu_time": round(ref_cpu / cpu50, 3),
            "speedup_paired_median": round(float(np.median(paired)), 3),
            "speedup_paired_iqr": [round(percentile(paired, 25), 3), round(percentile(paired, 75), 3)],
            "psnr_vs_eager_db": _finite(s.psnr_db),
            "psnr_worst_image_db": _finite(s.worst_psnr_db),
            "max_abs_vs_eager": round(s.max_abs, 6),
            "parity_images": f"{len(s.per_image_mse)} x {source}",
            "gflop_per_call": round(gflop, 2),
            "achieved_gflops": round(achieved, 1),
            "achieved_gflops_wall": round(gflop / p50, 1),
            "effective_ms": round(effective * 1e3, 2),
            "pct_of_peak": round(100 * achieved / peak_ref, 1) if peak_ref else None,
            "peak_used": peak_name,
            "weights": model.weights_source,
            "reference": reference_of(runner.spec).key,
            "note": runner.note,
        }

    def memory(self, preset: str, spec: RunnerSpec, size: tuple[int, int]) -> tuple[float | None, str]:
        """Peak memory (MiB) of ``spec`` at ``size``; every size of the run is probed in one fresh process."""
        if spec.key == "compile-fp32":
            return None, "not measured (a fresh process would recompile every shape, ~30 s each)"
        key = (preset, spec.key)
        if key not in self._memory:
            model = self.model(preset)
            self._memory[key] = probe_memory(model.to_json(), spec.key, self.settings.sizes,
                                             self.settings.threads, self.workdir)
        peaks, kind = self._memory[key]
        return peaks.get(f"{size[0]}x{size[1]}"), kind

    def close(self) -> None:
        import shutil

        shutil.rmtree(self.workdir, ignore_errors=True)


def _finite(v: float) -> float | None:
    """JSON-safe: inf (bit-identical) -> None is wrong, so keep a large sentinel; NaN -> None."""
    if math.isnan(v):
        return None
    return 999.0 if math.isinf(v) else round(v, 2)


def _progress(desc: str, total: int, quiet: bool):
    if quiet:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="round", file=sys.__stderr__, leave=False)
