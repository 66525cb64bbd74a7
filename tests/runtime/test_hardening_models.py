"""Hardening: corrupt, truncated, foreign and malicious model files.

Each is refused by every entry point that takes it (``Enhancer.load`` / the backends,
``engan-infer --model``, ``engan export --checkpoint``, ``load_generator``) with a message
that names the file and what to do, and nothing is written. No pickle from a user path is
ever unpickled: the malicious files below would create a marker folder if they were.
"""
from __future__ import annotations

import ast
import json
import os
import pickle
import shutil
import sys
import types
import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from tests.helpers import REPO, make_image
from engan.runtime import Enhancer
from engan.runtime.cli.main import main as infer_main
from engan.runtime.backends.base import ModelLoadError


def infer(tmp_path: Path, model: Path | str):
    """engan-infer on one small image; returns (result, output folder)."""
    src, out = tmp_path / "in.png", tmp_path / "out"
    Image.fromarray(make_image(16, 24)).save(src)
    r = CliRunner().invoke(infer_main, [str(src), str(out), "--model", str(model)], catch_exceptions=False)
    return r, out


def export(checkpoint: Path, out: Path, *extra: str):
    from engan.cli import main

    return CliRunner().invoke(main, ["export", "--checkpoint", str(checkpoint), "--out", str(out), *extra],
                              catch_exceptions=False)


# ---------------------------------------------------------------------------- corrupt ONNX


