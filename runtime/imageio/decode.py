"""Safe image decoding for ``engan-infer`` and the runtime. Torch-free.

:func:`read_image` never trusts a file:

* the pixel count in the header is checked against a limit BEFORE any pixel buffer is
  allocated (decompression-bomb guard, :data:`DEFAULT_MAX_IMAGE_PIXELS`);
* EXIF orientation is applied (``ImageOps.exif_transpose``) and the ICC profile is kept;
* every failure becomes a :class:`DecodeError` whose ``str()`` is a one-line reason from a
  small fixed set (empty file, not an image, truncated, too large, unreadable, ...);
* modes are normalised to a handful the enhancer understands:

  ======================  ==========================================================
  input                   decoded as
  ======================  ==========================================================
  1, L                    ``L``
  LA, La                  ``LA``
  RGB, RGBX, YCbCr, ...   ``RGB``
  RGBA, RGBa              ``RGBA``
  P, PA (palette)         ``RGBA`` when it has transparency, else ``RGB``
  CMYK (JPEG)             ``RGB`` (through its ICC profile when it has one)
  16-bit grey PNG, I      ``I;16``
  16-bit RGB/RGBA/LA PNG  a ``uint16`` numpy array ``HxWx3``/``HxWx4``/``HxWx2``
  animated GIF/WebP/PNG   the first frame, plus a warning
  ======================  ==========================================================

  Pillow has no 16-bit colour mode and reads 16-bit colour PNGs at 8 bits; this module
  decodes them losslessly (Pillow's own PNG decoder run twice, once for the high and
  once for the low bytes); :mod:`engan.runtime.imageio.encode` writes them back.
"""
from __future__ import annotations

import io
import os
import re
import stat
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps

#: Default decompression-bomb limit: 128 megapixels. Generous for 8K frames (33 MP) and
#: 100 MP medium-format photos; a PNG whose header claims 100000x100000 is refused.
DEFAULT_MAX_IMAGE_PIXELS = 128_000_000

#: What a decoded image is: a PIL image in L/LA/RGB/RGBA/I;16, or a uint16 HxWxC array.
Pixels = Union[Image.Image, np.ndarray]

# Reasons, exactly as printed after "FAILED <path>: ".
REASON_EMPTY = "empty file (0 bytes)"
REASON_NOT_IMAGE = "not an image (unrecognised file format)"
REASON_TEXT = "not an image (it is a text file)"
REASON_HTML = "not an image (it is an HTML file)"
REASON_TRUNCATED = "truncated (the image data ends early)"
REASON_CORRUPT = "corrupt image data ({detail})"
REASON_TOO_LARGE = (
    "too large ({pixels:,} pixels is over the {limit:,}-pixel decompression-bomb limit; "
    "raise --max-image-pixels if the file is trusted)"
)
REASON_PERMISSION = "unreadable (permission denied)"
REASON_NOT_FOUND = "unreadable (no such file)"
REASON_DIRECTORY = "unreadable (it is a folder)"
REASON_NOT_REGULAR = "unreadable (not a regular file)"
REASON_OS = "unreadable ({detail})"
REASON_MODE = "unsupported image mode {mode}"
REASON_FLOAT = ("unsupported image mode F (32-bit float): its value range is not known, so engan-infer "
                "does not guess it; convert the file to 16-bit, or pass its pixels scaled to [0, 1] to "
                "engan.runtime.Enhancer.enhance()")

#: Leading bytes of the formats we read: a file that starts like one of these but does
#: not open is truncated, not "not an image".
_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM",
          b"II*\x00", b"MM\x00*")


class DecodeError(Exception):
    """An input that cannot be decoded; ``str(err)`` is the one-line reason.

    Attributes:
        kind: one of ``empty``, ``not-image``, ``truncated``, ``corrupt``, ``too-large``,
            ``unreadable``, ``unsupported``.
    """

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind


