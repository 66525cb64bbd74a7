"""Generator output heads (residual / curve / curve-residual) and the inference highlight shoulder (knee)."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from engan.config import GeneratorConfig, generator_config
from engan.models import count_parameters
from engan.models.checkpoint import CheckpointError, load_generator, read_metadata, save_generator
from engan.models.generator import UNetGenerator, apply_curve, highlight_shoulder


def _gen(head="residual", knee=1.0, seed=0, iters=8):
    torch.manual_seed(seed)
    cfg = dataclasses.replace(generator_config("tiny"), head=head, knee=knee, curve_iters=iters)
    return UNetGenerator(cfg)


def test_curve_known_values_and_fixed_points():
    x = torch.tensor([0.0, 0.25, 0.5, 1.0]).view(1, 1, 1, 4)
    assert torch.allclose(apply_curve(x, torch.ones_like(x), 1), torch.tensor([0.0, 0.4375, 0.75, 1.0]).view(1, 1, 1, 4))
    assert torch.equal(apply_curve(x, torch.zeros_like(x), 8), x)  # alpha 0 = identity
    # alpha -1 darkens: 0.5 -> 0.25
    assert apply_curve(x, -torch.ones_like(x), 1)[0, 0, 0, 2].item() == pytest.approx(0.25)


def test_curve_maps_unit_interval_onto_itself_monotonically():
    x = torch.linspace(0, 1, 101).view(1, 1, 1, -1)
    for a in (-1.0, -0.3, 0.4, 1.0):
        y = apply_curve(x, torch.full_like(x, a), 8)
        assert y.min() >= 0 and y.max() <= 1
        assert torch.all(y[..., 1:] >= y[..., :-1])
        assert y[..., 0].item() == 0 and y[..., -1].item() == pytest.approx(1.0)


def test_curve_gain_depends_on_the_pixel_value_not_only_on_alpha():
    # one alpha for a dark and a bright pixel: the dark one gains far more (the reason it draws no halo)
    x = torch.tensor([0.05, 0.8]).view(1, 1, 1, 2)
    y = apply_curve(x, torch.full_like(x, 0.6), 8)
    gain = (y / x).flatten()
    assert gain[0] > 5 and gain[1] < 1.25


@pytest.mark.parametrize("head", ["curve", "curve-residual"])
def test_curve_heads_keep_range_in_training_mode(head):
    g = _gen(head).train()
    with torch.no_grad():
        for p in g.parameters():
            p.normal_(0, 0.5)  # far from init: tanh saturates
        x = torch.rand(2, 3, 32, 32)
        y = g(x)
    assert y.shape == x.shape and torch.isfinite(y).all()
    if head == "curve":  # a pure curve can never leave [0, 1], even unclamped
        assert y.min() >= 0 and y.max() <= 1


def test_head_parameter_counts():
    res, cur, hyb = (count_parameters(_gen(h)) for h in ("residual", "curve", "curve-residual"))
    assert res == cur
    assert hyb - res == 3 * 4 + 3  # conv10 (1x1, base width 4) gains 3 outputs


def test_unknown_head_and_bad_knee_are_clear_errors():
    with pytest.raises(ValueError, match="unknown generator head 'gamma'; choose one of: residual, curve, curve-residual"):
        GeneratorConfig(head="gamma")
    with pytest.raises(ValueError, match=r"knee must be in \[0.5, 1\]"):
        GeneratorConfig(knee=0.2)


def test_shoulder_values():
    knee = 0.8
    y = torch.tensor([[0.5, 0.8, 1.0, 1.4, 3.0], [0.25, 0.4, 0.5, 0.7, 1.5], [0.1, 0.1, 0.1, 0.1, 0.1]]).T
    y = y.T.reshape(1, 3, 1, 5)
    out = highlight_shoulder(y, knee)
    m, mo = y.amax(1)[0, 0], out.amax(1)[0, 0]
    assert torch.equal(out[..., :2], y[..., :2])  # at or below the knee: unchanged
    e = m[2:] - knee
    assert torch.allclose(mo[2:], knee + 0.2 * e / (e + 0.2))
    assert mo.max() < 1.0
    # hue kept: channel ratios unchanged
    assert torch.allclose(out[0, 1] / out[0, 0], y[0, 1] / y[0, 0])
    # continuous at the knee, slope 1 there
    eps = 1e-4
    z = torch.full((1, 3, 1, 1), knee + eps)
    assert highlight_shoulder(z, knee).max().item() == pytest.approx(knee + eps, abs=1e-7)


def test_knee_applies_in_eval_only_and_stops_clipping():
    g1, g8 = _gen("curve-residual", 1.0), _gen("curve-residual", 0.8)
    g8.load_state_dict(g1.state_dict())
    with torch.no_grad():
        g1.conv10.bias[3:] = 3.0  # a residual that drives everything past white
        g8.conv10.bias[3:] = 3.0
        x = torch.rand(1, 3, 32, 32) * 0.5
        assert torch.equal(g1.train()(x), g8.train()(x))  # training is unchanged
        y1, y8 = g1.eval()(x), g8.eval()(x)
    assert (y1 >= 1.0).float().mean() > 0.5
    assert (y8 >= 1.0).float().mean() == 0 and y8.max() <= 1.0


@pytest.mark.parametrize("head,knee,iters", [("curve", 1.0, 4), ("curve-residual", 0.8, 8)])
def test_head_and_knee_round_trip_through_the_checkpoint(tmp_path, head, knee, iters):
    g = _gen(head, knee, iters=iters).eval()
    path = save_generator(tmp_path / "g.safetensors", g)
    meta = read_metadata(path)
    assert meta["engan.head"] == head and meta["engan.curve_iters"] == str(iters) and float(meta["engan.knee"]) == knee
    h = load_generator(path)
    assert h.config == g.config
    x = torch.rand(1, 3, 32, 32) * 0.3
    with torch.no_grad():
        assert torch.equal(h(x), g(x))


def test_old_checkpoints_without_head_metadata_load_as_residual(tmp_path):
    from safetensors.torch import load_file, save_file

    g = _gen("residual")
    path = save_generator(tmp_path / "g.safetensors", g)
    meta = {k: v for k, v in read_metadata(path).items() if k not in ("engan.head", "engan.curve_iters", "engan.knee")}
    save_file(load_file(str(path)), str(tmp_path / "old.safetensors"), metadata=meta)
    assert load_generator(tmp_path / "old.safetensors").config == g.config


def test_unknown_head_in_a_file_is_a_checkpoint_error(tmp_path):
    from safetensors.torch import load_file, save_file

    path = save_generator(tmp_path / "g.safetensors", _gen("curve"))
    meta = {**read_metadata(path), "engan.head": "future-head"}
    save_file(load_file(str(path)), str(tmp_path / "new.safetensors"), metadata=meta)
    with pytest.raises(CheckpointError, match="cannot build .*unknown generator head 'future-head'.*upgrade engan"):
        load_generator(tmp_path / "new.safetensors")


def test_average_knee_option_sets_the_shoulder_and_keeps_weights(tmp_path):
    from engan.cli.average import average as average_cmd

    files = []
    for i in range(2):
        files.append(save_generator(tmp_path / f"s{i}.safetensors", _gen("curve-residual", seed=i)))
    res = CliRunner().invoke(average_cmd, [*map(str, files), "--out", str(tmp_path / "a.safetensors"), "--knee", "0.8"])
    assert res.exit_code == 0, res.output
    a = load_generator(tmp_path / "a.safetensors")
    assert a.config.knee == 0.8 and a.config.head == "curve-residual"
    plain = CliRunner().invoke(average_cmd, [*map(str, files), "--out", str(tmp_path / "b.safetensors")])
    assert plain.exit_code == 0
    b = load_generator(tmp_path / "b.safetensors")
    assert b.config.knee == 1.0
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    bad = CliRunner().invoke(average_cmd, [*map(str, files), "--out", str(tmp_path / "c.safetensors"), "--knee", "0.3"])
    assert bad.exit_code == 2 and "0.3 is not in the range 0.5<=x<=1.0" in bad.output


def test_onnx_export_carries_the_head_and_the_knee(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from engan.export.api import ExportConfig, export_model

    g = _gen("curve-residual", 0.8).eval()
    with torch.no_grad():
        g.conv10.bias[3:] = 0.8  # push part of the output past the knee
    ckpt = save_generator(tmp_path / "g.safetensors", g)
    result = export_model(ExportConfig(checkpoint=str(ckpt), out=str(tmp_path / "x"), engine=None,
                                       check_sizes=((64, 64),)), log=lambda _: None)
    assert result.parity is not None and result.parity.passed and result.parity.rows
    sess = ort.InferenceSession(str(result.onnx), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((1, 3, 48, 64), dtype=np.float32) * 0.4
    with torch.no_grad():
        ref = g(torch.from_numpy(x)).numpy()
    out = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    assert (ref > 0.8).mean() > 0.1 and ref.max() < 1.0  # the shoulder is active in the reference
    assert np.abs(out - ref).max() < 1e-5


def test_train_cli_saves_the_head_and_refuses_another_on_resume(tmp_path):
    from engan.cli.train import train as train_cmd
    from tests.helpers import tiny_train_args

    out = tmp_path / "run"
    args = tiny_train_args(tmp_path, out, "--set", "model.generator.head=curve", "--set", "model.generator.curve_iters=4")
    res = CliRunner().invoke(train_cmd, args)
    assert res.exit_code == 0, res.output
    saved = json.loads((out / "config.json").read_text())["model"]["generator"]
    assert saved["head"] == "curve" and saved["curve_iters"] == 4
    assert read_metadata(out / "generator.safetensors")["engan.head"] == "curve"
    again = CliRunner().invoke(train_cmd, ["--out", str(out), "--resume", "--set", "model.generator.head=residual", "--steps", "2", "--quiet"])
    assert again.exit_code != 0 and "other architecture options" in again.output


# --- the gain refiner (refine="gain") -------------------------------------------------------------------------

def _refined(seed: int = 0, width: int = 4) -> UNetGenerator:
    torch.manual_seed(seed)
    return UNetGenerator(GeneratorConfig(base_width=width, head="curve-residual", knee=0.8, refine="gain")).eval()


def test_a_refiner_leaves_photos_no_noisier_than_the_training_grain_exactly_unchanged():
    g = _refined()
    with torch.no_grad():  # a trained-like stage: strong strengths everywhere
        g.refiner.conv4.bias.fill_(4.0)
    plain = UNetGenerator(GeneratorConfig(base_width=4, head="curve-residual", knee=0.8)).eval()
    missing, unexpected = plain.load_state_dict(g.state_dict(), strict=False)
    assert unexpected == [f"refiner.conv{i}.{p}" for i in (1, 2, 3, 4) for p in ("weight", "bias")] and not missing
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 32), torch.linspace(0, 1, 48), indexing="ij")
    clean = torch.stack([0.05 + 0.1 * xx, 0.04 + 0.08 * yy, 0.06 + 0.0 * xx])[None]  # smooth: noise estimate 0
    noisy = (clean + 0.01 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    with torch.no_grad():
        assert torch.equal(g(clean), plain(clean))  # the gate is 0: the same pixels as without the stage
        assert (g(noisy) - plain(noisy)).abs().max() > 1e-3  # 2.5 levels of noise: it smooths
        fresh = _refined()  # a fresh stage: strength 0.018 at most
        assert (fresh(noisy) - plain(noisy)).abs().max() < 0.05
    refiner_params = sum(p.numel() for p in g.refiner.parameters())
    assert refiner_params == 13 * 32 * 9 + 32 + 2 * (32 * 32 * 9 + 32) + 32 * 16 * 9 + 16  # 27,920


def test_the_refiner_only_smooths_each_pixel_between_itself_and_its_blurs():
    from engan.models.generator import GainRefiner, luma

    r = GainRefiner().eval()
    x = torch.rand(1, 3, 32, 32) * 0.1
    y = (x * 4 + 0.05 * torch.randn(1, 3, 32, 32)).clamp(0, 1)
    with torch.no_grad():
        r.conv4.bias.fill_(20.0)  # strength 1 everywhere, the gate open (noisy input)
        out = r(y, (x + 0.02 * torch.randn_like(x)).clamp(0, 1))
    assert out.shape == y.shape
    assert float(luma(out).std()) < float(luma(y).std())  # smoother
    assert abs(float(out.mean() - y.mean())) < 2e-3  # blurs keep the mean: no brightening or darkening


def test_the_refiner_sees_the_gain_and_runs_at_half_resolution():
    g = _refined()
    seen = []
    g.refiner.conv1.register_forward_pre_hook(lambda m, a: seen.append(tuple(a[0].shape)))
    with torch.no_grad():
        g(torch.rand(1, 3, 32, 48))
    assert seen == [(1, 13, 16, 24)]  # 12 space-to-depth channels + log2 gain


def test_the_refiner_is_in_the_exported_graph_at_45_db_or_better(tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    from engan.runtime.parity import psnr

    g = _refined(seed=3)
    with torch.no_grad():  # a trained-like, non-zero last layer
        g.refiner.conv4.weight.normal_(0, 0.2)
        g.refiner.conv4.bias.normal_(0, 1.0)
    x = torch.rand(1, 3, 64, 96) * 0.2
    path = tmp_path / "g.onnx"
    torch.onnx.export(g, x, str(path), input_names=["input"], output_names=["output"], opset_version=17,
                      dynamic_axes={"input": {0: "n", 2: "h", 3: "w"}, "output": {0: "n", 2: "h", 3: "w"}}, dynamo=False)
    sess = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x2 = torch.rand(1, 3, 48, 80) * 0.2  # another size: the graph is dynamic
    with torch.no_grad():
        ref = g(x2).numpy()
    out = sess.run(None, {"input": x2.numpy()})[0]
    assert psnr(ref, out, peak=1.0) >= 45.0
    with torch.no_grad():
        g_off = UNetGenerator(GeneratorConfig(base_width=4, head="curve-residual", knee=0.8)).eval()
        g_off.load_state_dict(g.state_dict(), strict=False)
        assert np.abs(g_off(x2).numpy() - ref).max() > 1e-4  # the refiner changed the output
