"""What a model argument means: a path, a run folder or a shipped model name (torch-free).

Every command and API that takes a model (``engan-infer --model``, ``Enhancer.load``,
``engan export --checkpoint``, ``engan train --pretrained``, a teacher of the
``consistency`` loss term, ``engan eval --model``) resolves it here, so the same words
mean the same thing everywhere. Which file inside a run folder is then the caller's
concern (:func:`engan.models.checkpoint.resolve_checkpoint`).
"""
from __future__ import annotations

import os
from pathlib import Path

from engan.runtime.probe import MODEL_KINDS
from engan.runtime.shipped import default_model_path, list_shipped, shipped_model_path

#: suffixes that mark an argument as a file path, never a shipped name
MODEL_SUFFIXES = tuple(suffix for suffixes in MODEL_KINDS.values() for suffix in suffixes)


def looks_like_name(value: str) -> bool:
    """True for ``engan-lite``-like words: no folder separator and no model-file suffix."""
    return os.sep not in value and "/" not in value and Path(value).suffix.lower() not in MODEL_SUFFIXES


def resolve_model_source(value: str | os.PathLike | None, kind: str = "onnx") -> Path:
    """Map a model argument to the path to load.

    Args:
        value: an existing file or folder (returned as given, ``~`` expanded), a shipped model
            name, or None for the shipped default model.
        kind: which of a shipped model's files: ``onnx`` or ``safetensors``.

    Raises:
        engan.runtime.shipped.ModelNotShippedError: None or a name, and no such shipped model.
        FileNotFoundError: a path that does not exist (the message says what to pass).
    """
    if value is None:
        return default_model_path(kind)
    p = Path(value).expanduser()
    if p.exists():
        return p
    if looks_like_name(str(value)):
        return shipped_model_path(str(value), kind)
    shipped = list_shipped(kind)
    raise FileNotFoundError(
        f"model not found: {p}; pass an existing .onnx (from `engan export`), .engine/.plan, .safetensors file or "
        f"run folder, or a shipped model name ({', '.join(shipped) if shipped else 'none ships with this build yet'})"
    )