@pytest.mark.parametrize("damage", ["truncated", "empty", "html"])
def test_corrupt_onnx_is_refused_by_enhancer_and_engan_infer(tmp_path, tiny_onnx, damage):
    data = tiny_onnx.read_bytes()
    bad = tmp_path / f"{damage}.onnx"
    bad.write_bytes({"truncated": data[: len(data) // 2], "empty": b"",
                     "html": b"<html><body>404 Not Found</body></html>"}[damage])
    with pytest.raises(ModelLoadError) as err:
        Enhancer.load(bad)
    msg = str(err.value)
    assert msg.startswith(f"{bad} is not a loadable ONNX model (")
    assert msg.endswith("the file is corrupt, truncated or not ONNX: re-run `engan export` or copy the file again")
    r, out = infer(tmp_path, bad)
    assert r.exit_code == 2
    assert r.stderr.endswith(f"Error: could not load the model: {msg}\n")
    assert "Traceback" not in r.output and os.listdir(out) == []


# ---------------------------------------------------------------------------- corrupt safetensors


def _damaged_safetensors(tmp_path: Path, good: Path, damage: str) -> tuple[Path, str]:
    """(file, the exact CheckpointError text) for one kind of damage."""
    data = good.read_bytes()
    p = tmp_path / f"{damage}.safetensors"
    n = int.from_bytes(data[:8], "little")
    invalid = f"{p} is not a valid safetensors file ({{}}); re-export it or point to another checkpoint"
    if damage == "empty":
        p.write_bytes(b"")
        return p, invalid.format("file shorter than a safetensors header")
    if damage == "header-too-long":  # the 8-byte header length points past the end of the file
        p.write_bytes(data[:8 + n // 2])
        return p, invalid.format(f"header length {n} does not fit the file size {8 + n // 2}")
    if damage == "json-garbage":
        p.write_bytes((20).to_bytes(8, "little") + b"{not json at all!!!}")
        return p, invalid.format("Expecting property name enclosed in double quotes: line 1 column 2 (char 1)")
    if damage == "json-list":
        p.write_bytes((7).to_bytes(8, "little") + b"[1,2,3]")
        return p, invalid.format("its header is not a JSON object of tensors and metadata")
    if damage == "header-2**60":  # a length no allocation could hold
        p.write_bytes((2**60).to_bytes(8, "little") + b"{}")
        return p, invalid.format(f"header length {2**60} does not fit the file size 10")
    if damage == "deep-json":  # json.loads would raise RecursionError
        body = b"[" * 100_000 + b"]" * 100_000
        p.write_bytes(len(body).to_bytes(8, "little") + body)
        return p, invalid.format("its header is JSON nested too deeply to be one of tensors and metadata")
    if damage == "pickle":  # a payload that would run os.mkdir, renamed to .safetensors
        data = pickle.dumps({"conv1_1.weight": _Payload(tmp_path / "PWNED")}, protocol=2)
        p.write_bytes(data)
        n = int.from_bytes(data[:8], "little")
        return p, invalid.format(f"header length {n} does not fit the file size {len(data)}")
    assert damage == "truncated"  # header intact, tensor bytes cut (a copy that stopped early)
    p.write_bytes(data[: len(data) - 5000])
    return p, ""  # safetensors' own wording inside; checked by prefix/suffix


DAMAGES = ["empty", "header-too-long", "json-garbage", "json-list", "truncated", "header-2**60", "deep-json",
           "pickle"]


def _assert_names_file_and_fix(msg: str, p: Path, expect: str) -> None:
    if expect:
        assert msg == expect
    else:
        assert msg.startswith(f"{p} could not be read as safetensors (")
        assert msg.endswith("); the file is corrupt or truncated")


@pytest.mark.parametrize("damage", DAMAGES)
def test_corrupt_safetensors_is_refused_everywhere(tmp_path, tiny_checkpoint, damage):
    from engan.models.checkpoint import CheckpointError, load_generator
    from engan.runtime.backends.torch_backend import TorchBackend

    bad, expect = _damaged_safetensors(tmp_path, tiny_checkpoint, damage)
    with pytest.raises(CheckpointError) as err:
        load_generator(bad)
    msg = str(err.value)
    _assert_names_file_and_fix(msg, bad, expect)
    with pytest.raises(ModelLoadError) as err:  # the runtime's PyTorch backend, directly and through Enhancer
        TorchBackend(bad, device="cpu")
    assert str(err.value) == msg
    with pytest.raises(ModelLoadError) as err:
        Enhancer.load(bad)
    assert str(err.value) == msg
    r, out = infer(tmp_path, bad)
    assert r.exit_code == 2 and r.stderr.endswith(f"Error: could not load the model: {msg}\n")
    assert os.listdir(out) == []
    r = export(bad, tmp_path / "exp", "--no-check")
    assert r.exit_code == 1 and r.output.endswith(f"Error: {msg}\n")
    assert not (tmp_path / "exp").exists()  # refused before the output folder is made
    assert not (tmp_path / "PWNED").exists()  # the pickle was never unpickled


def test_checkpoint_of_another_preset_is_refused(tmp_path, tiny_checkpoint):
    from safetensors.torch import save_file

    from engan.models import create_generator
    from engan.models.checkpoint import CheckpointError, load_generator

    with pytest.raises(CheckpointError) as err:
        load_generator(tiny_checkpoint, preset="lite")
    assert str(err.value) == (f"{tiny_checkpoint} holds a 'tiny' generator, not 'lite'; pass --preset tiny "
                              "or another checkpoint")
    # lite tensors under tiny metadata (an edited or mislabelled file): refused, not a torch traceback
    liar = tmp_path / "liar.safetensors"
    state = {k: v.contiguous() for k, v in create_generator("lite").state_dict().items()}
    save_file(state, str(liar), metadata={"format": "pt", "engan.preset": "tiny", "engan.base_width": "4"})
    with pytest.raises(CheckpointError) as err:
        load_generator(liar)
    msg = str(err.value)
    assert msg.startswith(f"{liar} does not match the 'tiny' generator its metadata names (size mismatch for "
                          "conv1_1.weight: copying a param with shape torch.Size([16, 4, 3, 3]) from checkpoint")
    assert msg.endswith("; the file holds another model or was edited: re-save it with engan or point to another "
                        "checkpoint")
    with pytest.raises(ModelLoadError, match="does not match the 'tiny' generator its metadata names"):
        Enhancer.load(liar)
    # some other network's weights
    foreign = tmp_path / "resnet.safetensors"
    import torch

    save_file({"fc.weight": torch.zeros(2, 2)}, str(foreign))
    with pytest.raises(CheckpointError) as err:
        load_generator(foreign)
    assert str(err.value).startswith(f"{foreign} does not match the 'paper' generator: 114 missing keys (e.g. "
                                     "['conv1_1.weight', 'conv1_1.bias', 'bn1_1.weight']), 1 unexpected (e.g. "
                                     "['fc.weight']); pass a generator saved by engan")


def test_run_folder_without_generator_is_refused(tmp_path):
    run = tmp_path / "run"
    (run / "snapshots").mkdir(parents=True)
    (run / "config.json").write_text("{}")
    msg = (f"{run} is a folder without generator.safetensors; pass a run folder written by `engan train` or a "
           ".safetensors generator file")
    with pytest.raises(ModelLoadError) as err:
        Enhancer.load(run)
    assert str(err.value) == msg
    r, out = infer(tmp_path, run)
    assert r.exit_code == 2 and r.stderr.endswith(f"Error: could not load the model: {msg}\n")
    r = export(run, tmp_path / "exp", "--no-check")
    assert r.exit_code == 1 and r.output == f"Error: {msg}\n" and not (tmp_path / "exp").exists()


# ---------------------------------------------------------------------------- other ONNX input contracts


def _identity_onnx(path: Path, shape: list, channels_meta: bool = True) -> Path:
    """An identity graph with the given input shape and engan metadata (another exporter's contract)."""
    import onnx
    from onnx import TensorProto, helper

    from engan.runtime.meta import ArtefactMeta

    ins = [helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)]
    outs = [helper.make_tensor_value_info("output", TensorProto.FLOAT, shape)]
    graph = helper.make_graph([helper.make_node("Identity", ["input"], ["output"])], "g", ins, outs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if channels_meta:
        for k, v in ArtefactMeta(model_name=path.stem, preset="tiny").to_props().items():
            e = model.metadata_props.add()
            e.key, e.value = k, v
    onnx.save(model, str(path))
    return path


def test_static_224_graph_is_fed_exactly_224x224_and_gives_exact_pixels(tmp_path):
    enh = Enhancer.load(_identity_onnx(tmp_path / "static224.onnx", [1, 3, 224, 224]))
    assert enh.info["backend"] == "onnxruntime"
    for h, w in [(1, 1), (15, 15), (100, 300), (500, 230), (1, 4000)]:  # padded up, or tiled at 224x224
        img = make_image(h, w, seed=h)
        assert np.array_equal(enh.enhance(img), img), (h, w)
    imgs = [make_image(40, 56, seed=s) for s in range(3)]
    assert all(np.array_equal(a, b) for a, b in zip(enh.enhance_batch(imgs), imgs))


@pytest.mark.parametrize("shape, message", [
    ([1, 3, 100, 100], "{p} takes a fixed 100x100 input, which is not a multiple of 16; images are padded to "
                       "multiples of 16, so they can never match it: export the generator with `engan export` "
                       "(free N, H and W)"),
    ([2, 3, 224, 224], "{p} takes input 2 x 3 x 224 x 224, a fixed batch of 2; the runtime feeds one image per "
                       "call to graphs with a fixed batch, so it must be 1: export the generator with `engan "
                       "export` (free N, H and W)"),
    (["N", 3, 224, 224], "{p} takes input N x 3 x 224 x 224, with some of N/H/W fixed and others free; the "
                         "runtime feeds graphs whose N, H and W are all free, or a fully fixed 1 x 3 x H x W: "
                         "export the generator with `engan export` (free N, H and W)"),
    (["N", 3, 224, "W"], "{p} takes input N x 3 x 224 x W, with some of N/H/W fixed and others free; the runtime "
                         "feeds graphs whose N, H and W are all free, or a fully fixed 1 x 3 x H x W: export the "
                         "generator with `engan export` (free N, H and W)"),
    (["N", 1, "H", "W"], "{p} takes 1 input channels; engan models take 3 (RGB): pass a model exported by "
                         "`engan export`"),
])
def test_other_input_contracts_are_refused_at_load_with_the_fix(tmp_path, shape, message):
    p = _identity_onnx(tmp_path / "other.onnx", shape)
    with pytest.raises(ModelLoadError) as err:
        Enhancer.load(p)
    assert str(err.value) == message.format(p=p)
    r, out = infer(tmp_path, p)
    assert r.exit_code == 2 and r.stderr.endswith(f"Error: could not load the model: {message.format(p=p)}\n")


def test_graph_with_batch_fixed_to_1_runs_batches_one_by_one(tmp_path):
    enh = Enhancer.load(_identity_onnx(tmp_path / "b1.onnx", [1, 3, "H", "W"]))
    imgs = [make_image(33, 47, seed=s) for s in range(3)]
    assert all(np.array_equal(a, b) for a, b in zip(enh.enhance_batch(imgs), imgs))


def test_onnx_runtime_failures_while_running_name_the_model(tmp_path):
    """Graphs that load but fail at run time: a non-image output, an ONNX Runtime error."""
    import onnx
    from onnx import TensorProto, helper

    p = tmp_path / "reshape.onnx"
    shape_init = helper.make_tensor("s", TensorProto.INT64, [2], [1, -1])
    ins = [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, "H", "W"])]
    outs = [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, "X"])]
    graph = helper.make_graph([helper.make_node("Reshape", ["input", "s"], ["output"])], "g", ins, outs, [shape_init])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(p))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "no engan metadata"
        enh = Enhancer.load(p)
    from engan.runtime.backends.base import BackendError

    with pytest.raises(BackendError) as err:
        enh.enhance(make_image(16, 16))
    assert str(err.value) == (f"{p} returned shape (1, 768) for input (1, 3, 16, 16); engan models return an "
                              "image of the input's size (is this an engan generator?)")
    # a graph ONNX Runtime itself cannot run at this size (a 16x16 constant added to the image)
    q = tmp_path / "add16.onnx"
    const = helper.make_tensor("c", TensorProto.FLOAT, [1, 3, 16, 16], [0.0] * 768)
    ins = [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, "H", "W"])]
    outs = [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 3, "H", "W"])]
    graph = helper.make_graph([helper.make_node("Add", ["input", "c"], ["output"])], "g", ins, outs, [const])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(q))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        enh = Enhancer.load(q)
    assert np.array_equal(enh.enhance(make_image(16, 16)), make_image(16, 16))
    with pytest.raises(BackendError) as err:
        enh.enhance(make_image(32, 32))
    assert str(err.value).startswith(f"ONNX Runtime failed to run {q} on input (1, 3, 32, 32) (")
    assert "Traceback" not in str(err.value) and "\n" not in str(err.value)


