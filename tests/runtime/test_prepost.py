"""engan.runtime.prepost: dtype conversion, centred padding, tiling and blending (numpy only)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engan.runtime import prepost


# ------------------------------------------------------------------ dtypes and rounding
def test_uint8_round_trip_is_exact_for_every_value():
    u = np.arange(256, dtype=np.uint8)
    f = prepost.to_float(u)
    assert f.dtype == np.float32 and f.min() == 0.0 and f.max() == 1.0
    np.testing.assert_array_equal(prepost.to_uint8(f), u)


def test_uint16_round_trip_is_exact_for_every_value():
    u = np.arange(65536, dtype=np.uint16)
    f = prepost.to_float(u)
    assert f.max() == 1.0
    np.testing.assert_array_equal(prepost.to_uint16(f), u)


def test_float_to_uint8_rounds_to_nearest_not_truncates():
    x = np.array([10.6, 10.4, 0.9999, 254.7, 254.2], dtype=np.float32) / 255
    np.testing.assert_array_equal(prepost.to_uint8(x), [11, 10, 1, 255, 254])
    np.testing.assert_array_equal(prepost.to_uint16(np.float32([100.6 / 65535])), [101])


def test_from_float_clips_out_of_range_values():
    np.testing.assert_array_equal(prepost.to_uint8(np.float32([-0.5, 1.5])), [0, 255])
    np.testing.assert_array_equal(prepost.from_float(np.float32([-0.5, 1.5]), np.float32), [0.0, 1.0])


def test_to_float_refuses_other_dtypes_and_nan():
    with pytest.raises(TypeError, match="unsupported pixel dtype int32; pass uint8, uint16 or float"):
        prepost.to_float(np.zeros((2, 2), np.int32))
    with pytest.raises(ValueError, match="NaN or infinite"):
        prepost.to_float(np.float32([0.5, np.nan]))


def test_layout_helpers():
    img = np.arange(2 * 3 * 3, dtype=np.float32).reshape(2, 3, 3)
    x = prepost.hwc_to_nchw(img)
    assert x.shape == (1, 3, 2, 3) and x.flags.c_contiguous
    np.testing.assert_array_equal(prepost.nchw_to_hwc(x)[0], img)
    gray = np.float32([[0.2, 0.4]])
    rgb = prepost.gray_to_rgb(gray)
    assert rgb.shape == (1, 2, 3)
    np.testing.assert_allclose(prepost.luma(rgb), gray, atol=1e-6)  # weights sum to 1


# ------------------------------------------------------------------ padding
def test_pad_amounts_equal_the_models_centring():
    from engan.models import pad_amounts

    for h in range(1, 70):
        for w in (*range(1, 70), 999, 1000, 1023):
            assert prepost.pad_amounts(h, w) == pad_amounts(h, w), (h, w)


def test_pad_amounts_known_values():
    assert prepost.pad_amounts(17, 999) == (7, 8, 4, 5)
    assert prepost.pad_amounts(1, 1) == (7, 8, 7, 8)
    assert prepost.pad_amounts(15, 15) == (0, 1, 0, 1)
    assert prepost.pad_amounts(400, 600) == (0, 0, 4, 4)
    assert prepost.pad_amounts(32, 48) == (0, 0, 0, 0)


@pytest.mark.parametrize("h,w", [(1, 1), (15, 15), (17, 999), (16, 16), (31, 7), (2, 40), (7, 100), (400, 600)])
def test_pad_matches_torch_pixel_for_pixel_and_crop_is_identity(h, w):
    import torch

    from engan.models import pad_to_multiple

    x = np.random.default_rng(h * 1000 + w).random((1, 3, h, w), dtype=np.float32)
    xp, pads = prepost.pad_to_multiple(x)
    tp, tpads = pad_to_multiple(torch.from_numpy(x))
    assert pads == tpads
    assert xp.shape[-2] % 16 == 0 and xp.shape[-1] % 16 == 0
    np.testing.assert_array_equal(xp, tp.numpy())
    np.testing.assert_array_equal(prepost.crop_padding(xp, pads), x)


def test_pad_reflects_without_repeating_the_edge_and_falls_back_to_edge_when_tiny():
    x = np.arange(17, dtype=np.float32).reshape(1, 1, 17, 1).repeat(16, axis=3)
    xp, (t, b, _, _) = prepost.pad_to_multiple(x)
    assert (t, b) == (7, 8)
    np.testing.assert_array_equal(xp[0, 0, :t, 0], [7, 6, 5, 4, 3, 2, 1])  # reflect: row 0 not repeated
    one = np.float32([[[[0.25]]]])
    op, _ = prepost.pad_to_multiple(one)
    assert op.shape == (1, 1, 16, 16) and np.all(op == 0.25)  # 1x1: edge padding


def test_pad_to_at_least_is_centred_and_crops_back():
    x = np.random.default_rng(4).random((1, 3, 20, 100), dtype=np.float32)
    xp, pads = prepost.pad_to_at_least(x, 64, 64)
    assert xp.shape == (1, 3, 64, 100) and pads == (22, 22, 0, 0)
    np.testing.assert_array_equal(prepost.crop_padding(xp, pads), x)
    same, none = prepost.pad_to_at_least(x, 16, 16)
    assert same is x and none == (0, 0, 0, 0)


def test_aligned_input_is_not_padded():
    x = np.zeros((1, 3, 32, 48), np.float32)
    xp, pads = prepost.pad_to_multiple(x)
    assert xp is x and pads == (0, 0, 0, 0)


# ------------------------------------------------------------------ tile planning
def test_no_plan_when_the_image_fits():
    assert prepost.plan_tiles(400, 608, 400 * 608) is None
    assert prepost.plan_tiles(4096, 4096, None) is None


@given(
    st.integers(1, 80).map(lambda k: 16 * k),
    st.integers(1, 80).map(lambda k: 16 * k),
    st.sampled_from([96 * 96, 128 * 128, 200_000, 1_000_000]),
    st.sampled_from([0, 16, 32, 64]),
)
@settings(max_examples=200, deadline=None)
def test_plan_covers_the_image_within_budget(h, w, budget, overlap):
    plan = prepost.plan_tiles(h, w, budget, overlap=overlap)
    if plan is None:
        assert h * w <= budget
        return
    assert plan.pixels <= budget
    assert plan.tile_h % 16 == 0 and plan.tile_w % 16 == 0
    for starts, tile, length in ((plan.ys, plan.tile_h, h), (plan.xs, plan.tile_w, w)):
        assert starts[0] == 0 and starts[-1] + tile == length
        assert all(s % 16 == 0 for s in starts)
        assert all(b - a <= tile - overlap for a, b in zip(starts, starts[1:]))  # overlap >= requested
    covered = np.zeros((h, w), bool)
    for y0, y1, x0, x1 in plan.boxes():
        covered[y0:y1, x0:x1] = True
    assert covered.all()


def test_planner_prefers_few_wasted_pixels():
    plan = prepost.plan_tiles(2160, 3840, 1_000_000, overlap=64)
    assert plan is not None and plan.pixels <= 1_000_000
    waste = plan.count * plan.pixels / (2160 * 3840)
    assert waste < 1.45, (plan, waste)


def test_explicit_tile_and_limits():
    plan = prepost.plan_tiles(160, 320, None, tile=128, overlap=32)
    assert (plan.tile_h, plan.tile_w) == (128, 128)
    with pytest.raises(ValueError, match="tile must be a positive multiple of 16, got 100"):
        prepost.plan_tiles(160, 320, None, tile=100)
    with pytest.raises(ValueError, match=r"tile 512x512 = 262144 px exceeds max_pixels=100000; lower the tile \(at most 304\)"):
        prepost.plan_tiles(1024, 1024, 100_000, tile=512)
    with pytest.raises(ValueError, match="max_pixels=1000 is too small"):
        prepost.plan_tiles(1024, 1024, 1000)
    capped = prepost.plan_tiles(1088, 1920, None, max_hw=(512, 512))
    assert capped.tile_h <= 512 and capped.tile_w <= 512


def test_blend_weights_are_a_partition_of_unity():
    for length, tile, overlap in [(320, 128, 32), (992, 256, 64), (208, 128, 32)]:
        starts = prepost.tile_starts(length, tile, overlap)
        total = np.zeros(length, np.float32)
        for s, w in zip(starts, prepost.axis_weights(starts, tile)):
            total[s : s + tile] += w
        np.testing.assert_allclose(total, 1.0, atol=2e-4)


def test_tiled_identity_reconstructs_the_input():
    x = np.random.default_rng(0).random((1, 3, 96, 160), dtype=np.float32)
    plan = prepost.plan_tiles(96, 160, 64 * 64, overlap=32)
    y = prepost.run_tiled(lambda a: a.copy(), x, plan)
    np.testing.assert_allclose(y, x, atol=1e-6)


def _box_blur(a: np.ndarray) -> np.ndarray:
    """3x3 mean with zero padding: a local operator with a 1 px radius."""
    p = np.pad(a, [(0, 0), (0, 0), (1, 1), (1, 1)])
    h, w = a.shape[-2:]
    return sum(p[..., i : i + h, j : j + w] for i in range(3) for j in range(3)) / 9.0


def test_tiles_match_untiled_for_a_local_operator():
    """Any operator whose radius is below overlap // 4 is reproduced exactly by tiling."""
    x = np.random.default_rng(1).random((1, 3, 200, 312), dtype=np.float32)
    untiled = prepost.enhance_nchw(_box_blur, x, max_pixels=None)
    tiled = prepost.enhance_nchw(_box_blur, x, max_pixels=96 * 96, overlap=32)
    np.testing.assert_allclose(tiled, untiled, atol=1e-5)


