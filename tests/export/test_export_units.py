"""Export stage, plain-Python parts (no torch, no ONNX): profiles, engine naming and sidecars,
the engine-skip decision, timing-cache keys, the Triton config and the parity maths."""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from engan.export.profile import ProfileError, ShapeProfile, parse_hw
from engan.export.tensorrt import (
    EngineUnavailableError,
    TrtEnvironment,
    decide_engine,
    default_timing_cache_path,
    engine_is_current,
    engine_path_for,
    skip_message,
    skip_reason,
    timing_cache_key,
)
from engan.export.triton import PLATFORM_ONNX, PLATFORM_TRT, TritonConfig, write_triton_repository
from engan.runtime.engine_meta import (
    EngineMismatchError,
    EngineSidecar,
    SidecarError,
    check_compatible,
    engine_file_name,
    gpu_slug,
    read_sidecar,
    sidecar_path,
    write_sidecar,
)
from engan.runtime.meta import ArtefactMeta
from engan.runtime.parity import compare, max_abs, psnr

H100 = "NVIDIA H100 80GB HBM3"


# ---------------------------------------------------------------------------- profiles


def test_parse_hw_accepts_height_x_width():
    assert parse_hw("400x608") == (400, 608)
    assert parse_hw(" 1088X1920 ") == (1088, 1920)
    assert parse_hw("256,256") == (256, 256)


@pytest.mark.parametrize(
    "text, message",
    [
        ("400x600", "--opt-shape 400x600: W=600 is not a positive multiple of 16; use 400x608"),
        ("1080x1920", "--opt-shape 1080x1920: H=1080 is not a positive multiple of 16; use 1088x1920"),
        ("0x16", "--opt-shape 0x16: H=0 is not a positive multiple of 16; use 16x16"),
        ("400", "--opt-shape '400' is not HxW (height x width, e.g. 400x608)"),
        ("axb", "--opt-shape 'axb' is not HxW"),
    ],
)
def test_parse_hw_rejects_with_the_fix(text, message):
    with pytest.raises(ProfileError) as e:
        parse_hw(text, "--opt-shape")
    assert str(e.value).startswith(message)


def test_default_profile_matches_the_issue():
    p = ShapeProfile()
    assert (p.min_hw, p.opt_hw, p.max_hw) == ((256, 256), (400, 608), (1088, 1920))
    assert p.input_shapes() == ((1, 3, 256, 256), (1, 3, 400, 608), (p.max_batch, 3, 1088, 1920))
    assert p.contains(1, 400, 608) and p.contains(p.max_batch, 1088, 1920)
    assert not p.contains(1, 240, 608) and not p.contains(p.max_batch + 1, 400, 608)
    assert p.describe() == "256x256 .. 400x608 .. 1088x1920 (HxW), batch <= 4"


def test_profile_requires_min_le_opt_le_max():
    with pytest.raises(ProfileError, match=r"profile W must satisfy min <= opt <= max, got 256 <= 2048 <= 1920"):
        ShapeProfile(opt_hw=(400, 2048))
    with pytest.raises(ProfileError, match=r"--max-batch must be at least 1, got 0"):
        ShapeProfile(max_batch=0)
    with pytest.raises(ProfileError, match=r"--min-shape 250x256: H=250"):
        ShapeProfile(min_hw=(250, 256))


# ---------------------------------------------------------------------------- engine naming + sidecar


def test_engine_file_name_records_gpu_trt_and_precision():
    assert gpu_slug(H100) == "h100-80gb-hbm3"
    assert gpu_slug("NVIDIA GeForce RTX 4090") == "geforce-rtx-4090"
    assert gpu_slug("") == "gpu"
    assert engine_file_name(H100, "10.3.0", "fp16") == "model.h100-80gb-hbm3.trt10.3.0.fp16.engine"
    assert engine_file_name("Tesla T4", "10.0.1.6", "fp16") == "model.tesla-t4.trt10.0.1.6.fp16.engine"
    env = TrtEnvironment(trt_version="10.3.0", gpu_name=H100, compute_capability="9.0")
    assert engine_path_for(Path("out"), env) == Path("out/model.h100-80gb-hbm3.trt10.3.0.fp16.engine")
    assert sidecar_path("out/model.x.trt10.fp16.engine") == Path("out/model.x.trt10.fp16.engine.json")
    assert sidecar_path("out/model.x.trt10.fp16.engine.json") == Path("out/model.x.trt10.fp16.engine.json")


