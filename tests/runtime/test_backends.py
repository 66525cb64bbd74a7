"""Backends (ONNX Runtime, TensorRT helpers, PyTorch) and backend auto-selection."""
from __future__ import annotations

import shutil
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from engan.runtime import select
from engan.runtime._optional import BackendUnavailable, is_installed, require
from engan.runtime.parity import psnr
from engan.runtime.backends import trt as trt_mod
from engan.runtime.backends.base import BackendError, ModelLoadError
from engan.runtime.backends.ort import OrtBackend, choose_providers, parse_device, physical_cores
from tests.helpers import int8_copy


def _onnx_model(path: Path, inputs: list[tuple[str, int, list]], op: str = "Identity") -> Path:
    """A one-node ONNX graph (no engan metadata) for contract tests."""
    import onnx
    from onnx import helper

    ins = [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs]
    out = helper.make_tensor_value_info("y", inputs[0][1], inputs[0][2])
    node = helper.make_node(op, [i[0] for i in inputs], ["y"])
    graph = helper.make_graph([node], "g", ins, [out])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


# ------------------------------------------------------------------ ONNX Runtime
@pytest.fixture(scope="module")
def ort_backend(tiny_onnx):
    with OrtBackend(tiny_onnx, device="cpu") as be:
        yield be


def test_ort_backend_reads_the_engan_metadata_and_reports_providers(ort_backend, tiny_onnx):
    info = ort_backend.info
    assert info.name == "onnxruntime" and info.device == "cpu" and info.precision == "fp32"
    assert info.providers == ("CPUExecutionProvider",)
    assert info.threads == physical_cores() and info.model_path == str(tiny_onnx)
    assert ort_backend.meta.model_name == "tiny-test" and ort_backend.meta.preset == "tiny"
    assert ort_backend.meta.pad_multiple == 16 and ort_backend.engan_model
    assert info.versions["onnxruntime"]


def test_ort_threads_are_overridable(tiny_onnx):
    with OrtBackend(tiny_onnx, device="cpu", threads=1) as be:
        assert be.info.threads == 1


def test_ort_run_checks_its_input(ort_backend):
    y = ort_backend.run(np.full((2, 3, 32, 48), 0.2, np.float32))
    assert y.shape == (2, 3, 32, 48) and y.dtype == np.float32 and 0 <= y.min() and y.max() <= 1
    with pytest.raises(ValueError, match="backends take float32 arrays, got float64"):
        ort_backend.run(np.zeros((1, 3, 32, 32)))
    with pytest.raises(ValueError, match="input 30x32 is not a multiple of 16"):
        ort_backend.run(np.zeros((1, 3, 30, 32), np.float32))
    with pytest.raises(ValueError, match=r"Nx3xHxW RGB arrays, got shape \(1, 4, 32, 32\)"):
        ort_backend.run(np.zeros((1, 4, 32, 32), np.float32))


def test_ort_matches_the_torch_backend(tiny_onnx, tiny_checkpoint):
    from engan.runtime.backends.torch_backend import TorchBackend

    x = np.random.default_rng(0).random((2, 3, 64, 96), dtype=np.float32)
    with OrtBackend(tiny_onnx, device="cpu") as o, TorchBackend(tiny_checkpoint, device="cpu") as t:
        yo, yt = o.run(x), t.run(x)
        assert t.info.name == "torch" and t.meta.preset == "tiny" and t.meta.params == o.meta.params
        assert t.meta.checkpoint_sha256 == o.meta.checkpoint_sha256
    assert psnr(yo, yt, peak=1.0) >= 50.0, psnr(yo, yt, peak=1.0)


