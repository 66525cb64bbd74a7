"""The one export entry point: generator checkpoint -> ONNX (FP32/FP16/INT8), engine, Triton, parity.

``engan export`` parses its options into an :class:`ExportConfig` and calls
:func:`export_model`; Python users do the same::

    from engan.export.api import ExportConfig, export_model
    result = export_model(ExportConfig(checkpoint="runs/x", fp16=True, triton=True))
    print(result.onnx, result.parity.format_table())
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from engan.export.onnx import DEFAULT_OPSET, read_metadata, set_metadata
from engan.export.profile import ShapeProfile
from engan.export.tensorrt import DEFAULT_WORKSPACE_GIB
from engan.export.verify import DEFAULT_CHECK_SIZES, ParityError, ParityReport
from engan.runtime.meta import ArtefactMeta

#: File names inside the output folder.
ONNX_FP32 = "model.onnx"
ONNX_FP16 = "model.fp16.onnx"
ONNX_INT8 = "model.int8.onnx"
TRITON_DIR = "triton"
#: Default parent of ``--out``: ``exports/<model-name>/``.
DEFAULT_EXPORTS_DIR = "exports"


class ExportError(RuntimeError):
    """The export cannot proceed; the message names the file or option and the fix."""


@dataclass(frozen=True)
class ExportConfig:
    """Everything ``engan export`` can be asked to do (CLI options map 1:1 onto these fields).

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
    check: bool = True
    check_image: str | None = None
    check_sizes: tuple[tuple[int, int], ...] = DEFAULT_CHECK_SIZES


@dataclass
class ExportResult:
    """What an export wrote, how long each stage took, and the parity figures."""

    out_dir: Path
    checkpoint: Path
    meta: ArtefactMeta
    onnx: Path
    fp16: Path | None = None
    int8: Path | None = None
    engine: Path | None = None
    sidecar: Path | None = None
    triton_config: Path | None = None
    engine_skipped: str | None = None
    parity: ParityReport | None = None
    seconds: dict[str, float] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------
# Source checkpoint and naming
# ----------------------------------------------------------------------------------------


