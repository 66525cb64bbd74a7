"""Models that ship inside the package (``engan/runtime/models/``), found by name.

A shipped model is a set of files sharing a name: ``engan-lite.onnx`` (what the
runtime runs), ``engan-lite.safetensors`` (the same weights for the PyTorch
backend) and ``engan-lite.json`` (a model-card summary). ``engan-lite`` resolves to
them. Nothing is ever downloaded.

Until a model ships, every lookup raises :class:`ModelNotShippedError` (a
``FileNotFoundError``) whose message says what to pass instead.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

#: Where shipped models live (installed as package data of engan.runtime).
SHIPPED_DIR = Path(__file__).resolve().parent / "models"

#: The model used when none is named, if it ships; otherwise the first shipped name.
DEFAULT_MODEL = "engan-lite"

#: kind -> file suffix.
KINDS = {"onnx": ".onnx", "safetensors": ".safetensors", "card": ".json"}

_HOW_TO = (
    "pass --model FILE.onnx (from `engan export`), a .safetensors generator or a run folder "
    "(Enhancer.load(model=...) in Python)"
)


class ModelNotShippedError(FileNotFoundError):
    """No shipped model of that name/kind; the message lists what ships and what to pass instead."""


def list_shipped(kind: str = "onnx") -> list[str]:
    """Names of the shipped models that have a file of ``kind`` (``onnx`` or ``safetensors``), sorted."""
    suffix = _suffix(kind)
    if not SHIPPED_DIR.is_dir():
        return []
    return sorted(p.name[: -len(suffix)] for p in SHIPPED_DIR.iterdir() if p.is_file() and p.name.endswith(suffix))


def _suffix(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {sorted(KINDS)}, got {kind!r}")
    return KINDS[kind]


def shipped_model_path(name: str, kind: str = "onnx") -> Path:
    """The file of shipped model ``name`` (e.g. ``engan-lite``) of ``kind``.

    Raises:
        ModelNotShippedError: no such shipped model (the message lists the shipped ones).
    """
    suffix = _suffix(kind)
    stem = name[: -len(suffix)] if name.endswith(suffix) else name
    path = SHIPPED_DIR / f"{stem}{suffix}"
    if path.is_file():
        return path
    names = list_shipped(kind)
    if not names:
        raise ModelNotShippedError(
            f"'{name}' is not a shipped model: no model ships with this build yet (nothing in {SHIPPED_DIR}); "
            + _HOW_TO
        )
    raise ModelNotShippedError(
        f"'{name}' is not a shipped model with a {suffix} file; shipped: {', '.join(names)}. Or {_HOW_TO}"
    )


def default_model_path(kind: str = "onnx") -> Path:
    """The shipped default model's file of ``kind`` (``onnx`` or ``safetensors``).

    Raises:
        ModelNotShippedError: while no model ships with this build.
    """
    names = list_shipped(kind)
    if not names:
        raise ModelNotShippedError(f"no model ships with this build yet (nothing in {SHIPPED_DIR}); {_HOW_TO}")
    return shipped_model_path(DEFAULT_MODEL if DEFAULT_MODEL in names else names[0], kind)


def model_card(name: str) -> dict[str, Any]:
    """The shipped model's ``<name>.json`` summary (empty dict when it has none)."""
    path = SHIPPED_DIR / f"{name}.json"
    if not path.is_file():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))


def shipped_version(path: str | Path) -> str:
    """The release (``version`` in its card) of the shipped model a file belongs to, '' for other files.

    ``engan-lite.onnx``, ``engan-lite.int8.onnx`` and ``engan-lite.safetensors`` in
    :data:`SHIPPED_DIR` all belong to ``engan-lite``.
    """
    p = Path(path)
    try:
        if p.resolve().parent != SHIPPED_DIR:
            return ""
    except OSError:
        return ""
    card = model_card(p.name.split(".", 1)[0])
    return str(card.get("version") or "")
