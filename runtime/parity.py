"""Numerical parity between two images or batches: max |Δ| and PSNR. Torch-free.

Used by ``engan export`` to prove an artefact computes what the eager model computes,
and reusable by benchmarks and runtime tests. Inputs are float arrays on a common
scale (``peak`` is the largest possible value: 1.0 for [0, 1] floats, 255 for uint8).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ParityStats:
    """How far a candidate output is from the reference.

    Attributes:
        max_abs: largest absolute element difference.
        mean_abs: mean absolute difference.
        psnr_db: peak signal-to-noise ratio in dB (``inf`` when identical).
    """

    max_abs: float
    mean_abs: float
    psnr_db: float


def _pair(reference: np.ndarray, candidate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ref = np.asarray(reference, dtype=np.float64)
    cand = np.asarray(candidate, dtype=np.float64)
    if ref.shape != cand.shape:
        raise ValueError(
            f"cannot compare arrays of different shapes: reference {ref.shape}, candidate {cand.shape}"
        )
    if ref.size == 0:
        raise ValueError("cannot compare empty arrays")
    return ref, cand


def max_abs(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Largest absolute difference between two arrays of the same shape."""
    ref, cand = _pair(reference, candidate)
    return float(np.max(np.abs(ref - cand)))


def psnr(reference: np.ndarray, candidate: np.ndarray, peak: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB, ``10 log10(peak^2 / MSE)``.

    Args:
        reference: the trusted output.
        candidate: the output under test, same shape.
        peak: the largest possible value (1.0 for [0, 1] floats, 255.0 for uint8).

    Returns:
        PSNR in dB; ``math.inf`` when the arrays are identical.
    """
    if peak <= 0:
        raise ValueError(f"peak must be positive, got {peak}")
    ref, cand = _pair(reference, candidate)
    mse = float(np.mean((ref - cand) ** 2))
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(peak * peak / mse)


def compare(reference: np.ndarray, candidate: np.ndarray, peak: float = 1.0) -> ParityStats:
    """All parity figures of ``candidate`` against ``reference`` in one pass."""
    ref, cand = _pair(reference, candidate)
    diff = np.abs(ref - cand)
    mse = float(np.mean(diff * diff))
    db = math.inf if mse == 0.0 else 10.0 * math.log10(peak * peak / mse)
    return ParityStats(max_abs=float(diff.max()), mean_abs=float(diff.mean()), psnr_db=db)
