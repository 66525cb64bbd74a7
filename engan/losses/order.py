"""Exposure-order term: a crop that goes in darker than its batch-mates must come out darker.

Relative exposure is a crop's log mean luma minus the batch's mean of those; the term asks
the output's relative exposure to be ``slope`` times the input's, so the absolute level is
left to the adversarial losses and the exposure prior. Without it most seeds of the
curve-residual recipe learned, mid-training, to lift every input to the same brightness
(docs/experiments.md, "Seed study"); the batch-mean prior cannot see that. Not in the paper
(loss term ``order``, weight 0 = off).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from engan.losses.checks import check_rgb_pair
from engan.losses.registry import LossTerm
from engan.models.generator import luma


def exposure_order_loss(output: torch.Tensor, inputs: torch.Tensor, slope: float = 0.5,
                        eps: float = 1e-3) -> torch.Tensor:
    """Mean squared gap between each crop's relative output exposure and ``slope`` x its input's.

    A batch of one gives 0.

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


@dataclass(frozen=True)
class OrderOptions:
    """``slope``: output stops per input stop, relative to the batch (1 keeps every stop, 0 asks for none)."""

    slope: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 <= self.slope <= 1.0:
            raise ValueError(f"slope {self.slope} is outside [0, 1]")


TERM = LossTerm(
    "order", lambda i, o, s: exposure_order_loss(i.fake, i.low_in, o.slope), options=OrderOptions,
    summary="a crop that goes in darker than its batch-mates comes out darker, by `slope` stops per stop",
)
