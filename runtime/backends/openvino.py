"""OpenVINO backend (``pip install 'engan[openvino]'``): ``.onnx`` read directly, or OpenVINO IR ``.xml``.

* Compiled once per input shape: the model is reshaped to the static (N, 3, H, W) of
  each call and compiled for it (static shapes measured 15 % faster than dynamic ones
  on the issue-24 Xeon); compiled models are kept in an LRU cache of
  :data:`SHAPE_CACHE_SIZE` shapes, so a folder of mixed sizes does not recompile per
  photo and memory stays bounded.
* Precision: BF16 (``INFERENCE_PRECISION_HINT=bf16``) where the CPU computes bf16
  natively (AMX or AVX512-BF16, :mod:`engan.runtime.cpu`) and OpenVINO reports it, FP32
  elsewhere; ``precision="fp32"`` forces FP32. An INT8 IR (``engan export --openvino
  --int8``) runs its quantized layers in INT8 whatever the hint.
* ``threads`` -> ``INFERENCE_NUM_THREADS`` (default: physical cores, as ONNX Runtime),
  one stream, ``PERFORMANCE_HINT=LATENCY``: one photo at a time uses every thread.
* The engan metadata (input/output names, pad multiple, precision, provenance) comes
  from the ONNX ``metadata_props`` (read first by the bounded reader, so a garbage file
  is refused at once) or from the IR's ``rt_info`` (OpenVINO keeps the ONNX metadata
  there under ``framework``).

:func:`openvino_auto_reason` holds the measured rule for ``--backend auto``: it says,
for a given CPU, whether OpenVINO should be preferred over ONNX Runtime and why, with
the measurement it rests on (:data:`PREFER_OPENVINO_WHEN`).

``openvino`` is imported when a backend is created, never at module import.
"""
from __future__ import annotations

import collections
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from engan.runtime._optional import BackendUnavailable, install_hint, is_installed, require
from engan.runtime.backends.base import (
    BackendError, BackendInfo, BackendOptions, BaseBackend, ModelLoadError, model_label,
)
from engan.runtime.cpu import CpuInfo, bf16_capable, cpu_info
from engan.runtime.meta import PREFIX, ArtefactMeta, read_onnx_metadata

#: The pip extra that installs OpenVINO (named in every "not installed" message).
INSTALL = install_hint("openvino")

#: Compiled shapes kept per backend (each holds its own weights and buffers: a few tens of MB).
SHAPE_CACHE_SIZE = 8

#: ``precision=`` spellings -> OpenVINO inference precision hint.
_PRECISIONS = {"fp32": "f32", "f32": "f32", "bf16": "bf16"}
_FLOAT_TYPES = ("f32", "f16")
#: The rt_info section holding the ``engan.*`` keys (where OpenVINO puts ONNX metadata_props).
IR_SECTION = "framework"


def import_openvino() -> Any:
    """``import openvino``, or :class:`BackendUnavailable` naming the extra that installs it."""
    return require("openvino", "the OpenVINO backend")


def ir_metadata(model: Any) -> dict[str, str]:
    """The ``engan.*`` keys of an ``openvino.Model``: OpenVINO keeps ONNX metadata_props in
    ``rt_info["framework"]`` and IR files keep that section (empty when there is none)."""
    if not model.has_rt_info([IR_SECTION]):
        return {}
    section = model.get_rt_info([IR_SECTION]).astype(dict)
    return {k: str(v.astype(str)) for k, v in section.items() if k.startswith(PREFIX)}


# ---------------------------------------------------------------------------------- the auto rule


@dataclass(frozen=True)
class Measured:
    """One measurement behind the auto rule: OpenVINO's best CPU path against ONNX Runtime INT8.

    Attributes:
        openvino: what ran on OpenVINO (e.g. ``BF16, static shape``).
        speedup: ONNX Runtime INT8 latency / OpenVINO latency (>1: OpenVINO faster); None: not measured.
        psnr_db: OpenVINO's PSNR vs eager FP32 torch.
        ort_int8_psnr_db: ONNX Runtime INT8's PSNR vs eager FP32 torch, same run.
        source: where and how it was measured.
    """

    openvino: str
    speedup: float | None
    psnr_db: float | None
    ort_int8_psnr_db: float | None
    source: str

    @property
    def prefer(self) -> bool:
        """OpenVINO wins: faster than ONNX Runtime INT8 at equal or better parity."""
        return (self.speedup is not None and self.speedup > 1.0 and self.psnr_db is not None
                and self.ort_int8_psnr_db is not None and self.psnr_db >= self.ort_int8_psnr_db)


