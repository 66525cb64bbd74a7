"""Which backend runs a model here, and why: the backend table, the auto rule and every fallback.

The table (:data:`BACKENDS`) has one row per backend: its name and label, the class
that runs it (``"module:Class"``, imported only when that backend is used), the modules
it needs, the model kinds it runs and the devices it runs on. Every backend class takes
the same constructor arguments, ``(model, options: BackendOptions)``.

``backend="auto"`` follows :data:`AUTO`, an ordered list of candidates; the first whose
conditions hold runs the model, and each one passed over says why (the reason
:class:`engan.runtime.Enhancer` reports in ``info``). For an ``.onnx``:

1. TensorRT: ``tensorrt`` + ``cuda-python`` importable, a CUDA GPU, and an engine built
   for this GPU/TensorRT next to the ONNX (``model.*.engine`` / ``.plan``);
2. ONNX Runtime CUDA: ``CUDAExecutionProvider`` available and a CUDA GPU present;
3. OpenVINO: installed, and measured faster than ONNX Runtime INT8 at equal parity on this
   class of CPU (:data:`engan.runtime.backends.openvino.PREFER_OPENVINO_WHEN`: CPUs with
   AMX; not on AVX2-only CPUs, where ONNX Runtime INT8 measured faster); the reason line
   names the CPU and the measurement either way (``ENGAN_AUTO_OPENVINO=0``/``1`` pins it);
4. ONNX Runtime CPU INT8: the INT8 copy ``<stem>.int8.onnx`` made from the same checkpoint
   lies next to the ONNX (``engan export --int8`` writes it; the shipped model has one);
5. ONNX Runtime CPU: the file as given.

An ``.engine``/``.plan`` runs on TensorRT, an OpenVINO IR ``.xml`` on OpenVINO, a ``.safetensors`` or run folder on eager
PyTorch (the ``train`` extra). :func:`open_backend` builds the chosen backend; when
TensorRT or the CUDA session fails to start under ``auto``, it goes on down the list and
says so.

Adding a backend is its module in ``runtime/backends/``, its row
in :data:`BACKENDS` and, for ``auto`` to pick it, its candidate in :data:`AUTO` at the
rank it earns. Nothing here imports a backend library: :func:`available_backends` asks
:func:`importlib.util.find_spec`.
"""
from __future__ import annotations

import dataclasses
import importlib
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from engan.runtime._optional import is_installed
from engan.runtime.backends.base import Backend, BackendOptions, ModelLoadError
from engan.runtime.probe import (  # noqa: F401  (find_int8, INT8_ENDING: part of this module's API)
    INT8_ENDING, MODEL_KINDS, cuda_device_count, engine_compatibility, find_engines, find_int8, model_kind,
    ort_providers,
)


@dataclass(frozen=True)
class BackendSpec:
    """One row of the backend table.

    Attributes:
        name: the short name (``--backend``): ``trt``, ``ort``, ``torch``.
        label: how people call it: ``TensorRT``, ``ONNX Runtime``, ``PyTorch``.
        target: ``"module:Class"`` of the backend class, imported on first use.
        modules: what must be importable for it to run.
        kinds: the model kinds it runs (:data:`engan.runtime.probe.MODEL_KINDS`).
        devices: where it runs (``cpu``, ``cuda``).
        aliases: other accepted spellings of ``name`` (the library's own name first).
    """

    name: str
    label: str
    target: str
    modules: tuple[str, ...]
    kinds: tuple[str, ...]
    devices: tuple[str, ...]
    aliases: tuple[str, ...] = ()

    def backend_class(self) -> Any:
        """Import and return the backend class."""
        module, attr = self.target.split(":")
        return getattr(importlib.import_module(module), attr)

    def create(self, model: str | Path, options: BackendOptions | None = None) -> Backend:
        """Build the backend on ``model`` (every backend takes ``(model, options)``)."""
        return self.backend_class()(Path(model), options or BackendOptions())


#: The backend table, best first.
BACKENDS: dict[str, BackendSpec] = {spec.name: spec for spec in (
    BackendSpec("trt", "TensorRT", "engan.runtime.backends.trt:TrtBackend", ("tensorrt", "cuda"),
                ("engine",), ("cuda",), ("tensorrt",)),
    BackendSpec("ort", "ONNX Runtime", "engan.runtime.backends.ort:OrtBackend", ("onnxruntime",),
                ("onnx",), ("cpu", "cuda"), ("onnxruntime", "onnx")),
    BackendSpec("openvino", "OpenVINO", "engan.runtime.backends.openvino:OpenVINOBackend", ("openvino",),
                ("onnx", "ir"), ("cpu",), ("ov",)),
    BackendSpec("torch", "PyTorch", "engan.runtime.backends.torch_backend:TorchBackend", ("torch", "safetensors"),
                ("checkpoint",), ("cpu", "cuda"), ("pytorch",)),
)}


