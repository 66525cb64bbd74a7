"""Exposure prior: the batch's mean brightness should match the well-lit set's.

``L_exp(out) = (mean_luma(out) - level) ** 2``, the mean over the whole batch
(BT.601 luma of [0, 1] RGB). It pins only the overall exposure the adversarial
losses leave loose: one crop may stay dark and another turn bright as long as
the batch averages to ``level``, so night scenes are not forced to daylight the
way a per-patch exposure loss (Zero-DCE's) forces them. ``level`` defaults to
the mean luma of the training set's normal-light images
(:func:`mean_luma_of_images`), so no paired or evaluation data enters it. Not
in the paper: an optional stabiliser (loss term ``exposure``, weight 0 = off).
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

import numpy as np
import torch

from engan.losses.registry import LossTerm, TermInputs
from engan.models.generator import luma
from engan.runtime.prepost import LUMA_WEIGHTS


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
    w = np.asarray(LUMA_WEIGHTS)
    values = [float((np.asarray(im)[..., :3].astype(np.float64) @ w).mean()) / 255.0 for im in images]
    if not values:
        raise ValueError("mean_luma_of_images needs at least one image")
    return float(np.mean(values))


@dataclass(frozen=True)
class ExposureOptions:
    """``level``: mean luma in [0, 1] the batch is pulled to; None = the normal-light set's, measured at the start."""

    level: float | None = None

    def __post_init__(self) -> None:
        if self.level is not None and not 0.0 <= float(self.level) <= 1.0:
            raise ValueError(f"level {self.level} is outside [0, 1] (it is a mean luma)")


def _prepare(options: ExposureOptions, normal_images: Iterable[np.ndarray] | None) -> ExposureOptions:
    if options.level is not None:
        return options
    if normal_images is None:
        raise ValueError("its level is measured from the normal-light folder, which is not loaded; give it "
                         "(--set loss.exposure.level=0.42 or ExposureOptions level)")
    return replace(options, level=round(mean_luma_of_images(normal_images), 4))


def _exposure(inputs: TermInputs, options: ExposureOptions, state: object) -> torch.Tensor:
    return exposure_loss(inputs.fake, float(options.level))


TERM = LossTerm(
    "exposure", _exposure, options=ExposureOptions, prepare=_prepare,
    summary="the batch's mean brightness is pulled to the well-lit set's (single crops may differ)",
)