@dataclass
class DecodedImage:
    """A decoded input, ready for the enhancer.

    Attributes:
        pixels: PIL image in ``L``, ``LA``, ``RGB``, ``RGBA`` or ``I;16`` mode, or a
            ``uint16`` array ``HxWxC`` (C = 2 grey+alpha, 3 RGB, 4 RGBA) for 16-bit
            colour PNGs, which Pillow cannot hold.
        format: Pillow's name of the source format (``PNG``, ``JPEG``, ...).
        size: (width, height) after EXIF orientation.
        bits: 8 or 16 bits per sample.
        icc_profile: the embedded ICC profile, when it still matches ``pixels``.
        exif: EXIF bytes with the orientation reset, when the file had EXIF.
        warnings: one-line notes (first frame of an animation, colour conversion).
    """

    pixels: Pixels
    format: str
    size: tuple[int, int]
    bits: int = 8
    icc_profile: bytes | None = None
    exif: bytes | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def has_alpha(self) -> bool:
        """Whether the image carries an alpha channel."""
        if isinstance(self.pixels, np.ndarray):
            return self.pixels.shape[2] in (2, 4)
        return self.pixels.mode in ("LA", "RGBA")

    @property
    def mode(self) -> str:
        """A short description: the PIL mode, or ``LA;16``/``RGB;16``/``RGBA;16``."""
        if isinstance(self.pixels, np.ndarray):
            return {2: "LA;16", 3: "RGB;16", 4: "RGBA;16"}[self.pixels.shape[2]]
        return self.pixels.mode


# --------------------------------------------------------------------------- decoding


def read_image(path: str | os.PathLike, max_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS
               ) -> DecodedImage:
    """Decode an image file safely.

    Args:
        path: the file.
        max_pixels: refuse images whose header claims more pixels than this (checked
            before decoding); ``None`` or 0 disables the guard.

    Returns:
        The decoded image (see the module docstring for the modes).

    Raises:
        DecodeError: with a one-line reason; never any other exception for bad data.
    """
    path = Path(path)
    limit = max_pixels or None
    _allow_pillow_limit(limit)
    try:
        st = os.stat(path)
        if stat.S_ISDIR(st.st_mode):
            raise DecodeError("unreadable", REASON_DIRECTORY)
        if not stat.S_ISREG(st.st_mode):  # a FIFO or device would block or never end
            raise DecodeError("unreadable", REASON_NOT_REGULAR)
        if st.st_size == 0:
            raise DecodeError("empty", REASON_EMPTY)
        with open(path, "rb") as fh:
            head = fh.read(512)
            fh.seek(0)
            try:
                im = Image.open(fh)
            except Image.DecompressionBombError as e:
                raise _bomb_error(e, limit) from None
            except Image.UnidentifiedImageError:
                raise _unidentified(head) from None
            with im:
                return _decode_opened(im, fh, head, limit)
    except DecodeError:
        raise
    except PermissionError:
        raise DecodeError("unreadable", REASON_PERMISSION) from None
    except FileNotFoundError:
        raise DecodeError("unreadable", REASON_NOT_FOUND) from None
    except IsADirectoryError:
        raise DecodeError("unreadable", REASON_DIRECTORY) from None
    except MemoryError:
        raise DecodeError("too-large", "too large (out of memory while decoding)") from None
    except OSError as e:
        if e.errno is not None and e.strerror:
            raise DecodeError("unreadable", REASON_OS.format(detail=e.strerror.lower())) from None
        raise _load_error(e) from None
    except (SyntaxError, ValueError, TypeError, IndexError, KeyError, struct.error,
            zlib.error, EOFError) as e:
        raise _load_error(e) from None
    except Exception as e:  # noqa: BLE001 - untrusted bytes can trip any decoder path
        raise _load_error(e) from None


