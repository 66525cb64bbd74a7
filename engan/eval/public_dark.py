"""A paired set anyone can rebuild offline: scikit-image's public-domain photos, darkened.

``engan eval --public-dark`` scores it next to LOL: the photos ship inside the
scikit-image package (no research data, nothing downloaded) and no engan model
was trained on them, so it checks that a model generalises beyond its training
and selection data. The darkening is synthetic (``dark = original**2.2 * 0.25``:
about two stops under-exposed with crushed shadows, rounded to 8 bits, no
noise), so read it as a generalisation check, not as a benchmark like LOL.
``make demo`` uses the same darkening when ``../shared`` is absent.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

#: scikit-image sample photos used (RGB ones; public domain or CC0 per scikit-image's data README).
SAMPLES = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "retina", "colorwheel",
           "hubble_deep_field")
#: Longest side of a pair; bigger samples are downscaled first (LANCZOS), then darkened.
MAX_SIDE = 800
GAMMA, GAIN = 2.2, 0.25


def darken(img: np.ndarray) -> np.ndarray:
    """The set's darkening of an 8-bit RGB image: ``round(255 * (img/255)**2.2 * 0.25)``."""
    x = np.asarray(img, dtype=np.float32) / 255.0
    return (np.clip(x**GAMMA * GAIN, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def sample_photo(name: str, max_side: int = MAX_SIDE) -> np.ndarray:
    """One scikit-image sample as 8-bit RGB, downscaled to ``max_side`` (no download: bundled files)."""
    from skimage import data

    from engan.eval.datasets import fit_longest_side

    img = np.ascontiguousarray(np.asarray(getattr(data, name)())[..., :3], dtype=np.uint8)
    return fit_longest_side(img, max_side, "lanczos")


def write_public_dark_set(folder: str | os.PathLike, names: tuple[str, ...] | None = None,
                          with_high: bool = True) -> Path:
    """Write ``folder/low/<name>.png`` (darkened) and ``folder/high/<name>.png`` (original); returns ``folder``.

    ``names``: scikit-image sample names, default :data:`SAMPLES`.

    Raises:
        ModuleNotFoundError: scikit-image is missing (``pip install 'engan[eval]'``).
    """
    from PIL import Image

    root = Path(folder)
    for sub in ("low", "high") if with_high else ("low",):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for name in SAMPLES if names is None else names:
        img = sample_photo(name)
        Image.fromarray(darken(img)).save(root / "low" / f"{name}.png")
        if with_high:
            Image.fromarray(img).save(root / "high" / f"{name}.png")
    return root
