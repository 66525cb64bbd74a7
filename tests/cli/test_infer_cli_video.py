"""`engan-infer` with video files: discovery, naming, refusals, failures, --html posters, PyAV missing, SIGTERM.

Clips are generated with :mod:`engan.runtime.video.synth` (48x80, a few dozen frames). Most
tests inject :class:`Brighten` (2x, photos and float video frames alike); the mixed-folder
test runs the real runtime on the tiny ONNX fixture. Skipped when PyAV is not installed.
"""
from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

av = pytest.importorskip("av", reason="PyAV not installed: pip install 'engan[video]' (make setup installs it)")

from engan.runtime.atomic import TEMP_SUFFIX  # noqa: E402
from engan.runtime.cli import pipeline  # noqa: E402
from engan.runtime.cli.main import main as infer_main  # noqa: E402
from engan.runtime.video import probe_video  # noqa: E402
from engan.runtime.video.frames import iter_frames  # noqa: E402
from engan.runtime.video.synth import static_dark_frames, write_clip  # noqa: E402
from tests.helpers import (  # noqa: E402
    REPO, SUMMARY, counts, failed_lines, make_image, parse_links, resolve, run_cli,
)

H, W, FPS, FRAMES = 48, 80, 25, 20
EXISTS = ("; pass --skip-existing to keep them (and enhance only the rest) or --overwrite to replace them")


class Brighten:
    """2x brighter: PIL photos (8-bit modes) and float32 HxWx3 video frames; counts calls."""

    info = {"backend": "fake", "device": "cpu", "precision": "fp32", "model": "fake.onnx", "reason": "test"}

    def __init__(self) -> None:
        self.calls = 0

    def enhance(self, image):
        self.calls += 1
        if isinstance(image, np.ndarray):
            return np.minimum(image * 2, 1).astype(image.dtype)
        return image.point(lambda v: min(255, v * 2))

    def enhance_batch(self, images):
        return [self.enhance(im) for im in images]


@pytest.fixture
def fake(monkeypatch):
    enh = Brighten()
    monkeypatch.setattr(pipeline, "load_enhancer", lambda opts: enh)
    return enh


@pytest.fixture(scope="session")
def clip(tmp_path_factory) -> Path:
    """A dark 20-frame clip with an audio track."""
    return write_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", static_dark_frames(FRAMES, H, W), fps=FPS,
                      audio=True)


