"""TensorRT engine sidecars: what an engine was built for, and refusing a mismatch. Torch-free.

A serialized TensorRT engine only runs on the GPU model and the TensorRT version
that built it. ``engan export`` therefore names each engine after both
(``model.<gpu-slug>.trt<version>.fp16.engine``) and writes a JSON sidecar next to
it (same name + ``.json``) holding the :class:`~engan.runtime.meta.ArtefactMeta`
fields plus the GPU, compute capability, TensorRT version, optimisation profile
and the sha256 of the ONNX file it was built from. The runtime reads the sidecar
before deserializing and refuses a mismatched engine with a message that says how
to rebuild it.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from engan.runtime.atomic import atomic_write_text
from engan.runtime.backends.base import ModelLoadError
from engan.runtime.meta import ArtefactMeta

#: Sidecar suffix appended to the engine file name.
SIDECAR_SUFFIX = ".json"

#: The command that builds an engine on the machine that will run it.
REBUILD_HINT = "engan export --checkpoint RUN_DIR|FILE.safetensors --fp16 --engine"


class EngineMetaError(ModelLoadError):
    """Base class of sidecar problems; every message names the file and the fix.

    A :class:`~engan.runtime.backends.base.ModelLoadError` (so a ``RuntimeError`` and a
    ``ValueError``): a foreign or unverifiable engine is a model that cannot load here.
    """


class SidecarError(EngineMetaError):
    """The sidecar of an engine is missing or unreadable."""


class EngineMismatchError(EngineMetaError):
    """An engine was built for another GPU or TensorRT version than this machine's."""


@dataclass
class EngineSidecar(ArtefactMeta):
    """Everything needed to decide whether an engine can run here, plus its I/O contract.

    Inherits the :class:`ArtefactMeta` fields (version, model name, preset, params,
    checkpoint sha256, precision, input/output names, layout, colour, range, pad
    multiple, opset, extra), so the sidecar JSON is the artefact JSON plus the fields
    below.

    Attributes:
        engine_file: the engine's file name (no folder).
        onnx_file: the ONNX file the engine was built from (file name).
        onnx_sha256: sha256 of that ONNX file.
        gpu_name: CUDA device name of the building GPU (e.g. ``NVIDIA H100 80GB HBM3``).
        compute_capability: ``major.minor`` of that GPU (e.g. ``9.0``).
        trt_version: ``tensorrt.__version__`` of the builder.
        profile_min, profile_opt, profile_max: optimisation profile as ``[H, W]``.
        max_batch: largest batch of the profile (min and opt batch are 1).
        workspace_gib: builder workspace limit.
        built_at: ISO-8601 UTC time of the build.
    """

    precision: str = "fp16"
    engine_file: str = ""
    onnx_file: str = ""
    onnx_sha256: str = ""
    gpu_name: str = ""
    compute_capability: str = ""
    trt_version: str = ""
    profile_min: list[int] = field(default_factory=lambda: [256, 256])
    profile_opt: list[int] = field(default_factory=lambda: [400, 608])
    profile_max: list[int] = field(default_factory=lambda: [1088, 1920])
    max_batch: int = 1
    workspace_gib: float = 0.0
    built_at: str = ""

    def artefact_meta(self) -> ArtefactMeta:
        """The plain :class:`ArtefactMeta` part (the I/O contract and provenance)."""
        names = ArtefactMeta.__dataclass_fields__.keys()
        return ArtefactMeta(**{n: getattr(self, n) for n in names})

    def input_shapes(self) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        """Profile as NCHW ``(min, opt, max)`` shapes; min and opt use batch 1."""
        return (
            (1, 3, *map(int, self.profile_min)),
            (1, 3, *map(int, self.profile_opt)),
            (int(self.max_batch), 3, *map(int, self.profile_max)),
        )

    def accepts(self, n: int, h: int, w: int) -> bool:
        """Whether an ``n x 3 x h x w`` input lies inside the engine's profile."""
        (h0, w0), (h1, w1) = self.profile_min, self.profile_max
        return 1 <= n <= self.max_batch and h0 <= h <= h1 and w0 <= w <= w1

    def check_input_shape(self, n: int, h: int, w: int) -> None:
        """Raise ``ValueError`` naming the engine, its profile and the fix when the shape is outside it."""
        if self.accepts(n, h, w):
            return
        (h0, w0), (h1, w1) = self.profile_min, self.profile_max
        raise ValueError(
            f"input {n}x3x{h}x{w} is outside the profile of engine {self.engine_file or '(unnamed)'}: "
            f"batch 1..{self.max_batch}, H {h0}..{h1}, W {w0}..{w1}. Tile or resize the image, or rebuild "
            f"the engine with a larger profile: {REBUILD_HINT} --max-shape HxW --max-batch N"
        )


_SLUG_DROP = re.compile(r"[^a-z0-9]+")