def _sidecar(**kw) -> EngineSidecar:
    base = dict(
        version="0.1.0", model_name="x", preset="tiny", params=1234, checkpoint_sha256="ab" * 32, opset=17,
        engine_file=engine_file_name(H100, "10.3.0"), onnx_file="model.onnx", onnx_sha256="cd" * 32,
        gpu_name=H100, compute_capability="9.0", trt_version="10.3.0", max_batch=4, workspace_gib=4.0,
    )
    base.update(kw)
    return EngineSidecar(**base)


def test_sidecar_round_trip_keeps_artefact_and_engine_fields(tmp_path):
    engine = tmp_path / engine_file_name(H100, "10.3.0")
    sc = _sidecar(extra={"exporter": "legacy"})
    written = write_sidecar(engine, sc)
    assert written == tmp_path / (engine.name + ".json")
    data = json.loads(written.read_text())
    # flat JSON: the ArtefactMeta fields plus the engine fields
    assert data["precision"] == "fp16" and data["input_name"] == "input" and data["pad_multiple"] == 16
    assert data["gpu_name"] == H100 and data["profile_opt"] == [400, 608] and data["max_batch"] == 4
    back = read_sidecar(engine)
    assert back == sc
    assert back.artefact_meta() == ArtefactMeta(
        version="0.1.0", model_name="x", preset="tiny", params=1234, checkpoint_sha256="ab" * 32,
        precision="fp16", opset=17, extra={"exporter": "legacy"},
    )
    assert back.input_shapes() == ((1, 3, 256, 256), (1, 3, 400, 608), (4, 3, 1088, 1920))


def test_sidecar_input_shape_refusal_names_engine_and_fix():
    sc = _sidecar()
    sc.check_input_shape(2, 400, 608)
    with pytest.raises(ValueError) as e:
        sc.check_input_shape(1, 2176, 3840)
    msg = str(e.value)
    assert "input 1x3x2176x3840 is outside the profile of engine model.h100-80gb-hbm3.trt10.3.0.fp16.engine" in msg
    assert "H 256..1088, W 256..1920" in msg and "--max-shape HxW" in msg


def test_read_sidecar_missing_and_corrupt_name_the_file(tmp_path):
    engine = tmp_path / "model.h100.trt10.3.0.fp16.engine"
    with pytest.raises(SidecarError) as e:
        read_sidecar(engine)
    assert str(e.value).startswith(f"{engine}.json not found: the engine {engine.name} has no sidecar")
    assert "engan export --checkpoint RUN_DIR|FILE.safetensors --fp16 --engine" in str(e.value)
    sidecar_path(engine).write_text("{not json")
    with pytest.raises(SidecarError, match=re.escape(f"{engine}.json is not a valid engan engine sidecar")):
        read_sidecar(engine)
    sidecar_path(engine).write_text(json.dumps({"precision": "fp16"}))
    with pytest.raises(SidecarError, match=r"missing fields \['gpu_name', 'trt_version', 'compute_capability'\]"):
        read_sidecar(engine)


def test_mismatched_engine_is_refused_with_what_differs_and_the_fix(tmp_path):
    engine = tmp_path / engine_file_name(H100, "10.3.0")
    write_sidecar(engine, _sidecar())  # a fabricated sidecar: built on an H100 with TensorRT 10.3.0
    sc = read_sidecar(engine)
    check_compatible(sc, "NVIDIA  H100 80GB HBM3", (9, 0), "10.3.0", engine)  # same machine: accepted
    with pytest.raises(EngineMismatchError) as e:
        check_compatible(sc, "NVIDIA A10", "8.6", "10.5.0", engine)
    msg = str(e.value)
    assert msg.startswith("TensorRT engine model.h100-80gb-hbm3.trt10.3.0.fp16.engine cannot run here: ")
    assert f"GPU: built on '{H100}', this machine has 'NVIDIA A10'" in msg
    assert "compute capability: built for 9.0, this GPU is 8.6" in msg
    assert "TensorRT: built with 10.3.0, this machine has 10.5.0" in msg
    assert "Rebuild it on this machine: engan export --checkpoint RUN_DIR|FILE.safetensors --fp16 --engine" in msg
    with pytest.raises(EngineMismatchError) as e:
        check_compatible(sc, H100, "9.0", "10.4.0")
    assert "GPU:" not in str(e.value) and "TensorRT: built with 10.3.0, this machine has 10.4.0" in str(e.value)