def resolve_source(checkpoint: str | os.PathLike | None) -> Path:
    """The generator file to export: ``checkpoint`` (run folder or file) or the shipped model.

    Raises:
        ExportError: no checkpoint given and no model ships with this install.
        engan.models.checkpoint.CheckpointError: the checkpoint path is wrong.
    """
    from engan.models.checkpoint import resolve_checkpoint

    if checkpoint is not None:
        return resolve_checkpoint(checkpoint)
    hint = "pass --checkpoint RUN_DIR (written by `engan train`) or --checkpoint FILE.safetensors"
    try:
        from engan.runtime import shipped
    except ModuleNotFoundError as e:
        if e.name and e.name.startswith("engan.runtime"):
            raise ExportError(f"no --checkpoint given and this engan install ships no model yet: {hint}") from None
        raise
    not_shipped = getattr(shipped, "ModelNotShippedError", FileNotFoundError)
    try:
        return Path(shipped.default_model_path("safetensors"))
    except not_shipped as e:
        raise ExportError(f"no --checkpoint given and no shipped model is available ({e}); {hint}") from None


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

    Stages: load checkpoint -> ONNX FP32 -> FP16 -> INT8 -> TensorRT engine (or the skip
    line) -> Triton repository -> parity check.

    Raises:
        ExportError, CheckpointError, OnnxExportError, EngineUnavailableError, EngineBuildError,
        CheckImageError, ValueError: a stage could not run (message names the file/option and the fix).
        ParityError: an artefact failed its PSNR threshold (the files are kept; ``err.result``
            holds the :class:`ExportResult`).
    """
    from engan import __version__
    from engan.export.onnx import export_onnx
    from engan.export.tensorrt import decide_engine, probe_environment, skip_message, skip_reason
    from engan.models import count_parameters
    from engan.models.checkpoint import file_sha256, load_generator, read_metadata as read_ckpt_meta

    if cfg.calib is not None and not cfg.int8:
        raise ExportError("--calib is only used with --int8; add --int8 or drop --calib")
    quantize = _int8_quantizer(cfg) if cfg.int8 else None  # fail before spending time
    if cfg.check_image is not None and not Path(cfg.check_image).is_file():
        raise ExportError(f"--check-image {cfg.check_image} not found; pass an existing PNG/JPEG file or leave it out")
    # Decide about the engine before spending time, so `--engine` fails fast.
    env = probe_environment() if cfg.fp16 and cfg.engine is not False else None
    decision = decide_engine(cfg.engine, cfg.fp16, skip_reason(env) if env is not None else None)

    t_all = time.perf_counter()
    seconds: dict[str, float] = {}

    # 1. checkpoint
    t = time.perf_counter()
    ckpt = resolve_source(cfg.checkpoint)
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
    seconds["load"] = time.perf_counter() - t
    log(f"checkpoint  {ckpt} ({preset}, {params:,} params, sha256 {sha[:12]}) -> {out_dir}/")

    # 2. FP32 ONNX
    t = time.perf_counter()
    with _writing(out_dir / ONNX_FP32):
        onnx_path = export_onnx(model, out_dir / ONNX_FP32, meta, opset=cfg.opset, exporter=cfg.exporter)  # type: ignore[arg-type]
    seconds["onnx"] = time.perf_counter() - t
    log(f"onnx fp32   {onnx_path} ({_mb(onnx_path)}, opset {cfg.opset}, {cfg.exporter} exporter, dynamic N/H/W) "
        f"{seconds['onnx']:.1f} s")
    result = ExportResult(out_dir=out_dir, checkpoint=ckpt, meta=meta, onnx=onnx_path, seconds=seconds)

    # 3. FP16 ONNX
    if cfg.fp16:
        from engan.export.fp16 import convert_to_fp16

        t = time.perf_counter()
        with _writing(out_dir / ONNX_FP16):
            result.fp16 = convert_to_fp16(onnx_path, out_dir / ONNX_FP16, meta)
        seconds["fp16"] = time.perf_counter() - t
        log(f"onnx fp16   {result.fp16} ({_mb(result.fp16)}, fp32 I/O) {seconds['fp16']:.1f} s")

    # 4. INT8 ONNX
    if cfg.int8:
        t = time.perf_counter()
        with _writing(out_dir / ONNX_INT8):
            result.int8 = _quantize(quantize, onnx_path, out_dir / ONNX_INT8, cfg, meta)
        seconds["int8"] = time.perf_counter() - t
        log(f"onnx int8   {result.int8} ({_mb(result.int8)}, {_calib_source(cfg)}) {seconds['int8']:.1f} s")

    # 5. TensorRT engine
    if decision.build:
        assert env is not None
        t = time.perf_counter()
        from engan.export.tensorrt import engine_path_for

        with _writing(engine_path_for(out_dir, env, "fp16")):
            result.engine, result.sidecar, reused = _engine(onnx_path, out_dir, cfg, meta, env, log)
        seconds["engine"] = time.perf_counter() - t
        how = "up to date, reused" if reused else f"built in {seconds['engine']:.1f} s"
        log(f"engine      {result.engine} ({env.gpu_name}, TensorRT {env.trt_version}, "
            f"{cfg.profile.describe()}; {how})")
    elif decision.reason is not None:
        result.engine_skipped = decision.reason
        log(skip_message(decision.reason))

    # 6. Triton repository
    if cfg.triton:
        from engan.export.triton import write_triton_repository

        t = time.perf_counter()
        with _writing(out_dir / TRITON_DIR):
            result.triton_config = write_triton_repository(
                out_dir / TRITON_DIR, onnx_path, result.engine, max_batch_size=cfg.profile.max_batch
            )
        seconds["triton"] = time.perf_counter() - t
        platform = "tensorrt_plan" if result.engine else "onnxruntime_onnx"
        log(f"triton      {result.triton_config} ({platform}, max_batch_size {cfg.profile.max_batch})")

    # 7. parity
    if cfg.check:
        t = time.perf_counter()
        result.parity = _parity(model, result, cfg)
        seconds["check"] = time.perf_counter() - t
        log(result.parity.format_table())
        if not result.parity.passed:
            err = ParityError(result.parity.failure_message(out_dir))
            err.result = result  # type: ignore[attr-defined]
            seconds["total"] = time.perf_counter() - t_all
            raise err
    else:
        log("parity      skipped (--no-check)")
    seconds["total"] = time.perf_counter() - t_all
    log(f"done        {seconds['total']:.1f} s. Try it: engan-infer PHOTOS/ OUT/ --model {onnx_path}")
    return result


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


def _quantize(quantize_int8: Callable[..., Path], fp32: Path, dst: Path, cfg: ExportConfig, meta: ArtefactMeta) -> Path:
    """Run the INT8 quantizer and make sure the file's metadata says int8 and names this checkpoint."""
    calib = Path(cfg.calib) if cfg.calib is not None else None
    out = quantize_int8(fp32, dst, calib_dir=calib, num_images=cfg.calib_images, progress=True)
    written = read_metadata(out)
    if written.precision != "int8" or written.checkpoint_sha256 != meta.checkpoint_sha256:
        import onnx

        from engan.runtime.atomic import atomic_write_bytes

        proto = onnx.load(str(out))
        set_metadata(proto, dataclasses.replace(meta, precision="int8", extra={**meta.extra, **written.extra}))
        atomic_write_bytes(out, proto.SerializeToString())
    return out