def gpu_slug(gpu_name: str) -> str:
    """Short file-name-safe form of a CUDA device name.

    ``NVIDIA H100 80GB HBM3`` -> ``h100-80gb-hbm3``; ``NVIDIA GeForce RTX 4090`` ->
    ``geforce-rtx-4090``. An empty name gives ``gpu``.
    """
    slug = _SLUG_DROP.sub("-", gpu_name.lower()).strip("-")
    slug = slug.removeprefix("nvidia-")
    return slug or "gpu"


def _version_slug(version: str) -> str:
    return re.sub(r"[^0-9A-Za-z.]+", "-", version.strip()).strip("-.") or "unknown"


def engine_file_name(gpu_name: str, trt_version: str, precision: str = "fp16", stem: str = "model") -> str:
    """Engine file name that records where it can run.

    Example: ``engine_file_name("NVIDIA H100 80GB HBM3", "10.3.0", "fp16")`` ->
    ``model.h100-80gb-hbm3.trt10.3.0.fp16.engine``.
    """
    return f"{stem}.{gpu_slug(gpu_name)}.trt{_version_slug(trt_version)}.{precision}.engine"


def sidecar_path(engine_path: str | os.PathLike) -> Path:
    """The sidecar of an engine: the same file name with ``.json`` appended."""
    p = Path(engine_path)
    if p.name.endswith(".engine" + SIDECAR_SUFFIX):
        return p
    return p.with_name(p.name + SIDECAR_SUFFIX)


def write_sidecar(engine_path: str | os.PathLike, sidecar: EngineSidecar) -> Path:
    """Write ``sidecar`` next to ``engine_path`` atomically; returns the sidecar path."""
    path = sidecar_path(engine_path)
    atomic_write_text(path, sidecar.to_json() + "\n")
    return path


def read_sidecar(engine_path: str | os.PathLike) -> EngineSidecar:
    """Read the sidecar of an engine (or the sidecar file itself).

    Raises:
        SidecarError: the sidecar is missing, not JSON, or not an engan engine sidecar;
            the message names the file and how to get a good one.
    """
    path = sidecar_path(engine_path)
    engine = path.with_name(path.name[: -len(SIDECAR_SUFFIX)])
    if not path.is_file():
        raise SidecarError(
            f"{path} not found: the engine {engine.name} has no sidecar, so engan cannot check that it was "
            f"built for this GPU and TensorRT version. Rebuild the engine on this machine: {REBUILD_HINT}"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError(f"expected a JSON object, got {type(data).__name__}")
        missing = [k for k in ("gpu_name", "trt_version", "compute_capability") if not data.get(k)]
        if missing:
            raise ValueError(f"missing fields {missing}")
        sidecar = EngineSidecar.from_json(json.dumps(data))
    except (ValueError, TypeError, UnicodeDecodeError) as e:
        raise SidecarError(
            f"{path} is not a valid engan engine sidecar ({e}); delete it and the engine {engine.name}, "
            f"then rebuild on this machine: {REBUILD_HINT}"
        ) from None
    return sidecar


def _cc_text(cc: str | tuple[int, int] | list[int]) -> str:
    if isinstance(cc, (tuple, list)):
        return ".".join(str(int(v)) for v in cc)
    return str(cc).strip()


def _norm_name(name: str) -> str:
    return " ".join(name.split()).lower()


def check_compatible(
    sidecar: EngineSidecar,
    gpu_name: str,
    compute_capability: str | tuple[int, int],
    trt_version: str,
    engine_path: str | os.PathLike | None = None,
) -> None:
    """Refuse an engine built for another GPU model, compute capability or TensorRT version.

    Args:
        sidecar: what the engine was built for (from :func:`read_sidecar`).
        gpu_name: this machine's CUDA device name.
        compute_capability: this GPU's ``"major.minor"`` (or a ``(major, minor)`` tuple).
        trt_version: the importable ``tensorrt.__version__``.
        engine_path: the engine file, named in the error (defaults to the sidecar's ``engine_file``).

    Raises:
        EngineMismatchError: naming the engine file, every field that differs, and the fix.
    """
    diffs: list[str] = []
    if _norm_name(sidecar.gpu_name) != _norm_name(gpu_name):
        diffs.append(f"GPU: built on '{sidecar.gpu_name}', this machine has '{gpu_name}'")
    here_cc = _cc_text(compute_capability)
    if _cc_text(sidecar.compute_capability) != here_cc:
        diffs.append(f"compute capability: built for {sidecar.compute_capability}, this GPU is {here_cc}")
    if sidecar.trt_version.strip() != str(trt_version).strip():
        diffs.append(f"TensorRT: built with {sidecar.trt_version}, this machine has {trt_version}")
    if not diffs:
        return
    name = Path(engine_path).name if engine_path is not None else (sidecar.engine_file or "(unnamed engine)")
    raise EngineMismatchError(
        f"TensorRT engine {name} cannot run here: {'; '.join(diffs)}. An engine only runs on the GPU model "
        f"and TensorRT version that built it. Rebuild it on this machine: {REBUILD_HINT} "
        "(or run the portable model.fp16.onnx / model.onnx with ONNX Runtime)."
    )
