"""The backend table, the auto rule's candidates and the constructor every backend shares."""
from __future__ import annotations

import inspect
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from engan.runtime import select
from engan.runtime._optional import is_installed
from engan.runtime.backends.base import BackendOptions, BaseBackend
from tests.helpers import int8_copy


def test_every_row_names_its_class_modules_kinds_and_devices():
    assert list(select.BACKENDS) == ["trt", "ort", "openvino", "torch"]
    kinds = set()
    for name, spec in select.BACKENDS.items():
        assert spec.name == name and spec.label and spec.modules and spec.devices
        assert set(spec.devices) <= {"cpu", "cuda"}
        kinds |= set(spec.kinds)
        assert select.canonical_backend(spec.aliases[0] if spec.aliases else name) == name
    assert kinds == {"onnx", "engine", "checkpoint", "ir"}  # every model kind has a backend
    assert {c.backend for c in select.AUTO} == set(select.BACKENDS)  # each rung runs on a row of the table
    assert {k for c in select.AUTO for k in c.kinds} == kinds  # and auto handles every model kind


TABLE_SCRIPT = r"""
import json, sys
for name in ("torch", "onnx", "tensorrt", "safetensors"):
    sys.modules[name] = None  # importing any of them now raises ImportError
from engan.runtime import select
available = select.available_backends()
after_available = sorted(m for m in ("onnxruntime", "tensorrt", "torch", "cuda") if sys.modules.get(m) is not None)
classes = {name: spec.backend_class().__name__ for name, spec in select.BACKENDS.items()}
after_classes = sorted(m for m in ("onnxruntime", "tensorrt", "torch", "cuda", "openvino", "engan.models")
                       if sys.modules.get(m) is not None)
print(json.dumps({"available": available, "after_available": after_available, "classes": classes,
                  "after_classes": after_classes}))
"""


def test_rows_import_lazily_and_available_backends_imports_nothing():
    res = subprocess.run([sys.executable, "-c", TABLE_SCRIPT], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout.strip().splitlines()[-1])
    assert report["available"] == ["ort", "openvino"][: 1 + is_installed("openvino")]
    assert report["after_available"] == []
    assert report["classes"] == {"trt": "TrtBackend", "ort": "OrtBackend", "openvino": "OpenVINOBackend",
                                 "torch": "TorchBackend"}
    assert report["after_classes"] == []  # a backend's library loads when one is built, not with its class


@pytest.mark.parametrize("name", list(select.BACKENDS))
def test_every_backend_class_takes_the_shared_constructor(name):
    cls = select.BACKENDS[name].backend_class()
    assert issubclass(cls, BaseBackend)
    params = list(inspect.signature(cls.__init__).parameters.values())
    assert [p.name for p in params[:3]] == ["self", "path", "options"]
    assert params[2].default is None and params[3].kind is inspect.Parameter.VAR_KEYWORD


def test_backend_options_are_one_frozen_record_with_keyword_overrides():
    opts = BackendOptions.of(device="cpu", threads=2, providers=["CPUExecutionProvider"])
    assert opts == BackendOptions(device="cpu", threads=2, providers=("CPUExecutionProvider",))
    assert BackendOptions.of(opts, threads=None).threads is None and opts.threads == 2
    with pytest.raises(TypeError, match=r"unknown backend option\(s\) \['gpu'\]"):
        BackendOptions.of(gpu=True)


def test_every_backend_builds_from_options_or_keywords_and_ignores_what_does_not_apply(tiny_onnx, tiny_checkpoint):
    from engan.runtime.backends.ort import OrtBackend
    from engan.runtime.backends.torch_backend import TorchBackend

    shared = BackendOptions(device="cpu", threads=1, precision="fp32", providers=None, check_sidecar=True)
    with OrtBackend(tiny_onnx, shared) as a, OrtBackend(tiny_onnx, device="cpu", threads=1) as b:
        assert a.info.threads == b.info.threads == 1
    with select.BACKENDS["ort"].create(tiny_onnx, shared) as c:
        assert c.info.name == "onnxruntime"
    pytest.importorskip("torch")
    with TorchBackend(tiny_checkpoint, shared) as t:  # providers/check_sidecar do not apply: ignored
        assert t.info.precision == "fp32" and t.info.device == "cpu"


