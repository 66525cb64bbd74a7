"""Image encoding for ``engan-infer``: every output complete or absent. Torch-free.

:func:`write_image` goes through :func:`engan.runtime.atomic.atomic_open`, so an output
file is either complete or absent, whatever happens mid-write. :func:`prepare_for_format`
adapts an image to what the target format can hold and says what it changed (16-bit
reduced to 8-bit, alpha flattened onto white for JPEG). 16-bit colour arrays, which
Pillow cannot hold, are written by a small PNG writer (:func:`write_png_array`), which
also writes 8-bit PNGs faster than Pillow at low zlib levels.
"""
from __future__ import annotations

import contextlib
import errno
import functools
import os
import struct
import zlib
from pathlib import Path
from typing import IO, Iterator

import numpy as np
from PIL import Image

from engan.runtime.atomic import atomic_open
from engan.runtime.imageio.decode import Pixels, matching_icc
from engan.runtime.imageio.listing import EXT_TO_FORMAT
from engan.runtime.prepost.pixels import uint16_to_uint8

#: zlib level of written PNGs. PNG is lossless at every level; at 1 a 600x400 photo
#: encodes in ~16 ms (:func:`write_png_array`; Pillow takes ~32 ms at 1 and ~103 ms at
#: its default 6, for files ~15 % smaller), which on a 2-core CPU keeps engan-infer's
#: overhead over the model's own time near 5-10 % instead of 36-43 %
#: (benchmarks/test_bench_e2e.py). OpenCV's imwrite uses 1 too.
DEFAULT_PNG_COMPRESS = 1


class EncodeError(Exception):
    """An output that could not be written; ``str(err)`` is the one-line reason."""



def format_for_ext(ext: str) -> str:
    """Pillow format name for an output extension (``".jpg"`` -> ``"JPEG"``).

    Raises:
        ValueError: for an extension this module cannot write.
    """
    fmt = EXT_TO_FORMAT.get(ext.lower() if ext.startswith(".") else "." + ext.lower())
    if fmt is None:
        raise ValueError(f"cannot write {ext!r} files; use one of: "
                         + ", ".join(sorted({e[1:] for e in EXT_TO_FORMAT})))
    return fmt


def to_8bit(pixels: Pixels) -> Image.Image:
    """An 8-bit PIL image (L, LA, RGB or RGBA) of any decoded/enhanced pixels."""
    if isinstance(pixels, np.ndarray):
        arr8 = uint16_to_uint8(pixels)
        return Image.fromarray(arr8, {2: "LA", 3: "RGB", 4: "RGBA"}[arr8.shape[2]])
    if pixels.mode == "I;16":
        return Image.fromarray(uint16_to_uint8(np.asarray(pixels)), "L")
    return pixels


def flatten_alpha(im: Image.Image, background: int = 255) -> Image.Image:
    """Composite an LA/RGBA image onto a uniform background (white by default)."""
    if im.mode not in ("LA", "RGBA"):
        return im
    base = "L" if im.mode == "LA" else "RGB"
    out = Image.new(base, im.size, (background,) * len(base))
    out.paste(im.convert(base), mask=im.getchannel("A"))
    return out


def compare_image(before: Pixels, after: Pixels) -> Image.Image:
    """Before and after side by side: an 8-bit image twice as wide as the input.

    Grey pairs stay grey, anything with alpha becomes RGBA, the rest RGB; 16-bit pixels
    are rounded to 8 bits (the compare image is for looking at, not for further work).
    """
    a, b = to_8bit(before), to_8bit(after)
    if a.size != b.size:
        raise ValueError(f"compare_image needs equal sizes, got {a.size} and {b.size}")
    modes = {a.mode, b.mode}
    if modes <= {"L"}:
        mode = "L"
    elif modes & {"LA", "RGBA"}:
        mode = "RGBA"
    else:
        mode = "RGB"
    w, h = a.size
    out = Image.new(mode, (2 * w, h))
    out.paste(a.convert(mode), (0, 0))
    out.paste(b.convert(mode), (w, 0))
    return out




