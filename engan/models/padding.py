"""Torch-side padding: the tensor twin of :mod:`engan.runtime.prepost`'s numpy padding.

The amounts (centred, ``top = dh // 2``), the reflect/edge rule and the crop come from
the runtime, so a checkpoint and its exported graph see exactly the same pixels; only
the tensor op lives here.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from engan.config import PAD_MULTIPLE
from engan.runtime.prepost import crop_padding, pad_amounts, pad_mode

__all__ = ["crop_padding", "enhance_tensor", "pad_amounts", "pad_to_multiple"]


def pad_to_multiple(x: torch.Tensor, multiple: int = PAD_MULTIPLE) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """Reflect-pad an NCHW tensor to a multiple (replicate where the image is too small to reflect)."""
    h, w = int(x.shape[-2]), int(x.shape[-1])
    pads = pad_amounts(h, w, multiple)
    if not any(pads):
        return x, (0, 0, 0, 0)
    t, b, l, r = pads
    mode = "reflect" if pad_mode(h, w, pads) == "reflect" else "replicate"
    return F.pad(x, (l, r, t, b), mode=mode), pads


@torch.no_grad()
def enhance_tensor(generator: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Run the generator on an RGB [0, 1] NCHW tensor of any size (pads and crops back)."""
    xp, pads = pad_to_multiple(x)
    return crop_padding(generator(xp), pads)
