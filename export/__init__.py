"""engan.export: generator -> ONNX (FP32/FP16/INT8), TensorRT engine, Triton repository.

One entry point, the same from Python and from ``engan export``::

    from engan.export import ExportConfig, export_model
    result = export_model(ExportConfig(checkpoint="runs/x", fp16=True, triton=True))

Modules: ``formats`` (the table of artefacts the pipeline walks), ``api`` (the
pipeline), ``onnx`` (torch -> ONNX + metadata), ``fp16``, ``quantize`` (the INT8
driver) with ``calibration`` and ``graph_rewrites``, ``tensorrt`` (engine build, skip
decision, timing cache), ``profile`` (HxW shape profiles), ``triton`` (model
repository), ``verify`` (parity, through the runtime's backends).
Attributes load lazily, so importing this package imports neither torch nor onnx.
"""
from __future__ import annotations

from typing import Any

__all__ = ["ExportConfig", "ExportResult", "ExportError", "export_model"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from engan.export import api

        return getattr(api, name)
    raise AttributeError(f"module 'engan.export' has no attribute {name!r}")
