"""FP32 ONNX -> FP16 ONNX (FP16 weights and compute, FP32 inputs and outputs).

Uses onnxconverter-common's ``convert_float_to_float16(keep_io_types=True)``: the
graph keeps the float32 ``input``/``output`` contract, so every runtime feeds it the
same arrays. Its default block list keeps ``Resize`` (the decoder's bilinear x2) in
FP32 with casts around it, which is also what lets ONNX Runtime's CPU provider run
the file for the parity check. The speed-up exists on GPU providers only: on CPU
every FP16 conv falls back to FP32 with casts.
"""
from __future__ import annotations

import dataclasses
import os
import warnings
from pathlib import Path

from engan.export.onnx import check_contract, set_metadata
from engan.runtime.atomic import atomic_write_bytes
from engan.runtime.meta import ArtefactMeta


def convert_to_fp16(src: str | os.PathLike, dst: str | os.PathLike, meta: ArtefactMeta) -> Path:
    """Write an FP16 copy of the FP32 ONNX file ``src`` to ``dst`` (atomically).

    Args:
        src: an engan FP32 ONNX file.
        dst: destination (conventionally ``model.fp16.onnx``).
        meta: the FP32 artefact's metadata; written with ``precision="fp16"``.

    Returns:
        ``dst`` as a Path.
    """
    import onnx
    from onnxconverter_common import float16

    model = onnx.load(str(src))
    with warnings.catch_warnings():
        # one warning per weight below FP16's range (clamped to +-1e-7): noise, not news
        warnings.simplefilter("ignore", UserWarning)
        fp16 = float16.convert_float_to_float16(model, keep_io_types=True)
    set_metadata(fp16, dataclasses.replace(meta, precision="fp16", extra=dict(meta.extra)))
    check_contract(fp16, dst)
    dst = Path(dst)
    atomic_write_bytes(dst, fp16.SerializeToString())
    return dst
