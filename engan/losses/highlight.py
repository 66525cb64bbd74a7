"""Highlight term: a pixel that is already bright must not get brighter.

``L_hl = mean( w(s) * relu(max_c G(x) - max_c s) )`` with ``s`` the generator's input,
``max_c`` the largest of the three channels and ``w(s) = clamp((max_c s - threshold) / ramp, 0, 1)``.
It is applied to the low-light crops and to the normal-light crops fed through the
generator in the same forward (as the identity term does). Unlike the identity term
(:mod:`engan.losses.identity`, "a well-lit image comes back unchanged"), it asks nothing
of dark and mid-tone pixels, so a per-pixel tone curve (less gain the brighter the pixel)
could meet it without judging from context whether a region is "already well lit". It was
built to test whether that judgement drew the halos of the identity runs; it did not remove
them: run ``lite_q`` (docs/experiments.md) cut clipping and gave the best LIME NIQE, with stronger
halos, because the generator's gain varies smoothly in space. Not in the paper: an optional
term (loss term ``highlight``, weight 0 = off).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from engan.losses.checks import check_rgb_pair
from engan.losses.registry import LossTerm, TermInputs

#: Input brightness (largest channel, [0, 1]) from which the term starts to apply, and the ramp to full weight.
HIGHLIGHT_THRESHOLD = 0.35
HIGHLIGHT_RAMP = 0.1


def highlight_loss(output: torch.Tensor, source: torch.Tensor, threshold: float = HIGHLIGHT_THRESHOLD,
                   ramp: float = HIGHLIGHT_RAMP) -> torch.Tensor:
    """How much the generator brightens pixels whose input was already bright (NCHW RGB in [0, 1]).

    Raises:
        ValueError: the batches differ in shape or are not NCHW RGB.
    """
    check_rgb_pair("highlight_loss", output, source)
    src = source.float().amax(1, keepdim=True)
    out = output.float().amax(1, keepdim=True)
    weight = ((src - threshold) / ramp).clamp(0.0, 1.0)
    return (weight * F.relu(out - src)).mean()


@dataclass(frozen=True)
class HighlightOptions:
    """``threshold``: input brightness (largest channel) where the term starts; ``ramp``: width to full weight."""

    threshold: float = HIGHLIGHT_THRESHOLD
    ramp: float = HIGHLIGHT_RAMP

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold < 1.0 or self.ramp <= 0:
            raise ValueError(f"threshold must be in [0, 1) and ramp > 0, got {self.threshold}, {self.ramp}")


def _highlight(inputs: TermInputs, options: HighlightOptions, state: object) -> torch.Tensor:
    out = torch.cat([inputs.fake, inputs.same], 0)
    src = torch.cat([inputs.low_in, inputs.normal], 0)
    return highlight_loss(out, src, options.threshold, options.ramp)


TERM = LossTerm(
    "highlight", _highlight, options=HighlightOptions, needs=("normal",),
    summary="pixels already bright in the input (low- and normal-light crops) must not come out brighter",
)