# ---------------------------------------------------------------------------- TensorRT engines of another machine


H100 = ("NVIDIA H100 80GB HBM3", (9, 0))


@pytest.fixture
def fake_trt(monkeypatch):
    """`tensorrt` 10.3.0 and cuda-python on an H100, as far as the backend can tell without them.

    The fake tensorrt has no Runtime: reaching deserialisation would raise AttributeError, so a
    refusal proves the engine bytes were never handed to TensorRT.
    """
    trt = types.ModuleType("tensorrt")
    trt.__version__ = "10.3.0"
    rt = types.ModuleType("cuda.bindings.runtime")
    rt.cudaSetDevice = lambda i: (0,)
    rt.cudaGetDeviceProperties = lambda i: (0, types.SimpleNamespace(name=H100[0].encode() + b"\0\0", major=9, minor=0))
    cuda, bindings = types.ModuleType("cuda"), types.ModuleType("cuda.bindings")
    cuda.bindings, bindings.runtime = bindings, rt
    for name, mod in {"tensorrt": trt, "cuda": cuda, "cuda.bindings": bindings, "cuda.bindings.runtime": rt}.items():
        monkeypatch.setitem(sys.modules, name, mod)
    return trt


def _engine_with_sidecar(folder: Path, gpu: str, cc: str, trt_version: str) -> Path:
    from engan.runtime.engine_meta import EngineSidecar, engine_file_name, write_sidecar

    folder.mkdir(parents=True, exist_ok=True)
    engine = folder / engine_file_name(gpu, trt_version)
    engine.write_bytes(b"serialized engine bytes" * 10)
    write_sidecar(engine, EngineSidecar(model_name="m", gpu_name=gpu, compute_capability=cc, trt_version=trt_version,
                                        engine_file=engine.name))
    return engine


