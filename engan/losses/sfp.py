"""Self-feature-preserving loss: MSE of instance-normalised features (spec section 3)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def instance_norm(f: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """``InstanceNorm2d(C, affine=False)`` in functional form (per image, per channel)."""
    return F.instance_norm(f, eps=eps)


class SFPLoss(nn.Module):
    """``L_SFP(a, b) = MSE(IN(phi(a)), IN(phi(b)))`` with a frozen feature network ``phi``.

    Args:
        features: frozen network taking RGB [0, 1] NCHW batches.
    """

    def __init__(self, features: nn.Module) -> None:
        super().__init__()
        self.features = features

    def forward(self, output: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        """``output``: generator output; ``reference``: the un-darkened low-light input (both [0, 1])."""
        with torch.no_grad():  # the reference needs no backward pass
            fr = self.features(reference).float()
        fo = self.features(output).float()
        return F.mse_loss(instance_norm(fo), instance_norm(fr))
