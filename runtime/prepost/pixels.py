"""Pixel conversions shared by every backend and by training, eval and export (NumPy only).

* :func:`to_float` / :func:`from_float` (:func:`to_uint8`, :func:`to_uint16`): uint8, uint16
  or float [0, 1] to float32 [0, 1] and back, rounding to nearest (never truncating);
  :func:`uint16_to_uint8`: 16-bit samples to 8 bits, rounded;
* :func:`hwc_to_nchw` / :func:`nchw_to_hwc`, :func:`gray_to_rgb`, :func:`luma` (Rec.601,
  :data:`LUMA_WEIGHTS`, the weights of the generator's attention map);
* :func:`pad_amounts` / :func:`pad_to_multiple` / :func:`crop_padding`: centred reflect
  padding to a multiple of 16 and back (``top = dh // 2``; edge padding where the image
  is too small to reflect, e.g. 1x1); the torch twin in :mod:`engan.models.padding` takes
  its amounts and mode from here;
* :func:`fade_bright`: the enhancement fades out for photos that are not dark, by each
  whole image's mean luma, so tiles and backends agree.
"""
from __future__ import annotations

import numpy as np

#: Spatial multiple the generator needs (four 2x poolings); engan.config.PAD_MULTIPLE.
PAD_MULTIPLE = 16

#: Rec.601 luma weights, as in the generator's attention map and Pillow's convert("L").
LUMA_WEIGHTS = (0.299, 0.587, 0.114)

#: ``fade_bright``'s default range of whole-image mean luma (Rec.601, [0, 1]): full enhancement up to 0.15,
#: the brightest of the 300 under-exposed training photos (0.149), none from 0.42, the mean of the 110
#: well-exposed ones (0.424) (engan's ../shared/data/train).
FADE_RANGE = (0.15, 0.42)

Pads = tuple[int, int, int, int]


# --------------------------------------------------------------------------- dtypes
def to_float(img: np.ndarray) -> np.ndarray:
    """Pixel values to float32 in [0, 1].

    Args:
        img: uint8 (divided by 255), uint16 (divided by 65535) or a float array whose
            values are in [0, 1] (values outside are clipped; NaN/inf are refused), in
            either byte order (``>u2`` from a big-endian file is read as uint16).

    Returns:
        A float32 array of the same shape.

    Raises:
        TypeError: for other dtypes (e.g. int32), naming the supported ones.
        ValueError: for a float array with NaN or infinite values.
    """
    a = given = np.asarray(img)
    if not a.dtype.isnative:
        a = a.astype(a.dtype.newbyteorder("="))
    if a.dtype == np.uint8:
        return a.astype(np.float32) / np.float32(255.0)
    if a.dtype == np.uint16:
        return a.astype(np.float32) / np.float32(65535.0)
    if np.issubdtype(a.dtype, np.floating):
        a = a.astype(np.float32, copy=False)
        if not np.isfinite(a).all():
            raise ValueError("the float image has NaN or infinite values; pass finite values in [0, 1]")
        return np.clip(a, 0.0, 1.0)
    raise TypeError(f"unsupported pixel dtype {given.dtype}; pass uint8, uint16 or float values in [0, 1]")


def from_float(x: np.ndarray, dtype: np.dtype | type) -> np.ndarray:
    """Float [0, 1] values to ``dtype``: uint8/uint16 are clipped, scaled and rounded to nearest.

    Rounding is :func:`numpy.rint` (round half to even, like ``torch.round``): no truncation,
    so ``from_float(to_float(u), u.dtype) == u`` for every uint8 and uint16 value. The
    arithmetic is float32 (the runtime's pixels), or float64 for float64 input (the
    metrics' images, so ``rint(x * 255)`` is exact there). Float dtypes get the clipped
    values. A non-native byte order (``>u2``) is kept.
    """
    dt = np.dtype(dtype)
    if not dt.isnative:
        return from_float(x, dt.newbyteorder("=")).astype(dt)
    a = np.asarray(x)
    work = np.float64 if a.dtype == np.float64 else np.float32
    x = np.clip(np.asarray(a, dtype=work), 0.0, 1.0)  # a fresh array: scaled in place below
    if dt == np.uint8 or dt == np.uint16:
        x *= work(255.0 if dt == np.uint8 else 65535.0)
        np.rint(x, out=x)
        return np.ascontiguousarray(x.astype(dt))
    if np.issubdtype(dt, np.floating):
        return np.ascontiguousarray(x.astype(dt, copy=False))
    raise TypeError(f"unsupported output dtype {dt}; use uint8, uint16 or a float dtype")


