"""Shared fixtures: where the read-only research data lives, and tiny generated images."""
from __future__ import annotations

import contextlib
import errno
from typing import Callable, Iterator

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ENGAN_SHARED", REPO.parent / "shared"))
# `--backend auto` prefers OpenVINO on CPUs where it measured faster (AMX): tests that expect ONNX Runtime's
# pixels and lines pin it off, in this process and the engan-infer processes they start; the rule itself is
# tested with made-up CPUs (test_backend_table.py).
os.environ["ENGAN_AUTO_OPENVINO"] = "0"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """../shared (or $ENGAN_SHARED); tests that need it skip with the reason when it is absent."""
    if not (SHARED / "data").is_dir():
        pytest.skip(f"research data not found at {SHARED}/data (set ENGAN_SHARED to its folder)")
    return SHARED


def make_image(h: int, w: int, seed: int = 0, dark: float = 0.3) -> np.ndarray:
    """A smooth, deterministic HxWx3 uint8 RGB test image (no research data needed)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([np.sin(xx / 7 + c) * np.cos(yy / 5 - c) for c in range(3)], -1)
    img = (base * 0.5 + 0.5) * dark + rng.random((h, w, 3), dtype=np.float32) * 0.05
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def tiny_train_args(root: Path, out: Path, *options: str, recipe: str | None = "smoke") -> list[str]:
    """Write 3 dark + 3 bright 40x40 images under ``root`` and return `engan train` arguments
    for a 1-step run on them into ``out`` (crop 32, ndf 8, one thread), followed by ``options``.

    ``recipe``: the recipe named (the tiny ``smoke`` one), or None for none (the default recipe's losses, and
    with ``--pretrained`` the file's generator)."""
    from PIL import Image

    for sub, dark in (("low", 0.25), ("normal", 0.9)):
        (root / sub).mkdir(exist_ok=True)
        for i in range(3):
            Image.fromarray(make_image(40, 40, seed=i, dark=dark)).save(root / sub / f"{i}.png")
    return [*(["--recipe", recipe] if recipe else []), "--low", str(root / "low"), "--normal", str(root / "normal"),
            "--out", str(out), "--steps", "1", "--batch", "1", "--set", "data.crop=32", "--set", "discriminator.ndf=8",
            "--set", "train.threads=1", "--quiet", *options]


@pytest.fixture
def tiny_image() -> np.ndarray:
    return make_image(40, 56)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A `tiny`-preset generator saved as safetensors (random init, fixed seed)."""
    import torch

    from engan.models import create_generator
    from engan.models.checkpoint import save_generator

    torch.manual_seed(0)
    g = create_generator("tiny").eval()
    return save_generator(tmp_path_factory.mktemp("ckpt") / "generator.safetensors", g)


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory, tiny_checkpoint) -> Path:
    """The tiny generator as an engan-contract ONNX file (dynamic N/H/W, metadata props).

    Built directly with torch.onnx so runtime tests do not depend on the exporter's
    extras; the exporter has its own tests.
    """
    import warnings

    import onnx
    import torch

    from engan import __version__
    from engan.models.checkpoint import file_sha256, load_generator
    from engan.runtime.meta import ArtefactMeta

    g = load_generator(tiny_checkpoint)
    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            g, torch.rand(1, 3, 32, 32), str(path), input_names=["input"], output_names=["output"],
            dynamic_axes={"input": {0: "N", 2: "H", 3: "W"}, "output": {0: "N", 2: "H", 3: "W"}},
            opset_version=17, dynamo=False,
        )
    model = onnx.load(str(path))
    meta = ArtefactMeta(version=__version__, model_name="tiny-test", preset="tiny",
                        params=sum(p.numel() for p in g.parameters()),
                        checkpoint_sha256=file_sha256(tiny_checkpoint), opset=17)
    for k, v in meta.to_props().items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.save(model, str(path))
    return path


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
