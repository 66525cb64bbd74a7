"""Hardening of `engan export`: bad checkpoints, bad --out folders, bad shapes, a full disk.

Each case exits 1 (the export cannot run) or 2 (bad usage) with one clear message naming the
file or option and the fix, and leaves nothing half-written in --out. (A folder without
generator.safetensors, other usage errors and a failing parity check are covered in
tests/cli/test_export_cli.py; corrupt/malicious checkpoints in tests/runtime/test_hardening_models.py.)
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from tests.helpers import disk_full_for  # noqa: E402
from engan.cli import main  # noqa: E402


def export(*args: str | os.PathLike):
    return CliRunner().invoke(main, ["export", *map(os.fspath, args)], catch_exceptions=False)


def one_line(text: str) -> str:
    return " ".join(text.split())


def test_missing_checkpoint(tmp_path):
    missing = tmp_path / "runs" / "nope.safetensors"
    r = export("--checkpoint", missing, "--out", tmp_path / "o")
    assert r.exit_code == 1
    assert r.output == (f"Error: model not found: {missing}; pass an existing .onnx (from `engan export`), "
                        ".engine/.plan, .safetensors file or run folder, or a shipped model name (engan-lite)\n")
    assert not (tmp_path / "o").exists()


def test_not_a_safetensors_file(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("this is not a checkpoint at all, just some notes\n")
    r = export("--checkpoint", notes, "--out", tmp_path / "o")
    assert r.exit_code == 1
    n = int.from_bytes(b"this is ", "little")
    assert r.output == (f"Error: {notes} is not a valid safetensors file (header length {n} does not fit the file "
                        f"size {notes.stat().st_size}); re-export it or point to another checkpoint\n")
    assert not (tmp_path / "o").exists()


def test_out_is_a_file(tmp_path, tiny_checkpoint):
    target = tmp_path / "model.onnx"
    target.write_bytes(b"keep me")
    r = export("--checkpoint", tiny_checkpoint, "--out", target)
    assert r.exit_code == 2
    assert f"Error: Invalid value for '--out': Directory '{target}' is a file." in r.output
    assert target.read_bytes() == b"keep me"
    # the Python API says the same thing in its own words
    from engan.export.api import ExportConfig, ExportError, export_model

    with pytest.raises(ExportError, match=f"^--out {re.escape(str(target))} is a file; pass a folder"):
        export_model(ExportConfig(checkpoint=str(tiny_checkpoint), out=str(target), check=False), log=lambda s: None)


def test_out_cannot_be_created(tmp_path, tiny_checkpoint):
    (tmp_path / "notes.txt").write_text("x")
    below_a_file = tmp_path / "notes.txt" / "exports"
    r = export("--checkpoint", tiny_checkpoint, "--out", below_a_file, "--no-check")
    assert r.exit_code == 1
    assert r.output.endswith(f"Error: cannot create the output folder {below_a_file} (not a directory); pass another "
                             "--out\n")
    assert "Traceback" not in r.output
    r = export("--checkpoint", tiny_checkpoint, "--out", "/proc/engan-exports", "--no-check")
    assert r.exit_code == 1
    assert re.search(r"Error: cannot create the output folder /proc/engan-exports \([a-z ]+\); pass another --out\n$",
                     r.output), r.output


@pytest.mark.parametrize("args, message", [
    (["--max-shape", "1000x1000"], "Invalid value for '--max-shape': --max-shape 1000x1000: H=1000 and W=1000 are "
                                   "not positive multiples of 16; use 1008x1008"),
    (["--min-shape", "0x0"], "Invalid value for '--min-shape': --min-shape 0x0: H=0 and W=0 are not positive "
                             "multiples of 16; use 16x16"),
    (["--min-shape", "-16x16"], "Invalid value for '--min-shape': --min-shape '-16x16' is not HxW (height x width, "
                                "e.g. 400x608)"),
    (["--opt-shape", "big"], "Invalid value for '--opt-shape': --opt-shape 'big' is not HxW (height x width, "
                             "e.g. 400x608)"),
    (["--min-shape", "512x512", "--opt-shape", "512x512", "--max-shape", "256x256"],
     "profile H must satisfy min <= opt <= max, got 512 <= 512 <= 256"),
    (["--max-batch", "0"], "Invalid value for '--max-batch': 0 is not in the range x>=1"),
    (["--workspace", "0"], "Invalid value for '--workspace': 0.0 is not in the range x>0"),
])
def test_invalid_profile_options_exit_2_before_any_work(tmp_path, tiny_checkpoint, args, message):
    out = tmp_path / "o"
    r = export("--checkpoint", tiny_checkpoint, "--out", out, "--fp16", *args)
    assert r.exit_code == 2
    assert message in one_line(r.output)
    assert not out.exists()


def _full_disk_message(path: Path) -> str:
    return (f"Error: could not write {path} (no space left on device); nothing half-written is left in {path.parent}: "
            "free some disk space or pass another --out, then run the export again\n")


def test_disk_full_writing_the_onnx_leaves_nothing(tmp_path, tiny_checkpoint, monkeypatch):
    out = tmp_path / "o"
    with disk_full_for(monkeypatch, lambda p: p.name == "model.onnx"):
        r = export("--checkpoint", tiny_checkpoint, "--out", out, "--no-check")
    assert r.exit_code == 1
    assert r.output.endswith(_full_disk_message(out / "model.onnx"))
    assert os.listdir(out) == []  # no model.onnx, no temp file, no temp export folder


def test_disk_full_writing_the_fp16_onnx_keeps_the_complete_fp32_one(tmp_path, tiny_checkpoint, monkeypatch):
    import numpy as np
    import onnxruntime as ort

    out = tmp_path / "o"
    with disk_full_for(monkeypatch, lambda p: p.name == "model.fp16.onnx"):
        r = export("--checkpoint", tiny_checkpoint, "--out", out, "--fp16", "--no-engine", "--check-size", "32x32")
    assert r.exit_code == 1
    assert r.output.endswith(_full_disk_message(out / "model.fp16.onnx"))
    assert os.listdir(out) == ["model.onnx"]
    sess = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    y = sess.run(None, {"input": np.full((1, 3, 32, 32), 0.2, np.float32)})[0]
    assert y.shape == (1, 3, 32, 32) and np.isfinite(y).all()