def to_uint8(x: np.ndarray) -> np.ndarray:
    """Float [0, 1] to uint8 with rounding (see :func:`from_float`)."""
    return from_float(x, np.uint8)


def to_uint16(x: np.ndarray) -> np.ndarray:
    """Float [0, 1] to uint16 with rounding (see :func:`from_float`)."""
    return from_float(x, np.uint16)


def uint16_to_uint8(a: np.ndarray) -> np.ndarray:
    """16-bit samples (0..65535) to 8 bits, rounded to nearest: ``(a + 128) // 257``.

    Exact integer arithmetic, equal to ``rint(a / 257)`` and ``rint(a / 65535 * 255)`` for
    every 16-bit value; values outside 0..65535 are clipped first.
    """
    wide = np.clip(np.asarray(a), 0, 65535).astype(np.uint32)
    return ((wide + 128) // 257).astype(np.uint8)


# ----------------------------------------------------------------------- layout/colour
def hwc_to_nchw(img: np.ndarray) -> np.ndarray:
    """An HxWxC image (or NxHxWxC stack) to a contiguous NxCxHxW array."""
    a = np.asarray(img)
    if a.ndim == 3:
        a = a[None]
    if a.ndim != 4:
        raise ValueError(f"expected an HxWxC image or NxHxWxC stack, got shape {a.shape}")
    return np.ascontiguousarray(a.transpose(0, 3, 1, 2))


def nchw_to_hwc(x: np.ndarray) -> np.ndarray:
    """An NxCxHxW array to NxHxWxC: a transposed view, no copy (index ``[0]`` for one image)."""
    if x.ndim != 4:
        raise ValueError(f"expected an NxCxHxW array, got shape {x.shape}")
    return x.transpose(0, 2, 3, 1)


def gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    """HxW grayscale to HxWx3 by replicating the channel."""
    return np.repeat(np.asarray(gray)[..., None], 3, axis=-1)


def luma(rgb: np.ndarray, dtype: type = np.float32) -> np.ndarray:
    """Rec.601 luma (:data:`LUMA_WEIGHTS`) of RGB pixels (``...x3``, alpha ignored), on the input's scale.

    Args:
        rgb: ``HxWx3`` (or ``HxWx4``, or any ``...xC`` with C >= 3) pixels; an ``HxW`` array is
            already grey and comes back as it is (cast to ``dtype``).
        dtype: ``np.float32``: the runtime's arithmetic (``0.299 R + 0.587 G + 0.114 B`` in
            float32, what grey outputs are rounded from); ``np.float64``: the metrics'
            (brightness, NIQE), a float64 matrix product.

    Returns:
        The luma, shape ``rgb.shape[:-1]``, of ``dtype``.
    """
    a = np.asarray(rgb)
    if a.ndim == 2:
        return a.astype(dtype)
    if a.ndim < 1 or a.shape[-1] < 3:
        raise ValueError(f"expected RGB pixels (...x3), got shape {a.shape}")
    if np.dtype(dtype) == np.float64:
        return a[..., :3].astype(np.float64) @ np.asarray(LUMA_WEIGHTS, dtype=np.float64)
    r, g, b = (np.asarray(a, dtype=dtype)[..., c] for c in range(3))
    return LUMA_WEIGHTS[0] * r + LUMA_WEIGHTS[1] * g + LUMA_WEIGHTS[2] * b


# --------------------------------------------------------------------------- fading
def check_fade_range(fade: tuple[float, float]) -> tuple[float, float]:
    """``(lo, hi)`` as floats with ``0 <= lo < hi <= 1``, else a ValueError saying so."""
    try:
        lo, hi = (float(v) for v in fade)
    except (TypeError, ValueError):
        raise ValueError(f"fade range must be two numbers (lo, hi), got {fade!r}") from None
    if not 0.0 <= lo < hi <= 1.0:
        raise ValueError(f"fade range must satisfy 0 <= lo < hi <= 1 (mean luma), got {lo:g}, {hi:g}; "
                         f"the default is {FADE_RANGE[0]:g} {FADE_RANGE[1]:g}")
    return lo, hi


def fade_strength(mean_luma: np.ndarray | float, fade: tuple[float, float] = FADE_RANGE) -> np.ndarray:
    """Share of the enhancement kept for an image of this mean luma: 1 up to ``lo``, 0 from ``hi``.

    Smooth in between (``1 - smoothstep``), so two photos of nearly the same brightness are
    treated nearly alike.
    """
    lo, hi = check_fade_range(fade)
    t = np.clip((np.asarray(mean_luma, dtype=np.float64) - lo) / (hi - lo), 0.0, 1.0)
    return 1.0 - t * t * (3.0 - 2.0 * t)


def fade_bright(x: np.ndarray, y: np.ndarray, fade: tuple[float, float] = FADE_RANGE) -> np.ndarray:
    """Fade the enhancement ``x -> y`` out for images that are not dark: ``x + s * (y - x)``.

    ``s`` is :func:`fade_strength` of each image's mean Rec.601 luma (over the whole image,
    so a tiled image gets one ``s``). A dark photo keeps the model's output exactly, a photo
    at least as bright as ``hi`` comes back unchanged, and a pixel never leaves [0, 1].

    Args:
        x: the model's input, float32 NCHW RGB in [0, 1].
        y: its output, same shape.
        fade: ``(lo, hi)`` mean-luma range (default :data:`FADE_RANGE`).

    Returns:
        float32 NCHW, same shape (``y`` itself where every image is dark enough).
    """
    if x.shape != y.shape:
        raise ValueError(f"input and output shapes differ: {x.shape} vs {y.shape}")
    mean = np.einsum("nchw,c->n", x, np.asarray(LUMA_WEIGHTS, dtype=np.float32), dtype=np.float64)
    s = fade_strength(mean / (x.shape[2] * x.shape[3]), fade)
    if np.all(s == 1.0):
        return y
    s = s.astype(np.float32)[:, None, None, None]
    return np.clip(x + s * (y - x), 0.0, 1.0).astype(np.float32, copy=False)


# --------------------------------------------------------------------------- padding
def pad_amounts(h: int, w: int, multiple: int = PAD_MULTIPLE) -> Pads:
    """Centred padding ``(top, bottom, left, right)`` up to the next multiple.

    Identical to :func:`engan.models.pad_amounts`: ``top = dh // 2``, ``bottom = dh - top``.
    """
    dh, dw = (-h) % multiple, (-w) % multiple
    top, left = dh // 2, dw // 2
    return top, dh - top, left, dw - left


def pad_mode(h: int, w: int, pads: Pads) -> str:
    """``"reflect"`` when every pad is smaller than its side (as torch requires), else ``"edge"``."""
    t, b, l, r = pads
    return "reflect" if (t < h and b < h and l < w and r < w) else "edge"


def pad_to_multiple(x: np.ndarray, multiple: int = PAD_MULTIPLE) -> tuple[np.ndarray, Pads]:
    """Pad an NCHW (or CHW) array's last two axes to a multiple, centred.

    Reflect padding (no edge repeat, like torch ``mode="reflect"``); where the image
    is too small to reflect (a pad not smaller than its side, e.g. 1x1 or 1xW), edge
    padding (torch ``"replicate"``) for both axes, matching
    :func:`engan.models.pad_to_multiple` pixel for pixel.

    Returns:
        ``(padded, pads)``; ``pads`` feeds :func:`crop_padding`. An aligned input is
        returned as is with pads ``(0, 0, 0, 0)``.
    """
    h, w = int(x.shape[-2]), int(x.shape[-1])
    pads = pad_amounts(h, w, multiple)
    if not any(pads):
        return x, (0, 0, 0, 0)
    t, b, l, r = pads
    width = [(0, 0)] * (x.ndim - 2) + [(t, b), (l, r)]
    return np.pad(x, width, mode=pad_mode(h, w, pads)), pads


def pad_to_at_least(x: np.ndarray, min_h: int, min_w: int) -> tuple[np.ndarray, Pads]:
    """Pad an NCHW array, centred, until it is at least ``min_h`` x ``min_w``.

    For backends with a minimum input size (a TensorRT profile's min shape). Same
    reflect/edge rule as :func:`pad_to_multiple`; returns ``(padded, pads)`` for
    :func:`crop_padding`. Keep ``min_h``/``min_w`` multiples of 16 to stay aligned.
    """
    h, w = int(x.shape[-2]), int(x.shape[-1])
    dh, dw = max(0, min_h - h), max(0, min_w - w)
    if not (dh or dw):
        return x, (0, 0, 0, 0)
    pads = (dh // 2, dh - dh // 2, dw // 2, dw - dw // 2)
    t, b, l, r = pads
    width = [(0, 0)] * (x.ndim - 2) + [(t, b), (l, r)]
    return np.pad(x, width, mode=pad_mode(h, w, pads)), pads


def crop_padding(y: np.ndarray, pads: Pads) -> np.ndarray:
    """Remove :func:`pad_to_multiple`'s padding from the last two axes (plain slicing: numpy or torch)."""
    t, b, l, r = pads
    h, w = y.shape[-2:]
    return y[..., t : h - b, l : w - r]
