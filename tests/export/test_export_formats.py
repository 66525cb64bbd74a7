"""The format table of `engan export` (engan.export.formats): file names, requirements, what
export_model writes for each combination of flags, and the parity check running every artefact
through the runtime's backends."""
from __future__ import annotations

import dataclasses
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from engan.export.api import ExportConfig
from engan.export.formats import BY_NAME, FORMATS, THRESHOLDS_DB, requested, unmet
from engan.export.profile import ShapeProfile
from engan.export.tensorrt import TrtEnvironment, probe_environment, skip_reason
from engan.runtime.engine_meta import engine_file_name

H100 = "NVIDIA H100 80GB HBM3"


def test_one_row_per_artefact_with_its_file_name_flag_and_check():
    assert [f.name for f in FORMATS] == ["onnx", "fp16", "int8", "engine", "triton", "openvino", "openvino_int8"]
    assert {f.name: f.file_name for f in FORMATS} == {
        "onnx": "model.onnx", "fp16": "model.fp16.onnx", "int8": "model.int8.onnx",
        "engine": "model.{gpu}.trt{trt_version}.fp16.engine", "triton": "triton", "openvino": "model.xml",
        "openvino_int8": "model.int8.xml",
    }
    assert {f.name: f.option for f in FORMATS} == {
        "onnx": "(always)", "fp16": "--fp16", "int8": "--int8", "engine": "--engine", "triton": "--triton",
        "openvino": "--openvino", "openvino_int8": "--openvino --int8",
    }
    fields = {f.name for f in dataclasses.fields(ExportConfig)}
    assert all(f.flag in fields and (f.also is None or f.also in fields) for f in FORMATS if f.flag)  # the flags are ExportConfig's (and the CLI's) spelling
    # how each is checked: the runtime backend, its device and the minimum PSNR vs eager PyTorch
    assert {f.name: (f.check_backend, f.check_device, f.min_psnr_db) for f in FORMATS} == {
        "onnx": ("ort", "cpu", 50.0), "fp16": ("ort", "cpu", 35.0), "int8": ("ort", "cpu", 30.0),
        "engine": ("trt", "cuda", 35.0), "triton": (None, "cpu", None), "openvino": ("openvino", "cpu", 50.0),
        "openvino_int8": ("openvino", "cpu", 30.0),
    }
    assert THRESHOLDS_DB == {"fp32": 50.0, "fp16": 35.0, "int8": 30.0}


def test_the_int8_ir_needs_both_flags():
    from types import SimpleNamespace

    def names(**flags):
        cfg = SimpleNamespace(**{"fp16": False, "int8": False, "triton": False, "openvino": False, **flags})
        return [f.name for f in requested(cfg, build_engine=False)]

    assert names(openvino=True) == ["onnx", "openvino"]
    assert names(int8=True) == ["onnx", "int8"]
    assert names(openvino=True, int8=True) == ["onnx", "int8", "openvino", "openvino_int8"]


def test_paths_in_the_output_folder(tmp_path):
    env = TrtEnvironment(trt_version="10.3.0", gpu_name=H100, compute_capability="9.0")
    assert BY_NAME["onnx"].path(tmp_path) == tmp_path / "model.onnx"
    assert BY_NAME["triton"].path(tmp_path, env) == tmp_path / "triton"
    assert BY_NAME["engine"].path(tmp_path, env) == tmp_path / engine_file_name(H100, "10.3.0", "fp16") == (
        tmp_path / "model.h100-80gb-hbm3.trt10.3.0.fp16.engine")
    with pytest.raises(ValueError, match="needs the TensorRT environment"):
        BY_NAME["engine"].path(tmp_path)


def test_requirements_are_checked_without_importing(monkeypatch):
    for name in ("onnx", "fp16", "int8", "triton"):
        assert unmet(BY_NAME[name]) is None, name  # installed here (engan[train])
    assert BY_NAME["fp16"].requires == ("onnx", "onnxconverter_common")
    missing = dataclasses.replace(BY_NAME["fp16"], requires=("onnx", "no_such_module_here"))
    assert unmet(missing) == "no_such_module_here not installed (pip install 'engan[train]')"
    monkeypatch.setitem(sys.modules, "onnx", None)  # a blocked module counts as missing
    assert unmet(BY_NAME["int8"]) == "onnx not installed (pip install 'engan[train]')"


def test_engine_requirements_ask_the_tensorrt_probe_first(monkeypatch):
    import engan.export.tensorrt as trt_mod

    assert unmet(BY_NAME["engine"]) == skip_reason(probe_environment())  # None only with TensorRT 10+ and a GPU
    ready = TrtEnvironment(trt_version="10.3.0", gpu_name=H100, compute_capability="9.0")
    monkeypatch.setattr(trt_mod, "probe_environment", lambda: ready)
    monkeypatch.setitem(sys.modules, "cuda", None)  # the runtime's TensorRT backend needs cuda-python too
    assert unmet(BY_NAME["engine"]).endswith("cuda not installed (pip install 'engan[trt]')")
    monkeypatch.setattr(trt_mod, "probe_environment", lambda: TrtEnvironment(trt_version="8.6.1", gpu_name=H100))
    assert unmet(BY_NAME["engine"]) == "TensorRT 8.6.1 is older than 10.0, which engan needs"


