"""Numerical parity between two images or batches: max |Δ| and PSNR (the one PSNR). Torch-free.

Used by ``engan export`` to prove an artefact computes what the eager model computes,
and by ``engan eval`` (PSNR of uint8 images, peak 255), the benchmarks and the tests.
Inputs are arrays on a common scale (``peak`` is the largest possible value: 1.0 for
[0, 1] floats, 255 for uint8).
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


def psnr_from_mse(mse: float, peak: float) -> float:
    """``10 log10(peak^2 / mse)`` in dB; ``math.inf`` for a zero MSE.

    Computed as scikit-image's ``peak_signal_noise_ratio`` computes it (``numpy.log10`` of
    the ratio), so ``psnr(a, b, peak=255.0)`` on uint8 images is its value to the last bit.
    """
    if peak <= 0:
        raise ValueError(f"peak must be positive, got {peak}")
    if mse == 0.0:
        return math.inf
    return 10.0 * float(np.log10(peak * peak / mse))


def psnr(reference: np.ndarray, candidate: np.ndarray, *, peak: float) -> float:
    """Peak signal-to-noise ratio in dB, ``10 log10(peak^2 / MSE)``: the one PSNR in engan.

    Args:
        reference: the trusted output (or ground truth).
        candidate: the output under test, same shape.
        peak: the largest possible value: 1.0 for [0, 1] floats, 255.0 for uint8.

    Returns:
        PSNR in dB; ``math.inf`` when the arrays are identical.
    """
    if peak <= 0:
        raise ValueError(f"peak must be positive, got {peak}")
    ref, cand = _pair(reference, candidate)
    return psnr_from_mse(float(np.mean((ref - cand) ** 2)), peak)


def compare(reference: np.ndarray, candidate: np.ndarray, peak: float = 1.0) -> ParityStats:
    """All parity figures of ``candidate`` against ``reference`` in one pass (``peak`` as in :func:`psnr`)."""
    ref, cand = _pair(reference, candidate)
    diff = np.abs(ref - cand)
    mse = float(np.mean(diff * diff))
    return ParityStats(max_abs=float(diff.max()), mean_abs=float(diff.mean()), psnr_db=psnr_from_mse(mse, peak))
