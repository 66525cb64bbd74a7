"""Full-reference metrics (PSNR, SSIM), mean brightness and clipping, on 8-bit RGB images.

Protocol (the usual LOL one, as in the LLIE survey and Retinexformer tables): both
images are HxWx3 ``uint8`` RGB (the enhanced output is rounded to 8 bits first, with
:func:`engan.runtime.prepost.to_uint8`); PSNR is :func:`engan.runtime.parity.psnr` with
peak 255 (scikit-image's ``peak_signal_noise_ratio(data_range=255)`` to the last bit);
SSIM comes from scikit-image with ``data_range=255``, computed on the three colour
channels (``channel_axis=-1``, 7x7 uniform window, the scikit-image defaults) and
averaged. No GT-mean scaling, no grayscale conversion, no cropping. Luma is the runtime's
Rec.601 :func:`engan.runtime.prepost.luma`, in float64.
"""
from __future__ import annotations

import math

import numpy as np

from engan.runtime.parity import psnr
from engan.runtime.prepost import luma

#: PSNR reported for identical images (MSE = 0), where the formula gives +inf.
PSNR_CAP_DB = 100.0


def _check_pair(reference: np.ndarray, test: np.ndarray) -> None:
    if reference.shape != test.shape:
        raise ValueError(f"image shapes differ: reference {reference.shape} vs test {test.shape}")
    if reference.dtype != np.uint8 or test.dtype != np.uint8:
        raise ValueError(
            f"PSNR/SSIM expect uint8 images (got {reference.dtype} and {test.dtype}); "
            "round outputs to 8 bits first with engan.runtime.prepost.to_uint8"
        )


def psnr_8bit(reference: np.ndarray, test: np.ndarray) -> float:
    """PSNR in dB between two uint8 images (:func:`engan.runtime.parity.psnr`, peak 255).

    Identical images have MSE 0 and an infinite PSNR; this returns :data:`PSNR_CAP_DB`
    (100 dB) instead, so means and JSON stay finite. Every other value is uncapped.
    """
    _check_pair(reference, test)
    if np.array_equal(reference, test):
        return PSNR_CAP_DB
    return min(psnr(reference, test, peak=255.0), PSNR_CAP_DB)


def ssim(reference: np.ndarray, test: np.ndarray) -> float:
    """Mean SSIM over the RGB channels of two uint8 images (scikit-image, ``data_range=255``)."""
    from skimage.metrics import structural_similarity

    _check_pair(reference, test)
    channel_axis = -1 if reference.ndim == 3 else None
    return float(structural_similarity(reference, test, channel_axis=channel_axis, data_range=255))


def brightness(img: np.ndarray) -> float:
    """Mean BT.601 luma of a uint8 RGB image, on the 0-255 scale."""
    return float(luma(img, np.float64).mean())


def clipped(output: np.ndarray, source: np.ndarray) -> float:
    """Per cent of pixels the enhancement blew out: some channel is 255 in ``output`` and none was in ``source``.

    Over-brightening shows up here before it shows in a mean: a warm lamp-lit wall whose red
    channel saturates loses its texture and turns orange, even when the mean luma looks right.
    Pixels already saturated in the input are not counted. Both images are uint8 RGB of one size.
    """
    _check_pair(np.asarray(source), np.asarray(output))
    out_max, src_max = np.asarray(output)[..., :3].max(-1), np.asarray(source)[..., :3].max(-1)
    return float(100.0 * np.mean((out_max == 255) & (src_max < 255)))


def finite_mean(values: list[float]) -> float:
    """Mean of the finite values (NaN when there are none)."""
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(vals)) if vals else float("nan")