def test_engine_is_current_only_for_a_matching_sidecar(tmp_path):
    engine = tmp_path / engine_file_name(H100, "10.3.0")
    expected = _sidecar()
    assert not engine_is_current(engine, expected)  # no engine yet
    engine.write_bytes(b"plan")
    assert not engine_is_current(engine, expected)  # no sidecar
    write_sidecar(engine, _sidecar(built_at="2026-01-01T00:00:00+00:00"))
    assert engine_is_current(engine, expected)  # build time is not part of the key
    assert not engine_is_current(engine, _sidecar(onnx_sha256="ef" * 32))
    assert not engine_is_current(engine, _sidecar(profile_max=[2176, 3840]))
    assert not engine_is_current(engine, _sidecar(trt_version="10.4.0"))


# ---------------------------------------------------------------------------- skip decision, timing cache


def test_engine_skip_reason_and_message():
    no_trt = TrtEnvironment(trt_error="import tensorrt failed: ModuleNotFoundError: No module named 'tensorrt'",
                            cuda_error="no CUDA GPU visible")
    reason = skip_reason(no_trt)
    assert reason == "TensorRT is not installed (import tensorrt failed: ModuleNotFoundError: No module named 'tensorrt')"
    msg = skip_message(reason)
    assert "\n" not in msg
    assert msg.startswith("TensorRT engine skipped: TensorRT is not installed")
    assert "`pip install 'engan[trt]'` on a machine with a CUDA GPU" in msg
    assert "engan export --fp16 --engine" in msg
    assert skip_reason(TrtEnvironment(trt_version="10.3.0", cuda_error="no CUDA GPU visible")) == "no CUDA GPU visible"
    assert "older than 10.0" in skip_reason(TrtEnvironment(trt_version="8.6.1", gpu_name=H100, compute_capability="9.0"))
    assert skip_reason(TrtEnvironment(trt_version="10.3.0", gpu_name=H100, compute_capability="9.0")) is None


def test_decide_engine_matrix():
    reason = "TensorRT is not installed"
    assert decide_engine(None, True, None).build
    assert decide_engine(True, True, None).build
    d = decide_engine(None, True, reason)
    assert not d.build and d.reason == reason  # auto: skip with the reason
    assert decide_engine(None, False, reason) == decide_engine(None, False, None)  # no --fp16: silently no engine
    assert not decide_engine(False, True, None).build and decide_engine(False, True, None).reason is None
    with pytest.raises(EngineUnavailableError, match=r"--engine was given but no engine can be built here: "
                                                      r"TensorRT is not installed\. Run `pip install 'engan\[trt\]'`"):
        decide_engine(True, True, reason)
    with pytest.raises(ValueError, match=r"--engine builds an FP16 TensorRT engine: add --fp16"):
        decide_engine(True, False, None)


