"""Helpers shared by test files in several folders (plain functions; fixtures live in conftest.py).

Test files import from here (``from tests.helpers import make_image``), never from each other.
"""
from __future__ import annotations

import contextlib
import errno
import functools
import html.parser
import os
import re
import struct
import urllib.parse
import zlib
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from PIL import Image, ImageCms

#: The checkout: tests/ is one level below it.
REPO = Path(__file__).resolve().parents[1]
#: ../shared (or $ENGAN_SHARED): the read-only research data.
SHARED = Path(os.environ.get("ENGAN_SHARED", REPO.parent / "shared"))


# ------------------------------------------------------------------------------ images


def make_image(h: int, w: int, seed: int = 0, dark: float = 0.3) -> np.ndarray:
    """A smooth, deterministic HxWx3 uint8 RGB test image (no research data needed)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([np.sin(xx / 7 + c) * np.cos(yy / 5 - c) for c in range(3)], -1)
    img = (base * 0.5 + 0.5) * dark + rng.random((h, w, 3), dtype=np.float32) * 0.05
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def png_bytes(w: int, h: int, depth: int, ctype: int, raw: bytes = b"") -> bytes:
    """A PNG assembled chunk by chunk (so the header can claim anything)."""
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, ctype, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def paeth_png16(arr: np.ndarray) -> bytes:
    """A 16-bit PNG whose rows cycle through all five filters (an independent encoder)."""
    h, w, c = arr.shape
    ctype = {2: 4, 3: 2, 4: 6}[c]
    bpp = 2 * c
    rows = np.ascontiguousarray(arr.astype(">u2")).view(np.uint8).reshape(h, -1).astype(np.int32)
    out = []
    prev = np.zeros_like(rows[0])
    for i, row in enumerate(rows):
        ftype = i % 5
        left = np.concatenate([np.zeros(bpp, np.int32), row[:-bpp]])
        upleft = np.concatenate([np.zeros(bpp, np.int32), prev[:-bpp]])
        if ftype == 0:
            f = row
        elif ftype == 1:
            f = row - left
        elif ftype == 2:
            f = row - prev
        elif ftype == 3:
            f = row - (left + prev) // 2
        else:
            p = left + prev - upleft
            pa, pb, pc = abs(p - left), abs(p - prev), abs(p - upleft)
            pred = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, prev, upleft))
            f = row - pred
        out.append(bytes([ftype]) + (f % 256).astype(np.uint8).tobytes())
        prev = row
    return png_bytes(w, h, 16, ctype, b"".join(out))


@functools.lru_cache(maxsize=None)
def srgb_icc() -> bytes:
    """An sRGB profile (built once: its header carries a creation time)."""
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


# ------------------------------------------------------------------------------ training


def tiny_train_args(root: Path, out: Path, *options: str, recipe: str | None = "smoke") -> list[str]:
    """Write 3 dark + 3 bright 40x40 images under ``root`` and return `engan train` arguments
    for a 1-step run on them into ``out`` (crop 32, ndf 8, one thread), followed by ``options``.

    ``recipe``: the recipe named (the tiny ``smoke`` one), or None for none (the default recipe's losses, and
    with ``--pretrained`` the file's generator)."""
    for sub, dark in (("low", 0.25), ("normal", 0.9)):
        (root / sub).mkdir(exist_ok=True)
        for i in range(3):
            Image.fromarray(make_image(40, 40, seed=i, dark=dark)).save(root / sub / f"{i}.png")
    return [*(["--recipe", recipe] if recipe else []), "--low", str(root / "low"), "--normal", str(root / "normal"),
            "--out", str(out), "--steps", "1", "--batch", "1", "--set", "data.crop=32", "--set", "discriminator.ndf=8",
            "--set", "train.threads=1", "--quiet", *options]


def tiny_config(data_dirs, steps: int = 3, **train):
    """An ExperimentConfig for fast CPU training tests: tiny generator, ndf 8, crop 32, 1 thread.

    ``train`` overrides TrainConfig fields (defaults here: batch 2, save/sample every 2, EMA 0.9).
    """
    from engan.config import DataConfig, DiscriminatorConfig, ExperimentConfig, TrainConfig, model_config

    low, normal = data_dirs
    return ExperimentConfig(
        model=model_config("tiny"),
        discriminator=DiscriminatorConfig(ndf=8),
        data=DataConfig(low_dir=str(low), normal_dir=str(normal), crop=32),
        train=TrainConfig(**{"steps": steps, "batch": 2, "save_every": 2, "sample_every": 2, "threads": 1,
                             "ema_decay": 0.9, **train}),
    )


@contextlib.contextmanager
def disk_full_for(monkeypatch, matches: Callable[[Path], bool], divisor: int = 2) -> Iterator[None]:
    """ENOSPC in every atomic write of a file ``matches`` accepts, after 1/``divisor`` of the first chunk."""
    import engan.runtime.atomic as atomic

    real_open = atomic.atomic_open

    class FullDisk:
        def __init__(self, f):
            self.f = f

        def write(self, data):
            self.f.write(data[: len(data) // divisor])
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.f, name)

    @contextlib.contextmanager
    def full(path, mode="wb"):
        with real_open(path, mode) as f:
            yield FullDisk(f) if matches(Path(path)) else f

    with monkeypatch.context() as m:
        m.setattr(atomic, "atomic_open", full)
        yield


# ------------------------------------------------------------------------------ models


def int8_copy(src: Path, dst: Path, **meta: str) -> Path:
    """A copy of an FP32 engan ONNX whose metadata marks it as its INT8 export (or as ``meta`` says)."""
    import onnx

    model = onnx.load(str(src))
    props = {p.key: p.value for p in model.metadata_props}
    props.update({"engan.precision": "int8", **{f"engan.{k}": v for k, v in meta.items()}})
    del model.metadata_props[:]
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(dst))
    return dst


# ------------------------------------------------------------------------------ evaluation sets


def make_paired_set(root: Path, n: int = 3, h: int = 48, w: int = 64) -> Path:
    """low/ + high/ PNGs: the same smooth pattern, dark and bright."""
    for sub in ("low", "high"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(make_image(h, w, seed=i, dark=0.25)).save(root / "low" / f"{i + 1}.png")
        Image.fromarray(make_image(h, w, seed=i, dark=0.9)).save(root / "high" / f"{i + 1}.png")
    return root


def make_unpaired_set(root: Path, n: int = 2) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(make_image(100, 200, seed=10 + i, dark=0.3)).save(root / f"{i:02d}.jpg", quality=95)
    return root


# ------------------------------------------------------------------------------ engan-infer's pages


class _Links(html.parser.HTMLParser):
    """Collects img src and a href attributes, and the table rows."""

    def __init__(self) -> None:
        super().__init__()
        self.srcs: list[str] = []
        self.hrefs: list[str] = []
        self.rows = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.srcs.append(a["src"])
        elif tag == "a":
            self.hrefs.append(a["href"])
        elif tag == "tr":
            self.rows += 1


def parse_links(page: str) -> _Links:
    p = _Links()
    p.feed(page)
    return p


def resolve(url: str, page_dir: Path) -> Path:
    """Where a browser opening page_dir/index.html would look for a relative URL."""
    return Path(os.fsdecode(os.path.join(os.fsencode(page_dir), urllib.parse.unquote_to_bytes(url))))


# ------------------------------------------------------------------------------ engan-infer through click


SUMMARY = re.compile(r"^(\d+) enhanced, (\d+) failed, (\d+) skipped in \d+\.\d s$", re.M)


def run_cli(*args: str | os.PathLike, model: Path | None = None):
    """`engan-infer ARGS [--model MODEL]` in this process (click's CliRunner, exceptions not caught)."""
    from click.testing import CliRunner

    from engan.runtime.cli.main import main as infer_main

    argv = [os.fspath(a) for a in args]
    if model is not None:
        argv += ["--model", os.fspath(model)]
    return CliRunner().invoke(infer_main, argv, catch_exceptions=False)


def counts(result) -> tuple[int, int, int]:
    m = SUMMARY.search(result.stdout)
    assert m, result.output
    return int(m[1]), int(m[2]), int(m[3])


def failed_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("FAILED ")]


def save(path: Path, im: Image.Image, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, **kw)
    return path


def rgb(h: int, w: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(make_image(h, w, seed=seed))


class FakeEnhancer:
    """Brightens by 2x; raises for images of a chosen width; counts batch calls."""

    info = {"backend": "fake", "device": "cpu", "precision": "fp32", "model": "fake.onnx", "reason": "test"}

    def __init__(self, fail_width: int | None = None) -> None:
        self.fail_width = fail_width
        self.batches: list[int] = []

    def enhance(self, image):
        if isinstance(image, np.ndarray):
            return np.minimum(image.astype(np.uint32) * 2, 65535).astype(image.dtype)
        if image.size[0] == self.fail_width:
            raise RuntimeError("backend exploded")
        return image.point(lambda v: min(255, v * 2)) if image.mode != "I;16" else image

    def enhance_batch(self, images):
        self.batches.append(len(images))
        return [self.enhance(im) for im in images]


def export_test_onnx(g, path: Path, meta) -> Path:
    """Export the torch generator ``g`` to ``path`` (opset 17, dynamic N/H/W) with ``meta`` (an ArtefactMeta)."""
    import warnings

    import onnx
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            g, torch.rand(1, 3, 32, 32), str(path), input_names=["input"], output_names=["output"],
            dynamic_axes={"input": {0: "N", 2: "H", 3: "W"}, "output": {0: "N", 2: "H", 3: "W"}},
            opset_version=17, dynamo=False,
        )
    model = onnx.load(str(path))
    for k, v in meta.to_props().items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.save(model, str(path))
    return path
