"""Hardening of `engan-infer` against odd inputs and outputs not covered in test_infer_cli.py.

Covered there already (see docs/hardening.md): zero-byte, truncated PNG/JPEG, text and
HTML files, decompression bombs, 1x1/15x15/17x999 images, palette, CMYK, 16-bit, EXIF,
grey+alpha mode, animated GIF, globbed non-UTF-8 names, symlink loops, an OUTPUT_DIR that
is a file or not writable (EACCES), kill -9 + --skip-existing, truncation properties.
Here: extreme aspect ratios, alpha pixels of grey+alpha, animated WebP, non-UTF-8 and
space-laden folders with --recursive/--compare/--html, permission errors raised by the
OS calls themselves, read-only output locations, and byte flips through the whole CLI.
"""
from __future__ import annotations

import errno
import os
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from engan.runtime import Enhancer
from engan.runtime.cli import jobs, pipeline
from engan.runtime import imageio as iio
from tests.helpers import counts, failed_lines, make_image, parse_links, resolve, run_cli, save

@pytest.fixture(scope="module")
def enh(tiny_onnx):
    return Enhancer.load(tiny_onnx)


@pytest.fixture
def shared(monkeypatch, enh):
    """Run the CLI with the module's enhancer (loaded once)."""
    monkeypatch.setattr(pipeline, "load_enhancer", lambda opts: enh)
    return enh


# ----------------------------------------------------------------------------- sizes and modes


def test_extreme_aspect_ratios_keep_their_size_and_match_the_library(tmp_path, shared):
    src, out = tmp_path / "in", tmp_path / "out"
    sizes = {"row.png": (1, 4000), "column.png": (4000, 1), "strip.jpg": (3, 2500)}
    for i, (name, (h, w)) in enumerate(sizes.items()):
        save(src / name, Image.fromarray(make_image(h, w, seed=i)))
    r = run_cli(src, out)
    assert r.exit_code == 0 and counts(r) == (3, 0, 0), r.output
    for name, (h, w) in sizes.items():
        got = Image.open(out / (Path(name).stem + ".png"))
        assert got.size == (w, h)
        expect = shared.enhance(iio.read_image(src / name).pixels)
        assert np.array_equal(np.asarray(got), np.asarray(expect)), name


def test_grey_alpha_keeps_its_alpha_pixels_and_enhances_the_grey(tmp_path, shared):
    src, out = tmp_path / "in", tmp_path / "out"
    grey = np.asarray(Image.fromarray(make_image(24, 40)).convert("L"))
    alpha = np.tile(np.arange(40, dtype=np.uint8) * 6, (24, 1))
    save(src / "ga.png", Image.fromarray(np.dstack([grey, alpha]), "LA"))
    r = run_cli(src, out)
    assert r.exit_code == 0, r.output
    res = Image.open(out / "ga.png")
    assert res.mode == "LA" and res.size == (40, 24)
    arr = np.asarray(res)
    assert np.array_equal(arr[..., 1], alpha)
    assert np.abs(arr[..., 0].astype(int) - grey).mean() > 1  # the grey channel was enhanced


def test_animated_webp_first_frame_with_one_warning(tmp_path, shared):
    src, out = tmp_path / "in", tmp_path / "out"
    frames = [Image.fromarray(make_image(16, 24, seed=s)) for s in range(3)]
    src.mkdir()
    frames[0].save(src / "anim.webp", save_all=True, append_images=frames[1:], lossless=True, duration=50)
    r = run_cli(src, out)
    assert r.exit_code == 0 and counts(r) == (1, 0, 0)
    warn = [line for line in r.stderr.splitlines() if line.startswith("warning:")]
    assert warn == [f"warning: {src / 'anim.webp'}: animated WEBP (3 frames): only the first frame "
                    "is enhanced (said once per run)"]
    first = shared.enhance(frames[0])
    assert np.array_equal(np.asarray(Image.open(out / "anim.png").convert("RGB")), np.asarray(first))