def prepare_for_format(pixels: Pixels, fmt: str) -> tuple[Pixels, list[str]]:
    """Adapt pixels to what ``fmt`` can store; returns (pixels, notes on what changed).

    * PNG keeps everything, 16-bit included. TIFF keeps 8-bit modes and 16-bit grey.
    * JPEG has neither alpha nor 16 bits: alpha is flattened onto white, 16 bits are
      rounded to 8.
    * WebP and BMP hold 8-bit L/RGB/RGBA: 16 bits are rounded to 8 (BMP stores LA as RGBA).
    """
    notes: list[str] = []
    if fmt == "PNG":
        return pixels, notes
    wide = isinstance(pixels, np.ndarray) or pixels.mode == "I;16"
    if wide and not (fmt == "TIFF" and not isinstance(pixels, np.ndarray)):
        notes.append(f"16-bit image written as 8-bit {fmt} (use --ext png to keep 16 bits)")
        pixels = to_8bit(pixels)
    if fmt == "JPEG" and pixels.mode in ("LA", "RGBA"):
        notes.append("JPEG has no alpha channel: transparent areas flattened onto white "
                     "(use --ext png to keep alpha)")
        pixels = flatten_alpha(pixels)
    if fmt == "BMP" and pixels.mode == "LA":
        pixels = pixels.convert("RGBA")
    return pixels, notes


def encode_image(pixels: Pixels, fmt: str, fh, *, quality: int = 95,
                 icc_profile: bytes | None = None, exif: bytes | None = None,
                 png_compress: int = DEFAULT_PNG_COMPRESS) -> None:
    """Encode already-prepared pixels (see :func:`prepare_for_format`) into a binary file."""
    if isinstance(pixels, np.ndarray):
        if fmt != "PNG":
            raise ValueError(f"16-bit colour arrays can only be written as PNG, not {fmt}")
        write_png16(fh, pixels, icc_profile=icc_profile, level=png_compress)
        return
    icc = matching_icc(icc_profile, pixels)
    if (fmt == "PNG" and png_compress <= 3 and pixels.mode in _FAST_PNG_MODES
            and "transparency" not in pixels.info):
        arr = np.asarray(pixels)
        write_png_array(fh, arr, icc_profile=icc, level=png_compress, exif=exif)
        return
    params: dict = {}
    if icc and fmt in ("PNG", "JPEG", "WEBP", "TIFF"):
        params["icc_profile"] = icc
    if exif and fmt in ("PNG", "JPEG", "WEBP"):
        params["exif"] = exif
    if fmt in ("JPEG", "WEBP"):
        params["quality"] = int(quality)
    if fmt == "PNG":
        params["compress_level"] = int(png_compress)
    if fmt == "TIFF":
        params["compression"] = "tiff_deflate"
    pixels.save(fh, format=fmt, **params)


@functools.lru_cache(maxsize=1)
def default_file_mode() -> int:
    """Permissions a plain ``open()`` would give a new file: 0o666 minus the umask.

    Read from /proc where possible, since setting the umask to read it is not
    thread-safe; the fallback does that once and caches the answer.
    """
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[IO[bytes]]:
    """:func:`engan.runtime.atomic.atomic_open` for user-facing files.

    The temp file that atomic_open renames into place is created 0600 (mkstemp);
    this gives it the permissions a normally written file would have, before the
    rename, so readers (a web server showing index.html, other users) see it.
    """
    with atomic_open(path, "wb") as fh:
        if hasattr(os, "fchmod"):
            os.fchmod(fh.fileno(), default_file_mode())
        yield fh


