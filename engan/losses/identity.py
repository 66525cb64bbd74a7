"""Identity term: a well-lit image fed to the generator should come out unchanged.

``L_idt = mean |G(normal) - normal|`` (L1 on [0, 1] RGB), CycleGAN's identity loss
applied to the one direction EnlightenGAN has. The low-light training crops are
darker than many real photos, so without it the generator never sees an input
that needs little or no brightening, and on such photos (DICM's are at mean luma
84/255) it over-brightens and clips whole channels to 255. The normal-light crops
the discriminators already get are fed through the generator in the same forward
as the low-light ones, so BatchNorm sees one batch whose statistics match its
running averages at inference. Not in the paper: an optional stabiliser
(loss term ``identity``, weight 0 = off).
"""
from __future__ import annotations

import torch

from engan.losses.checks import check_rgb_pair
from engan.losses.registry import LossTerm


def identity_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of two NCHW RGB batches of one shape (the generator's output first).

    Raises:
        ValueError: the batches differ in shape or are not NCHW RGB.
    """
    check_rgb_pair("identity_loss", output, target)
    return (output.float() - target.float()).abs().mean()


TERM = LossTerm(
    "identity", lambda i, o, s: identity_loss(i.same, i.normal), needs=("normal",),
    summary="well-lit crops fed through the generator come back unchanged (L1); about 1.4x the step time",
)
