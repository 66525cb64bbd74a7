"""A Triton Inference Server model repository for the exported generator.

Layout (``<out>/triton``)::

    triton/
      engan/
        config.pbtxt
        1/
          model.onnx     # always (the FP32 graph; runs on ONNX Runtime, CPU or GPU)
          model.plan     # when an engine was built (then the platform is tensorrt_plan)

Serve it with ``tritonserver --model-repository <out>/triton``. The model takes
``input`` FP32 [N, 3, H, W] RGB in [0, 1] (H, W multiples of 16; the client pads) and
returns ``output`` of the same shape. ``max_batch_size`` > 0, so the batch dimension
is implicit in ``dims`` and Triton's dynamic batcher may merge same-size requests.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

#: Triton platform names.
PLATFORM_ONNX = "onnxruntime_onnx"
PLATFORM_TRT = "tensorrt_plan"
#: Model name inside the repository.
DEFAULT_MODEL_NAME = "engan"


@dataclass(frozen=True)
class TritonConfig:
    """The fields of an engan ``config.pbtxt``.

    Attributes:
        name: model name (also the folder name).
        platform: ``onnxruntime_onnx`` or ``tensorrt_plan``.
        max_batch_size: largest batch Triton forms (equals the engine profile's max batch).
        input_name, output_name: tensor names of the engan contract.
        instance_count: model instances per device.
        instance_kind: ``KIND_GPU`` for a plan; ``KIND_AUTO`` (GPU when present) for ONNX.
        max_queue_delay_us: how long the dynamic batcher may wait to fill a batch.
    """

    name: str = DEFAULT_MODEL_NAME
    platform: str = PLATFORM_ONNX
    max_batch_size: int = 4
    input_name: str = "input"
    output_name: str = "output"
    instance_count: int = 1
    instance_kind: str = "KIND_AUTO"
    max_queue_delay_us: int = 100

    @property
    def default_model_filename(self) -> str:
        return "model.plan" if self.platform == PLATFORM_TRT else "model.onnx"

    def to_pbtxt(self) -> str:
        """The config in protobuf text format (Triton's ``ModelConfig``)."""
        if self.platform not in (PLATFORM_ONNX, PLATFORM_TRT):
            raise ValueError(f"unknown Triton platform {self.platform!r}; use {PLATFORM_ONNX} or {PLATFORM_TRT}")
        if self.max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1 (dynamic batching needs it), got {self.max_batch_size}")
        note = (
            "# model.plan only loads on the GPU model and TensorRT version that built it (see the engine's .json\n"
            "# sidecar); to serve the portable graph instead, set platform to \"onnxruntime_onnx\" and\n"
            "# default_model_filename to \"model.onnx\".\n"
            if self.platform == PLATFORM_TRT
            else ""
        )

        def tensor(name: str) -> str:
            return f"  {{\n    name: \"{name}\"\n    data_type: TYPE_FP32\n    dims: [ 3, -1, -1 ]\n  }}"

        return (
            "# engan generator: float32 RGB in [0, 1], N x 3 x H x W, H and W multiples of 16 (pad on the client).\n"
            f"{note}"
            f"name: \"{self.name}\"\n"
            f"platform: \"{self.platform}\"\n"
            f"default_model_filename: \"{self.default_model_filename}\"\n"
            f"max_batch_size: {self.max_batch_size}\n"
            f"input [\n{tensor(self.input_name)}\n]\n"
            f"output [\n{tensor(self.output_name)}\n]\n"
            "dynamic_batching {\n"
            f"  max_queue_delay_microseconds: {self.max_queue_delay_us}\n"
            "}\n"
            "instance_group [\n"
            "  {\n"
            f"    count: {self.instance_count}\n"
            f"    kind: {self.instance_kind}\n"
            "  }\n"
            "]\n"
        )


def _copy_atomic(src: Path, dst: Path) -> None:
    from engan.runtime.atomic import atomic_open

    with open(src, "rb") as fin, atomic_open(dst, "wb") as fout:
        shutil.copyfileobj(fin, fout, 1 << 20)


def write_triton_repository(
    root: str | os.PathLike,
    onnx_path: str | os.PathLike,
    engine_path: str | os.PathLike | None = None,
    max_batch_size: int = 4,
    name: str = DEFAULT_MODEL_NAME,
) -> Path:
    """Write ``root/<name>/config.pbtxt`` and ``root/<name>/1/model.onnx`` (+ ``model.plan``).

    Args:
        root: repository folder (``<out>/triton``).
        onnx_path: the FP32 ONNX file to serve.
        engine_path: a TensorRT engine; when given the platform is ``tensorrt_plan``.
        max_batch_size: Triton's ``max_batch_size`` (the engine profile's max batch).
        name: model name and folder.

    Returns:
        The path of ``config.pbtxt``.
    """
    from engan.runtime.atomic import atomic_write_text

    model_dir = Path(root) / name
    version_dir = model_dir / "1"
    _copy_atomic(Path(onnx_path), version_dir / "model.onnx")
    if engine_path is not None:
        _copy_atomic(Path(engine_path), version_dir / "model.plan")
    else:
        stale = version_dir / "model.plan"
        if stale.exists():
            stale.unlink()  # a plan from an earlier export would not match this model.onnx
    cfg = TritonConfig(
        name=name,
        platform=PLATFORM_TRT if engine_path is not None else PLATFORM_ONNX,
        max_batch_size=max_batch_size,
        instance_kind="KIND_GPU" if engine_path is not None else "KIND_AUTO",
    )
    config_path = model_dir / "config.pbtxt"
    atomic_write_text(config_path, cfg.to_pbtxt())
    return config_path
