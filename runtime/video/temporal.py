"""Temporal stability for frame-by-frame enhancement, and the flicker ratio that measures it. Torch-free.

The model is a black box to the runtime (ONNX Runtime, TensorRT, OpenVINO), and its global
response moves with content: on a static shot, noise or a passing light changes how much
it brightens, and the video flickers. :class:`Stabiliser` smooths that response:

* per frame and channel, the model's gain ``r = (mean(out) + e) / (mean(in) + e)``;
* an exponential moving average of ``log r`` over time (time constant ``tau_s`` seconds,
  from the frames' timestamps, so variable frame rate is handled), reset at once on a
  scene cut, which is detected on the *input* (:class:`CutDetector`);
* each output channel bent so its mean moves from the raw gain to the smoothed one, by a
  curve with slope ``k`` at black that keeps white at white: ``y + (k - 1) y (1 - y)``
  (closed-form ``k``, three passes over the frame) for ``k`` in (0, 2], else
  ``1 - (1 - y) ** k`` (``k`` by bisection). A correction upwards never clips highlights
  (it rolls them off) and one downwards never crushes them.

:func:`flicker_ratio` is the issue's measure, shared by tests and benchmarks.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from engan.runtime.prepost import LUMA_WEIGHTS

_LUMA = np.asarray(LUMA_WEIGHTS, dtype=np.float64)


@dataclass(frozen=True)
class SmoothingConfig:
    """Knobs of :class:`Stabiliser`.

    Attributes:
        tau_s: EMA time constant in seconds (0: no smoothing; longer: steadier, slower to follow).
        cut_threshold: relative change of the input's luma thumbnail that may be a scene cut ...
        hist_threshold: ... when the input's luma histogram moves this much too (total variation
            distance): a pan or a passing object changes the picture but hardly its histogram.
        epsilon: added to both means of a gain, so a black frame's gain stays finite.
        max_correction: the most a frame's gain is pulled up or down (factor).
        grid: thumbnail side for cut detection.
        samples: pixels per channel used to solve each frame's curve (a strided subsample).
    """

    tau_s: float = 1.0
    cut_threshold: float = 0.5
    hist_threshold: float = 0.1
    epsilon: float = 0.5 / 255.0
    max_correction: float = 4.0
    grid: int = 16
    samples: int = 4096


#: Bins of the sqrt-luma histogram used for cut detection.
HIST_BINS = 16


@dataclass
class FrameStats:
    """What the stabiliser needs of an input frame (cheap to keep: no pixels)."""

    means: np.ndarray        # per-channel mean in [0, 1], float64 (3,)
    thumb: np.ndarray        # grid x grid luma block means, float32
    hist: np.ndarray         # HIST_BINS-bin histogram of sqrt(luma), sums to 1
    time: float              # seconds

    @property
    def mean_luma(self) -> float:
        return float(self.means @ _LUMA)


def unit_scale(a: np.ndarray) -> float:
    """The value that stands for white in ``a``: 255 (uint8), 65535 (uint16), 1 (float)."""
    return 255.0 if a.dtype == np.uint8 else 65535.0 if a.dtype == np.uint16 else 1.0


def channel_means(a: np.ndarray) -> np.ndarray:
    """Per-channel means of an HxWxC image in [0, 1] units (float64).

    Rows are summed first (contiguous adds, exact integers for uint8/uint16), then the
    row sums: 30x faster than a strided mean over H*W pixels.
    """
    acc = np.uint64 if a.dtype in (np.uint8, np.uint16) else np.float64
    rows = a.sum(axis=0, dtype=np.uint32 if acc is np.uint64 else np.float32)
    return rows.sum(axis=0, dtype=acc).astype(np.float64) / (a.shape[0] * a.shape[1] * unit_scale(a))


def _luma_sample(a: np.ndarray, grid: int) -> tuple[np.ndarray, int, int]:
    """Luma of a regular subsample (about 8x8 per thumbnail block), and the blocks per side."""
    h, w = a.shape[:2]
    gh, gw = min(grid, h), min(grid, w)
    step = max(1, min(h // gh, w // gw) // 8)
    sub = a[: gh * (h // gh) : step, : gw * (w // gw) : step]
    return sub.astype(np.float32) @ _LUMA.astype(np.float32) / np.float32(unit_scale(a)), gh, gw


def luma_thumbnail(a: np.ndarray, grid: int = 16) -> np.ndarray:
    """``grid`` x ``grid`` block means of the Rec.601 luma of an HxWx3 image (edge rows/columns trimmed)."""
    return _thumbnail(*_luma_sample(a, grid))


def _thumbnail(luma: np.ndarray, gh: int, gw: int) -> np.ndarray:
    hh, ww = luma.shape[0] // gh, luma.shape[1] // gw
    return luma[: gh * hh, : gw * ww].reshape(gh, hh, gw, ww).mean(axis=(1, 3))


def frame_stats(a: np.ndarray, time: float, grid: int = 16) -> FrameStats:
    """:class:`FrameStats` of an input frame (run where it is decoded, off the main thread)."""
    luma, gh, gw = _luma_sample(a, grid)
    bins = np.minimum((np.sqrt(np.clip(luma, 0, 1)) * HIST_BINS).astype(np.int32), HIST_BINS - 1)
    hist = np.bincount(bins.ravel(), minlength=HIST_BINS) / bins.size
    return FrameStats(channel_means(a), _thumbnail(luma, gh, gw), hist, float(time))


def mean_luma(a: np.ndarray) -> float:
    """Mean Rec.601 luma of an HxWx3 image in [0, 1] units."""
    return float(channel_means(a) @ _LUMA)


class CutDetector:
    """Hard cuts from the input alone: the luma thumbnail changes a lot for its brightness, and so
    does the luma histogram (motion moves the picture but keeps its histogram; a cut or a light
    switched on moves both)."""

    def __init__(self, threshold: float = 0.5, hist_threshold: float = 0.1) -> None:
        self.threshold, self.hist_threshold = threshold, hist_threshold
        self._prev: FrameStats | None = None

    def change(self, stats: FrameStats) -> tuple[float, float]:
        """(relative thumbnail change in [0, 2], histogram distance in [0, 1]) from the previous frame."""
        prev, self._prev = self._prev, stats
        if prev is None or prev.thumb.shape != stats.thumb.shape:
            return 0.0, 0.0
        a, b = stats.thumb, prev.thumb
        rel = float(2 * np.abs(a - b).mean() / max(float(a.mean() + b.mean()), 1e-4))
        return rel, float(0.5 * np.abs(stats.hist - prev.hist).sum())

    def is_cut(self, stats: FrameStats) -> bool:
        rel, hist = self.change(stats)
        return rel > self.threshold and hist > self.hist_threshold


def curve(y: np.ndarray, k: float | np.ndarray) -> np.ndarray:
    """``1 - (1 - y) ** k``: gain ``k`` at black, white stays white (``k`` a number or one per channel)."""
    out = np.subtract(np.float32(1.0), y, dtype=np.float32)
    np.clip(out, 0.0, 1.0, out=out)
    np.power(out, np.asarray(k, dtype=np.float32), out=out)
    np.subtract(np.float32(1.0), out, out=out)
    return out


def solve_k(sample: np.ndarray, ratio: np.ndarray, lo: float = 1 / 16, hi: float = 16.0) -> np.ndarray:
    """Per channel, ``k`` with ``mean(curve(sample, k)) = ratio * mean(sample)`` (bisection in log k, clamped).

    Args:
        sample: N x C pixel values in [0, 1].
        ratio: C wanted ratios of the means.
    """
    base = sample.mean(axis=0, dtype=np.float64)
    target = np.minimum(ratio * base, 0.999)
    a = np.full(base.shape, math.log(lo))
    b = np.full(base.shape, math.log(hi))
    for _ in range(18):  # log k to within 5.5 / 2**18
        m = 0.5 * (a + b)
        low = curve(sample, np.exp(m)).mean(axis=0, dtype=np.float64) < target
        a, b = np.where(low, m, a), np.where(low, b, m)
    k = np.exp(0.5 * (a + b))
    return np.where((base <= 0) | (np.abs(ratio - 1) < 1e-4), 1.0, k)


@dataclass
class StabiliserState:
    """The stabiliser's trace, for tests, benchmarks and reports."""

    cuts: list[int] = field(default_factory=list)
    raw_gain: list[float] = field(default_factory=list)       # model's luma gain per frame
    smooth_gain: list[float] = field(default_factory=list)    # the gain written


