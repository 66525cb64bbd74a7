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

from tests.helpers import make_image, tiny_config
from engan.cli.train import train as train_cmd
from engan.config import ExperimentConfig, LossConfig, model_config
from engan.data import DataError
from engan.losses import mean_luma_of_images
from engan.models.checkpoint import load_generator, read_metadata
from engan.train.state import LATEST, STATE_DIR, load_latest
from engan.train.trainer import RunDirError, Trainer


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
    assert set(last) == {"g_total", "adversarial", "adversarial.global", "adversarial.local", "sfp", "sfp.global",
                         "sfp.local", "d_global", "d_local", "lr", "sec_per_step"}  # the authors' losses only
    assert all(np.isfinite(v) for v in last.values())
    assert last["g_total"] == pytest.approx(last["adversarial"] + last["sfp"], rel=1e-5)
    assert last["sfp"] == pytest.approx(last["sfp.global"] + last["sfp.local"], rel=1e-5)
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
    from engan.train.schedule import lr_at

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
    import engan.train.state as ts

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
        import engan.train.state as ts
        from engan.config import ExperimentConfig
        from engan.train.trainer import Trainer
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


def test_cli_help_lists_everyday_options_recipes_and_loss_terms():
    from engan.losses import registered_terms

    res = CliRunner().invoke(train_cmd, ["--help"], terminal_width=100)
    assert res.exit_code == 0
    text = " ".join(res.output.split())
    options = [line.split()[0] for line in res.output.split("Options:")[1].split("Recipes")[0].splitlines()
               if line.startswith("  -")]
    assert options == ["--recipe", "--config", "--low", "--normal", "--out", "--loss", "--set", "--steps", "--batch",
                       "--lr", "--pretrained", "--resume", "--device", "--seed", "--quiet", "-h,"]
    for opt, default in [("--recipe", "[default: v3, the shipped model's"), ("--steps", "[default: the recipe's]"),
                         ("--device", "[default: auto]"), ("--seed", "[default: 0]"),
                         ("--resume", "architecture settings may not change"), ("--set", "loss.order.slope=0.3")]:
        assert opt in text and default in text, (opt, default)
    for name in ("paper", "v3", "smoke"):
        assert f"\n  {name} " in res.output
    for name in registered_terms():
        assert f"{name} (default " in text, name
    assert "--color-weight" not in text  # legacy options still work but are not listed


