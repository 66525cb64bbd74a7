"""PSNR / SSIM / brightness / clipping on images with known answers."""
from __future__ import annotations

import math

import numpy as np
import pytest

from engan.eval import metrics
from engan.runtime.parity import psnr
from engan.runtime.prepost import to_uint8
from tests.helpers import make_image


def test_psnr_identical_images_is_capped_at_100_db():
    img = make_image(32, 48)
    assert metrics.psnr_8bit(img, img.copy()) == metrics.PSNR_CAP_DB == 100.0


@pytest.mark.parametrize("k", [1, 5, 20])
def test_psnr_of_plus_minus_k_noise_is_analytic(k):
    """Every pixel moved by exactly +k or -k (no clipping): MSE = k^2, PSNR = 20 log10(255 / k)."""
    rng = np.random.default_rng(k)
    ref = np.full((40, 56, 3), 128, dtype=np.uint8)
    noisy = (ref.astype(np.int16) + k * rng.choice([-1, 1], size=ref.shape)).astype(np.uint8)
    assert metrics.psnr_8bit(ref, noisy) == pytest.approx(20 * math.log10(255 / k), abs=1e-9)


def test_psnr_of_discrete_uniform_noise_matches_its_variance():
    """Noise uniform on {-k..k}: E[MSE] = k(k+1)/3; on 300k samples within 0.02 dB."""
    k = 6
    rng = np.random.default_rng(0)
    ref = np.full((200, 500, 3), 100, dtype=np.uint8)
    noisy = (ref.astype(np.int16) + rng.integers(-k, k + 1, size=ref.shape)).astype(np.uint8)
    expected = 10 * math.log10(255**2 / (k * (k + 1) / 3))
    assert metrics.psnr_8bit(ref, noisy) == pytest.approx(expected, abs=0.02)


def test_ssim_identity_is_one_and_drops_with_noise():
    img = make_image(64, 64, dark=0.9)
    assert metrics.ssim(img, img) == pytest.approx(1.0, abs=1e-12)
    rng = np.random.default_rng(1)
    noisy = np.clip(img.astype(np.int16) + rng.integers(-30, 31, img.shape), 0, 255).astype(np.uint8)
    assert 0.0 < metrics.ssim(img, noisy) < 0.9


def test_metrics_refuse_mismatched_or_float_inputs():
    a = make_image(16, 16)
    with pytest.raises(ValueError, match=r"image shapes differ: reference \(16, 16, 3\) vs test \(16, 32, 3\)"):
        metrics.psnr_8bit(a, make_image(16, 32))
    with pytest.raises(ValueError, match="expect uint8 images .* round outputs to 8 bits first"):
        metrics.ssim(a, a.astype(np.float32))


def test_to_uint8_rounds_and_clips():
    x = np.array([-0.2, 0.0, 0.5 / 255, 1.4 / 255, 1.6 / 255, 1.0, 1.7])
    assert to_uint8(x).tolist() == [0, 0, 0, 1, 2, 255, 255]


def test_psnr_is_scikit_images_to_the_last_bit():
    """eval's PSNR is the runtime's (peak 255), equal to scikit-image's value, not just close to it."""
    skimage_metrics = pytest.importorskip("skimage.metrics")
    rng = np.random.default_rng(7)
    for _ in range(200):
        h, w = rng.integers(1, 40, 2)
        ref = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        test = np.clip(ref.astype(np.int16) + rng.integers(-40, 41, ref.shape), 0, 255).astype(np.uint8)
        if np.array_equal(ref, test):
            continue
        expected = float(skimage_metrics.peak_signal_noise_ratio(ref, test, data_range=255))
        assert psnr(ref, test, peak=255.0) == expected
        assert metrics.psnr_8bit(ref, test) == min(expected, metrics.PSNR_CAP_DB)


def test_to_uint8_gives_evals_old_float64_rounding():
    """``rint(clip(x) * 255)`` in float64 for float64 input, as engan.eval rounded before it used the runtime's."""
    x = np.random.default_rng(3).random(100_000) * 1.2 - 0.1
    x[:256] = (np.arange(256) + 0.5) / 255  # half-way cases
    old = np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(to_uint8(x), old)


def test_brightness_is_mean_bt601_luma():
    img = np.zeros((4, 4, 3), dtype=np.uint8)
    img[..., 0] = 200  # pure red 200 -> 0.299 * 200
    assert metrics.brightness(img) == pytest.approx(59.8)
    assert metrics.brightness(np.full((3, 3, 3), 77, np.uint8)) == pytest.approx(77.0)


def test_finite_mean_skips_missing_values():
    assert metrics.finite_mean([1.0, None, float("nan"), 3.0]) == 2.0
    assert math.isnan(metrics.finite_mean([None]))


def test_clipped_counts_only_the_saturation_the_enhancement_made():
    src = np.full((4, 5, 3), 100, np.uint8)
    src[0, 0] = (255, 10, 10)  # already saturated in the input: never counted
    out = src.copy()
    out[1, :, 0] = 255  # one channel blown on a whole row of 5 pixels
    out[0, 0] = 255
    assert metrics.clipped(out, src) == pytest.approx(100 * 5 / 20)
    assert metrics.clipped(src, src) == 0.0
    assert metrics.clipped(np.full_like(src, 254), src) == 0.0  # 254 is bright, not clipped
    with pytest.raises(ValueError):
        metrics.clipped(out[:2], src)
