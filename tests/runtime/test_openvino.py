"""OpenVINO backend (engan[openvino]), CPU feature detection and the measured auto rule."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from engan.runtime import cpu as cpu_mod
from engan.runtime._optional import BackendUnavailable, is_installed
from engan.runtime.backends.base import ModelLoadError
from engan.runtime.backends.openvino import (
    PREFER_OPENVINO_WHEN, OpenVINOBackend, cpu_class, import_openvino, openvino_auto_reason,
)
from engan.runtime.parity import compare
from engan.runtime.shipped import default_model_path

needs_openvino = pytest.mark.skipif(not is_installed("openvino"),
                                    reason="openvino not installed (pip install 'engan[openvino]')")

#: /proc/cpuinfo of a Sapphire Rapids Xeon (AMX) and of this repo's AMD EPYC (AVX2 only), trimmed.
AMX_CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
cpu family\t: 6
model\t\t: 143
model name\t: Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz
flags\t\t: fpu sse2 avx avx2 fma avx512f avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8

processor\t: 1
model name\t: ignored
"""
EPYC_CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 1
model name\t: AMD EPYC
flags\t\t: fpu sse2 avx avx2 fma
"""


def _rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    from engan.export.verify import generated_image

    return np.ascontiguousarray(generated_image(h, w, seed).transpose(2, 0, 1)[None])


# ------------------------------------------------------------------ CPU facts and the rule


@pytest.fixture(autouse=True)
def _measured_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests are about the measured rule itself: not pinned by ENGAN_AUTO_OPENVINO (tests/conftest.py)."""
    monkeypatch.delenv("ENGAN_AUTO_OPENVINO", raising=False)


def test_the_environment_pins_the_rung_either_way(monkeypatch: pytest.MonkeyPatch) -> None:
    amx = cpu_mod.parse_cpuinfo(AMX_CPUINFO)
    monkeypatch.setenv("ENGAN_AUTO_OPENVINO", "0")
    assert openvino_auto_reason(amx, installed=True) == (False, "OpenVINO not used: ENGAN_AUTO_OPENVINO=0 is set")
    monkeypatch.setenv("ENGAN_AUTO_OPENVINO", "1")
    assert openvino_auto_reason(cpu_mod.parse_cpuinfo(EPYC_CPUINFO), installed=True) == (
        True, "OpenVINO: ENGAN_AUTO_OPENVINO=1 is set")
    assert openvino_auto_reason(amx, installed=False) == (
        False, "OpenVINO not used: ENGAN_AUTO_OPENVINO=1 but openvino is not installed (pip install 'engan[openvino]')")


def test_parse_cpuinfo_reads_the_first_processor() -> None:
    amx = cpu_mod.parse_cpuinfo(AMX_CPUINFO)
    assert amx.model_name.startswith("Intel(R) Xeon(R) Platinum 8481C")
    assert amx.amx and amx.avx512_bf16 and cpu_mod.bf16_capable(amx)
    epyc = cpu_mod.parse_cpuinfo(EPYC_CPUINFO)
    assert not epyc.amx and not cpu_mod.bf16_capable(epyc) and epyc.has("avx2")
    assert epyc.microarchitecture == "Zen 3 (Milan)"
    assert epyc.describe() == "AMD EPYC, Zen 3 (Milan), AVX2" and amx.describe().endswith("AVX512-BF16/AMX")
    assert cpu_mod.parse_cpuinfo("").model_name  # no /proc/cpuinfo: a name, no flags
    assert cpu_mod.cpu_info() is cpu_mod.cpu_info()  # read once


def test_auto_rule_prefers_openvino_on_amx_with_the_measurement() -> None:
    prefer, reason = openvino_auto_reason(cpu_mod.parse_cpuinfo(AMX_CPUINFO), installed=True)
    assert prefer
    m = PREFER_OPENVINO_WHEN["amx"]
    assert reason.startswith("OpenVINO: this CPU has AMX") and "Xeon" in reason
    assert f"{m.speedup:.2f}x" in reason and f"{m.psnr_db:.1f} vs {m.ort_int8_psnr_db:.1f} dB" in reason
    assert reason.endswith("(issue 24)")
    prefer, reason = openvino_auto_reason(cpu_mod.parse_cpuinfo(AMX_CPUINFO), installed=False)
    assert not prefer and "pip install 'engan[openvino]'" in reason


def test_auto_rule_keeps_ort_int8_on_avx2_and_unmeasured_cpus() -> None:
    prefer, reason = openvino_auto_reason(cpu_mod.parse_cpuinfo(EPYC_CPUINFO), installed=True)
    assert not prefer
    assert reason.startswith("OpenVINO not preferred: this CPU has no AMX/AVX512-BF16 (AMD EPYC")
    m = PREFER_OPENVINO_WHEN["avx2"]
    assert f"ONNX Runtime INT8 measured {1 / m.speedup:.2f}x faster than OpenVINO" in reason
    zen4 = cpu_mod.parse_cpuinfo(EPYC_CPUINFO.replace("fma", "fma avx512f avx512_bf16"))
    assert cpu_class(zen4) == "avx512_bf16"
    prefer, reason = openvino_auto_reason(zen4, installed=True)
    assert not prefer and "not measured" in reason


def test_auto_rule_on_this_cpu_names_it() -> None:
    here = cpu_mod.cpu_info()
    prefer, reason = openvino_auto_reason()
    assert here.model_name in reason
    assert prefer == (PREFER_OPENVINO_WHEN[cpu_class(here)].prefer and is_installed("openvino"))


def test_every_rule_row_is_decided_by_its_figures() -> None:
    for m in PREFER_OPENVINO_WHEN.values():
        assert m.source
        assert m.prefer == bool(m.speedup and m.speedup > 1 and m.psnr_db >= m.ort_int8_psnr_db)