REBUILD = ("An engine only runs on the GPU model and TensorRT version that built it. Rebuild it on this machine: "
           "engan export --checkpoint RUN_DIR|FILE.safetensors --fp16 --engine (or run the portable "
           "model.fp16.onnx / model.onnx with ONNX Runtime).")


@pytest.mark.parametrize("gpu, cc, version, diffs", [
    ("NVIDIA A100-SXM4-80GB", "8.0", "10.0.1",
     "GPU: built on 'NVIDIA A100-SXM4-80GB', this machine has 'NVIDIA H100 80GB HBM3'; compute capability: built "
     "for 8.0, this GPU is 9.0; TensorRT: built with 10.0.1, this machine has 10.3.0"),
    (H100[0], "9.0", "10.1.0", "TensorRT: built with 10.1.0, this machine has 10.3.0"),
])
def test_engine_for_another_gpu_or_tensorrt_is_refused_before_deserialising(tmp_path, fake_trt, gpu, cc, version,
                                                                             diffs):
    from engan.runtime.backends.trt import TrtBackend
    from engan.runtime.engine_meta import EngineMismatchError

    engine = _engine_with_sidecar(tmp_path / "exp", gpu, cc, version)
    msg = f"TensorRT engine {engine.name} cannot run here: {diffs}. {REBUILD}"
    with pytest.raises(EngineMismatchError) as err:
        TrtBackend(engine)
    assert str(err.value) == msg
    with pytest.raises(ModelLoadError) as err:  # the documented Enhancer.load error for foreign model files
        Enhancer.load(engine)
    assert str(err.value) == msg
    r, out = infer(tmp_path, engine)
    assert r.exit_code == 2 and r.stderr.endswith(f"Error: could not load the model: {msg}\n")


