"""Adversarial losses exactly as the authors' code computes them (spec section 3).

All functions take *raw* discriminator output maps (no sigmoid). ``MSE(z, t)`` is
the mean over every element of ``(z - t)**2`` and ``E[.]`` a mean over the whole
batch and all positions.

* global D/G: relativistic LSGAN (``use_ragan``), with the authors' 1/2 factors;
* local D/G: plain LSGAN (``hybrid_loss``) on a batch of patches.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from engan.losses.patches import crop_patches
from engan.losses.registry import LossTerm, TermInputs


def _mse_to(z: torch.Tensor, target: float) -> torch.Tensor:
    return F.mse_loss(z, torch.full_like(z, target))


def ragan_d_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Global D loss ``1/2 [MSE(C(r) - E[C(f)], 1) + MSE(C(f) - E[C(r)], 0)]``.

    Args:
        real: ``C_A(x_r)``, D output on real normal-light images.
        fake: ``C_A(x_f)``, D output on the (detached) generator output.
    """
    return 0.5 * (_mse_to(real - fake.mean(), 1.0) + _mse_to(fake - real.mean(), 0.0))


def ragan_g_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Global G loss ``1/2 [MSE(C(r) - E[C(f)], 0) + MSE(C(f) - E[C(r)], 1)]``.

    The gradient flows through both terms (via ``E[C(f)]`` and ``C(f)``); ``real``
    is recomputed by the caller, as the authors do.
    """
    return 0.5 * (_mse_to(real - fake.mean(), 0.0) + _mse_to(fake - real.mean(), 1.0))


def lsgan_d_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Local D loss for one set of patches: ``1/2 [MSE(C(r), 1) + MSE(C(f), 0)]``."""
    return 0.5 * (_mse_to(real, 1.0) + _mse_to(fake, 0.0))


def lsgan_g_loss(fake: torch.Tensor) -> torch.Tensor:
    """Local G loss for one set of patches: ``MSE(C(f), 1)``."""
    return _mse_to(fake, 1.0)


def to_disc_range(x01: torch.Tensor) -> torch.Tensor:
    """Map a [0, 1] image (what the generator returns) to the [-1, 1] the discriminators see."""
    return x01 * 2.0 - 1.0


def adversarial_term(inputs: TermInputs, options: object, state: object) -> dict[str, torch.Tensor]:
    """The generator's adversarial loss: relativistic LSGAN against the global D, LSGAN on the local patches."""
    c = inputs.critics
    fake_d = to_disc_range(inputs.fake)
    with torch.no_grad():  # C_A(x_r) has no path to G: skip its backward
        pred_real = c.global_d(to_disc_range(inputs.normal))
    return {
        "global": ragan_g_loss(pred_real, c.global_d(fake_d)),
        "local": lsgan_g_loss(c.local_d(crop_patches(fake_d, c.offsets, c.patch_size))),
    }


TERM = LossTerm(
    "adversarial", adversarial_term, weight=1.0, critics=True, paper=True,
    summary="fool the global (relativistic LSGAN) and local (LSGAN on random patches) discriminators",
)