def test_missing_openvino_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)  # blocks the import
    with pytest.raises(BackendUnavailable, match=r"pip install 'engan\[openvino\]'"):
        import_openvino()
    with pytest.raises(BackendUnavailable, match=r"engan\[openvino\]"):
        OpenVINOBackend(default_model_path("onnx"))


# ------------------------------------------------------------------ the backend


def test_refuses_bad_files_options_and_devices(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="not found"):
        OpenVINOBackend(tmp_path / "nope.onnx")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\0" * 4096)
    with pytest.raises(ModelLoadError, match=r"garbage.onnx.*re-run `engan export`"):
        OpenVINOBackend(garbage)
    lone = tmp_path / "model.xml"
    lone.write_text("<net/>")
    with pytest.raises(ModelLoadError, match=r"model.bin"):
        OpenVINOBackend(lone)
    with pytest.raises(ModelLoadError, match=r"\.onnx files"):
        OpenVINOBackend(tmp_path / "model.engine")
    with pytest.raises(ValueError, match="ONNX Runtime execution providers"):
        OpenVINOBackend(default_model_path("onnx"), providers=["CPUExecutionProvider"])
    with pytest.raises(BackendUnavailable, match="runs on the CPU"):
        OpenVINOBackend(default_model_path("onnx"), device="cuda")


@needs_openvino
def test_parity_with_ort_fp32_and_metadata() -> None:
    from engan.runtime.backends.ort import OrtBackend

    model = default_model_path("onnx")
    x = _rgb(64, 96)
    with OrtBackend(model, device="cpu", threads=1) as ort, OpenVINOBackend(model, threads=1, precision="fp32") as ov:
        stats = compare(ort.run(x), ov.run(x))
        assert stats.psnr_db >= 45.0, stats
        assert ov.info.name == "openvino" and ov.info.precision == "fp32" and ov.info.device == "cpu"
        assert ov.meta.model_name == ort.meta.model_name and ov.meta.checkpoint_sha256 == ort.meta.checkpoint_sha256
        assert "openvino" in ov.info.versions


@needs_openvino
def test_bf16_where_the_cpu_has_it() -> None:
    model = default_model_path("onnx")
    if not cpu_mod.bf16_capable():
        with pytest.raises(BackendUnavailable, match="native bf16"):
            OpenVINOBackend(model, precision="bf16")
        with OpenVINOBackend(model, threads=1) as ov:
            assert ov.hint == "f32" and "no native bf16" in ov.precision_note
        pytest.skip(f"no native bf16 on this CPU ({cpu_mod.cpu_info().describe()}): BF16 parity not measured")
    from engan.runtime.backends.ort import OrtBackend

    x = _rgb(64, 96)
    with OrtBackend(model, device="cpu", threads=1) as ort, OpenVINOBackend(model, threads=1) as ov:
        assert ov.hint == "bf16" and ov.info.precision == "bf16"
        db = compare(ort.run(x), ov.run(x)).psnr_db
        print(f"OpenVINO BF16 vs ORT FP32 at 64x96: {db:.1f} dB")
        assert db >= 35.0


@needs_openvino
def test_compiles_once_per_shape_and_bounds_the_cache() -> None:
    with OpenVINOBackend(default_model_path("onnx"), threads=1, precision="fp32", shape_cache=2) as ov:
        a, b, c = _rgb(32, 32), _rgb(32, 48), _rgb(48, 32)
        first = ov.run(a)
        np.testing.assert_array_equal(ov.run(a), first)
        assert ov.compiles == 1
        ov.run(b)
        ov.run(a)  # a becomes the most recent
        assert ov.compiles == 2 and ov.compiled_shapes == [(1, 3, 32, 48), (1, 3, 32, 32)]
        ov.run(c)  # evicts b, the least recently used
        assert ov.compiled_shapes == [(1, 3, 32, 32), (1, 3, 48, 32)] and ov.compiles == 3
        ov.run(b)
        assert ov.compiles == 4 and len(ov.compiled_shapes) == 2
        assert ov.run(np.concatenate([a, a])).shape == (2, 3, 32, 32)  # a batch is a shape of its own


@needs_openvino
def test_threads_are_honoured() -> None:
    with OpenVINOBackend(default_model_path("onnx"), threads=1, precision="fp32") as ov:
        ov.run(_rgb(32, 32))
        assert ov.info.threads == 1
        assert int(ov.compiled_property("INFERENCE_NUM_THREADS")) == 1
        assert str(ov.compiled_property("INFERENCE_PRECISION_HINT")) in ("<Type: 'float32'>", "f32", "float32")


@needs_openvino
def test_ir_round_trip_keeps_the_metadata(tmp_path: Path) -> None:
    import openvino as ov

    src = default_model_path("onnx")
    xml = tmp_path / "model.xml"
    ov.save_model(ov.Core().read_model(str(src)), str(xml), compress_to_fp16=False)
    with OpenVINOBackend(xml, threads=1, precision="fp32") as ir, OpenVINOBackend(src, threads=1, precision="fp32") as ox:
        x = _rgb(32, 48)
        assert compare(ox.run(x), ir.run(x)).psnr_db >= 100
        assert ir.meta.checkpoint_sha256 == ox.meta.checkpoint_sha256 and ir.engan_model


@needs_openvino
def test_checks_the_input_contract() -> None:
    with OpenVINOBackend(default_model_path("onnx"), threads=1, precision="fp32") as ov:
        with pytest.raises(ValueError, match="multiple of 16"):
            ov.run(np.zeros((1, 3, 30, 32), np.float32))
        with pytest.raises(ValueError, match="float32"):
            ov.run(np.zeros((1, 3, 32, 32), np.float64))