def _decode_opened(im: Image.Image, fh, head: bytes, limit: int | None) -> DecodedImage:
    """Check the header size, load the first frame and normalise the mode."""
    w, h = im.size
    if limit is not None and w * h > limit:
        raise DecodeError("too-large", REASON_TOO_LARGE.format(pixels=w * h, limit=limit))
    if w <= 0 or h <= 0:
        raise DecodeError("corrupt", REASON_CORRUPT.format(detail=f"size {w}x{h}"))
    notes: list[str] = []
    fmt = im.format or "unknown"
    if getattr(im, "is_animated", False) and fmt != "MPO":
        notes.append(f"animated {fmt} ({getattr(im, 'n_frames', '?')} frames): "
                     "only the first frame is enhanced")
        im.seek(0)
    icc = im.info.get("icc_profile") or None
    wide = _png16_colour_array(im, fh) if fmt == "PNG" else None
    exif_bytes = None
    if wide is not None:  # the 16-bit PNG writer carries the ICC profile, not EXIF
        pixels: Pixels = _exif_transpose_array(im, wide)
        size = (pixels.shape[1], pixels.shape[0])
        bits = 16
    else:
        im.load()
        try:
            im2 = ImageOps.exif_transpose(im)
        except Exception:  # noqa: BLE001 - broken EXIF must not cost the pixels
            im2 = im
            notes.append("unreadable EXIF orientation: the image is used as stored")
        pixels, icc, conv_note = _normalise_mode(im2, icc)
        if conv_note:
            notes.append(conv_note)
        size = pixels.size
        bits = 16 if pixels.mode == "I;16" else 8
        exif_bytes = im2.info.get("exif") or None
    return DecodedImage(pixels=pixels, format=fmt, size=size, bits=bits,
                        icc_profile=matching_icc(icc, pixels), exif=exif_bytes, warnings=notes)


def _allow_pillow_limit(limit: int | None) -> None:
    """Make Pillow's own hard limit (2x MAX_IMAGE_PIXELS) no stricter than ours.

    Pillow raises DecompressionBombError at open time above twice its global limit;
    our limit is the one users configure, so the global is only ever raised.
    """
    current = Image.MAX_IMAGE_PIXELS
    if current is None:
        return
    if limit is None:
        Image.MAX_IMAGE_PIXELS = None
    elif 2 * current < limit:
        Image.MAX_IMAGE_PIXELS = limit // 2 + 1


def _bomb_error(e: Exception, limit: int | None) -> DecodeError:
    """Pillow's own guard fired (only above twice its limit, which is >= ours)."""
    m = re.search(r"\((\d+) pixels\)", str(e))
    if m and limit is not None:
        return DecodeError("too-large", REASON_TOO_LARGE.format(pixels=int(m.group(1)), limit=limit))
    return DecodeError("too-large", f"too large ({e})")


