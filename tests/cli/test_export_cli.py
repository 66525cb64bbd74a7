"""`engan export` through click's CliRunner on the tiny checkpoint, as a user would run it;
plus the TensorRT path, which runs only where TensorRT and a CUDA GPU exist."""
from __future__ import annotations

import re
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from click.testing import CliRunner  # noqa: E402

from engan.cli import main  # noqa: E402


def _run(args: list[str], **kw):
    return CliRunner().invoke(main, ["export", *args], catch_exceptions=False, **kw)


def test_export_fp16_triton_writes_everything_and_explains_the_engine(tmp_path, tiny_checkpoint):
    from engan.export.tensorrt import probe_environment, skip_reason

    out = tmp_path / "x"
    res = _run(["--checkpoint", str(tiny_checkpoint.parent), "--fp16", "--triton", "--out", str(out),
                "--check-size", "32x32", "--check-size", "48x80"])
    assert res.exit_code == 0, res.output
    for f in ("model.onnx", "model.fp16.onnx", "triton/engan/config.pbtxt", "triton/engan/1/model.onnx"):
        assert (out / f).is_file(), f
    lines = res.output.splitlines()
    assert lines[0].startswith(f"checkpoint  {tiny_checkpoint} (tiny, ")
    assert any(line.startswith("onnx fp32   ") for line in lines)
    assert any(line.startswith("onnx fp16   ") for line in lines)
    assert any(line.startswith("triton      ") and "onnxruntime_onnx, max_batch_size 4" in line for line in lines)
    # the parity table: 2 artefacts x 2 sizes, each with max |Δ| and PSNR, all ok
    rows = [line for line in lines if re.match(r"model\.(fp16\.)?onnx\s+onnxruntime-cpu", line)]
    assert len(rows) == 4 and all(line.rstrip().endswith("ok") for line in rows)
    assert {line.split()[2] for line in rows} == {"32x32", "48x80"}
    reason = skip_reason(probe_environment())
    if reason is not None:  # this machine cannot build engines: exactly one line says why and how
        skipped = [line for line in lines if line.startswith("TensorRT engine skipped: ")]
        assert skipped == [f"TensorRT engine skipped: {reason}. To build one, run `pip install 'engan[trt]'` on a "
                           "machine with a CUDA GPU and re-run `engan export --fp16 --engine` there (model.fp16.onnx "
                           "already runs on GPUs via ONNX Runtime)."]
        assert not list(out.glob("*.engine"))
    assert lines[-1].startswith("done        ")


def test_failing_parity_exits_1_names_the_artefact_and_keeps_files(monkeypatch, tmp_path, tiny_checkpoint):
    import numpy as np

    from engan.runtime.backends.ort import OrtBackend

    real_run = OrtBackend.run  # the parity check runs every .onnx through the runtime's backend

    def drifted_fp16(self, x):  # an FP16 graph that went wrong: ~26 dB
        y = real_run(self, x)
        if self.path.name == "model.fp16.onnx":
            y = y + np.random.default_rng(0).normal(0, 0.05, y.shape).astype(np.float32)
        return y

    monkeypatch.setattr(OrtBackend, "run", drifted_fp16)
    out = tmp_path / "bad"
    res = _run(["--checkpoint", str(tiny_checkpoint), "--fp16", "--out", str(out),
                "--check-size", "32x32", "--check-size", "32x48"])
    assert res.exit_code == 1
    rows = [line for line in res.output.splitlines() if line.startswith("model.")]
    assert [r.split()[0] for r in rows if r.rstrip().endswith("FAIL")] == ["model.fp16.onnx", "model.fp16.onnx"]
    assert [r.split()[0] for r in rows if r.rstrip().endswith("ok")] == ["model.onnx", "model.onnx"]
    err = " ".join(res.output.split("\nError: ", 1)[1].split())
    assert err.startswith("parity check failed: model.fp16.onnx reaches only 2")
    assert "(needs >= 35 dB" in err and "model.onnx reaches" not in err
    assert f"The files are kept in {out} for inspection." in err
    assert (out / "model.onnx").is_file() and (out / "model.fp16.onnx").is_file()


