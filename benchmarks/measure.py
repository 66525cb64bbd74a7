"""Interleaved timing with parity on the timed outputs, and peak memory in a fresh process.

Timing: after ``warmup`` untimed calls each, every round runs the group's reference
first and then every other runner once (their order rotates from round to round),
all on the same input. A machine that gets busier or quieter mid-run therefore slows
every runner in the same rounds, and each row's speedup is the ratio of medians
taken over the same rounds. The outputs of the timed calls are compared with the
reference's output of the same round, so parity costs no extra runs.

Peak memory: a fresh Python process per (preset, backend) imports the libraries,
records its resident set size (RSS), builds the backend, and for each size (smallest
first) resets the kernel's high-water mark (``/proc/self/clear_refs``) and runs one
call; ``peak_mem_mb`` = VmHWM during that call - RSS before the backend was built.
That counts what the backend costs (weights, session/arena, activations) and nothing
left over from other backends measured before it (freed heap that glibc keeps, ORT
arenas of other sessions), which an in-process RSS delta would mix in. On a GPU it is
the CUDA memory allocated by torch (torch rows) or the device memory in use (ONNX
Runtime / TensorRT rows).
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from benchmarks.runners import Runner, RunnerSpec
from benchmarks.settings import REPO
from engan.runtime.parity import psnr_from_mse


@dataclass
class Samples:
    """Latencies of one runner and its parity against the reference, from the same rounds.

    Attributes:
        spec: what ran.
        latencies: seconds per call, one per round (wall clock).
        cpu_seconds: process CPU seconds per call (all threads): unlike wall time it barely
            moves when other jobs compete for the cores, so on a shared machine
            ``threads / cpu_seconds`` is the load-robust estimate of images/s.
        ref_latencies: the reference's seconds in the same rounds.
        max_abs: largest |candidate - reference| over every compared image.
        per_image_mse: mean squared error per distinct input (index -> MSE).
    """

    spec: RunnerSpec
    latencies: list[float] = field(default_factory=list)
    cpu_seconds: list[float] = field(default_factory=list)
    ref_latencies: list[float] = field(default_factory=list)
    max_abs: float = 0.0
    per_image_mse: dict[int, float] = field(default_factory=dict)

    def add_parity(self, index: int, ref: np.ndarray, out: np.ndarray) -> None:
        if index in self.per_image_mse:
            return
        diff = out.astype(np.float64) - ref.astype(np.float64)
        self.max_abs = max(self.max_abs, float(np.abs(diff).max()))
        self.per_image_mse[index] = float(np.mean(diff * diff))

    @property
    def psnr_db(self) -> float:
        """PSNR over all compared images (pooled MSE; peak 1.0); inf when identical."""
        if not self.per_image_mse:
            return math.nan
        return psnr_from_mse(float(np.mean(list(self.per_image_mse.values()))), peak=1.0)

    @property
    def worst_psnr_db(self) -> float:
        """PSNR of the worst single image."""
        if not self.per_image_mse:
            return math.nan
        return psnr_from_mse(max(self.per_image_mse.values()), peak=1.0)


def percentile(values: Sequence[float], q: float) -> float:
    """``q``-th percentile (0-100) with linear interpolation (numpy's default)."""
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def time_interleaved(
    runners: Sequence[Runner],
    inputs: Sequence[np.ndarray],
    rounds: int,
    warmup: int = 1,
    on_round: Callable[[int, int], None] | None = None,
) -> dict[str, Samples]:
    """Time ``runners`` in interleaved rounds; ``runners[0]`` is the reference.

    Args:
        runners: the reference first, then the candidates.
        inputs: the inputs; round ``r`` uses ``inputs[r % len(inputs)]``.
        rounds: timed rounds.
        warmup: untimed calls of every runner on ``inputs[0]`` first.
        on_round: called with (round, rounds) after each round (progress).

    Returns:
        key -> :class:`Samples` (the reference's own samples included, parity inf).
    """
    if not runners:
        return {}
    for runner in runners:
        for _ in range(warmup):
            runner.run(inputs[0])
    ref, others = runners[0], list(runners[1:])
    samples = {r.spec.key: Samples(r.spec) for r in runners}
    for r in range(rounds):
        idx = r % len(inputs)
        x = inputs[idx]
        c, t = time.process_time(), time.perf_counter()
        y_ref = ref.run(x)
        ref_dt = time.perf_counter() - t
        s_ref = samples[ref.spec.key]
        s_ref.cpu_seconds.append(time.process_time() - c)
        s_ref.latencies.append(ref_dt)
        s_ref.ref_latencies.append(ref_dt)
        s_ref.add_parity(idx, y_ref, y_ref)
        shift = r % len(others) if others else 0
        for runner in others[shift:] + others[:shift]:
            c, t = time.process_time(), time.perf_counter()
            y = runner.run(x)
            dt = time.perf_counter() - t
            s = samples[runner.spec.key]
            s.cpu_seconds.append(time.process_time() - c)
            s.latencies.append(dt)
            s.ref_latencies.append(ref_dt)
            s.add_parity(idx, y_ref, y)
        if on_round is not None:
            on_round(r + 1, rounds)
    # parity on every input, also those the timed rounds did not reach (untimed)
    for idx in range(min(rounds, len(inputs)), len(inputs)):
        y_ref = ref.run(inputs[idx])
        samples[ref.spec.key].add_parity(idx, y_ref, y_ref)
        for runner in others:
            samples[runner.spec.key].add_parity(idx, y_ref, runner.run(inputs[idx]))
    return samples


# --------------------------------------------------------------------------- memory
def rss_bytes() -> int:
    """Current resident set size of this process (VmRSS)."""
    return _status_kib("VmRSS") * 1024


def hwm_bytes() -> int:
    """Peak resident set size since start or the last :func:`reset_hwm` (VmHWM)."""
    return _status_kib("VmHWM") * 1024


def reset_hwm() -> bool:
    """Reset the kernel's RSS high-water mark to the current RSS (Linux >= 4.0); False if not possible."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _status_kib(key: str) -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise OSError(f"{key} not in /proc/self/status")


def probe_memory(model_json: str, spec_key: str, sizes: Sequence[tuple[int, int]], threads: int,
                 workdir: Path, timeout_s: float = 600.0) -> tuple[dict[str, float], str]:
    """Run :mod:`benchmarks.memprobe` in a fresh process; returns ({"HxW": MiB}, kind or error)."""
    cmd = [sys.executable, "-m", "benchmarks.memprobe", "--spec", spec_key, "--threads", str(threads),
           "--workdir", str(workdir), "--sizes", ",".join(f"{h}x{w}" for h, w in sizes)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    try:
        proc = subprocess.run(cmd, input=model_json, capture_output=True, text=True, cwd=REPO, env=env,
                              timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {}, f"memory probe timed out after {timeout_s:.0f} s"
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        return {}, f"memory probe failed: {tail[0]}"
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return result["peak_mb"], result["kind"]
