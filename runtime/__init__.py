"""engan.runtime: torch-free inference (ONNX Runtime, TensorRT; eager torch only on request).

>>> from engan.runtime import Enhancer, available_backends
>>> available_backends()                      # ['ort'] on a CPU box; imports nothing
>>> enh = Enhancer.load("model.onnx")         # or a shipped name, or None for the default
>>> out = enh.enhance(rgb_uint8_array)        # or a PIL image; same kind back
>>> enh.info["reason"]                        # which backend runs, and why

Importing this package is cheap: the public names below load their modules on
first use (PEP 562 ``__getattr__``), and onnxruntime / tensorrt / torch are imported
only when a backend of that kind is created.
"""
from __future__ import annotations

import importlib

TYPE_CHECKING = False  # typing is not imported at run time: engan-infer's entry point sets its
if TYPE_CHECKING:      # signal handlers right after this package loads (engan.runtime.entry)
    from typing import Any

#: public name -> "submodule:attribute"
_LAZY: dict[str, str] = {
    "Enhancer": "enhancer:Enhancer",
    "load": "enhancer:load",
    "resolve_model": "enhancer:resolve_model",
    "available_backends": "select:available_backends",
    "select_backend": "select:select_backend",
    "BackendOptions": "backends.base:BackendOptions",
    "BackendUnavailable": "_optional:BackendUnavailable",
    "BackendError": "backends.base:BackendError",
    "ModelLoadError": "backends.base:ModelLoadError",
    "ModelNotShippedError": "shipped:ModelNotShippedError",
    "default_model_path": "shipped:default_model_path",
    "list_shipped": "shipped:list_shipped",
    "ArtefactMeta": "meta:ArtefactMeta",
    "DEFAULT_MAX_PIXELS": "prepost:DEFAULT_MAX_PIXELS",
}

__all__ = [
    "ArtefactMeta", "BackendError", "BackendOptions", "BackendUnavailable", "DEFAULT_MAX_PIXELS", "Enhancer",
    "ModelLoadError", "ModelNotShippedError", "available_backends", "default_model_path", "list_shipped", "load",
    "resolve_model", "select_backend",
]

if TYPE_CHECKING:  # pragma: no cover
    from engan.runtime._optional import BackendUnavailable
    from engan.runtime.backends.base import BackendError, BackendOptions, ModelLoadError
    from engan.runtime.enhancer import Enhancer, load, resolve_model
    from engan.runtime.meta import ArtefactMeta
    from engan.runtime.prepost import DEFAULT_MAX_PIXELS
    from engan.runtime.select import available_backends, select_backend
    from engan.runtime.shipped import ModelNotShippedError, default_model_path, list_shipped


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'engan.runtime' has no attribute {name!r}")
    module, attr = target.split(":")
    value = getattr(importlib.import_module(f"engan.runtime.{module}"), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
