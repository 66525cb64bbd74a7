"""The one pre/post-processing module shared by every backend (NumPy only).

Every backend takes and returns float32 NCHW RGB arrays in [0, 1] whose height and
width are multiples of 16. Everything around that lives here, so ONNX Runtime,
TensorRT and eager PyTorch give the same pixels for the same network:

* :func:`to_float` / :func:`from_float`: uint8, uint16 or float [0, 1] to float32
  [0, 1] and back, with rounding (not truncation) on the way back;
* :func:`pad_to_multiple` / :func:`crop_padding`: centred reflect padding to a
  multiple of 16 and back, exactly as :func:`engan.models.pad_to_multiple` does it
  (same ``top = dh // 2`` centring; edge padding where the image is too small to
  reflect, e.g. 1x1);
* :func:`hwc_to_nchw` / :func:`nchw_to_hwc`, :func:`gray_to_rgb` / :func:`rgb_to_luma`;
* :func:`plan_tiles` / :func:`run_tiled` / :func:`enhance_nchw`: images above a pixel
  budget are processed as overlapping tiles (sizes and positions multiples of 16)
  blended with feathered linear-ramp weights, so that no single backend call sees
  more than ``max_pixels`` pixels;
* :func:`fade_bright` (``enhance_nchw(..., fade=...)``, off by default): the enhancement
  fades out for photos that are not dark, by each whole image's mean luma, so tiles
  and backends agree.

The generator's normalisation to [-1, 1] and its attention map are inside the
network (and the exported graph); BatchNorm runs in eval mode and the attention map
``1 - luma`` is pointwise, so tiling does not change either of them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

#: Spatial multiple the generator needs (four 2x poolings); engan.config.PAD_MULTIPLE.
PAD_MULTIPLE = 16

#: Default pixel budget of one backend call (N*H*W after padding). Chosen so that a
#: 3840x2160 photo enhances with the paper-size model within ~2 GB of resident memory
#: on a CPU: measured 1.84 GB peak RSS (ONNX Runtime CPU, random paper-preset ONNX,
#: 10 tiles of 2160x448). The paper generator needs ~1.2 KB of activations per pixel
#: under ONNX Runtime, so an untiled 4K photo would need ~10 GB.
DEFAULT_MAX_PIXELS = 1_000_000

#: Default overlap between neighbouring tiles, in pixels (a multiple of 16).
DEFAULT_OVERLAP = 64

#: Smallest tile side the automatic planner uses (unless the image side is smaller).
MIN_TILE = 64

#: Rec.601 luma weights, as in the generator's attention map and Pillow's convert("L").
LUMA_WEIGHTS = (0.299, 0.587, 0.114)

#: ``fade_bright``'s default range of whole-image mean luma (Rec.601, [0, 1]): full enhancement up to 0.15,
#: the brightest of the 300 under-exposed training photos (0.149), none from 0.42, the mean of the 110
#: well-exposed ones (0.424) (engan's ../shared/data/train; measured 2026-11-26).
FADE_RANGE = (0.15, 0.42)

#: Float weight floor in tile blending so that every pixel's weight sum is positive.
_WEIGHT_FLOOR = 1e-6

Pads = tuple[int, int, int, int]
RunFn = Callable[[np.ndarray], np.ndarray]


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
    so ``from_float(to_float(u), u.dtype) == u`` for every uint8 and uint16 value.
    Float dtypes get the clipped values. A non-native byte order (``>u2``) is kept.
    """
    dt = np.dtype(dtype)
    if not dt.isnative:
        return from_float(x, dt.newbyteorder("=")).astype(dt)
    x = np.clip(np.asarray(x, dtype=np.float32), 0.0, 1.0)  # a fresh array: scaled in place below
    if dt == np.uint8 or dt == np.uint16:
        x *= np.float32(255.0 if dt == np.uint8 else 65535.0)
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


def rgb_to_luma(rgb: np.ndarray) -> np.ndarray:
    """HxWx3 float RGB to HxW Rec.601 luma (the weights Pillow's ``convert("L")`` uses)."""
    r, g, b = (np.asarray(rgb, dtype=np.float32)[..., c] for c in range(3))
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
    """Remove :func:`pad_to_multiple`'s padding from the last two axes."""
    t, b, l, r = pads
    h, w = y.shape[-2:]
    return y[..., t : h - b, l : w - r]


