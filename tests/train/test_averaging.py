"""`engan average` and engan.models.averaging: uniform weight averaging of generator snapshots."""
from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from engan.cli.average import average as average_cmd
from engan.models import create_generator
from engan.models.averaging import average_generators, last_snapshots, save_average
from engan.models.checkpoint import (
    CheckpointError, load_generator, read_metadata, save_generator, snapshot_name, snapshot_step,
)


def _snapshot(path, seed, step=None, preset="tiny"):
    torch.manual_seed(seed)
    g = create_generator(preset)
    with torch.no_grad():
        for name, b in g.named_buffers():
            if name.endswith("running_mean"):
                b.normal_()
            elif name.endswith("num_batches_tracked"):
                b.fill_(seed)
    save_generator(path, g, extra={"step": step} if step is not None else None)
    return g


def _run(tmp_path, steps=(200, 400, 600, 800, 1000)):
    snaps = tmp_path / "run" / "snapshots"
    snaps.mkdir(parents=True)
    for i, s in enumerate(steps):
        _snapshot(snaps / snapshot_name(s), seed=i, step=s)
        _snapshot(snaps / snapshot_name(s, raw=True), seed=100 + i, step=s)  # must be ignored
    return tmp_path / "run"


def test_average_is_the_elementwise_mean_including_batchnorm_statistics(tmp_path):
    gens = [_snapshot(tmp_path / f"g{i}.safetensors", seed=i) for i in range(3)]
    avg = average_generators([tmp_path / f"g{i}.safetensors" for i in range(3)])
    states = [g.state_dict() for g in gens]
    for k, v in avg.state_dict().items():
        if k.endswith("num_batches_tracked"):
            assert v.item() == 2  # integer buffers: the newest file's
        else:
            torch.testing.assert_close(v, sum(s[k] for s in states) / 3, rtol=1e-6, atol=1e-6)
    assert not avg.training
    # the average of one model with itself is that model, and it still enhances
    same = average_generators([tmp_path / "g0.safetensors"] * 2)
    x = torch.rand(1, 3, 32, 32) * 0.2
    with torch.no_grad():
        torch.testing.assert_close(same(x), gens[0].eval()(x))


def test_snapshot_names_round_trip_and_raw_files_are_not_ema_snapshots():
    assert snapshot_name(1200) == "generator_step001200.safetensors"
    assert snapshot_name(1200, raw=True) == "generator_raw_step001200.safetensors"
    assert snapshot_step(snapshot_name(1200)) == 1200 and snapshot_step(snapshot_name(1234567)) == 1234567
    assert snapshot_step(snapshot_name(1200, raw=True)) is None
    assert snapshot_step("generator_step001200.safetensors.x.tmp") is None


def test_last_snapshots_takes_the_newest_ema_files_in_step_order(tmp_path):
    run = _run(tmp_path, steps=(200, 1000, 400, 800, 600, 1200))
    assert [p.name for p in last_snapshots(run, 3)] == [
        "generator_step000800.safetensors", "generator_step001000.safetensors", "generator_step001200.safetensors"]
    with pytest.raises(CheckpointError, match=r"holds 6 EMA snapshots .* fewer than the 7 asked for; lower --last"):
        last_snapshots(run, 7)


def test_save_average_records_its_sources(tmp_path):
    run = _run(tmp_path)
    out = save_average(last_snapshots(run, 2), tmp_path / "avg.safetensors")
    meta = read_metadata(out)
    assert json.loads(meta["engan.averaged_steps"]) == [800, 1000]
    assert json.loads(meta["engan.averaged_from"]) == ["generator_step000800.safetensors",
                                                        "generator_step001000.safetensors"]
    assert meta["engan.preset"] == "tiny"


def test_cli_average_run_folder_and_files_and_errors(tmp_path):
    run = _run(tmp_path)
    r = CliRunner().invoke(average_cmd, [str(run), "--last", "3"])
    assert r.exit_code == 0, r.output
    out = run / "generator_avg3.safetensors"
    assert "averaged 3 generators" in r.output and str(out) in r.output
    assert json.loads(read_metadata(out)["engan.averaged_steps"]) == [600, 800, 1000]
    load_generator(out, preset="tiny")

    a, b = (run / "snapshots" / f"generator_step{s:06d}.safetensors" for s in (200, 400))
    r = CliRunner().invoke(average_cmd, [str(a), str(b)])
    assert r.exit_code == 2 and "--out FILE is required" in r.output
    r = CliRunner().invoke(average_cmd, [str(a), str(b), "--out", str(a)])
    assert r.exit_code == 2 and "is one of the inputs" in r.output
    r = CliRunner().invoke(average_cmd, [str(run), "--last", "9"])
    assert r.exit_code == 1 and "fewer than the 9 asked for" in r.output
    _snapshot(tmp_path / "lite.safetensors", seed=0, preset="lite")
    r = CliRunner().invoke(average_cmd, [str(a), str(tmp_path / "lite.safetensors"), "--out", str(tmp_path / "x.st")])
    assert r.exit_code == 1 and "another architecture" in r.output and not (tmp_path / "x.st").exists()
