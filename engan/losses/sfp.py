"""Self-feature-preserving loss: MSE of instance-normalised features (spec section 3)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from engan.losses.patches import crop_patches
from engan.losses.registry import LossTerm, TermInputs


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


@dataclass(frozen=True)
class SFPOptions:
    """``feature_net``: ``efficientnet-lite0`` (ships offline) or ``vgg16`` (the paper's; needs ``vgg_weights``,
    a torchvision ``vgg16-397923af.pth`` or a .safetensors with its names); ``patch``: also on the local patches."""

    feature_net: str = "efficientnet-lite0"
    vgg_weights: str = ""
    patch: bool = True

    def __post_init__(self) -> None:
        from engan.losses.feature_nets import FEATURE_NETS

        if self.feature_net not in FEATURE_NETS:
            raise ValueError(f"feature_net {self.feature_net!r} is not one of: {', '.join(FEATURE_NETS)}")


def _build(options: SFPOptions) -> SFPLoss:
    from engan.losses.feature_nets import build_feature_net

    return SFPLoss(build_feature_net(options.feature_net, options.vgg_weights or None))


def sfp_term(inputs: TermInputs, options: SFPOptions, loss: SFPLoss) -> dict[str, torch.Tensor]:
    """The self-feature-preserving loss on the whole crop and, with ``patch``, on the local patches."""
    parts = {"global": loss(inputs.fake, inputs.low)}
    if options.patch:
        c = inputs.critics
        parts["local"] = loss(crop_patches(inputs.fake, c.offsets, c.patch_size),
                              crop_patches(inputs.low, c.offsets, c.patch_size))
    return parts


TERM = LossTerm(
    "sfp", sfp_term, weight=1.0, options=SFPOptions, build=_build, paper=True,
    summary="self-feature preserving: instance-normalised features of the output match the input's",
)