def test_engine_without_or_with_a_broken_sidecar_is_refused(tmp_path, fake_trt):
    from engan.runtime.engine_meta import SidecarError

    engine = _engine_with_sidecar(tmp_path, *H100[:1], "9.0", "10.3.0")
    sidecar = Path(f"{engine}.json")
    sidecar.write_text("{ not json")
    with pytest.raises(SidecarError) as err:
        Enhancer.load(engine)
    assert str(err.value).startswith(f"{sidecar} is not a valid engan engine sidecar (")
    assert str(err.value).endswith(f"); delete it and the engine {engine.name}, then rebuild on this machine: "
                                   "engan export --checkpoint RUN_DIR|FILE.safetensors --fp16 --engine")
    sidecar.unlink()
    with pytest.raises(SidecarError) as err:
        Enhancer.load(engine)
    assert str(err.value) == (
        f"{sidecar} not found: the engine {engine.name} has no sidecar, so engan cannot check that it was built for "
        "this GPU and TensorRT version. Rebuild the engine on this machine: engan export --checkpoint "
        "RUN_DIR|FILE.safetensors --fp16 --engine")


def test_auto_passes_over_a_foreign_engine_and_runs_the_onnx(tmp_path, fake_trt, tiny_onnx, monkeypatch):
    from engan.runtime import select

    monkeypatch.setattr(select, "cuda_device_count", lambda: 1)
    folder = tmp_path / "exp"
    engine = _engine_with_sidecar(folder, "NVIDIA A100-SXM4-80GB", "8.0", "10.3.0")
    onnx_path = Path(shutil.copy(tiny_onnx, folder / "model.onnx"))
    enh = Enhancer.load(onnx_path)
    assert enh.info["backend"] == "onnxruntime"
    assert (f"(TensorRT not used: no engine built for this GPU/TensorRT ({engine.name}: TensorRT engine {engine.name} "
            "cannot run here: GPU: built on 'NVIDIA A100-SXM4-80GB'") in enh.info["reason"]
    assert enh.enhance(make_image(16, 16)).shape == (16, 16, 3)


