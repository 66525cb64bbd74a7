"""Safe decoding/encoding (engan.runtime.imageio): modes, EXIF, ICC, 16-bit, bad files, atomic writes."""
from __future__ import annotations

import functools
import io
import os
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms

from engan.runtime import imageio as iio
from tests.helpers import make_image, paeth_png16, png_bytes, srgb_icc


def save(path: Path, im: Image.Image, **kw) -> Path:
    im.save(path, **kw)
    return path


# ------------------------------------------------------------------------------ modes


@pytest.mark.parametrize("mode,expect", [
    ("RGB", "RGB"), ("L", "L"), ("LA", "LA"), ("RGBA", "RGBA"), ("1", "L"), ("P", "RGB"),
])
def test_png_modes_normalised(tmp_path, mode, expect):
    im = Image.fromarray(make_image(12, 20)).convert(mode)
    dec = iio.read_image(save(tmp_path / "x.png", im))
    assert dec.mode == expect and dec.size == (20, 12) and dec.bits == 8 and dec.format == "PNG"


def test_palette_with_transparency_becomes_rgba(tmp_path):
    im = Image.fromarray(make_image(10, 10)).convert("P")
    im.info["transparency"] = 0
    dec = iio.read_image(save(tmp_path / "t.png", im, transparency=0))
    assert dec.mode == "RGBA" and dec.has_alpha


def test_cmyk_jpeg_becomes_rgb_without_cmyk_profile(tmp_path):
    im = Image.fromarray(make_image(16, 24)).convert("CMYK")
    dec = iio.read_image(save(tmp_path / "c.jpg", im))
    assert dec.mode == "RGB" and dec.icc_profile is None
    assert dec.warnings == ["CMYK converted to RGB"]
    ref = np.asarray(Image.fromarray(make_image(16, 24)), np.float32)
    assert np.abs(np.asarray(dec.pixels, np.float32) - ref).mean() < 6  # JPEG-close to the RGB source


def test_exif_orientation_applied(tmp_path):
    arr = make_image(24, 40)
    arr[:4, :4] = 255  # a white corner to follow
    im = Image.fromarray(arr)
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    dec = iio.read_image(save(tmp_path / "r.jpg", im, exif=exif.tobytes(), quality=98))
    assert dec.size == (24, 40)  # width and height swapped
    out = np.asarray(dec.pixels)
    assert out[:4, -4:].mean() > 200  # top-left corner went to the top-right
    assert Image.open(tmp_path / "r.jpg").getexif()[0x0112] == 6
    reread = Image.Exif()
    reread.load(dec.exif)
    assert reread.get(0x0112, 1) == 1  # the orientation tag no longer rotates


def test_icc_profile_kept_and_written_back(tmp_path):
    icc = srgb_icc()
    dec = iio.read_image(save(tmp_path / "i.png", Image.fromarray(make_image(8, 8)), icc_profile=icc))
    assert dec.icc_profile == icc
    for ext in ("png", "jpg", "webp"):
        iio.write_image(tmp_path / f"o.{ext}", dec.pixels, icc_profile=dec.icc_profile)
        assert Image.open(tmp_path / f"o.{ext}").info.get("icc_profile") == icc, ext


def test_icc_of_another_colour_space_is_dropped(tmp_path):
    grey_icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()
    dec = iio.read_image(save(tmp_path / "i.png", Image.fromarray(make_image(8, 8)), icc_profile=grey_icc))
    assert dec.icc_profile is None


def test_animated_gif_first_frame_with_warning(tmp_path):
    frames = [Image.fromarray(make_image(10, 12, seed=s, dark=0.2 + 0.3 * s)) for s in range(3)]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:], duration=50)
    dec = iio.read_image(tmp_path / "a.gif")
    assert dec.warnings == ["animated GIF (3 frames): only the first frame is enhanced"]
    first = np.asarray(Image.open(tmp_path / "a.gif").convert("RGB"))
    assert np.array_equal(np.asarray(dec.pixels), first)


def test_animated_webp_first_frame_with_warning(tmp_path):
    frames = [Image.fromarray(make_image(10, 12, seed=s, dark=0.2 + 0.3 * s)) for s in range(2)]
    frames[0].save(tmp_path / "a.webp", save_all=True, append_images=frames[1:], duration=50, lossless=True)
    dec = iio.read_image(tmp_path / "a.webp")
    assert dec.warnings == ["animated WEBP (2 frames): only the first frame is enhanced"]
    assert dec.size == (12, 10)