def _unidentified(head: bytes) -> DecodeError:
    """Classify a file Pillow does not recognise."""
    if head.startswith(_MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP"):
        return DecodeError("truncated", REASON_TRUNCATED)
    if b"\x00" not in head:
        try:
            text = head.decode("utf-8")
        except UnicodeDecodeError:
            # A multi-byte character cut at 512 bytes is still text.
            try:
                text = head[:-3].decode("utf-8")
            except UnicodeDecodeError:
                text = None
        if text is not None:
            low = text.lstrip().lower()
            if low.startswith(("<!doctype html", "<html")) or "<html" in low:
                return DecodeError("not-image", REASON_HTML)
            return DecodeError("not-image", REASON_TEXT)
    return DecodeError("not-image", REASON_NOT_IMAGE)


def _load_error(e: BaseException) -> DecodeError:
    """Classify an exception raised while decoding pixel data."""
    msg = str(e)
    low = msg.lower()
    if "truncated" in low or "premature" in low or "ended" in low or isinstance(e, EOFError) \
            or "not enough data" in low or "decoder object" in low:
        return DecodeError("truncated", REASON_TRUNCATED)
    detail = msg.splitlines()[0] if msg else type(e).__name__
    return DecodeError("corrupt", REASON_CORRUPT.format(detail=detail[:120]))


def _normalise_mode(im: Image.Image, icc: bytes | None) -> tuple[Image.Image, bytes | None, str]:
    """Convert to L / LA / RGB / RGBA / I;16; returns (image, icc profile, note)."""
    mode = im.mode
    if mode in ("L", "LA", "RGB", "RGBA", "I;16"):
        return im, icc, ""
    if mode == "1":
        return im.convert("L"), icc, ""
    if mode == "La":
        return im.convert("LA"), icc, ""
    if mode in ("RGBa", "RGBX"):
        return im.convert("RGBA" if mode == "RGBa" else "RGB"), icc, ""
    if mode in ("P", "PA"):
        transparent = mode == "PA" or "transparency" in im.info
        return im.convert("RGBA" if transparent else "RGB"), icc, ""
    if mode in ("I;16L", "I;16B", "I;16N"):
        return im.convert("I;16") if mode != "I;16" else im, icc, ""
    if mode == "I":
        arr = np.clip(np.asarray(im), 0, 65535).astype(np.uint16)
        return Image.fromarray(arr), icc, ""
    if mode == "CMYK":
        if icc and icc[16:20] == b"CMYK":
            try:
                from PIL import ImageCms

                src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
                dst = ImageCms.createProfile("sRGB")
                out = ImageCms.profileToProfile(im, src, dst, outputMode="RGB")
                return out, None, "CMYK converted to sRGB through its ICC profile"
            except Exception:  # a broken profile: fall back to Pillow's formula
                pass
        return im.convert("RGB"), None, "CMYK converted to RGB"
    if mode in ("YCbCr", "LAB", "HSV"):
        return im.convert("RGB"), None if mode == "LAB" else icc, ""
    if mode == "F":
        raise DecodeError("unsupported", REASON_FLOAT)
    raise DecodeError("unsupported", REASON_MODE.format(mode=mode))




def matching_icc(icc: bytes | None, pixels: Pixels) -> bytes | None:
    """Keep an ICC profile only when its colour space matches the pixels."""
    if not icc or len(icc) < 20:
        return None
    grey = (pixels.shape[2] == 2) if isinstance(pixels, np.ndarray) else pixels.mode in ("L", "LA", "I;16")
    space = icc[16:20]
    return icc if space == (b"GRAY" if grey else b"RGB ") else None


# 16-bit colour PNGs: Pillow's decoder, run twice on the same data.
_PNG16_RAW = {  # colour type -> (mode, raw modes, channels)
    2: ("RGB", ("RGB;16B", "RGB;16L"), 3),
    6: ("RGBA", ("RGBA;16B", "RGBA;16L"), 4),
    4: ("RGBA", ("RGBA",), 2),  # grey+alpha: 4 bytes a pixel, all kept by the 8-bit RGBA unpacker
}


def _png16_colour_array(im: Image.Image, fh) -> np.ndarray | None:
    """Decode a 16-bit colour (or grey+alpha) PNG losslessly, or None for other PNGs.

    Pillow unpacks ``RGB;16B`` to 8 bits by keeping the high bytes. Decoding the same
    stream again with the little-endian unpacker keeps the low bytes instead; the
    unfiltering only depends on the bytes per pixel, which both share.
    """
    header = _png_header(fh)
    if header is None or header[0] != 16 or header[1] not in _PNG16_RAW:
        return None
    _, ctype = header
    mode, rawmodes, channels = _PNG16_RAW[ctype]
    planes = []
    for raw in rawmodes:
        fh.seek(0)
        with Image.open(fh) as again:
            tile = again.tile[0]
            again.tile = [tile._replace(args=raw)]
            again.load()
            planes.append(np.asarray(again, dtype=np.uint8).astype(np.uint16))
    if ctype == 4:
        b = planes[0]
        return np.stack([(b[..., 0] << 8) | b[..., 1], (b[..., 2] << 8) | b[..., 3]], axis=-1)
    hi, lo = planes
    return ((hi << 8) | lo)[..., :channels]


def _png_header(fh) -> tuple[int, int] | None:
    """(bit depth, colour type) from a PNG's IHDR, or None."""
    fh.seek(0)
    data = fh.read(33)
    if len(data) < 33 or data[12:16] != b"IHDR":
        return None
    return data[24], data[25]


def _exif_transpose_array(im: Image.Image, arr: np.ndarray) -> np.ndarray:
    """Apply the EXIF orientation of ``im`` to an array (for 16-bit PNGs)."""
    try:
        orientation = im.getexif().get(0x0112, 1)
    except Exception:
        return arr
    ops = {2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
           5: lambda a: a.transpose(1, 0, 2), 6: lambda a: a.transpose(1, 0, 2)[:, ::-1],
           7: lambda a: a.transpose(1, 0, 2)[::-1, ::-1], 8: lambda a: a.transpose(1, 0, 2)[::-1]}
    op = ops.get(orientation)
    return np.ascontiguousarray(op(arr)) if op else arr

