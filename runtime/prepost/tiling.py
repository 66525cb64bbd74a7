"""Tiling: images above a pixel budget are processed as overlapping tiles (NumPy only).

Tile sizes and positions are multiples of 16; tiles are blended with feathered
linear-ramp weights, so that no single backend call sees more than ``max_pixels``
pixels. :func:`enhance_nchw` is the whole path from float NCHW images of any size to
the backend's output: pad, tile if needed, crop back, optional fade.

The generator's normalisation to [-1, 1] and its attention map are inside the network
(and the exported graph); BatchNorm runs in eval mode and the attention map ``1 - luma``
is pointwise, so tiling does not change either of them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from engan.runtime.prepost.pixels import PAD_MULTIPLE, crop_padding, fade_bright, pad_amounts, pad_to_multiple

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

#: Float weight floor in tile blending so that every pixel's weight sum is positive.
_WEIGHT_FLOOR = 1e-6

RunFn = Callable[[np.ndarray], np.ndarray]


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