class Stabiliser:
    """Smooth the model's per-frame global response (see the module docstring).

    Call :meth:`step` once per frame, in display order, with the input's :class:`FrameStats`
    and the model's float output; it returns the corrected output (float32, [0, 1]).
    """

    def __init__(self, config: SmoothingConfig | None = None) -> None:
        self.config = config or SmoothingConfig()
        self.cuts = CutDetector(self.config.cut_threshold, self.config.hist_threshold)
        self.state = StabiliserState()
        self._log_s: np.ndarray | None = None
        self._t: float | None = None
        self._index = 0

    def step(self, stats: FrameStats, y: np.ndarray) -> np.ndarray:
        cfg, i = self.config, self._index
        self._index += 1
        eps = cfg.epsilon
        out_means = channel_means(y)
        log_r = np.log((out_means + eps) / (stats.means + eps))
        cut = self.cuts.is_cut(stats)
        if self._log_s is None or cut or cfg.tau_s <= 0:
            if cut:
                self.state.cuts.append(i)
            self._log_s = log_r.copy()
        else:
            dt = max(stats.time - self._t, 0.0) if self._t is not None else 0.0
            alpha = 1.0 - math.exp(-dt / cfg.tau_s) if dt > 0 else 1.0 / 30
            self._log_s += alpha * (log_r - self._log_s)
        self._t = stats.time
        # move each channel's mean from (raw gain) to (smoothed gain)
        target = np.exp(self._log_s) * (stats.means + eps) - eps
        ratio = np.clip((target + 1e-6) / (out_means + 1e-6), 1 / cfg.max_correction, cfg.max_correction)
        self.state.raw_gain.append(_luma_gain(out_means, stats.means, eps))
        if np.all(np.abs(ratio - 1) < 1e-3):
            self.state.smooth_gain.append(self.state.raw_gain[-1])
            return y
        out = bend(y, ratio, out_means, cfg.samples)
        self.state.smooth_gain.append(_luma_gain(ratio * out_means, stats.means, eps))
        return out