# ---------------------------------------------------------------------------- no pickle from user paths

#: The only unpickling calls allowed in the package, and why they are safe.
PICKLE_ALLOWED = {
    ("engan/eval/brisque.py", "pickle.load"):
        "reads normalize.pickle shipped inside the installed brisque package (brisque.model_dir()), never a user path",
}
#: Call names that unpickle (or run) stored code.
UNSAFE_CALLS = {"pickle.load", "pickle.loads", "pickle.Unpickler", "cPickle.load", "dill.load", "dill.loads",
                "joblib.load", "cloudpickle.load", "cloudpickle.loads", "marshal.load", "marshal.loads",
                "shelve.open", "torch.jit.load", "pandas.read_pickle", "pd.read_pickle"}


def _dotted(node: ast.AST) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return ".".join(reversed(parts))


def _package_sources() -> list[Path]:
    files = [p for d in ("engan", "export", "runtime") for p in (REPO / d).rglob("*.py")]
    assert len(files) > 40
    return files


def test_only_weights_only_torch_load_and_no_other_unpickling_in_the_package():
    torch_loads, problems = [], []
    for path in _package_sources():
        rel = path.relative_to(REPO).as_posix()
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=rel)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module in ("pickle", "dill", "joblib", "marshal", "torch"):
                names = {a.name for a in node.names}
                if names & {"load", "loads", "Unpickler"}:
                    problems.append(f"{rel}:{node.lineno}: from {node.module} import {sorted(names)}")
            if not isinstance(node, ast.Call):
                continue
            name = _dotted(node.func)
            if name == "torch.load":
                kw = {k.arg: k.value for k in node.keywords}
                safe = isinstance(kw.get("weights_only"), ast.Constant) and kw["weights_only"].value is True
                torch_loads.append(rel)
                if not safe:
                    problems.append(f"{rel}:{node.lineno}: torch.load without weights_only=True")
            elif name == "numpy.load" or name == "np.load":
                kw = {k.arg: k.value for k in node.keywords}
                if not (isinstance(kw.get("allow_pickle"), ast.Constant) and kw["allow_pickle"].value is False):
                    problems.append(f"{rel}:{node.lineno}: {name} without allow_pickle=False")
            elif name in UNSAFE_CALLS and (rel, name) not in PICKLE_ALLOWED:
                problems.append(f"{rel}:{node.lineno}: {name}")
    assert problems == []
    # the one torch.load of the package (weights_only=True), shared by every .pth reader
    assert sorted(set(torch_loads)) == ["engan/models/checkpoint.py"]