def test_default_out_is_exports_model_name(tmp_path, tiny_checkpoint, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = _run(["--checkpoint", str(tiny_checkpoint), "--no-check"])
    assert res.exit_code == 0, res.output
    name = tiny_checkpoint.resolve().parent.name
    assert (tmp_path / "exports" / name / "model.onnx").is_file()
    assert "parity      skipped (--no-check)" in res.output


@pytest.mark.skipif(
    __import__("importlib").util.find_spec("tensorrt") is not None, reason="TensorRT is installed here"
)
def test_engine_required_but_impossible_fails_nonzero(tmp_path, tiny_checkpoint):
    res = _run(["--checkpoint", str(tiny_checkpoint), "--fp16", "--engine", "--out", str(tmp_path / "e")])
    assert res.exit_code == 1
    assert "Error: --engine was given but no engine can be built here: TensorRT is not installed" in res.output
    assert "pip install 'engan[trt]'" in res.output
    assert not (tmp_path / "e" / "model.onnx").exists()  # refused before any work


@pytest.mark.parametrize(
    "args, message",
    [
        (["--engine"], "--engine builds an FP16 TensorRT engine: add --fp16"),
        (["--opt-shape", "400x600"], "--opt-shape 400x600: W=600 is not a positive multiple of 16; use 400x608"),
        (["--fp16", "--min-shape", "512x512", "--opt-shape", "400x608"],
         "profile H must satisfy min <= opt <= max, got 512 <= 400 <= 1088"),
        (["--calib", "."], "--calib is only used with --int8"),
        (["--check-size", "40x56"], "--check-size 40x56: H=40 and W=56 are not positive multiples of 16; use 48x64"),
    ],
)
def test_usage_errors_exit_2_with_the_fix(tiny_checkpoint, args, message):
    res = _run(["--checkpoint", str(tiny_checkpoint), *args])
    assert res.exit_code == 2
    assert message in " ".join(res.output.split())


def test_bad_checkpoint_names_the_file(tmp_path):
    res = _run(["--checkpoint", str(tmp_path), "--out", str(tmp_path / "o")])
    assert res.exit_code == 1
    assert f"Error: {tmp_path} is a folder without generator.safetensors" in res.output


def test_help_explains_every_option_with_defaults():
    res = _run(["--help"])
    assert res.exit_code == 0
    text = " ".join(res.output.split())
    for opt in ("--checkpoint", "--out", "--fp16", "--int8", "--calib", "--opset", "--min-shape", "--opt-shape",
                "--max-shape", "--max-batch", "--workspace", "--timing-cache", "--engine / --no-engine", "--triton",
                "--check / --no-check", "--check-image", "--check-size", "--exporter"):
        assert opt in text, opt
    for default in ("[default: 256x256]", "[default: 400x608]", "[default: 1088x1920]", "[default: 4;",
                    "[default: 17;", "[default: 4.0;", "[default: legacy]", "exports/<model-name>/"):
        assert default in text, default


# ---------------------------------------------------------------------------- TensorRT (GPU machines only)


def _trt_ready() -> str | None:
    from engan.export.tensorrt import probe_environment, skip_reason

    return skip_reason(probe_environment())


@pytest.mark.gpu
@pytest.mark.trt
def test_engine_build_sidecar_reuse_and_parity(tmp_path, tiny_checkpoint):
    reason = _trt_ready()
    if reason is not None:
        pytest.skip(f"needs TensorRT 10+ and a CUDA GPU: {reason}")
    from engan.export.api import ExportConfig, export_model
    from engan.export.profile import ShapeProfile
    from engan.runtime.engine_meta import check_compatible, read_sidecar

    cfg = ExportConfig(checkpoint=str(tiny_checkpoint), out=str(tmp_path), fp16=True, engine=True, triton=True,
                       profile=ShapeProfile((64, 64), (256, 256), (512, 640), 2),
                       timing_cache=str(tmp_path / "timing.cache"))
    r = export_model(cfg, log=lambda s: None)
    assert r.engine is not None and r.engine.is_file() and (tmp_path / "timing.cache").is_file()
    sc = read_sidecar(r.engine)
    check_compatible(sc, sc.gpu_name, sc.compute_capability, sc.trt_version, r.engine)
    assert (sc.profile_max, sc.max_batch, sc.precision) == ([512, 640], 2, "fp16")
    engine_rows = [row for row in r.parity.rows if row.backend == "tensorrt"]
    assert engine_rows and all(row.psnr_db >= 35.0 for row in engine_rows)
    assert (tmp_path / "triton/engan/1/model.plan").is_file()
    again = export_model(cfg, log=lambda s: None)  # same ONNX, same machine: the engine is reused
    assert "engine" in again.seconds and again.seconds["engine"] < r.seconds["engine"]
