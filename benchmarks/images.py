"""Benchmark inputs: real LOL low-light photos fitted to each size, or generated ones.

Timing rounds cycle through these images, so the parity of every backend against
eager FP32 is measured on real content at no extra cost (the outputs of the timed
runs are compared).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmarks.settings import shared_dir
from engan.data.images import DataError
from engan.data.images import training_images as list_images
from engan.export.calibration import center_fit, generated_dark_image


def lol_dir() -> Path | None:
    """``<shared>/data/lol_eval15/low`` when present."""
    folder = shared_dir() / "data" / "lol_eval15" / "low"
    try:
        return folder if list_images(folder) else None
    except DataError:  # missing, or no images in it
        return None


def bench_inputs(size: tuple[int, int], count: int, batch: int = 1) -> tuple[list[np.ndarray], str]:
    """``count`` float32 ``batch x 3 x H x W`` arrays in [0, 1], and where they came from.

    Real LOL photos (600x400) are resized to cover ``size`` and centre-cropped; at the
    LOL size itself (400x608) that is a 1.3 % upscale plus a 4-pixel crop. Without the
    shared data, deterministic generated dark images are used.
    """
    h, w = size
    folder = lol_dir()
    frames: list[np.ndarray] = []
    if folder is not None:
        from PIL import Image

        files = list_images(folder)
        for path in files[: count * batch]:
            with Image.open(path) as im:
                frames.append(center_fit(im, size))
        source = f"LOL eval15 low ({folder})"
    else:
        source = "generated dark images (no shared data; set ENGAN_SHARED)"
    seed = 0
    while len(frames) < count * batch:
        frames.append(generated_dark_image(h, w, seed))
        seed += 1
    arrays = [np.ascontiguousarray(f.transpose(2, 0, 1)) for f in frames]
    batches = [np.stack(arrays[i * batch:(i + 1) * batch]) for i in range(count)]
    return batches, source
