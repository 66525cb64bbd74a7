"""Shared fixtures: where the read-only research data lives, and tiny generated images."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ENGAN_SHARED", REPO.parent / "shared"))


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


@pytest.fixture
def tiny_image() -> np.ndarray:
    return make_image(40, 56)