def write_image(path: str | os.PathLike, pixels: Pixels, *, fmt: str | None = None,
                quality: int = 95, icc_profile: bytes | None = None,
                exif: bytes | None = None, png_compress: int = DEFAULT_PNG_COMPRESS) -> list[str]:
    """Atomically write an image; returns notes on conversions the format forced.

    Args:
        path: output file; its extension picks the format unless ``fmt`` is given.
        pixels: PIL image or uint16 array (as in :class:`DecodedImage`).
        fmt: Pillow format name (``PNG``, ``JPEG``, ``WEBP``, ``BMP``, ``TIFF``).
        quality: JPEG/WebP quality, 1-100.
        icc_profile: written when the format can hold it and its colour space matches.
        exif: EXIF bytes for PNG/JPEG/WebP.
        png_compress: zlib level of PNG files, 0-9 (lossless at every level; see
            :data:`DEFAULT_PNG_COMPRESS`).

    Raises:
        EncodeError: with a one-line reason; the file is then absent (or unchanged).
    """
    path = Path(path)
    fmt = fmt or format_for_ext(path.suffix)
    pixels, notes = prepare_for_format(pixels, fmt)
    try:
        with atomic_output(path) as fh:
            encode_image(pixels, fmt, fh, quality=quality, icc_profile=icc_profile, exif=exif,
                         png_compress=png_compress)
    except OSError as e:
        raise EncodeError(write_error(path, e)) from None
    except (ValueError, TypeError, KeyError) as e:
        raise EncodeError(f"could not encode {path.name} as {fmt}: {e}") from None
    return notes


def write_error(path: str | os.PathLike, e: OSError) -> str:
    """The one-line reason a write of ``path`` failed: ``could not write <name>: <why>``."""
    if e.errno == errno.ENOSPC:
        detail = "no space left on device"
    else:
        detail = e.strerror.lower() if e.strerror else str(e)
    return f"could not write {Path(path).name}: {detail}"


def write_png16(fh, arr: np.ndarray, icc_profile: bytes | None = None,
                level: int = DEFAULT_PNG_COMPRESS) -> None:
    """Write a 16-bit PNG (grey, grey+alpha, RGB or RGBA) from a uint16 array (see :func:`write_png_array`)."""
    if arr.dtype != np.uint16:
        raise ValueError(f"write_png16 needs uint16 pixels, got {arr.dtype}")
    write_png_array(fh, arr, icc_profile=icc_profile, level=level)


#: Pillow modes :func:`encode_image` writes through :func:`write_png_array` at low zlib levels.
_FAST_PNG_MODES = frozenset({"L", "LA", "RGB", "RGBA"})


def write_png_array(fh, arr: np.ndarray, icc_profile: bytes | None = None,
                    level: int = DEFAULT_PNG_COMPRESS, exif: bytes | None = None) -> None:
    """Write an 8- or 16-bit PNG (grey, grey+alpha, RGB or RGBA) from a uint8/uint16 HxW[xC] array.

    Every row uses the PNG "Up" filter, computed for the whole image at once with numpy,
    then one zlib call (which releases the GIL). At zlib level 1 this encodes a 600x400
    RGB photo about 2x faster than Pillow, whose per-row adaptive filter choice costs
    more than the compression itself, for files of about the same size.
    """
    if arr.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"PNG pixels must be uint8 or uint16, got {arr.dtype}")
    if arr.ndim == 2:
        arr = arr[..., None]
    h, w, c = arr.shape
    if c not in (1, 2, 3, 4):
        raise ValueError(f"PNG pixels need 1-4 channels, got {c}")
    ctype = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    depth = 8 * arr.dtype.itemsize
    wide = arr.astype(">u2") if depth == 16 else arr
    rows = np.ascontiguousarray(wide).view(np.uint8).reshape(h, w * c * arr.dtype.itemsize)
    filtered = np.empty((h, rows.shape[1] + 1), np.uint8)
    filtered[:, 0] = 2  # filter type "Up"
    filtered[0, 1:] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=filtered[1:, 1:])  # uint8 arithmetic wraps modulo 256, as PNG wants

    def chunk(tag: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + tag + data
                + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF))

    fh.write(b"\x89PNG\r\n\x1a\n")
    fh.write(chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, ctype, 0, 0, 0)))
    if icc_profile:
        fh.write(chunk(b"iCCP", b"ICC profile\x00\x00" + zlib.compress(icc_profile)))
    if exif:
        fh.write(chunk(b"eXIf", exif[6:] if exif.startswith(b"Exif\x00\x00") else exif))
    fh.write(chunk(b"IDAT", zlib.compress(filtered.data, level)))
    fh.write(chunk(b"IEND", b""))