def test_no_backend_call_exceeds_max_pixels_and_batches_split():
    calls: list[tuple[int, ...]] = []

    def spy(a: np.ndarray) -> np.ndarray:
        calls.append(a.shape)
        return a.copy()

    x = np.random.default_rng(2).random((1, 3, 100, 150), dtype=np.float32)
    y = prepost.enhance_nchw(spy, x, max_pixels=64 * 64, overlap=16)
    assert y.shape == x.shape and len(calls) > 1
    assert all(n * h * w <= 64 * 64 and h % 16 == 0 and w % 16 == 0 for n, _, h, w in calls)
    calls.clear()
    batch = np.random.default_rng(3).random((5, 3, 32, 32), dtype=np.float32)
    out = prepost.enhance_nchw(spy, batch, max_pixels=2 * 32 * 32)
    assert [c[0] for c in calls] == [2, 2, 1]
    np.testing.assert_array_equal(out, batch)
    assert not np.shares_memory(out, batch)


def test_enhance_nchw_rejects_non_rgb():
    with pytest.raises(ValueError, match=r"expected float32 Nx3xHxW RGB, got shape \(1, 1, 8, 8\)"):
        prepost.enhance_nchw(lambda a: a, np.zeros((1, 1, 8, 8), np.float32))


def test_fade_strength_is_full_below_lo_none_from_hi_and_smooth_between():
    lo, hi = prepost.FADE_RANGE
    s = prepost.fade_strength(np.array([0.0, lo, (lo + hi) / 2, hi, 1.0]))
    np.testing.assert_allclose(s, [1.0, 1.0, 0.5, 0.0, 0.0], atol=1e-12)
    grid = prepost.fade_strength(np.linspace(0, 1, 101))
    assert np.all(np.diff(grid) <= 0)  # never more enhancement for a brighter photo
    assert prepost.fade_strength(0.3, (0.2, 0.4)) == pytest.approx(0.5)
    for bad in [(0.5, 0.2), (0.3, 0.3), (-0.1, 0.5), (0.1, 1.5), (0.1,), "ab"]:
        with pytest.raises(ValueError, match="fade range must"):
            prepost.fade_strength(0.3, bad)


