"""The evaluation runner and the report files, on tiny generated sets (no research data needed)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engan.eval import metrics
from engan.eval.datasets import DatasetError, folder_images, list_pairs
from engan.eval.enhancers import Method, make_enhance_fn
from engan.eval.report import render_markdown, tables_text, write_report
from engan.eval.runner import INPUT_LABEL, EvalConfig, evaluate_paired, evaluate_unpaired, run_eval
from tests.helpers import make_image, make_paired_set, make_unpaired_set


@pytest.fixture
def paired(tmp_path) -> Path:
    return make_paired_set(tmp_path / "pairs")


@pytest.fixture
def unpaired(tmp_path) -> Path:
    return make_unpaired_set(tmp_path / "dark")


def test_evaluate_paired_identity_matches_direct_metrics(paired):
    res = evaluate_paired(lambda img: img, paired)
    assert res["n_images"] == 3 and len(res["per_image"]) == 3
    lows = [np.asarray(Image.open(paired / "low" / f"{i}.png")) for i in (1, 2, 3)]
    highs = [np.asarray(Image.open(paired / "high" / f"{i}.png")) for i in (1, 2, 3)]
    assert res["psnr"] == pytest.approx(np.mean([metrics.psnr_8bit(h, lo) for h, lo in zip(highs, lows)]))
    assert res["ssim"] == pytest.approx(np.mean([metrics.ssim(h, lo) for h, lo in zip(highs, lows)]))
    assert [r["image"] for r in res["per_image"]] == ["1.png", "2.png", "3.png"]


def test_evaluate_paired_perfect_enhancer_hits_the_cap(paired):
    gt = {np.asarray(Image.open(p)).tobytes(): np.asarray(Image.open(paired / "high" / p.name)) for p in (paired / "low").iterdir()}
    res = evaluate_paired(lambda img: gt[img.tobytes()], paired, max_images=2)
    assert res["n_images"] == 2 and res["psnr"] == 100.0 and res["ssim"] == pytest.approx(1.0)


def test_evaluate_unpaired_scores_every_image(unpaired):
    res = evaluate_unpaired(lambda img: img, unpaired)
    assert res["n_images"] == 2
    assert all(np.isfinite(r["niqe"]) and np.isfinite(r["brisque"]) for r in res["per_image"])
    assert 0 < res["brightness"] < 255


def test_enhance_fn_must_keep_shape_and_dtype(paired):
    with pytest.raises(ValueError, match="returned float32 .* it must return the same shape as uint8"):
        evaluate_paired(lambda img: img.astype(np.float32), paired)


def test_dataset_errors_name_the_folder(tmp_path, paired):
    with pytest.raises(DatasetError, match=f"{tmp_path}/nope is not a paired set: .*low is missing"):
        list_pairs(tmp_path / "nope")
    (paired / "high" / "3.png").unlink()
    with pytest.raises(DatasetError, match=r"high has no ground truth for 3.png"):
        list_pairs(paired)
    for name in ("10.png", "9.png", "b.png", "a.jpg"):
        Image.fromarray(make_image(8, 8)).save(tmp_path / name)
    assert [p.name for p in folder_images(tmp_path)] == ["9.png", "10.png", "a.jpg", "b.png"]


def test_run_eval_and_report_files(tmp_path, paired, unpaired, tiny_checkpoint):
    cfg = EvalConfig(model=str(tiny_checkpoint), lol=paired, unpaired=(unpaired,), peers=("zero-dce",),
                     peers_dir=tmp_path / "no-peers", out=tmp_path / "out", grid_rows=2)
    report, grids = run_eval(cfg, progress=False)
    written = write_report(report, grids, cfg.out)
    assert sorted(written) == ["grid_dark.png", "grid_pairs.png", "report.json", "report.md"]

    data = json.loads((cfg.out / "report.json").read_text())
    assert set(data) >= {"config", "methods", "notes", "sets", "environment", "grids", "wall_s"}
    labels = [m["label"] for m in data["methods"]]
    assert labels[0] == INPUT_LABEL and labels[1].startswith("EnlightenGAN (ours: ")
    assert data["methods"][1]["preset"] == "tiny" and data["methods"][1]["backend"] == "engan.runtime torch (cpu, fp32)"
    assert data["notes"] == [f"Zero-DCE left out: Zero-DCE weights not found at {tmp_path}/no-peers/zero_dce/Epoch99.pth "
                             "(pass --peers-dir to the folder that holds zero_dce/Epoch99.pth)"]
    paired_set, unpaired_set = data["sets"]
    assert (paired_set["kind"], paired_set["n_images"], unpaired_set["kind"], unpaired_set["n_images"]) == ("paired", 3, "unpaired", 2)
    for label in labels:
        m = paired_set["methods"][label]
        assert set(m["mean"]) == {"psnr", "ssim", "brightness", "clipped", "time_s"} and len(m["per_image"]) == 3
        assert 0 < m["mean"]["psnr"] < 100 and -1 <= m["mean"]["ssim"] <= 1
        u = unpaired_set["methods"][label]
        assert set(u["mean"]) == {"niqe", "brisque", "brightness", "clipped", "time_s"} and len(u["per_image"]) == 2
    assert paired_set["methods"][INPUT_LABEL]["mean"]["time_s"] is None  # the input row has no time
    assert data["environment"]["libraries"]["scikit-image"]

    md = (cfg.out / "report.md").read_text()
    assert "| method | PSNR (dB) ↑ | SSIM ↑ | brightness | clipped % | time / image |" in md
    assert "| method | NIQE ↓ | BRISQUE ↓ | brightness | clipped % | time / image |" in md
    assert "peak_signal_noise_ratio(data_range=255)" in md and "niqe_image_params.mat" in md
    assert "![pairs comparison](grid_pairs.png)" in md
    # grid: 2 rows; columns input | ours | ground truth for the paired set
    with Image.open(cfg.out / "grid_pairs.png") as g:
        assert g.mode == "RGB" and g.width > 3 * 64 and g.height > 2 * 48
    assert [list(r.tiles) for r in grids["pairs"]][0] == ["Input", labels[1], "Ground truth"]
    assert "### pairs (paired, 3 images)" in tables_text(report)


def test_markdown_shows_missing_numbers_as_dashes():
    report = {
        "environment": {"date": "d", "cpu": "c", "physical_cores": 1, "python": "3", "libraries": {}},
        "wall_s": 0.1, "notes": [], "methods": [{"label": "x", "kind": "ours"}],
        "sets": [{"name": "s", "kind": "unpaired", "n_images": 1, "path": "p",
                  "methods": {"x": {"mean": {"niqe": float("nan"), "brisque": None, "brightness": 1.0, "time_s": 0.25}}}}],
    }
    assert "| x | — | — | 1.0 | — | 250 ms |" in render_markdown(report)  # no clipped figure (older report.json)


def test_onnx_model_scores_like_its_checkpoint(paired, tiny_checkpoint, tiny_onnx):
    torch_res = evaluate_paired(make_enhance_fn(tiny_checkpoint).fn, paired)
    onnx_method = make_enhance_fn(tiny_onnx, backend="ort")
    assert isinstance(onnx_method, Method) and onnx_method.kind == "ours"
    onnx_res = evaluate_paired(onnx_method.fn, paired)
    assert onnx_res["psnr"] == pytest.approx(torch_res["psnr"], abs=0.05)
    assert onnx_res["ssim"] == pytest.approx(torch_res["ssim"], abs=0.002)


def test_checkpoint_and_onnx_both_run_through_the_runtime(paired, tiny_checkpoint, tiny_onnx, monkeypatch):
    """No private runner: a checkpoint runs on the runtime's torch backend (fp32, CPU), an .onnx on the backend
    asked for, both whole and on the file as given; their pixels agree within one level, padded or not."""
    from engan.runtime import Enhancer

    real_load, calls = Enhancer.load.__func__, []

    def spy(cls, model=None, **kw):
        calls.append((Path(model).name, kw["backend"], kw["device"], kw["max_pixels"], kw["cpu_int8"]))
        return real_load(cls, model, **kw)

    monkeypatch.setattr(Enhancer, "load", classmethod(spy))
    ckpt, onnx = make_enhance_fn(tiny_checkpoint), make_enhance_fn(tiny_onnx)
    assert calls == [(tiny_checkpoint.name, "torch", "cpu", 0, False), (tiny_onnx.name, "auto", "auto", 0, False)]
    assert ckpt.info["backend"] == "engan.runtime torch (cpu, fp32)" and ckpt.info["path"] == str(tiny_checkpoint)
    assert onnx.info["backend"].startswith("engan.runtime onnxruntime (")
    assert ckpt.info["preset"] == onnx.info["preset"] == "tiny"
    assert len(ckpt.info["sha256"]) == len(onnx.info["sha256"]) == 64
    img = np.asarray(Image.open(paired / "low" / "1.png"))  # 48x64: no padding; and a 45x61 crop: padded
    for x in (img, img[:45, :61]):
        a, b = ckpt.fn(x), onnx.fn(x)
        assert a.shape == x.shape and np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_missing_shipped_model_is_a_clear_error(tmp_path, monkeypatch):
    import engan.runtime.shipped as shipped
    from engan.eval.enhancers import ModelLoadError

    monkeypatch.setattr(shipped, "SHIPPED_DIR", tmp_path / "empty")
    with pytest.raises(ModelLoadError, match="no model ships with this build yet"):
        make_enhance_fn(None)
    with pytest.raises(ModelLoadError, match="--backend ort needs an .onnx model"):
        make_enhance_fn(tmp_path, backend="ort")
