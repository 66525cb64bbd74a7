"""Find and decode training images once into RAM (uint8 RGB arrays).

Folders are scanned recursively for image files (the runtime's listing,
:func:`engan.runtime.imageio.listing.list_images`, and its suffixes). Files
that cannot be decoded, or are smaller than the training crop, are skipped with
one warning line each that names the file and the reason. A missing folder, an
empty one, or one where every file was skipped is a :class:`DataError` raised
before training starts.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from engan.runtime.imageio.listing import IMAGE_EXTENSIONS
from engan.runtime.imageio.listing import list_images as _list_folder
from engan.runtime.prepost import uint16_to_uint8

log = logging.getLogger("engan.data")


class DataError(ValueError):
    """A training folder cannot be used; the message names the folder and the fix."""


@dataclass(frozen=True)
class ImageBank:
    """Decoded images of one folder, kept in RAM.

    Attributes:
        root: the scanned folder.
        images: HxWx3 uint8 RGB arrays, in sorted path order.
        paths: the file of each image.
        skipped: ``(path, reason)`` of every file that was left out.
    """

    root: Path
    images: tuple[np.ndarray, ...]
    paths: tuple[Path, ...]
    skipped: tuple[tuple[Path, str], ...] = ()

    def __len__(self) -> int:
        return len(self.images)

    @property
    def nbytes(self) -> int:
        return sum(im.nbytes for im in self.images)


def training_images(folder: str | os.PathLike) -> list[Path]:
    """Image files under ``folder`` (recursive, in sorted path order); raises :class:`DataError` if unusable.

    The path order (not the listing's natural order) is what fixes which image a seeded
    sampler draws, so runs stay reproducible.
    """
    root = Path(folder)
    if not root.exists():
        raise DataError(f"image folder not found: {root} (check the path passed to --low/--normal)")
    if not root.is_dir():
        raise DataError(f"{root} is not a folder; pass a folder of images to --low/--normal")
    files = sorted(_list_folder(root, recursive=True))
    if not files:
        raise DataError(
            f"no images in {root} (looked recursively for {', '.join(IMAGE_EXTENSIONS)}); "
            "put training images there or pass another folder"
        )
    return files


def to_uint8_rgb(img: Image.Image) -> np.ndarray:
    """Convert any PIL image (L, LA, P, RGBA, I;16, CMYK, ...) to an HxWx3 uint8 RGB array."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        a = np.asarray(img)
        a = uint16_to_uint8(a) if a.max() > 255 else np.clip(a, 0, 255).astype(np.uint8)
        return np.repeat(a[..., None], 3, axis=-1)
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.ascontiguousarray(np.asarray(img, dtype=np.uint8))


def load_folder(folder: str | os.PathLike, min_size: int = 0) -> ImageBank:
    """Decode every image of ``folder`` once.

    Args:
        folder: folder to scan recursively.
        min_size: images whose height or width is below this are skipped (the crop size).

    Returns:
        The decoded images.

    Raises:
        DataError: the folder is missing, empty, or no file in it is usable.
    """
    root = Path(folder)
    images: list[np.ndarray] = []
    paths: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    for path in training_images(root):
        try:
            with Image.open(path) as im:
                im.load()
                arr = to_uint8_rgb(im)
        except Exception as e:  # PIL raises many types for broken files
            reason = f"unreadable ({type(e).__name__}: {e})"
            log.warning("skipping %s: %s", path, reason)
            skipped.append((path, reason))
            continue
        h, w = arr.shape[:2]
        if h < min_size or w < min_size:
            reason = f"too small ({w}x{h} px, the crop needs at least {min_size}x{min_size})"
            log.warning("skipping %s: %s", path, reason)
            skipped.append((path, reason))
            continue
        images.append(arr)
        paths.append(path)
    if not images:
        raise DataError(
            f"no usable images in {root}: all {len(skipped)} files were skipped "
            f"(e.g. {skipped[0][0].name}: {skipped[0][1]}); add images of at least "
            f"{min_size}x{min_size} px or lower --crop"
        )
    return ImageBank(root, tuple(images), tuple(paths), tuple(skipped))
