"""Evaluation sets on disk: a paired set (``low/`` + ``high/``) and unpaired image folders.

Default locations are the research data beside the repository (``../shared``, or the
folder named by ``$ENGAN_SHARED``): ``data/lol_eval15`` (paired), ``data/unpaired_test/
{DICM,LIME}`` (unpaired) and ``peers/`` (peer weights). These images are research-only
and are never copied into the repository.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engan.runtime.imageio.listing import IMAGE_EXTENSIONS, list_images
from engan.runtime.prepost import uint16_to_uint8


class DatasetError(ValueError):
    """An evaluation folder is missing or malformed; the message names it and the fix."""


def shared_root() -> Path:
    """``$ENGAN_SHARED`` if set, else ``shared/`` beside the repository (or beside the working folder)."""
    env = os.environ.get("ENGAN_SHARED")
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parents[2]
    for cand in (repo.parent / "shared", Path.cwd().parent / "shared", Path.cwd() / "shared"):
        if cand.is_dir():
            return cand
    return repo.parent / "shared"


def default_lol_dir() -> Path | None:
    """``<shared>/data/lol_eval15`` when present."""
    d = shared_root() / "data" / "lol_eval15"
    return d if d.is_dir() else None


def default_unpaired_dirs() -> list[Path]:
    """``<shared>/data/unpaired_test/{DICM,LIME}``, those present."""
    base = shared_root() / "data" / "unpaired_test"
    return [base / n for n in ("DICM", "LIME") if (base / n).is_dir()]


def default_peers_dir() -> Path:
    return shared_root() / "peers"


def folder_images(folder: str | os.PathLike) -> list[Path]:
    """Image files of a folder (not its sub-folders), numeric names in numeric order
    (:func:`engan.runtime.imageio.listing.list_images`); a missing folder is a :class:`DatasetError`."""
    d = Path(folder)
    if not d.is_dir():
        raise DatasetError(f"image folder not found: {d}")
    return list_images(d)


@dataclass(frozen=True)
class Pair:
    name: str
    low: Path
    high: Path


def list_pairs(folder: str | os.PathLike) -> list[Pair]:
    """Pairs of a ``low/`` + ``high/`` folder matched by file name (suffix may differ).

    Raises:
        DatasetError: a subfolder is missing, a low image has no high counterpart, or
            the set is empty.
    """
    d = Path(folder)
    low_dir, high_dir = d / "low", d / "high"
    for sub in (low_dir, high_dir):
        if not sub.is_dir():
            raise DatasetError(f"{d} is not a paired set: {sub} is missing (expected {d}/low/ and {d}/high/ with matching names)")
    highs = {p.stem: p for p in folder_images(high_dir)}
    pairs, missing = [], []
    for p in folder_images(low_dir):
        if p.stem in highs:
            pairs.append(Pair(p.stem, p, highs[p.stem]))
        else:
            missing.append(p.name)
    if missing:
        raise DatasetError(f"{high_dir} has no ground truth for {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
    if not pairs:
        raise DatasetError(f"{low_dir} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
    return pairs


def load_rgb(path: str | os.PathLike) -> np.ndarray:
    """Read an image as HxWx3 uint8 RGB (16-bit images are scaled to 8 bits, alpha dropped)."""
    from PIL import Image

    with Image.open(path) as im:
        if im.mode in ("I;16", "I;16B", "I;16L", "I"):
            a = np.asarray(im)
            a = uint16_to_uint8(a) if a.max() > 255 else np.clip(a, 0, 255).astype(np.uint8)
            return np.repeat(a[..., None], 3, axis=2)
        return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()


def fit_longest_side(img: np.ndarray, side: int, resample: str = "bicubic") -> np.ndarray:
    """``img`` downscaled (aspect kept) so its longest side is ``side``; a copy when it already fits.

    Args:
        resample: Pillow filter name, ``bicubic`` (grid tiles) or ``lanczos`` (test images).
    """
    from PIL import Image

    h, w = img.shape[:2]
    s = side / max(h, w)
    if s >= 1:
        return img.copy()
    size = (max(1, round(w * s)), max(1, round(h * s)))
    return np.asarray(Image.fromarray(img).resize(size, getattr(Image.Resampling, resample.upper())))
