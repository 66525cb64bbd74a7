"""Hardening: memory stays flat over many consecutive images.

One Enhancer (tiny ONNX model) enhances 500 images of a few different sizes and kinds;
the resident set size after the first 50 (allocator pools, ONNX Runtime's arena and
per-shape memory patterns warmed up) and after all 500 must agree within 10 MB (measured
growth: under 1 MB). The same holds for `engan-infer`'s decode -> enhance -> encode
pipeline over a folder of 300 files.
Thread safety (8 threads = sequential pixels) is tested in test_enhancer.py.
"""
from __future__ import annotations

import gc
import os

import numpy as np
from click.testing import CliRunner
from PIL import Image

from engan.runtime import Enhancer
from tests.helpers import make_image

N_IMAGES, WARM, MAX_GROWTH_MB = 500, 50, 10.0  # measured: < 1 MB


def rss_mb() -> float:
    """Resident set size of this process in MB (from /proc/self/statm)."""
    with open("/proc/self/statm") as f:
        resident_pages = int(f.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def test_rss_is_flat_over_500_consecutive_images(tiny_onnx):
    enh = Enhancer.load(tiny_onnx, threads=1)
    # a photo folder's mix: a few sizes (odd ones padded), numpy and PIL, RGB and grey
    sizes = [(48, 64), (37, 53), (64, 48), (80, 80), (17, 99)]
    images = []
    for i, (h, w) in enumerate(sizes):
        arr = make_image(h, w, seed=i)
        images += [arr, Image.fromarray(arr), Image.fromarray(arr).convert("L")]
    checksum, marks = 0, {}
    for i in range(N_IMAGES):
        out = enh.enhance(images[i % len(images)])
        checksum += int(np.asarray(out)[0, 0].sum())
        if i + 1 in (WARM, N_IMAGES):
            gc.collect()
            marks[i + 1] = rss_mb()
    growth = marks[N_IMAGES] - marks[WARM]
    assert growth < MAX_GROWTH_MB, f"RSS grew {growth:.1f} MB from image {WARM} to {N_IMAGES}: {marks}"
    assert checksum > 0  # the outputs were real images


def test_rss_is_flat_over_a_folder_of_300_files_through_engan_infer(tmp_path, tiny_onnx, monkeypatch):
    from engan.runtime.cli import pipeline
    from engan.runtime.cli.main import main as infer_main

    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    n = 300
    for i in range(n):
        h, w = [(48, 64), (37, 53), (64, 48)][i % 3]
        Image.fromarray(make_image(h, w, seed=i % 7)).save(src / f"{i:04d}.png")
    enh = Enhancer.load(tiny_onnx, threads=1)
    marks: dict[int, float] = {}

    class Measured:
        info = enh.info
        calls = 0

        def enhance(self, image):
            Measured.calls += 1
            if Measured.calls in (WARM, n):
                gc.collect()
                marks[Measured.calls] = rss_mb()
            return enh.enhance(image)

        def enhance_batch(self, images):
            return [self.enhance(im) for im in images]

    monkeypatch.setattr(pipeline, "load_enhancer", lambda opts: Measured())
    r = CliRunner().invoke(infer_main, [str(src), str(out), "--workers", "2", "--quiet"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert len(os.listdir(out)) == n
    growth = marks[n] - marks[WARM]
    assert growth < MAX_GROWTH_MB, f"RSS grew {growth:.1f} MB from file {WARM} to {n}: {marks}"