def photo(path: Path, seed: int = 0, fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(make_image(40, 56, seed=seed)).save(path, format=fmt)
    return path


def copy(src: Path, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copyfile(src, dst))


def names(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


# ----------------------------------------------------------------------------- a mixed run, the real runtime


def test_mixed_folder_photos_a_video_and_a_corrupt_one(tmp_path, tiny_onnx, clip):
    src, out = tmp_path / "night", tmp_path / "out"
    photo(src / "a.png")
    photo(src / "b.jpg", seed=1)
    copy(clip, src / "clip.mp4")
    (src / "broken.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 6000, dtype=np.uint8).tobytes())
    named = copy(clip, tmp_path / "named.mov")  # a video named on the command line, beside the folder
    r = run_cli(named, src, out, "--model", tiny_onnx, "--preset", "ultrafast")
    assert r.exit_code == 1, r.output
    assert counts(r) == (4, 1, 0)
    (failed,) = failed_lines(r)
    assert failed.startswith(f"FAILED {src / 'broken.mp4'}: not a readable video: ")
    assert names(out) == ["a.png", "b.png", "clip.mp4", "named.mp4"]
    for name in ("clip.mp4", "named.mp4"):
        assert probe_video(out / name).frames == probe_video(clip).frames == FRAMES
        assert len(list(iter_frames(out / name))) == FRAMES
    lines = r.stderr.splitlines()
    assert lines[0] == f"tiny-test · FP32 · ONNX Runtime CPU · 2 image(s) + 3 video(s) -> {out}"
    said = [line[line.index(str(named)):] for line in lines if f"{named} -> " in line]
    assert said and re.fullmatch(rf"{re.escape(str(named))} -> {re.escape(str(out / 'named.mp4'))}: 20 frames, "
                                 r"25 fps, libx264 yuv420p, 1 audio stream\(s\) copied, \d+\.\d\d frames/s", said[0])
    assert Image.open(out / "a.png").size == (56, 40)


def test_enhancer_enhance_video_is_the_video_api(tmp_path, tiny_onnx, clip):
    from engan.runtime import Enhancer

    res = Enhancer.load(tiny_onnx).enhance_video(clip, tmp_path / "o.mkv", preset="ultrafast")
    assert res.dst == tmp_path / "o.mkv" and res.frames == FRAMES and len(list(iter_frames(res.dst))) == FRAMES


# ----------------------------------------------------------------------------- names and refusals


def test_video_ext_suffix_recursive_and_hidden(tmp_path, fake, clip):
    src, out = tmp_path / "in", tmp_path / "out"
    copy(clip, src / "clip.mp4")
    copy(clip, src / "sub" / "deep.mov")
    copy(clip, src / ".hidden.mp4")
    copy(clip, src / ".cache" / "c.mp4")
    r = run_cli(src, out, "-r", "--video-ext", "mkv", "--suffix", "_enh", "--preset", "ultrafast")
    assert r.exit_code == 0, r.output
    assert counts(r) == (2, 0, 0)
    assert names(out) == ["clip_enh.mkv", "sub/deep_enh.mkv"]
    assert probe_video(out / "clip_enh.mkv").container.startswith("matroska")
    r = run_cli(src / "sub" / "deep.mov", tmp_path / "same", "--video-ext", "same", "--preset", "ultrafast")
    assert r.exit_code == 0, r.output
    assert names(tmp_path / "same") == ["deep.mov"] and len(list(iter_frames(tmp_path / "same" / "deep.mov"))) == FRAMES


def test_skip_existing_keeps_the_video_and_default_refuses(tmp_path, fake, clip):
    src, out = tmp_path / "in", tmp_path / "out"
    copy(clip, src / "clip.mp4")
    photo(src / "a.png")
    assert run_cli(src, out, "--preset", "ultrafast").exit_code == 0
    before = (out / "clip.mp4").stat().st_mtime_ns
    calls = fake.calls
    r = run_cli(src, out, "--skip-existing")
    assert r.exit_code == 0, r.output
    assert counts(r) == (0, 0, 2) and fake.calls == calls
    assert (out / "clip.mp4").stat().st_mtime_ns == before
    (out / "a.png").unlink()
    r = run_cli(src, out)
    assert r.exit_code == 2
    assert r.stderr == f"Error: 1 output file(s) already exist, e.g. '{out / 'clip.mp4'}'{EXISTS}\n"
    assert not (out / "a.png").exists()  # refused before anything ran
    r = run_cli(src, out, "--overwrite", "--preset", "ultrafast")
    assert r.exit_code == 0 and counts(r) == (2, 0, 0)
    assert (out / "clip.mp4").stat().st_mtime_ns != before and probe_video(out / "clip.mp4").frames == FRAMES


def test_collisions_and_writing_over_an_input(tmp_path, fake, clip):
    src, out = tmp_path / "in", tmp_path / "out"
    copy(clip, src / "clip.mov")
    copy(clip, src / "clip.mp4")
    photo(src / "clip.png")  # a photo beside them: clip.png, no clash with clip.mp4
    r = run_cli(src, out, "--preset", "ultrafast")
    assert r.exit_code == 1
    assert failed_lines(r) == [f"FAILED {src / 'clip.mp4'}: its output {out / 'clip.mp4'} is already written for "
                               f"{src / 'clip.mov'}; give the inputs different names or use --video-ext same"]
    assert counts(r) == (2, 1, 0) and names(out) == ["clip.mp4", "clip.png"]
    r = run_cli(src, tmp_path / "quiet", "-q", "--preset", "ultrafast")
    assert r.exit_code == 1 and r.stdout == ""  # -q: only the FAILED line, no video line, bar or summary
    assert r.stderr == (f"FAILED {src / 'clip.mp4'}: its output {tmp_path / 'quiet' / 'clip.mp4'} is already "
                        f"written for {src / 'clip.mov'}; give the inputs different names or use --video-ext same\n")
    r = run_cli(src, tmp_path / "apart", "--video-ext", "same", "--preset", "ultrafast")  # the advice works
    assert r.exit_code == 0 and names(tmp_path / "apart") == ["clip.mov", "clip.mp4", "clip.png"]
    r = run_cli(src / "clip.mp4", src)
    assert r.exit_code == 2
    assert r.stderr == (f"Error: refusing to write the output '{src / 'clip.mp4'}' over the input "
                        f"'{src / 'clip.mp4'}': choose another OUTPUT_DIR, a --suffix or another --ext\n")


# ----------------------------------------------------------------------------- the page, options, --ray


def test_html_shows_poster_frames_and_links_both_videos(tmp_path, fake, clip):
    src, out = tmp_path / "in", tmp_path / "out"
    copy(clip, src / "clip.mp4")
    photo(src / "a.png")
    r = run_cli(src, out, "--html", "--compare", "--preset", "ultrafast")
    assert r.exit_code == 0, r.output
    note = "note: --compare writes side-by-side images of photos only; videos are written without one"
    assert r.stderr.count(note) == 1
    assert names(out) == [".posters/clip.mp4.after.png", ".posters/clip.mp4.before.png", "a.png", "a_compare.png",
                          "clip.mp4", "index.html"]
    page = (out / "index.html").read_text("utf-8")
    links = parse_links(page)
    assert links.srcs == ["../in/a.png", "a.png", ".posters/clip.mp4.before.png", ".posters/clip.mp4.after.png"]
    assert {"../in/clip.mp4", "clip.mp4"} <= set(links.hrefs)
    for url in links.srcs + links.hrefs:
        assert resolve(url, out).is_file(), url
    before, after = (np.asarray(Image.open(out / ".posters" / f"clip.mp4.{k}.png")) for k in ("before", "after"))
    assert before.shape == after.shape == (H, W, 3) and after.mean() > 1.5 * before.mean()
    assert f"{FRAMES} frames at 25 fps" in page and "--video-ext mp4, --crf 18, --preset ultrafast" in page


def test_help_lists_the_video_options():
    r = CliRunner().invoke(infer_main, ["--help"])
    text = " ".join(r.output.split())
    for said in ("--video-ext [mp4|mkv|same]", "[default: mp4]", "--crf 0-51", "[default: 18; 0<=x<=51]",
                 "--preset NAME", "ultrafast, superfast,", "[default: medium]", "engan-infer clip.mp4 night/ out/",
                 "INPUT... are image or video files"):
        assert said in text, said
    assert not re.search(r"\bv\d+\b|20\d\d-\d\d", r.output)


def test_bad_video_options_and_ray_are_usage_errors(tmp_path, clip):
    copy(clip, tmp_path / "in" / "clip.mp4")
    assert run_cli(tmp_path / "in", tmp_path / "out", "--crf", "52").exit_code == 2
    assert run_cli(tmp_path / "in", tmp_path / "out", "--preset", "warp").exit_code == 2
    r = run_cli(tmp_path / "in", tmp_path / "out", "--ray")
    assert r.exit_code == 2
    assert r.stderr == (f"Error: 1 video file(s) among the inputs, e.g. '{tmp_path / 'in' / 'clip.mp4'}': videos run "
                        "without --ray; enhance them in a run without --ray, or leave them out of INPUT\n")
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- PyAV missing, SIGTERM (subprocesses)

_FAKE = """
import sys, time
import numpy as np
from engan.runtime.cli import pipeline

class Fake:
    info = {"backend": "fake", "device": "cpu", "precision": "fp32", "model": "fake.onnx", "reason": "test"}
    def enhance(self, x):
        time.sleep(DELAY)
        if isinstance(x, np.ndarray):
            return np.minimum(x * 2, 1).astype(x.dtype)
        return x.point(lambda v: min(255, v * 2))
    def enhance_batch(self, xs):
        return [self.enhance(x) for x in xs]

pipeline.load_enhancer = lambda opts: Fake()
from engan.runtime.entry import main

def run(*argv):
    try:
        main(list(argv))
    except SystemExit as e:
        return e.code
"""

_NO_PYAV = _FAKE.replace("DELAY", "0") + """
import json
photos, video, out = sys.argv[1:4]
first = run(photos, out + "/1")
loaded = "av" in sys.modules
import engan.runtime, engan.runtime.enhancer, engan.runtime.video
loaded = loaded or "av" in sys.modules
sys.modules["av"] = None  # `import av` now fails, as without the video extra
print("RESULT", json.dumps({"photos": first, "av_imported": loaded}), flush=True)
print("RESULT", json.dumps({"video": run(video, photos, out + "/2"), "photos": run(photos, out + "/3")}), flush=True)
"""


def test_without_pyav_a_video_is_a_usage_error_and_photos_still_run(tmp_path, clip):
    photo(tmp_path / "photos" / "a.png")
    video = copy(clip, tmp_path / "clip.mp4")
    proc = subprocess.run([sys.executable, "-c", _NO_PYAV, str(tmp_path / "photos"), str(video), str(tmp_path / "o")],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    first, second = (json.loads(line[7:]) for line in proc.stdout.splitlines() if line.startswith("RESULT "))
    assert first == {"photos": 0, "av_imported": False}  # a photo-only run never imports av
    assert second == {"video": 2, "photos": 0}
    hint = [line for line in proc.stderr.splitlines() if line.startswith("Error: ")]
    assert len(hint) == 1
    assert hint[0].startswith(f"Error: 1 video file(s) among the inputs, e.g. '{video}': video files need PyAV")
    assert hint[0].endswith("install it with: pip install 'engan[video]'; or leave the videos out of INPUT")
    assert not (tmp_path / "o" / "2").exists()  # refused before anything ran
    assert names(tmp_path / "o") == ["1/a.png", "3/a.png"]


_SLOW = _FAKE.replace("DELAY", "0.02") + """
sys.exit(run(*sys.argv[1:]))
"""


def test_sigterm_during_a_video_stops_cleanly_with_143(tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    photo(src / "a.png")
    write_clip(src / "long.mp4", static_dark_frames(400, H, W, seed=2), fps=FPS,
               options={"preset": "ultrafast", "qp": "20"})
    proc = subprocess.Popen([sys.executable, "-c", _SLOW, str(src), str(out), "--preset", "ultrafast"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        deadline = time.monotonic() + 60
        while not any(p.name.endswith(TEMP_SUFFIX) for p in out.glob(".long.mp4*")):  # the video is being written
            assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 143, stderr
    assert stderr.rstrip().endswith("interrupted by SIGTERM: outputs written so far are complete; rerun with "
                                    "--skip-existing to finish")
    assert SUMMARY.fullmatch(stdout.strip()) and SUMMARY.search(stdout).groups() == ("1", "0", "0")
    assert "FAILED" not in stderr
    assert names(out) == ["a.png"]  # no partial video, no temp file


def test_a_broken_video_with_control_characters_in_its_name_is_one_escaped_line(tmp_path, fake, clip):
    src, out = tmp_path / "in", tmp_path / "out"
    copy(clip, src / "clip.mp4")
    (src / "bad\x1b[2J\n.mp4").write_bytes(b"\0" * 4000)
    r = run_cli(src, out, "--preset", "ultrafast", "--html")
    assert r.exit_code == 1 and counts(r) == (1, 1, 0)
    assert "\x1b" not in r.output
    (line,) = failed_lines(r)
    assert line.startswith(f"FAILED {src}/bad\\x1b[2J\\n.mp4: not a readable video: ")
    page = (out / "index.html").read_text("utf-8")
    assert "\x1b" not in page and "bad\\x1b[2J\\n.mp4" in page
