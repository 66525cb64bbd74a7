"""Calibration inputs for INT8 quantization: low-light photos (or generated ones) as model inputs.

Static quantization fixes each activation's range from a few representative inputs,
so calibration uses real low-light photos (``../shared/data/train/low`` when present),
centre-cropped to one multiple-of-16 size, and falls back to generated dark images
when there are none.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from engan.data.images import DataError
from engan.data.images import training_images as list_images
from engan.runtime.imageio.listing import IMAGE_EXTENSIONS as IMAGE_SUFFIXES


class CalibrationError(ValueError):
    """The calibration images cannot be used; the message names the folder or file and the fix."""


def default_calib_dir() -> Path | None:
    """``$ENGAN_SHARED/data/train/low`` or ``<repo>/../shared/data/train/low`` when present, else None."""
    repo = Path(__file__).resolve().parents[1]  # export/ sits in the repository root
    shared = Path(os.environ.get("ENGAN_SHARED", repo.parent / "shared"))
    folder = shared / "data" / "train" / "low"
    return folder if folder.is_dir() else None


def pick_evenly(items: Sequence[Path], count: int) -> list[Path]:
    """``count`` items spread evenly over ``items`` (all of them when there are fewer)."""
    if count >= len(items):
        return list(items)
    idx = np.linspace(0, len(items) - 1, count).round().astype(int)
    return [items[i] for i in idx]


def center_fit(img: "object", size: tuple[int, int]) -> np.ndarray:
    """Resize a PIL image so it covers ``size`` (H, W), centre-crop it; float32 HxWx3 in [0, 1]."""
    from PIL import Image

    h, w = size
    img = img.convert("RGB")
    scale = max(h / img.height, w / img.width)
    rw, rh = max(w, round(img.width * scale)), max(h, round(img.height * scale))
    img = img.resize((rw, rh), Image.BILINEAR)
    left, top = (rw - w) // 2, (rh - h) // 2
    img = img.crop((left, top, left + w, top + h))
    return np.asarray(img, dtype=np.float32) / 255.0


def generated_dark_image(h: int, w: int, seed: int) -> np.ndarray:
    """A deterministic low-light-like image (smooth colour patterns, noise), float32 HxWx3 in [0, 1]."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    fy, fx = rng.uniform(3, 40, size=2)
    base = np.stack([np.sin(xx / fx + c + seed) * np.cos(yy / fy - c) for c in range(3)], -1)
    level = rng.uniform(0.05, 0.35)
    img = (base * 0.5 + 0.5) * level + rng.random((h, w, 3), dtype=np.float32) * 0.03
    return np.clip(img, 0.0, 1.0).astype(np.float32)


def load_calibration_batches(
    calib_dir: Path | None,
    num_images: int,
    size: tuple[int, int],
    progress: bool = False,
) -> tuple[list[np.ndarray], str]:
    """Calibration inputs as float32 1x3xHxW arrays in [0, 1], and where they came from.

    Args:
        calib_dir: folder of low-light images; None uses :func:`default_calib_dir`, and
            generated dark images when that is absent too.
        num_images: how many images (spread evenly over the sorted folder).
        size: (H, W) crop size, multiples of 16.
        progress: show a tqdm bar while decoding.

    Raises:
        CalibrationError: the folder is missing, empty or holds an unreadable image.
    """
    if num_images < 1:
        raise CalibrationError(f"num_images must be at least 1, got {num_images}")
    if size[0] % 16 or size[1] % 16:
        raise CalibrationError(f"calibration size {size[0]}x{size[1]} (HxW) must be multiples of 16")
    folder = calib_dir if calib_dir is not None else default_calib_dir()
    if folder is None:
        h, w = size
        arrays = [generated_dark_image(h, w, seed) for seed in range(num_images)]
        source = f"{num_images} generated dark images (no calibration folder; pass calib_dir for real photos)"
    else:
        folder = Path(folder)
        if not folder.is_dir():
            raise CalibrationError(f"calibration folder {folder} does not exist; pass a folder of low-light images")
        try:
            files = list_images(folder)
        except DataError:  # no images in it
            raise CalibrationError(
                f"calibration folder {folder} holds no images ({', '.join(IMAGE_SUFFIXES)}); "
                "pass a folder of low-light photos"
            ) from None
        from PIL import Image, UnidentifiedImageError
        from tqdm.auto import tqdm

        arrays = []
        for path in tqdm(pick_evenly(files, num_images), desc="int8 calibration images", unit="img",
                         disable=not progress, leave=False):
            try:
                with Image.open(path) as im:
                    arrays.append(center_fit(im, size))
            except (OSError, UnidentifiedImageError) as e:
                raise CalibrationError(f"calibration image {path} cannot be read ({e}); remove it or fix the file") from None
        source = f"{len(arrays)} images from {folder}"
    return [np.ascontiguousarray(a.transpose(2, 0, 1)[None]) for a in arrays], source


def make_reader(batches: list[np.ndarray], input_name: str = "input", progress: bool = False):
    """An ``onnxruntime.quantization.CalibrationDataReader`` over prepared input batches."""
    from onnxruntime.quantization import CalibrationDataReader
    from tqdm.auto import tqdm

    class ImageCalibrationReader(CalibrationDataReader):
        """Feeds each batch once per pass; ``rewind`` restarts (ORT may make several passes)."""

        def __init__(self) -> None:
            self._i = 0
            self._bar = tqdm(total=len(batches), desc="int8 calibration", unit="img",
                             disable=not progress, leave=False)

        def get_next(self) -> dict[str, np.ndarray] | None:
            if self._i >= len(batches):
                self._bar.close()
                return None
            self._i += 1
            self._bar.update(1)
            return {input_name: batches[self._i - 1]}

        def rewind(self) -> None:
            self._i = 0

    return ImageCalibrationReader()
