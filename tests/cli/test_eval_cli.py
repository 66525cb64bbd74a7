"""`engan eval` end to end on a tiny checkpoint and tiny generated sets."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from engan.cli import main
from tests.helpers import make_paired_set, make_unpaired_set


def test_cli_scores_a_tiny_checkpoint(tmp_path, tiny_checkpoint):
    lol = make_paired_set(tmp_path / "lol", n=2)
    dark_a, dark_b = make_unpaired_set(tmp_path / "A", n=1), make_unpaired_set(tmp_path / "B", n=1)
    out = tmp_path / "out"
    res = CliRunner().invoke(main, [
        "eval", "--model", str(tiny_checkpoint), "--lol", str(lol), "--unpaired", str(dark_a), str(dark_b),
        "--peers", "zero-dce,zero-dce++", "--peers-dir", str(tmp_path / "empty"), "--out", str(out), "-q",
    ])
    assert res.exit_code == 0, res.output
    assert "### lol (paired, 2 images)" in res.output and "### A (unpaired, 1 images)" in res.output and "### B (unpaired" in res.output
    assert "| Input (no enhancement) |" in res.output and "| EnlightenGAN (ours: " in res.output
    assert "note: Zero-DCE left out: Zero-DCE weights not found" in res.output
    assert "note: Zero-DCE++ left out" in res.output
    assert sorted(p.name for p in out.iterdir()) == ["grid_A.png", "grid_B.png", "grid_lol.png", "report.json", "report.md"]
    data = json.loads((out / "report.json").read_text())
    assert [s["name"] for s in data["sets"]] == ["lol", "A", "B"]
    assert data["config"]["peers"] == ["zero-dce", "zero-dce++"]


def test_cli_fast_path_is_paired_only(tmp_path, tiny_checkpoint):
    lol = make_paired_set(tmp_path / "lol", n=2)
    out = tmp_path / "fast"
    res = CliRunner().invoke(main, ["eval", "--model", str(tiny_checkpoint), "--lol", str(lol), "--fast", "--out", str(out), "-q"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.iterdir()) == ["report.json", "report.md"]
    data = json.loads((out / "report.json").read_text())
    assert [s["kind"] for s in data["sets"]] == ["paired"] and len(data["methods"]) == 2


def test_cli_fast_keeps_the_peers_named_with_peers(tmp_path, tiny_checkpoint):
    import torch

    from engan.eval.peers import ZeroDCE

    peers = tmp_path / "peers"
    (peers / "zero_dce").mkdir(parents=True)
    torch.save(ZeroDCE().state_dict(), peers / "zero_dce" / "Epoch99.pth")
    lol = make_paired_set(tmp_path / "lol", n=1)
    base = ["eval", "--model", str(tiny_checkpoint), "--lol", str(lol), "--peers-dir", str(peers), "--fast", "-q"]
    named = CliRunner().invoke(main, base + ["--peers", "zero-dce", "--out", str(tmp_path / "named")])
    assert named.exit_code == 0, named.output
    assert "| Zero-DCE |" in named.output
    assert json.loads((tmp_path / "named" / "report.json").read_text())["config"]["peers"] == ["zero-dce"]
    default = CliRunner().invoke(main, base + ["--out", str(tmp_path / "default")])
    assert default.exit_code == 0, default.output
    assert "Zero-DCE" not in default.output  # --fast alone: no peers, as its help says


def test_cli_errors_are_clear(tmp_path):
    lol = make_paired_set(tmp_path / "lol", n=1)
    runner = CliRunner()
    res = runner.invoke(main, ["eval", "--model", str(tmp_path / "missing.safetensors"), "--lol", str(lol), "--fast"])
    assert res.exit_code == 1 and f"Error: model file not found: {tmp_path}/missing.safetensors" in res.output
    res = runner.invoke(main, ["eval", "--model", "none", "--lol", str(lol), "--peers", "sci"])
    assert res.exit_code == 2 and "unknown peer(s) sci; known: zero-dce, zero-dce++, pairlie, pairlie-lol (or 'all', 'none')" in res.output
    res = runner.invoke(main, ["eval", "--model", "none", "--lol", str(tmp_path / "nope"), "--fast"])
    assert res.exit_code == 2 and "folder not found" in res.output
    res = runner.invoke(main, ["eval", "--model", "none", "--lol", str(tmp_path), "--fast"])
    assert res.exit_code == 1 and f"Error: {tmp_path} is not a paired set: {tmp_path}/low is missing" in res.output


def test_cli_help_lists_every_option():
    res = CliRunner().invoke(main, ["eval", "--help"])
    assert res.exit_code == 0
    for opt in ("--model", "--backend", "--lol", "--paired", "--public-dark", "--unpaired", "--peers", "--peers-dir", "--zero-dce-pp-scale",
                "--out", "--max-images", "--no-grid", "--grid-rows", "--no-unpaired", "--fast", "--quiet"):
        assert opt in res.output


def test_public_dark_set_is_the_documented_darkening_of_bundled_photos(tmp_path):
    pytest.importorskip("skimage", reason="scikit-image (engan[eval]) is not installed")
    from engan.eval.public_dark import darken, write_public_dark_set

    assert darken(np.array([[[0, 128, 255]]], dtype=np.uint8)).tolist() == [[[0, 14, 64]]]  # 255*(x/255)^2.2/4
    root = write_public_dark_set(tmp_path / "pd", names=("coffee", "retina"))
    assert sorted(p.name for p in (root / "low").iterdir()) == ["coffee.png", "retina.png"]
    high = np.asarray(Image.open(root / "high" / "retina.png"))
    low = np.asarray(Image.open(root / "low" / "retina.png"))
    assert high.shape == low.shape == (800, 800, 3)  # 1411x1411 downscaled to the 800 cap, then darkened
    assert np.array_equal(low, darken(high))
    assert low.max() <= 64 and high.max() > 200


def test_cli_public_dark_and_extra_paired_sets(tmp_path, tiny_checkpoint, monkeypatch):
    pytest.importorskip("skimage", reason="scikit-image (engan[eval]) is not installed")
    import engan.eval.public_dark as pd

    monkeypatch.setattr(pd, "SAMPLES", ("coffee",))
    lol, extra = make_paired_set(tmp_path / "lol", n=1), make_paired_set(tmp_path / "extra", n=1)
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["eval", "--model", str(tiny_checkpoint), "--lol", str(lol), "--paired", str(extra),
                                    "--public-dark", "--fast", "--out", str(out), "-q"])
    assert res.exit_code == 0, res.output
    assert "### public_dark (paired, 1 images)" in res.output and "### extra (paired, 1 images)" in res.output
    data = json.loads((out / "report.json").read_text())
    assert [s["name"] for s in data["sets"]] == ["lol", "extra", "public_dark"]
    assert (out / "public_dark" / "low" / "coffee.png").is_file()
    res = CliRunner().invoke(main, ["eval", "--model", "none", "--paired", str(tmp_path / "nope"), "--fast"])
    assert res.exit_code == 2 and "folder not found" in res.output


def test_fade_bright_scores_the_model_as_engan_infer_runs_it(tiny_checkpoint):
    from tests.helpers import make_image
    from engan.eval.enhancers import make_enhance_fn
    from engan.runtime.prepost import FADE_RANGE

    bright, dark = make_image(40, 56, seed=2, dark=0.95), make_image(40, 56, seed=1, dark=0.2)
    plain, faded = make_enhance_fn(tiny_checkpoint), make_enhance_fn(tiny_checkpoint, fade=FADE_RANGE)
    assert faded.label.endswith("+ fade-bright)") and faded.info["fade"] == [0.15, 0.42]
    np.testing.assert_array_equal(faded.fn(bright), bright)
    np.testing.assert_array_equal(faded.fn(dark), plain.fn(dark))
    assert not np.array_equal(plain.fn(bright), bright)


def test_eval_takes_every_runtime_backend_and_names_the_fix_for_a_checkpoint(tmp_path):
    from engan.eval.enhancers import ModelLoadError, make_enhance_fn

    ckpt = tmp_path / "g.safetensors"
    ckpt.write_bytes(b"x")
    with pytest.raises(ModelLoadError, match=r"^--backend openvino needs an \.onnx or \.xml model; .* is a torch "
                                             r"checkpoint \(export it with `engan export`\)$"):
        make_enhance_fn(ckpt, backend="openvino")
    with pytest.raises(ModelLoadError, match=r"^unknown backend 'tflite'; use one of: auto, trt, ort, openvino, torch$"):
        make_enhance_fn(ckpt, backend="tflite")
