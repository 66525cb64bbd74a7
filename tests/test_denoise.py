"""Sensor-noise augmentation (``DataConfig.noise_prob``) and the generator's inference-time noise filter (``denoise``)."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from engan.config import generator_config
from engan.data.augment import NOISE_GAMMA, READ_NOISE_FIT, SHOT_NOISE_RANGE, add_sensor_noise, augment_pair
from engan.models import count_parameters
from engan.models.checkpoint import load_generator, read_metadata, save_generator
from engan.models.denoise import depthwise, gaussian_kernel, laplacian_kernel, lee_filter, noise_sigma
from engan.models.generator import UNetGenerator, luma


# --- noise augmentation ---------------------------------------------------------------------------------------

def test_sensor_noise_has_the_variance_of_its_model_in_linear_light():
    flat = np.full((3, 200, 200), 0.5, np.float32)  # mid grey: no clipping at either end
    out = add_sensor_noise(flat, np.random.default_rng(7))
    draws = np.random.default_rng(7)  # the same draws, in the same order
    log_shot = draws.uniform(np.log(SHOT_NOISE_RANGE[0]), np.log(SHOT_NOISE_RANGE[1]))
    a, b, sd = READ_NOISE_FIT
    read = np.exp(draws.normal(a * log_shot + b, sd))
    lin = 0.5**NOISE_GAMMA
    expected = read + np.exp(log_shot) * lin
    measured = np.var(out.astype(np.float64) ** NOISE_GAMMA)
    assert out.dtype == np.float32 and out.shape == flat.shape
    assert measured == pytest.approx(expected, rel=0.05)


def test_sensor_noise_is_most_visible_in_the_dark_and_stays_in_range():
    rng = np.random.default_rng(0)
    dark = add_sensor_noise(np.full((3, 64, 64), 0.05, np.float32), np.random.default_rng(3))
    bright = add_sensor_noise(np.full((3, 64, 64), 0.8, np.float32), np.random.default_rng(3))
    assert dark.std() > bright.std()  # sRGB's gamma stretches the dark end ...
    assert dark.std() / 0.05 > 10 * bright.std() / 0.8  # ... so a lifted shadow is far noisier than a highlight
    img = rng.random((3, 32, 32), dtype=np.float32)
    out = add_sensor_noise(img, np.random.default_rng(1))
    assert out.min() >= 0 and out.max() <= 1
    assert np.array_equal(out, add_sensor_noise(img, np.random.default_rng(1)))  # a pure function of the rng


def test_noise_prob_zero_keeps_the_old_stream_and_one_noises_only_the_generator_input():
    rng = np.random.default_rng(0)
    low = (rng.random((48, 48, 3)) * 80).astype(np.uint8)
    normal = (rng.random((48, 48, 3)) * 255).astype(np.uint8)
    old = augment_pair(low, normal, 32, np.random.default_rng(5))
    off = augment_pair(low, normal, 32, np.random.default_rng(5), noise_prob=0.0)
    on = augment_pair(low, normal, 32, np.random.default_rng(5), noise_prob=1.0)
    assert all(np.array_equal(x, y) for x, y in zip(old, off))
    assert np.array_equal(on[0], old[0]) and np.array_equal(on[2], old[2])  # clean SFP reference, same normal crop
    assert not np.array_equal(on[1], old[1]) and on[1].dtype == np.float32


# --- the noise-adaptive filter -------------------------------------------------------------------------------

def _noisy_flat(sigma: float, level: float = 0.3, size: int = 64, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (level + sigma * torch.randn(1, 3, size, size, generator=g)).clamp(0, 1)


def test_window_is_normalised_and_keeps_a_flat_image_to_the_border():
    k = gaussian_kernel()
    assert k.shape == (3, 1, 5, 5) and torch.allclose(k.sum(dim=(1, 2, 3)), torch.ones(3))
    flat = torch.full((1, 3, 16, 16), 0.3)
    assert torch.allclose(depthwise(flat, k), flat, atol=1e-6)


@pytest.mark.parametrize("sigma", [0.01, 0.03])
def test_noise_estimate_reads_the_sigma_of_white_noise_and_ignores_texture_beside_a_flat_block(sigma):
    lap = laplacian_kernel()
    assert noise_sigma(_noisy_flat(sigma), lap).item() == pytest.approx(sigma, rel=0.15)
    # a clean image: strong texture everywhere except one flat region -> ~0
    g = torch.Generator().manual_seed(1)
    textured = torch.rand(1, 3, 64, 64, generator=g)
    textured[..., 8:40, 8:40] = 0.5  # covers the block [16:32, 16:32] with a margin for the 3x3 mask
    assert noise_sigma(textured, lap).item() < 1e-6
    assert noise_sigma(torch.cat([_noisy_flat(0.01), _noisy_flat(0.03)]), lap).flatten().tolist() == pytest.approx(
        [0.01, 0.03], rel=0.15)  # one estimate per image of a batch


def test_lee_filter_removes_amplified_noise_keeps_edges_and_leaves_clean_images_alone():
    win, lap = gaussian_kernel(), laplacian_kernel()
    x = _noisy_flat(0.004, level=0.05)  # a dark, noisy input ...
    x[..., :, 32:] += 0.05  # ... with a step edge
    y = (x * 8).clamp(0, 1)  # brightened 8x: noise sigma ~0.03 in the output
    f = lee_filter(x, y, win, lap)
    assert f[..., 4:-4, 4:28].std() < 0.5 * y[..., 4:-4, 4:28].std()  # flat noisy side smoothed (a 5x5 window)
    step = f[..., 4:-4, 40:60].mean() - f[..., 4:-4, 4:28].mean()
    assert step.item() == pytest.approx(0.4, abs=0.03)  # the edge's height survives
    clean = torch.linspace(0, 1, 64).view(1, 1, 1, 64).expand(1, 3, 64, 64).contiguous()
    assert torch.allclose(lee_filter(clean, clean, win, lap), clean, atol=1e-3)  # no noise -> unchanged (< 1/4 level)
    assert 0 <= f.min() and f.max() <= 1


def _gen(denoise: str, knee: float = 1.0) -> UNetGenerator:
    torch.manual_seed(0)
    return UNetGenerator(dataclasses.replace(generator_config("tiny"), head="curve-residual", denoise=denoise,
                                             knee=knee))


def test_denoise_modes_act_in_eval_only_and_chroma_keeps_the_luma():
    plain, full, chroma = _gen("off"), _gen("full"), _gen("chroma")
    x = _noisy_flat(0.01, level=0.08)
    for m in (plain, full, chroma):
        m.train()
    with torch.no_grad():
        assert torch.equal(plain(x), full(x)) and torch.equal(plain(x), chroma(x))  # training is unchanged
        for m in (plain, full, chroma):
            m.eval()
        y, yf, yc = plain(x), full(x), chroma(x)
    assert yf.std(dim=(2, 3)).mean() < y.std(dim=(2, 3)).mean()
    assert torch.allclose(luma(yc), luma(y), atol=1e-5)  # chroma: same luma ...
    assert (yc - luma(yc)).std() < (y - luma(y)).std()  # ... less colour noise
    assert "window_kernel" not in full.state_dict() and count_parameters(full) == count_parameters(plain)


def test_unknown_denoise_mode_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown denoise mode 'on'; choose one of: off, chroma, full"):
        dataclasses.replace(generator_config("tiny"), denoise="on")


def test_denoise_round_trips_and_configure_changes_options_not_weights(tmp_path):
    from engan.cli.configure import configure

    src = save_generator(tmp_path / "g.safetensors", _gen("off", knee=0.8), extra={"step": 7})
    res = CliRunner().invoke(configure, [str(src), "--denoise", "chroma", "--out", str(tmp_path / "c.safetensors")])
    assert res.exit_code == 0, res.output
    meta = read_metadata(tmp_path / "c.safetensors")
    assert meta["engan.denoise"] == "chroma" and meta["engan.knee"] == "0.8" and meta["engan.step"] == "7"
    back = load_generator(tmp_path / "c.safetensors")
    assert back.config.denoise == "chroma" and back.config.knee == 0.8
    assert all(torch.equal(a, b) for a, b in zip(back.state_dict().values(), load_generator(src).state_dict().values()))
    assert load_generator(src).config.denoise == "off"  # files without the field (all older ones) load as off
    same = CliRunner().invoke(configure, [str(src), "--out", str(src), "--denoise", "full"])
    assert same.exit_code == 2 and "is the input" in same.output
    nothing = CliRunner().invoke(configure, [str(src), "--out", str(tmp_path / "n.safetensors")])
    assert nothing.exit_code == 2 and "nothing to change" in nothing.output
    bad = CliRunner().invoke(configure, [str(src), "--out", str(tmp_path / "b.safetensors"), "--denoise", "on"])
    assert bad.exit_code == 2 and "'on' is not one of 'off', 'chroma', 'full'" in bad.output


@pytest.mark.parametrize("mode", ["full", "chroma"])
def test_onnx_export_carries_the_filter(tmp_path, mode):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from engan.export.api import ExportConfig, export_model

    g = _gen(mode).eval()
    ckpt = save_generator(tmp_path / "g.safetensors", g)
    result = export_model(ExportConfig(checkpoint=str(ckpt), out=str(tmp_path / "x"), engine=None,
                                       check_sizes=((64, 64),)), log=lambda _: None)
    assert result.parity is not None and result.parity.passed
    sess = ort.InferenceSession(str(result.onnx), providers=["CPUExecutionProvider"])
    x = _noisy_flat(0.01, level=0.08, size=48).numpy()[..., :48]
    with torch.no_grad():
        ref, plain = g(torch.from_numpy(x)).numpy(), _gen("off").eval()(torch.from_numpy(x)).numpy()
    out = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    assert np.abs(out - ref).max() < 1e-5 and np.abs(ref - plain).max() > 1e-3  # the filter is in the graph


def test_train_cli_saves_noise_prob_and_can_change_it_on_resume(tmp_path):
    from engan.cli.train import train as train_cmd
    from tests.conftest import tiny_train_args

    out = tmp_path / "run"
    args = tiny_train_args(tmp_path, out, "--noise-prob", "0.5")
    res = CliRunner().invoke(train_cmd, args)
    assert res.exit_code == 0, res.output
    assert json.loads((out / "config.json").read_text())["data"]["noise_prob"] == 0.5
    more = CliRunner().invoke(train_cmd, ["--out", str(out), "--resume", "--noise-prob", "0", "--steps", "2", "--quiet"])
    assert more.exit_code == 0, more.output
    assert json.loads((out / "config.json").read_text())["data"]["noise_prob"] == 0.0


def test_engan_help_lists_configure_and_its_options_are_explained():
    from engan.cli import main

    top = CliRunner().invoke(main, ["--help"])
    assert top.exit_code == 0 and "configure" in top.output and "--denoise" in top.output
    sub = CliRunner().invoke(main, ["configure", "--help"])
    assert sub.exit_code == 0
    for word in ("--knee", "--denoise", "chroma", "full", "Changes no weight", "--out"):
        assert word in sub.output
