"""The one export entry point: generator checkpoint -> ONNX (FP32/FP16/INT8), engine, Triton, parity.

``engan export`` parses its options into an :class:`ExportConfig` and calls
:func:`export_model`; Python users do the same::

    from engan.export.api import ExportConfig, export_model
    result = export_model(ExportConfig(checkpoint="runs/x", fp16=True, triton=True))
    print(result.onnx, result.parity.format_table())

:func:`export_model` walks the format table (:data:`engan.export.formats.FORMATS`):
each requested row is written by its writer below, then every written row with a
check backend is run through the runtime and compared with the eager model.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from engan.export.formats import BY_NAME, FORMATS, requested, unmet
from engan.export.onnx import DEFAULT_OPSET, read_metadata, set_metadata
from engan.export.profile import ShapeProfile
from engan.export.tensorrt import DEFAULT_WORKSPACE_GIB
from engan.export.verify import DEFAULT_CHECK_SIZES, ParityError, ParityReport
from engan.runtime.meta import ArtefactMeta

#: Default parent of ``--out``: ``exports/<model-name>/``.
DEFAULT_EXPORTS_DIR = "exports"


class ExportError(RuntimeError):
    """The export cannot proceed; the message names the file or option and the fix."""


@dataclass(frozen=True)
class ExportConfig:
    """Everything ``engan export`` can be asked to do (CLI options map 1:1 onto these fields).

    The flags that ask for artefacts (``fp16``, ``int8``, ``engine``, ``triton``) are the
    ``flag`` column of :data:`engan.export.formats.FORMATS`.

    Attributes:
        checkpoint: run folder or ``.safetensors`` generator; None exports the shipped model.
        out: output folder; None means ``exports/<model-name>/``.
        fp16: also write ``model.fp16.onnx`` (and allow an FP16 TensorRT engine).
        int8: also write ``model.int8.onnx`` (ONNX Runtime static quantization).
        calib: folder of calibration images for ``int8`` (None: generated images).
        calib_images: how many calibration images ``int8`` uses.
        opset: ONNX opset.
        exporter: ``legacy`` (TorchScript tracing, ~1.5 s) or ``dynamo`` (torch.export, ~17 s).
        profile: TensorRT optimisation profile (min/opt/max HxW, max batch; also Triton's max batch).
        workspace_gib: TensorRT builder workspace limit.
        timing_cache: TensorRT timing cache file (None: a per-GPU file under ~/.cache/engan/trt).
        engine: True requires an engine (error when impossible), False never builds one,
            None builds one when ``fp16`` and TensorRT + a CUDA GPU are present.
        triton: also write a Triton model repository under ``<out>/triton``.
        openvino: also write OpenVINO IR ``model.xml`` + ``model.bin`` (FP32 weights; needs ``engan[openvino]``).
        check: run the parity check after writing.
        check_image: image for the parity check (None: a generated low-light image).
        check_sizes: the HxW sizes of the parity check.
    """

    checkpoint: str | None = None
    out: str | None = None
    fp16: bool = False
    int8: bool = False
    calib: str | None = None
    calib_images: int = 32
    opset: int = DEFAULT_OPSET
    exporter: str = "legacy"
    profile: ShapeProfile = field(default_factory=ShapeProfile)
    workspace_gib: float = DEFAULT_WORKSPACE_GIB
    timing_cache: str | None = None
    engine: bool | None = None
    triton: bool = False
    openvino: bool = False
    check: bool = True
    check_image: str | None = None
    check_sizes: tuple[tuple[int, int], ...] = DEFAULT_CHECK_SIZES


@dataclass
class ExportResult:
    """What an export wrote, how long each stage took, and the parity figures.

    ``files`` maps each written format row to its file (Triton: its ``config.pbtxt``);
    ``onnx``, ``fp16``, ``int8``, ``engine`` and ``triton_config`` read it.
    """

    out_dir: Path
    checkpoint: Path
    meta: ArtefactMeta
    files: dict[str, Path] = field(default_factory=dict)
    sidecar: Path | None = None
    engine_skipped: str | None = None
    parity: ParityReport | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    onnx = property(lambda self: self.files.get("onnx"))
    fp16 = property(lambda self: self.files.get("fp16"))
    int8 = property(lambda self: self.files.get("int8"))
    engine = property(lambda self: self.files.get("engine"))
    triton_config = property(lambda self: self.files.get("triton"))
    openvino = property(lambda self: self.files.get("openvino"))


def resolve_source(checkpoint: str | os.PathLike | None) -> Path:
    """The generator file to export: ``checkpoint`` (run folder or file), else the shipped model's weights.

    Raises:
        engan.models.checkpoint.CheckpointError: the checkpoint path is wrong.
        engan.runtime.ModelNotShippedError: no checkpoint given and no model ships with this install.
    """
    from engan.models.checkpoint import resolve_checkpoint

    return resolve_checkpoint(checkpoint)


def model_name_for(checkpoint: Path, file_meta: dict[str, str]) -> str:
    """Name of the exported model: the checkpoint's ``engan.model_name`` metadata, else the
    run folder name (for ``RUN_DIR/generator.safetensors``), else the file stem."""
    if file_meta.get("engan.model_name"):
        return file_meta["engan.model_name"]
    if checkpoint.name == "generator.safetensors" and checkpoint.parent.name:
        return checkpoint.resolve().parent.name
    return checkpoint.name.removesuffix(".safetensors")


def _os_reason(e: OSError) -> str:
    return (e.strerror or str(e) or type(e).__name__).lower()


def _make_out_dir(out_dir: Path) -> None:
    """Create the output folder, or raise :class:`ExportError` naming it and the fix."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ExportError(f"--out {out_dir} is a file; pass a folder (it is created if missing)")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ExportError(f"cannot create the output folder {out_dir} ({_os_reason(e)}); pass another --out") from None


@contextlib.contextmanager
def _writing(target: Path) -> Iterator[None]:
    """Turn an OSError while writing ``target`` (disk full, read-only, ...) into an :class:`ExportError`.

    Every artefact is written through a temp file + rename, so the failed file is absent and
    the ones written before it are complete.
    """
    try:
        yield
    except OSError as e:
        raise ExportError(
            f"could not write {target} ({_os_reason(e)}); nothing half-written is left in {target.parent}: "
            "free some disk space or pass another --out, then run the export again"
        ) from None


def _mb(path: Path) -> str:
    return f"{path.stat().st_size / 1e6:.1f} MB"


# ----------------------------------------------------------------------------------------
# The pipeline
# ----------------------------------------------------------------------------------------


def export_model(cfg: ExportConfig, log: Callable[[str], None] = print) -> ExportResult:
    """Export a generator as configured; one status line per stage goes to ``log``.

    Stages: load checkpoint -> each requested row of the format table in order (ONNX FP32,
    FP16, INT8, TensorRT engine or the line saying why not, Triton) -> parity check.

    Raises:
        ExportError, CheckpointError, OnnxExportError, EngineUnavailableError, EngineBuildError,
        CheckImageError, ValueError: a stage could not run (message names the file/option and the fix).
        ParityError: an artefact failed its PSNR threshold (the files are kept; ``err.result``
            holds the :class:`ExportResult`).
    """
    from engan.export.tensorrt import decide_engine, probe_environment, skip_message

    if cfg.calib is not None and not cfg.int8:
        raise ExportError("--calib is only used with --int8; add --int8 or drop --calib")
    quantize = _int8_quantizer(cfg) if cfg.int8 else None  # fail before spending time
    if cfg.check_image is not None and not Path(cfg.check_image).is_file():
        raise ExportError(f"--check-image {cfg.check_image} not found; pass an existing PNG/JPEG file or leave it out")
    # Decide about the engine before spending time, so `--engine` fails fast.
    asks_engine = cfg.fp16 and cfg.engine is not False
    decision = decide_engine(cfg.engine, cfg.fp16, unmet(BY_NAME["engine"]) if asks_engine else None)
    formats = requested(cfg, decision.build)
    for fmt in formats:
        reason = None if fmt.needs_gpu else unmet(fmt)  # the engine's needs were decided above
        if reason is not None:
            raise ExportError(f"{fmt.option} cannot be written here: {reason}")
    env = probe_environment() if decision.build else None

    t_all = time.perf_counter()
    result, model = _load(cfg, log)
    job = _Job(cfg, model, result, log, quantize, env)
    for fmt in FORMATS:
        if fmt not in formats:
            if fmt.name == "engine" and decision.reason is not None:
                result.engine_skipped = decision.reason
                log(skip_message(decision.reason))
            continue
        target = fmt.path(result.out_dir, env)
        job.started = time.perf_counter()
        with _writing(target):
            result.files[fmt.name] = _WRITERS[fmt.name](job, target)
        result.seconds[fmt.name] = job.elapsed()

    seconds = result.seconds
    if cfg.check:
        t = time.perf_counter()
        result.parity = _parity(model, result, cfg)
        seconds["check"] = time.perf_counter() - t
        log(result.parity.format_table())
        if not result.parity.passed:
            err = ParityError(result.parity.failure_message(result.out_dir))
            err.result = result  # type: ignore[attr-defined]
            seconds["total"] = time.perf_counter() - t_all
            raise err
    else:
        log("parity      skipped (--no-check)")
    seconds["total"] = time.perf_counter() - t_all
    log(f"done        {seconds['total']:.1f} s. Try it: engan-infer PHOTOS/ OUT/ --model {result.onnx}")
    return result


def _load(cfg: ExportConfig, log: Callable[[str], None]) -> tuple[ExportResult, Any]:
    """Load the checkpoint, make the output folder and the artefact metadata; (result so far, eager model)."""
    from engan import __version__
    from engan.models import count_parameters
    from engan.models.checkpoint import file_sha256, load_generator, read_metadata as read_ckpt_meta
    from engan.runtime import ModelNotShippedError

    t = time.perf_counter()
    try:
        ckpt = resolve_source(cfg.checkpoint)
    except ModelNotShippedError as e:
        raise ExportError(
            f"no --checkpoint given and no shipped model is available ({e}); "
            "pass --checkpoint RUN_DIR (written by `engan train`) or --checkpoint FILE.safetensors"
        ) from None
    ckpt_meta = read_ckpt_meta(ckpt)
    model = load_generator(ckpt)
    name = model_name_for(ckpt, ckpt_meta)
    out_dir = Path(cfg.out) if cfg.out is not None else Path(DEFAULT_EXPORTS_DIR) / name
    _make_out_dir(out_dir)
    sha = file_sha256(ckpt)
    preset = ckpt_meta.get("engan.preset", "custom")
    params = count_parameters(model)
    extra: dict[str, str] = {"exporter": cfg.exporter, "source": ckpt.name}
    if "engan.step" in ckpt_meta:
        extra["step"] = ckpt_meta["engan.step"]
    meta = ArtefactMeta(
        version=__version__, model_name=name, preset=preset, params=params,
        checkpoint_sha256=sha, precision="fp32", opset=cfg.opset, extra=extra,
    )
    result = ExportResult(out_dir=out_dir, checkpoint=ckpt, meta=meta)
    result.seconds["load"] = time.perf_counter() - t
    log(f"checkpoint  {ckpt} ({preset}, {params:,} params, sha256 {sha[:12]}) -> {out_dir}/")
    return result, model


@dataclass
class _Job:
    """What the format writers share; ``started`` is when the current row began."""

    cfg: ExportConfig
    model: Any
    result: ExportResult
    log: Callable[[str], None]
    quantize: Callable[..., Path] | None = None
    env: Any = None  # TrtEnvironment when an engine is built
    started: float = 0.0

    def elapsed(self) -> float:
        return time.perf_counter() - self.started


# ----------------------------------------------------------------------------------------
# One writer per format row: (job, target) -> the written file
# ----------------------------------------------------------------------------------------


def _write_onnx(job: _Job, target: Path) -> Path:
    from engan.export.onnx import export_onnx

    cfg = job.cfg
    path = export_onnx(job.model, target, job.result.meta, opset=cfg.opset, exporter=cfg.exporter)  # type: ignore[arg-type]
    job.log(f"onnx fp32   {path} ({_mb(path)}, opset {cfg.opset}, {cfg.exporter} exporter, dynamic N/H/W) "
            f"{job.elapsed():.1f} s")
    return path


def _write_fp16(job: _Job, target: Path) -> Path:
    from engan.export.fp16 import convert_to_fp16

    path = convert_to_fp16(job.result.onnx, target, job.result.meta)
    job.log(f"onnx fp16   {path} ({_mb(path)}, fp32 I/O) {job.elapsed():.1f} s")
    return path


def _write_int8(job: _Job, target: Path) -> Path:
    """Run the INT8 quantizer and make sure the file's metadata says int8 and names this checkpoint."""
    cfg, meta = job.cfg, job.result.meta
    assert job.quantize is not None
    calib = Path(cfg.calib) if cfg.calib is not None else None
    out = job.quantize(job.result.onnx, target, calib_dir=calib, num_images=cfg.calib_images, progress=True)
    written = read_metadata(out)
    if written.precision != "int8" or written.checkpoint_sha256 != meta.checkpoint_sha256:
        import onnx

        from engan.runtime.atomic import atomic_write_bytes

        proto = onnx.load(str(out))
        set_metadata(proto, dataclasses.replace(meta, precision="int8", extra={**meta.extra, **written.extra}))
        atomic_write_bytes(out, proto.SerializeToString())
    job.log(f"onnx int8   {out} ({_mb(out)}, {_calib_source(cfg)}) {job.elapsed():.1f} s")
    return out


def _write_engine(job: _Job, target: Path) -> Path:
    from engan.export.tensorrt import ensure_engine

    cfg, env = job.cfg, job.env
    job.result.sidecar, reused = ensure_engine(
        job.result.onnx, target, job.result.meta, env, cfg.profile, cfg.workspace_gib,
        Path(cfg.timing_cache) if cfg.timing_cache else None, log=job.log,
    )
    how = "up to date, reused" if reused else f"built in {job.elapsed():.1f} s"
    job.log(f"engine      {target} ({env.gpu_name}, TensorRT {env.trt_version}, {cfg.profile.describe()}; {how})")
    return target


def _write_triton(job: _Job, target: Path) -> Path:
    from engan.export.triton import PLATFORM_ONNX, PLATFORM_TRT, write_triton_repository

    max_batch, engine = job.cfg.profile.max_batch, job.result.engine
    config = write_triton_repository(target, job.result.onnx, engine, max_batch_size=max_batch)
    job.log(f"triton      {config} ({PLATFORM_TRT if engine else PLATFORM_ONNX}, max_batch_size {max_batch})")
    return config


def _write_openvino(job: _Job, target: Path) -> Path:
    from engan.export.openvino import OpenVINOExportError, write_ir

    try:
        path = write_ir(job.result.onnx, target, job.result.meta)
    except OpenVINOExportError as e:
        raise ExportError(f"--openvino failed: {e}") from None
    job.log(f"openvino    {path} + {path.with_suffix('.bin').name} ({_mb(path.with_suffix('.bin'))}, OpenVINO IR, "
            f"fp32 weights) {job.elapsed():.1f} s")
    return path


def _write_openvino_int8(job: _Job, target: Path) -> Path:
    from engan.export.openvino import OpenVINOExportError, quantize_ir_int8

    cfg = job.cfg
    try:
        path = quantize_ir_int8(job.result.onnx, target, job.result.meta, calib_dir=cfg.calib,
                                num_images=cfg.calib_images, progress=True)
    except OpenVINOExportError as e:
        raise ExportError(f"--openvino --int8 failed: {e}") from None
    job.log(f"openvino    {path} (INT8 IR, NNCF, {_calib_source(cfg)}) {job.elapsed():.1f} s")
    return path


#: Format row name -> its writer.
_WRITERS: dict[str, Callable[[_Job, Path], Path]] = {
    "onnx": _write_onnx, "fp16": _write_fp16, "int8": _write_int8, "engine": _write_engine, "triton": _write_triton,
    "openvino": _write_openvino, "openvino_int8": _write_openvino_int8,
}


def _int8_quantizer(cfg: ExportConfig) -> Callable[..., Path]:
    """``engan.export.quantize.quantize_int8`` (its own errors re-raised as :class:`ExportError`),
    or a clear error when it or ``--calib`` is unusable."""
    try:
        from engan.export import quantize as quantize_module
    except ModuleNotFoundError as e:
        if e.name and e.name.startswith("engan.export.quantize"):
            raise ExportError(
                "--int8 needs engan.export.quantize, which this engan install does not have; "
                "update engan or export without --int8"
            ) from None
        raise
    if cfg.calib is not None and not Path(cfg.calib).is_dir():
        raise ExportError(f"--calib {cfg.calib} is not a folder; pass a folder of low-light PNG/JPEG images")
    quantize_int8 = quantize_module.quantize_int8
    quantize_error = getattr(quantize_module, "QuantizeError", ())

    def run(*args: Any, **kw: Any) -> Path:
        try:
            return Path(quantize_int8(*args, **kw))
        except quantize_error as e:  # type: ignore[misc]
            raise ExportError(f"--int8 failed: {e}") from None

    return run


def _calib_source(cfg: ExportConfig) -> str:
    if cfg.calib is not None:
        return f"calibrated on {cfg.calib}"
    from engan.export.calibration import default_calib_dir

    folder = default_calib_dir()
    return f"calibrated on {folder}" if folder is not None else "calibrated on generated low-light images"


def _parity(model: Any, result: ExportResult, cfg: ExportConfig) -> ParityReport:
    """Check every written row that has a check backend, on that backend, at the check sizes."""
    from engan.export.verify import Artefact, check_parity, make_check_inputs

    sizes = tuple(cfg.check_sizes)
    artefacts = []
    for fmt in FORMATS:
        path = result.files.get(fmt.name)
        if path is None or fmt.check_backend is None:
            continue
        own = sizes
        if fmt.check_backend == "trt":  # an engine runs only inside its profile: else check at its optimum
            own = tuple(hw for hw in sizes if cfg.profile.contains(1, *hw)) or (cfg.profile.opt_hw,)
        artefacts.append(Artefact(path, fmt.precision, fmt.check_backend, fmt.check_device, own))
    all_sizes = tuple(dict.fromkeys(sizes + tuple(hw for a in artefacts for hw in a.sizes or ())))
    desc, inputs = make_check_inputs(cfg.check_image, all_sizes)
    return check_parity(model, artefacts, inputs, image=desc)
