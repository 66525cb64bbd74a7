"""The artefacts ``engan export`` can write, one row each: the table the exporter walks.

Each row names the file, the option that asks for it, what writing it needs, and how
the parity check runs it (a runtime backend and device) and how close to the eager
model it must come (:data:`THRESHOLDS_DB` of its precision). ``export_model`` writes
the requested rows in table order, then checks every written row that has a check
backend. Plain Python: importing this imports neither torch nor onnx.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engan.runtime._optional import is_installed

if TYPE_CHECKING:  # pragma: no cover
    from engan.export.tensorrt import TrtEnvironment

#: Lowest acceptable PSNR (dB) against the eager FP32 model, per artefact precision.
THRESHOLDS_DB: dict[str, float] = {"fp32": 50.0, "fp16": 35.0, "int8": 30.0}

#: The one file name that depends on the machine: the GPU and TensorRT version that built it.
ENGINE_FILE_NAME = "model.{gpu}.trt{trt_version}.fp16.engine"


@dataclass(frozen=True)
class Format:
    """One artefact of an export.

    Attributes:
        name: the row's key (``onnx``, ``fp16``, ``int8``, ``engine``, ``triton``, ``openvino``,
            ``openvino_int8``).
        file_name: its name inside the output folder (a folder for ``triton``; the engine's
            is :data:`ENGINE_FILE_NAME`, filled in by :meth:`path`).
        flag: the :class:`~engan.export.api.ExportConfig` field (and ``engan export`` flag) that
            asks for it; None: always written.
        requires: modules that must be importable to write it.
        extra: the pip extra that installs ``requires``.
        needs_gpu: it can only be built on a CUDA GPU (the one it will run on).
        check_backend: the :mod:`engan.runtime` backend that runs it in the parity check
            (None: not checked on its own, e.g. Triton's copy of ``model.onnx``).
        check_device: the device it is checked on.
        precision: the artefact's precision; selects its parity threshold.
        also: a second flag that must be set too (the INT8 IR: ``--openvino`` with ``--int8``).
        install: how to install ``requires`` when one pip extra is not enough.
    """

    name: str
    file_name: str
    flag: str | None
    requires: tuple[str, ...] = ()
    extra: str = "train"
    needs_gpu: bool = False
    check_backend: str | None = None
    check_device: str = "cpu"
    precision: str = "fp32"
    also: str | None = None
    install: str = ""

    @property
    def option(self) -> str:
        """How a user asks for it: ``--fp16``, ..., ``--openvino --int8`` or ``(always)``."""
        return " ".join(f"--{f}" for f in (self.flag, self.also) if f) or "(always)"

    @property
    def min_psnr_db(self) -> float | None:
        """The parity threshold, or None when the row is not checked."""
        return THRESHOLDS_DB[self.precision] if self.check_backend else None

    def path(self, out_dir: str | os.PathLike, env: "TrtEnvironment | None" = None) -> Path:
        """Where the artefact goes in ``out_dir`` (the engine's name needs this machine's ``env``)."""
        if self.name == "engine":
            from engan.export.tensorrt import engine_path_for

            if env is None:
                raise ValueError("the engine's file name needs the TensorRT environment (probe_environment())")
            return engine_path_for(Path(out_dir), env, self.precision)
        return Path(out_dir) / self.file_name


FORMATS: tuple[Format, ...] = (
    Format("onnx", "model.onnx", None, ("torch", "onnx"), check_backend="ort"),
    Format("fp16", "model.fp16.onnx", "fp16", ("onnx", "onnxconverter_common"), check_backend="ort", precision="fp16"),
    Format("int8", "model.int8.onnx", "int8", ("onnx", "onnxruntime"), check_backend="ort", precision="int8"),
    Format("engine", ENGINE_FILE_NAME, "engine", ("tensorrt", "cuda"), extra="trt", needs_gpu=True,
           check_backend="trt", check_device="cuda", precision="fp16"),
    Format("triton", "triton", "triton"),
    Format("openvino", "model.xml", "openvino", ("openvino",), extra="openvino", check_backend="openvino"),
    Format("openvino_int8", "model.int8.xml", "openvino", ("openvino", "nncf"), check_backend="openvino",
           precision="int8", also="int8", install="pip install 'engan[openvino]' nncf"),
)
#: The rows by name.
BY_NAME: dict[str, Format] = {f.name: f for f in FORMATS}


def requested(cfg: Any, build_engine: bool) -> tuple[Format, ...]:
    """The rows ``cfg`` asks for, in table order.

    ``--engine`` is three-way (required, refused, or built when possible), so the engine
    row follows ``build_engine``, the decision :func:`engan.export.tensorrt.decide_engine` made.
    """
    return tuple(
        f for f in FORMATS
        if (build_engine if f.name == "engine" else f.flag is None or (
            bool(getattr(cfg, f.flag)) and (f.also is None or bool(getattr(cfg, f.also)))))
    )


def unmet(fmt: Format) -> str | None:
    """Why ``fmt`` cannot be written here, or None when everything it needs is present.

    A GPU row asks :func:`engan.export.tensorrt.probe_environment` first (TensorRT version
    and a CUDA GPU); then every module in ``requires`` must be importable (nothing is imported).
    """
    if fmt.needs_gpu:
        from engan.export.tensorrt import probe_environment, skip_reason

        reason = skip_reason(probe_environment())
        if reason is not None:
            return reason
    missing = [m for m in fmt.requires if not is_installed(m)]
    if missing:
        hint = fmt.install or f"pip install 'engan[{fmt.extra}]'"
        return f"{' and '.join(missing)} not installed ({hint})"
    return None
