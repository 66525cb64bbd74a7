"""Exposure response (engan.eval.response): the ratio tells a model that keeps exposure order from one that flattens it."""
import numpy as np
import pytest
from PIL import Image

from engan.eval.response import exposure_response, load_photos


def _photos(n=3, seed=0, high=200):
    rng = np.random.default_rng(seed)
    return [rng.integers(20, high, size=(24, 32, 3), dtype=np.uint8) for _ in range(n)]


def test_identity_keeps_exposure_order_ratio_is_the_divisor():
    r = exposure_response(lambda x: x, _photos())
    assert r.factors == (1.0, 2.0, 4.0)
    assert r.output_luma == pytest.approx(r.input_luma)
    assert r.ratio == pytest.approx(4.0, rel=0.01)  # 8-bit rounding of the darkened copies aside


def test_a_constant_brightener_flattens_ratio_one():
    grey = lambda x: np.full_like(x, 110)  # noqa: E731 - every input lifted to the same level
    r = exposure_response(grey, _photos())
    assert r.output_luma == pytest.approx((110.0, 110.0, 110.0))
    assert r.ratio == pytest.approx(1.0)


def test_a_gain_keeps_the_order_of_a_linear_model():
    gain = lambda x: np.clip(x.astype(np.float64) * 3, 0, 255).round().astype(np.uint8)  # noqa: E731
    r = exposure_response(gain, _photos(high=160), factors=(2, 4))  # x3 stays under 255
    assert r.ratio == pytest.approx(2.0, rel=0.02)
    assert r.output_luma[0] == pytest.approx(3 * r.input_luma[0], rel=0.01)


@pytest.mark.parametrize("factors", [(1,), (2, 1), (0.5, 2), (1, 1)])
def test_bad_factors_are_refused(factors):
    with pytest.raises(ValueError, match="increasing divisors"):
        exposure_response(lambda x: x, _photos(), factors)


def test_no_images_is_refused():
    with pytest.raises(ValueError, match="at least one image"):
        exposure_response(lambda x: x, [])


def test_load_photos_spreads_over_the_folder_and_fits_the_side(tmp_path):
    for i in range(10):
        Image.fromarray(np.full((100, 60, 3), 10 * i, np.uint8)).save(tmp_path / f"{i:02d}.png")
    photos = load_photos(tmp_path, count=5, side=50)
    assert len(photos) == 5
    assert [int(p[0, 0, 0]) for p in photos] == [0, 20, 40, 60, 80]
    assert photos[0].shape == (50, 30, 3)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images"):
        load_photos(tmp_path / "empty")
