"""`engan-infer` end to end: outputs, modes, bad inputs, refusals, atomic writes, folders, pages.

Runs the real runtime (ONNX Runtime) on the tiny ONNX fixture; a few tests inject a fake
enhancer to provoke failures the real model never has.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from engan.runtime.cli import jobs, pipeline
from engan.runtime.cli.main import main as infer_main
from engan.runtime import imageio as iio
from tests.helpers import (REPO, FakeEnhancer, counts, failed_lines, make_image, paeth_png16, parse_links, png_bytes,
                           resolve, rgb, run_cli, save, srgb_icc)

# ----------------------------------------------------------------------------- basics


def test_one_output_per_input_at_the_input_size(tmp_path, tiny_onnx):
    src, out = tmp_path / "in", tmp_path / "out"
    sizes = {"a.png": (40, 56), "b.jpg": (33, 47), "odd.png": (17, 999), "one.png": (1, 1),
             "fifteen.png": (15, 15), "tall.png": (300, 2)}
    for i, (name, (h, w)) in enumerate(sizes.items()):
        save(src / name, rgb(h, w, seed=i))
    r = run_cli(src, out, "--html", model=tiny_onnx)
    assert r.exit_code == 0, r.output
    assert counts(r) == (len(sizes), 0, 0)
    assert failed_lines(r) == []
    for name, (h, w) in sizes.items():
        o = Image.open(out / (Path(name).stem + ".png"))
        assert o.size == (w, h) and o.mode == "RGB"
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [Path(n).stem + ".png" for n in sizes] + ["index.html"])


def test_output_pixels_match_the_library(tmp_path, tiny_onnx):
    from engan.runtime import Enhancer

    src, out = tmp_path / "in", tmp_path / "out"
    save(src / "p.png", rgb(37, 45))
    r = run_cli(src, out, model=tiny_onnx)
    assert r.exit_code == 0, r.output
    expect = np.asarray(Enhancer.load(tiny_onnx).enhance(Image.open(src / "p.png")))
    got = np.asarray(Image.open(out / "p.png"))
    assert np.array_equal(got, expect)
    assert got.std() > 1  # the model produced an image, not a constant


def test_modes_round_trip(tmp_path, tiny_onnx):
    src, out = tmp_path / "in", tmp_path / "out"
    base = rgb(24, 40)
    save(src / "grey.png", base.convert("L"))
    save(src / "greyalpha.png", base.convert("LA"))
    rgba = base.convert("RGBA")
    alpha = np.tile(np.arange(40, dtype=np.uint8) * 6, (24, 1))
    rgba.putalpha(Image.fromarray(alpha))
    save(src / "rgba.png", rgba)
    g16 = (np.asarray(base.convert("L"), np.uint16) * 257 + 3)
    save(src / "grey16.png", Image.fromarray(g16))
    c16 = np.asarray(base, np.uint16) * 257 + 5
    (src / "rgb16.png").write_bytes(paeth_png16(c16))
    a16 = np.concatenate([c16, np.full((24, 40, 1), 40000, np.uint16)], axis=-1)
    (src / "rgba16.png").write_bytes(paeth_png16(a16))
    save(src / "palette.png", base.convert("P"))
    save(src / "cmyk.jpg", base.convert("CMYK"))
    rot = rgb(24, 40)
    exif = rot.getexif()
    exif[0x0112] = 6
    save(src / "rotated.jpg", rot, exif=exif.tobytes())
    save(src / "icc.png", base, icc_profile=srgb_icc())

    r = run_cli(src, out, model=tiny_onnx)
    assert r.exit_code == 0, r.output
    assert counts(r) == (10, 0, 0)
    expect = {"grey": ("L", (40, 24)), "greyalpha": ("LA", (40, 24)), "rgba": ("RGBA", (40, 24)),
              "grey16": ("I;16", (40, 24)), "rgb16": ("RGB;16", (40, 24)), "rgba16": ("RGBA;16", (40, 24)),
              "palette": ("RGB", (40, 24)), "cmyk": ("RGB", (40, 24)), "rotated": ("RGB", (24, 40)),
              "icc": ("RGB", (40, 24))}
    for stem, (mode, size) in expect.items():
        dec = iio.read_image(out / f"{stem}.png")
        assert (dec.mode, dec.size) == (mode, size), stem
    assert np.array_equal(np.asarray(Image.open(out / "rgba.png"))[..., 3], alpha)  # alpha untouched
    assert np.array_equal(iio.read_image(out / "rgba16.png").pixels[..., 3], a16[..., 3])
    assert (iio.read_image(out / "rgb16.png").pixels % 257 != 0).any()  # real 16-bit values, not 8-bit x 257
    assert Image.open(out / "icc.png").info.get("icc_profile") == srgb_icc()


def test_16bit_to_jpg_is_said_once(tmp_path, tiny_onnx):
    src, out = tmp_path / "in", tmp_path / "out"
    for i in range(2):
        (src / f"w{i}.png").parent.mkdir(exist_ok=True)
        (src / f"w{i}.png").write_bytes(paeth_png16(np.full((16, 16, 3), 30000 + i, np.uint16)))
    r = run_cli(src, out, "--ext", "jpg", model=tiny_onnx)
    assert r.exit_code == 0, r.output
    notes = [line for line in r.stderr.splitlines() if "16-bit image written as 8-bit JPEG" in line]
    assert len(notes) == 1 and notes[0].startswith("warning: ")
    assert Image.open(out / "w0.jpg").mode == "RGB"


def test_animated_gif_first_frame_with_one_warning(tmp_path, tiny_onnx):
    src, out = tmp_path / "in", tmp_path / "out"
    frames = [rgb(16, 20, seed=s) for s in range(3)]
    src.mkdir()
    frames[0].save(src / "anim.gif", save_all=True, append_images=frames[1:])
    r = run_cli(src, out, model=tiny_onnx)
    assert r.exit_code == 0
    warn = [line for line in r.stderr.splitlines() if line.startswith("warning:")]
    assert warn == [f"warning: {src / 'anim.gif'}: animated GIF (3 frames): only the first frame "
                    "is enhanced (said once per run)"]
    assert Image.open(out / "anim.png").size == (20, 16)


# ----------------------------------------------------------------------------- bad input


def test_bad_inputs_fail_one_line_each_and_the_rest_is_written(tmp_path, tiny_onnx):
    src, out = tmp_path / "in", tmp_path / "out"
    save(src / "good1.png", rgb(20, 24))
    save(src / "good2.jpg", rgb(20, 24, seed=1))
    png = (src / "good1.png").read_bytes()
    jpg = (src / "good2.jpg").read_bytes()
    bad = {
        "empty.png": (b"", "empty file (0 bytes)"),
        "trunc.png": (png[: len(png) // 2], "truncated (the image data ends early)"),
        "truncj.jpg": (jpg[: len(jpg) // 2], "truncated (the image data ends early)"),
        "notes.jpg": (b"shopping list\n", "not an image (it is a text file)"),
        "page.png": (b"<html><body>Not found</body></html>", "not an image (it is an HTML file)"),
        "bomb.png": (png_bytes(100_000, 100_000, 8, 2),
                     "too large (10,000,000,000 pixels is over the 128,000,000-pixel decompression-bomb "
                     "limit; raise --max-image-pixels if the file is trusted)"),
    }
    for name, (data, _) in bad.items():
        (src / name).write_bytes(data)
    r = run_cli(src, out, model=tiny_onnx)
    assert r.exit_code == 1
    assert counts(r) == (2, len(bad), 0)
    assert sorted(failed_lines(r)) == sorted(f"FAILED {src / n}: {reason}" for n, (_, reason) in bad.items())
    assert sorted(p.name for p in out.iterdir()) == ["good1.png", "good2.png"]
    assert "Traceback" not in r.output


def test_unreadable_file_is_one_failure(tmp_path, tiny_onnx, monkeypatch):
    src, out = tmp_path / "in", tmp_path / "out"
    save(src / "a.png", rgb(16, 16))
    save(src / "locked.png", rgb(16, 16))
    real = pipeline.read_image

    def read(path, *a, **k):
        if path.name == "locked.png":
            raise iio.DecodeError("unreadable", iio.REASON_PERMISSION)
        return real(path, *a, **k)

    monkeypatch.setattr(pipeline, "read_image", read)
    r = run_cli(src, out, model=tiny_onnx)
    assert r.exit_code == 1 and failed_lines(r) == [f"FAILED {src / 'locked.png'}: unreadable (permission denied)"]


def test_enhancer_failure_is_one_failure(tmp_path, monkeypatch):
    enh = FakeEnhancer(fail_width=33)
    monkeypatch.setattr(pipeline, "load_enhancer", lambda opts: enh)
    src, out = tmp_path / "in", tmp_path / "out"
    save(src / "a.png", rgb(16, 20))
    save(src / "b.png", rgb(16, 33))
    save(src / "c.png", rgb(16, 20))
    r = run_cli(src, out)
    assert r.exit_code == 1
    assert failed_lines(r) == [f"FAILED {src / 'b.png'}: enhancement failed: backend exploded"]
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "c.png"]


def test_encoder_failure_leaves_nothing_partial(tmp_path, tiny_onnx, monkeypatch):
    src, out = tmp_path / "in", tmp_path / "out"
    for n in "abc":
        save(src / f"{n}.png", rgb(16, 24 if n == "b" else 16))
    real_save = Image.Image.save

    def save_fails_for_b(self, fp, format=None, **params):
        if self.size == (24, 16):  # b.png's output
            fp.write(b"\x89PNG\r\n\x1a\n half written")
            raise OSError(28, "No space left on device")
        return real_save(self, fp, format=format, **params)

    real_png = iio.encode.write_png_array

    def png_fails_for_b(fh, arr, **kw):  # the fast PNG writer (zlib level <= 3, the default)
        if arr.shape[:2] == (16, 24):
            fh.write(b"\x89PNG\r\n\x1a\n half written")
            raise OSError(28, "No space left on device")
        return real_png(fh, arr, **kw)

    monkeypatch.setattr(Image.Image, "save", save_fails_for_b)
    monkeypatch.setattr(iio.encode, "write_png_array", png_fails_for_b)
    r = run_cli(src, out, "--workers", "2", model=tiny_onnx)
    assert r.exit_code == 1
    assert failed_lines(r) == [f"FAILED {src / 'b.png'}: could not write b.png: no space left on device"]
    assert sorted(os.listdir(out)) == ["a.png", "c.png"]  # no b.png, no temp file


def test_killed_midway_leaves_only_complete_files_and_resumes(tmp_path, tiny_onnx):
    """SIGKILL in the middle of a folder, torch blocked: every output is whole; --skip-existing finishes."""
    src, out = tmp_path / "in", tmp_path / "out"
    n = 12
    for i in range(n):
        save(src / f"{i:02d}.png", rgb(96, 128, seed=i))
    code = ("import sys; sys.modules['torch'] = None; from engan.runtime.cli.main import main; "
            "main(sys.argv[1:])")
    cmd = [sys.executable, "-c", code, str(src), str(out), "--model", str(tiny_onnx), "--quiet", "--workers", "2"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if out.is_dir() and len([p for p in out.iterdir() if not p.name.startswith(".")]) >= 2:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()
    done = sorted(p for p in out.iterdir() if not p.name.startswith("."))
    assert 2 <= len(done) < n
    for p in done:  # every visible file decodes completely
        assert iio.read_image(p).size == (128, 96)
    second = subprocess.run(cmd + ["--skip-existing"], env=env, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr
    assert sorted(os.listdir(out)) == [f"{i:02d}.png" for i in range(n)]  # stale temp files cleaned too


def test_stale_temp_files_of_own_outputs_are_removed(tmp_path, fake):
    src, out = tmp_path / "in", tmp_path / "out"
    save(src / "a.png", rgb(16, 16))
    out.mkdir()
    (out / ".a.png.k3j2h1g0.tmp").write_bytes(b"half")
    (out / ".other.png.k3j2h1g0.tmp").write_bytes(b"not ours")
    r = run_cli(src, out)
    assert r.exit_code == 0 and "removed 1 temp file(s) left by an interrupted run" in r.stderr
    assert sorted(os.listdir(out)) == [".other.png.k3j2h1g0.tmp", "a.png"]


# ----------------------------------------------------------------------------- refusals and exit codes


def test_existing_outputs_refused_then_skipped_then_overwritten(tmp_path, tiny_onnx):
    src, out = tmp_path / "in", tmp_path / "out"
    save(src / "a.png", rgb(16, 16))
    save(src / "b.png", rgb(16, 16))
    out.mkdir()
    (out / "a.png").write_bytes(b"keep me")
    r = run_cli(src, out, model=tiny_onnx)
    assert r.exit_code == 2
    assert (f"1 output file(s) already exist, e.g. '{out / 'a.png'}'; pass --skip-existing to keep them "
            "(and enhance only the rest) or --overwrite to replace them") in r.stderr
    assert sorted(os.listdir(out)) == ["a.png"]
    r = run_cli(src, out, "--skip-existing", model=tiny_onnx)
    assert r.exit_code == 0 and counts(r) == (1, 0, 1)
    assert (out / "a.png").read_bytes() == b"keep me"
    r = run_cli(src, out, "--overwrite", model=tiny_onnx)
    assert r.exit_code == 0 and counts(r) == (2, 0, 0)
    assert Image.open(out / "a.png").size == (16, 16)
    r = run_cli(src, out, "--overwrite", "--skip-existing", model=tiny_onnx)
    assert r.exit_code == 2 and "--skip-existing and --overwrite contradict each other" in r.stderr


def test_refuses_to_write_over_its_inputs(tmp_path, tiny_onnx):
    src = tmp_path / "in"
    save(src / "a.png", rgb(16, 16))
    before = (src / "a.png").read_bytes()
    r = run_cli(src, src, "--overwrite", model=tiny_onnx)
    assert r.exit_code == 2
    assert (f"refusing to write the output '{src / 'a.png'}' over the input '{src / 'a.png'}': choose "
            "another OUTPUT_DIR, a --suffix or another --ext") in r.stderr
    assert (src / "a.png").read_bytes() == before
    r = run_cli(src, src, "--suffix", "_enh", "--compare", model=tiny_onnx)
    assert r.exit_code == 0 and (src / "a_enh.png").is_file()
    # a rerun does not take its own outputs for inputs
    r = run_cli(src, src, "--suffix", "_enh", "--compare", "--skip-existing", model=tiny_onnx)
    assert r.exit_code == 0 and counts(r) == (0, 0, 1)
    assert f"left out 2 input(s) that this run writes as outputs, e.g. {src / 'a_enh.png'}" in r.stderr
    assert sorted(os.listdir(src)) == ["a.png", "a_enh.png", "a_enh_compare.png"]
    # an original that shares its stem with another input's output stays protected
    save(src / "a.jpg", rgb(16, 16))
    r = run_cli(src / "a.jpg", src / "a.png", src, "--overwrite", model=tiny_onnx)
    assert r.exit_code == 2 and "refusing to write the output" in r.stderr


def test_output_dir_problems_are_usage_errors(tmp_path, tiny_onnx, monkeypatch):
    save(tmp_path / "a.png", rgb(16, 16))
    (tmp_path / "file.txt").write_text("x")
    r = run_cli(tmp_path / "a.png", tmp_path / "file.txt", model=tiny_onnx)
    assert r.exit_code == 2
    assert f"Invalid value for OUTPUT_DIR: '{tmp_path / 'file.txt'}' is a file, not a folder" in r.stderr

    def no_write(*a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(jobs.tempfile, "mkstemp", no_write)
    r = run_cli(tmp_path / "a.png", tmp_path / "ro", model=tiny_onnx)
    assert r.exit_code == 2
    assert (f"Invalid value for OUTPUT_DIR: cannot write to '{tmp_path / 'ro'}': permission denied; "
            "choose a folder you can write to") in r.stderr


def test_usage_errors_exit_2(tmp_path, tiny_onnx):
    save(tmp_path / "a.png", rgb(16, 16))
    r = run_cli(tmp_path / "missing.png", tmp_path / "o", model=tiny_onnx)
    assert r.exit_code == 2 and f"'{tmp_path / 'missing.png'}' does not exist" in r.stderr
    r = run_cli(str(tmp_path / "*.tiff"), tmp_path / "o", model=tiny_onnx)
    assert r.exit_code == 2 and "no file matches" in r.stderr
    assert run_cli(tmp_path / "a.png", tmp_path / "o", "--ext", "gif").exit_code == 2
    assert run_cli(tmp_path / "a.png", tmp_path / "o", "--quality", "0").exit_code == 2
    assert run_cli(tmp_path / "a.png", tmp_path / "o", "--png-compress", "10").exit_code == 2
    assert run_cli(tmp_path / "a.png").exit_code == 2  # OUTPUT_DIR missing
    r = run_cli(tmp_path / "a.png", tmp_path / "o", "--model", tmp_path / "nope.onnx")
    assert r.exit_code == 2 and "Error: could not load the model: model not found" in r.stderr
    assert not (tmp_path / "o" / "a.png").exists()


def test_first_line_names_the_model_its_precision_and_the_backend(tmp_path, tiny_onnx):
    save(tmp_path / "in" / "a.png", rgb(16, 16))
    r = run_cli(tmp_path / "in", tmp_path / "out", "--backend", "ort", model=tiny_onnx)
    assert r.exit_code == 0
    assert r.stderr.splitlines()[0] == f"tiny-test · FP32 · ONNX Runtime CPU · 1 image(s) -> {tmp_path / 'out'}"
    shipped = run_cli(tmp_path / "in", tmp_path / "shipped")  # the shipped model, --backend auto on this CPU
    assert re.fullmatch(rf"engan-lite v\d+ · INT8 · ONNX Runtime CPU · 1 image\(s\) -> {re.escape(str(tmp_path))}/shipped",
                        shipped.stderr.splitlines()[0]), shipped.stderr
    assert "not used" not in shipped.stderr and "  chosen " not in shipped.stderr  # the reasons are for --verbose


def test_verbose_says_why_this_backend_and_why_not_the_others(tmp_path, tiny_onnx):
    save(tmp_path / "in" / "a.png", rgb(16, 16))
    r = run_cli(tmp_path / "in", tmp_path / "out", "-v", "--threads", "1", model=tiny_onnx)
    assert r.exit_code == 0
    lines = r.stderr.replace("\r", "\n").splitlines()
    detail = lines[1:lines.index(next(line for line in lines if line.startswith("  tiling"))) + 1]
    assert [line[:12] for line in detail] == ["  model     ", "  chosen    ", "  not used  ", "  not used  ",
                                              "  not used  ", "  not used  ", "  runtime   ", "  tiling    "]
    assert detail[0] == f"  model     {tiny_onnx.name} (tiny preset, {detail[0].split(', ')[1]}, exported by engan 0.1.0)"
    assert detail[1] == f"  chosen    ONNX Runtime CPU: {tiny_onnx.name} as given"
    assert detail[2].startswith("  not used  TensorRT: ") and detail[3].startswith("  not used  ONNX Runtime CUDA: ")
    assert detail[4] == "  not used  OpenVINO: ENGAN_AUTO_OPENVINO=0 is set"
    assert detail[5] == f"  not used  ONNX Runtime CPU INT8: no {tiny_onnx.stem}.int8.onnx next to {tiny_onnx.name}"
    assert detail[6].startswith("  runtime   onnxruntime ") and detail[6].endswith(", 1 threads")
    assert detail[7] == "  tiling    images above 1,000,000 pixels run as tiles, 64 px overlap"
    assert counts(r) == (1, 0, 0)


def test_help_starts_with_one_short_sentence():
    r = CliRunner().invoke(infer_main, ["--help"])
    first = r.output.splitlines()[2].strip()
    assert first == "Enhance low-light photos with EnlightenGAN, without PyTorch."
    assert not re.search(r"\bv\d+\b|20\d\d-\d\d", r.output)  # no model release or date in the help


def test_help_explains_every_option_and_default():
    r = CliRunner().invoke(infer_main, ["--help"])
    assert r.exit_code == 0
    text = " ".join(r.output.split())
    for opt in ("--model", "--backend", "--device", "--ext", "--quality", "--png-compress", "--suffix", "--skip-existing",
                "--overwrite", "--recursive", "--max-pixels", "--tile", "--threads", "--max-image-pixels",
                "--workers", "--batch", "--compare", "--html", "--fade-bright", "--fade-range", "--verbose", "--quiet"):
        assert opt in text, opt
    for default in ("[default: png]", "[default: 95;", "[default: 2;", "[default: auto]",
                    "[default: the shipped model]", "[default: 128000000;", "[default: 1;",
                    "[default: off, the model's output as it is]", "[default: 0.15 0.42]"):
        assert default in text, default
    assert "N enhanced, M failed, K skipped in T s" in text and "Exit codes: 0" in text
    assert text.startswith("Usage: engan-infer [OPTIONS] INPUT... OUTPUT_DIR")


# ----------------------------------------------------------------------------- folders, names, globs


def test_recursive_mirrors_the_tree_and_survives_a_symlink_loop(tmp_path, tiny_onnx):
    src, out = tmp_path / "in", tmp_path / "out"
    save(src / "top.png", rgb(16, 16))
    save(src / "a" / "mid.jpg", rgb(16, 16))
    save(src / "a" / "b" / "deep.png", rgb(16, 16))
    save(src / ".hidden" / "skip.png", rgb(16, 16))
    (src / "a" / "b" / "loop").symlink_to(src, target_is_directory=True)
    (src / "notes.txt").write_text("not an image")
    r = run_cli(src, out, model=tiny_onnx)  # top level only
    assert r.exit_code == 0 and counts(r) == (1, 0, 0)
    r = run_cli(src, out, "--recursive", "--skip-existing", model=tiny_onnx)
    assert r.exit_code == 0 and counts(r) == (2, 0, 1)
    got = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert got == ["a/b/deep.png", "a/mid.png", "top.png"]


def test_output_inside_the_input_tree_is_not_read_back(tmp_path, tiny_onnx):
    src = tmp_path / "in"
    save(src / "a.png", rgb(16, 16))
    r = run_cli(src, src / "enhanced", "--recursive", model=tiny_onnx)
    assert r.exit_code == 0 and counts(r) == (1, 0, 0)
    r = run_cli(src, src / "enhanced", "--recursive", "--skip-existing", model=tiny_onnx)
    assert counts(r) == (0, 0, 1)


def test_globs_odd_names_and_collisions(tmp_path, tiny_onnx):
    src, out = tmp_path / "in", tmp_path / "out"
    weird = os.fsdecode(b"caf\xe9 night.png")  # not UTF-8, with a space
    save(src / weird, rgb(16, 16))
    save(src / "with space.jpg", rgb(16, 16))
    save(src / "x.png", rgb(16, 16))
    save(src / "x.jpg", rgb(16, 16))  # -> x.png as well
    r = run_cli(str(src / "*.png"), str(src / "*.jpg"), out, "--html", model=tiny_onnx)
    assert r.exit_code == 1 and counts(r) == (3, 1, 0)
    assert failed_lines(r) == [f"FAILED {src / 'x.jpg'}: its output {out / 'x.png'} is already written for "
                               f"{src / 'x.png'}; give the inputs different names or use --ext same"]
    assert (out / weird).is_file() and (out / "with space.png").is_file()
    r = run_cli(str(src / "x.*"), tmp_path / "same", "--ext", "same", model=tiny_onnx)
    assert r.exit_code == 0 and sorted(os.listdir(tmp_path / "same")) == ["x.jpg", "x.png"]
    assert Image.open(tmp_path / "same" / "x.jpg").format == "JPEG"


def test_html_page_and_compare_images(tmp_path, tiny_onnx):
    src, out = tmp_path / "in", tmp_path / "out"
    save(src / "one.png", rgb(20, 30))
    save(src / "sub" / "two.jpg", rgb(24, 18, seed=1))
    (src / "broken.jpg").write_bytes(b"nope")
    r = run_cli(src, out, "--recursive", "--html", "--compare", "--suffix", "_e", model=tiny_onnx)
    assert r.exit_code == 1
    cmp1 = Image.open(out / "one_e_compare.png")
    assert cmp1.size == (60, 20)
    assert np.array_equal(np.asarray(cmp1)[:, :30], np.asarray(Image.open(src / "one.png")))
    assert np.array_equal(np.asarray(cmp1)[:, 30:], np.asarray(Image.open(out / "one_e.png")))
    assert Image.open(out / "sub" / "two_e_compare.png").size == (36, 24)
    page = (out / "index.html").read_text("utf-8")
    links = parse_links(page)
    assert links.rows == 4  # header + 3 inputs
    for url in links.srcs + links.hrefs:
        assert resolve(url, out).is_file(), url
    assert {resolve(u, out).resolve() for u in links.srcs} == {
        (src / "one.png").resolve(), (src / "sub" / "two.jpg").resolve(), (src / "broken.jpg").resolve(),
        (out / "one_e.png").resolve(), (out / "sub" / "two_e.png").resolve()}
    assert "onnxruntime" in page.lower() or "ort" in page
    assert "30&times;20" in page and " ms" in page and "not an image (it is a text file)" in page


# ----------------------------------------------------------------------------- pipeline


def test_workers_and_batches_give_identical_files(tmp_path, tiny_onnx):
    src = tmp_path / "in"
    for i in range(5):
        save(src / f"{i}.png", rgb(32, 48, seed=i))
    save(src / "5.png", rgb(40, 48, seed=5))
    runs = {"w0": ["--workers", "0"], "w3b4": ["--workers", "3", "--batch", "4"]}
    for name, extra in runs.items():
        r = run_cli(src, tmp_path / name, *extra, model=tiny_onnx)
        assert r.exit_code == 0 and counts(r) == (6, 0, 0), r.output
    for i in range(6):
        a = np.asarray(Image.open(tmp_path / "w0" / f"{i}.png"), np.int16)
        b = np.asarray(Image.open(tmp_path / "w3b4" / f"{i}.png"), np.int16)
        assert np.abs(a - b).max() <= 1


def test_batches_group_consecutive_same_size_images(tmp_path, fake):
    src = tmp_path / "in"
    for i, w in enumerate([32, 32, 32, 32, 32, 48, 32]):
        save(src / f"{i}.png", rgb(16, w, seed=i))
    r = run_cli(src, tmp_path / "out", "--batch", "3", "--workers", "1")
    assert r.exit_code == 0 and counts(r) == (7, 0, 0)
    assert fake.batches == [3, 2]  # 0-2, 3-4 batched; 5 (other size) and 6 (last) alone


def test_quiet_prints_only_failures(tmp_path, fake):
    src = tmp_path / "in"
    save(src / "a.png", rgb(16, 16))
    (src / "b.png").write_bytes(b"")
    r = run_cli(src, tmp_path / "out", "--quiet")
    assert r.exit_code == 1
    assert r.stdout == "" and r.stderr == f"FAILED {src / 'b.png'}: empty file (0 bytes)\n"


def test_tile_option_is_checked_before_loading(tmp_path):
    save(tmp_path / "a.png", rgb(16, 16))
    r = run_cli(tmp_path / "a.png", tmp_path / "o", "--tile", "100")
    assert r.exit_code == 2 and "Invalid value for --tile: must be a multiple of 16, got 100" in r.stderr
    r = run_cli(tmp_path / "a.png", tmp_path / "o", "--tile", "64")
    assert r.exit_code == 2 and "Invalid value for --tile: must be at least 80 (tiles overlap by 64 px), got 64" in r.stderr
    r = run_cli(tmp_path / "a.png", tmp_path / "o", "--tile", "1024")
    assert r.exit_code == 2 and ("1024x1024 tiles exceed the 1000000-pixel budget of one model call; use a "
                                 "smaller --tile or raise --max-pixels to at least 1048576") in r.stderr


def test_tiled_run_matches_untiled(tmp_path, tiny_onnx):
    src = tmp_path / "in"
    save(src / "a.png", rgb(150, 200))
    assert run_cli(src, tmp_path / "full", model=tiny_onnx).exit_code == 0
    r = run_cli(src, tmp_path / "tiled", "--tile", "96", "--max-pixels", "9216", model=tiny_onnx)
    assert r.exit_code == 0, r.output
    a = np.asarray(Image.open(tmp_path / "full" / "a.png"), np.float64)
    b = np.asarray(Image.open(tmp_path / "tiled" / "a.png"), np.float64)
    psnr = 10 * np.log10(255**2 / max(np.mean((a - b) ** 2), 1e-12))
    assert psnr >= 40, psnr


def test_interrupt_keeps_complete_outputs_and_exits_130(tmp_path, monkeypatch):
    class Interrupting(FakeEnhancer):
        calls = 0

        def enhance(self, image):
            Interrupting.calls += 1
            if Interrupting.calls == 3:
                raise KeyboardInterrupt
            return super().enhance(image)

    monkeypatch.setattr(pipeline, "load_enhancer", lambda opts: Interrupting())
    src, out = tmp_path / "in", tmp_path / "out"
    for i in range(6):
        save(src / f"{i}.png", rgb(16, 16, seed=i))
    r = run_cli(src, out, "--html")
    assert r.exit_code == 130
    assert counts(r) == (2, 0, 0)
    assert "interrupted: outputs written so far are complete; rerun with --skip-existing to finish" in r.stderr
    assert sorted(os.listdir(out)) == ["0.png", "1.png", "index.html"]


# ----------------------------------------------------------------------------- property-based

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

MODES = ["RGB", "L", "LA", "RGBA", "P", "CMYK", "I;16", "1"]


@pytest.fixture(scope="module")
def shared_enhancer(tiny_onnx):
    from engan.runtime import Enhancer

    return Enhancer.load(tiny_onnx)


@settings(max_examples=int(os.environ.get("ENGAN_HYPOTHESIS_EXAMPLES", 25)), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(h=st.integers(1, 70), w=st.integers(1, 70), mode=st.sampled_from(MODES),
       fmt=st.sampled_from(["png", "jpg", "webp", "bmp", "tiff"]), cut=st.one_of(st.none(), st.floats(0, 0.95)),
       ext=st.sampled_from(["png", "jpg", "webp", "same"]), workers=st.integers(0, 3))
def test_any_image_is_enhanced_or_fails_cleanly(tmp_path_factory, monkeypatch, shared_enhancer,
                                                 h, w, mode, fmt, cut, ext, workers):
    monkeypatch.setattr(pipeline, "load_enhancer", lambda opts: shared_enhancer)
    base = tmp_path_factory.mktemp("prop")
    src, out = base / "in", base / "out"
    im = rgb(h, w).convert(mode) if mode != "I;16" else Image.fromarray(
        (np.asarray(rgb(h, w).convert("L"), np.uint16) * 257))
    try:
        path = save(src / f"x.{fmt}", im)
    except (OSError, KeyError):  # a mode this format cannot store: its closest colour mode
        path = save(src / f"x.{fmt}", im.convert("RGBA" if "A" in mode and fmt != "jpg" else "RGB"))
    if cut is not None:
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * cut)])
    r = run_cli(src, out, "--ext", ext, "--workers", str(workers))
    assert "Traceback" not in r.output
    assert r.exit_code in (0, 1), r.output
    written = sorted(os.listdir(out))
    if r.exit_code == 0:
        assert counts(r) == (1, 0, 0) and len(written) == 1
        assert Image.open(out / written[0]).size == (w, h)
    else:
        assert counts(r) == (0, 1, 0) and written == [] and len(failed_lines(r)) == 1
        assert cut is not None  # only corrupted files fail


# ----------------------------------------------------------------------------- --fade-bright


def test_fade_bright_leaves_well_exposed_photos_and_says_so_when_off(tmp_path, tiny_onnx):
    from engan.runtime import Enhancer

    src = tmp_path / "in"
    save(src / "dark.png", Image.fromarray(make_image(40, 56, seed=1, dark=0.2)))  # mean luma ~0.12
    save(src / "bright.png", Image.fromarray(make_image(40, 56, seed=2, dark=0.95)))  # mean luma ~0.5
    plain = run_cli(src, tmp_path / "plain", model=tiny_onnx)
    assert plain.exit_code == 0 and counts(plain) == (2, 0, 0)
    warned = [line for line in plain.stderr.splitlines() if "already well exposed" in line]
    assert len(warned) == 1 and "bright.png" in warned[0] and "--fade-bright leaves them as they are" in warned[0]
    faded = run_cli(src, tmp_path / "faded", "--fade-bright", "--html", model=tiny_onnx)
    assert faded.exit_code == 0 and "already well exposed" not in faded.stderr
    assert faded.stderr.splitlines()[0].endswith(" · fade-bright 0.15-0.42")  # the first line says it is on
    # the bright photo comes back as it went in; the dark one gets the model's output unchanged
    assert np.array_equal(np.asarray(Image.open(tmp_path / "faded" / "bright.png")), np.asarray(Image.open(src / "bright.png")))
    assert not np.array_equal(np.asarray(Image.open(tmp_path / "plain" / "bright.png")), np.asarray(Image.open(src / "bright.png")))
    expect = np.asarray(Enhancer.load(tiny_onnx).enhance(Image.open(src / "dark.png")))
    assert np.array_equal(np.asarray(Image.open(tmp_path / "faded" / "dark.png")), expect)
    assert "[0.15, 0.42]" in (tmp_path / "faded" / "index.html").read_text()  # the page says it was on
    r = run_cli(src, tmp_path / "x", "--fade-range", "0.5", "0.2", model=tiny_onnx)
    assert r.exit_code == 2 and "fade range must satisfy 0 <= lo < hi <= 1" in r.output and not (tmp_path / "x").exists()


@pytest.mark.parametrize("argv,inputs,address", [
    (["--ray", "in", "out"], ("in",), "local"),                       # --ray before INPUT: the word is an INPUT
    (["in", "out", "--ray"], ("in",), "local"),
    (["--ray", "local", "in", "out"], ("in",), "local"),
    (["--ray", "auto", "a.png", "b.png", "out"], ("a.png", "b.png"), "auto"),
    (["--ray", "ray://head:10001", "in", "out"], ("in",), "ray://head:10001"),
    (["--ray", "10.0.0.5:6379", "in", "out"], ("in",), "10.0.0.5:6379"),
    (["--ray", "s3://bucket/night/", "out"], ("s3://bucket/night/",), "local"),  # a pyarrow URI is an INPUT
    (["in", "out"], ("in",), None),
])
def test_ray_takes_an_optional_address_and_never_swallows_an_input(monkeypatch, argv, inputs, address):
    from engan.runtime.cli import main as cli_main

    seen = {}

    def fake_run_ray(opts, addr):
        seen.update(inputs=opts.inputs, address=addr)
        raise SystemExit(0)

    def fake_run(opts):
        seen.update(inputs=opts.inputs, address=None)
        raise SystemExit(0)

    monkeypatch.setattr(cli_main, "run", fake_run)
    import engan.runtime.ray as ray_mod

    monkeypatch.setattr(ray_mod, "run_ray", fake_run_ray)
    CliRunner().invoke(infer_main, argv)
    assert seen == {"inputs": inputs, "address": address}


def test_ray_alone_without_input_is_a_usage_error():
    r = CliRunner().invoke(infer_main, ["out", "--ray"])
    assert r.exit_code == 2 and "Missing argument 'INPUT...'" in r.output