class _Payload:
    """Unpickling this runs os.mkdir(marker): proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


@pytest.fixture
def malicious(tmp_path):
    """A raw-pickle .pth and a torch.save (zip) .pth that run os.mkdir(marker) when unpickled; the
    control proves the payload is live."""
    import torch

    marker, control = tmp_path / "PWNED", tmp_path / "control"
    raw = tmp_path / "evil_raw.pth"
    raw.write_bytes(pickle.dumps({"conv1_1.weight": _Payload(marker)}, protocol=2))
    zipped = tmp_path / "evil_zip.pth"
    torch.save({"conv1_1.weight": _Payload(marker)}, zipped)
    pickle.loads(pickle.dumps(_Payload(control)))
    assert control.is_dir()  # the payload works when something does unpickle it
    return marker, [raw, zipped]


def test_malicious_pickle_is_refused_without_running(tmp_path, malicious):
    from engan.models.checkpoint import CheckpointError, load_generator, load_legacy_checkpoint

    marker, files = malicious
    for evil in files:
        with pytest.raises(CheckpointError) as err:  # where the authors' .pth is expected
            load_legacy_checkpoint(evil)
        assert str(err.value).startswith(f"{evil} was refused as an EnlightenGAN G_A checkpoint: it is not a plain "
                                         "tensor file (objects or code in the pickle, or a corrupt file: UnpicklingError; ")
        assert "never runs code stored in them); pass the authors' 200_net_G_A.pth or a .safetensors generator" \
            in str(err.value) and "weights_only=False" not in str(err.value)
        with pytest.raises(CheckpointError, match="is not a valid safetensors file"):  # where a generator is expected
            load_generator(evil)
        disguised = Path(shutil.copy(evil, tmp_path / f"{evil.stem}.safetensors"))
        with pytest.raises(ModelLoadError, match=f"^{disguised} is not a valid safetensors file"):
            Enhancer.load(disguised)
        with pytest.raises(ValueError, match=f"^{evil}: unknown model type '.pth'"):
            Enhancer.load(evil)
        r, _ = infer(tmp_path, evil)
        assert r.exit_code == 2 and f"could not load the model: {evil}: unknown model type '.pth'" in r.stderr
        r = export(evil, tmp_path / "exp", "--no-check")
        assert r.exit_code == 1 and r.output.startswith(f"Error: {evil} is not a valid safetensors file")
    assert not marker.exists()


def test_malicious_vgg_weights_are_refused_without_running(malicious):
    from engan.losses.feature_nets import FeatureNetError, VGG16Relu51

    marker, files = malicious
    for evil in files:
        with pytest.raises(FeatureNetError) as err:
            VGG16Relu51().load_weights(evil)
        assert str(err.value).startswith(f"{evil} was refused as VGG16 weights: it is not a plain tensor file "
                                         "(objects or code in the pickle, or a corrupt file: UnpicklingError; ")
        assert "weights_only=False" not in str(err.value) and "\n" not in str(err.value)
    assert not marker.exists()


def test_malicious_peer_weights_are_refused_without_running(tmp_path, malicious):
    from engan.eval.peers import PEERS, PeerError, load_peer

    marker, files = malicious
    weights = tmp_path / "peers" / PEERS["zero-dce"].weights
    weights.parent.mkdir(parents=True)
    for evil in files:
        shutil.copy(evil, weights)
        with pytest.raises(PeerError) as err:  # `engan eval --peers zero-dce --peers-dir tmp/peers`
            load_peer("zero-dce", weights.parents[1])
        assert str(err.value).startswith(f"{weights} was refused as zero-dce weights: it is not a plain tensor file "
                                         "(objects or code in the pickle, or a corrupt file: UnpicklingError; ")
        assert "weights_only=False" not in str(err.value) and "\n" not in str(err.value)
    assert not marker.exists()


# ---------------------------------------------------------------------------- torn generator file


def test_torn_generator_file_is_refused_naming_the_file(tmp_path, tiny_checkpoint):
    """What a non-atomic writer would leave: refused with the file name, never half-loaded."""
    from engan.models.checkpoint import CheckpointError, load_generator

    data = tiny_checkpoint.read_bytes()
    torn = tmp_path / "generator.safetensors"
    torn.write_bytes(data[: len(data) - 1000])
    with pytest.raises(CheckpointError) as err:
        load_generator(tmp_path)
    _assert_names_file_and_fix(str(err.value), torn, "")
    assert json.loads(data[8: 8 + int.from_bytes(data[:8], "little")])  # the header itself was intact