#: CPU class -> the measurement deciding ``--backend auto`` there. The one place the rule lives:
#: a new measurement (``pytest benchmarks/test_bench_openvino.py``) changes a row here.
PREFER_OPENVINO_WHEN: dict[str, Measured] = {
    "amx": Measured("BF16, static 400x608", 142 / 68.5, 60.6, 44.8,
                    "issue 24: lite model at 400x608, batch 1, 2 threads, idle 2-core Xeon with AMX, "
                    "interleaved rounds: 68.5 ms vs ORT INT8 142 ms"),
    "avx512_bf16": Measured("BF16", None, None, None,
                            "not measured yet on a CPU with AVX512-BF16 but no AMX (Cooper Lake, Zen 4)"),
    "avx2": Measured("FP32, static 400x608", 154.4 / 213.1, 139.1, 43.8,
                     "benchmarks/test_bench_openvino.py: lite model at 400x608, batch 1, 2 threads, quiet 2-core AMD EPYC "
                     "(Zen 3, AVX2, load average 1), interleaved rounds on LOL photos: 213 ms vs ORT INT8 154 ms; an "
                     "NNCF INT8 IR ran 141 ms at 30.1 dB"),
}


#: Environment variable that pins the OpenVINO rung of ``--backend auto``: ``0`` never, ``1`` whenever
#: installed (unset: :data:`PREFER_OPENVINO_WHEN` for this CPU's class).
OPENVINO_ENV = "ENGAN_AUTO_OPENVINO"


def cpu_class(cpu: CpuInfo) -> str:
    """The row of :data:`PREFER_OPENVINO_WHEN` that applies to ``cpu``."""
    if cpu.amx:
        return "amx"
    if cpu.avx512_bf16:
        return "avx512_bf16"
    return "avx2"


def openvino_auto_reason(cpu: CpuInfo | None = None, installed: bool | None = None) -> tuple[bool, str]:
    """Should ``--backend auto`` run an ``.onnx`` on OpenVINO rather than ONNX Runtime here, and why.

    Args:
        cpu: the CPU to decide for (default: this one, :func:`engan.runtime.cpu.cpu_info`).
        installed: whether ``openvino`` is importable (default: asked without importing it).

    Returns:
        (prefer, reason): the reason is one line for the selection's reason string, naming the
        CPU and the measurement either way.
    """
    installed = is_installed("openvino") if installed is None else installed
    pinned = os.environ.get(OPENVINO_ENV, "").strip()
    if pinned == "0":
        return False, f"OpenVINO not used: {OPENVINO_ENV}=0 is set"
    if pinned == "1":
        return installed, (f"OpenVINO: {OPENVINO_ENV}=1 is set" if installed else
                           f"OpenVINO not used: {OPENVINO_ENV}=1 but openvino is not installed ({INSTALL})")
    cpu = cpu or cpu_info()
    cls = cpu_class(cpu)
    m = PREFER_OPENVINO_WHEN[cls]
    features = {"amx": "AMX", "avx512_bf16": "AVX512-BF16 (no AMX)", "avx2": "no AMX/AVX512-BF16"}[cls]
    if m.speedup is None:
        return False, (f"OpenVINO not preferred: this CPU has {features} ({cpu.describe()}) and OpenVINO {m.openvino} "
                       f"is {m.source}; ONNX Runtime INT8 stays the default")
    where = m.source.split(":")[0]  # the full source stays in PREFER_OPENVINO_WHEN
    if not m.prefer:
        has = "has no AMX/AVX512-BF16" if cls == "avx2" else f"has {features}"
        faster = (f"ONNX Runtime INT8 measured {1 / m.speedup:.2f}x faster than OpenVINO {m.openvino}"
                  if m.speedup <= 1 else f"OpenVINO {m.openvino} measured {m.speedup:.2f}x faster but at lower parity")
        return False, (f"OpenVINO not preferred: this CPU {has} ({cpu.describe()}); {faster} "
                       f"({m.psnr_db:.1f} vs {m.ort_int8_psnr_db:.1f} dB PSNR; {where})")
    figures = (f"OpenVINO {m.openvino} {m.speedup:.2f}x ONNX Runtime INT8's speed at {m.psnr_db:.1f} vs "
               f"{m.ort_int8_psnr_db:.1f} dB PSNR ({where})")
    if not installed:
        return False, (f"OpenVINO not used: openvino is not installed ({INSTALL}); on this CPU ({cpu.describe()}) "
                       f"it would be: measured {figures}")
    return True, f"OpenVINO: this CPU has {features} ({cpu.describe()}); measured {figures}"


# ---------------------------------------------------------------------------------- the backend