def bend(y: np.ndarray, ratio: np.ndarray, means: np.ndarray, samples: int = 4096) -> np.ndarray:
    """``y`` (HxWxC, [0, 1]) with each channel's mean multiplied by ``ratio``, black and white kept.

    ``y + (k - 1) y (1 - y)`` has mean ``m + (k - 1) v`` with ``v = mean(y - y**2)`` (estimated on
    a strided subsample of about ``samples`` pixels), so ``k`` is solved exactly; it stays
    monotone and within [0, 1] for ``k`` in [0, 2]. Larger corrections use :func:`curve`.
    """
    h, w = y.shape[:2]
    step = max(1, math.ceil(math.sqrt(h * w / samples)))
    sample = y[::step, ::step].reshape(-1, y.shape[-1]).astype(np.float64)
    v = (sample - sample * sample).mean(axis=0)
    k = 1 + (ratio - 1) * means / np.maximum(v, 1e-9)
    if np.all((k > 0.05) & (k <= 2)):
        rows = y.reshape(h, -1)  # (H, W*C) with k tiled along a row: long inner loops, not length-C ones
        k_row = np.tile(k.astype(np.float32), w)
        out = rows * (np.float32(1) - k_row)  # y * (k - (k - 1) * y) in three passes
        out += k_row
        out *= rows
        return out.reshape(y.shape)
    return curve(y, solve_k(sample, ratio).astype(np.float32))


def _luma_gain(out_means: np.ndarray, in_means: np.ndarray, eps: float) -> float:
    return float((out_means @ _LUMA + eps) / (in_means @ _LUMA + eps))


def flicker_ratio(luma_in: Sequence[float], luma_out: Sequence[float]) -> float:
    """The issue's flicker ratio of a clip, from per-frame mean lumas of input and output.

    ``(mean |Δ out| / mean |Δ in|) / (mean out / mean in)``, Δ between consecutive frames:
    1.0 means the enhancement adds no flicker beyond brightening; above 1, it adds some.
    NaN for fewer than two frames or a perfectly still input.
    """
    a, b = np.asarray(luma_in, dtype=np.float64), np.asarray(luma_out, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"need two equal-length sequences of per-frame lumas, got {a.shape} and {b.shape}")
    if a.size < 2:
        return float("nan")
    d_in, d_out = np.abs(np.diff(a)).mean(), np.abs(np.diff(b)).mean()
    if d_in == 0 or a.mean() == 0:
        return float("nan")
    return float((d_out / d_in) / (b.mean() / a.mean()))
