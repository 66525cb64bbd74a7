"""Training augmentation of one unpaired sample, as the authors' dataset does it (spec section 5)."""
from __future__ import annotations

import numpy as np

from engan.config import DegradeConfig
from engan.data.degrade import degrade


def random_crop(img: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """A ``size`` x ``size`` crop at a uniform random offset (HxWxC in, HxWxC out)."""
    h, w = img.shape[:2]
    if h < size or w < size:
        raise ValueError(f"image of {w}x{h} px is smaller than the crop {size}x{size}")
    y = int(rng.integers(0, h - size + 1))
    x = int(rng.integers(0, w - size + 1))
    return img[y : y + size, x : x + size]


def darken_factor(rng: np.random.Generator, lo: float = 2.0, hi: float = 4.0) -> float:
    """The authors' divisor ``t = randint(lo*100, hi*100) / 100`` (inclusive)."""
    return int(rng.integers(round(lo * 100), round(hi * 100) + 1)) / 100.0


def augment_pair(
    low: np.ndarray,
    normal: np.ndarray,
    crop: int,
    rng: np.random.Generator,
    darken_prob: float = 0.5,
    darken_min: float = 2.0,
    darken_max: float = 4.0,
    twin: DegradeConfig | None = None,
    quantize: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """Crop, flip and darken one (low, normal) pair.

    Args:
        low, normal: HxWx3 uint8 RGB images (unpaired).
        crop: square crop size.
        rng: the sample's generator (draws happen in a fixed order).
        darken_prob, darken_min, darken_max: "vary" darkening of the generator input.
        twin: ranges of the degraded twin of the generator input (:func:`engan.data.degrade.degrade`);
            None draws nothing, so the stream is the same as without it.
        quantize: round the generator input to 8 bits (after darkening), as real photos are.

    Returns:
        ``(low, low_input, normal, twin)``, 3 x crop x crop float32 arrays in [0, 1];
        ``low_input`` is ``low`` divided by t ~ U{darken_min..darken_max} with
        probability ``darken_prob``, else equal to ``low``. A ``darken_min`` below 1 lets
        some inputs be brightened instead (t < 1), clipped at 1. ``twin`` is a darker,
        noisy, 8-bit (maybe JPEG) capture of ``low_input`` (None without ``twin``).
    """
    a = random_crop(low, crop, rng)
    if rng.random() < 0.5:
        a = a[:, ::-1]
    b = random_crop(normal, crop, rng)
    if rng.random() < 0.5:
        b = b[:, ::-1]
    if rng.random() < 0.5:  # joint h-flip
        a, b = a[:, ::-1], b[:, ::-1]
    if rng.random() < 0.5:  # joint v-flip
        a, b = a[::-1], b[::-1]
    a = np.ascontiguousarray(a.transpose(2, 0, 1), dtype=np.float32) / 255.0
    b = np.ascontiguousarray(b.transpose(2, 0, 1), dtype=np.float32) / 255.0
    if rng.random() < darken_prob:
        a_in = a / np.float32(darken_factor(rng, darken_min, darken_max))
        if darken_min < 1:  # a divisor below 1 brightens: keep the input a valid image
            np.minimum(a_in, 1.0, out=a_in)
    else:
        a_in = a
    a_in = a_in.astype(np.float32, copy=False)
    if quantize:
        a_in = np.round(a_in * 255.0) / np.float32(255.0)
    return a, a_in, b, (degrade(a_in, rng, twin) if twin is not None else None)
