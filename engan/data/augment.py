"""Training augmentation of one unpaired sample, as the authors' dataset does it (spec section 5)."""
from __future__ import annotations

import numpy as np


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


#: Ranges of the sensor-noise prior (Brooks et al., "Unprocessing Images for Learned Raw
#: Denoising", CVPR 2019, section 3.1): shot-noise variance per unit of linear signal,
#: drawn log-uniformly, and the read-noise variance that goes with it.
SHOT_NOISE_RANGE = (1e-4, 1.2e-2)
READ_NOISE_FIT = (2.18, 1.20, 0.26)  # log(read) ~ N(a * log(shot) + b, sd)
#: the sRGB <-> linear approximation the noise is added through
NOISE_GAMMA = 2.2


def add_sensor_noise(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Heteroscedastic sensor noise on a [0, 1] sRGB image (any shape), drawn from ``rng``.

    The image is taken to linear light (gamma 2.2), Gaussian noise of variance
    ``read + shot * signal`` is added (the Poisson-Gaussian model with the ranges of
    :data:`SHOT_NOISE_RANGE` and :data:`READ_NOISE_FIT`), and the result is clipped to
    [0, 1] and taken back to sRGB. Dark pixels get the most visible noise, as in real
    low-light photos; the training crops (downscaled, well-exposed camera captures
    divided by t) have almost none.
    """
    lo, hi = np.log(SHOT_NOISE_RANGE[0]), np.log(SHOT_NOISE_RANGE[1])
    log_shot = rng.uniform(lo, hi)
    a, b, sd = READ_NOISE_FIT
    read = np.exp(rng.normal(a * log_shot + b, sd))
    lin = np.power(np.clip(img, 0.0, 1.0), NOISE_GAMMA)
    std = np.sqrt(read + np.exp(log_shot) * lin)
    noisy = lin + std * rng.standard_normal(img.shape)
    return np.power(np.clip(noisy, 0.0, 1.0), 1.0 / NOISE_GAMMA).astype(np.float32)


def augment_pair(
    low: np.ndarray,
    normal: np.ndarray,
    crop: int,
    rng: np.random.Generator,
    darken_prob: float = 0.5,
    darken_min: float = 2.0,
    darken_max: float = 4.0,
    noise_prob: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Crop, flip and darken one (low, normal) pair.

    Args:
        low, normal: HxWx3 uint8 RGB images (unpaired).
        crop: square crop size.
        rng: the sample's generator (draws happen in a fixed order).
        darken_prob, darken_min, darken_max: "vary" darkening of the generator input.
        noise_prob: share of generator inputs that get :func:`add_sensor_noise` (after
            any darkening). 0 draws nothing, so the stream is the same as without it.

    Returns:
        ``(low, low_input, normal)`` as 3 x crop x crop float32 arrays in [0, 1];
        ``low_input`` is ``low`` divided by t ~ U{darken_min..darken_max} with
        probability ``darken_prob``, else equal to ``low``. A ``darken_min`` below 1 lets
        some inputs be brightened instead (t < 1), clipped at 1. With probability
        ``noise_prob`` sensor noise is then added to ``low_input``; ``low``, the
        reference of the SFP and colour losses, stays clean, so those losses ask the
        generator to remove the noise.
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
    if noise_prob > 0 and rng.random() < noise_prob:
        a_in = add_sensor_noise(a_in, rng)
    return a, a_in.astype(np.float32, copy=False), b
