"""Trainer and `engan train`: smoke run, resume equality, crash-safe checkpoints, CLI."""
from __future__ import annotations

import dataclasses
import json
import logging
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from conftest import make_image, tiny_config
from engan.cli.train import train as train_cmd
from engan.config import DiscriminatorConfig, ExperimentConfig, model_config
from engan.data import DataError
from engan.losses import mean_luma_of_images
from engan.models.checkpoint import load_generator, read_metadata
from engan.train_state import LATEST, STATE_DIR, load_latest
from engan.trainer import RunDirError, Trainer


@pytest.fixture(scope="module")
def data_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    for i in range(4):
        (root / "low").mkdir(exist_ok=True)
        Image.fromarray(make_image(40, 48, seed=i, dark=0.25)).save(root / "low" / f"l{i}.png")
    for i in range(3):
        (root / "normal").mkdir(exist_ok=True)
        Image.fromarray(make_image(48, 40, seed=20 + i, dark=0.9)).save(root / "normal" / f"n{i}.jpg")
    return root / "low", root / "normal"


def test_smoke_train_writes_the_run_folder(data_dirs, tmp_path):
    out = tmp_path / "run"
    t = Trainer(tiny_config(data_dirs, steps=3), out, progress=False)
    last = t.fit()
    assert set(last) >= {"g_total", "g_global", "g_local", "sfp_global", "sfp_local", "color", "d_global",
                         "d_local", "lr"}
    assert all(np.isfinite(v) for v in last.values())
    assert last["color"] == 0.0  # off by default (the authors' losses only)
    for f in ("generator.safetensors", "generator_raw.safetensors", "config.json", "metrics.jsonl",
              "snapshots/generator_step000002.safetensors", "snapshots/generator_raw_step000002.safetensors",
              "snapshots/generator_step000003.safetensors", "samples/step000002.png", "samples/step000003.png",
              "state/LATEST", "state/step000003/tensors.safetensors", "state/step000003/state.json"):
        assert (out / f).is_file(), f
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [1, 2, 3]
    assert [x["lr"] for x in lines] == [1e-4, 1e-4, 1e-4]  # 3 steps: decay starts after step 2
    assert all(np.isfinite(x[k]) for x in lines for k in ("g_total", "d_global", "sec_per_step"))
    g = load_generator(out, preset="tiny")
    meta = read_metadata(out)
    assert meta["engan.step"] == "3" and meta["engan.weights"] == "ema"
    assert not g.training
    # EMA weights differ from the raw ones, and the grid is 2 rows of 32x32 crops of 4 images
    raw = load_generator(out / "generator_raw.safetensors")
    assert not torch.equal(g.conv1_1.weight, raw.conv1_1.weight)
    assert Image.open(out / "samples/step000003.png").size == (4 * 36 + 4, 2 * 36 + 4)
    assert ExperimentConfig.from_dict(json.loads((out / "config.json").read_text())) == t.cfg


def test_lr_schedule_is_constant_then_linear_to_zero():
    from engan.schedule import lr_at

    # the authors' 100 + 100 epochs: epoch 101 still at lr, then -lr/100 per epoch
    assert [lr_at(s, 200, 1e-4) for s in (0, 99, 100)] == [1e-4, 1e-4, 1e-4]
    assert lr_at(101, 200, 1e-4) == pytest.approx(0.99e-4)
    assert lr_at(150, 200, 1e-4) == pytest.approx(0.5e-4)
    assert lr_at(199, 200, 1e-4) == pytest.approx(1e-6)
    assert lr_at(50, 100, 2e-4, decay_start=0.0) == pytest.approx(1e-4)


def _state_tensors(out):
    return load_latest(out).tensors


