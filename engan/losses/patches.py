"""Random local patches shared across the batch (the authors' ``patchD`` / ``patchD_3``)."""
from __future__ import annotations

import numpy as np
import torch


def patch_offsets(
    height: int, width: int, size: int, count: int, rng: np.random.Generator
) -> list[tuple[int, int]]:
    """``count`` random (y, x) offsets of ``size`` x ``size`` patches, one per draw.

    As in the authors' code, ``x`` is drawn from ``[0, max(0, W - size - 1)]`` and ``y``
    from ``[0, max(0, H - size - 1)]`` (inclusive), and each offset is used for the
    whole batch.

    Raises:
        ValueError: the image is smaller than a patch.
    """
    if height < size or width < size:
        raise ValueError(f"a {size}x{size} patch does not fit a {width}x{height} crop; use --crop >= {size}")
    out = []
    for _ in range(count):
        x = int(rng.integers(0, max(0, width - size - 1) + 1))
        y = int(rng.integers(0, max(0, height - size - 1) + 1))
        out.append((y, x))
    return out


def crop_patches(x: torch.Tensor, offsets: list[tuple[int, int]], size: int) -> torch.Tensor:
    """Crop every offset from an NCHW batch; returns ``(len(offsets) * N) x C x size x size``.

    Patch ``k`` of image ``n`` is at index ``k * N + n``, so a mean over the result
    equals the mean over patches of the per-patch means (all patches have one size).
    """
    return torch.cat([x[..., y : y + size, x0 : x0 + size] for y, x0 in offsets], dim=0)