# ------------------------------------------------------------------------------ 16-bit


def test_16bit_grey_png_stays_16bit(tmp_path):
    arr = (np.arange(20 * 30, dtype=np.uint32).reshape(20, 30) * 97 % 65536).astype(np.uint16)
    save(tmp_path / "g.png", Image.fromarray(arr))
    dec = iio.read_image(tmp_path / "g.png")
    assert dec.mode == "I;16" and dec.bits == 16
    assert np.array_equal(np.asarray(dec.pixels), arr)
    iio.write_image(tmp_path / "o.png", dec.pixels)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "o.png")), arr)


@pytest.mark.parametrize("channels,mode", [(3, "RGB;16"), (4, "RGBA;16"), (2, "LA;16")])
def test_16bit_colour_png_decoded_losslessly(tmp_path, channels, mode):
    arr = np.random.default_rng(channels).integers(0, 65536, (9, 13, channels)).astype(np.uint16)
    (tmp_path / "w.png").write_bytes(paeth_png16(arr))  # every PNG filter type
    dec = iio.read_image(tmp_path / "w.png")
    assert dec.mode == mode and dec.bits == 16 and dec.size == (13, 9)
    assert np.array_equal(dec.pixels, arr)
    # Pillow alone keeps only the high bytes: the low bytes carry information
    assert not np.array_equal(dec.pixels >> 8 << 8, arr)


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_write_png16_round_trip_with_icc(tmp_path, channels):
    arr = np.random.default_rng(0).integers(0, 65536, (7, 11, channels)).astype(np.uint16)
    icc = srgb_icc() if channels >= 3 else None
    with open(tmp_path / "o.png", "wb") as fh:
        iio.write_png16(fh, arr, icc_profile=icc)
    if channels == 1:
        assert np.array_equal(np.asarray(Image.open(tmp_path / "o.png")), arr[..., 0])
        return
    dec = iio.read_image(tmp_path / "o.png")
    assert np.array_equal(dec.pixels, arr)
    assert dec.icc_profile == icc


def test_16bit_to_jpeg_rounds_to_8bit_and_says_so(tmp_path):
    arr = np.full((4, 5, 3), 257 * 100 + 128, np.uint16)
    notes = iio.write_image(tmp_path / "o.jpg", arr, quality=100)
    assert notes == ["16-bit image written as 8-bit JPEG (use --ext png to keep 16 bits)"]
    assert abs(np.asarray(Image.open(tmp_path / "o.jpg")).astype(int) - 100).max() <= 1


def test_alpha_to_jpeg_is_flattened_onto_white(tmp_path):
    rgba = np.zeros((6, 6, 4), np.uint8)
    rgba[..., 3] = 0  # fully transparent black
    rgba[:3, :, :] = (0, 0, 0, 255)
    notes = iio.write_image(tmp_path / "o.jpg", Image.fromarray(rgba, "RGBA"), quality=100)
    assert notes == ["JPEG has no alpha channel: transparent areas flattened onto white (use --ext png to keep alpha)"]
    out = np.asarray(Image.open(tmp_path / "o.jpg"))
    assert out.shape == (6, 6, 3) and out[5].min() > 240 and out[0].max() < 15


# ------------------------------------------------------------------------------ bad files


