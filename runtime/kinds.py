"""The image kinds :meth:`engan.runtime.Enhancer.enhance` accepts, to float RGB and back (NumPy; Pillow lazily).

:func:`prepare` splits an image into float32 ``HxWx3`` RGB in [0, 1] and a function that
rebuilds a result of the input's kind (same size, dtype or PIL mode, alpha carried
through untouched); the table of kinds is in :mod:`engan.runtime.enhancer`'s docstring.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from engan.runtime import prepost

ImageLike = Any  # numpy array or PIL.Image.Image
Restore = Callable[[np.ndarray], Any]

#: PIL modes converted to a working mode; the result keeps the working mode.
_TO_RGB_MODES = {"CMYK", "YCbCr", "LAB", "HSV"}
#: PIL modes converted to a working mode and converted back afterwards.
_ROUND_TRIP_MODES = {"RGBX": "RGB", "RGBa": "RGBA", "La": "LA"}
_I16_MODES = {"I;16", "I;16B", "I;16L", "I;16N"}


def image_hw(image: Any) -> tuple[int, int] | None:
    """(height, width) of an array or PIL image, None for anything else (refused later)."""
    if isinstance(image, np.ndarray) and image.ndim in (2, 3):
        return int(image.shape[0]), int(image.shape[1])
    size = getattr(image, "size", None) if is_pil(image) else None
    return (int(size[1]), int(size[0])) if size else None



def is_pil(obj: Any) -> bool:
    mod = type(obj).__module__
    if not mod.startswith("PIL."):
        return False
    from PIL import Image

    return isinstance(obj, Image.Image)


def _prepare_array(a: np.ndarray) -> tuple[np.ndarray, Restore]:
    """numpy HxW, HxWx1 (gray), HxWx2 (gray+alpha), HxWx3 (RGB), HxWx4 (RGBA)."""
    dtype = a.dtype
    if a.ndim == 2:
        channels, squeeze = 1, True
        a = a[..., None]
    elif a.ndim == 3 and a.shape[-1] in (1, 2, 3, 4):
        channels, squeeze = a.shape[-1], False
    else:
        raise ValueError(
            f"expected an HxWx3 RGB image (or HxW / HxWx1 gray, HxWx2 gray+alpha, HxWx4 RGBA), got shape {a.shape}"
        )
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"the image is empty (shape {a.shape})")
    gray = channels in (1, 2)
    alpha = a[..., -1:].copy() if channels in (2, 4) else None
    if gray:
        rgb = prepost.gray_to_rgb(prepost.to_float(a[..., 0]))
    else:
        rgb = prepost.to_float(a[..., :3])

    def restore(y: np.ndarray) -> np.ndarray:
        if gray:
            body = prepost.from_float(prepost.luma(y), dtype)[..., None]
        else:
            body = prepost.from_float(y, dtype)
        out = body if alpha is None else np.concatenate([body, alpha.astype(body.dtype, copy=False)], axis=-1)
        return out[..., 0] if squeeze else out

    return rgb, restore


def _prepare_pil(im: Any) -> tuple[np.ndarray, Restore]:
    """PIL image -> float RGB + restore, following the mode table in the module docstring."""
    from PIL import Image

    mode = im.mode
    info = dict(im.info)
    back_mode: str | None = None  # convert the result back to this mode
    if mode in _I16_MODES:
        raw = np.asarray(im)
        rgb, restore_arr = _prepare_array(raw.astype(np.uint16))

        def restore(y: np.ndarray) -> Any:
            out = restore_arr(y).astype(raw.dtype)
            res = Image.frombytes(mode, (out.shape[1], out.shape[0]), out.tobytes())
            res.info.update(info)
            return res

        return rgb, restore
    if mode == "I":
        raw = np.asarray(im)
        rgb, restore_arr = _prepare_array(np.clip(raw, 0, 65535).astype(np.uint16))

        def restore_i(y: np.ndarray) -> Any:
            res = Image.fromarray(restore_arr(y).astype(np.int32))
            res.info.update(info)
            return res

        return rgb, restore_i
    if mode == "F":
        rgb, restore_arr = _prepare_array(np.asarray(im, dtype=np.float32))

        def restore_f(y: np.ndarray) -> Any:
            res = Image.fromarray(restore_arr(y).astype(np.float32))
            res.info.update(info)
            return res

        return rgb, restore_f
    keep_info = True
    if mode == "1":
        im, keep_info = im.convert("L"), False
    elif mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in im.info
        im, keep_info = im.convert("RGBA" if has_alpha else "RGB"), False
    elif mode in _TO_RGB_MODES:
        im, keep_info = im.convert("RGB"), False
    elif mode in _ROUND_TRIP_MODES:
        back_mode = mode
        im = im.convert(_ROUND_TRIP_MODES[mode])
    elif mode not in ("RGB", "RGBA", "L", "LA"):
        im, keep_info = im.convert("RGB"), False
    arr = np.asarray(im)
    rgb, restore_arr = _prepare_array(arr)

    def restore_pil(y: np.ndarray) -> Any:
        res = Image.fromarray(restore_arr(y))
        if back_mode:
            res = res.convert(back_mode)
        if keep_info:
            res.info.update({k: v for k, v in info.items() if k != "transparency"})
        return res

    return rgb, restore_pil


def prepare(image: ImageLike) -> tuple[np.ndarray, Restore]:
    """Split an image into float32 HxWx3 RGB and a function that rebuilds the result's kind."""
    if isinstance(image, np.ndarray):
        return _prepare_array(image)
    if is_pil(image):
        return _prepare_pil(image)
    raise TypeError(
        f"enhance() takes a numpy HxWx3 array or a PIL image, got {type(image).__name__}; decode files first "
        "(engan-infer does it for you)"
    )
