"""Exposure prior: the batch's mean brightness should match the well-lit set's.

``L_exp(out) = (mean_luma(out) - level) ** 2``, the mean over the whole batch
(BT.601 luma of [0, 1] RGB). It pins only the overall exposure the adversarial
losses leave loose: one crop may stay dark and another turn bright as long as
the batch averages to ``level``, so night scenes are not forced to daylight the
way a per-patch exposure loss (Zero-DCE's) forces them. ``level`` defaults to
the mean luma of the training set's normal-light images
(:func:`mean_luma_of_images`), so no paired or evaluation data enters it. Not
in the paper: an optional stabiliser (``LossConfig.exposure_weight``, 0 = off).
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

from engan.eval.metrics import brightness
from engan.models.generator import luma


def exposure_loss(output: torch.Tensor, level: float) -> torch.Tensor:
    """Squared gap between the batch's mean luma and ``level`` (both on the [0, 1] scale).

    Raises:
        ValueError: ``output`` is not an NCHW RGB batch, or ``level`` is outside [0, 1].
    """
    if output.dim() != 4 or output.shape[1] != 3:
        raise ValueError(f"exposure_loss needs an NCHW RGB batch, got {tuple(output.shape)}")
    if not 0.0 <= level <= 1.0:
        raise ValueError(f"exposure level {level} is outside [0, 1] (it is a mean luma of [0, 1] images)")
    return (luma(output.float()).mean() - level) ** 2


def mean_luma_of_images(images: Iterable[np.ndarray]) -> float:
    """Mean over images of each HxWx3 uint8 image's mean BT.601 luma, on the [0, 1] scale."""
    values = [brightness(im) / 255.0 for im in images]
    if not values:
        raise ValueError("mean_luma_of_images needs at least one image")
    return float(np.mean(values))