@pytest.mark.parametrize("flags, engine, rows", [
    ({}, False, ["onnx"]),
    ({"fp16": True}, False, ["onnx", "fp16"]),
    ({"fp16": True}, True, ["onnx", "fp16", "engine"]),
    ({"int8": True, "triton": True}, False, ["onnx", "int8", "triton"]),
    ({"fp16": True, "int8": True, "triton": True}, True, ["onnx", "fp16", "int8", "engine", "triton"]),
])
def test_requested_rows_follow_the_flags_and_the_engine_decision(flags, engine, rows):
    assert [f.name for f in requested(ExportConfig(**flags), engine)] == rows


def _fake_int8(fp32_onnx, out, calib_dir=None, num_images=32, progress=True):
    shutil.copyfile(fp32_onnx, out)  # the exporter rewrites its metadata to int8
    return out


@pytest.mark.parametrize("flags", [{}, {"fp16": True}, {"int8": True}, {"triton": True},
                                   {"fp16": True, "int8": True, "triton": True}])
def test_export_model_writes_exactly_the_rows_asked_for(monkeypatch, tmp_path, tiny_checkpoint, flags):
    pytest.importorskip("torch")
    pytest.importorskip("onnxconverter_common")
    from engan.export.api import export_model

    monkeypatch.setattr("engan.export.quantize.quantize_int8", _fake_int8)
    cfg = ExportConfig(checkpoint=str(tiny_checkpoint), out=str(tmp_path), engine=False, check=False, **flags)
    result = export_model(cfg, log=lambda s: None)
    rows = requested(cfg, build_engine=False)
    assert list(result.files) == [f.name for f in rows]
    assert sorted(os.listdir(tmp_path)) == sorted(f.file_name for f in rows)
    assert result.files["onnx"] == result.onnx == tmp_path / "model.onnx"
    assert (result.fp16, result.int8) == (result.files.get("fp16"), result.files.get("int8"))
    assert result.triton_config == (tmp_path / "triton/engan/config.pbtxt" if "triton" in flags else None)
    assert set(result.seconds) == {"load", "total"} | {f.name for f in rows}


# ---------------------------------------------------------------------------- parity through the runtime


class FakeTrtBackend:
    """Stands in for engan.runtime.backends.trt.TrtBackend on machines without TensorRT: passes the input through."""

    made: list[tuple[str, str]] = []
    ran: list[tuple[int, ...]] = []

    def __init__(self, path, options=None, **overrides):  # the constructor every backend shares
        from engan.runtime.backends.base import BackendOptions

        FakeTrtBackend.made.append((Path(path).name, BackendOptions.of(options, **overrides).device))

    def run(self, x: np.ndarray) -> np.ndarray:
        FakeTrtBackend.ran.append(tuple(x.shape))
        return x

    def close(self) -> None:
        pass


def test_parity_runs_every_artefact_on_its_rows_runtime_backend(monkeypatch, tmp_path, tiny_checkpoint):
    pytest.importorskip("torch")
    import engan.runtime.select as select
    from engan.export.api import _parity, export_model
    from engan.models.checkpoint import load_generator
    from engan.runtime.backends.ort import OrtBackend

    ran: list[tuple[str, str, tuple[int, ...]]] = []
    real_run = OrtBackend.run

    def spy(self, x):
        ran.append((self.path.name, self.info.device, tuple(x.shape)))
        return real_run(self, x)

    monkeypatch.setattr(OrtBackend, "run", spy)
    cfg = ExportConfig(checkpoint=str(tiny_checkpoint), out=str(tmp_path), fp16=True, engine=False,
                       check_sizes=((32, 32), (48, 64)),
                       profile=ShapeProfile((48, 48), (48, 64), (64, 64), 1))
    result = export_model(cfg, log=lambda s: None)
    assert ran == [(name, "cpu", (1, 3, *hw)) for name in ("model.onnx", "model.fp16.onnx")
                   for hw in ((32, 32), (48, 64))]
    assert [(r.artefact, r.backend, r.threshold_db) for r in result.parity.rows] == [
        ("model.onnx", "onnxruntime-cpu", 50.0)] * 2 + [("model.fp16.onnx", "onnxruntime-cpu", 35.0)] * 2

    # an engine runs on the runtime's TensorRT backend, on CUDA, only at the sizes inside its profile
    engine = tmp_path / "model.gpu.trt10.fp16.engine"
    engine.write_bytes(b"plan")
    result.files["engine"] = engine
    fake_row = dataclasses.replace(select.BACKENDS["trt"], target=f"{__name__}:FakeTrtBackend")
    monkeypatch.setitem(select.BACKENDS, "trt", fake_row)
    FakeTrtBackend.made, FakeTrtBackend.ran = [], []
    report = _parity(load_generator(tiny_checkpoint), result, cfg)
    assert FakeTrtBackend.made == [(engine.name, "cuda")] and FakeTrtBackend.ran == [(1, 3, 48, 64)]
    engine_rows = [r for r in report.rows if r.artefact == engine.name]
    assert [(r.backend, r.size, r.threshold_db) for r in engine_rows] == [("tensorrt", (48, 64), 35.0)]
