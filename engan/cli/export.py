"""`engan export`: a generator checkpoint -> ONNX (FP32/FP16/INT8), TensorRT engine, Triton repository.

Parses options into :class:`engan.export.api.ExportConfig` and calls
:func:`engan.export.api.export_model`; nothing else. Heavy imports (torch, onnx)
happen only when the command runs, so ``engan --help`` stays instant.
"""
from __future__ import annotations

import click

from engan.export.formats import THRESHOLDS_DB
from engan.export.profile import (
    DEFAULT_MAX_BATCH,
    DEFAULT_MAX_HW,
    DEFAULT_MIN_HW,
    DEFAULT_OPT_HW,
    ProfileError,
    format_hw,
    parse_hw,
)


def _thresholds() -> str:
    """``FP32 < 50 dB, FP16 < 35 dB or INT8 < 30 dB``: when the parity check fails an artefact."""
    parts = [f"{precision.upper()} < {db:g} dB" for precision, db in THRESHOLDS_DB.items()]
    return ", ".join(parts[:-1]) + f" or {parts[-1]}"


def _hw_option(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, int]:
    try:
        return parse_hw(value, f"--{param.name.replace('_', '-')}")  # type: ignore[union-attr]
    except ProfileError as e:
        raise click.BadParameter(str(e)) from None