def available_backends() -> list[str]:
    """Backends whose libraries are installed (``trt``, ``ort``, ``torch``), best first; imports nothing."""
    return [name for name, spec in BACKENDS.items() if all(is_installed(m) for m in spec.modules)]


def canonical_backend(name: str) -> str:
    """Normalise a backend name (``auto``, a table name or one of its aliases, e.g. ``onnxruntime``)."""
    key = (name or "auto").strip().lower()
    if key == "auto":
        return key
    for spec in BACKENDS.values():
        if key == spec.name or key in spec.aliases:
            return spec.name
    raise ValueError(f"unknown backend {name!r}; use one of: auto, {', '.join(BACKENDS)}")


def backend_class(name: str) -> Any:
    """Import and return the backend class registered under ``name``."""
    return BACKENDS[canonical_backend(name)].backend_class()


def backend_label(name: str) -> str:
    """``ONNX Runtime`` for ``ort`` or ``onnxruntime`` (a backend's ``info.name``); unknown names as given."""
    try:
        return BACKENDS[canonical_backend(name)].label
    except (ValueError, KeyError):
        return name


# --------------------------------------------------------------------------- decisions


@dataclass(frozen=True)
class Selection:
    """A backend decision.

    Attributes:
        backend: a :data:`BACKENDS` name.
        model: the file (or run folder) that backend loads.
        device: ``"cpu"``, ``"cuda"``/``"cuda:N"`` or ``"auto"`` (the backend decides).
        reason: one line saying why (the chosen candidate, then each one passed over).
        label: the chosen candidate (``ONNX Runtime CPU INT8``).
        why: why it was chosen.
        passed_over: ``(candidate, why not)`` of each candidate ranked above it.
    """

    backend: str
    model: Path
    device: str
    reason: str
    label: str = ""
    why: str = ""
    passed_over: tuple[tuple[str, str], ...] = ()
    candidate: "Candidate | None" = field(default=None, compare=False, repr=False)


#: What a candidate's check returns when it applies: (model to load, device, why).
Pick = tuple[Path, str, str]


@dataclass(frozen=True)
class Candidate:
    """One rung of the auto rule.

    Attributes:
        label: its name in reasons (``ONNX Runtime CUDA``).
        backend: the :data:`BACKENDS` row that runs it.
        kinds: the model kinds it applies to.
        check: ``(model, device, cpu_int8) -> Pick`` when it applies, else a string: why not.
        falls_through: ``(error, device, options) -> bool``: whether a failure to start goes on
            to the next candidate (else it is raised).
    """

    label: str
    backend: str
    kinds: tuple[str, ...]
    check: Callable[[Path, str, bool], "Pick | str"]
    falls_through: Callable[[BaseException, str, BackendOptions], bool] = lambda e, device, options: False


def _device_index(device: str) -> int:
    d = (device or "auto").lower()
    return int(d.split(":", 1)[1]) if ":" in d and d.split(":", 1)[1].isdigit() else 0


def _check_trt(path: Path, device: str, cpu_int8: bool) -> Pick | str:
    if device == "cpu":
        return "device='cpu' requested"
    missing = [m for m in BACKENDS["trt"].modules if not is_installed(m)]
    if missing:
        return f"{' and '.join(missing)} not installed (pip install 'engan[trt]')"
    engines = find_engines(path)
    if not engines:
        return f"no TensorRT engine next to {path.name} (looked for {path.stem}.*.engine/.plan)"
    if cuda_device_count() < 1:
        return "no CUDA GPU found"
    problems = []
    for engine in engines:
        problem = engine_compatibility(engine, _device_index(device))
        if problem is None:
            return engine, device, (f"engine {engine.name} next to {path.name} matches this GPU, tensorrt "
                                    "importable, CUDA GPU present")
        problems.append(problem)
    return "no engine built for this GPU/TensorRT (" + "; ".join(problems) + ")"


def _check_ort_cuda(path: Path, device: str, cpu_int8: bool) -> Pick | str:
    if device == "cpu":
        return "device='cpu' requested"
    providers = ort_providers()
    if "CUDAExecutionProvider" not in providers:
        return f"onnxruntime has no CUDAExecutionProvider (providers: {providers}; install onnxruntime-gpu for CUDA)"
    if cuda_device_count() < 1:
        return "CUDAExecutionProvider is available but no CUDA GPU was found"
    return path, "cuda" if device == "auto" else device, "CUDAExecutionProvider available and a CUDA GPU present"