def _write_bad(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    good_png = io.BytesIO()
    Image.fromarray(make_image(40, 50)).save(good_png, "PNG")
    good_jpg = io.BytesIO()
    Image.fromarray(make_image(40, 50)).save(good_jpg, "JPEG")
    files = {
        "empty": (b"", iio.REASON_EMPTY),
        "trunc_png": (good_png.getvalue()[: len(good_png.getvalue()) // 2], iio.REASON_TRUNCATED),
        "trunc_png_header": (good_png.getvalue()[:30], iio.REASON_TRUNCATED),
        "trunc_jpg": (good_jpg.getvalue()[: len(good_jpg.getvalue()) // 2], iio.REASON_TRUNCATED),
        "text": (b"just some notes\n", iio.REASON_TEXT),
        "html": (b"<!DOCTYPE html>\n<html><body>404</body></html>\n", iio.REASON_HTML),
        "binary": (bytes(range(256)) * 8, iio.REASON_NOT_IMAGE),
        "bomb": (png_bytes(100_000, 100_000, 8, 2),
                 "too large (10,000,000,000 pixels is over the 128,000,000-pixel decompression-bomb "
                 "limit; raise --max-image-pixels if the file is trusted)"),
    }
    out = {}
    for name, (data, reason) in files.items():
        p = tmp_path / f"{name}.{'png' if 'png' in name or name == 'bomb' else 'jpg'}"
        p.write_bytes(data)
        out[name] = (p, reason)
    return out


def test_bad_files_each_get_their_one_line_reason(tmp_path):
    for name, (path, reason) in _write_bad(tmp_path).items():
        with pytest.raises(iio.DecodeError) as info:
            iio.read_image(path)
        assert str(info.value) == reason, name
        assert "\n" not in str(info.value)


def test_bomb_refused_before_allocating(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_bytes(100_000, 100_000, 8, 2))
    tracemalloc.start()
    try:
        with pytest.raises(iio.DecodeError) as info:
            iio.read_image(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert info.value.kind == "too-large"
    assert peak < 5_000_000  # the claimed image would be 30 GB


def test_configurable_pixel_limit(tmp_path):
    path = save(tmp_path / "x.png", Image.fromarray(make_image(20, 30)))
    with pytest.raises(iio.DecodeError, match=r"^too large \(600 pixels is over the 599-pixel"):
        iio.read_image(path, max_pixels=599)
    assert iio.read_image(path, max_pixels=600).size == (30, 20)
    assert iio.read_image(path, max_pixels=None).size == (30, 20)


def test_header_between_pillow_limits_uses_our_message(tmp_path):
    path = tmp_path / "b.png"
    path.write_bytes(png_bytes(12_000, 12_000, 8, 2))  # 144 MP: over ours, under Pillow's hard limit
    with pytest.raises(iio.DecodeError, match=r"^too large \(144,000,000 pixels is over the 128,000,000"):
        iio.read_image(path)


def test_unreadable_and_missing(tmp_path, monkeypatch):
    with pytest.raises(iio.DecodeError, match=r"^unreadable \(no such file\)$"):
        iio.read_image(tmp_path / "missing.png")
    with pytest.raises(iio.DecodeError, match=r"^unreadable \(it is a folder\)$"):
        iio.read_image(tmp_path)
    p = save(tmp_path / "x.png", Image.fromarray(make_image(4, 4)))
    real_open = open

    def deny(file, *a, **k):
        if os.fspath(file) == os.fspath(p):
            raise PermissionError(13, "Permission denied", os.fspath(file))
        return real_open(file, *a, **k)

    monkeypatch.setattr("builtins.open", deny)
    with pytest.raises(iio.DecodeError, match=r"^unreadable \(permission denied\)$"):
        iio.read_image(p)


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root can read mode-000 files")
def test_unreadable_permissions_for_real(tmp_path):
    p = save(tmp_path / "x.png", Image.fromarray(make_image(4, 4)))
    p.chmod(0)
    try:
        with pytest.raises(iio.DecodeError, match=r"^unreadable \(permission denied\)$"):
            iio.read_image(p)
    finally:
        p.chmod(0o644)


# ------------------------------------------------------------------------------ writing


def test_write_is_atomic_when_the_encoder_fails(tmp_path, monkeypatch):
    img = Image.fromarray(make_image(32, 32))

    def broken_save(self, fp, format=None, **params):
        fp.write(b"\x89PNG half of a file")
        raise OSError(28, "No space left on device")

    def broken_png(fh, arr, **kw):  # the fast PNG writer used at zlib levels <= 3
        broken_save(None, fh)

    monkeypatch.setattr(Image.Image, "save", broken_save)
    monkeypatch.setattr(iio.encode, "write_png_array", broken_png)
    with pytest.raises(iio.EncodeError, match=r"^could not write o\.png: no space left on device$"):
        iio.write_image(tmp_path / "o.png", img)
    assert list(tmp_path.iterdir()) == []


def test_write_keeps_the_old_file_when_replacing_fails(tmp_path, monkeypatch):
    target = save(tmp_path / "o.png", Image.fromarray(make_image(8, 8)))
    before = target.read_bytes()
    monkeypatch.setattr(Image.Image, "save", lambda self, fp, **k: (_ for _ in ()).throw(ValueError("boom")))
    monkeypatch.setattr(iio.encode, "write_png_array", lambda fh, arr, **k: (_ for _ in ()).throw(ValueError("boom")))
    with pytest.raises(iio.EncodeError, match=r"^could not encode o\.png as PNG: boom$"):
        iio.write_image(target, Image.fromarray(make_image(8, 8, seed=1)))
    assert target.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["o.png"]


def test_format_for_ext():
    assert iio.format_for_ext(".JPG") == "JPEG" and iio.format_for_ext("webp") == "WEBP"
    with pytest.raises(ValueError, match="cannot write '.gif' files; use one of: bmp, dib, jfif"):
        iio.format_for_ext(".gif")


def test_outputs_get_normal_permissions_not_mkstemp_0600(tmp_path):
    mask = os.umask(0o022)
    os.umask(mask)
    iio.write_image(tmp_path / "o.png", Image.fromarray(make_image(4, 4)))
    assert (tmp_path / "o.png").stat().st_mode & 0o777 == 0o666 & ~mask


# ------------------------------------------------------------------------------ property-based

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

KINDS = {"empty", "not-image", "truncated", "corrupt", "too-large", "unreadable", "unsupported"}


@functools.lru_cache(maxsize=None)
def valid_bytes(fmt: str) -> bytes:
    buf = io.BytesIO()
    im = Image.fromarray(make_image(23, 31))
    if fmt == "GIF":
        im = im.convert("P")
    im.save(buf, fmt)
    return buf.getvalue()


# Pillow warns about damaged TIFF tags it skips ("Truncated File Read", "Tag data larger than file"); engan-infer
# silences Pillow's warnings and reports its own reasons, so here they are expected, not a failure.
@pytest.mark.filterwarnings("ignore::UserWarning:PIL")
@settings(max_examples=int(os.environ.get("ENGAN_HYPOTHESIS_EXAMPLES", 60)), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fmt=st.sampled_from(["PNG", "JPEG", "GIF", "WEBP", "BMP", "TIFF"]),
       keep=st.floats(0, 1), flips=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), max_size=6))
def test_corrupted_files_decode_or_fail_with_a_reason(tmp_path, fmt, keep, flips):
    data = bytearray(valid_bytes(fmt))
    data = data[: max(0, int(len(data) * keep))] if keep < 1 else data
    for where, value in flips:
        if data:
            data[min(len(data) - 1, int(where * len(data)))] = value
    path = tmp_path / f"x.{fmt.lower()}"
    path.write_bytes(bytes(data))
    try:
        dec = iio.read_image(path)
    except iio.DecodeError as e:
        assert e.kind in KINDS and str(e) and "\n" not in str(e)
    else:
        w, h = dec.size
        assert w > 0 and h > 0 and dec.mode in ("L", "LA", "RGB", "RGBA", "I;16", "RGB;16", "RGBA;16", "LA;16")


def test_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    with pytest.raises(iio.DecodeError, match=r"^unreadable \(not a regular file\)$"):
        iio.read_image(fifo)


@pytest.mark.parametrize("sixteen", [False, True])
def test_png_compress_level_is_lossless_and_trades_size(tmp_path, sixteen):
    img = make_image(96, 128, seed=3)
    pixels = (img.astype(np.uint16) * 257) if sixteen else Image.fromarray(img)
    sizes = {}
    for level in (0, iio.DEFAULT_PNG_COMPRESS, 9):
        path = tmp_path / f"o{level}.png"
        iio.write_image(path, pixels, png_compress=level)
        back = iio.read_image(path).pixels
        back = np.asarray(back) if not isinstance(back, np.ndarray) else back
        expected = np.asarray(pixels) if not sixteen else pixels
        assert np.array_equal(back, expected), f"PNG level {level} changed the pixels"
        sizes[level] = path.stat().st_size
    assert sizes[0] > sizes[iio.DEFAULT_PNG_COMPRESS] >= sizes[9]
    assert iio.DEFAULT_PNG_COMPRESS == 1


@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "RGBA"])
def test_fast_png_writer_matches_pillow_pixels_icc_and_exif(tmp_path, mode):
    img = Image.fromarray(make_image(40, 56, seed=5)).convert(mode)
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes() if mode.startswith("RGB") else None
    exif = Image.Exif()
    exif[0x010E] = "engan test"  # ImageDescription
    iio.write_image(tmp_path / "fast.png", img, icc_profile=icc, exif=exif.tobytes(), png_compress=1)
    iio.write_image(tmp_path / "pillow.png", img, icc_profile=icc, exif=exif.tobytes(), png_compress=6)
    with Image.open(tmp_path / "fast.png") as fast, Image.open(tmp_path / "pillow.png") as ref:
        assert fast.mode == ref.mode == mode
        assert np.array_equal(np.asarray(fast), np.asarray(ref))
        assert fast.info.get("icc_profile") == ref.info.get("icc_profile")
        assert fast.getexif().get(0x010E) == "engan test" == ref.getexif().get(0x010E)
