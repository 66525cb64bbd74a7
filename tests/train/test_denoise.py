"""Capture degradations (the degraded twin of the ``consistency`` term) and the inference-time noise filter (``denoise``)."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from engan.config import generator_config
from engan.config import DegradeConfig
from engan.data.augment import augment_pair
from engan.data.degrade import degrade, jpeg_roundtrip, linear_to_srgb, srgb_to_linear
from engan.models import count_parameters
from engan.models.checkpoint import load_generator, read_metadata, save_generator
from engan.models.denoise import depthwise, gaussian_kernel, laplacian_kernel, lee_filter, noise_sigma
from engan.models.generator import UNetGenerator, luma


# --- the degraded twin (engan.data.degrade) ------------------------------------------------------------------

def test_srgb_transfer_functions_are_exact_inverses_with_the_linear_toe():
    x = np.linspace(0, 1, 1001, dtype=np.float64)
    assert np.allclose(linear_to_srgb(srgb_to_linear(x)), x, atol=1e-9)
    assert srgb_to_linear(np.array(0.04045)) == pytest.approx(0.04045 / 12.92)  # the toe ends here
    assert srgb_to_linear(np.array(0.5)) == pytest.approx(0.21404, abs=1e-5)  # IEC 61966-2-1
    assert linear_to_srgb(np.array(0.0031308)) == pytest.approx(0.0031308 * 12.92)


def test_exposure_shortfall_divides_linear_light_by_two_to_the_stops():
    img = np.full((3, 32, 32), 0.6, np.float32)
    cfg = DegradeConfig(stops=(1.5, 1.5), shot=(1e-12, 1e-12), read=(1e-12, 1e-12), jpeg_prob=0.0)
    out = degrade(img, np.random.default_rng(0), cfg)
    expected = linear_to_srgb(srgb_to_linear(np.array(0.6)) / 2**1.5)
    assert out.dtype == np.float32 and out.shape == img.shape
    assert np.allclose(out, np.round(expected * 255) / 255)  # noise-free: exactly the darker exposure, 8-bit
    assert np.allclose(out * 255, np.round(out * 255), atol=1e-4)  # on the 8-bit grid


def test_sensor_noise_variance_follows_shot_times_signal_plus_read_squared():
    """Mid grey, no JPEG, no shortfall: the linear-light variance is shot * signal + read^2 (white share only)."""
    img = np.full((3, 256, 256), 0.5, np.float32)
    shot, read = 4e-4, 5e-4
    cfg = DegradeConfig(stops=(0, 0), shot=(shot, shot), read=(read, read), chroma_blur=0.0, jpeg_prob=0.0)
    out = degrade(img, np.random.default_rng(1), cfg)
    lin = srgb_to_linear(out.astype(np.float64))
    s = float(srgb_to_linear(np.array(0.5)))
    # 8-bit rounding adds ~(slope / 255)^2 / 12 in linear light
    step = float(srgb_to_linear(np.array(0.5 + 0.5 / 255))) - float(srgb_to_linear(np.array(0.5 - 0.5 / 255)))
    quant = step**2 / 12
    assert lin.var() == pytest.approx(shot * s + read**2 + quant, rel=0.06)
    assert abs(lin.mean() - s) < 2e-4  # mid grey is not clipped: the noise has no bias there


def test_noise_is_clipped_at_black_and_brightens_the_darkest_pixels_on_average():
    """What sank the old noise_prob runs: a black crop gets brighter from its clipped noise (and so does its mean)."""
    black = np.zeros((3, 64, 64), np.float32)
    out = degrade(black, np.random.default_rng(2), DegradeConfig(stops=(0, 0), jpeg_prob=0.0))
    assert out.min() == 0.0 and out.mean() > 0.0


def test_jpeg_leaves_8x8_blocks_and_degrade_is_a_pure_function_of_the_rng():
    rng = np.random.default_rng(3)
    img = np.clip(rng.random((3, 64, 64), dtype=np.float32) * 0.1 + np.linspace(0, 0.3, 64, dtype=np.float32), 0, 1)
    q = jpeg_roundtrip(img, 60)
    assert q.shape == img.shape and np.abs(q - img).max() > 1 / 255
    # blockiness: the step across 8-pixel block borders exceeds the step inside blocks
    d = np.abs(np.diff(q.mean(0), axis=1))
    assert d[:, 7::8].mean() > 1.1 * np.delete(d, np.s_[7::8], axis=1).mean()
    cfg = DegradeConfig(jpeg_prob=1.0)
    assert np.array_equal(degrade(img, np.random.default_rng(9), cfg), degrade(img, np.random.default_rng(9), cfg))
    with pytest.raises(ValueError, match=r"degrade expects a 3 x H x W RGB array, got shape \(64, 64\)"):
        degrade(img[0], np.random.default_rng(0))


def test_degrade_config_refuses_bad_ranges():
    with pytest.raises(ValueError, match=r"degrade.stops range \[2, 1\] has lo > hi"):
        DegradeConfig(stops=(2, 1))
    with pytest.raises(ValueError, match="must be > 0"):
        DegradeConfig(shot=(0.0, 1e-3))
    with pytest.raises(ValueError, match=r"jpeg_quality \(0, 95\) must lie in \[1, 100\]"):
        DegradeConfig(jpeg_quality=(0, 95))
    assert DegradeConfig(stops=[0, 1]).stops == (0, 1)  # lists from JSON become tuples


def test_the_twin_is_drawn_last_so_the_stream_without_it_is_unchanged():
    rng = np.random.default_rng(0)
    low = (rng.random((48, 48, 3)) * 80).astype(np.uint8)
    normal = (rng.random((48, 48, 3)) * 255).astype(np.uint8)
    off = augment_pair(low, normal, 32, np.random.default_rng(5))
    on = augment_pair(low, normal, 32, np.random.default_rng(5), twin=DegradeConfig())
    assert all(np.array_equal(x, y) for x, y in zip(off[:3], on[:3])) and off[3] is None
    twin = on[3]
    assert twin.shape == on[1].shape and twin.dtype == np.float32
    assert not np.array_equal(twin, on[1])


def test_batches_carry_twins_only_when_asked(tmp_path):
    from PIL import Image

    from tests.helpers import make_image
    from engan.data import UnpairedBatches, load_folder

    for sub, dark in (("low", 0.25), ("normal", 0.9)):
        (tmp_path / sub).mkdir()
        for i in range(2):
            Image.fromarray(make_image(40, 40, seed=i, dark=dark)).save(tmp_path / sub / f"{i}.png")
    low, normal = load_folder(tmp_path / "low"), load_folder(tmp_path / "normal")
    plain = UnpairedBatches(low, normal, 32, 2, seed=1).batch(3)
    twins = UnpairedBatches(low, normal, 32, 2, seed=1, twin=DegradeConfig()).batch(3)
    assert plain.low_degraded is None and twins.low_degraded.shape == (2, 3, 32, 32)
    assert np.array_equal(plain.low_input, twins.low_input)


def test_old_configs_with_noise_prob_load_with_a_warning():
    from engan.config import DataConfig

    with pytest.warns(UserWarning, match="data.noise_prob is no longer supported"):
        cfg = DataConfig.from_dict({"crop": 64, "noise_prob": 0.5})
    assert cfg.crop == 64 and cfg.degrade == DegradeConfig()


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


def test_engan_help_lists_configure_and_its_options_are_explained():
    from engan.cli import main

    top = CliRunner().invoke(main, ["--help"])
    assert top.exit_code == 0 and "configure" in top.output and "--denoise" in top.output
    sub = CliRunner().invoke(main, ["configure", "--help"])
    assert sub.exit_code == 0
    for word in ("--knee", "--denoise", "chroma", "full", "Changes no weight", "--out"):
        assert word in sub.output