def test_non_utf8_and_space_laden_folders_recursive_compare_html(tmp_path, shared):
    src, out = tmp_path / "in", tmp_path / "out"
    sub = os.fsdecode(b"nuit \xe9t\xe9 2024")  # Latin-1 bytes: not UTF-8
    name = os.fsdecode(b"ph\xf6to 1.png")
    save(src / sub / name, Image.fromarray(make_image(16, 20)))
    save(src / "a b" / "c d.jpg", Image.fromarray(make_image(16, 20, seed=1)))
    r = run_cli(src, out, "--recursive", "--compare", "--html")
    assert r.exit_code == 0 and counts(r) == (2, 0, 0), r.output
    for rel in (Path(sub) / name, Path(sub) / os.fsdecode(b"ph\xf6to 1_compare.png"), Path("a b/c d.png"),
                Path("a b/c d_compare.png")):
        assert (out / rel).is_file(), rel
    page = (out / "index.html").read_text("utf-8")  # the page is valid UTF-8 despite the names
    links = parse_links(page)
    assert links.rows == 3
    for url in links.srcs + links.hrefs:
        assert resolve(url, out).is_file(), url
    assert 'alt="output: ph\\xf6to 1.png"' in page  # undecodable bytes shown as \xNN, not crashed on


# ----------------------------------------------------------------------------- permissions, read-only outputs


def test_permission_denied_by_the_os_is_one_failure(tmp_path, shared, monkeypatch):
    """root ignores chmod, so the OS call itself is made to fail (test_imageio does chmod as non-root)."""
    src, out = tmp_path / "in", tmp_path / "out"
    save(src / "a.png", Image.fromarray(make_image(16, 16)))
    locked = save(src / "locked.png", Image.fromarray(make_image(16, 16)))
    real_open = open

    def guarded_open(path, *a, **k):
        if os.fspath(path) == os.fspath(locked):
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
        return real_open(path, *a, **k)

    monkeypatch.setattr(iio.decode, "open", guarded_open, raising=False)  # the decoder's open() of input files
    r = run_cli(src, out)
    assert r.exit_code == 1 and counts(r) == (1, 1, 0)
    assert failed_lines(r) == [f"FAILED {locked}: unreadable (permission denied)"]
    assert os.listdir(out) == ["a.png"]


@pytest.mark.parametrize("recursive", [False, True])
def test_unlistable_input_folder_is_a_usage_error_not_silently_skipped(tmp_path, shared, monkeypatch, recursive):
    src, out = tmp_path / "in", tmp_path / "out"
    save(src / "a.png", Image.fromarray(make_image(16, 16)))
    save(src / "private" / "b.png", Image.fromarray(make_image(16, 16)))
    bad = src if not recursive else src / "private"
    real_listdir, real_scandir = os.listdir, os.scandir

    def deny(fn):
        def wrapped(path=".", *a, **k):
            if os.fspath(path) == os.fspath(bad):
                raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
            return fn(path, *a, **k)
        return wrapped

    monkeypatch.setattr(os, "listdir", deny(real_listdir))
    monkeypatch.setattr(os, "scandir", deny(real_scandir))
    r = run_cli(src, out, *(["--recursive"] if recursive else []))
    assert r.exit_code == 2
    assert (f"Invalid value for INPUT: cannot list folder '{bad}': Permission denied; fix its permissions or "
            "leave it out of INPUT") in " ".join(r.stderr.split())
    assert not out.exists()