def _openvino_decision() -> tuple[bool, str]:
    """Whether auto prefers OpenVINO here, and why (the measured rule; imports no openvino)."""
    from engan.runtime.backends.openvino import openvino_auto_reason

    return openvino_auto_reason(installed=is_installed("openvino"))


def _check_openvino(path: Path, device: str, cpu_int8: bool) -> Pick | str:
    if device not in ("auto", "cpu"):
        return f"device={device!r} requested (OpenVINO runs on the CPU here)"
    prefer, why = _openvino_decision()
    why = why.split(": ", 1)[1]
    return (path, "cpu", why) if prefer else why


def _check_int8(path: Path, device: str, cpu_int8: bool) -> Pick | str:
    if not cpu_int8:
        return "cpu_int8=False: the file runs as given"
    if path.name.lower().endswith((INT8_ENDING, ".fp16.onnx")):
        return f"{path.name} is itself a reduced-precision copy"
    int8, no_int8 = find_int8(path)
    if int8 is None:
        return no_int8 or f"no {path.name[: -len('.onnx')]}{INT8_ENDING} next to {path.name}"
    return int8, "cpu" if device == "auto" else device, (
        f"{int8.name}, the INT8 copy of {path.name} (about 2x faster than FP32 on a CPU; --backend ort runs "
        f"{path.name} as given)")


def _check_ort_cpu(path: Path, device: str, cpu_int8: bool) -> Pick | str:
    return path, "cpu" if device == "auto" else device, f"{path.name} as given"


def _check_engine(path: Path, device: str, cpu_int8: bool) -> Pick | str:
    return path, device, f"the model is a TensorRT engine ({path.suffix})"


def _check_checkpoint(path: Path, device: str, cpu_int8: bool) -> Pick | str:
    return path, device, ("the model is a .safetensors checkpoint/run folder (export it with `engan export` to run "
                          "without torch)")


def _check_ir(path: Path, device: str, cpu_int8: bool) -> Pick | str:
    if not is_installed("openvino"):
        return f"openvino is not installed (pip install 'engan[openvino]') and {path.name} is OpenVINO IR"
    return path, "cpu", "the model is OpenVINO IR (.xml)"


def _cuda_session_failed(e: BaseException, device: str, options: BackendOptions) -> bool:
    """The CUDA provider failed to start (drivers, cuDNN) under device='auto': the CPU still works."""
    return device == "auto" and not options.providers and not isinstance(e, ModelLoadError)


#: The auto rule, best first (see the module docstring).
AUTO: tuple[Candidate, ...] = (
    Candidate("TensorRT", "trt", ("onnx",), _check_trt, lambda e, device, options: True),  # the ONNX still runs
    Candidate("ONNX Runtime CUDA", "ort", ("onnx",), _check_ort_cuda, _cuda_session_failed),
    Candidate("OpenVINO", "openvino", ("onnx",), _check_openvino),
    Candidate("ONNX Runtime CPU INT8", "ort", ("onnx",), _check_int8),
    Candidate("ONNX Runtime CPU", "ort", ("onnx",), _check_ort_cpu),
    Candidate("TensorRT", "trt", ("engine",), _check_engine),
    Candidate("PyTorch", "torch", ("checkpoint",), _check_checkpoint),
    Candidate("OpenVINO", "openvino", ("ir",), _check_ir),
)


def _auto(path: Path, kind: str, device: str, cpu_int8: bool, failed: dict[str, str]) -> Selection:
    passed: list[tuple[str, str]] = []
    for cand in AUTO:
        if kind not in cand.kinds:
            continue
        found = failed.get(cand.label) or cand.check(path, device, cpu_int8)
        if isinstance(found, str):
            passed.append((cand.label, found))
            continue
        model, dev, why = found
        reason = f"{cand.label}: {why}" + "".join(f" ({label} not used: {no})" for label, no in passed)
        return Selection(cand.backend, model, dev, reason, cand.label, why, tuple(passed), cand)
    raise ValueError(f"no backend runs {path} here: " + "; ".join(f"{label}: {no}" for label, no in passed))