def _brighten(a: np.ndarray) -> np.ndarray:
    """A stand-in model: doubles every value (clipped)."""
    return np.minimum(a * 2.0, 1.0)


def test_fade_bright_keeps_dark_photos_returns_bright_ones_and_works_per_image():
    rng = np.random.default_rng(4)
    dark = rng.random((1, 3, 48, 64), dtype=np.float32) * 0.2  # mean luma ~0.1: below lo
    bright = 0.3 + rng.random((1, 3, 48, 64), dtype=np.float32) * 0.5  # mean luma ~0.55: above hi
    mid = np.full((1, 3, 48, 64), (sum(prepost.FADE_RANGE) / 2), np.float32)  # exactly half way: s = 0.5
    x = np.concatenate([dark, bright, mid])
    y = prepost.enhance_nchw(_brighten, x, max_pixels=None, fade=prepost.FADE_RANGE)
    np.testing.assert_array_equal(y[0], _brighten(dark)[0])  # dark: the model's output exactly
    np.testing.assert_array_equal(y[1], bright[0])  # well exposed: given back unchanged
    np.testing.assert_allclose(y[2], mid[0] * 1.5, atol=1e-6)  # half way: half the change
    assert y.dtype == np.float32 and y.min() >= 0 and y.max() <= 1
    # without fade the model's output is returned as it is
    np.testing.assert_array_equal(prepost.enhance_nchw(_brighten, x, max_pixels=None), _brighten(x))


def test_fade_uses_the_whole_image_so_tiles_agree():
    """A photo bright on top and dark below: one strength for all of it, tiled or not."""
    x = np.zeros((1, 3, 192, 160), np.float32)
    x[:, :, :96] = 0.8
    x[:, :, 96:] = 0.05  # mean luma 0.425 over the whole image (faded out), 0.05 in the lower tiles alone
    untiled = prepost.enhance_nchw(_brighten, x, max_pixels=None, fade=prepost.FADE_RANGE)
    tiled = prepost.enhance_nchw(_brighten, x, max_pixels=64 * 64, overlap=32, fade=prepost.FADE_RANGE)
    np.testing.assert_array_equal(untiled, x)
    np.testing.assert_allclose(tiled, untiled, atol=1e-6)
