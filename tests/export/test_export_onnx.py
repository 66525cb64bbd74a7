"""Export stage with the real exporters on the `tiny` generator: ONNX FP32/FP16 files, their
dynamic shapes, metadata, input refusal, and the parity check (passing and failing)."""
from __future__ import annotations

import os
import sys
import types

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from engan.export.api import ExportConfig, ExportError, export_model, model_name_for, resolve_source  # noqa: E402
from engan.export.verify import (  # noqa: E402
    Artefact,
    check_parity,
    generated_image,
    make_check_inputs,
    runtime_runner,
)
from engan.models.checkpoint import file_sha256, load_generator  # noqa: E402
from engan.runtime.meta import ArtefactMeta  # noqa: E402


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tiny_checkpoint):
    """One tiny export with --fp16 (parity checked, engine skipped here), shared by this module."""
    out = tmp_path_factory.mktemp("export")
    lines: list[str] = []
    result = export_model(ExportConfig(checkpoint=str(tiny_checkpoint), out=str(out), fp16=True, engine=None,
                                       check_sizes=SIZES), log=lines.append)
    return result, lines


@pytest.fixture(scope="module")
def tiny_model(tiny_checkpoint):
    return load_generator(tiny_checkpoint)


#: Parity sizes for the shared export (the default, 256x256 and 400x608, is only slower with the tiny model).
SIZES = ((64, 64), (48, 80))
_SESSIONS: dict = {}


def _session(path):
    if path not in _SESSIONS:
        _SESSIONS[path] = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return _SESSIONS[path]


def test_default_check_sizes_are_two_different_sizes():
    from engan.export.verify import DEFAULT_CHECK_SIZES

    assert ExportConfig().check_sizes == DEFAULT_CHECK_SIZES == ((256, 256), (400, 608))


