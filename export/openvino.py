"""OpenVINO IR (``model.xml`` + ``model.bin``) from the exported ONNX, and an NNCF INT8 IR.

``engan export --openvino`` calls :func:`write_ir`: OpenVINO reads the FP32 ONNX, the
engan metadata goes into the IR's ``rt_info`` (under ``framework``, where OpenVINO puts
ONNX ``metadata_props``, so an IR and its ONNX read the same), and the weights stay
FP32 (``compress_to_fp16=False``: OpenVINO's default FP16 weight compression would cost
parity for no speed on a CPU). The parity check then runs it through
:class:`engan.runtime.backends.openvino.OpenVINOBackend` like every artefact.

:func:`quantize_ir_int8` is NNCF's post-training INT8 pass on the same calibration
images as ``--int8`` (:mod:`engan.export.calibration`). Measured on the issue-24 Xeon
(AMX) it gains nothing over BF16 and loses parity (37 dB); the benchmark keeps a row
for it so that stays measured.

Both write atomically: the pair is saved into a temp folder beside the target and moved
into place ``.bin`` first, ``.xml`` last, so an ``.xml`` under its final name always
has its complete weights.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

from engan.runtime._optional import BackendUnavailable, require
from engan.runtime.backends.openvino import IR_SECTION
from engan.runtime.meta import ArtefactMeta

class OpenVINOExportError(RuntimeError):
    """The IR cannot be written; the message names the file and the fix."""


def _ov() -> Any:
    try:
        return require("openvino", "--openvino")
    except BackendUnavailable as e:
        raise OpenVINOExportError(str(e)) from None


def set_ir_metadata(model: Any, meta: ArtefactMeta) -> None:
    """Write every ``engan.*`` key of ``meta`` into ``model``'s rt_info (replacing older values)."""
    for key, value in meta.to_props().items():
        model.set_rt_info(value, [IR_SECTION, key])


@contextlib.contextmanager
def _staging(target: Path):
    """A temp folder beside ``target``; on success its ``.xml``/``.bin`` replace the target pair."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp", dir=target.parent))
    try:
        staged = tmp / target.name
        yield staged
        os.replace(staged.with_suffix(".bin"), target.with_suffix(".bin"))
        os.replace(staged, target)  # last: the .xml names a complete .bin
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _save(model: Any, target: Path) -> Path:
    ov = _ov()
    with _staging(target) as staged:
        ov.save_model(model, str(staged), compress_to_fp16=False)
    return target


def write_ir(onnx_path: str | os.PathLike, target: str | os.PathLike, meta: ArtefactMeta) -> Path:
    """Convert the FP32 ONNX to OpenVINO IR at ``target`` (``model.xml``; ``model.bin`` beside it).

    Raises:
        OpenVINOExportError: openvino is missing or cannot read the ONNX.
    """
    ov = _ov()
    target = Path(target)
    try:
        model = ov.Core().read_model(str(onnx_path))
    except Exception as e:  # OpenVINO's own RuntimeError subclasses
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise OpenVINOExportError(f"OpenVINO could not read {onnx_path} ({first}); re-run `engan export`") from None
    set_ir_metadata(model, dataclasses.replace(meta, precision="fp32"))
    return _save(model, target)


def quantize_ir_int8(source: str | os.PathLike, target: str | os.PathLike, meta: ArtefactMeta,
                     calib_dir: str | os.PathLike | None = None, num_images: int = 32,
                     size: tuple[int, int] = (256, 384), progress: bool = False,
                     log: Callable[[str], None] | None = None) -> Path:
    """NNCF post-training INT8 of ``source`` (the FP32 ``.onnx`` or ``.xml``) into the IR ``target``.

    Activations are quantized asymmetrically (NNCF's MIXED preset: they follow LeakyReLU), and
    for an ``.onnx`` source the same layers stay in float as in ONNX Runtime's INT8 copy
    (:data:`engan.export.quantize.DEFAULT_EXCLUDE`: input prologue, first conv, head, tail):
    about 39 dB from FP32 on a LOL photo with the shipped model, where NNCF's defaults gave 30.

    Args:
        calib_dir: folder of low-light photos (None: the default folder of ``--int8``, else generated images).
        num_images: calibration images (spread evenly over the folder).
        size: (H, W) calibration crop, multiples of 16.

    Raises:
        OpenVINOExportError: nncf or openvino missing, or the calibration folder unusable.
    """
    from engan.export.calibration import CalibrationError, load_calibration_batches

    ov = _ov()
    try:
        import nncf
    except ImportError as e:
        raise OpenVINOExportError(f"the OpenVINO INT8 pass needs 'nncf' ({e}); install it with: pip install nncf") from None
    try:
        batches, where = load_calibration_batches(Path(calib_dir) if calib_dir else None, num_images, size, progress)
    except CalibrationError as e:
        raise OpenVINOExportError(str(e)) from None
    model = ov.Core().read_model(str(source))
    name = model.inputs[0].get_any_name()
    scope = None
    if Path(source).suffix.lower() == ".onnx":
        import onnx

        from engan.export.graph_rewrites import resolve_exclusions
        from engan.export.quantize import DEFAULT_EXCLUDE

        ops = {op.get_friendly_name() for op in model.get_ops()}
        keep = [n for n in resolve_exclusions(onnx.load(str(source)), DEFAULT_EXCLUDE) if n in ops]
        scope = nncf.IgnoredScope(names=keep, validate=False)
    quantized = nncf.quantize(model, nncf.Dataset(batches, lambda x: {name: x}), subset_size=len(batches),
                              preset=nncf.QuantizationPreset.MIXED, ignored_scope=scope)
    extra = {**meta.extra, "quantizer": f"nncf {nncf.__version__}", "calibration": where}
    set_ir_metadata(quantized, dataclasses.replace(meta, precision="int8", extra=extra))
    if log is not None:
        log(f"openvino int8: calibrated on {where}")
    return _save(quantized, Path(target))
