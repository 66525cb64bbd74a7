"""Sensor-noise augmentation (``DataConfig.noise_prob``) and the generator's learned smoothing gate (``denoise``)."""
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
from engan.models.generator import DENOISE_GATE_INIT, UNetGenerator, blur, gaussian_kernel


def _gen(denoise: bool, seed: int = 0, head: str = "curve-residual") -> UNetGenerator:
    torch.manual_seed(seed)
    return UNetGenerator(dataclasses.replace(generator_config("tiny"), head=head, denoise=denoise))


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


# --- the smoothing gate ---------------------------------------------------------------------------------------

def test_blur_kernel_is_normalised_and_keeps_a_flat_image_to_the_border():
    k = gaussian_kernel()
    assert k.shape == (3, 1, 5, 5) and torch.allclose(k.sum(dim=(1, 2, 3)), torch.ones(3))
    flat = torch.full((1, 3, 16, 16), 0.3)
    assert torch.allclose(blur(flat, k), flat, atol=1e-6)
    noisy = flat + 0.1 * torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    assert blur(noisy, k).std() < 0.5 * noisy.std()


def test_gate_adds_one_output_channel_starts_nearly_closed_and_saves_no_buffer():
    lite = dataclasses.replace(generator_config("lite"), head="curve-residual")
    plain, gated = UNetGenerator(lite), UNetGenerator(dataclasses.replace(lite, denoise=True))
    assert count_parameters(gated) - count_parameters(plain) == lite.base_width + 1  # one 1x1 output channel
    assert gated.conv10.bias[-1].item() == DENOISE_GATE_INIT
    assert torch.sigmoid(torch.tensor(DENOISE_GATE_INIT)).item() < 0.05
    assert "blur_kernel" not in gated.state_dict()


@pytest.mark.parametrize("head", ["residual", "curve-residual"])
def test_gate_blends_between_the_plain_output_and_its_blur(head):
    plain, gated = _gen(False, head=head), _gen(True, head=head)
    with torch.no_grad():  # same weights; the gate's channel is the extra last one
        for (name, p), q in zip(plain.named_parameters(), gated.parameters()):
            q.copy_(p) if p.shape == q.shape else q[: p.shape[0]].copy_(p)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 0.3
    plain.train(), gated.train()  # no clamp, so the blend is exact
    ref = plain(x)
    for bias, target in ((-40.0, ref), (40.0, blur(ref, gaussian_kernel()))):
        with torch.no_grad():
            gated.conv10.weight[-1].zero_()
            gated.conv10.bias[-1] = bias
        assert torch.allclose(gated(x), target, atol=1e-5)


def test_denoise_round_trips_through_the_checkpoint_and_old_files_load_without_it(tmp_path):
    g = _gen(True).eval()
    path = save_generator(tmp_path / "g.safetensors", g)
    assert read_metadata(path)["engan.denoise"] == "True"
    back = load_generator(path)
    assert back.config.denoise and back.config.head == "curve-residual"
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.equal(back(x), g(x))
    old = load_generator(save_generator(tmp_path / "old.safetensors", _gen(False)))
    assert old.config.denoise is False


def test_onnx_export_carries_the_gate(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from engan.export.api import ExportConfig, export_model

    g = _gen(True).eval()
    with torch.no_grad():
        g.conv10.bias[-1] = 0.0  # half open, so a missing gate would show
    ckpt = save_generator(tmp_path / "g.safetensors", g)
    result = export_model(ExportConfig(checkpoint=str(ckpt), out=str(tmp_path / "x"), engine=None,
                                       check_sizes=((64, 64),)), log=lambda _: None)
    assert result.parity is not None and result.parity.passed
    sess = ort.InferenceSession(str(result.onnx), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((1, 3, 48, 64), dtype=np.float32) * 0.4
    with torch.no_grad():
        ref = g(torch.from_numpy(x)).numpy()
    out = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    assert np.abs(out - ref).max() < 1e-5


def test_train_cli_saves_noise_and_gate_and_refuses_to_drop_the_gate_on_resume(tmp_path):
    from PIL import Image

    from engan.cli.train import train as train_cmd
    from tests.conftest import make_image

    for sub, dark in (("low", 0.25), ("normal", 0.9)):
        (tmp_path / sub).mkdir()
        for i in range(3):
            Image.fromarray(make_image(40, 40, seed=i, dark=dark)).save(tmp_path / sub / f"{i}.png")
    out = tmp_path / "run"
    args = ["--low", str(tmp_path / "low"), "--normal", str(tmp_path / "normal"), "--out", str(out), "--preset", "tiny",
            "--head", "curve-residual", "--denoise", "--noise-prob", "0.5", "--steps", "1", "--crop", "32",
            "--batch", "1", "--ndf", "8", "--threads", "1", "--quiet"]
    res = CliRunner().invoke(train_cmd, args)
    assert res.exit_code == 0, res.output
    saved = json.loads((out / "config.json").read_text())
    assert saved["model"]["generator"]["denoise"] is True and saved["data"]["noise_prob"] == 0.5
    assert read_metadata(out / "generator.safetensors")["engan.denoise"] == "True"
    again = CliRunner().invoke(train_cmd, ["--out", str(out), "--resume", "--no-denoise", "--steps", "2", "--quiet"])
    assert again.exit_code != 0 and "other architecture options" in again.output
    more = CliRunner().invoke(train_cmd, ["--out", str(out), "--resume", "--noise-prob", "0", "--steps", "2", "--quiet"])
    assert more.exit_code == 0, more.output
    assert json.loads((out / "config.json").read_text())["data"]["noise_prob"] == 0.0