def test_cli_train_then_resume_and_errors(data_dirs, tmp_path):
    low, normal = data_dirs
    out = tmp_path / "run"
    args = ["--recipe", "smoke", "--low", str(low), "--normal", str(normal), "--out", str(out), "--steps", "1",
            "--batch", "1", "--quiet"]
    r = CliRunner().invoke(train_cmd, args)
    assert r.exit_code == 0, r.output
    assert f"done: {out / 'generator.safetensors'} (step 1)" in r.output
    r = CliRunner().invoke(train_cmd, args)
    assert r.exit_code == 1 and "pass --resume to continue it" in r.output
    r = CliRunner().invoke(train_cmd, ["--out", str(out), "--resume", "--steps", "2", "--loss", "color=5",
                                       "--loss", "exposure=3", "--set", "loss.exposure.level=0.4", "--loss", "identity=2",
                                       "--loss", "highlight=4", "--loss", "order=1.5", "--set", "loss.order.slope=0.6",
                                       "--set", "train.amp=false", "--set", "data.darken_min=0.5",
                                       "--set", "data.darken_prob=0.7", "--quiet"])
    assert r.exit_code == 0, r.output
    saved = json.loads((out / "config.json").read_text())
    assert saved["train"]["steps"] == 2 and saved["model"]["preset"] == "tiny" and saved["data"]["crop"] == 32
    terms = saved["loss"]["terms"]
    assert terms["color"] == {"weight": 5.0, "cell": 16}
    assert terms["exposure"] == {"weight": 3.0, "level": 0.4}
    assert terms["identity"] == {"weight": 2.0} and saved["train"]["amp"] is False
    assert terms["highlight"]["weight"] == 4.0 and terms["order"] == {"weight": 1.5, "slope": 0.6}
    assert terms["adversarial"] == {"weight": 1.0}
    assert terms["consistency"] == {"weight": 0.0, "coarse": 4, "teacher": "", "anchor": 1.0}
    assert (saved["data"]["darken_min"], saved["data"]["darken_max"], saved["data"]["darken_prob"]) == (0.5, 4.0, 0.7)
    assert load_latest(out).step == 2
    r = CliRunner().invoke(train_cmd, ["--out", str(out), "--resume", "--set", "data.darken_min=3",
                                       "--set", "data.darken_max=2"])
    assert r.exit_code == 2 and "data.darken_min 3 is above data.darken_max 2" in r.output
    r = CliRunner().invoke(train_cmd, ["--out", str(out), "--resume", "--set", "model.preset=lite", "--quiet"])
    assert r.exit_code == 1 and "other architecture options" in r.output
    r = CliRunner().invoke(train_cmd, ["--out", str(out), "--resume", "--recipe", "v3"])
    assert r.exit_code == 2 and "a resumed run keeps its saved recipe" in r.output
    r = CliRunner().invoke(train_cmd, ["--recipe", "smoke", "--low", str(tmp_path / "missing"), "--normal", str(normal),
                                       "--out", str(tmp_path / "r2"), "--quiet"])
    assert r.exit_code == 1 and f"image folder not found: {tmp_path / 'missing'}" in r.output
    r = CliRunner().invoke(train_cmd, [*args[:6], "--out", str(tmp_path / "r3"), "--set", "data.crop=40", "--quiet"])
    assert r.exit_code == 1 and "crop 40 is not a multiple of 16" in r.output
    r = CliRunner().invoke(train_cmd, ["--out", str(tmp_path / "r4"), "--resume"])
    assert r.exit_code == 2 and "there is no run to continue" in r.output
    for bad, message in ((["--loss", "colour=3"], "unknown loss term 'colour'; registered: adversarial, sfp, color"),
                         (["--loss", "color=-1"], "loss term color: weight -1 is negative; use 0 to switch it off"),
                         (["--loss", "color=much"], "color.weight: 'much' is not a valid float"),
                         (["--set", "loss.color.size=3"], "loss term color has no option size (its options: cell)"),
                         (["--set", "train.stpes=3"], "unknown setting train.stpes; train has: steps, batch"),
                         (["--set", "train.lr"], "--set 'train.lr': write SECTION.FIELD=VALUE"),
                         (["--recipe", "v9"], "unknown recipe 'v9'; recipes: paper, v3, smoke")):
        r = CliRunner().invoke(train_cmd, [*args[:6], "--out", str(tmp_path / "bad"), *bad, "--quiet"])
        assert r.exit_code == 2 and message in " ".join(r.output.split()), (bad, r.output)
    assert not (tmp_path / "bad").exists()  # every refusal comes before the run folder is made


def test_legacy_options_still_work_with_a_deprecation_line(data_dirs, tmp_path):
    low, normal = data_dirs
    out = tmp_path / "run"
    r = CliRunner().invoke(train_cmd, [
        "--low", str(low), "--normal", str(normal), "--out", str(out), "--preset", "tiny", "--crop", "32",
        "--batch", "1", "--steps", "1", "--ndf", "8", "--threads", "1", "--color-weight", "5", "--order-slope", "0.6",
        "--no-amp", "--quiet"])
    assert r.exit_code == 0, r.output + r.stderr
    saved = json.loads((out / "config.json").read_text())
    assert (saved["model"]["preset"], saved["data"]["crop"], saved["discriminator"]["ndf"]) == ("tiny", 32, 8)
    assert saved["loss"]["terms"]["color"]["weight"] == 5.0 and saved["loss"]["terms"]["order"]["slope"] == 0.6
    assert saved["train"]["amp"] is False and saved["train"]["threads"] == 1
    assert "engan train: --color-weight is deprecated and goes in the next release; use --loss color=5" in r.stderr
    assert "engan train: --crop is deprecated and goes in the next release; use --set data.crop=32" in r.stderr
    assert "use --set train.amp=false" in r.stderr


