"""The one pre/post-processing shared by every backend (NumPy only).

Every backend takes and returns float32 NCHW RGB arrays in [0, 1] whose height and
width are multiples of 16. Everything around that lives here, so ONNX Runtime,
TensorRT and eager PyTorch give the same pixels for the same network:

* :mod:`~engan.runtime.prepost.pixels`: dtype conversions with rounding, layout, grey and
  Rec.601 luma, centred reflect padding to 16 and back, the ``fade_bright`` option;
* :mod:`~engan.runtime.prepost.tiling`: images above a pixel budget run as overlapping,
  blended tiles; :func:`enhance_nchw` is the whole path around a backend call.

The names below are those modules' public API, gathered here.
"""
from engan.runtime.prepost.pixels import (
    FADE_RANGE, LUMA_WEIGHTS, PAD_MULTIPLE, Pads, check_fade_range, crop_padding, fade_bright, fade_strength,
    from_float, gray_to_rgb, hwc_to_nchw, luma, nchw_to_hwc, pad_amounts, pad_mode, pad_to_at_least, pad_to_multiple,
    to_float, to_uint8, to_uint16, uint16_to_uint8,
)
from engan.runtime.prepost.tiling import (
    DEFAULT_MAX_PIXELS, DEFAULT_OVERLAP, MIN_TILE, RunFn, TilePlan, axis_weights, enhance_nchw, plan_tiles, run_padded,
    run_tiled, tile_starts,
)

__all__ = [
    "DEFAULT_MAX_PIXELS", "DEFAULT_OVERLAP", "FADE_RANGE", "LUMA_WEIGHTS", "MIN_TILE", "PAD_MULTIPLE", "Pads", "RunFn",
    "TilePlan", "axis_weights", "check_fade_range", "crop_padding", "enhance_nchw", "fade_bright", "fade_strength",
    "from_float", "gray_to_rgb", "hwc_to_nchw", "luma", "nchw_to_hwc", "pad_amounts", "pad_mode", "pad_to_at_least",
    "pad_to_multiple", "plan_tiles", "run_padded", "run_tiled", "tile_starts", "to_float", "to_uint8", "to_uint16",
    "uint16_to_uint8",
]
