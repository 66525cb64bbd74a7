"""Shared fixtures: where the read-only research data lives, tiny generated images and models.

Plain helper functions live in tests/helpers.py.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import SHARED, export_test_onnx, make_image

# `--backend auto` prefers OpenVINO on CPUs where it measured faster (AMX): tests that expect ONNX Runtime's
# pixels and lines pin it off, in this process and the engan-infer processes they start; the rule itself is
# tested with made-up CPUs (tests/runtime/test_backend_table.py).
os.environ["ENGAN_AUTO_OPENVINO"] = "0"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """../shared (or $ENGAN_SHARED); tests that need it skip with the reason when it is absent."""
    if not (SHARED / "data").is_dir():
        pytest.skip(f"research data not found at {SHARED}/data (set ENGAN_SHARED to its folder)")
    return SHARED


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
    from engan import __version__
    from engan.models.checkpoint import file_sha256, load_generator
    from engan.runtime.meta import ArtefactMeta

    g = load_generator(tiny_checkpoint)
    meta = ArtefactMeta(version=__version__, model_name="tiny-test", preset="tiny",
                        params=sum(p.numel() for p in g.parameters()),
                        checkpoint_sha256=file_sha256(tiny_checkpoint), opset=17)
    return export_test_onnx(g, tmp_path_factory.mktemp("onnx") / "tiny.onnx", meta)