def test_recipe_v3_gives_the_loss_weights_of_the_command_v3_was_trained_with(data_dirs, tmp_path):
    """The shipped model's command (MODEL_CARD.md, old flags) and --recipe v3 resolve to the same loss and schedule."""
    low, normal = data_dirs
    old = ["--low", str(low), "--normal", str(normal), "--preset", "lite", "--head", "curve-residual", "--crop", "128",
           "--batch", "4", "--ndf", "32", "--lr", "2e-4", "--color-weight", "10", "--exposure-weight", "10",
           "--order-weight", "1", "--order-slope", "0.5", "--steps", "2400", "--save-every", "200",
           "--sample-every", "600", "--threads", "1", "--seed", "0"]
    new = ["--recipe", "v3", "--low", str(low), "--normal", str(normal), "--set", "train.threads=1"]
    configs = []
    for name, args in (("old", old), ("new", new)):
        r = CliRunner().invoke(train_cmd, [*args, "--out", str(tmp_path / name), "--steps", "1", "--quiet",
                                           "--set", "data.crop=32", "--set", "discriminator.ndf=8", "--batch", "1"])
        assert r.exit_code == 0, r.output
        configs.append(json.loads((tmp_path / name / "config.json").read_text()))
    old_cfg, new_cfg = configs
    assert old_cfg["loss"] == new_cfg["loss"]
    # and with the loss section the v3 command wrote before the registry (its config.json, flat fields)
    from engan.losses import normalized_terms

    shipped = LossConfig.from_dict({
        "feature_net": "efficientnet-lite0", "vgg_weights": None, "sfp_weight": 1.0, "patch_sfp": True,
        "color_weight": 10.0, "color_cell": 16, "exposure_weight": 10.0,
        "exposure_level": new_cfg["loss"]["terms"]["exposure"]["level"], "order_weight": 1.0, "order_slope": 0.5,
        "identity_weight": 0.0, "highlight_weight": 0.0})
    assert normalized_terms(shipped.terms) == new_cfg["loss"]["terms"]
    assert new_cfg["loss"]["terms"]["color"]["weight"] == 10.0 and new_cfg["loss"]["terms"]["order"]["weight"] == 1.0
    assert old_cfg["train"]["lr"] == new_cfg["train"]["lr"] == 2e-4
    # the recipe also carries the shipped shoulder, which the old command added later with `engan average --knee 0.8`
    assert new_cfg["model"]["generator"]["knee"] == 0.8
    assert {**old_cfg["model"]["generator"], "knee": 0.8} == new_cfg["model"]["generator"]


def test_a_runs_config_json_repeats_the_run(data_dirs, tmp_path):
    low, normal = data_dirs
    first = tmp_path / "a"
    r = CliRunner().invoke(train_cmd, ["--recipe", "smoke", "--low", str(low), "--normal", str(normal), "--out",
                                       str(first), "--loss", "color=3", "--set", "train.lr=3e-4", "--quiet"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(train_cmd, ["--config", str(first / "config.json"), "--out", str(tmp_path / "b"), "--quiet"])
    assert r.exit_code == 0, r.output
    a, b = (json.loads((tmp_path / x / "config.json").read_text()) for x in ("a", "b"))
    assert a == b
    for k, v in load_latest(first).tensors.items():  # same config, same seed: the same weights
        torch.testing.assert_close(v, load_latest(tmp_path / "b").tensors[k], msg=k)


def test_config_files_in_toml_and_yaml_override_the_recipe(data_dirs, tmp_path):
    from engan.recipes import ConfigError, read_config_file, resolve

    (tmp_path / "c.toml").write_text('[train]\nlr = 3e-4\n[loss.order]\nweight = 2\nslope = 0.3\n')
    cfg = resolve("v3", tmp_path / "c.toml")
    assert cfg.train.lr == 3e-4 and cfg.loss.terms["order"] == {"weight": 2, "slope": 0.3}
    assert cfg.loss.terms["color"] == {"weight": 10} and cfg.model.preset == "lite"  # the rest stays the recipe's
    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed")
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"data": {"crop": 64}, "loss": {"color": 4}}))
    cfg = resolve("v3", tmp_path / "c.yaml")
    assert cfg.data.crop == 64 and cfg.loss.terms["color"] == {"weight": 4}
    (tmp_path / "bad.toml").write_text("[trian]\nlr = 1\n")
    with pytest.raises(ConfigError, match=r"bad.toml: unknown section\(s\) trian; sections: model, discriminator"):
        resolve("v3", tmp_path / "bad.toml")
    (tmp_path / "broken.toml").write_text("[train\n")
    with pytest.raises(ConfigError, match="broken.toml could not be parsed"):
        read_config_file(tmp_path / "broken.toml")
    with pytest.raises(ConfigError, match="unknown config format '.ini'"):
        (tmp_path / "c.ini").write_text("x")
        read_config_file(tmp_path / "c.ini")


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