# --------------------------------------------------------------------------- tiling
@dataclass(frozen=True)
class TilePlan:
    """Where the tiles of one (padded) image lie.

    Attributes:
        height, width: the padded image size (multiples of 16).
        tile_h, tile_w: the tile size (multiples of 16, at most the image size).
        ys, xs: tile start rows and columns (multiples of 16); the last one ends at
            the image edge.
    """

    height: int
    width: int
    tile_h: int
    tile_w: int
    ys: tuple[int, ...]
    xs: tuple[int, ...]

    @property
    def count(self) -> int:
        """Number of tiles."""
        return len(self.ys) * len(self.xs)

    @property
    def pixels(self) -> int:
        """Pixels of one tile (what one backend call sees per image)."""
        return self.tile_h * self.tile_w

    def boxes(self) -> Iterator[tuple[int, int, int, int]]:
        """``(y0, y1, x0, x1)`` of every tile, row by row."""
        for y in self.ys:
            for x in self.xs:
                yield y, y + self.tile_h, x, x + self.tile_w


def _floor_to(v: float, m: int) -> int:
    return int(v // m) * m


def tile_starts(length: int, tile: int, overlap: int, multiple: int = PAD_MULTIPLE) -> tuple[int, ...]:
    """Evenly spread tile starts along one axis (multiples of ``multiple``).

    Consecutive tiles overlap by at least ``overlap`` pixels; the first starts at 0 and
    the last ends at ``length``. ``length`` and ``tile`` must be multiples of ``multiple``.
    """
    if tile >= length:
        return (0,)
    stride = _floor_to(tile - overlap, multiple)
    if stride < multiple:
        raise ValueError(f"tile {tile} is too small for an overlap of {overlap} px; use a tile of at least {overlap + multiple}")
    n = 1 + math.ceil((length - tile) / stride)
    span = length - tile
    starts = [_floor_to(i * span / (n - 1), multiple) for i in range(n - 1)] + [span]
    return tuple(starts)


def _axis_count(length: int, tile: int, overlap: int, multiple: int) -> int:
    return len(tile_starts(length, tile, overlap, multiple))


def plan_tiles(
    height: int,
    width: int,
    max_pixels: int | None,
    tile: int | None = None,
    overlap: int = DEFAULT_OVERLAP,
    multiple: int = PAD_MULTIPLE,
    max_hw: tuple[int, int] | None = None,
) -> TilePlan | None:
    """Decide whether and how to tile a padded ``height`` x ``width`` image.

    Args:
        height, width: the padded image size (multiples of ``multiple``).
        max_pixels: the most pixels one backend call may see (None or 0: no limit).
        tile: force square tiles of this side (a multiple of 16); the image is tiled
            whenever it is larger than ``tile`` on either side. ``tile * tile`` must
            fit ``max_pixels``.
        overlap: minimum overlap between neighbouring tiles, in pixels.
        max_hw: the largest (H, W) one call accepts (a TensorRT profile's max), if any.

    Returns:
        None when the image goes through in one call, else the :class:`TilePlan`
        that processes the fewest pixels in total (fewest tiles on ties).

    Raises:
        ValueError: a tile that is not a multiple of 16, too small for the overlap, or
            larger than ``max_pixels``; or a ``max_pixels`` too small to tile with.
    """
    if height % multiple or width % multiple:
        raise ValueError(f"plan_tiles needs a padded size (multiples of {multiple}), got {height}x{width}")
    if overlap < 0:
        raise ValueError(f"overlap must be >= 0, got {overlap}")
    budget = max_pixels if max_pixels and max_pixels > 0 else None
    max_h, max_w = max_hw if max_hw else (height, width)
    max_h, max_w = _floor_to(max_h, multiple), _floor_to(max_w, multiple)
    if max_h < multiple or max_w < multiple:
        raise ValueError(f"the model accepts at most {max_hw} (H, W), smaller than one {multiple}x{multiple} block")
    if tile is not None:
        if tile <= 0 or tile % multiple:
            raise ValueError(f"tile must be a positive multiple of {multiple}, got {tile}")
        if budget is not None and tile * tile > budget:
            raise ValueError(
                f"tile {tile}x{tile} = {tile * tile} px exceeds max_pixels={budget}; "
                f"lower the tile (at most {_floor_to(math.sqrt(budget), multiple)}) or raise max_pixels"
            )
        th, tw = min(tile, height), min(tile, width)
        if th > max_h or tw > max_w:
            raise ValueError(
                f"tile {tile} exceeds the largest input the model accepts ({max_h}x{max_w}); use a tile of at most "
                f"{min(max_h, max_w)}"
            )
        if height <= tile and width <= tile:
            return None
        return TilePlan(height, width, th, tw, tile_starts(height, th, overlap, multiple),
                        tile_starts(width, tw, overlap, multiple))
    if (budget is None or height * width <= budget) and height <= max_h and width <= max_w:
        return None
    if budget is None:
        budget = max_h * max_w
    min_tile = max(MIN_TILE, overlap + 2 * multiple)
    best: tuple[int, int, int, int] | None = None  # (total pixels, tiles, th, tw)
    for th in range(multiple, min(height, max_h) + 1, multiple):
        if th < min(min_tile, height):
            continue
        tw = min(width, max_w, _floor_to(budget / th, multiple))
        if tw < min(min_tile, width) or th * tw > budget:
            continue
        ny = _axis_count(height, th, overlap, multiple)
        nx = _axis_count(width, tw, overlap, multiple)
        key = (ny * th * nx * tw, ny * nx, th, tw)
        if best is None or key < best:
            best = key
    if best is None:
        raise ValueError(
            f"max_pixels={budget} is too small to tile a {height}x{width} image with {overlap} px overlap; "
            f"use at least {min_tile * min_tile} (a {min_tile}x{min_tile} tile)"
        )
    _, _, th, tw = best
    return TilePlan(height, width, th, tw, tile_starts(height, th, overlap, multiple),
                    tile_starts(width, tw, overlap, multiple))


def axis_weights(starts: tuple[int, ...], tile: int) -> list[np.ndarray]:
    """Feathered 1-D blending weights of each tile along one axis.

    Inside an overlap of ``ov`` pixels the weights ramp linearly across its middle
    half (the outer quarter next to each tile's edge, where the tile lacked context,
    gets ~0) and the two neighbours' weights sum to 1. Away from overlaps a weight is 1.
    """
    out = []
    n = len(starts)
    pos = np.arange(tile, dtype=np.float32) + 0.5
    for i, s in enumerate(starts):
        w = np.ones(tile, dtype=np.float32)
        if i > 0:
            ov = starts[i - 1] + tile - s
            m = ov // 4
            w = np.minimum(w, np.clip((pos - m) / max(ov - 2 * m, 1), 0.0, 1.0))
        if i < n - 1:
            ov = s + tile - starts[i + 1]
            m = ov // 4
            w = np.minimum(w, np.clip((tile - m - pos) / max(ov - 2 * m, 1), 0.0, 1.0))
        out.append(np.maximum(w, _WEIGHT_FLOOR))
    return out


def run_padded(fn: RunFn, x: np.ndarray, multiple: int = PAD_MULTIPLE) -> np.ndarray:
    """Pad ``x`` (NCHW float) to a multiple, run ``fn`` once and crop back."""
    xp, pads = pad_to_multiple(x, multiple)
    y = fn(np.ascontiguousarray(xp, dtype=np.float32))
    if y.shape != xp.shape:
        raise RuntimeError(f"the backend returned shape {tuple(y.shape)} for an input of shape {tuple(xp.shape)}")
    return crop_padding(y, pads)


def run_tiled(
    fn: RunFn,
    xp: np.ndarray,
    plan: TilePlan,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Run ``fn`` tile by tile over a padded NCHW array and blend the results.

    Args:
        fn: the backend call (float32 NCHW in, same shape out).
        xp: the padded image(s), NCHW float32, of size ``plan.height`` x ``plan.width``.
        plan: from :func:`plan_tiles`.
        progress: optional ``progress(done, total)`` called after every tile.

    Returns:
        The blended float32 output, same shape as ``xp``.
    """
    n, c, h, w = xp.shape
    if (h, w) != (plan.height, plan.width):
        raise ValueError(f"tile plan is for {plan.height}x{plan.width}, the image is {h}x{w}")
    wy, wx = axis_weights(plan.ys, plan.tile_h), axis_weights(plan.xs, plan.tile_w)
    acc = np.zeros((n, c, h, w), dtype=np.float32)
    wsum = np.zeros((h, w), dtype=np.float32)
    done, total = 0, plan.count
    for iy, y0 in enumerate(plan.ys):
        for ix, x0 in enumerate(plan.xs):
            y1, x1 = y0 + plan.tile_h, x0 + plan.tile_w
            out = run_padded(fn, xp[:, :, y0:y1, x0:x1], PAD_MULTIPLE)
            weight = wy[iy][:, None] * wx[ix][None, :]
            acc[:, :, y0:y1, x0:x1] += out * weight
            wsum[y0:y1, x0:x1] += weight
            done += 1
            if progress is not None:
                progress(done, total)
    acc /= wsum
    return acc


def enhance_nchw(
    fn: RunFn,
    x: np.ndarray,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    tile: int | None = None,
    overlap: int = DEFAULT_OVERLAP,
    multiple: int = PAD_MULTIPLE,
    progress: Callable[[int, int], None] | None = None,
    max_batch: int | None = None,
    max_hw: tuple[int, int] | None = None,
    fade: tuple[float, float] | None = None,
) -> np.ndarray:
    """Run a backend on float32 NCHW images of any size: pad, tile if needed, crop back.

    No call to ``fn`` sees more than ``max_pixels`` pixels (N*H*W, after padding):
    a batch larger than the budget is split along N, and an image larger than the
    budget is tiled (see :func:`plan_tiles`).

    Args:
        fn: the backend call (float32 NCHW, H and W multiples of 16, in and out).
        x: float32 NCHW in [0, 1], any H and W.
        max_pixels: per-call pixel budget (None or 0: unlimited, no automatic tiling).
        tile: force tiles of this side (see :func:`plan_tiles`).
        overlap: tile overlap in pixels.
        progress: optional ``progress(done, total)`` called per tile of a tiled image.
        max_batch: the largest N one call accepts (a TensorRT profile's max), if any.
        max_hw: the largest (H, W) one call accepts (a TensorRT profile's max), if any.
        fade: ``(lo, hi)``: fade the enhancement out for images that are not dark
            (:func:`fade_bright`); None (default): the model's output as it is.

    Returns:
        float32 NCHW of the same shape as ``x``, clipped to [0, 1].
    """
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"expected float32 Nx3xHxW RGB, got shape {x.shape}")
    n, _, h, w = x.shape
    t, b, l, r = pad_amounts(h, w, multiple)
    hp, wp = h + t + b, w + l + r
    plan = plan_tiles(hp, wp, max_pixels, tile=tile, overlap=overlap, multiple=multiple, max_hw=max_hw)
    budget = max_pixels if max_pixels and max_pixels > 0 else None
    if plan is None:
        per_call = n if budget is None else max(1, budget // (hp * wp))
        if max_batch:
            per_call = max(1, min(per_call, max_batch))
        outs = [run_padded(fn, x[i : i + per_call], multiple) for i in range(0, n, per_call)]
        y = outs[0] if len(outs) == 1 else np.concatenate(outs, axis=0)
    else:
        xp, pads = pad_to_multiple(x, multiple)
        ys = [crop_padding(run_tiled(fn, xp[i : i + 1], plan, progress), pads) for i in range(n)]
        y = ys[0] if n == 1 else np.concatenate(ys, axis=0)
    if np.may_share_memory(y, x):  # a pass-through backend: never clip the caller's array in place
        y = y.copy()
    y = np.clip(y, 0.0, 1.0, out=y)
    return y if fade is None else fade_bright(x, y, fade)
