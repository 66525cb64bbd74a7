"""Capture consistency: a shorter, noisier, JPEG-compressed capture of a scene gives the same picture.

The data pipeline pairs each generator input with its degraded twin
(:func:`engan.data.degrade.degrade`: up to ``stops`` less exposure in linear light, sensor
noise, 8-bit quantisation, JPEG). The term asks the generator's output on the twin to
equal a target, the picture of the *clean* input:

``L = D(G(twin), T(x)) + anchor * D(G(x), T(x))``,
``D(a, b) = C(a, b) + C(pool_k(a), pool_k(b))``

with ``C`` the Charbonnier distance and ``pool_k`` a k x k average pool, which weighs the
low-frequency colour blotches that per-pixel noise hides. ``T`` is a frozen ``teacher``
generator (a trained model: the fine-tune learns to remove what it would have amplified,
and ``anchor`` keeps its output on clean inputs), or without one the generator's own
output on ``x``, detached (``anchor`` is then unused). A self-target moves with the
weights; with a large weight it let whole runs drift (docs/experiments.md), so the shipped
recipe uses a teacher. Two things follow from the one target: noise and JPEG blocks are
removed exactly as much as they would have been amplified, and a darker capture of a scene
is brightened to the same picture (PairLIE's two-exposure idea). The brightness comes from
the clean input's picture, never from the noisy input, whose mean clipped noise raises
(the failure of the earlier ``noise_prob`` runs; docs/experiments.md). Not in the paper
(loss term ``consistency``, weight 0 = off).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from engan.losses.checks import check_rgb_pair
from engan.losses.registry import LossTerm, TermInputs

#: Charbonnier epsilon: smooth L1 below ~1/1000 of the range
CHARBONNIER_EPS = 1e-3


def charbonnier(a: torch.Tensor, b: torch.Tensor, eps: float = CHARBONNIER_EPS) -> torch.Tensor:
    """Mean of ``sqrt((a - b)^2 + eps^2)``: L1 that is smooth at 0."""
    return torch.sqrt((a.float() - b.float()) ** 2 + eps * eps).mean()


def consistency_loss(twin_out: torch.Tensor, target: torch.Tensor, coarse: int = 4) -> torch.Tensor:
    """Charbonnier distance of the twin's output to the (detached) target, at full and ``coarse``-pooled scale.

    Raises:
        ValueError: the batches differ in shape or are not NCHW RGB.
    """
    check_rgb_pair("consistency_loss", twin_out, target)
    target = target.detach()
    loss = charbonnier(twin_out, target)
    if coarse > 1:
        loss = loss + charbonnier(F.avg_pool2d(twin_out, coarse), F.avg_pool2d(target, coarse))
    return loss


@dataclass(frozen=True)
class ConsistencyOptions:
    """``coarse``: side of the average pool of the low-frequency part (1 = none); ``teacher``: a frozen
    generator (.safetensors, run folder or shipped name) whose picture of the clean input is the target
    ("" = the generator's own, detached); ``anchor``: weight of the clean input keeping the teacher's picture."""

    coarse: int = 4
    teacher: str = ""
    anchor: float = 1.0

    def __post_init__(self) -> None:
        if self.coarse < 1:
            raise ValueError(f"coarse must be >= 1, got {self.coarse}")
        if self.anchor < 0:
            raise ValueError(f"anchor must be >= 0, got {self.anchor}")


def frozen_teacher(source: str) -> torch.nn.Module:
    """The generator ``source`` names, frozen: no gradients, BatchNorm on its running statistics, and the
    training-mode output (no shoulder or clamp), so it is compared with the student's like for like."""
    from engan.models.checkpoint import freeze_batchnorm, load_generator

    teacher = load_generator(source)  # a file, run folder or shipped name (resolve_checkpoint)
    for p in teacher.parameters():
        p.requires_grad_(False)
    return freeze_batchnorm(teacher.train())


def _consistency(inputs: TermInputs, options: ConsistencyOptions, teacher: torch.nn.Module | None) -> torch.Tensor:
    if teacher is None:
        return consistency_loss(inputs.degraded, inputs.fake, options.coarse)
    with torch.no_grad():
        target = teacher(inputs.low_in)
    loss = consistency_loss(inputs.degraded, target, options.coarse)
    if options.anchor > 0:
        loss = loss + options.anchor * consistency_loss(inputs.fake, target, options.coarse)
    return loss


TERM = LossTerm(
    "consistency", _consistency, options=ConsistencyOptions, needs=("degraded",),
    build=lambda o: frozen_teacher(o.teacher) if o.teacher else None,
    summary="a darker, noisy, JPEG twin of the input (data.degrade) gives the clean input's picture: learned "
            "denoising (target: a frozen teacher, or the generator itself)",
)