def test_resume_equals_an_uninterrupted_run(data_dirs, tmp_path):
    cfg = tiny_config(data_dirs, steps=4, seed=3)
    Trainer(cfg, tmp_path / "a", progress=False).fit()
    first = Trainer(cfg, tmp_path / "b", progress=False)
    first.fit(until=2)  # interrupted after step 2 (checkpoint at 2)
    assert load_latest(tmp_path / "b").step == 2
    second = Trainer(cfg, tmp_path / "b", resume=True, progress=False)
    assert second.step_no == 2
    second.fit()
    a, b = _state_tensors(tmp_path / "a"), _state_tensors(tmp_path / "b")
    assert a.keys() == b.keys() and any(k.startswith("G_ema.") for k in a) and any(k.startswith("opt_dp.") for k in a)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)
    lines = [json.loads(x)["step"] for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert lines == [1, 2, 3, 4]


def test_resume_to_more_steps_and_refusals(data_dirs, tmp_path):
    out = tmp_path / "run"
    Trainer(tiny_config(data_dirs, steps=2), out, progress=False).fit()
    with pytest.raises(RunDirError, match="already exists and is not empty; pass --resume to continue it"):
        Trainer(tiny_config(data_dirs, steps=2), out, progress=False)
    bigger = dataclasses.replace(tiny_config(data_dirs, steps=2), model=model_config("lite"))
    with pytest.raises(RunDirError, match=r"other architecture options \(model: saved"):
        Trainer(bigger, out, resume=True, progress=False)
    t = Trainer(tiny_config(data_dirs, steps=3), out, resume=True, progress=False)
    t.fit()
    assert load_latest(out).step == 3 and read_metadata(out)["engan.step"] == "3"
    with pytest.raises(RunDirError, match="nothing to resume"):
        Trainer(tiny_config(data_dirs), tmp_path / "empty", resume=True, progress=False)


def test_failed_checkpoint_write_keeps_the_previous_one(data_dirs, tmp_path, monkeypatch, caplog):
    import engan.train_state as ts

    out = tmp_path / "run"
    t = Trainer(tiny_config(data_dirs, steps=4), out, progress=False)
    t.fit(until=2)
    gen_before = (out / "generator.safetensors").read_bytes()

    def disk_full(path, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ts, "_write_file", disk_full)
    with caplog.at_level(logging.WARNING, logger="engan.train"), pytest.raises(OSError, match="No space left"):
        t.fit()  # the save at step 4 warns, the final save raises
    assert "checkpoint at step 4 failed ([Errno 28] No space left on device); the previous checkpoint is kept" in caplog.text
    assert (out / STATE_DIR / LATEST).read_text().strip() == "step000002"
    assert sorted(p.name for p in (out / STATE_DIR).iterdir()) == [LATEST, "step000002"]
    assert load_latest(out).step == 2
    assert (out / "generator.safetensors").read_bytes() == gen_before
    monkeypatch.undo()
    resumed = Trainer(tiny_config(data_dirs, steps=4), out, resume=True, progress=False)
    assert resumed.step_no == 2


def test_incomplete_newest_folder_falls_back_to_the_previous(data_dirs, tmp_path):
    out = tmp_path / "run"
    Trainer(tiny_config(data_dirs, steps=2, save_every=1), out, progress=False).fit()
    state = out / STATE_DIR
    assert sorted(p.name for p in state.iterdir()) == [LATEST, "step000001", "step000002"]  # keeps 2
    (state / "step000002" / "tensors.safetensors").write_bytes(b"truncated")  # torn by a crash
    (state / ".partial-step000003-1").mkdir()
    assert load_latest(out).step == 1


def test_sigkill_during_a_checkpoint_write_leaves_the_last_good_one(data_dirs, tmp_path):
    """A real SIGKILL half-way through writing the second checkpoint's tensors."""
    out = tmp_path / "run"
    cfg = tiny_config(data_dirs, steps=4)
    (tmp_path / "cfg.json").write_text(cfg.to_json())
    script = textwrap.dedent(f"""
        import json, os, signal
        import engan.train_state as ts
        from engan.config import ExperimentConfig
        from engan.trainer import Trainer
        real = ts._write_file
        def dying(path, data):
            if "step000004" in str(path):
                with open(path, "wb") as f:
                    f.write(data[: len(data) // 2]); f.flush()
                os.kill(os.getpid(), signal.SIGKILL)
            real(path, data)
        ts._write_file = dying
        cfg = ExperimentConfig.from_dict(json.loads(open({str(tmp_path / 'cfg.json')!r}).read()))
        Trainer(cfg, {str(out)!r}, progress=False).fit()
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert load_latest(out).step == 2
    assert read_metadata(out)["engan.step"] == "2"
    load_generator(out, preset="tiny")
    t = Trainer(cfg, out, resume=True, progress=False)
    assert t.step_no == 2
    t.fit()
    assert load_latest(out).step == 4


def test_cli_help_lists_every_option_with_its_default():
    res = CliRunner().invoke(train_cmd, ["--help"], terminal_width=100)
    assert res.exit_code == 0
    text = " ".join(res.output.split())
    for opt, default in [("--preset", "[default: paper"), ("--steps", "[default: 1000; paper: 200 epochs]"),
                         ("--batch", "[default: 8; paper: 32 on 3 GPUs]"), ("--crop", "[default: 320; paper: 320]"),
                         ("--lr", "[default: 0.0001; paper: 1e-4]"), ("--save-every", "[default: 100]"),
                         ("--sample-every", "[default: 100]"), ("--device", "[default: auto]"),
                         ("--amp / --no-amp", "[default: --amp]"),
                         ("--head", "[default: residual; on --resume: the saved one]"), ("--curve-iters", "[default: 8]"),
                         ("--darken-min", "[default: 2; paper: 2]"), ("--highlight-weight", "bright photos are not clipped"), ("--darken-prob", "[default: 0.5; paper: 0.5]"),
                         ("--seed", "[default: 0]"), ("--feature-net", "paper: vgg16]"),
                         ("--vgg-weights", "[default: none]"), ("--workers", "[default: 0]"),
                         ("--ema-decay", "[default: 0.999; paper: no EMA]"), ("--threads", "[default: 0]"),
                         ("--resume", "architecture options may not change"), ("--low", "--normal")]:
        assert opt in text and default in text, (opt, default)


@dataclasses.dataclass(frozen=True)
class _SmallDConfig(ExperimentConfig):
    """The defaults with ndf=8 discriminators, so CLI tests do not save 200 MB of D state."""

    discriminator: DiscriminatorConfig = dataclasses.field(default_factory=lambda: DiscriminatorConfig(ndf=8))


def test_cli_train_then_resume_and_errors(data_dirs, tmp_path, monkeypatch):
    import engan.cli.train as cli_train

    monkeypatch.setattr(cli_train, "ExperimentConfig", _SmallDConfig)
    low, normal = data_dirs
    out = tmp_path / "run"
    args = ["--low", str(low), "--normal", str(normal), "--out", str(out), "--preset", "tiny", "--steps", "1",
            "--crop", "32", "--batch", "1", "--threads", "1", "--quiet"]
    r = CliRunner().invoke(train_cmd, args)
    assert r.exit_code == 0, r.output
    assert f"done: {out / 'generator.safetensors'} (step 1)" in r.output
    r = CliRunner().invoke(train_cmd, args)
    assert r.exit_code == 1 and "pass --resume to continue it" in r.output
    r = CliRunner().invoke(train_cmd, ["--out", str(out), "--resume", "--steps", "2", "--color-weight", "5",
                                       "--exposure-weight", "3", "--exposure-level", "0.4", "--identity-weight", "2", "--highlight-weight", "4",
                                       "--order-weight", "1.5", "--order-slope", "0.6", "--no-amp", "--darken-min", "0.5", "--darken-prob", "0.7", "--quiet"])
    assert r.exit_code == 0, r.output
    saved = json.loads((out / "config.json").read_text())
    assert saved["train"]["steps"] == 2 and saved["model"]["preset"] == "tiny" and saved["data"]["crop"] == 32
    assert saved["loss"]["color_weight"] == 5.0 and saved["loss"]["color_cell"] == 16
    assert saved["loss"]["exposure_weight"] == 3.0 and saved["loss"]["exposure_level"] == 0.4
    assert saved["loss"]["identity_weight"] == 2.0 and saved["train"]["amp"] is False
    assert saved["loss"]["highlight_weight"] == 4.0
    assert (saved["loss"]["order_weight"], saved["loss"]["order_slope"]) == (1.5, 0.6)
    assert (saved["data"]["darken_min"], saved["data"]["darken_max"], saved["data"]["darken_prob"]) == (0.5, 4.0, 0.7)
    assert load_latest(out).step == 2
    r = CliRunner().invoke(train_cmd, ["--out", str(out), "--resume", "--darken-min", "3", "--darken-max", "2"])
    assert r.exit_code == 2 and "--darken-min 3 is above --darken-max 2" in r.output
    r = CliRunner().invoke(train_cmd, ["--out", str(out), "--resume", "--preset", "lite", "--quiet"])
    assert r.exit_code == 1 and "other architecture options" in r.output
    r = CliRunner().invoke(train_cmd, ["--low", str(tmp_path / "missing"), "--normal", str(normal),
                                       "--out", str(tmp_path / "r2"), "--quiet"])
    assert r.exit_code == 1 and f"image folder not found: {tmp_path / 'missing'}" in r.output
    r = CliRunner().invoke(train_cmd, ["--low", str(low), "--normal", str(normal), "--out", str(tmp_path / "r3"),
                                       "--crop", "40", "--quiet"])
    assert r.exit_code == 1 and "--crop 40 is not a multiple of 16" in r.output
    r = CliRunner().invoke(train_cmd, ["--out", str(tmp_path / "r4"), "--resume"])
    assert r.exit_code == 2 and "there is no run to continue" in r.output


def test_tensorboard_scalars_when_available(data_dirs, tmp_path, monkeypatch):
    import types

    written = []

    class FakeWriter:
        def __init__(self, logdir):
            written.append(("dir", logdir))

        def add_scalar(self, tag, value, step):
            written.append((tag, step))

        def close(self):
            written.append(("closed", None))

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", types.SimpleNamespace(SummaryWriter=FakeWriter))
    out = tmp_path / "run"
    Trainer(tiny_config(data_dirs, steps=1), out, progress=False).fit()
    assert written[0] == ("dir", str(out / "tb")) and ("train/g_total", 1) in written and written[-1][0] == "closed"


def _resume_with(data_dirs, out, **loss_fields):
    """2 steps with the paper's losses, then resume to 3 with ``loss_fields``: last metrics, saved loss config."""
    Trainer(tiny_config(data_dirs, steps=2), out, progress=False).fit()
    cfg = tiny_config(data_dirs, steps=3)
    cfg = dataclasses.replace(cfg, loss=dataclasses.replace(cfg.loss, **loss_fields))
    t = Trainer(cfg, out, resume=True, progress=False)
    last = t.fit()
    assert t.step_no == 3
    return last, json.loads((out / "config.json").read_text())["loss"]


@pytest.mark.parametrize("key, fields", [("color", {"color_weight": 10.0, "color_cell": 8}),
                                         ("exposure", {"exposure_weight": 20.0}),
                                         ("order", {"order_weight": 3.0, "order_slope": 0.7}),
                                         ("identity", {"identity_weight": 5.0}),
                                         ("highlight", {"highlight_weight": 5.0})])
def test_optional_terms_add_to_the_generator_loss_and_can_be_switched_on_at_resume(data_dirs, tmp_path, key, fields):
    last, saved = _resume_with(data_dirs, tmp_path / "run", **fields)
    assert last[key] > 0 if key != "highlight" else last[key] >= 0  # random tiny G: bright pixels may not rise
    weight = fields[f"{key}_weight"]
    parts = last["g_global"] + last["g_local"] + last["sfp_global"] + last["sfp_local"] + weight * last[key]
    assert last["g_total"] == pytest.approx(parts, rel=1e-5)
    assert {k: saved[k] for k in fields} == fields


def test_identity_and_highlight_terms_run_low_and_normal_crops_through_one_generator_forward(data_dirs, tmp_path):
    cfg = tiny_config(data_dirs, steps=1)
    seen = {}
    for weight, term in ((0.0, "identity_weight"), (5.0, "identity_weight"), (5.1, "highlight_weight")):
        c = dataclasses.replace(cfg, loss=dataclasses.replace(cfg.loss, **{term: weight}))
        t = Trainer(c, tmp_path / f"r{weight:g}", progress=False)
        sizes = seen.setdefault(weight, set())
        t.G.conv1_1.register_forward_pre_hook(lambda m, args, sizes=sizes: sizes.add(args[0].shape[0]) if m.training
                                              else None)
        last = t.fit()
        assert (last["identity"] > 0) == (term == "identity_weight" and weight > 0)
    # the G step sees the 2 low crops without the terms, 2 low + 2 normal with either (one BatchNorm batch)
    assert seen == {0.0: {cfg.train.batch}, 5.0: {2 * cfg.train.batch}, 5.1: {2 * cfg.train.batch}}


def test_exposure_level_defaults_to_the_normal_sets_mean_luma(data_dirs, tmp_path):
    from engan.data import load_folder

    expected = round(mean_luma_of_images(load_folder(data_dirs[1]).images), 4)
    cfg = tiny_config(data_dirs, steps=1)
    cfg = dataclasses.replace(cfg, loss=dataclasses.replace(cfg.loss, exposure_weight=20.0))
    t = Trainer(cfg, tmp_path / "r1", progress=False)
    assert t.cfg.loss.exposure_level == pytest.approx(expected)  # what config.json will record
    # a given level is kept; without loaded data a missing level is a clear error
    cfg2 = dataclasses.replace(cfg, loss=dataclasses.replace(cfg.loss, exposure_level=0.35))
    assert Trainer(cfg2, tmp_path / "r2", progress=False).cfg.loss.exposure_level == 0.35
    with pytest.raises(DataError, match="--exposure-level"):
        Trainer(cfg, tmp_path / "r3", progress=False, load_data=False)


def test_pretrained_generator_starts_the_run_and_must_match(data_dirs, tmp_path, tiny_checkpoint):
    from engan.models.checkpoint import CheckpointError

    start = load_generator(tiny_checkpoint)
    t = Trainer(tiny_config(data_dirs, steps=1, pretrained=str(tiny_checkpoint), seed=5), tmp_path / "ft", progress=False)
    for name, tensor in start.state_dict().items():  # G and its EMA copy both start from the file, not seed 5's init
        assert torch.equal(t.G.state_dict()[name], tensor), name
        assert torch.equal(t.ema.module.state_dict()[name], tensor), name
    t.fit()
    assert not torch.equal(t.G.conv1_1.weight, start.conv1_1.weight)  # and then it trains
    t.close()
    # another head: refused before any step, naming the file and the field that differs
    cfg = tiny_config(data_dirs, steps=1, pretrained=str(tiny_checkpoint))
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, generator=dataclasses.replace(
        cfg.model.generator, head="curve")))
    with pytest.raises(CheckpointError, match=r"--pretrained .*generator\.safetensors holds another generator .*"
                                              r"head residual in the file, curve in this run"):
        Trainer(cfg, tmp_path / "ft2", progress=False)


