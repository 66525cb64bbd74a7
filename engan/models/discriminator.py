"""PatchGAN discriminators without normalisation (``NoNormDiscriminator``).

The global and the local discriminator differ only by depth: every conv is 4x4
with padding 2 and a bias, followed by LeakyReLU(0.2); no norm, no sigmoid.
"""
from __future__ import annotations

from torch import nn


class PatchDiscriminator(nn.Sequential):
    """``n_layers`` stride-2 convs, one stride-1 conv, then a linear 1-channel map."""

    def __init__(self, in_channels: int = 3, ndf: int = 64, n_layers: int = 5) -> None:
        layers: list[nn.Module] = [nn.Conv2d(in_channels, ndf, 4, 2, 2), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2**n, 8)
            layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, 2, 2), nn.LeakyReLU(0.2, True)]
        prev, mult = mult, min(2**n_layers, 8)
        layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, 1, 2), nn.LeakyReLU(0.2, True)]
        layers += [nn.Conv2d(ndf * mult, 1, 4, 1, 2)]
        super().__init__(*layers)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.02)