# ------------------------------------------------------------------ the auto rule's reasons


@pytest.fixture
def cpu_only(tmp_path, tiny_onnx, monkeypatch):
    """A CPU-only machine (no CUDA provider, no GPU, no TensorRT) and a folder with model.onnx."""
    monkeypatch.setattr(select, "ort_providers", lambda: ["CPUExecutionProvider"])
    monkeypatch.setattr(select, "cuda_device_count", lambda: 0)
    monkeypatch.setattr(select, "_openvino_decision", lambda: (False, f"OpenVINO not preferred: {NOT_OV}"))
    real = select.is_installed
    monkeypatch.setattr(select, "is_installed", lambda m: False if m in ("tensorrt", "cuda") else real(m))
    shutil.copy(tiny_onnx, tmp_path / "model.onnx")
    return tmp_path / "model.onnx"


NOT_OV = "measured slower than ONNX Runtime INT8 on this CPU"
NO_OV = f"OpenVINO not used: {NOT_OV}"
NO_TRT = "TensorRT not used: tensorrt and cuda not installed (pip install 'engan[trt]')"
NO_CUDA = ("ONNX Runtime CUDA not used: onnxruntime has no CUDAExecutionProvider (providers: "
           "['CPUExecutionProvider']; install onnxruntime-gpu for CUDA)")


def test_cpu_only_without_an_int8_copy(cpu_only):
    sel = select.select_backend(cpu_only)
    assert (sel.backend, sel.model, sel.device, sel.label) == ("ort", cpu_only, "cpu", "ONNX Runtime CPU")
    assert sel.reason == (f"ONNX Runtime CPU: model.onnx as given ({NO_TRT}) ({NO_CUDA}) ({NO_OV}) "
                          "(ONNX Runtime CPU INT8 not used: no model.int8.onnx next to model.onnx)")


def test_cpu_only_with_an_int8_sibling(cpu_only):
    int8 = int8_copy(cpu_only, cpu_only.with_name("model.int8.onnx"))
    sel = select.select_backend(cpu_only)
    assert (sel.backend, sel.model, sel.device, sel.label) == ("ort", int8, "cpu", "ONNX Runtime CPU INT8")
    assert sel.why == ("model.int8.onnx, the INT8 copy of model.onnx (about 2x faster than FP32 on a CPU; "
                       "--backend ort runs model.onnx as given)")
    assert sel.reason == f"ONNX Runtime CPU INT8: {sel.why} ({NO_TRT}) ({NO_CUDA}) ({NO_OV})"
    plain = select.select_backend(cpu_only, cpu_int8=False)
    assert plain.model == cpu_only and "(ONNX Runtime CPU INT8 not used: cpu_int8=False" in plain.reason
    assert select.select_backend(int8).passed_over[-1] == (
        "ONNX Runtime CPU INT8", "model.int8.onnx is itself a reduced-precision copy")


def test_an_explicit_backend_says_it_was_asked_for(cpu_only):
    sel = select.select_backend(cpu_only, backend="onnxruntime", device="cpu")
    assert (sel.backend, sel.model, sel.passed_over) == ("ort", cpu_only, ())
    assert sel.reason == "ONNX Runtime: backend 'ort' requested (device cpu)"


class FlakyBackend:
    """Stands in for the ORT backend: ``behaviour(device)`` decides whether it starts."""

    made: list[str] = []
    behaviour = staticmethod(lambda device: None)

    def __init__(self, path, options=None, **overrides):
        device = BackendOptions.of(options, **overrides).device
        FlakyBackend.made.append(device)
        FlakyBackend.behaviour(device)


