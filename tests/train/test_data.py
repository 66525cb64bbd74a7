"""Unpaired data: folder errors, skipped files, formats, deterministic augmented batches."""
from __future__ import annotations

import logging

import numpy as np
import pytest
from PIL import Image

from tests.helpers import make_image
from engan.data import (
    DataError, Prefetcher, UnpairedBatches, augment_pair, darken_factor, list_images, load_folder,
)


def _write(path, h, w, seed=0, fmt=None, mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(make_image(h, w, seed))
    if mode != "RGB":
        img = img.convert(mode)
    img.save(path, format=fmt)
    return path


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match=rf"image folder not found: {tmp_path / 'nope'} \(check the path passed to --low/--normal\)"):
        list_images(tmp_path / "nope")


def test_empty_folder_is_a_clear_error(tmp_path):
    (tmp_path / "notes.txt").write_text("no images here")
    with pytest.raises(DataError, match=rf"no images in {tmp_path} \(looked recursively for .png"):
        load_folder(tmp_path)


def test_recursive_formats_and_modes(tmp_path):
    _write(tmp_path / "a.png", 40, 50)
    _write(tmp_path / "sub" / "b.JPG", 40, 50, fmt="JPEG")
    _write(tmp_path / "sub" / "deeper" / "c.bmp", 40, 50)
    _write(tmp_path / "d.tiff", 40, 50, mode="L")
    _write(tmp_path / "e.webp", 40, 50, mode="RGBA")
    bank = load_folder(tmp_path, min_size=32)
    assert [p.name for p in bank.paths] == ["a.png", "d.tiff", "e.webp", "b.JPG", "c.bmp"]
    assert all(im.shape == (40, 50, 3) and im.dtype == np.uint8 for im in bank.images)
    np.testing.assert_array_equal(bank.images[0], make_image(40, 50, 0))
    assert bank.skipped == ()


def test_unreadable_and_too_small_files_skipped_with_one_warning_each(tmp_path, caplog):
    _write(tmp_path / "good.png", 64, 64)
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
    _write(tmp_path / "small.png", 20, 64)
    with caplog.at_level(logging.WARNING, logger="engan.data"):
        bank = load_folder(tmp_path, min_size=32)
    assert len(bank) == 1 and bank.paths[0].name == "good.png"
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert lines[0].startswith(f"skipping {tmp_path / 'broken.jpg'}: unreadable (")
    assert lines[1] == f"skipping {tmp_path / 'small.png'}: too small (64x20 px, the crop needs at least 32x32)"
    assert [p.name for p, _ in bank.skipped] == ["broken.jpg", "small.png"]


def test_all_files_skipped_is_an_error_naming_the_folder(tmp_path):
    _write(tmp_path / "small.png", 20, 20)
    with pytest.raises(DataError, match=rf"no usable images in {tmp_path}: all 1 files were skipped .*lower --crop"):
        load_folder(tmp_path, min_size=32)


def test_darken_factor_is_the_authors_grid():
    rng = np.random.default_rng(0)
    ts = np.array([darken_factor(rng) for _ in range(5000)])
    assert ts.min() == 2.0 and ts.max() == 4.0
    np.testing.assert_allclose(ts * 100, np.round(ts * 100), atol=1e-9)


def test_augment_pair_shapes_ranges_and_darkening():
    low, normal = make_image(80, 70, 1), make_image(50, 90, 2, dark=0.9)
    darkened = 0
    for seed in range(60):
        a, a_in, b, twin = augment_pair(low, normal, 48, np.random.default_rng(seed))
        assert twin is None  # no twin unless asked for
        assert a.shape == a_in.shape == b.shape == (3, 48, 48)
        assert a.dtype == a_in.dtype == b.dtype == np.float32
        assert 0.0 <= a.min() and a.max() <= 1.0 and 0.0 <= b.min() and b.max() <= 1.0
        if not np.array_equal(a, a_in):
            darkened += 1
            mask = a > 0.05
            t = a[mask] / a_in[mask]
            assert np.ptp(t) < 1e-4 and 2.0 - 1e-5 <= t.mean() <= 4.0 + 1e-5
    assert 15 < darkened < 45  # p = 0.5
    with pytest.raises(ValueError, match="smaller than the crop"):
        augment_pair(low, normal, 64, np.random.default_rng(0))


def test_a_divisor_below_one_brightens_and_clips_at_one():
    low, normal = make_image(80, 70, 1), make_image(50, 90, 2)
    ratios = []
    for seed in range(40):
        a, a_in, _, _ = augment_pair(low, normal, 48, np.random.default_rng(seed), darken_prob=1.0, darken_min=0.5,
                                  darken_max=0.5)
        assert 0.0 <= a_in.min() and a_in.max() <= 1.0  # never above 1
        unclipped = (a > 0.05) & (a * 2 < 1.0)
        ratios.append(a_in[unclipped] / a[unclipped])
        assert np.all(a_in[a * 2 >= 1.0] == 1.0)
    r = np.concatenate(ratios)
    assert r.size and np.allclose(r, 2.0, atol=1e-4)  # t = 0.5 doubles the input
    # the default range is the authors' (2..4, darkening only): clipping never triggers
    _, a_in, _, _ = augment_pair(low, normal, 48, np.random.default_rng(0), darken_prob=1.0)
    assert a_in.max() <= 0.5


@pytest.fixture
def banks(tmp_path):
    for i in range(5):
        _write(tmp_path / "low" / f"{i}.png", 40, 48, seed=i)
    for i in range(3):
        _write(tmp_path / "normal" / f"{i}.png", 48, 40, seed=10 + i)
    return load_folder(tmp_path / "low", 32), load_folder(tmp_path / "normal", 32)


def test_batches_are_a_pure_function_of_seed_step_rank(banks):
    low, normal = banks
    data = UnpairedBatches(low, normal, crop=32, batch=2, seed=7)
    b1, b2 = data.batch(3), UnpairedBatches(low, normal, crop=32, batch=2, seed=7).batch(3)
    for k in ("low", "low_input", "normal"):
        np.testing.assert_array_equal(getattr(b1, k), getattr(b2, k))
        assert getattr(b1, k).shape == (2, 3, 32, 32)
    assert not np.array_equal(data.batch(4).low, b1.low)
    assert not np.array_equal(UnpairedBatches(low, normal, 32, 2, seed=8).batch(3).low, b1.low)


def test_ranks_shard_the_same_stream(banks):
    low, normal = banks
    one = UnpairedBatches(low, normal, crop=32, batch=4, seed=1)
    two = UnpairedBatches(low, normal, crop=32, batch=2, seed=1)
    for step in range(3):
        whole = one.batch(step)
        parts = [two.batch(step, rank=r, world=2) for r in range(2)]
        np.testing.assert_array_equal(np.concatenate([p.low for p in parts]), whole.low)
        np.testing.assert_array_equal(np.concatenate([p.normal for p in parts]), whole.normal)


def test_each_epoch_visits_every_image_once(banks):
    low, normal = banks
    data = UnpairedBatches(low, normal, crop=32, batch=1, seed=0)
    assert data.epoch_len == 5
    for epoch in range(3):
        assert sorted(data._order(epoch).tolist()) == list(range(5))
    assert data._order(0).tolist() != data._order(1).tolist()


@pytest.mark.parametrize("workers", [0, 2])
def test_prefetcher_keeps_order(workers):
    assert list(Prefetcher(lambda s: s * s, 3, 9, workers)) == [s * s for s in range(3, 9)]
