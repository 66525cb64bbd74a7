"""Hardening, round 2: `engan-infer` and the runtime API under a second adversarial pass.

Each section is one class of problem: garbage ONNX siblings, runs sharing a folder,
``index.html``, rerun cost, control characters in names, signals, API edges, advice,
symlinks, formats. Signal and two-process tests run the real entry point in
subprocesses (``python -m engan.runtime.entry``) on small generated images.
"""
from __future__ import annotations

import ast
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engan.runtime import entry
from engan.runtime.cli import pipeline
from engan.runtime import imageio as iio
from engan.runtime.meta import MAX_ONNX_FIELDS, MAX_ONNX_READ, read_onnx_metadata
from engan.runtime.select import find_int8
from tests.helpers import REPO, SUMMARY, FakeEnhancer, counts, failed_lines, make_image, rgb, run_cli, save

ENTRY = [sys.executable, "-m", "engan.runtime.entry"]
HAS_PROC = Path("/proc/self/status").is_file()


def noise(h: int, w: int, seed: int = 0) -> Image.Image:
    """A dark noisy image: slow to compress at --png-compress 9, so runs last long enough to stop."""
    return Image.fromarray((np.random.default_rng(seed).random((h, w, 3)) * 90).astype(np.uint8))


def visible(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


def hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def wait_for(cond, timeout: float = 60.0, step: float = 0.005) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return False


# ----------------------------------------------------------------------------- 1. garbage ONNX siblings


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


MALFORMED = {  # name -> (bytes, exact detail); None: any of the reader's details
    "field number 0": (b"\x00" * 4096, "not an ONNX model: invalid protobuf field number 0 at byte 0"),
    "group wire type": (b"\x3b\x00", "not an ONNX model: invalid wire type 3 for field 7 at byte 0"),
    "known field, wrong type": (b"\x08\x08\x70\x01", "not an ONNX model: invalid wire type 0 for field 14 at byte 2"),
    "length past the end": (b"\x08\x08\x3a" + _varint(2**40),
                            "truncated: protobuf field 7 at byte 2 needs 1099511627776 bytes, 0 are left"),
    "fixed64 past the end": (b"\x08\x08\x49\x00", "truncated: the file ends inside a protobuf field"),
    "endless varint": (b"\x08" + b"\xff" * 20, "not an ONNX model: a protobuf varint runs over 10 bytes"),
    "too many fields": (b"\x08\x00" * (MAX_ONNX_FIELDS + 5),
                        f"not an ONNX model: over {MAX_ONNX_FIELDS} top-level protobuf fields"),
    "no graph": (b"\x08\x08\x12\x02hi", "not an ONNX model: no graph"),
    "huge metadata": (b"\x08\x08\x72" + _varint(MAX_ONNX_READ + 10) + b"\x0a" * (MAX_ONNX_READ + 10),
                      f"not an engan model: over {MAX_ONNX_READ >> 20} MB of metadata and field headers"),
    "bad metadata entry": (b"\x08\x08\x72\x02\x08\x01", "not an ONNX model: malformed metadata entry"),
    "random bytes": (np.random.default_rng(7).bytes(1 << 20), None),
}
DETAIL = re.compile(r"^(not an ONNX model: |not an engan model: |truncated: )")


@pytest.mark.parametrize("kind", list(MALFORMED))
def test_malformed_onnx_is_refused_at_once_by_the_bounded_reader(tmp_path, kind):
    data, detail = MALFORMED[kind]
    bad = tmp_path / "m.int8.onnx"
    bad.write_bytes(data)
    t0 = time.perf_counter()
    with pytest.raises(ValueError) as err:
        read_onnx_metadata(bad)
    assert time.perf_counter() - t0 < 2.0
    if detail is None:
        assert DETAIL.match(err.value.detail), err.value.detail
    else:
        assert err.value.detail == detail and str(err.value) == f"m.int8.onnx: {detail}"


def test_reader_matches_onnx_stops_at_the_keys_it_needs_and_refuses_torn_files(tiny_onnx, tmp_path):
    import onnx

    props = {p.key: p.value for p in onnx.load(str(tiny_onnx)).metadata_props}
    assert read_onnx_metadata(tiny_onnx) == props
    first = read_onnx_metadata(tiny_onnx, keys=["engan.version"])
    assert first["engan.version"] == props["engan.version"] and len(first) < len(props)
    torn = tmp_path / "torn.onnx"
    torn.write_bytes(tiny_onnx.read_bytes()[:-7])
    with pytest.raises(ValueError, match=r"^torn\.onnx: truncated: "):
        read_onnx_metadata(torn)


def test_a_2gb_zero_filled_int8_sibling_is_skipped_in_well_under_a_second(tmp_path, tiny_onnx):
    """The reproduction of the report: every --backend auto run stalled on it (2 GB: > 90 s, 2.15 GB RSS)."""
    model = Path(shutil.copy(tiny_onnx, tmp_path / "m.onnx"))
    with open(tmp_path / "m.int8.onnx", "wb") as fh:
        fh.truncate(2 << 30)  # sparse: nothing is written
    code = ("import sys, time; from pathlib import Path; from engan.runtime.select import find_int8; "
            "t = time.perf_counter(); r = find_int8(Path(sys.argv[1])); print(time.perf_counter() - t); print(r[1])")
    res = subprocess.run([sys.executable, "-c", code, str(model)], capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    seconds, reason = res.stdout.splitlines()
    assert float(seconds) < 1.0
    assert reason == "m.int8.onnx unreadable (not an ONNX model: invalid protobuf field number 0 at byte 0)"
    save(tmp_path / "in" / "a.png", rgb(16, 16))
    r = run_cli(tmp_path / "in", tmp_path / "out", "--device", "cpu", "--verbose", model=model)
    assert r.exit_code == 0 and counts(r) == (1, 0, 0)
    assert ("  not used  ONNX Runtime CPU INT8: m.int8.onnx unreadable (not an ONNX model: invalid protobuf field "
            "number 0 at byte 0)\n") in r.stderr


def test_an_unreadable_fp32_file_is_named_as_the_unreadable_one(tmp_path, tiny_onnx):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"\x00" * 100)
    shutil.copy(tiny_onnx, tmp_path / "m.int8.onnx")
    assert find_int8(model) == (None, "m.onnx unreadable (not an ONNX model: invalid protobuf field number 0 "
                                      "at byte 0)")


# ----------------------------------------------------------------------------- 2. runs sharing a folder

SLOW_WRITER = r"""
import sys
from pathlib import Path
from engan.runtime.atomic import atomic_open
with atomic_open(Path(sys.argv[1])) as f:
    f.write(b"first half, ")
    print("writing", flush=True)
    sys.stdin.readline()  # hold the temp file open until told to finish
    f.write(b"second half")
print("done", flush=True)
"""


def test_a_run_never_deletes_the_temp_file_another_live_process_is_writing(tmp_path, fake):
    """Deterministic form of "a second run breaks the first": the first writer is held mid-write."""
    src, out = tmp_path / "in", tmp_path / "out"
    for n in "ab":
        save(src / f"{n}.png", rgb(16, 16))
    out.mkdir()
    writer = subprocess.Popen([sys.executable, "-c", SLOW_WRITER, str(out / "a.png")], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline() == "writing\n"
        temp = hidden(out)
        assert len(temp) == 1 and temp[0].startswith(f".a.png.{writer.pid}.") and temp[0].endswith(".tmp")
        r = run_cli(src, out, "--overwrite")
        assert r.exit_code == 0 and counts(r) == (2, 0, 0) and "temp file" not in r.stderr
        assert hidden(out) == temp  # still there: its writer is alive
        stdout, stderr = writer.communicate("go\n", timeout=30)
    finally:
        writer.kill() if writer.poll() is None else None
    assert writer.returncode == 0 and stdout == "done\n", stderr
    assert (out / "a.png").read_bytes() == b"first half, second half" and hidden(out) == []


def test_two_engan_infer_runs_on_one_folder_both_finish_with_every_file_complete(tmp_path, tiny_onnx):
    src, out = tmp_path / "in", tmp_path / "out"
    n = 48
    for i in range(n):
        save(src / f"{i:02d}.png", noise(128, 192, seed=i))
    cmd = ENTRY + [str(src), str(out), "--model", str(tiny_onnx), "--png-compress", "9", "--overwrite", "-q"]
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert wait_for(lambda: out.is_dir() and len(visible(out)) >= 1)
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    out1, err1 = first.communicate(timeout=120)
    assert (first.returncode, second.returncode) == (0, 0), err1 + second.stderr
    assert err1 == second.stderr == "" and out1 == second.stdout == ""
    assert visible(out) == [f"{i:02d}.png" for i in range(n)] and hidden(out) == []
    for i in range(n):
        assert iio.read_image(out / f"{i:02d}.png").size == (192, 128)


@pytest.mark.skipif(not HAS_PROC, reason="process start times come from /proc")
def test_stale_temp_files_are_removed_only_when_their_writer_is_gone(tmp_path):
    from engan.runtime.atomic import remove_stale_temp_files

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    now = time.time()
    files = {  # name -> (mtime, removed?)
        f".a.png.{dead.pid}.k3j2h1g0.tmp": (now, True),      # its writer exited
        f".b.png.{os.getppid()}.k3j2h1g0.tmp": (now, False),  # a live writer (pytest's parent)
        f".c.png.{os.getppid()}.k3j2h1g0.tmp": (1000.0, True),  # that pid started after the file: reused
        ".d.png.k3j2h1g0.tmp": (now - 60, True),            # older pid-less form, older than the run
        ".e.png.k3j2h1g0.tmp": (now + 60, False),           # ... written after the run started
        f".other.png.{dead.pid}.k3j2h1g0.tmp": (now, False),  # not an output of this run
    }
    for name, (mtime, _) in files.items():
        (tmp_path / name).write_bytes(b"x")
        os.utime(tmp_path / name, (mtime, mtime))
    targets = [tmp_path / n for n in ("a.png", "b.png", "c.png", "d.png", "e.png")]
    assert remove_stale_temp_files(targets, started=now) == 3
    assert hidden(tmp_path) == sorted(n for n, (_, gone) in files.items() if not gone)


# ----------------------------------------------------------------------------- 3 and 6. index.html


def test_html_follows_the_rule_for_existing_outputs(tmp_path, fake):
    src, out = tmp_path / "in", tmp_path / "out"
    save(src / "a.png", rgb(16, 16))
    out.mkdir()
    (out / "index.html").write_text("my own page")
    r = run_cli(src, out, "--html")
    assert r.exit_code == 2 and (f"Error: 1 output file(s) already exist, e.g. '{out / 'index.html'}'; pass "
                                 "--skip-existing to keep them (and enhance only the rest) or --overwrite to "
                                 "replace them") in r.stderr
    assert visible(out) == ["index.html"]
    r = run_cli(src, out, "--html", "--skip-existing")
    assert r.exit_code == 0 and counts(r) == (1, 0, 0)
    assert f"kept the existing {out / 'index.html'} (--skip-existing); pass --overwrite to replace it" in r.stderr
    assert (out / "index.html").read_text() == "my own page"
    r = run_cli(src, out, "--html", "--overwrite")
    assert r.exit_code == 0 and (out / "index.html").read_text().startswith("<!DOCTYPE html>")


@pytest.mark.parametrize("problem", ["a folder named index.html", "disk full"])
def test_index_html_that_cannot_be_written_is_one_failed_line(tmp_path, fake, monkeypatch, problem):
    src, out = tmp_path / "in", tmp_path / "out"
    save(src / "a.png", rgb(16, 16))
    (out / "index.html" if problem.startswith("a folder") else out).mkdir(parents=True)
    if problem == "disk full":
        import errno

        real = iio.encode.atomic_open

        def full(path, mode="wb"):
            if Path(path).name == "index.html":
                raise OSError(errno.ENOSPC, "No space left on device")
            return real(path, mode)

        monkeypatch.setattr(iio.encode, "atomic_open", full)
    r = run_cli(src, out, "--html", "--overwrite")
    why = "is a directory" if problem.startswith("a folder") else "no space left on device"
    assert r.exit_code == 1 and counts(r) == (1, 0, 0)
    assert failed_lines(r) == [f"FAILED {out / 'index.html'}: could not write index.html: {why}"]
    assert "Traceback" not in r.output and hidden(out) == []


# ----------------------------------------------------------------------------- 4. reruns stay linear


def test_a_rerun_lists_each_output_folder_once(tmp_path, fake, monkeypatch):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    (out / "sub").mkdir(parents=True)
    im = Image.new("RGB", (4, 4))
    for i in range(600):
        im.save(src / f"{i:04d}.png")
        (out / f"{i:04d}.png").write_bytes(b"x")
    listed: list[str] = []
    for name in ("listdir", "scandir"):
        real = getattr(os, name)

        def counting(path=".", _real=real):
            listed.append(os.fspath(path))
            return _real(path)

        monkeypatch.setattr(os, name, counting)
    r = run_cli(src, out, "--skip-existing")
    assert r.exit_code == 0 and counts(r) == (0, 0, 600)
    assert listed.count(os.fspath(out)) == 1  # before: once per output, 5,000 outputs took 8.8 s


# ----------------------------------------------------------------------------- 5. control characters in names

CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def test_control_characters_in_names_are_shown_as_escapes_everywhere(tmp_path, tiny_onnx):
    src, out = tmp_path / "in", tmp_path / "out"
    title = "e\x1b]0;PWNED\x07.png"               # would retitle the terminal
    forged = "n\nFAILED fake.png: forged\n9 enhanced, 0 failed, 0 skipped in 0.1 s\n.png"
    bidi = "gpj.\u202eevil.png"
    for i, name in enumerate((title, forged, bidi)):
        save(src / name, rgb(16, 16, seed=i))
    (src / "bad\x1b[2J.png").write_bytes(b"\x89PNG\r\n\x1a\n-cut")
    gif = [Image.fromarray(make_image(16, 16, seed=s)).convert("P") for s in range(2)]
    gif[0].save(src / "anim\r.gif", save_all=True, append_images=gif[1:])
    model = Path(shutil.copy(tiny_onnx, tmp_path / "m\x1b[31m.onnx"))
    r = run_cli(src, out, "--html", "--backend", "ort", model=model)
    assert r.exit_code == 1 and counts(r) == (4, 1, 0)
    text = r.stdout + r.stderr.replace("\r", "")  # tqdm's own carriage returns
    assert not CONTROL.search(text), repr(text)
    assert failed_lines(r) == [f"FAILED {src}/bad\\x1b[2J.png: truncated (the image data ends early)"]
    assert len(SUMMARY.findall(r.stdout)) == 1
    assert "model=m\\x1b[31m.onnx" not in r.stderr  # the first line names the model by its metadata
    verbose = run_cli(src, tmp_path / "out2", "--verbose", "--backend", "ort", model=model)
    assert "\n  model     m\\x1b[31m.onnx (tiny preset, " in verbose.stderr
    assert not CONTROL.search(verbose.stderr.replace("\r", ""))
    assert f"warning: {src}/anim\\r.gif: animated GIF (2 frames): only the first frame is enhanced" in r.stderr
    page = (out / "index.html").read_text("utf-8")
    assert not CONTROL.search(page.replace("\n", "")) and "\n" not in "".join(re.findall(r"<b>[^<]*</b>", page))
    assert "<b>e\\x1b]0;PWNED\\x07.png</b>" in page and "gpj.\\u202eevil.png" in page
    assert str(tmp_path) not in href_free(page) and "<dd>m\\x1b[31m.onnx</dd>" in page


def href_free(page: str) -> str:
    """The page without its links (relative links may climb to the inputs)."""
    return re.sub(r'(href|src)="[^"]*"', "", page)


def test_printable_escapes_controls_and_keeps_letters():
    from engan.runtime.cli.console import display_path, printable

    assert printable("a\x1b]0;x\x07\n\r\t\x7f\x85\u2028\u202e b café") == \
        "a\\x1b]0;x\\x07\\n\\r\\t\\x7f\\x85\\u2028\\u202e b café"
    assert display_path(os.fsdecode(b"caf\xe9\n.png")) == "caf\\xe9\\n.png"


# ----------------------------------------------------------------------------- 7 and 8. signals


def test_sigterm_mid_run_stops_cleanly_with_the_summary_and_exit_143(tmp_path, tiny_onnx):
    src, out = tmp_path / "in", tmp_path / "out"
    n = 80  # about 1.5 s of work after the first file on a 2-core CPU: the signal lands mid-run
    for i in range(n):
        save(src / f"{i:02d}.png", noise(160, 224, seed=i))
    cmd = ENTRY + [str(src), str(out), "--model", str(tiny_onnx), "--png-compress", "9", "--html"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert wait_for(lambda: out.is_dir() and len(visible(out)) >= 1)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    done = [f for f in visible(out) if f != "index.html"]
    assert 1 <= len(done) < n and "index.html" in visible(out)
    assert SUMMARY.fullmatch(stdout.strip()) and stdout.startswith(f"{len(done)} enhanced, 0 failed, 0 skipped in ")
    assert stderr.rstrip().endswith("interrupted by SIGTERM: outputs written so far are complete; rerun with "
                                    "--skip-existing to finish")
    assert "Traceback" not in stderr and hidden(out) == []  # no .NN.png.*.tmp left (before: 8 of 8 trials)
    for f in done:
        assert iio.read_image(out / f).size == (224, 160)


class Signalling(FakeEnhancer):
    """Sends itself ``signum`` while enhancing the third image, as a user or a supervisor would."""

    def __init__(self, signum: int) -> None:
        super().__init__()
        self.signum, self.calls = signum, 0

    def enhance(self, image):
        self.calls += 1
        if self.calls == 3:
            signal.raise_signal(self.signum)
        return super().enhance(image)


@pytest.mark.parametrize("signum, code, said", [
    (signal.SIGHUP, 129, "interrupted by SIGHUP"), (signal.SIGTERM, 143, "interrupted by SIGTERM"),
    (signal.SIGINT, 130, "interrupted"),
])
def test_sighup_sigterm_and_sigint_mid_run_share_one_clean_stop(tmp_path, monkeypatch, signum, code, said):
    monkeypatch.setattr(pipeline, "load_enhancer", lambda opts: Signalling(signum))
    src, out = tmp_path / "in", tmp_path / "out"
    for i in range(6):
        save(src / f"{i}.png", rgb(16, 16, seed=i))
    before = signal.getsignal(signum)
    r = run_cli(src, out, "--workers", "0")
    assert signal.getsignal(signum) is before  # handlers are put back
    assert r.exit_code == code and counts(r) == (2, 0, 0)
    assert f"{said}: outputs written so far are complete; rerun with --skip-existing to finish" in r.stderr
    assert sorted(os.listdir(out)) == ["0.png", "1.png"]  # no temp file
    monkeypatch.setattr(pipeline, "load_enhancer", lambda opts: FakeEnhancer())
    r = run_cli(src, out, "--skip-existing", "-q")  # a rerun finishes
    assert r.exit_code == 0 and visible(out) == [f"{i}.png" for i in range(6)]


def _handlers_installed(pid: int) -> bool:
    """Whether the process catches SIGTERM (Python alone catches only SIGINT): entry's handlers are in."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            mask = next(int(line.split()[1], 16) for line in fh if line.startswith("SigCgt:"))
    except (OSError, StopIteration):
        return False
    return bool(mask >> (signal.SIGTERM - 1) & 1)


@pytest.mark.skipif(not HAS_PROC, reason="reads the signal mask from /proc")
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_signal_during_start_up_is_one_line_and_its_exit_code(tmp_path, tiny_onnx, signum):
    """Sent as soon as the handlers are in, i.e. while numpy, Pillow, click and the model load."""
    save(tmp_path / "in" / "a.png", rgb(16, 16))
    proc = subprocess.Popen(ENTRY + [str(tmp_path / "in"), str(tmp_path / "out"), "--model", str(tiny_onnx)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert wait_for(lambda: _handlers_installed(proc.pid) or proc.poll() is not None, step=0.0005)
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=60)
    name = signal.Signals(signum).name
    assert (proc.returncode, stdout) == (128 + signum, "")
    assert stderr == f"engan-infer: interrupted by {name} during start-up; nothing was enhanced\n"


@pytest.mark.parametrize("how", ["signal while loading", "signal surfacing as ImportError", "KeyboardInterrupt"])
def test_an_interrupt_while_the_model_loads_is_one_line_and_130(tmp_path, monkeypatch, capsys, how):
    """Before: a KeyboardInterrupt traceback, or 'Aborted!' with exit 1."""

    from engan.runtime.enhancer import Enhancer

    def load(*a, **k):
        if how == "KeyboardInterrupt":
            raise KeyboardInterrupt
        signal.raise_signal(signal.SIGINT)  # our handler raises Interrupted here ...
        raise AssertionError("not reached")

    def load_in_c(*a, **k):  # ... unless it fires inside a C extension, which reports another error
        try:
            signal.raise_signal(signal.SIGINT)
        except BaseException:
            pass
        raise ImportError("initialization failed")

    monkeypatch.setattr(Enhancer, "load", load_in_c if how.endswith("ImportError") else load)
    save(tmp_path / "in" / "a.png", rgb(16, 16))
    with pytest.raises(SystemExit) as ex:
        entry.main([str(tmp_path / "in"), str(tmp_path / "out")])
    out, err = capsys.readouterr()
    assert ex.value.code == 130 and out == ""
    assert err == "engan-infer: interrupted by SIGINT during start-up; nothing was enhanced\n"


def test_the_console_script_starts_in_the_light_entry_module():
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert meta["project"]["scripts"]["engan-infer"] == "engan.runtime.entry:main"
    tree = ast.parse((REPO / "runtime" / "entry.py").read_text())
    top = {a.name.split(".")[0] for n in tree.body if isinstance(n, ast.Import) for a in n.names}
    top |= {n.module.split(".")[0] for n in tree.body if isinstance(n, ast.ImportFrom) and n.module}
    assert top <= {"__future__", "contextlib", "signal", "sys", "threading"}, top


# ----------------------------------------------------------------------------- 9. API edges


@pytest.fixture(scope="module")
def enhancer(tiny_onnx):
    from engan.runtime import Enhancer

    return Enhancer.load(tiny_onnx, device="cpu")


def test_big_endian_pixels_are_converted_and_kept_big_endian(enhancer):
    a = (np.random.default_rng(0).random((24, 40, 3)) * 20000).astype(np.uint16)
    out = enhancer.enhance(a.astype(">u2"))
    assert out.dtype == np.dtype(">u2") and np.array_equal(out.astype(np.uint16), enhancer.enhance(a))
    f = a.astype(np.float32) / 65535
    assert np.array_equal(enhancer.enhance(f.astype(">f4")).astype(np.float32), enhancer.enhance(f))


def test_thread_counts_are_bounded_and_said(tiny_onnx, tmp_path):
    from engan.runtime import Enhancer
    from engan.runtime.backends.base import bound_threads, usable_cpus

    cpus = usable_cpus()
    assert bound_threads(None) == (None, "") and bound_threads(1) == (1, "")
    assert bound_threads(100000) == (cpus, f"threads=100000 lowered to {cpus}, the CPUs this process may use")
    with pytest.raises(ValueError, match="threads must be a positive whole number"):
        bound_threads(-3)
    t0 = time.perf_counter()
    with pytest.warns(RuntimeWarning, match=f"threads=100000 lowered to {cpus}"):
        enh = Enhancer.load(tiny_onnx, device="cpu", threads=100000)
    assert time.perf_counter() - t0 < 30 and enh.info["threads"] == cpus
    assert enh.info["reason"].endswith(f"; threads=100000 lowered to {cpus}, the CPUs this process may use")
    save(tmp_path / "a.png", rgb(16, 16))
    res = subprocess.run(ENTRY + [str(tmp_path / "a.png"), str(tmp_path / "out"), "--model", str(tiny_onnx),
                                  "--threads", "100000"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and f"threads=100000 lowered to {cpus}" in res.stderr
    assert "Warning" not in res.stderr


def test_memory_errors_say_the_size_and_the_fix(enhancer, monkeypatch):
    import engan.runtime.enhancer as enh_mod
    from engan.runtime import prepost

    huge = np.broadcast_to(np.zeros(3, np.uint8), (60000, 60000, 3))  # 10 GB that does not exist
    monkeypatch.setattr(enh_mod, "available_memory", lambda: 20 << 30)
    with pytest.raises(MemoryError) as err:
        enhancer.enhance(huge)
    assert str(err.value) == ("enhancing a 60000x60000 image needs at least 80.5 GiB of memory (float32 working "
                              "copies of its pixels) and this machine has 20.0 GiB available; downscale or crop it "
                              "first (or free memory)")

    def no_memory(a):
        raise MemoryError

    monkeypatch.setattr(prepost, "to_float", no_memory)
    with pytest.raises(MemoryError) as err:
        enhancer.enhance(make_image(40, 56))
    assert str(err.value) == ("out of memory enhancing a 56x40 image (at least 53 KiB of float32 working copies; "
                              "MemoryError); downscale or crop it first (or free memory)")


# ----------------------------------------------------------------------------- 10. advice that works


def test_the_advice_for_two_inputs_with_one_output_name_works(tmp_path, fake):
    src, out = tmp_path / "in", tmp_path / "out"
    save(src / "a" / "x.png", rgb(16, 16))
    save(src / "b" / "x.png", rgb(16, 16, seed=1))
    r = run_cli(str(src / "*" / "x.png"), out)
    assert r.exit_code == 1 and failed_lines(r) == [
        f"FAILED {src / 'b' / 'x.png'}: its output {out / 'x.png'} is already written for {src / 'a' / 'x.png'}; "
        f"give the inputs different names or pass their common folder '{src}' with --recursive (it mirrors the "
        "tree under OUTPUT_DIR)"]
    assert run_cli(str(src / "*" / "x.png"), tmp_path / "o2", "--ext", "same").exit_code == 1  # the old advice
    r = run_cli(src, tmp_path / "o3", "--recursive")  # the new one
    assert r.exit_code == 0 and counts(r) == (2, 0, 0)
    save(src / "y.png", rgb(16, 16))
    save(src / "y.gif", rgb(16, 16).convert("P"))  # --ext same writes a GIF as PNG: no help here
    r = run_cli(src / "y.gif", src / "y.png", tmp_path / "o4")
    assert failed_lines(r) == [
        f"FAILED {src / 'y.png'}: its output {tmp_path / 'o4' / 'y.png'} is already written for {src / 'y.gif'}; "
        "give the inputs different names or enhance them into separate OUTPUT_DIRs"]


# ----------------------------------------------------------------------------- design choices


def test_symlinks_out_of_the_input_tree_are_left_out_unless_asked(tmp_path, fake):
    src, outside = tmp_path / "in", tmp_path / "elsewhere"
    save(src / "a.png", rgb(16, 16))
    save(src / "sub" / "b.png", rgb(16, 16))
    save(outside / "secret.png", rgb(16, 16))
    (src / "link").symlink_to(outside, target_is_directory=True)
    (src / "shadow.png").symlink_to(outside / "secret.png")
    (src / "inside").symlink_to(src / "sub", target_is_directory=True)  # stays in the tree: followed
    r = run_cli(src, tmp_path / "o1", "--recursive")
    assert r.exit_code == 0 and counts(r) == (2, 0, 0)
    assert (f"left out 2 symlink(s) leading out of their input folder, e.g. {src / 'link'} -> "
            f"{os.path.realpath(outside)}; pass "
            "--follow-symlinks to read them") in r.stderr
    assert sorted(str(p.relative_to(tmp_path / "o1")) for p in (tmp_path / "o1").rglob("*.png")) == \
        ["a.png", "sub/b.png"]
    r = run_cli(src, tmp_path / "o2")  # the folder's own files: the same rule
    assert counts(r) == (1, 0, 0) and "left out 1 symlink(s)" in r.stderr
    r = run_cli(src, tmp_path / "o3", "--recursive", "--follow-symlinks")
    assert counts(r) == (3, 0, 0) and "left out" not in r.stderr
    r = run_cli(src / "shadow.png", tmp_path / "o4")  # named by the user: read
    assert counts(r) == (1, 0, 0)


def test_a_symlinked_folder_inside_output_dir_is_refused(tmp_path, fake):
    src, out, outside = tmp_path / "in", tmp_path / "out", tmp_path / "elsewhere"
    save(src / "sub" / "b.png", rgb(16, 16))
    outside.mkdir()
    out.mkdir()
    (out / "sub").symlink_to(outside, target_is_directory=True)
    r = run_cli(src, out, "--recursive")
    assert r.exit_code == 2 and (f"Error: refusing to write '{out / 'sub' / 'b.png'}': '{out / 'sub'}' is a "
                                 f"symlink to '{os.path.realpath(outside)}', outside OUTPUT_DIR; remove the link or "
                                 "choose another "
                                 "OUTPUT_DIR") in r.stderr
    assert os.listdir(outside) == []


@pytest.mark.skipif(".avif" not in iio.IMAGE_EXTENSIONS, reason="this Pillow cannot read AVIF")
def test_avif_is_taken_from_folders_as_when_named(tmp_path, fake):
    src = tmp_path / "in"
    save(src / "a.avif", rgb(16, 16), quality=90)
    assert counts(run_cli(src / "a.avif", tmp_path / "named")) == (1, 0, 0)
    assert counts(run_cli(src, tmp_path / "walked")) == (1, 0, 0)
    assert visible(tmp_path / "walked") == ["a.png"]


def test_float_tiff_is_refused_by_the_cli_with_the_reason_and_enhanced_by_the_api(tmp_path, enhancer):
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(np.linspace(0, 1, 24 * 40, dtype=np.float32).reshape(24, 40), "F").save(src / "f.tif")
    r = run_cli(src, tmp_path / "out", model=None)
    assert r.exit_code == 1 and failed_lines(r) == [f"FAILED {src / 'f.tif'}: {iio.REASON_FLOAT}"]
    assert iio.REASON_FLOAT.startswith("unsupported image mode F (32-bit float)")
    out = enhancer.enhance(Image.open(src / "f.tif"))
    assert out.mode == "F" and out.size == (40, 24)
