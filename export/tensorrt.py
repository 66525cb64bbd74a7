"""FP16 TensorRT engines from the exported ONNX file (TensorRT 10+ Python API).

``tensorrt`` is imported only inside :func:`build_engine`; engines run (in the parity
check too) through :mod:`engan.runtime.backends.trt`. Everything else here (probing,
the decision to skip and its message, timing-cache paths and keys, whether an
existing engine is still current) is plain Python that CPU tests cover. The engine
is named after the GPU and TensorRT version that built it and gets a JSON sidecar
(:mod:`engan.runtime.engine_meta`), so the runtime can refuse a mismatched engine.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from engan.export.profile import ShapeProfile
from engan.runtime.atomic import atomic_write_bytes
from engan.runtime.engine_meta import (
    EngineSidecar,
    SidecarError,
    engine_file_name,
    gpu_slug,
    read_sidecar,
    sidecar_path,
    write_sidecar,
)
from engan.runtime.meta import ArtefactMeta

#: How a user gets the TensorRT backend.
TRT_INSTALL_HINT = "pip install 'engan[trt]'"
#: Oldest TensorRT major version whose Python API this module is written against.
MIN_TRT_MAJOR = 10
#: Default builder workspace limit (GiB).
DEFAULT_WORKSPACE_GIB = 4.0


class EngineUnavailableError(RuntimeError):
    """``--engine`` was required but TensorRT or a CUDA GPU is missing."""


class EngineBuildError(RuntimeError):
    """TensorRT could not parse the ONNX file or build the engine; the message names the file."""


# ----------------------------------------------------------------------------------------
# Probing and the decision to build or skip (plain Python, CPU-tested)
# ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrtEnvironment:
    """What this machine offers for building engines.

    Attributes:
        trt_version: ``tensorrt.__version__``, or None when it cannot be imported.
        trt_error: why the import failed (None when it worked).
        gpu_name: CUDA device 0's name, or None without a usable CUDA GPU.
        compute_capability: ``"major.minor"`` of that GPU.
        cuda_error: why no GPU is usable (None when one is).
    """

    trt_version: str | None = None
    trt_error: str | None = None
    gpu_name: str | None = None
    compute_capability: str | None = None
    cuda_error: str | None = None


def probe_environment() -> TrtEnvironment:
    """Try ``import tensorrt`` and look for a CUDA GPU through torch (never raises)."""
    trt_version = trt_error = None
    try:
        import tensorrt  # noqa: PLC0415

        trt_version = str(tensorrt.__version__)
    except Exception as e:  # ImportError, or OSError when its shared libraries are missing
        trt_error = f"import tensorrt failed: {type(e).__name__}: {e}"
    gpu_name = cc = cuda_error = None
    try:
        import torch

        if torch.cuda.is_available():
            gpu_name = torch.cuda.get_device_name(0)
            cc = "{}.{}".format(*torch.cuda.get_device_capability(0))
        elif torch.version.cuda is None:
            cuda_error = f"no CUDA GPU (this torch {torch.__version__} is a CPU-only build)"
        else:
            cuda_error = "no CUDA GPU visible (torch.cuda.is_available() is False)"
    except Exception as e:  # pragma: no cover - a broken CUDA driver
        cuda_error = f"CUDA could not be initialised: {type(e).__name__}: {e}"
    return TrtEnvironment(trt_version, trt_error, gpu_name, cc, cuda_error)


def skip_reason(env: TrtEnvironment) -> str | None:
    """Why no engine can be built here, or None when TensorRT and a CUDA GPU are both present."""
    if env.trt_version is None:
        return f"TensorRT is not installed ({env.trt_error or 'import tensorrt failed'})"
    major = env.trt_version.split(".")[0]
    if not major.isdigit() or int(major) < MIN_TRT_MAJOR:
        return f"TensorRT {env.trt_version} is older than {MIN_TRT_MAJOR}.0, which engan needs"
    if env.gpu_name is None:
        return env.cuda_error or "no CUDA GPU visible"
    return None


def skip_message(reason: str) -> str:
    """The one line printed when the engine is skipped: why, and how to get one."""
    return (
        f"TensorRT engine skipped: {reason}. To build one, run `{TRT_INSTALL_HINT}` on a machine with a CUDA GPU "
        "and re-run `engan export --fp16 --engine` there (model.fp16.onnx already runs on GPUs via ONNX Runtime)."
    )


@dataclass(frozen=True)
class EngineDecision:
    """Whether to build the engine; ``reason`` says why not (printed as :func:`skip_message`)."""

    build: bool
    reason: str | None = None


def decide_engine(requested: bool | None, fp16: bool, unavailable: str | None) -> EngineDecision:
    """Decide whether to build a TensorRT engine.

    Args:
        requested: ``--engine`` (True), ``--no-engine`` (False), or neither (None: build
            when ``--fp16`` is given and TensorRT and a GPU are present).
        fp16: whether ``--fp16`` was given (engines are FP16).
        unavailable: :func:`skip_reason` of this machine (None when an engine can be built).

    Raises:
        ValueError: ``--engine`` without ``--fp16``.
        EngineUnavailableError: ``--engine`` on a machine that cannot build one.
    """
    if requested is False:
        return EngineDecision(False)
    if not fp16:
        if requested:
            raise ValueError("--engine builds an FP16 TensorRT engine: add --fp16 (engan export --fp16 --engine)")
        return EngineDecision(False)
    if unavailable is None:
        return EngineDecision(True)
    if requested:
        raise EngineUnavailableError(
            f"--engine was given but no engine can be built here: {unavailable}. Run `{TRT_INSTALL_HINT}` on a "
            "machine with a CUDA GPU and export there, or drop --engine to write the ONNX files only."
        )
    return EngineDecision(False, unavailable)


# ----------------------------------------------------------------------------------------
# Timing cache and engine reuse (plain Python, CPU-tested)
# ----------------------------------------------------------------------------------------


def cache_dir() -> Path:
    """engan's cache folder: ``$ENGAN_CACHE_DIR``, else ``$XDG_CACHE_HOME/engan``, else ``~/.cache/engan``."""
    if os.environ.get("ENGAN_CACHE_DIR"):
        return Path(os.environ["ENGAN_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "engan"


def timing_cache_key(gpu_name: str, compute_capability: str, trt_version: str, precision: str = "fp16") -> str:
    """Key of a timing cache: what TensorRT's cache is specific to (device, TRT version, precision flags).

    Example: ``h100-80gb-hbm3.cc90.trt10.3.0.fp16``.
    """
    cc = compute_capability.replace(".", "")
    return f"{gpu_slug(gpu_name)}.cc{cc}.trt{trt_version}.{precision}"


def default_timing_cache_path(gpu_name: str, compute_capability: str, trt_version: str, precision: str = "fp16") -> Path:
    """Where ``engan export`` keeps the timing cache when ``--timing-cache`` is not given."""
    key = timing_cache_key(gpu_name, compute_capability, trt_version, precision)
    return cache_dir() / "trt" / f"timing.{key}.cache"


def engine_path_for(out_dir: Path, env: TrtEnvironment, precision: str = "fp16") -> Path:
    """``out_dir/model.<gpu-slug>.trt<version>.<precision>.engine`` for this machine."""
    return Path(out_dir) / engine_file_name(env.gpu_name or "", env.trt_version or "", precision)


#: Sidecar fields that must match for an existing engine to be reused instead of rebuilt.
REUSE_FIELDS = (
    "onnx_sha256", "gpu_name", "compute_capability", "trt_version", "precision",
    "profile_min", "profile_opt", "profile_max", "max_batch",
)


def engine_is_current(engine_path: str | os.PathLike, expected: EngineSidecar) -> bool:
    """Whether ``engine_path`` exists and its sidecar matches ``expected`` on :data:`REUSE_FIELDS`."""
    if not Path(engine_path).is_file():
        return False
    try:
        old = read_sidecar(engine_path)
    except SidecarError:
        return False
    return all(list_or_value(getattr(old, f)) == list_or_value(getattr(expected, f)) for f in REUSE_FIELDS)


def list_or_value(v: object) -> object:
    return [int(x) for x in v] if isinstance(v, (list, tuple)) else v


# ----------------------------------------------------------------------------------------
# TensorRT proper (imported lazily; runs only on a CUDA machine with TensorRT 10+)
# ----------------------------------------------------------------------------------------


def build_engine(
    onnx_path: str | os.PathLike,
    engine_path: str | os.PathLike,
    profile: ShapeProfile,
    workspace_gib: float = DEFAULT_WORKSPACE_GIB,
    timing_cache: str | os.PathLike | None = None,
    fp16: bool = True,
    verbose: bool = False,
    log: Callable[[str], None] = print,
) -> Path:
    """Build a serialized TensorRT engine from an engan ONNX file and write it atomically.

    Network from the ONNX parser (explicit batch, the only mode in TensorRT 10), builder
    config with the FP16 flag, a workspace memory-pool limit, one optimisation profile
    for ``input`` and a timing cache loaded from / saved back to ``timing_cache``.

    Args:
        onnx_path: FP32 ONNX file (TensorRT chooses FP16 kernels itself with the FP16 flag).
        engine_path: destination ``.engine`` file.
        profile: min/opt/max HxW and max batch.
        workspace_gib: builder workspace limit in GiB.
        timing_cache: timing cache file to reuse and update (None: no persistent cache).
        fp16: set ``BuilderFlag.FP16``.
        verbose: TensorRT verbose logging.
        log: where status lines go.

    Raises:
        EngineBuildError: TensorRT could not parse or build; names the ONNX file.
    """
    import tensorrt as trt

    major = int(str(trt.__version__).split(".")[0])
    if major < MIN_TRT_MAJOR:
        raise EngineBuildError(f"TensorRT {trt.__version__} found; engan builds engines with TensorRT {MIN_TRT_MAJOR}+ ({TRT_INSTALL_HINT})")
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    logger = trt.Logger(trt.Logger.VERBOSE if verbose else trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode since TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineBuildError(f"TensorRT could not parse {onnx_path}: {errors or 'unknown parser error'}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    if fp16:
        if not getattr(builder, "platform_has_fast_fp16", True):
            log("warning: this GPU has no fast FP16; the engine will be correct but not faster than FP32")
        config.set_flag(trt.BuilderFlag.FP16)

    opt_profile = builder.create_optimization_profile()
    lo, opt, hi = profile.input_shapes()
    opt_profile.set_shape("input", lo, opt, hi)
    config.add_optimization_profile(opt_profile)

    cache_file = Path(timing_cache) if timing_cache is not None else None
    blob = cache_file.read_bytes() if cache_file is not None and cache_file.is_file() else b""
    cache = config.create_timing_cache(blob)
    if not config.set_timing_cache(cache, ignore_mismatch=False):
        log(f"timing cache {cache_file} was made by another GPU/TensorRT; starting a fresh one")
        cache = config.create_timing_cache(b"")
        config.set_timing_cache(cache, ignore_mismatch=False)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineBuildError(
            f"TensorRT failed to build an engine from {onnx_path} (profile {profile.describe()}, workspace "
            f"{workspace_gib} GiB); re-run with a larger --workspace or a smaller --max-shape/--max-batch"
        )
    atomic_write_bytes(engine_path, bytes(memoryview(serialized)))
    if cache_file is not None:
        atomic_write_bytes(cache_file, bytes(memoryview(config.get_timing_cache().serialize())))
    return engine_path


def ensure_engine(
    onnx_path: Path,
    engine_path: Path,
    meta: ArtefactMeta,
    env: TrtEnvironment,
    profile: ShapeProfile,
    workspace_gib: float = DEFAULT_WORKSPACE_GIB,
    timing_cache: Path | None = None,
    log: Callable[[str], None] = print,
) -> tuple[Path, bool]:
    """Build the FP16 engine of ``onnx_path`` and its sidecar, unless an up-to-date one is there.

    Args:
        onnx_path: the FP32 ONNX file.
        engine_path: where the engine goes (:func:`engine_path_for`).
        meta: the ONNX file's artefact metadata (copied into the sidecar as fp16).
        env: this machine (:func:`probe_environment`).
        profile, workspace_gib: as for :func:`build_engine`.
        timing_cache: the timing cache file (None: :func:`default_timing_cache_path`).
        log: where status lines go.

    Returns:
        (the sidecar's path, whether the existing engine was reused).
    """
    from engan.models.checkpoint import file_sha256

    sidecar = EngineSidecar(
        **dataclasses.asdict(dataclasses.replace(meta, precision="fp16")),
        engine_file=engine_path.name, onnx_file=onnx_path.name, onnx_sha256=file_sha256(onnx_path),
        gpu_name=env.gpu_name, compute_capability=env.compute_capability, trt_version=env.trt_version,
        profile_min=list(profile.min_hw), profile_opt=list(profile.opt_hw),
        profile_max=list(profile.max_hw), max_batch=profile.max_batch,
        workspace_gib=workspace_gib, built_at=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    )
    if engine_is_current(engine_path, sidecar):
        return sidecar_path(engine_path), True
    cache = timing_cache or default_timing_cache_path(env.gpu_name, env.compute_capability, env.trt_version, "fp16")
    log(f"engine      building FP16 TensorRT engine ({profile.describe()}), timing cache {cache} ...")
    build_engine(onnx_path, engine_path, profile, workspace_gib, cache, fp16=True, log=log)
    return write_sidecar(engine_path, sidecar), False
