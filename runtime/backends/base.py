"""What every backend promises, and the checks they share (torch-free, numpy only).

A backend runs one network on float32 NCHW RGB arrays in [0, 1] whose height and
width are multiples of the model's pad multiple (16), and returns an array of the
same shape. Padding, tiling and dtype conversion live in :mod:`engan.runtime.prepost`;
a backend does nothing else, so every backend gives the same pixels.

Backends subclass :class:`BaseBackend` and implement ``_run``; the public ``run``
validates the input once for all of them (the template-method idea of Polygraphy's
runners). They are context managers; ``close()`` is idempotent. Every backend class is
built the same way, ``Backend(model, options)`` with a :class:`BackendOptions` (or its
fields as keywords), and ignores the options that do not apply to it.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from engan.runtime.meta import ArtefactMeta


class BackendError(RuntimeError):
    """A backend cannot run this input or this model here; the message says what to do."""


class ModelLoadError(BackendError, ValueError):
    """A model file is missing, corrupt, truncated or breaks the engan input contract.

    The message names the file and the fix.
    """


@dataclass(frozen=True)
class BackendOptions:
    """How to run a model; every backend takes these and ignores what does not apply to it.

    Attributes:
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        threads: CPU intra-op threads (None: the backend's default).
        precision: PyTorch's compute precision, ``fp32`` or ``fp16`` (None: fp32); ONNX and
            TensorRT artefacts run their own precision.
        providers: explicit ONNX Runtime execution providers, in order (None: from the device).
        check_sidecar: TensorRT: refuse engines whose sidecar names another GPU/TensorRT
            version (leave on; off only for engines built outside engan).
    """

    device: str = "auto"
    threads: int | None = None
    precision: str | None = None
    providers: tuple[str, ...] | None = None
    check_sidecar: bool = True

    @classmethod
    def of(cls, options: "BackendOptions | None" = None, **overrides: Any) -> "BackendOptions":
        """``options`` (default: the defaults) with ``overrides`` applied; unknown names are a TypeError."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise TypeError(f"unknown backend option(s) {unknown}; BackendOptions has {sorted(names)}")
        if overrides.get("providers") is not None:
            overrides["providers"] = tuple(overrides["providers"])
        return replace(options or cls(), **overrides)


def usable_cpus() -> int:
    """Logical CPUs this process may run on (its affinity mask, else the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))  # type: ignore[attr-defined]
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def bound_threads(threads: int | None) -> tuple[int | None, str]:
    """``threads`` capped at :func:`usable_cpus`, and a note when it was lowered ('' when not).

    More intra-op threads than CPUs never runs faster, and a huge count (100000) makes a
    backend spend minutes creating threads. None or 0: the backend's default.

    Raises:
        ValueError: a negative or non-integer count.
    """
    if threads is None or (not isinstance(threads, bool) and threads == 0):
        return None, ""
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 0:
        raise ValueError(f"threads must be a positive whole number (or None for the backend's default), got {threads!r}")
    cap = usable_cpus()
    if threads > cap:
        return cap, f"threads={threads} lowered to {cap}, the CPUs this process may use"
    return int(threads), ""


@dataclass
class BackendInfo:
    """What runs, where, and with which libraries.

    Attributes:
        name: ``"onnxruntime"``, ``"tensorrt"`` or ``"torch"``.
        device: ``"cpu"`` or ``"cuda:N"``.
        precision: ``"fp32"``, ``"fp16"`` or ``"int8"`` (from the artefact).
        providers: ONNX Runtime execution providers actually in use (empty otherwise).
        versions: library name -> version.
        model_path: the file that was loaded.
        threads: intra-op CPU threads (None where it does not apply).
        shape_min, shape_max: the (N, C, H, W) range the model accepts, where it is
            limited (a TensorRT optimisation profile, a static ONNX graph); else None.
    """

    name: str
    device: str
    precision: str = "fp32"
    providers: tuple[str, ...] = ()
    versions: dict[str, str] = field(default_factory=dict)
    model_path: str = ""
    threads: int | None = None
    shape_min: tuple[int, ...] | None = None
    shape_max: tuple[int, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict."""
        d = dataclasses.asdict(self)
        d["providers"] = list(self.providers)
        return d


@runtime_checkable
class Backend(Protocol):
    """The interface :class:`engan.runtime.Enhancer` uses."""

    info: BackendInfo
    meta: ArtefactMeta

    def run(self, x: np.ndarray) -> np.ndarray:
        """float32 NCHW RGB [0, 1] (H, W multiples of 16) -> same shape, float32."""
        ...

    def close(self) -> None:
        """Release sessions, engines and device memory; idempotent."""
        ...


def check_input(x: np.ndarray, multiple: int = 16) -> None:
    """Raise ValueError unless ``x`` is float32 Nx3xHxW with H and W multiples of ``multiple``."""
    if not isinstance(x, np.ndarray):
        raise TypeError(f"backends take numpy arrays, got {type(x).__name__}")
    if x.dtype != np.float32:
        raise ValueError(f"backends take float32 arrays, got {x.dtype}; convert with engan.runtime.prepost.to_float")
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"backends take Nx3xHxW RGB arrays, got shape {tuple(x.shape)}")
    h, w = x.shape[2], x.shape[3]
    if h == 0 or w == 0 or x.shape[0] == 0:
        raise ValueError(f"empty input of shape {tuple(x.shape)}")
    if h % multiple or w % multiple:
        raise ValueError(
            f"input {h}x{w} is not a multiple of {multiple}; pad it with engan.runtime.prepost.pad_to_multiple "
            "(Enhancer does this for you)"
        )


class BaseBackend:
    """Shared plumbing: input checks, output checks, context manager, idempotent close."""

    info: BackendInfo
    meta: ArtefactMeta

    def __init__(self) -> None:
        self._closed = False

    @property
    def pad_multiple(self) -> int:
        """The spatial multiple the model needs (from its metadata; 16 for engan graphs)."""
        return int(self.meta.pad_multiple or 16)

    def run(self, x: np.ndarray) -> np.ndarray:
        """Run the network once. See :class:`Backend`."""
        if self._closed:
            raise BackendError(f"the {self.info.name} backend for {self.info.model_path} is closed")
        check_input(x, self.pad_multiple)
        y = self._run(np.ascontiguousarray(x))
        if y.shape != x.shape:
            raise BackendError(
                f"{self.info.model_path} returned shape {tuple(y.shape)} for input {tuple(x.shape)}; "
                "engan models return an image of the input's size (is this an engan generator?)"
            )
        return y.astype(np.float32, copy=False)

    def _run(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _close(self) -> None:
        """Backend-specific release; called once."""

    def close(self) -> None:
        """Release resources; safe to call twice."""
        if not self._closed:
            self._closed = True
            self._close()

    def __enter__(self) -> "BaseBackend":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # best effort; explicit close() is preferred
        try:
            self.close()
        except Exception:
            pass


def model_label(path: Path) -> str:
    """A short model name for messages and info: the run folder's name or the file stem."""
    return path.name if path.is_dir() else path.stem