def _hint_for(precision: str | None, ov_caps: Sequence[str], cpu: CpuInfo) -> str:
    """The inference precision hint (``bf16``/``f32``) for ``precision`` (None: the CPU's best)."""
    native = bf16_capable(cpu) and "BF16" in ov_caps
    if precision in (None, "", "auto"):
        return "bf16" if native else "f32"
    key = str(precision).lower()
    if key not in _PRECISIONS:
        raise ValueError(f"precision={precision!r} is not an OpenVINO CPU precision; use None (the CPU's best), "
                         "'fp32' or 'bf16'")
    if _PRECISIONS[key] == "bf16" and not native:
        raise BackendUnavailable(
            f"precision='bf16' needs a CPU with native bf16 (AMX or AVX512-BF16) and OpenVINO reporting it; this "
            f"CPU is {cpu.describe()} (OpenVINO capabilities {list(ov_caps)}): use precision='fp32' or None")
    return _PRECISIONS[key]


class OpenVINOBackend(BaseBackend):
    """Run an engan ``.onnx`` (or OpenVINO IR ``.xml``) with OpenVINO on the CPU.

    Args:
        path: the ``.onnx`` or ``.xml`` file (its ``.bin`` beside it).
        options: :class:`BackendOptions` (or the same names as keywords): ``device`` ``auto`` or
            ``cpu`` (OpenVINO's GPU/NPU plugins are not used); ``threads`` ->
            ``INFERENCE_NUM_THREADS`` (default: physical cores); ``precision`` None (BF16 where
            the CPU computes it natively, else FP32), ``fp32`` or ``bf16``; ``providers`` must
            be empty (they are ONNX Runtime's).
        shape_cache: (keyword) how many compiled shapes to keep (LRU).
    """

    name = "openvino"

    def __init__(self, path: str | os.PathLike, options: BackendOptions | None = None, **overrides: Any) -> None:
        shape_cache = int(overrides.pop("shape_cache", SHAPE_CACHE_SIZE))
        opts = BackendOptions.of(options, **overrides)
        device, threads, precision, providers = opts.device, opts.threads, opts.precision, opts.providers
        super().__init__()
        self._compiled: collections.OrderedDict[tuple[int, ...], Any] = collections.OrderedDict()
        self.path = Path(path)
        if providers:
            raise ValueError(f"providers={list(providers)} are ONNX Runtime execution providers; the OpenVINO "
                             "backend takes none (use backend='ort' for them)")
        if (device or "auto").strip().lower() not in ("auto", "cpu"):
            raise BackendUnavailable(f"the OpenVINO backend runs on the CPU; device={device!r} is not supported "
                                     "(use backend='ort' or 'trt' for CUDA GPUs)")
        if shape_cache < 1:
            raise ValueError(f"shape_cache must be at least 1, got {shape_cache}")
        props = self._check_file()
        ov = import_openvino()
        self._core = ov.Core()
        self._model = self._read(props)
        self.meta = self._contract(props)
        cpu = cpu_info()
        caps = list(self._core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
        self.hint = _hint_for(precision, caps, cpu)
        if threads is None:
            from engan.runtime.backends.ort import physical_cores  # a function only: onnxruntime is not imported

            threads = physical_cores()
        self._config = {"INFERENCE_PRECISION_HINT": self.hint, "INFERENCE_NUM_THREADS": int(threads),
                        "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}
        self.shape_cache = int(shape_cache)
        self.compiles = 0  # how many times a shape was compiled (tests, benchmarks)
        artefact = self.meta.precision or "fp32"
        self.info = BackendInfo(
            name=self.name,
            device="cpu",
            precision="bf16" if self.hint == "bf16" and artefact == "fp32" else artefact,
            versions={"openvino": ov.__version__.split("-")[0]},
            model_path=str(self.path),
            threads=int(threads),
        )
        self.precision_note = (f"OpenVINO {self.hint.upper()} on {cpu.describe()}"
                               + ("" if self.hint == "bf16" or precision else " (no native bf16: FP32)"))

    # ------------------------------------------------------------------ loading
    def _check_file(self) -> dict[str, str] | None:
        """Refuse a missing or non-model file before OpenVINO parses it; the ONNX metadata (None for IR)."""
        suffix = self.path.suffix.lower()
        if suffix not in (".onnx", ".xml"):
            raise ModelLoadError(f"{self.path}: the OpenVINO backend runs .onnx files (from `engan export`) or "
                                 "OpenVINO IR .xml files (from `engan export --openvino`)")
        if not self.path.is_file():
            raise ModelLoadError(f"model not found: {self.path}; pass an .onnx or .xml file written by `engan export`")
        if suffix == ".xml":
            if not self.path.with_suffix(".bin").is_file():
                raise ModelLoadError(f"{self.path} has no weights file {self.path.with_suffix('.bin').name} beside "
                                     "it; copy both files of the IR, or run `engan export --openvino` again")
            return None
        try:
            return read_onnx_metadata(self.path)
        except ValueError as e:
            raise ModelLoadError(f"{self.path} is not a loadable ONNX model ({getattr(e, 'detail', e)}); the file is "
                                 "corrupt, truncated or not ONNX: re-run `engan export` or copy the file again") from None
        except OSError as e:
            raise ModelLoadError(f"cannot read {self.path}: {(e.strerror or str(e)).lower()}") from None

    def _read(self, props: dict[str, str] | None) -> Any:
        try:
            return self._core.read_model(str(self.path))
        except Exception as e:  # OpenVINO raises RuntimeError subclasses with long multi-line texts
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            kind = "ONNX model" if props is not None else "OpenVINO IR"
            raise ModelLoadError(f"OpenVINO could not read {self.path} as an {kind} ({first}); re-run `engan export` "
                                 "or copy the file again") from None

    def _contract(self, props: dict[str, str] | None) -> ArtefactMeta:
        """The engan metadata, checked against the graph (one float Nx3xHxW input, names as declared)."""
        if props is None:
            props = ir_metadata(self._model)
        is_engan = any(k.startswith(PREFIX) for k in props)
        meta = ArtefactMeta.from_props(props) if is_engan else ArtefactMeta()
        meta.model_name = meta.model_name or model_label(self.path)
        inputs, outputs = self._model.inputs, self._model.outputs
        fix = "export the generator with `engan export`"
        if len(inputs) != 1:
            raise ModelLoadError(f"{self.path} has {len(inputs)} inputs; an engan model has one image input "
                                 f"(float32 Nx3xHxW RGB in [0, 1]): {fix}")
        inp = inputs[0]
        shape, etype = inp.get_partial_shape(), inp.get_element_type().get_type_name()
        if etype not in _FLOAT_TYPES or shape.rank.is_dynamic or shape.rank.get_length() != 4 or (
                shape[1].is_static and shape[1].get_length() != 3):
            raise ModelLoadError(f"{self.path} takes a {etype} input of shape {shape}; an engan model takes float32 "
                                 f"Nx3xHxW RGB in [0, 1]: {fix}")
        names = [o.get_any_name() for o in outputs]
        if is_engan and meta.input_name not in inp.get_names():
            raise ModelLoadError(f"{self.path}: its metadata names the input '{meta.input_name}' but the graph's input "
                                 f"is '{inp.get_any_name()}'; the file was edited after `engan export`: export it again")
        if is_engan and meta.output_name not in names:
            raise ModelLoadError(f"{self.path}: its metadata names the output '{meta.output_name}' but the graph "
                                 f"outputs {names}; export it again with `engan export`")
        self._input = inp.get_any_name()
        self._output = meta.output_name if is_engan else names[0]
        self.engan_model = is_engan
        return meta

    # ------------------------------------------------------------------ compiling
    def _request(self, shape: tuple[int, ...]) -> Any:
        """The infer request compiled for ``shape`` (compiled on first use; least recently used evicted)."""
        if shape in self._compiled:
            self._compiled.move_to_end(shape)
            return self._compiled[shape][1]
        try:
            self._model.reshape({self._input: list(shape)})
            compiled = self._core.compile_model(self._model, "CPU", dict(self._config))
        except Exception as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise BackendError(f"OpenVINO could not compile {self.path} for input {shape} ({first}); export the "
                               "model with dynamic shapes (`engan export`, the default)") from None
        self.compiles += 1
        self._compiled[shape] = (compiled, compiled.create_infer_request())
        while len(self._compiled) > self.shape_cache:
            self._compiled.popitem(last=False)
        return self._compiled[shape][1]

    @property
    def compiled_shapes(self) -> list[tuple[int, ...]]:
        """Shapes with a compiled model, least recently used first."""
        return list(self._compiled)

    def compiled_property(self, name: str, shape: tuple[int, ...] | None = None) -> Any:
        """A property of the compiled model for ``shape`` (default: the most recent), e.g. ``INFERENCE_NUM_THREADS``."""
        if not self._compiled:
            raise BackendError("nothing is compiled yet: run an input first")
        compiled = self._compiled[shape][0] if shape is not None else next(reversed(self._compiled.values()))[0]
        return compiled.get_property(name)

    # ------------------------------------------------------------------ running
    def _run(self, x: np.ndarray) -> np.ndarray:
        request = self._request(tuple(int(d) for d in x.shape))
        try:
            request.infer({self._input: x})  # releases the GIL while it runs
            y = request.get_tensor(self._output).data
        except Exception as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise BackendError(f"OpenVINO failed to run {self.path} on input {tuple(x.shape)} ({first})") from None
        return np.array(y, dtype=np.float32)  # a copy: the request reuses its output buffer

    def _close(self) -> None:
        self._compiled.clear()
        self._model = None
