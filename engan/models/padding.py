"""Torch-side padding helpers (the runtime has the numpy twin in engan.runtime.prepost)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from engan.config import PAD_MULTIPLE


def pad_amounts(h: int, w: int, multiple: int = PAD_MULTIPLE) -> tuple[int, int, int, int]:
    """Centred padding (top, bottom, left, right) up to the next multiple, as the authors do."""
    dh, dw = (-h) % multiple, (-w) % multiple
    top, left = dh // 2, dw // 2
    return top, dh - top, left, dw - left


def pad_to_multiple(x: torch.Tensor, multiple: int = PAD_MULTIPLE) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """Reflect-pad an NCHW tensor to a multiple (replicate where the image is too small to reflect)."""
    h, w = x.shape[-2:]
    t, b, l, r = pad_amounts(int(h), int(w), multiple)
    if not (t or b or l or r):
        return x, (0, 0, 0, 0)
    mode = "reflect" if (t < h and b < h and l < w and r < w) else "replicate"
    return F.pad(x, (l, r, t, b), mode=mode), (t, b, l, r)


def crop_padding(x: torch.Tensor, pads: tuple[int, int, int, int]) -> torch.Tensor:
    t, b, l, r = pads
    h, w = x.shape[-2:]
    return x[..., t : h - b, l : w - r]


@torch.no_grad()
def enhance_tensor(generator: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Run the generator on an RGB [0, 1] NCHW tensor of any size (pads and crops back)."""
    xp, pads = pad_to_multiple(x)
    return crop_padding(generator(xp), pads)
