"""Exposure prior: the batch's mean brightness should match the well-lit set's.

``L_exp(out) = (mean_luma(out) - level) ** 2``, the mean over the whole batch
(BT.601 luma of [0, 1] RGB). It pins only the overall exposure the adversarial
losses leave loose: one crop may stay dark and another turn bright as long as
the batch averages to ``level``, so night scenes are not forced to daylight the
way a per-patch exposure loss (Zero-DCE's) forces them. ``level`` defaults to
the mean luma of the training set's normal-light images
(:func:`mean_luma_of_images`), so no paired or evaluation data enters it. Not
in the paper: an optional stabiliser (``LossConfig.exposure_weight``, 0 = off).

:func:`exposure_order_loss` keeps the *order* of exposures in a batch: a crop that went in two stops
darker than its batch-mates should come out darker too, by ``slope`` times as many stops. Without it
most seeds of the curve-residual recipe learned, mid-training, to lift every input to the same
brightness ("flattening", MODEL_CARD.md "Seed study"); the batch-mean prior above cannot see that.
Also not in the paper (``LossConfig.order_weight``, 0 = off).
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

from engan.eval.metrics import brightness
from engan.losses.checks import check_rgb_pair
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


def exposure_order_loss(output: torch.Tensor, inputs: torch.Tensor, slope: float = 0.5,
                        eps: float = 1e-3) -> torch.Tensor:
    """Mean squared gap between each crop's relative output exposure and ``slope`` x its input's.

    Relative exposure is a crop's log mean luma minus the batch's mean of those, so the absolute level
    is left to the adversarial losses and :func:`exposure_loss`; a batch of one gives 0.

    Raises:
        ValueError: ``output`` and ``inputs`` are not NCHW RGB batches of one shape, or ``slope`` is outside [0, 1].
    """
    check_rgb_pair("exposure_order_loss", output, inputs)
    if not 0.0 <= slope <= 1.0:
        raise ValueError(f"exposure order slope {slope} is outside [0, 1] (1 keeps every stop, 0 flattens)")
    # a train-mode residual may dip below 0; a crop whose mean does is held at log(eps), not NaN
    lo = torch.log(luma(output.float()).mean((1, 2, 3)).clamp(min=0) + eps)
    li = torch.log(luma(inputs.float()).mean((1, 2, 3)).clamp(min=0) + eps)
    return (((lo - lo.mean()) - slope * (li - li.mean())) ** 2).mean()


def mean_luma_of_images(images: Iterable[np.ndarray]) -> float:
    """Mean over images of each HxWx3 uint8 image's mean BT.601 luma, on the [0, 1] scale."""
    values = [brightness(im) / 255.0 for im in images]
    if not values:
        raise ValueError("mean_luma_of_images needs at least one image")
    return float(np.mean(values))