def test_timing_cache_key_and_default_path(monkeypatch, tmp_path):
    key = timing_cache_key(H100, "9.0", "10.3.0", "fp16")
    assert key == "h100-80gb-hbm3.cc90.trt10.3.0.fp16"
    assert timing_cache_key("NVIDIA A10", "8.6", "10.3.0") != key
    monkeypatch.setenv("ENGAN_CACHE_DIR", str(tmp_path))
    assert default_timing_cache_path(H100, "9.0", "10.3.0") == tmp_path / "trt" / f"timing.{key}.cache"
    monkeypatch.delenv("ENGAN_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_timing_cache_path(H100, "9.0", "10.3.0").parent == tmp_path / "xdg" / "engan" / "trt"


# ---------------------------------------------------------------------------- Triton


def parse_pbtxt(text: str) -> dict:
    """A small protobuf-text reader (enough for config.pbtxt): repeated fields become lists."""
    tokens = re.findall(r'"[^"]*"|[{}\[\]:,]|[^\s{}\[\]:,"]+', re.sub(r"#.*", "", text))
    pos = 0

    def scalar(tok: str):
        if tok.startswith('"'):
            return tok[1:-1]
        try:
            return int(tok)
        except ValueError:
            return tok

    def value():
        nonlocal pos
        tok = tokens[pos]
        pos += 1
        if tok == "{":
            return message("}")
        if tok == "[":
            items = []
            while tokens[pos] != "]":
                items.append(value())
                if tokens[pos] == ",":
                    pos += 1
            pos += 1
            return items
        return scalar(tok)

    def message(end):
        nonlocal pos
        out: dict = {}
        while pos < len(tokens) and tokens[pos] != end:
            name = tokens[pos]
            pos += 1
            if tokens[pos] == ":":
                pos += 1
            out[name] = value()
        pos += 1
        return out

    return message(None)


def test_triton_onnx_config_fields(tmp_path):
    onnx_file = tmp_path / "model.onnx"
    onnx_file.write_bytes(b"fake onnx")
    cfg_path = write_triton_repository(tmp_path / "triton", onnx_file, max_batch_size=8)
    assert cfg_path == tmp_path / "triton" / "engan" / "config.pbtxt"
    assert (tmp_path / "triton/engan/1/model.onnx").read_bytes() == b"fake onnx"
    assert not (tmp_path / "triton/engan/1/model.plan").exists()
    cfg = parse_pbtxt(cfg_path.read_text())
    assert cfg["name"] == "engan" and cfg["platform"] == PLATFORM_ONNX
    assert cfg["default_model_filename"] == "model.onnx"
    assert cfg["max_batch_size"] == 8
    assert cfg["input"] == [{"name": "input", "data_type": "TYPE_FP32", "dims": [3, -1, -1]}]
    assert cfg["output"] == [{"name": "output", "data_type": "TYPE_FP32", "dims": [3, -1, -1]}]
    assert cfg["dynamic_batching"] == {"max_queue_delay_microseconds": 100}
    assert cfg["instance_group"] == [{"count": 1, "kind": "KIND_AUTO"}]


def test_triton_plan_config_and_stale_plan_removal(tmp_path):
    onnx_file, plan = tmp_path / "model.onnx", tmp_path / "model.h100.trt10.3.0.fp16.engine"
    onnx_file.write_bytes(b"onnx")
    plan.write_bytes(b"plan")
    cfg = parse_pbtxt(write_triton_repository(tmp_path / "t", onnx_file, plan, max_batch_size=4).read_text())
    assert cfg["platform"] == PLATFORM_TRT and cfg["default_model_filename"] == "model.plan"
    assert cfg["instance_group"] == [{"count": 1, "kind": "KIND_GPU"}]
    assert (tmp_path / "t/engan/1/model.plan").read_bytes() == b"plan"
    assert (tmp_path / "t/engan/1/model.onnx").read_bytes() == b"onnx"
    write_triton_repository(tmp_path / "t", onnx_file)  # re-export without an engine
    assert not (tmp_path / "t/engan/1/model.plan").exists()
    assert parse_pbtxt((tmp_path / "t/engan/config.pbtxt").read_text())["platform"] == PLATFORM_ONNX


def test_triton_config_rejects_bad_values():
    with pytest.raises(ValueError, match="max_batch_size must be >= 1"):
        TritonConfig(max_batch_size=0).to_pbtxt()
    with pytest.raises(ValueError, match="unknown Triton platform 'pytorch_libtorch'"):
        TritonConfig(platform="pytorch_libtorch").to_pbtxt()


# ---------------------------------------------------------------------------- parity maths


def test_parity_maths():
    ref = np.zeros((1, 3, 16, 16), np.float32)
    cand = ref.copy()
    assert psnr(ref, cand, peak=1.0) == math.inf and max_abs(ref, cand) == 0.0
    cand[0, 0, 0, 0] = 0.5
    mse = 0.25 / ref.size
    assert psnr(ref, cand, peak=1.0) == pytest.approx(10 * math.log10(1 / mse))
    assert max_abs(ref, cand) == 0.5
    s = compare(ref, cand)
    assert (s.max_abs, s.mean_abs) == (0.5, pytest.approx(0.5 / ref.size))
    assert s.psnr_db == pytest.approx(psnr(ref, cand, peak=1.0))
    assert psnr(ref * 255, cand * 255, peak=255.0) == pytest.approx(psnr(ref, cand, peak=1.0))
    noisy = ref + 0.01  # uniform error 0.01 -> exactly 40 dB
    assert psnr(ref, noisy, peak=1.0) == pytest.approx(40.0, abs=1e-4)
    with pytest.raises(ValueError, match=r"different shapes: reference \(1, 3, 16, 16\), candidate \(1, 3, 16\)"):
        psnr(ref, ref[..., 0], peak=1.0)