def test_cli_pretrained_takes_the_files_architecture_and_names_bad_values(tmp_path):
    import torch as _torch

    from conftest import tiny_train_args
    from engan.config import GeneratorConfig
    from engan.models import UNetGenerator
    from engan.models.checkpoint import save_generator

    _torch.manual_seed(1)
    src = save_generator(tmp_path / "curve.safetensors",
                         UNetGenerator(GeneratorConfig(base_width=4, head="curve-residual", knee=0.8)).eval())
    (tmp_path / "data").mkdir()
    args = tiny_train_args(tmp_path / "data", tmp_path / "run")
    no_preset = [a for i, a in enumerate(args) if a != "--preset" and (i == 0 or args[i - 1] != "--preset")]
    r = CliRunner().invoke(train_cmd, [*no_preset, "--pretrained", str(src)])
    assert r.exit_code == 0, r.output
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["model"]["preset"] == "tiny" and saved["train"]["pretrained"] == str(src.resolve())
    assert (saved["model"]["generator"]["head"], saved["model"]["generator"]["knee"]) == ("curve-residual", 0.8)
    r = CliRunner().invoke(train_cmd, [*tiny_train_args(tmp_path / "data", tmp_path / "run2"), "--pretrained", str(src)])
    assert r.exit_code == 1 and "head curve-residual in the file, residual in this run" in r.output
    r = CliRunner().invoke(train_cmd, [*args, "--pretrained", str(tmp_path / "missing.safetensors")])
    assert r.exit_code == 2 and "missing.safetensors is not an existing generator file or run folder" in r.output
    r = CliRunner().invoke(train_cmd, [*args, "--pretrained", str(tmp_path / "data")])
    assert r.exit_code == 2 and "is a folder without generator.safetensors" in r.output
    assert "--pretrained PATH|NAME" in CliRunner().invoke(train_cmd, ["--help"]).output
