"""Capture degradations: a shorter, noisier, JPEG-compressed exposure of the same scene.

Real night photos differ from the training crops (downscaled, clean camera captures)
in what the enhancement amplifies: sensor noise, coarse colour noise from
demosaicing, 8-bit quantisation and the 8 x 8 blocks of JPEG. :func:`degrade`
turns a clean dark crop into such a capture of the same scene:

1. **exposure shortfall**: linear light divided by ``2**stops``, ``stops`` uniform
   in :attr:`engan.config.DegradeConfig.stops` (sRGB transfer function, with its linear toe);
2. **sensor noise**: Poisson-Gaussian in linear light, variance
   ``shot * signal + read**2`` with ``shot`` and ``read`` drawn log-uniformly per
   crop, independent per channel, partly blurred (``chroma_blur``) so it also has
   the low-frequency colour blotches of demosaiced sensors; clipped at black as a
   sensor clips;
3. **8-bit quantisation** (always: real inputs are 8-bit);
4. **JPEG** with probability ``jpeg_prob`` at a quality drawn from ``jpeg_quality``
   (4:2:0 chroma, as phone cameras write).

Every draw comes from the ``rng`` argument, so a batch stays a pure function of
``(seed, step, rank)``.
"""
from __future__ import annotations

import io

import numpy as np

from engan.config import DegradeConfig

#: sRGB transfer function constants (IEC 61966-2-1)
_SRGB_TOE, _SRGB_SLOPE, _SRGB_A = 0.0031308, 12.92, 0.055


def srgb_to_linear(x: np.ndarray) -> np.ndarray:
    """sRGB-encoded [0, 1] values to linear light (exact piecewise curve)."""
    x = np.clip(x, 0.0, 1.0)
    return np.where(x <= _SRGB_TOE * _SRGB_SLOPE, x / _SRGB_SLOPE, ((x + _SRGB_A) / (1 + _SRGB_A)) ** 2.4)


def linear_to_srgb(x: np.ndarray) -> np.ndarray:
    """Linear light [0, 1] to sRGB encoding (exact piecewise curve)."""
    x = np.clip(x, 0.0, 1.0)
    return np.where(x <= _SRGB_TOE, x * _SRGB_SLOPE, (1 + _SRGB_A) * np.power(x, 1 / 2.4) - _SRGB_A)


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _blur(field: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of a C x H x W field (reflect borders), unit variance kept for white noise."""
    if sigma <= 0.05:
        return field
    r = max(1, int(np.ceil(3 * sigma)))
    t = np.arange(-r, r + 1, dtype=np.float32)
    k = np.exp(-(t**2) / (2 * sigma**2))
    k /= k.sum()
    out = field
    for axis in (1, 2):
        pad = [(0, 0)] * 3
        pad[axis] = (r, r)
        p = np.pad(out, pad, mode="reflect")
        out = sum(k[i] * np.take(p, np.arange(i, i + out.shape[axis]), axis=axis) for i in range(2 * r + 1))
    return out / np.sqrt(np.sum(np.outer(k, k) ** 2))  # white noise in -> unit variance out


def jpeg_roundtrip(img: np.ndarray, quality: int) -> np.ndarray:
    """Encode a 3 x H x W [0, 1] image as an 8-bit 4:2:0 JPEG at ``quality`` and decode it."""
    from PIL import Image

    u8 = (np.clip(img, 0.0, 1.0).transpose(1, 2, 0) * 255.0 + 0.5).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(u8).save(buf, format="JPEG", quality=int(quality), subsampling=2)
    buf.seek(0)
    out = np.asarray(Image.open(buf).convert("RGB"), dtype=np.float32) / 255.0
    return np.ascontiguousarray(out.transpose(2, 0, 1))


def degrade(img: np.ndarray, rng: np.random.Generator, cfg: DegradeConfig = DegradeConfig()) -> np.ndarray:
    """A shorter, noisier, 8-bit (maybe JPEG) capture of the scene in ``img`` (3 x H x W float [0, 1]).

    Returns a float32 array of the same shape, on the 8-bit grid.
    """
    img = np.asarray(img, dtype=np.float32)
    if img.ndim != 3 or img.shape[0] != 3:
        raise ValueError(f"degrade expects a 3 x H x W RGB array, got shape {img.shape}")
    stops = rng.uniform(*cfg.stops)
    shot = _log_uniform(rng, *cfg.shot)
    read = _log_uniform(rng, *cfg.read)
    low_share = rng.uniform(0.0, 1.0)
    sigma = rng.uniform(0.5, cfg.chroma_blur) if cfg.chroma_blur > 0.5 else 0.0
    lin = srgb_to_linear(img) / np.float32(2.0**stops)
    field = rng.standard_normal(img.shape).astype(np.float32)
    if sigma:  # an independent low-frequency share, blurred to unit variance: the total stays unit variance
        coarse = _blur(rng.standard_normal(img.shape).astype(np.float32), sigma)
        field = np.sqrt(1.0 - low_share) * field + np.sqrt(low_share) * coarse
    noisy = lin + np.sqrt(shot * lin + read**2) * field
    out = linear_to_srgb(noisy)
    out = np.round(out * 255.0) / 255.0
    if cfg.jpeg_prob > 0 and rng.random() < cfg.jpeg_prob:
        out = jpeg_roundtrip(out, int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1)))
    return out.astype(np.float32)