def test_output_dir_on_a_read_only_location(tmp_path, shared, monkeypatch):
    img = save(tmp_path / "a.png", Image.fromarray(make_image(16, 16)))
    # a real pseudo file system nobody can create folders in, even root
    r = run_cli(img, "/proc/engan-out")
    assert r.exit_code == 2
    text = " ".join(r.stderr.split())
    assert re.search(r"Invalid value for OUTPUT_DIR: cannot write to '/proc/engan-out': [a-z ]+; choose a folder "
                     r"you can write to", text), text
    # a path whose parent is a file
    (tmp_path / "notes.txt").write_text("x")
    r = run_cli(img, tmp_path / "notes.txt" / "out")
    assert r.exit_code == 2
    assert (f"Invalid value for OUTPUT_DIR: cannot write to '{tmp_path / 'notes.txt' / 'out'}': not a directory; "
            "choose a folder you can write to") in " ".join(r.stderr.split())
    # a read-only mount (EROFS), simulated: mounting needs privileges CI does not have

    def read_only(*a, **k):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(jobs.tempfile, "mkstemp", read_only)
    r = run_cli(img, tmp_path / "ro")
    assert r.exit_code == 2
    assert (f"Invalid value for OUTPUT_DIR: cannot write to '{tmp_path / 'ro'}': read-only file system; choose "
            "a folder you can write to") in " ".join(r.stderr.split())


def test_output_folder_turning_read_only_mid_run_fails_each_file_cleanly(tmp_path, shared, monkeypatch):
    src, out = tmp_path / "in", tmp_path / "out"
    for n in "abc":
        save(src / f"{n}.png", Image.fromarray(make_image(16, 16)))
    import engan.runtime.atomic as atomic

    real_mkstemp = atomic.tempfile.mkstemp

    def mkstemp(*a, **k):
        if "b.png" in k.get("prefix", ""):
            raise OSError(errno.EROFS, "Read-only file system")
        return real_mkstemp(*a, **k)

    monkeypatch.setattr(atomic.tempfile, "mkstemp", mkstemp)
    r = run_cli(src, out)
    assert r.exit_code == 1 and counts(r) == (2, 1, 0)
    assert failed_lines(r) == [f"FAILED {src / 'b.png'}: could not write b.png: read-only file system"]
    assert sorted(os.listdir(out)) == ["a.png", "c.png"]


# ----------------------------------------------------------------------------- property-based: byte flips

#: Every reason a file may fail with (imageio's fixed set).
REASONS = re.compile(
    r"^(empty file \(0 bytes\)|not an image \((unrecognised file format|it is a text file|it is an HTML file)\)"
    r"|truncated \(the image data ends early\)|corrupt image data \(.+\)|too large \(.+\)|unreadable \(.+\)"
    r"|unsupported image mode .+)$")


def _valid(fmt: str, h: int, w: int) -> bytes:
    import io

    im = Image.fromarray(make_image(h, w, seed=h * w))
    buf = io.BytesIO()
    (im.convert("P") if fmt == "GIF" else im).save(buf, fmt)
    return buf.getvalue()


@settings(max_examples=int(os.environ.get("ENGAN_HYPOTHESIS_EXAMPLES", 20)), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fmt=st.sampled_from(["PNG", "JPEG", "GIF", "WEBP", "BMP", "TIFF"]), h=st.integers(1, 40),
       w=st.integers(1, 40), flips=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), min_size=1, max_size=5),
       workers=st.integers(0, 2))
def test_byte_flipped_images_through_engan_infer(tmp_path_factory, shared, fmt, h, w, flips, workers):
    base = tmp_path_factory.mktemp("flip")
    src, out = base / "in", base / "out"
    data = bytearray(_valid(fmt, h, w))
    for where, value in flips:
        data[min(len(data) - 1, int(where * len(data)))] = value
    src.mkdir()
    path = src / f"x.{fmt.lower()}"
    path.write_bytes(bytes(data))
    r = run_cli(src, out, "--workers", str(workers), "--max-image-pixels", "4000000")
    assert "Traceback" not in r.output
    assert r.exit_code in (0, 1), r.output
    written = sorted(os.listdir(out))  # no hidden temp file either
    if r.exit_code == 0:
        assert counts(r) == (1, 0, 0) and written == ["x.png"]
        dec = iio.read_image(out / "x.png")  # complete and decodable
        assert dec.size == iio.read_image(path, 4_000_000).size
    else:
        assert counts(r) == (0, 1, 0) and written == []
        [line] = failed_lines(r)
        assert line.startswith(f"FAILED {path}: ")
        assert REASONS.match(line[len(f"FAILED {path}: "):]), line