def _with_terms(cfg, **terms):
    """``cfg`` with these loss terms' weights/options (``name={"weight": w, ...}``)."""
    return dataclasses.replace(cfg, loss=LossConfig(terms={**cfg.loss.terms, **terms}))


def _resume_with(data_dirs, out, **terms):
    """2 steps with the paper's losses, then resume to 3 with ``terms``: last metrics, saved loss config."""
    Trainer(tiny_config(data_dirs, steps=2), out, progress=False).fit()
    t = Trainer(_with_terms(tiny_config(data_dirs, steps=3), **terms), out, resume=True, progress=False)
    last = t.fit()
    assert t.step_no == 3
    return last, json.loads((out / "config.json").read_text())["loss"]["terms"]


@pytest.mark.parametrize("key, entry", [("color", {"weight": 10.0, "cell": 8}),
                                        ("exposure", {"weight": 20.0, "level": 0.45}),
                                        ("order", {"weight": 3.0, "slope": 0.7}),
                                        ("identity", {"weight": 5.0}),
                                        ("highlight", {"weight": 5.0, "threshold": 0.35, "ramp": 0.1}),
                                        ("consistency", {"weight": 4.0, "coarse": 4, "teacher": "", "anchor": 1.0})])
def test_optional_terms_add_to_the_generator_loss_and_can_be_switched_on_at_resume(data_dirs, tmp_path, key, entry):
    last, saved = _resume_with(data_dirs, tmp_path / "run", **{key: entry})
    assert last[key] > 0 if key != "highlight" else last[key] >= 0  # random tiny G: bright pixels may not rise
    parts = last["adversarial"] + last["sfp"] + entry["weight"] * last[key]
    assert last["g_total"] == pytest.approx(parts, rel=1e-5)
    assert saved[key] == entry


def test_extra_passes_run_through_one_generator_forward(data_dirs, tmp_path):
    cfg = tiny_config(data_dirs, steps=1)
    seen = {}
    cases = {"none": {}, "identity": {"identity": {"weight": 5.0}}, "highlight": {"highlight": {"weight": 5.1}},
             "consistency": {"consistency": {"weight": 2.0}},
             "both": {"identity": {"weight": 1.0}, "consistency": {"weight": 1.0}}}
    for case, terms in cases.items():
        t = Trainer(_with_terms(cfg, **terms), tmp_path / case, progress=False)
        sizes = seen.setdefault(case, set())
        t.G.conv1_1.register_forward_pre_hook(lambda m, args, sizes=sizes: sizes.add(args[0].shape[0]) if m.training
                                              else None)
        last = t.fit()
        assert ("identity" in last) == ("identity" in terms) and ("consistency" in last) == ("consistency" in terms)
    # the G step sees the 2 low crops, plus 2 normal crops and/or 2 degraded twins (one BatchNorm batch)
    b = cfg.train.batch
    assert seen == {"none": {b}, "identity": {2 * b}, "highlight": {2 * b}, "consistency": {2 * b}, "both": {3 * b}}


