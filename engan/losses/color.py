"""Colour-preserving loss: enhancement should change the light, not the hue.

``L_col(out, in) = (1 - cos(mean_rgb(out), mean_rgb(in)))
                 + mean over cells (1 - cos(pool_k(out), pool_k(in)))``

Both terms compare RGB *directions*, so brightening (scaling a pixel) costs
nothing while a colour cast (the whole image turning red) or a saturated blob
(a cell whose hue departs from the input's) does. ``pool_k`` is a k x k average
pool, coarse enough that the sensor noise of a dark input averages out; a cell
that is exactly black in the input gives no gradient. Not in the paper: an
optional stabiliser (loss term ``color``, weight 0 = the authors' losses only),
in the spirit of Zero-DCE's colour-constancy term but anchored on the input's
colours instead of the grey-world assumption, so a warm scene may stay warm.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from engan.losses.checks import check_rgb_pair
from engan.losses.registry import LossTerm, TermInputs


def color_angle_loss(output: torch.Tensor, reference: torch.Tensor, cell: int = 16,
                     eps: float = 1e-6) -> torch.Tensor:
    """Colour-direction mismatch of ``output`` against ``reference`` (NCHW RGB, any scale).

    Args:
        output: generator output.
        reference: the un-darkened low-light input.
        cell: side of the averaging cells of the local term (clipped to the image size).

    Returns:
        A scalar >= 0: 0 when every cell (and the image mean) of ``output`` is a
        positive multiple of the same cell of ``reference``.
    """
    check_rgb_pair("color_angle_loss", output, reference)
    out, ref = output.float(), reference.float()
    glob = 1.0 - F.cosine_similarity(out.mean((2, 3)), ref.mean((2, 3)), dim=1, eps=eps)
    k = max(1, min(cell, out.shape[-2], out.shape[-1]))
    local = 1.0 - F.cosine_similarity(F.avg_pool2d(out, k), F.avg_pool2d(ref, k), dim=1, eps=eps)
    return glob.mean() + local.mean()


@dataclass(frozen=True)
class ColorOptions:
    """``cell``: side in pixels of the averaging cells of the local part."""

    cell: int = 16

    def __post_init__(self) -> None:
        if self.cell < 1:
            raise ValueError(f"cell must be >= 1 pixel, got {self.cell}")


TERM = LossTerm(
    "color", lambda i, o, s: color_angle_loss(i.fake, i.low, o.cell), options=ColorOptions,
    summary="output colours keep the input's RGB direction (image mean and cells): brightening free, casts not",
)
