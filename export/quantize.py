"""INT8 static quantization of an engan ONNX generator (ONNX Runtime, QDQ format).

``engan export --int8 [--calib DIR]`` calls :func:`quantize_int8`: ONNX Runtime's
pre-processing, the exact graph rewrites of :mod:`engan.export.graph_rewrites`,
calibration on low-light photos (:mod:`engan.export.calibration`), then
``quantize_static`` with per-channel 7-bit weights and uint8 activations, keeping the
layers that cost the most accuracy in float. On an AVX2 CPU the result runs about 2x
faster than FP32 at 35-40 dB PSNR against it; ``docs/int8.md`` records the measurements
behind each choice of :class:`Int8Config`.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from engan.export.calibration import CalibrationError, load_calibration_batches, make_reader
from engan.export.graph_rewrites import batchnorm_to_depthwise_conv, equalize_channels, resolve_exclusions
from engan.export.onnx import set_metadata
from engan.runtime.atomic import atomic_write_bytes
from engan.runtime.meta import PREFIX, ArtefactMeta

if TYPE_CHECKING:  # pragma: no cover
    import onnx


@dataclass(frozen=True)
class Int8Config:
    """How :func:`quantize_int8` quantizes (defaults are the measured best recipe).

    Attributes:
        calib_size: (H, W) of the calibration crops; multiples of 16.
        activation_type: ``uint8`` or ``int8`` activations.
        weight_type: ``int8`` or ``uint8`` weights.
        reduce_range: 7-bit weights (avoids the int16 saturation of AVX2 u8s8 kernels on CPUs
            without VNNI; costs nothing measurable on this model, so it is on everywhere).
        per_channel: per-output-channel weight scales.
        bn_as_conv: rewrite BatchNorm as an exact depthwise 1x1 Conv so it runs in int8.
        equalize: equalize per-channel activation ranges (exact rescaling,
            see :func:`engan.export.graph_rewrites.equalize_channels`).
        equalize_alpha: strength of the equalization (0: none, 1: every channel to the same range).
        calibrate_method: ``minmax``, ``entropy`` or ``percentile``.
        exclude: default roles/node names kept in float.
    """

    calib_size: tuple[int, int] = (256, 384)
    activation_type: str = "uint8"
    weight_type: str = "int8"
    reduce_range: bool = True
    per_channel: bool = True
    bn_as_conv: bool = True
    equalize: bool = True
    equalize_alpha: float = 0.5
    calibrate_method: str = "percentile"
    exclude: tuple[str, ...] = ("prologue", "first_conv", "head", "tail")


#: The defaults used by ``engan export --int8``.
DEFAULT_CONFIG = Int8Config()
DEFAULT_EXCLUDE: tuple[str, ...] = DEFAULT_CONFIG.exclude


class QuantizeError(RuntimeError):
    """INT8 quantization cannot proceed; the message names the file or option and the fix."""


def _read_meta(model: "onnx.ModelProto") -> tuple[ArtefactMeta, bool]:
    props = {p.key: p.value for p in model.metadata_props}
    return ArtefactMeta.from_props(props), any(k.startswith(PREFIX) for k in props)


def _input_name(model: "onnx.ModelProto", path: Path) -> str:
    inits = {t.name for t in model.graph.initializer}
    inputs = [i.name for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise QuantizeError(f"{path} has inputs {inputs}; an engan generator has exactly one image input")
    return inputs[0]


def quantize_int8(
    fp32_onnx: Path,
    out: Path,
    calib_dir: Path | None = None,
    num_images: int = 32,
    progress: bool = True,
    exclude: list[str] | None = None,
    config: Int8Config = DEFAULT_CONFIG,
) -> Path:
    """Write an INT8 (QDQ) copy of an FP32 engan ONNX generator, calibrated on low-light images.

    Args:
        fp32_onnx: the FP32 model written by ``engan export`` (``model.onnx``).
        out: destination (``model.int8.onnx``); written atomically.
        calib_dir: folder of low-light images; None: ``../shared/data/train/low`` when
            present, else generated dark images.
        num_images: calibration images (spread evenly over the folder).
        progress: tqdm bars for decoding and calibration.
        exclude: node names and/or roles kept in float; None uses ``config.exclude``
            (:data:`DEFAULT_EXCLUDE`), ``[]`` quantizes everything quantizable.
        config: the recipe (see :class:`Int8Config`).

    Returns:
        ``out``.

    Raises:
        QuantizeError: the input is missing, not FP32, or calibration/quantization failed.
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    fp32_onnx, out = Path(fp32_onnx), Path(out)
    if not fp32_onnx.is_file():
        raise QuantizeError(f"FP32 model not found: {fp32_onnx}; run `engan export` first (it writes model.onnx)")
    if fp32_onnx.resolve() == out.resolve():
        raise QuantizeError(f"refusing to overwrite the FP32 model {fp32_onnx}; write the INT8 model to another file")
    for name in ("activation_type", "weight_type"):
        if getattr(config, name) not in ("uint8", "int8"):
            raise QuantizeError(f"{name} must be 'uint8' or 'int8', got {getattr(config, name)!r}")
    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    if config.calibrate_method not in methods:
        raise QuantizeError(f"calibrate_method must be one of {', '.join(methods)}, got {config.calibrate_method!r}")
    try:
        source_model = onnx.load(str(fp32_onnx))
    except Exception as e:  # protobuf raises DecodeError and friends
        raise QuantizeError(f"{fp32_onnx} is not a readable ONNX model ({type(e).__name__}: {e}); export it again") from None
    meta, has_meta = _read_meta(source_model)
    if has_meta and meta.precision != "fp32":
        raise QuantizeError(
            f"{fp32_onnx} is a {meta.precision} model; quantize the FP32 model.onnx written by `engan export`"
        )
    input_name = _input_name(source_model, fp32_onnx)
    try:
        batches, source = load_calibration_batches(calib_dir, num_images, config.calib_size, progress)
    except CalibrationError as e:
        raise QuantizeError(str(e)) from None

    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".int8-", dir=out.parent) as tmp:
        prepped = Path(tmp) / "prepped.onnx"
        quantized = Path(tmp) / "quantized.onnx"
        try:
            quant_pre_process(str(fp32_onnx), str(prepped), skip_symbolic_shape=True)
        except Exception as e:  # noqa: BLE001 - ORT tooling raises bare Exceptions
            raise QuantizeError(f"ONNX Runtime's quant_pre_process failed on {fp32_onnx}: {e}") from None
        model = onnx.load(str(prepped))
        if config.bn_as_conv:
            batchnorm_to_depthwise_conv(model)
        if config.equalize:
            equalize_channels(model, batches[:8], input_name, config.equalize_alpha)
        try:
            float_nodes = resolve_exclusions(model, config.exclude if exclude is None else exclude)
        except ValueError as e:
            raise QuantizeError(str(e)) from None
        onnx.save(model, str(prepped))
        qtype = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}
        try:
            quantize_static(
                str(prepped), str(quantized), make_reader(batches, input_name, progress),
                quant_format=QuantFormat.QDQ, per_channel=config.per_channel, reduce_range=config.reduce_range,
                activation_type=qtype[config.activation_type], weight_type=qtype[config.weight_type],
                nodes_to_exclude=float_nodes, calibrate_method=methods[config.calibrate_method],
                extra_options={"WeightSymmetric": True},
            )
        except Exception as e:  # noqa: BLE001
            raise QuantizeError(f"ONNX Runtime static quantization of {fp32_onnx} failed: {type(e).__name__}: {e}") from None
        qmodel = onnx.load(str(quantized))

    extra = {**meta.extra, "int8_calibration": source, "int8_float_nodes": len(float_nodes),
             "int8_recipe": (f"qdq per_channel={config.per_channel} act={config.activation_type} "
                             f"weights={config.weight_type} reduce_range={config.reduce_range} "
                             f"bn_as_conv={config.bn_as_conv} equalize={config.equalize_alpha if config.equalize else 0} "
                             f"calib={config.calibrate_method} "
                             f"exclude={','.join(config.exclude if exclude is None else exclude) or 'none'}")}
    meta.precision = "int8"
    meta.extra = extra
    keep = [(p.key, p.value) for p in source_model.metadata_props if not p.key.startswith(PREFIX)]
    del qmodel.metadata_props[:]
    for key, value in keep:  # the FP32 model's own non-engan entries
        entry = qmodel.metadata_props.add()
        entry.key, entry.value = key, value
    set_metadata(qmodel, meta)
    atomic_write_bytes(out, qmodel.SerializeToString())
    return out