def test_exposure_level_defaults_to_the_normal_sets_mean_luma(data_dirs, tmp_path):
    from engan.data import load_folder

    expected = round(mean_luma_of_images(load_folder(data_dirs[1]).images), 4)
    cfg = _with_terms(tiny_config(data_dirs, steps=1), exposure={"weight": 20.0})
    t = Trainer(cfg, tmp_path / "r1", progress=False)
    assert t.cfg.loss.terms["exposure"]["level"] == pytest.approx(expected)  # what config.json will record
    # a given level is kept; without loaded data a missing level is a clear error
    cfg2 = _with_terms(cfg, exposure={"weight": 20.0, "level": 0.35})
    assert Trainer(cfg2, tmp_path / "r2", progress=False).cfg.loss.terms["exposure"]["level"] == 0.35
    with pytest.raises(DataError, match=r"loss term exposure: its level is measured .*--set loss.exposure.level=0.42"):
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

    from tests.helpers import tiny_train_args
    from engan.config import GeneratorConfig
    from engan.models import UNetGenerator
    from engan.models.checkpoint import save_generator

    _torch.manual_seed(1)
    src = save_generator(tmp_path / "curve.safetensors",
                         UNetGenerator(GeneratorConfig(base_width=4, head="curve-residual", knee=0.8)).eval())
    (tmp_path / "data").mkdir()
    args = tiny_train_args(tmp_path / "data", tmp_path / "run", recipe=None)
    r = CliRunner().invoke(train_cmd, [*args, "--pretrained", str(src)])
    assert r.exit_code == 0, r.output
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["model"]["preset"] == "tiny" and saved["train"]["pretrained"] == str(src.resolve())
    assert (saved["model"]["generator"]["head"], saved["model"]["generator"]["knee"]) == ("curve-residual", 0.8)
    r = CliRunner().invoke(train_cmd, [*tiny_train_args(tmp_path / "data", tmp_path / "run2"), "--pretrained", str(src)])
    assert r.exit_code == 1 and "head curve-residual in the file, residual in this run" in r.output
    r = CliRunner().invoke(train_cmd, [*args, "--pretrained", str(tmp_path / "missing.safetensors")])
    assert r.exit_code == 2 and "model not found: " in r.output and "missing.safetensors; pass an existing" in r.output
    r = CliRunner().invoke(train_cmd, [*args, "--pretrained", "engan-nope"])
    assert r.exit_code == 2 and "'engan-nope' is not a shipped model" in " ".join(r.output.split())
    r = CliRunner().invoke(train_cmd, [*args, "--pretrained", str(tmp_path / "data")])
    assert r.exit_code == 2 and "is a folder without generator.safetensors" in r.output
    assert "--pretrained PATH|NAME" in CliRunner().invoke(train_cmd, ["--help"]).output


def test_a_teacher_fine_tune_trains_only_the_generator_with_frozen_batchnorm(data_dirs, tmp_path, tiny_checkpoint):
    """consistency with a frozen teacher, the GAN terms off: no discriminator step, BN statistics kept."""
    cfg = tiny_config(data_dirs, steps=2, pretrained=str(tiny_checkpoint), freeze_bn=True)
    cfg = dataclasses.replace(cfg, loss=LossConfig(terms={
        "adversarial": {"weight": 0}, "sfp": {"weight": 0},
        "consistency": {"weight": 1.0, "teacher": str(tiny_checkpoint), "anchor": 0.5}}))
    t = Trainer(cfg, tmp_path / "ft", progress=False)
    d_before = {k: v.clone() for k, v in t.D_A.state_dict().items()}
    bn_before = t.G.bn1_1.running_mean.clone()
    teacher = t.term_states["consistency"]
    assert not any(p.requires_grad for p in teacher.parameters())
    last = t.fit()
    assert set(last) == {"g_total", "consistency", "lr", "sec_per_step"}  # no d_global/d_local: D not trained
    assert all(torch.equal(v, t.D_A.state_dict()[k]) for k, v in d_before.items())
    assert torch.equal(t.G.bn1_1.running_mean, bn_before)  # frozen BatchNorm
    start = load_generator(tiny_checkpoint)
    assert not torch.equal(t.G.conv1_1.weight, start.conv1_1.weight)  # the generator learned
    assert torch.equal(teacher.conv1_1.weight, start.conv1_1.weight)  # the teacher did not