def test_files_are_self_contained_and_pass_the_checker(exported):
    result, _ = exported
    assert sorted(p.name for p in result.out_dir.iterdir()) == ["model.fp16.onnx", "model.onnx"]  # no .data, no temp
    for path in (result.onnx, result.fp16):
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
        (inp,), (out,) = model.graph.input, model.graph.output
        assert (inp.name, out.name) == ("input", "output")
        for v in (inp, out):
            assert v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # FP32 I/O, also for the FP16 file
            dims = [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
            assert dims == ["N", 3, "H", "W"]
    fp16 = onnx.load(str(result.fp16))
    conv_w = [i for i in fp16.graph.initializer if i.dims and len(i.dims) == 4]
    assert conv_w and all(i.data_type == onnx.TensorProto.FLOAT16 for i in conv_w)


@pytest.mark.parametrize("shape", [(1, 32, 32), (1, 48, 80), (1, 128, 96), (2, 64, 96)])
def test_dynamic_shapes_match_eager(exported, tiny_model, shape):
    result, _ = exported
    n, h, w = shape
    x = torch.rand(n, 3, h, w, generator=torch.Generator().manual_seed(h * w))
    with torch.no_grad():
        ref = tiny_model(x).numpy()
    y32 = _session(result.onnx).run(["output"], {"input": x.numpy()})[0]
    y16 = _session(result.fp16).run(["output"], {"input": x.numpy()})[0]
    assert y32.shape == y16.shape == (n, 3, h, w) and y32.dtype == y16.dtype == np.float32
    assert np.abs(y32 - ref).max() < 1e-5
    assert np.abs(y16 - ref).max() < 5e-3
    assert 0.0 <= y32.min() and y32.max() <= 1.0  # eval-mode clamp is inside the graph


def test_metadata_round_trips_through_onnxruntime(exported, tiny_checkpoint, tiny_model):
    result, _ = exported
    from engan import __version__

    for path, precision in ((result.onnx, "fp32"), (result.fp16, "fp16")):
        props = _session(path).get_modelmeta().custom_metadata_map
        meta = ArtefactMeta.from_props(props)
        assert meta == ArtefactMeta(
            version=__version__, model_name=model_name_for(tiny_checkpoint, {}), preset="tiny",
            params=sum(p.numel() for p in tiny_model.parameters()), checkpoint_sha256=file_sha256(tiny_checkpoint),
            precision=precision, opset=17, extra={"exporter": "legacy", "source": "generator.safetensors"},
        )
        assert (meta.input_name, meta.output_name, meta.layout, meta.color, meta.input_range, meta.pad_multiple) == (
            "input", "output", "NCHW", "RGB", "0,1", 16)


def test_non_multiple_of_16_is_refused_clearly(exported, tiny_model):
    result, _ = exported
    bad = np.zeros((1, 3, 40, 56), np.float32)
    art = [Artefact(result.onnx, "fp32")]
    with pytest.raises(ValueError) as e:
        check_parity(tiny_model, art, {(40, 56): bad})
    assert str(e.value).startswith(
        "input is 40x56 (HxW); both sides must be multiples of 16. Pad first (centred reflect padding up to 48x64"
    )
    with pytest.raises(ValueError, match=r"generator input is 40x56 \(HxW\); both sides must be multiples of 16"):
        tiny_model(torch.from_numpy(bad))
    with pytest.raises(ValueError, match=r"expects float32 RGB in \[0, 1\], got dtype uint8"):
        check_parity(tiny_model, art, {(32, 32): np.zeros((1, 3, 32, 32), np.uint8)})
    with pytest.raises(ValueError, match=r"expects an RGB batch N x 3 x H x W, got shape \(32, 32, 3\)"):
        check_parity(tiny_model, art, {(32, 32): np.zeros((32, 32, 3), np.float32)})
    with runtime_runner(result.onnx) as runner:  # the runtime backend refuses it on its own too
        with pytest.raises(ValueError, match=r"input 40x56 is not a multiple of 16"):
            runner.run(bad)


def test_export_reports_parity_at_two_sizes_and_status_lines(exported):
    result, lines = exported
    rows = result.parity.rows
    assert [(r.artefact, r.size) for r in rows] == [
        ("model.onnx", SIZES[0]), ("model.onnx", SIZES[1]), ("model.fp16.onnx", SIZES[0]), ("model.fp16.onnx", SIZES[1]),
    ]
    for r in rows:
        assert r.backend == "onnxruntime-cpu" and r.passed
        assert r.threshold_db == {"model.onnx": 50.0, "model.fp16.onnx": 35.0}[r.artefact]
    assert all(r.psnr_db > 100 and r.max_abs < 1e-5 for r in rows[:2])
    assert all(r.psnr_db > 60 and r.max_abs < 1e-2 for r in rows[2:])
    text = "\n".join(lines)
    for stage in ("checkpoint  ", "onnx fp32   ", "onnx fp16   ", "parity vs eager PyTorch on a generated low-light "
                  "image at 64x64, 48x80:", "done  "):
        assert stage in text
    assert ("TensorRT engine skipped: " in text) == (result.engine is None)
    assert set(result.seconds) >= {"load", "onnx", "fp16", "check", "total"}


def test_parity_thresholds_per_precision(exported, tiny_model, monkeypatch):
    result, _ = exported
    desc, inputs = make_check_inputs(None, ((32, 32),))
    report = check_parity(tiny_model, [Artefact(result.onnx, "fp32"), Artefact(result.fp16, "fp16")], inputs, desc)
    assert report.passed
    import engan.export.verify as verify

    fp32_db = report.rows[0].psnr_db
    monkeypatch.setitem(verify.THRESHOLDS_DB, "fp32", fp32_db + 1.0)  # just above what FP32 reaches
    strict = check_parity(tiny_model, [Artefact(result.onnx, "fp32")], inputs, desc)
    assert not strict.passed and strict.failures[0].artefact == "model.onnx"


def test_check_image_is_resized_to_each_size(tmp_path):
    from PIL import Image

    img = (generated_image(60, 90) * 255).astype(np.uint8)
    Image.fromarray(img).save(tmp_path / "dark.png")
    desc, inputs = make_check_inputs(tmp_path / "dark.png", ((32, 48), (64, 64)))
    assert desc == "dark.png resized to 32x48, 64x64"
    assert {k: v.shape for k, v in inputs.items()} == {(32, 48): (1, 3, 32, 48), (64, 64): (1, 3, 64, 64)}
    assert all(v.dtype == np.float32 and 0 <= v.min() and v.max() <= 1 for v in inputs.values())


def test_int8_missing_quantizer_is_a_clear_error(monkeypatch, tmp_path, tiny_checkpoint):
    import engan.export

    monkeypatch.delattr(engan.export, "quantize", raising=False)  # in case another test imported it
    monkeypatch.setitem(sys.modules, "engan.export.quantize", None)
    with pytest.raises(ExportError, match=r"--int8 needs engan.export.quantize, which this engan install does not have"):
        export_model(ExportConfig(checkpoint=str(tiny_checkpoint), out=str(tmp_path), int8=True, check=False),
                     log=lambda s: None)


def test_int8_artefact_is_checked_at_30_db(monkeypatch, tmp_path, tiny_checkpoint):
    """With a stand-in quantizer (the real one lives in export/quantize.py), int8 joins the parity table."""
    import shutil

    fake = types.ModuleType("engan.export.quantize")

    def quantize_int8(fp32_onnx, out, calib_dir=None, num_images=32, progress=True):
        shutil.copyfile(fp32_onnx, out)  # metadata still says fp32: the exporter must fix it
        return out

    fake.quantize_int8 = quantize_int8
    import engan.export

    monkeypatch.setitem(sys.modules, "engan.export.quantize", fake)
    monkeypatch.setattr(engan.export, "quantize", fake, raising=False)
    r = export_model(ExportConfig(checkpoint=str(tiny_checkpoint), out=str(tmp_path), int8=True,
                                  check_sizes=((32, 32), (48, 64))), log=lambda s: None)
    assert r.int8 == tmp_path / "model.int8.onnx"
    assert ArtefactMeta.from_props(_session(r.int8).get_modelmeta().custom_metadata_map).precision == "int8"
    int8_rows = [row for row in r.parity.rows if row.artefact == "model.int8.onnx"]
    assert [row.threshold_db for row in int8_rows] == [30.0, 30.0]


def test_quantizer_errors_become_export_errors(monkeypatch, tmp_path):
    import engan.export
    from engan.export.api import _int8_quantizer

    fake = types.ModuleType("engan.export.quantize")

    class QuantizeError(RuntimeError):
        pass

    def quantize_int8(fp32_onnx, out, calib_dir=None, num_images=32, progress=True):
        raise QuantizeError(f"{calib_dir} holds no images; pass a folder of PNG/JPEG files")

    fake.quantize_int8, fake.QuantizeError = quantize_int8, QuantizeError
    monkeypatch.setitem(sys.modules, "engan.export.quantize", fake)
    monkeypatch.setattr(engan.export, "quantize", fake, raising=False)
    run = _int8_quantizer(ExportConfig(int8=True, calib=str(tmp_path)))
    with pytest.raises(ExportError, match=rf"^--int8 failed: {tmp_path} holds no images; pass a folder"):
        run(tmp_path / "model.onnx", tmp_path / "model.int8.onnx", calib_dir=tmp_path)
    with pytest.raises(ExportError, match=r"^--calib .*nope is not a folder; pass a folder of low-light"):
        _int8_quantizer(ExportConfig(int8=True, calib=str(tmp_path / "nope")))


def test_no_checkpoint_and_no_shipped_model(monkeypatch, tmp_path):
    import engan.runtime.shipped as shipped

    monkeypatch.setattr(shipped, "SHIPPED_DIR", tmp_path / "empty")
    with pytest.raises(shipped.ModelNotShippedError) as e:
        resolve_source(None)  # one line over the checkpoint and shipped-model resolvers
    with pytest.raises(ExportError) as err:
        export_model(ExportConfig(out=str(tmp_path / "o")), log=lambda s: None)
    assert str(err.value) == (
        f"no --checkpoint given and no shipped model is available ({e.value}); "
        "pass --checkpoint RUN_DIR (written by `engan train`) or --checkpoint FILE.safetensors"
    )
    assert str(e.value).startswith("no model ships with this build yet")
    assert not (tmp_path / "o").exists()


def test_no_checkpoint_exports_the_shipped_weights():
    from engan.runtime.shipped import default_model_path

    assert resolve_source(None) == default_model_path("safetensors")


def test_model_name_and_default_out(tmp_path):
    from pathlib import Path

    assert model_name_for(Path("runs/night-v2/generator.safetensors"), {}) == "night-v2"
    assert model_name_for(Path("weights/lite-cpu.safetensors"), {}) == "lite-cpu"
    assert model_name_for(Path("x/generator.safetensors"), {"engan.model_name": "enlightengan"}) == "enlightengan"


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("ENGAN_TEST_DYNAMO") != "1",
                    reason="the dynamo exporter takes ~16 s here; set ENGAN_TEST_DYNAMO=1 to run it")
def test_dynamo_exporter_gives_the_same_contract(tmp_path, tiny_checkpoint, tiny_model):
    r = export_model(ExportConfig(checkpoint=str(tiny_checkpoint), out=str(tmp_path), exporter="dynamo",
                                  check_sizes=((32, 32), (48, 64))), log=lambda s: None)
    assert r.parity.passed and all(row.psnr_db > 100 for row in r.parity.rows)
    x = np.random.default_rng(0).random((2, 3, 64, 96), dtype=np.float32)
    y = _session(r.onnx).run(["output"], {"input": x})[0]
    with torch.no_grad():
        assert np.abs(y - tiny_model(torch.from_numpy(x)).numpy()).max() < 1e-5