def _engine(onnx_path: Path, out_dir: Path, cfg: ExportConfig, meta: ArtefactMeta, env, log) -> tuple[Path, Path, bool]:
    """Build (or reuse) the FP16 engine and write its sidecar; returns (engine, sidecar, reused)."""
    from engan.export.tensorrt import build_engine, default_timing_cache_path, engine_is_current, engine_path_for
    from engan.models.checkpoint import file_sha256
    from engan.runtime.engine_meta import EngineSidecar, write_sidecar

    engine = engine_path_for(out_dir, env, "fp16")
    base = dataclasses.asdict(dataclasses.replace(meta, precision="fp16"))
    sidecar = EngineSidecar(
        **base,
        engine_file=engine.name, onnx_file=onnx_path.name, onnx_sha256=file_sha256(onnx_path),
        gpu_name=env.gpu_name, compute_capability=env.compute_capability, trt_version=env.trt_version,
        profile_min=list(cfg.profile.min_hw), profile_opt=list(cfg.profile.opt_hw),
        profile_max=list(cfg.profile.max_hw), max_batch=cfg.profile.max_batch,
        workspace_gib=cfg.workspace_gib, built_at=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    )
    if engine_is_current(engine, sidecar):
        from engan.runtime.engine_meta import sidecar_path

        return engine, sidecar_path(engine), True
    cache = Path(cfg.timing_cache) if cfg.timing_cache else default_timing_cache_path(
        env.gpu_name, env.compute_capability, env.trt_version, "fp16"
    )
    log(f"engine      building FP16 TensorRT engine ({cfg.profile.describe()}), timing cache {cache} ...")
    build_engine(onnx_path, engine, cfg.profile, cfg.workspace_gib, cache, fp16=True, log=log)
    return engine, write_sidecar(engine, sidecar), False


def _parity(model, result: ExportResult, cfg: ExportConfig) -> ParityReport:
    from engan.export.verify import Artefact, check_parity, make_check_inputs

    sizes = tuple(cfg.check_sizes)
    artefacts = [Artefact(result.onnx, "fp32", sizes=sizes)]
    if result.fp16 is not None:
        artefacts.append(Artefact(result.fp16, "fp16", sizes=sizes))
    if result.int8 is not None:
        artefacts.append(Artefact(result.int8, "int8", sizes=sizes))
    all_sizes = sizes
    if result.engine is not None:
        inside = tuple(hw for hw in sizes if cfg.profile.contains(1, *hw))
        engine_sizes = inside or (cfg.profile.opt_hw,)  # outside the profile: check at its optimum
        artefacts.append(Artefact(result.engine, "fp16", "trt", "cuda", sizes=engine_sizes))
        all_sizes = sizes + tuple(hw for hw in engine_sizes if hw not in sizes)
    desc, inputs = make_check_inputs(cfg.check_image, all_sizes)
    return check_parity(model, artefacts, inputs, image=desc)