def test_closed_backend_refuses_to_run(tiny_onnx):
    be = OrtBackend(tiny_onnx, device="cpu")
    be.close()
    be.close()  # idempotent
    with pytest.raises(BackendError, match="is closed"):
        be.run(np.zeros((1, 3, 16, 16), np.float32))


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_corrupt_onnx_error_names_the_file(tmp_path, tiny_onnx, damage):
    data = tiny_onnx.read_bytes()
    bad = tmp_path / f"{damage}.onnx"
    bad.write_bytes({"truncated": data[: len(data) // 2], "garbage": b"\x00not onnx" * 50, "empty": b""}[damage])
    with pytest.raises(ModelLoadError) as err:
        OrtBackend(bad, device="cpu")
    msg = str(err.value)
    assert str(bad) in msg and "corrupt, truncated or not ONNX" in msg and "engan export" in msg


def test_missing_onnx_names_the_file(tmp_path):
    with pytest.raises(ModelLoadError, match=f"ONNX model not found: {tmp_path / 'nope.onnx'}"):
        OrtBackend(tmp_path / "nope.onnx")


def test_other_input_contracts_are_refused_with_the_reason(tmp_path):
    from onnx import TensorProto as T

    one_channel = _onnx_model(tmp_path / "gray.onnx", [("x", T.FLOAT, ["N", 1, "H", "W"])])
    with pytest.raises(ModelLoadError, match=f"{one_channel} takes 1 input channels; engan models take 3"):
        OrtBackend(one_channel)
    two_inputs = _onnx_model(tmp_path / "two.onnx", [("a", T.FLOAT, [1, 3, 16, 16]), ("b", T.FLOAT, [1, 3, 16, 16])], "Add")
    with pytest.raises(ModelLoadError, match=r"has 2 inputs \(\['a', 'b'\]\); an engan model has one image input"):
        OrtBackend(two_inputs)
    ints = _onnx_model(tmp_path / "int.onnx", [("x", T.INT32, ["N", 3, "H", "W"])])
    with pytest.raises(ModelLoadError, match=r"takes tensor\(int32\) input"):
        OrtBackend(ints)
    flat = _onnx_model(tmp_path / "flat.onnx", [("x", T.FLOAT, ["N", 3])])
    with pytest.raises(ModelLoadError, match=r"takes a 2-D input"):
        OrtBackend(flat)


def test_a_foreign_model_with_one_4d_float_input_is_accepted_with_a_warning(tmp_path):
    from onnx import TensorProto as T

    path = _onnx_model(tmp_path / "identity.onnx", [("pixels", T.FLOAT, ["N", 3, "H", "W"])])
    with pytest.warns(RuntimeWarning, match="has no engan metadata"):
        be = OrtBackend(path, device="cpu")
    x = np.random.default_rng(0).random((1, 3, 32, 16), dtype=np.float32)
    np.testing.assert_array_equal(be.run(x), x)
    assert be.meta.input_name == "pixels" and be.meta.output_name == "y" and be.meta.model_name == "identity"
    assert not be.engan_model
    be.close()


def test_provider_choice_follows_the_device():
    cpu_only = ["AzureExecutionProvider", "CPUExecutionProvider"]
    gpu = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert choose_providers(cpu_only, "auto") == ["CPUExecutionProvider"]
    assert choose_providers(gpu, "cpu") == ["CPUExecutionProvider"]
    cuda = choose_providers(gpu, "auto")
    assert cuda[0][0] == "CUDAExecutionProvider" and cuda[0][1]["device_id"] == 0 and cuda[1] == "CPUExecutionProvider"
    assert choose_providers(gpu, "cuda:1")[0][1]["device_id"] == 1
    assert "TensorrtExecutionProvider" not in [p if isinstance(p, str) else p[0] for p in cuda]  # only when asked
    explicit = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert choose_providers(gpu, "auto", explicit) == explicit
    with pytest.raises(BackendUnavailable, match="needs ONNX Runtime's CUDAExecutionProvider.*install onnxruntime-gpu"):
        choose_providers(cpu_only, "cuda")
    with pytest.raises(BackendUnavailable, match=r"providers \['TensorrtExecutionProvider'\] are not available"):
        choose_providers(cpu_only, "auto", ["TensorrtExecutionProvider"])


def test_parse_device():
    assert parse_device("auto") == ("auto", 0)
    assert parse_device("CPU") == ("cpu", 0)
    assert parse_device("cuda:3") == ("cuda", 3)
    with pytest.raises(ValueError, match="unknown device 'tpu'; use 'auto', 'cpu', 'cuda' or 'cuda:N'"):
        parse_device("tpu")


def test_cuda_request_that_lands_on_cpu_is_an_error_or_a_reported_fallback(tiny_onnx, monkeypatch):
    """A CPU onnxruntime told CUDA exists creates a CPU session: the backend notices."""
    import onnxruntime

    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    with pytest.raises(BackendError, match="could not start CUDAExecutionProvider.*runs on \\['CPUExecutionProvider'\\]"):
        OrtBackend(tiny_onnx, device="cuda")
    with pytest.warns(RuntimeWarning, match="could not start CUDAExecutionProvider"):
        be = OrtBackend(tiny_onnx, device="auto")
    assert be.info.device == "cpu" and "CUDAExecutionProvider" in be.fallback_note
    be.close()


def test_physical_cores_is_positive():
    assert 1 <= physical_cores() <= (__import__("os").cpu_count() or 1)


# ------------------------------------------------------------------ TensorRT (CPU-testable parts)
def test_trt_dtype_mapping():
    fake = types.SimpleNamespace
    assert trt_mod.trt_dtype_to_numpy(fake(name="FLOAT")) == np.float32
    assert trt_mod.trt_dtype_to_numpy(fake(name="HALF")) == np.float16
    assert trt_mod.trt_dtype_to_numpy("DataType.INT32") == np.int32
    with pytest.raises(BackendError, match="engine I/O type BF16 has no numpy equivalent"):
        trt_mod.trt_dtype_to_numpy(fake(name="BF16"))


def test_trt_profile_check():
    trt_mod.check_profile((1, 3, 512, 512), (1, 3, 16, 16), (1, 3, 1088, 1920))
    with pytest.raises(BackendError, match=r"input 1x3x1104x1920 \(after padding\) is outside e\.engine's optimisation "
                                           r"profile min 1x3x16x16 \.\. max 1x3x1088x1920; lower max_pixels/--tile"):
        trt_mod.check_profile((1, 3, 1104, 1920), (1, 3, 16, 16), (1, 3, 1088, 1920), "e.engine")
    with pytest.raises(BackendError, match="outside"):
        trt_mod.check_profile((2, 3, 64, 64), (1, 3, 16, 16), (1, 3, 1088, 1920))


def test_cuda_call_results_are_unpacked_and_errors_raised():
    class Err:
        def __init__(self, value, name):
            self.value, self.name = value, name

    assert trt_mod.cuda_check((Err(0, "cudaSuccess"), 1234), "cudaMalloc") == 1234
    assert trt_mod.cuda_check((0,), "cudaFree") is None
    assert trt_mod.cuda_check((0, 1, 2), "x") == (1, 2)
    with pytest.raises(BackendError, match=r"CUDA call cudaMalloc failed with cudaErrorMemoryAllocation \(code 2\)"):
        trt_mod.cuda_check((Err(2, "cudaErrorMemoryAllocation"), 0), "cudaMalloc")


def test_engine_compatibility_uses_the_sidecar(tmp_path):
    from engan.runtime import engine_meta

    engine = tmp_path / "model.h100.trt10.3.0.fp16.engine"
    engine.write_bytes(b"e")
    with pytest.raises(engine_meta.SidecarError, match="has no sidecar"):
        trt_mod.check_engine_compatible(engine, "NVIDIA H100", (9, 0), "10.3.0")
    side = engine_meta.EngineSidecar(model_name="m", gpu_name="NVIDIA A100", compute_capability="8.0",
                                     trt_version="10.3.0", engine_file=engine.name)
    engine_meta.write_sidecar(engine, side)
    with pytest.raises(engine_meta.EngineMismatchError, match=f"TensorRT engine {engine.name} cannot run here"):
        trt_mod.check_engine_compatible(engine, "NVIDIA H100", (9, 0), "10.3.0")
    ok = trt_mod.check_engine_compatible(engine, "NVIDIA A100", (8, 0), "10.3.0")
    assert ok.artefact_meta().model_name == "m"
    assert trt_mod._sidecar_meta(tmp_path / "other.engine").precision == "fp16"


def test_trt_backend_without_tensorrt_names_the_extra(tmp_path, monkeypatch):
    engine = tmp_path / "model.gpu.trt10.fp16.engine"
    engine.write_bytes(b"\0" * 16)
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(BackendUnavailable, match=r"the TensorRT backend needs the Python package 'tensorrt'.*pip install 'engan\[trt\]'"):
        trt_mod.TrtBackend(engine)
    with pytest.raises(BackendError, match="TensorRT runs on CUDA GPUs only"):
        trt_mod.TrtBackend(engine, device="cpu")
    with pytest.raises(ModelLoadError, match="TensorRT engine not found"):
        trt_mod.TrtBackend(tmp_path / "missing.engine")


@pytest.mark.trt
@pytest.mark.gpu
def test_trt_engine_runs_on_a_gpu():  # pragma: no cover - needs TensorRT + a CUDA GPU
    if not (is_installed("tensorrt") and is_installed("cuda")):
        pytest.skip("TensorRT backend test needs tensorrt and cuda-python (pip install 'engan[trt]') and a CUDA GPU")
    if select.cuda_device_count() < 1:
        pytest.skip("TensorRT backend test needs a CUDA GPU; none found")
    pytest.skip("building an engine belongs to the export tests; run them on a GPU machine")


# ------------------------------------------------------------------ PyTorch backend
def test_torch_backend_errors(tmp_path, tiny_checkpoint):
    from engan.runtime.backends.torch_backend import TorchBackend

    with pytest.raises(BackendError, match="fp16 eager PyTorch runs only on CUDA"):
        TorchBackend(tiny_checkpoint, device="cpu", precision="fp16")
    with pytest.raises(ModelLoadError, match=f"model not found: {tmp_path / 'x.safetensors'}; pass an existing"):
        TorchBackend(tmp_path / "x.safetensors", device="cpu")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x05\0\0\0\0\0\0\0{}")
    with pytest.raises(ModelLoadError, match=str(bad)):
        TorchBackend(bad, device="cpu")


def test_require_names_the_install():
    assert require("numpy", "x").__name__ == "numpy"
    with pytest.raises(BackendUnavailable, match=r"the thing needs the Python package 'no_such_pkg_xyz'"):
        require("no_such_pkg_xyz", "the thing")


# ------------------------------------------------------------------ auto-selection
@pytest.fixture
def onnx_dir(tmp_path, tiny_onnx) -> Path:
    shutil.copy(tiny_onnx, tmp_path / "model.onnx")
    return tmp_path


def _simulate(monkeypatch, *, providers, gpus, trt_installed, compatible=True):
    monkeypatch.setattr(select, "ort_providers", lambda: list(providers))
    monkeypatch.setattr(select, "cuda_device_count", lambda: gpus)
    real = select.is_installed
    monkeypatch.setattr(select, "is_installed", lambda m: trt_installed if m in ("tensorrt", "cuda") else real(m))
    monkeypatch.setattr(
        select, "engine_compatibility",
        lambda engine, index=0: None if compatible else f"{engine.name}: built for NVIDIA A100, this GPU is NVIDIA H100",
    )


def test_available_backends_uses_find_spec(monkeypatch):
    assert "ort" in select.available_backends()
    monkeypatch.setattr(select, "is_installed", lambda m: m in ("onnxruntime", "tensorrt", "cuda"))
    assert select.available_backends() == ["trt", "ort"]


def test_auto_on_this_cpu_box(onnx_dir, monkeypatch):
    _simulate(monkeypatch, providers=["CPUExecutionProvider"], gpus=0, trt_installed=False)
    sel = select.select_backend(onnx_dir / "model.onnx")
    assert (sel.backend, sel.device, sel.model) == ("ort", "cpu", onnx_dir / "model.onnx")
    assert sel.reason == (
        "ONNX Runtime CPU: model.onnx as given (TensorRT not used: tensorrt and cuda not installed (pip install "
        "'engan[trt]')) (ONNX Runtime CUDA not used: onnxruntime has no CUDAExecutionProvider (providers: "
        "['CPUExecutionProvider']; install onnxruntime-gpu for CUDA)) (OpenVINO not used: ENGAN_AUTO_OPENVINO=0 is "
        "set) (ONNX Runtime CPU INT8 not used: no model.int8.onnx next to model.onnx)")
    assert [label for label, _ in sel.passed_over] == ["TensorRT", "ONNX Runtime CUDA", "OpenVINO",
                                                       "ONNX Runtime CPU INT8"]


def test_auto_on_a_cuda_box_picks_ort_cuda(onnx_dir, monkeypatch):
    _simulate(monkeypatch, providers=["CUDAExecutionProvider", "CPUExecutionProvider"], gpus=1, trt_installed=False)
    sel = select.select_backend(onnx_dir / "model.onnx")
    assert (sel.backend, sel.device) == ("ort", "cuda")
    assert sel.reason.startswith("ONNX Runtime CUDA: CUDAExecutionProvider available and a CUDA GPU present")


def test_auto_with_cuda_provider_but_no_gpu_stays_on_cpu(onnx_dir, monkeypatch):
    _simulate(monkeypatch, providers=["CUDAExecutionProvider", "CPUExecutionProvider"], gpus=0, trt_installed=False)
    sel = select.select_backend(onnx_dir / "model.onnx")
    assert (sel.backend, sel.device) == ("ort", "cpu")
    assert "CUDAExecutionProvider is available but no CUDA GPU was found" in sel.reason


def test_auto_on_a_tensorrt_box_picks_the_engine(onnx_dir, monkeypatch):
    engine = onnx_dir / "model.nvidia-h100.trt10.8.fp16.engine"
    engine.write_bytes(b"engine")
    _simulate(monkeypatch, providers=["CUDAExecutionProvider", "CPUExecutionProvider"], gpus=1, trt_installed=True)
    sel = select.select_backend(onnx_dir / "model.onnx")
    assert (sel.backend, sel.model) == ("trt", engine)
    assert sel.reason.startswith(f"TensorRT: engine {engine.name} next to model.onnx matches this GPU")
    cpu = select.select_backend(onnx_dir / "model.onnx", device="cpu")
    assert (cpu.backend, cpu.device) == ("ort", "cpu") and "device='cpu' requested" in cpu.reason


def test_auto_on_a_tensorrt_box_without_engine_or_with_a_foreign_one(onnx_dir, monkeypatch):
    _simulate(monkeypatch, providers=["CUDAExecutionProvider", "CPUExecutionProvider"], gpus=1, trt_installed=True)
    sel = select.select_backend(onnx_dir / "model.onnx")
    assert sel.backend == "ort" and "no TensorRT engine next to model.onnx (looked for model.*.engine/.plan)" in sel.reason
    (onnx_dir / "model.nvidia-a100.trt10.8.fp16.engine").write_bytes(b"engine")
    _simulate(monkeypatch, providers=["CUDAExecutionProvider", "CPUExecutionProvider"], gpus=1, trt_installed=True,
              compatible=False)
    sel = select.select_backend(onnx_dir / "model.onnx")
    assert (sel.backend, sel.device) == ("ort", "cuda")
    assert "no engine built for this GPU/TensorRT (model.nvidia-a100.trt10.8.fp16.engine: built for NVIDIA A100" in sel.reason


def test_suffix_dispatch_and_explicit_backends(onnx_dir, tiny_checkpoint):
    engine = onnx_dir / "model.x.engine"
    engine.write_bytes(b"e")
    assert select.select_backend(engine).backend == "trt"
    assert select.select_backend(tiny_checkpoint).backend == "torch"
    assert select.select_backend(tiny_checkpoint.parent).backend == "torch"  # a run folder
    assert select.select_backend(onnx_dir / "model.onnx", backend="tensorrt").model == engine
    with pytest.raises(ValueError, match=r"unknown model type '\.pt'; pass an \.onnx file"):
        select.select_backend(onnx_dir / "weights.pt")
    with pytest.raises(ValueError, match="backend 'ort' runs .onnx files; .* is a checkpoint: export it with `engan export`"):
        select.select_backend(tiny_checkpoint, backend="ort")
    with pytest.raises(ValueError, match="backend 'torch' runs .safetensors checkpoints or run folders"):
        select.select_backend(onnx_dir / "model.onnx", backend="torch")
    with pytest.raises(ValueError, match="unknown backend 'tflite'; use one of: auto, trt, ort, openvino, torch"):
        select.select_backend(onnx_dir / "model.onnx", backend="tflite")
    engine.unlink()
    with pytest.raises(ValueError, match="backend 'trt' needs a TensorRT engine and none lies next to"):
        select.select_backend(onnx_dir / "model.onnx", backend="trt")


def test_torch_backend_finds_weights_next_to_the_onnx(onnx_dir, tiny_checkpoint):
    shutil.copy(tiny_checkpoint, onnx_dir / "model.safetensors")
    sel = select.select_backend(onnx_dir / "model.onnx", backend="torch")
    assert sel.model == onnx_dir / "model.safetensors" and "weights model.safetensors next to model.onnx" in sel.reason


def test_read_onnx_metadata_matches_onnx_and_refuses_truncated_files(tiny_onnx, tmp_path):
    import onnx

    from engan.runtime.meta import read_onnx_metadata

    assert read_onnx_metadata(tiny_onnx) == {p.key: p.value for p in onnx.load(str(tiny_onnx)).metadata_props}
    torn = tmp_path / "torn.onnx"
    torn.write_bytes(tiny_onnx.read_bytes()[:-7])
    with pytest.raises(ValueError, match="torn.onnx"):
        read_onnx_metadata(torn)


def test_auto_on_a_cpu_runs_the_int8_copy_next_to_the_onnx(onnx_dir, monkeypatch):
    _simulate(monkeypatch, providers=["CPUExecutionProvider"], gpus=0, trt_installed=False)
    int8 = int8_copy(onnx_dir / "model.onnx", onnx_dir / "model.int8.onnx")
    sel = select.select_backend(onnx_dir / "model.onnx")
    assert (sel.backend, sel.device, sel.model) == ("ort", "cpu", int8)
    assert sel.reason.startswith("ONNX Runtime CPU INT8: model.int8.onnx, the INT8 copy of model.onnx")
    assert "--backend ort runs model.onnx as given" in sel.reason
    # asked for by name, the file runs as given; on a GPU the FP32 model runs on CUDA
    assert select.select_backend(onnx_dir / "model.onnx", backend="ort").model == onnx_dir / "model.onnx"
    assert select.select_backend(int8).model == int8
    assert select.select_backend(onnx_dir / "model.onnx", cpu_int8=False).model == onnx_dir / "model.onnx"
    _simulate(monkeypatch, providers=["CUDAExecutionProvider", "CPUExecutionProvider"], gpus=1, trt_installed=False)
    assert select.select_backend(onnx_dir / "model.onnx").model == onnx_dir / "model.onnx"
    from engan.runtime.enhancer import Enhancer

    with Enhancer.load(onnx_dir / "model.onnx", device="cpu") as e:
        assert e.info["model"] == str(int8) and e.info["precision"] == "int8"
    with Enhancer.load(onnx_dir / "model.onnx", device="cpu", cpu_int8=False) as e:  # what `engan eval` scores
        assert e.info["model"] == str(onnx_dir / "model.onnx") and e.info["precision"] == "fp32"


def test_a_stale_int8_copy_is_not_used(onnx_dir, monkeypatch):
    _simulate(monkeypatch, providers=["CPUExecutionProvider"], gpus=0, trt_installed=False)
    int8_copy(onnx_dir / "model.onnx", onnx_dir / "model.int8.onnx", checkpoint_sha256="0" * 64)
    sel = select.select_backend(onnx_dir / "model.onnx")
    assert sel.model == onnx_dir / "model.onnx"
    assert sel.reason.endswith("(ONNX Runtime CPU INT8 not used: model.int8.onnx was made from another checkpoint "
                               "than model.onnx (stale; re-export))")
    (onnx_dir / "model.int8.onnx").write_bytes(b"\x08\x07garbage")
    sel = select.select_backend(onnx_dir / "model.onnx")
    assert sel.model == onnx_dir / "model.onnx" and "model.int8.onnx unreadable" in sel.reason
