"""Optional dependencies: find them without importing, import them with an actionable error.

``is_installed`` answers through :func:`importlib.util.find_spec`, so asking which
backends exist never imports onnxruntime, tensorrt or torch. ``require`` imports a
module only when a backend is really used and, when it is missing, raises
:class:`BackendUnavailable` naming the pip command that installs it (never
installs anything itself).
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
from types import ModuleType

#: module -> the install that provides it (shown in error messages).
INSTALL_HINTS: dict[str, str] = {
    "onnxruntime": "pip install onnxruntime   (or onnxruntime-gpu on a CUDA machine; never both)",
    "tensorrt": "pip install 'engan[trt]'",
    "cuda": "pip install 'engan[trt]'",
    "torch": "pip install 'engan[train]'   (on a CPU machine: pip install torch==2.13.0 first)",
    "safetensors": "pip install 'engan[train]'",
    "openvino": "pip install 'engan[openvino]'",
}


class BackendUnavailable(ImportError):
    """A backend's library is not installed or cannot be used here; the message says how to fix it."""


def is_installed(module: str) -> bool:
    """True if ``module`` could be imported, decided without importing it.

    A module blocked with ``sys.modules[name] = None`` counts as not installed.
    """
    if module in sys.modules:
        return sys.modules[module] is not None
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package is missing or blocked
        return False


def install_hint(module: str) -> str:
    """The pip command that provides ``module``."""
    return INSTALL_HINTS.get(module.split(".")[0], f"pip install {module.split('.')[0]}")


def require(module: str, purpose: str) -> ModuleType:
    """Import ``module`` or raise :class:`BackendUnavailable` saying what to install.

    Args:
        module: dotted module name, e.g. ``"onnxruntime"`` or ``"tensorrt"``.
        purpose: what needs it, for the message (e.g. ``"the TensorRT backend"``).

    Returns:
        The imported module.
    """
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise BackendUnavailable(
            f"{purpose} needs the Python package '{module.split('.')[0]}', which cannot be imported here "
            f"({e}); install it with: {install_hint(module)}"
        ) from None


def import_cudart(purpose: str = "the TensorRT backend") -> ModuleType:
    """cuda-python's CUDA runtime bindings (``cuda.bindings.runtime`` in 12.6+, ``cuda.cudart`` before)."""
    for name in ("cuda.bindings.runtime", "cuda.cudart"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise BackendUnavailable(
        f"{purpose} needs cuda-python (module 'cuda.bindings.runtime' or 'cuda.cudart'), which cannot be "
        f"imported here; install it with: {install_hint('cuda')}"
    )
