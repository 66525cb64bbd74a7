"""Before/after sample grids written during training (input row above output row)."""
from __future__ import annotations

import io
import os

import numpy as np
import torch
from PIL import Image

from engan.data.images import ImageBank
from engan.runtime.atomic import atomic_write_bytes


def centre_crop(img: np.ndarray, size: int) -> np.ndarray:
    """The central ``size`` x ``size`` crop (clipped to the image) of an HxWx3 array."""
    h, w = img.shape[:2]
    s = min(size, h, w)
    y, x = (h - s) // 2, (w - s) // 2
    return img[y : y + s, x : x + s]


def sample_inputs(bank: ImageBank, count: int = 4, size: int = 256) -> torch.Tensor:
    """Fixed inputs for the grid: centre crops (multiple of 16) of the first ``count`` images."""
    imgs = [centre_crop(im, size) for im in bank.images[:count]]
    s = min(min(im.shape[0] for im in imgs), size)
    s = max(16, s - s % 16)
    imgs = [centre_crop(im, s) for im in imgs]
    arr = np.stack(imgs).astype(np.float32).transpose(0, 3, 1, 2) / 255.0
    return torch.from_numpy(arr)


def to_grid(rows: list[torch.Tensor], pad: int = 4) -> np.ndarray:
    """Tile rows of NCHW [0, 1] batches into one HxWx3 uint8 picture with white gaps."""
    n, _, h, w = rows[0].shape
    grid = np.full((len(rows) * (h + pad) + pad, n * (w + pad) + pad, 3), 255, np.uint8)
    for r, batch in enumerate(rows):
        a = (batch.detach().float().clamp(0, 1).cpu().numpy().transpose(0, 2, 3, 1) * 255.0 + 0.5).astype(np.uint8)
        for c in range(n):
            y, x = pad + r * (h + pad), pad + c * (w + pad)
            grid[y : y + h, x : x + w] = a[c]
    return grid


@torch.no_grad()
def write_sample_grid(path: str | os.PathLike, generator: torch.nn.Module, inputs: torch.Tensor) -> None:
    """Run ``generator`` (eval mode) on ``inputs`` and save the input/output grid as PNG, atomically."""
    was_training = generator.training
    generator.eval()
    try:
        dev = next(generator.parameters()).device
        out = generator(inputs.to(dev)).float().cpu()
    finally:
        generator.train(was_training)
    buf = io.BytesIO()
    Image.fromarray(to_grid([inputs, out])).save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())
