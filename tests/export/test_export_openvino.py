"""`engan export --openvino`: OpenVINO IR beside the ONNX, with engan metadata and its parity row;
the NNCF INT8 IR (engan.export.openvino.quantize_ir_int8)."""
from __future__ import annotations

import re
import sys

import pytest

pytest.importorskip("torch")
from click.testing import CliRunner  # noqa: E402

from engan.export.formats import BY_NAME, unmet  # noqa: E402
from engan.runtime._optional import is_installed  # noqa: E402

needs_openvino = pytest.mark.skipif(not is_installed("openvino"),
                                    reason="openvino not installed (pip install 'engan[openvino]')")


def test_the_row_needs_the_openvino_extra(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)
    assert unmet(BY_NAME["openvino"]) == "openvino not installed (pip install 'engan[openvino]')"


def test_missing_openvino_fails_before_any_work(monkeypatch, tmp_path, tiny_checkpoint) -> None:
    from engan.cli import main

    monkeypatch.setitem(sys.modules, "openvino", None)
    res = CliRunner().invoke(main, ["export", "--checkpoint", str(tiny_checkpoint), "--openvino",
                                    "--out", str(tmp_path / "x")])
    assert res.exit_code == 1
    assert "--openvino cannot be written here: openvino not installed (pip install 'engan[openvino]')" in res.output
    assert not (tmp_path / "x").exists()


@needs_openvino
def test_export_openvino_writes_ir_with_metadata_and_checks_it(tmp_path, tiny_checkpoint) -> None:
    import openvino as ov

    from engan.cli import main
    from engan.export.onnx import read_metadata
    from engan.runtime.backends.openvino import OpenVINOBackend, ir_metadata

    out = tmp_path / "x"
    res = CliRunner().invoke(main, ["export", "--checkpoint", str(tiny_checkpoint), "--openvino", "--out", str(out),
                                    "--check-size", "32x32", "--check-size", "48x80"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.iterdir()) == ["model.bin", "model.onnx", "model.xml"]  # no temp left
    lines = res.output.splitlines()
    assert any(line.startswith(f"openvino    {out / 'model.xml'} + model.bin") for line in lines)
    rows = [line for line in lines if re.match(r"model\.xml\s+openvino-cpu", line)]
    assert len(rows) == 2 and all(line.rstrip().endswith("ok") for line in rows), res.output
    onnx_meta = read_metadata(out / "model.onnx")
    ir = ir_metadata(ov.Core().read_model(str(out / "model.xml")))
    assert ir["engan.precision"] == "fp32" and ir["engan.checkpoint_sha256"] == onnx_meta.checkpoint_sha256
    assert ir["engan.model_name"] == onnx_meta.model_name and ir["engan.input_name"] == "input"
    with OpenVINOBackend(out / "model.xml", threads=1) as be:
        assert be.engan_model and be.meta.preset == "tiny"


#: Runs the NNCF pass in a child process: NNCF leaves telemetry and progress threads behind, and with it loaded
#: an in-process SIGHUP test later in the suite (test_hardening_cli) died with SIGSEGV inside raise().
NNCF_SCRIPT = r"""
import json, sys
import numpy as np
from engan.export.onnx import read_metadata
from engan.export.openvino import quantize_ir_int8
from engan.runtime.backends.openvino import OpenVINOBackend
from engan.runtime.parity import compare

src, target = sys.argv[1], sys.argv[2]
out = quantize_ir_int8(src, target, read_metadata(src), num_images=2, size=(32, 32))
x = np.random.default_rng(0).random((1, 3, 32, 48), dtype=np.float32) * 0.3
with OpenVINOBackend(out, threads=1, precision="fp32") as q, OpenVINOBackend(src, threads=1, precision="fp32") as f:
    print(json.dumps({"meta": q.meta.precision, "info": q.info.precision, "quantizer": q.meta.extra["quantizer"],
                      "psnr": compare(f.run(x), q.run(x)).psnr_db, "bin": out.with_suffix(".bin").is_file()}))
"""


@needs_openvino
@pytest.mark.skipif(not is_installed("nncf"), reason="nncf not installed (pip install nncf)")
def test_nncf_int8_ir(tmp_path, tiny_onnx) -> None:
    import json
    import subprocess

    target = tmp_path / "model.int8.xml"
    res = subprocess.run([sys.executable, "-c", NNCF_SCRIPT, str(tiny_onnx), str(target)], capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert target.is_file() and got["bin"]
    assert got["meta"] == got["info"] == "int8" and "nncf" in got["quantizer"]
    assert got["psnr"] >= 20  # random tiny weights: a smoke floor, not parity


@needs_openvino
@pytest.mark.skipif(not is_installed("nncf"), reason="nncf not installed (pip install nncf)")
def test_export_openvino_int8_writes_the_int8_ir_and_checks_it(tmp_path, tiny_checkpoint) -> None:
    """`engan export --openvino --int8` (in a child process, for NNCF's threads; see NNCF_SCRIPT)."""
    import subprocess

    import numpy as np
    from PIL import Image

    calib = tmp_path / "calib"
    calib.mkdir()
    for i in range(3):
        Image.fromarray((np.random.default_rng(i).random((40, 56, 3)) * 60).astype(np.uint8)).save(calib / f"{i}.png")
    out = tmp_path / "x"
    res = subprocess.run([sys.executable, "-c", "from engan.cli import main; main()", "export", "--checkpoint", str(tiny_checkpoint),
                          "--openvino", "--int8", "--calib", str(calib), "--calib-images", "3", "--out", str(out),
                          "--check-size", "32x32"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == ["model.bin", "model.int8.bin", "model.int8.onnx",
                                                     "model.int8.xml", "model.onnx", "model.xml"]
    assert any(line.startswith(f"openvino    {out / 'model.int8.xml'} (INT8 IR, NNCF, calibrated on {calib})")
               for line in res.stdout.splitlines())
    row = next(line for line in res.stdout.splitlines() if re.match(r"model\.int8\.xml\s+openvino-cpu", line))
    assert row.split()[-2] == "30.0" and row.rstrip().endswith("ok")  # checked against its INT8 threshold
