"""Fixtures of the command-line tests."""
from __future__ import annotations

import pytest


@pytest.fixture
def fake(monkeypatch):
    """engan-infer runs a FakeEnhancer (tests.helpers) instead of loading the model."""
    from engan.runtime.cli import pipeline
    from tests.helpers import FakeEnhancer

    enh = FakeEnhancer()
    monkeypatch.setattr(pipeline, "load_enhancer", lambda opts: enh)
    return enh
