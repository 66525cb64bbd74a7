"""`engan eval` end to end on a tiny checkpoint and tiny generated sets."""
from __future__ import annotations

import json

from click.testing import CliRunner

from engan.cli import main
from test_eval_report import make_paired_set, make_unpaired_set


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


def test_cli_errors_are_clear(tmp_path):
    lol = make_paired_set(tmp_path / "lol", n=1)
    runner = CliRunner()
    res = runner.invoke(main, ["eval", "--model", str(tmp_path / "missing.safetensors"), "--lol", str(lol), "--fast"])
    assert res.exit_code == 1 and f"Error: model file not found: {tmp_path}/missing.safetensors" in res.output
    res = runner.invoke(main, ["eval", "--model", "none", "--lol", str(lol), "--peers", "sci"])
    assert res.exit_code == 2 and "unknown peer(s) sci; known: zero-dce, zero-dce++ (or 'none')" in res.output
    res = runner.invoke(main, ["eval", "--model", "none", "--lol", str(tmp_path / "nope"), "--fast"])
    assert res.exit_code == 2 and "folder not found" in res.output
    res = runner.invoke(main, ["eval", "--model", "none", "--lol", str(tmp_path), "--fast"])
    assert res.exit_code == 1 and f"Error: {tmp_path} is not a paired set: {tmp_path}/low is missing" in res.output


def test_cli_help_lists_every_option():
    res = CliRunner().invoke(main, ["eval", "--help"])
    assert res.exit_code == 0
    for opt in ("--model", "--backend", "--lol", "--unpaired", "--peers", "--peers-dir", "--zero-dce-pp-scale",
                "--out", "--max-images", "--no-grid", "--grid-rows", "--no-unpaired", "--fast", "--quiet"):
        assert opt in res.output