def test_a_failing_candidate_falls_through_only_where_that_is_safe(cpu_only, monkeypatch):
    import dataclasses
    import warnings

    from engan.runtime.backends.base import ModelLoadError

    monkeypatch.setattr(select, "ort_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(select, "cuda_device_count", lambda: 1)
    monkeypatch.setitem(select.BACKENDS, "ort", dataclasses.replace(select.BACKENDS["ort"],
                                                                    target=f"{__name__}:FlakyBackend"))

    def no_cuda(device):
        if device == "cuda":
            raise RuntimeError("CUDA failure 35: driver too old\nmore")

    monkeypatch.setattr(FlakyBackend, "behaviour", staticmethod(no_cuda))
    monkeypatch.setattr(FlakyBackend, "made", [])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        be, sel = select.open_backend(cpu_only)
    assert FlakyBackend.made == ["cuda", "cpu"] and sel.label == "ONNX Runtime CPU"
    assert "(ONNX Runtime CUDA not used: model.onnx failed to start (CUDA failure 35: driver too old))" in sel.reason
    assert [str(w.message) for w in caught] == [
        "ONNX Runtime CUDA could not start model.onnx (CUDA failure 35: driver too old); using ONNX Runtime CPU"]
    with pytest.raises(RuntimeError, match="driver too old"):  # CUDA asked for by name: no silent CPU
        select.open_backend(cpu_only, options=BackendOptions(device="cuda"))

    def corrupt(device):
        raise ModelLoadError("model.onnx is not a loadable ONNX model")

    monkeypatch.setattr(FlakyBackend, "behaviour", staticmethod(corrupt))
    with pytest.raises(ModelLoadError):  # a broken file is not the GPU's fault
        select.open_backend(cpu_only)


def test_precision_other_than_fp32_is_for_pytorch_only(cpu_only):
    with pytest.raises(ValueError, match="precision='fp16' applies to the PyTorch and OpenVINO backends only"):
        select.open_backend(cpu_only, options=BackendOptions(precision="fp16"))


def test_model_kinds_and_their_suffixes_are_one_table():
    from engan.runtime.probe import MODEL_KINDS
    from engan.runtime.resolve import MODEL_SUFFIXES

    assert set(MODEL_SUFFIXES) == {s for suffixes in MODEL_KINDS.values() for s in suffixes}
    assert select.model_kind(Path("x.PLAN")) == "engine"


@pytest.mark.parametrize("flags,prefer", [(("avx2",), False), (("avx2", "amx_bf16", "amx_tile"), True)])
def test_openvino_rung_follows_the_measured_rule_for_the_cpu_class_and_names_it(cpu_only, monkeypatch, flags,
                                                                              prefer):
    from engan.runtime.backends import openvino
    from engan.runtime.cpu import CpuInfo

    cpu = CpuInfo("Test CPU", "GenuineIntel", "6", "143", frozenset(flags))
    monkeypatch.delenv("ENGAN_AUTO_OPENVINO", raising=False)  # the measured rule, not the tests' pin
    monkeypatch.setattr(select, "_openvino_decision", lambda: openvino.openvino_auto_reason(cpu, installed=True))
    sel = select.select_backend(cpu_only)
    if prefer:  # AMX: OpenVINO BF16 measured faster than ONNX Runtime INT8
        assert (sel.backend, sel.model, sel.device, sel.label) == ("openvino", cpu_only, "cpu", "OpenVINO")
        assert sel.why.startswith("this CPU has AMX (") and "ONNX Runtime INT8" in sel.why
    else:  # AVX2 only: the INT8/FP32 ONNX Runtime rungs stay, and the reason says why
        assert sel.backend == "ort"
        assert dict(sel.passed_over)["OpenVINO"].startswith("this CPU has no AMX/AVX512-BF16 (")
        assert "ONNX Runtime INT8 measured 1.38x faster" in dict(sel.passed_over)["OpenVINO"]
    assert select.select_backend(cpu_only, device="cuda").backend != "openvino"  # a GPU request skips it


def test_a_backend_asked_for_the_wrong_model_kind_names_what_it_runs_and_the_fix(tmp_path):
    ckpt = tmp_path / "g.safetensors"
    ckpt.write_bytes(b"")
    with pytest.raises(ValueError) as e:
        select.select_backend(ckpt, backend="openvino")
    assert str(e.value) == (f"backend 'openvino' runs .onnx or .xml files; {ckpt} is a checkpoint file: export it "
                            "with `engan export`")
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"")
    with pytest.raises(ValueError, match=r"is an engine file: use backend='trt'$"):
        select.select_backend(engine, backend="openvino")
