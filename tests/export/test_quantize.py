"""INT8 static quantization (engan.export.quantize, .calibration, .graph_rewrites) on the tiny generator."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import make_image

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from engan.export.calibration import CalibrationError, load_calibration_batches  # noqa: E402
from engan.export.graph_rewrites import batchnorm_to_depthwise_conv, find_roles  # noqa: E402
from engan.export.quantize import DEFAULT_CONFIG, QuantizeError, quantize_int8  # noqa: E402
from engan.runtime.meta import ArtefactMeta  # noqa: E402

#: Small calibration crops keep the test fast; the recipe is otherwise the default one.
FAST = dataclasses.replace(DEFAULT_CONFIG, calib_size=(64, 96))
#: INT8 parity floor vs FP32 (the benchmark's floor; measured 33+ dB on a trained-like lite model).
INT8_FLOOR_DB = 30.0


def _session(path: Path):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)


@pytest.fixture(scope="module")
def calib_dir(tmp_path_factory) -> Path:
    from PIL import Image

    folder = tmp_path_factory.mktemp("calib")
    for i in range(3):
        Image.fromarray(make_image(72, 100, seed=i, dark=0.25)).save(folder / f"dark{i}.png")
    (folder / "notes.txt").write_text("not an image")
    return folder


@pytest.fixture(scope="module")
def int8_model(tiny_onnx: Path, calib_dir: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("int8") / "model.int8.onnx"
    return quantize_int8(tiny_onnx, out, calib_dir=calib_dir, num_images=3, progress=False, config=FAST)


def test_int8_written_loads_and_says_int8(int8_model: Path, tiny_onnx: Path) -> None:
    assert int8_model.is_file() and int8_model.stat().st_size > 0
    sess = _session(int8_model)
    assert [i.name for i in sess.get_inputs()] == ["input"] and [o.name for o in sess.get_outputs()] == ["output"]
    meta = ArtefactMeta.from_props(dict(sess.get_modelmeta().custom_metadata_map))
    fp32 = ArtefactMeta.from_props({p.key: p.value for p in onnx.load(str(tiny_onnx)).metadata_props})
    assert meta.precision == "int8"
    assert (meta.preset, meta.checkpoint_sha256, meta.params) == ("tiny", fp32.checkpoint_sha256, fp32.params)
    assert "3 images from" in meta.extra["int8_calibration"]
    ops = {n.op_type for n in onnx.load(str(int8_model)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert "BatchNormalization" not in ops  # rewritten as depthwise convs so they run in int8


def test_int8_parity_vs_fp32(int8_model: Path, tiny_onnx: Path) -> None:
    ref, q = _session(tiny_onnx), _session(int8_model)
    for seed, (h, w) in enumerate([(64, 96), (48, 80)]):
        x = make_image(h, w, seed=10 + seed, dark=0.3).astype(np.float32).transpose(2, 0, 1)[None] / 255.0
        y_ref = ref.run(None, {"input": x})[0]
        y = q.run(None, {"input": x})[0]
        assert y.shape == (1, 3, h, w)
        assert 0.0 <= y.min() and y.max() <= 1.0
        assert _psnr(y_ref, y) >= INT8_FLOOR_DB


def test_excluded_nodes_stay_float(int8_model: Path) -> None:
    model = onnx.load(str(int8_model))
    graph = model.graph
    produced_by = {o: n for n in graph.node for o in n.output}
    floats = {t.name for t in graph.initializer if t.data_type == onnx.TensorProto.FLOAT}
    ints = {t.name for t in graph.initializer if t.data_type in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8)}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    # excluded by default: the first conv (it sees the raw image) and the 1x1 head; the
    # full-resolution decoder (conv9_1, bn9_1 as a depthwise conv, conv9_2) runs in int8
    for conv in (convs[0], convs[-1]):
        assert conv.input[1] in floats, f"{conv.name} should have kept its float weight"
    # every other conv reads int8 weights through DequantizeLinear
    for conv in convs[1:-1]:
        dq = produced_by[conv.input[1]]
        assert dq.op_type == "DequantizeLinear" and dq.input[0] in ints, conv.name
    assert DEFAULT_CONFIG.reduce_range  # 7-bit weights: no vpmaddubsw saturation on AVX2 without VNNI
    # the tail (residual x attention, skip add, clamp) is float: the graph output is not dequantized
    assert produced_by["output"].op_type != "DequantizeLinear"
    tail_ops = {produced_by["output"].op_type}
    assert tail_ops <= {"Clip", "Min", "Max"}


def test_quantize_everything_when_exclude_is_empty(tiny_onnx: Path, calib_dir: Path, tmp_path: Path) -> None:
    out = quantize_int8(tiny_onnx, tmp_path / "all.onnx", calib_dir=calib_dir, num_images=2, progress=False,
                        exclude=[], config=FAST)
    graph = onnx.load(str(out)).graph
    produced_by = {o: n for n in graph.node for o in n.output}
    head = [n for n in graph.node if n.op_type == "Conv"][-1]
    assert produced_by[head.input[1]].op_type == "DequantizeLinear"


def test_bn_rewrite_is_exact(tiny_onnx: Path, tmp_path: Path) -> None:
    model = onnx.load(str(tiny_onnx))
    n_bn = sum(n.op_type == "BatchNormalization" for n in model.graph.node)
    assert batchnorm_to_depthwise_conv(model) == n_bn > 0
    path = tmp_path / "dw.onnx"
    onnx.save(model, str(path))
    x = make_image(48, 64, seed=3).astype(np.float32).transpose(2, 0, 1)[None] / 255.0
    a = _session(tiny_onnx).run(None, {"input": x})[0]
    b = _session(path).run(None, {"input": x})[0]
    assert float(np.abs(a - b).max()) < 1e-5


def test_roles_are_found_from_the_graph(tiny_onnx: Path) -> None:
    roles = find_roles(onnx.load(str(tiny_onnx)))
    assert len(roles["first_conv"]) == len(roles["head"]) == 1
    # features x attention: c5*a5, c4*a4, c3*a3, c2*a2, c1*a1 and the residual conv10 x a1 (also in the tail)
    assert len(roles["attention"]) == 6
    assert set(roles["attention"]) & set(roles["tail"])
    assert len(roles["concat"]) == 5  # input+attention, four skip connections
    assert roles["tail"] and roles["prologue"]


def test_errors_name_the_problem(tiny_onnx: Path, int8_model: Path, tmp_path: Path) -> None:
    with pytest.raises(QuantizeError, match="neither a role"):
        quantize_int8(tiny_onnx, tmp_path / "x.onnx", num_images=1, progress=False, exclude=["nope"], config=FAST)
    with pytest.raises(QuantizeError, match="is a int8 model"):
        quantize_int8(int8_model, tmp_path / "y.onnx", num_images=1, progress=False, config=FAST)
    with pytest.raises(QuantizeError, match="not found"):
        quantize_int8(tmp_path / "missing.onnx", tmp_path / "z.onnx", progress=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(QuantizeError, match=f"{empty} holds no images"):
        quantize_int8(tiny_onnx, tmp_path / "w.onnx", calib_dir=empty, progress=False, config=FAST)
    assert not (tmp_path / "w.onnx").exists() and not list(tmp_path.glob(".int8-*"))


def test_calibration_batches(calib_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    batches, source = load_calibration_batches(calib_dir, 2, (32, 48))
    assert len(batches) == 2 and source.startswith("2 images from")
    assert all(b.shape == (1, 3, 32, 48) and b.dtype == np.float32 for b in batches)
    assert all(0.0 <= b.min() and b.max() <= 1.0 for b in batches)
    monkeypatch.setattr("engan.export.calibration.default_calib_dir", lambda: None)
    generated, source = load_calibration_batches(None, 3, (32, 32))
    assert len(generated) == 3 and "generated dark images" in source
    assert all(b.shape == (1, 3, 32, 32) and 0.0 < b.mean() < 0.5 for b in generated)
    with pytest.raises(CalibrationError, match="multiples of 16"):
        load_calibration_batches(calib_dir, 1, (30, 48))
    with pytest.raises(CalibrationError, match=f"calibration folder {calib_dir / 'nope'} does not exist"):
        load_calibration_batches(calib_dir / "nope", 1, (32, 32))


@pytest.mark.parametrize("denoise", ["off", "full"])
def test_curve_residual_head_with_knee_quantizes(calib_dir: Path, tmp_path: Path, denoise: str) -> None:
    """The shipped model's head: the knee's comparison makes a bool tensor, which the
    channel-equalization probe must declare as bool (it once declared every tensor float).
    With the denoise filter, its fixed depthwise convolutions (one reads the input for the
    noise estimate) are part of the tail (kept float), and the head role is still conv10."""
    import warnings

    import torch

    from engan.config import generator_config
    from engan.models.generator import UNetGenerator

    torch.manual_seed(0)
    g = UNetGenerator(dataclasses.replace(generator_config("tiny"), head="curve-residual", knee=0.8,
                                          denoise=denoise)).eval()
    src = tmp_path / "curve.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(g, torch.rand(1, 3, 32, 32), str(src), input_names=["input"], output_names=["output"],
                          dynamic_axes={"input": {0: "N", 2: "H", 3: "W"}, "output": {0: "N", 2: "H", 3: "W"}},
                          opset_version=17, dynamo=False)
    graph = onnx.load(str(src))
    assert "Greater" in {n.op_type for n in graph.graph.node}
    roles = find_roles(graph)
    by_name = {n.name: n for n in graph.graph.node}
    head_weight = next(i for i in graph.graph.initializer if i.name == by_name[roles["head"][0]].input[1])
    assert head_weight.dims == [6, 4, 1, 1]  # conv10, not a filter
    fixed = [n.name for n in graph.graph.node if n.op_type == "Conv" and any(a.name == "group" and a.i == 3
                                                                              for a in n.attribute)]
    assert len(fixed) == (4 if denoise == "full" else 0) and set(fixed) <= set(roles["tail"])
    out = quantize_int8(src, tmp_path / "curve.int8.onnx", calib_dir=calib_dir, num_images=3, progress=False,
                        config=FAST)
    x = make_image(48, 64, seed=3, dark=0.3).astype(np.float32).transpose(2, 0, 1)[None] / 255.0
    y_ref = _session(src).run(None, {"input": x})[0]
    y = _session(out).run(None, {"input": x})[0]
    assert 0.0 <= y.min() and y.max() <= 1.0
    assert _psnr(y_ref, y) >= INT8_FLOOR_DB