def _hw_sizes_option(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> tuple[tuple[int, int], ...]:
    try:
        return tuple(parse_hw(v, "--check-size") for v in values)
    except ProfileError as e:
        raise click.BadParameter(str(e)) from None


@click.command("export")
@click.option("--checkpoint", type=click.Path(dir_okay=True, file_okay=True), default=None,
              metavar="RUN_DIR|FILE.safetensors",
              help="Generator to export: a run folder from `engan train` (uses RUN_DIR/generator.safetensors) "
                   "or a .safetensors generator file. Default: the model shipped with engan.")
@click.option("--out", type=click.Path(file_okay=False), default=None, metavar="DIR",
              help="Output folder. Default: exports/<model-name>/ (the run folder name or the file stem).")
@click.option("--fp16", is_flag=True, default=False,
              help="Also write model.fp16.onnx (FP16 weights and compute, FP32 I/O, for GPU providers) and, where "
                   "TensorRT and a CUDA GPU are present, an FP16 TensorRT engine.")
@click.option("--int8", is_flag=True, default=False,
              help="Also write model.int8.onnx (ONNX Runtime static INT8 QDQ quantization for CPUs: "
                   "about 2x ONNX Runtime FP32 on an AVX2 CPU at 35-40 dB PSNR vs FP32).")
@click.option("--calib", type=click.Path(exists=True, file_okay=False), default=None, metavar="DIR",
              help="Folder of low-light images to calibrate --int8 with. Default: $ENGAN_SHARED/data/train/low "
                   "(../shared next to the repo) when present, else generated dark images.")
@click.option("--calib-images", type=click.IntRange(min=1), default=32, show_default=True, metavar="N",
              help="How many calibration images --int8 uses.")
@click.option("--opset", type=click.IntRange(min=13), default=17, show_default=True, metavar="N",
              help="ONNX opset version.")
@click.option("--exporter", type=click.Choice(["legacy", "dynamo"]), default="legacy", show_default=True,
              help="torch.onnx path: legacy (TorchScript tracing, ~1.5 s for the paper model) or dynamo "
                   "(torch.export, ~17 s); both give the same graph numerically.")
@click.option("--min-shape", default=format_hw(DEFAULT_MIN_HW), show_default=True, callback=_hw_option,
              metavar="HxW", help="Smallest input of the TensorRT profile (height x width, multiples of 16).")
@click.option("--opt-shape", default=format_hw(DEFAULT_OPT_HW), show_default=True, callback=_hw_option,
              metavar="HxW", help="Input size TensorRT tunes for (400x608 = a 608x400 photo).")
@click.option("--max-shape", default=format_hw(DEFAULT_MAX_HW), show_default=True, callback=_hw_option,
              metavar="HxW", help="Largest input of the TensorRT profile (1088x1920 = 1080p padded to 16).")
@click.option("--max-batch", type=click.IntRange(min=1), default=DEFAULT_MAX_BATCH, show_default=True,
              metavar="N", help="Largest batch of the TensorRT profile and Triton's max_batch_size.")
@click.option("--workspace", type=click.FloatRange(min=0.0, min_open=True), default=4.0, show_default=True,
              metavar="GiB", help="TensorRT builder workspace memory limit.")
@click.option("--timing-cache", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="TensorRT timing cache to reuse and update (makes rebuilds fast). Default: "
                   "~/.cache/engan/trt/timing.<gpu>.cc<major><minor>.trt<version>.fp16.cache.")
@click.option("--engine/--no-engine", default=None,
              help="--engine: an FP16 TensorRT engine is required (error, non-zero exit, when TensorRT or a CUDA "
                   "GPU is missing); --no-engine: never build one. Default: build one with --fp16 when possible, "
                   "else print one line saying why not.")
@click.option("--triton", is_flag=True, default=False,
              help="Also write a Triton Inference Server model repository: OUT/triton/engan/config.pbtxt, "
                   "1/model.onnx (+ 1/model.plan when an engine was built).")
@click.option("--openvino", is_flag=True, default=False,
              help="Also write OpenVINO IR: OUT/model.xml + model.bin (FP32 weights, engan metadata), checked "
                   "on OpenVINO like every artefact (needs pip install 'engan[openvino]'). With --int8, also "
                   "OUT/model.int8.xml, quantized by NNCF on the --calib images (needs pip install nncf).")
@click.option("--check/--no-check", default=True, show_default=True,
              help="After writing, compare every artefact with the eager PyTorch model at the --check-size sizes "
                   f"(max |Δ| and PSNR in dB); fail, keeping the files, when {_thresholds()}.")
@click.option("--check-size", "check_sizes", multiple=True, callback=_hw_sizes_option, metavar="HxW",
              help="A size (multiple of 16) of the parity check; repeat for several. "
                   "Default: 256x256 and 400x608.")
@click.option("--check-image", type=click.Path(exists=True, dir_okay=False), default=None, metavar="FILE",
              help="Image for the parity check (resized to each check size). Default: a generated low-light image.")
def export(
    checkpoint: str | None, out: str | None, fp16: bool, int8: bool, calib: str | None, calib_images: int,
    opset: int, exporter: str, min_shape: tuple[int, int], opt_shape: tuple[int, int],
    max_shape: tuple[int, int], max_batch: int, workspace: float, timing_cache: str | None,
    engine: bool | None, triton: bool, openvino: bool, check: bool, check_sizes: tuple[tuple[int, int], ...],
    check_image: str | None,
) -> None:
    """Export a generator to ONNX (FP32, optionally FP16/INT8), a TensorRT engine and a Triton repository.

    \b
    Examples:
      engan export --checkpoint runs/x --fp16 --triton --out exports/x
      engan export --checkpoint runs/x/generator.safetensors --fp16 --engine --max-shape 2160x3840

    Every ONNX file takes `input` float32 RGB [0,1] N x 3 x H x W (H, W multiples of 16) and returns `output`.
    """
    from engan.export.api import ExportConfig, ExportError, export_model
    from engan.export.onnx import OnnxExportError
    from engan.export.profile import ShapeProfile
    from engan.export.tensorrt import EngineBuildError, EngineUnavailableError
    from engan.export.verify import CheckImageError, ParityError
    from engan.models.checkpoint import CheckpointError

    if engine and not fp16:
        raise click.UsageError("--engine builds an FP16 TensorRT engine: add --fp16 (engan export --fp16 --engine)")
    if calib is not None and not int8:
        raise click.UsageError("--calib is only used with --int8; add --int8 or drop --calib")
    try:
        profile = ShapeProfile(min_shape, opt_shape, max_shape, max_batch)
    except ProfileError as e:
        raise click.UsageError(str(e)) from None
    cfg = ExportConfig(
        checkpoint=checkpoint, out=out, fp16=fp16, int8=int8, calib=calib, calib_images=calib_images,
        opset=opset, exporter=exporter, profile=profile, workspace_gib=workspace, timing_cache=timing_cache,
        engine=engine, triton=triton, openvino=openvino, check=check, check_image=check_image,
        **({"check_sizes": check_sizes} if check_sizes else {}),
    )
    try:
        export_model(cfg, log=click.echo)
    except (ExportError, CheckpointError, OnnxExportError, EngineUnavailableError, EngineBuildError,
            CheckImageError, ParityError) as e:
        raise click.ClickException(str(e)) from None