def _explicit(path: Path, kind: str, name: str, device: str) -> Selection:
    spec = BACKENDS[name]
    requested = f"backend '{name}' requested"

    def chosen(model: Path, why: str) -> Selection:
        return Selection(name, model, device, f"{spec.label}: {why}", spec.label, why)

    if name == "ort":
        if kind != "onnx":
            raise ValueError(
                f"backend 'ort' runs .onnx files; {path} is a {kind}: export it with `engan export`, or use "
                f"backend='{'trt' if kind == 'engine' else 'torch'}'"
            )
        return chosen(path, f"{requested} (device {device})")
    if name == "trt":
        if kind == "engine":
            return chosen(path, requested)
        if kind == "onnx":
            engines = find_engines(path)
            if not engines:
                raise ValueError(
                    f"backend 'trt' needs a TensorRT engine and none lies next to {path} (looked for "
                    f"{path.stem}.*.engine/.plan); build one with `engan export --trt` or pass the .engine file"
                )
            compatible = [e for e in engines if engine_compatibility(e, _device_index(device)) is None]
            engine = (compatible or engines)[0]
            return chosen(engine, f"{requested}, engine {engine.name} next to {path.name}")
        raise ValueError(
            f"backend 'trt' runs TensorRT engines; {path} is a checkpoint: export it with `engan export --trt`"
        )
    if name == "torch":
        if kind == "checkpoint":
            return chosen(path, requested)
        sibling = path.with_suffix(".safetensors")
        if sibling.is_file():
            return chosen(sibling, f"{requested}, weights {sibling.name} next to {path.name}")
        raise ValueError(
            f"backend 'torch' runs .safetensors checkpoints or run folders; {path} is a {kind} file "
            f"(and no {sibling.name} lies next to it): use backend='{'ort' if kind == 'onnx' else 'trt'}'"
        )
    if kind not in spec.kinds:  # OpenVINO, and backends added to the table later
        takes = " or ".join("/".join(MODEL_KINDS[k]) for k in spec.kinds)
        runs_it = next(n for n, row in BACKENDS.items() if kind in row.kinds)  # the first row for this kind
        fix = "export it with `engan export`" if kind == "checkpoint" else f"use backend='{runs_it}'"
        article = "an" if kind[0] in "aeiou" else "a"
        raise ValueError(f"backend '{name}' runs {takes} files; {path} is {article} {kind} file: {fix}")
    return chosen(path, requested)


def select_backend(model: str | Path, backend: str = "auto", device: str = "auto", cpu_int8: bool = True,
                   failed: dict[str, str] | None = None) -> Selection:
    """Decide which backend runs ``model`` and say why (nothing is loaded).

    Args:
        model: an ``.onnx``, ``.engine``/``.plan`` or ``.safetensors`` file, or a run folder.
        backend: ``auto`` or a backend name (see :func:`canonical_backend`).
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        cpu_int8: under ``auto`` on a CPU, run the INT8 copy next to an ``.onnx`` when
            there is one (see :func:`engan.runtime.probe.find_int8`); False runs the file as given.
        failed: candidate label -> why it failed to start; those are passed over (used by
            :func:`open_backend`).

    Raises:
        ValueError: a backend that cannot run this kind of model (the message says what would).
    """
    path = Path(model)
    name = canonical_backend(backend)
    kind = model_kind(path)
    dev = (device or "auto").strip().lower()
    if name == "auto":
        return _auto(path, kind, dev, cpu_int8, dict(failed or {}))
    return _explicit(path, kind, name, dev)


def open_backend(model: str | Path, backend: str = "auto", options: BackendOptions | None = None,
                 cpu_int8: bool = True) -> tuple[Backend, Selection]:
    """Select a backend for ``model`` and build it, falling back down the auto rule where that is safe.

    Under ``backend="auto"``, a TensorRT engine that will not load (sidecar mismatch, broken
    install) gives way to ONNX Runtime, and a CUDA session that fails to start under
    ``device="auto"`` to the CPU: a RuntimeWarning says so and the selection's reason
    names the failure. Anything else is raised.

    Raises:
        ValueError: ``options.precision`` other than fp32 for a backend that runs the
            artefact's own precision, or a backend that cannot run this model.
        ModelLoadError / BackendUnavailable / BackendError: the model or backend cannot start.
    """
    options = options or BackendOptions()
    failed: dict[str, str] = {}
    warned: list[str] = []
    while True:
        sel = select_backend(model, backend, options.device, cpu_int8, failed)
        if options.precision not in (None, "fp32") and sel.backend not in ("torch", "openvino"):
            raise ValueError(
                f"precision={options.precision!r} applies to the PyTorch and OpenVINO backends only; the "
                f"{sel.backend} backend runs the artefact's precision (pass model.fp16.onnx / an fp16 engine instead)"
            )
        try:
            be = BACKENDS[sel.backend].create(sel.model, dataclasses.replace(options, device=sel.device))
            break
        except Exception as e:
            cand = sel.candidate
            if cand is None or not cand.falls_through(e, options.device, options):
                raise
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            failed[cand.label] = f"{sel.model.name} failed to start ({first})"
            warned.append(f"{cand.label} could not start {sel.model.name} ({first})")
    for line in warned:
        warnings.warn(f"{line}; using {sel.label}", RuntimeWarning, stacklevel=2)
    return be, sel
