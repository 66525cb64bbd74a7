"""End-to-end: ``engan-infer`` on a folder of 600x400 photos vs the model-only time for them.

For the FP32 model and its INT8 copy (what ``engan-infer`` runs on a CPU), two
measurements, interleaved with the model-only time:

* the CLI's pipeline (:func:`engan.runtime.cli.pipeline.run`, what the console script runs) with an
  already loaded and warmed Enhancer, so the difference to model-only is exactly the
  decoding, padding, cropping, uint8 conversion and PNG encoding the CLI adds
  (``overhead_pct``; goal <= 15 %), at ``--workers 0`` (no overlap) and ``--workers 2``;
  ``cpu_overhead_pct`` is the same in process CPU time (robust to other jobs on the machine);
* the ``engan-infer`` console script as a user runs it (``process_wall_s``: interpreter
  start, imports and model loading included), skipped with the reason when the script is
  not installed.

The outputs must equal the model-only outputs rounded to uint8 (max |Δ| <= 1 level).
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from benchmarks.images import lol_dir
from benchmarks.measure import percentile
from benchmarks.models import BenchModel
from benchmarks.session import BenchSession, settings_of
from engan.data.images import training_images as list_images
from engan.export.calibration import generated_dark_image

#: LOL photos are 600x400 (WxH); generated stand-ins have the same size.
PHOTO_HW = (400, 600)
WORKERS = (0, 2)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "e2e_preset" in metafunc.fixturenames:
        metafunc.parametrize("e2e_preset", settings_of(metafunc.config).presets)


def photo_files(tmp: Path, count: int) -> tuple[list[Path], str]:
    """``count`` 600x400 photos: the LOL eval15 low images, or generated PNGs written to ``tmp``."""
    folder = lol_dir()
    if folder is not None:
        files = list_images(folder)[:count]
        if len(files) == count:
            return files, f"LOL eval15 low ({folder})"
    from PIL import Image

    from engan.runtime import prepost

    tmp.mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(count):
        path = tmp / f"photo{i:02d}.png"
        Image.fromarray(prepost.to_uint8(generated_dark_image(*PHOTO_HW, seed=i))).save(path)
        files.append(path)
    return files, "generated 600x400 PNGs"


def test_e2e_folder_overhead(bench: BenchSession, e2e_preset: str, tmp_path: Path) -> None:
    st = bench.settings
    count = 4 if st.quick else 15
    model = bench.model(e2e_preset)
    files, source = photo_files(tmp_path / "in", count)
    _measure_e2e(bench, model, "fp32", model.onnx_fp32, files, source, tmp_path / "fp32")
    if model.onnx_int8 is not None:  # what engan-infer runs on a CPU when the INT8 copy ships
        _measure_e2e(bench, model, "int8", model.onnx_int8, files, source, tmp_path / "int8")
    else:
        bench.record_skip("e2e INT8", model.int8_error or "no INT8 model")


def _measure_e2e(bench: BenchSession, model: BenchModel, precision: str, onnx_path: Path, files: list[Path],
                 source: str, tmp_path: Path) -> None:
    """Model-only vs the CLI pipeline at each of :data:`WORKERS`, interleaved; records one row per workers."""
    from PIL import Image

    from engan.runtime import prepost
    from engan.runtime.cli.jobs import InferOptions
    from engan.runtime.cli.pipeline import run
    from engan.runtime.enhancer import Enhancer

    st = bench.settings
    count, reps = len(files), (2 if st.quick else 3)
    enhancer = Enhancer.load(str(onnx_path), backend="ort", device="cpu", threads=st.threads)
    enhancer.warmup((400, 608))
    images = [np.asarray(Image.open(f).convert("RGB")) for f in files]
    padded = [prepost.pad_to_multiple(prepost.hwc_to_nchw(prepost.to_float(im))) for im in images]

    def model_only() -> tuple[float, float, list[np.ndarray]]:
        outs, total, cpu = [], 0.0, 0.0
        for x, pads in padded:
            c, t = time.process_time(), time.perf_counter()
            y = enhancer.backend.run(x)
            total += time.perf_counter() - t
            cpu += time.process_time() - c
            outs.append(prepost.to_uint8(prepost.nchw_to_hwc(prepost.crop_padding(y, pads))[0]))
        return total, cpu, outs

    def pipeline(workers: int) -> tuple[float, float]:
        out = tmp_path / f"out-w{workers}"
        opts = InferOptions(inputs=tuple(str(f) for f in files), output_dir=out, model=str(onnx_path),
                            backend="ort", device="cpu", existing="overwrite", workers=workers, quiet=True,
                            threads=st.threads)
        c = time.process_time()
        result = run(opts, enhancer=enhancer)
        cpu = time.process_time() - c
        assert result.exit_code == 0, f"engan-infer pipeline failed: {result.summary}"
        return result.seconds, cpu

    times: dict[str, list[float]] = {"model": [], **{f"w{w}": [] for w in WORKERS}}
    cpu: dict[str, list[float]] = {k: [] for k in times}
    reference: list[np.ndarray] = []
    for _ in range(reps):
        dt, dc, reference = model_only()
        times["model"].append(dt)
        cpu["model"].append(dc)
        for w in WORKERS:
            dt, dc = pipeline(w)
            times[f"w{w}"].append(dt)
            cpu[f"w{w}"].append(dc)
    enhancer.close()

    wall, wall_note = _console_script(files, onnx_path, tmp_path / "out-cli", st.threads)
    model_s, model_cpu = percentile(times["model"], 50), percentile(cpu["model"], 50)
    for w in WORKERS:
        outs = sorted((tmp_path / f"out-w{w}").glob("*.png"))
        assert len(outs) == count, f"expected {count} outputs in {tmp_path / f'out-w{w}'}, found {len(outs)}"
        worst = max(int(np.abs(np.asarray(Image.open(tmp_path / f"out-w{w}" / (f.stem + ".png")).convert("RGB"),
                                          dtype=np.int16) - ref.astype(np.int16)).max())
                    for f, ref in zip(files, reference))
        assert worst <= 1, f"engan-infer output differs from the model-only output by {worst} levels (> 1)"
        e2e_s, e2e_cpu = percentile(times[f"w{w}"], 50), percentile(cpu[f"w{w}"], 50)
        bench.record({
            "group": "e2e", "key": f"e2e-{precision}-w{w}", "backend": "engan-infer pipeline (onnxruntime CPU)",
            "precision": precision, "device": "cpu", "preset": model.preset, "height": PHOTO_HW[0],
            "width": PHOTO_HW[1], "batch": 1, "images": count, "workers": w, "reps": reps,
            "model_only_s": round(model_s, 3), "e2e_s": round(e2e_s, 3),
            "overhead_pct": round(100 * (e2e_s - model_s) / model_s, 1),
            "model_only_cpu_s": round(model_cpu, 3), "e2e_cpu_s": round(e2e_cpu, 3),
            "cpu_overhead_pct": round(100 * (e2e_cpu - model_cpu) / model_cpu, 1),
            "process_wall_s": wall if w == WORKERS[-1] else None, "inputs": source,
            "max_abs_uint8_vs_model_only": worst, "weights": model.weights_source,
            "note": wall_note if w == WORKERS[-1] else "",
        })
    if wall is None:
        bench.record_skip("engan-infer console script", wall_note)


def _console_script(files: list[Path], model: Path, out: Path, threads: int) -> tuple[float | None, str]:
    """Wall seconds of the ``engan-infer`` console script on ``files`` (None + reason when absent)."""
    # the script next to this interpreter (a venv run without activating it), else on PATH
    exe = shutil.which("engan-infer", path=str(Path(sys.executable).parent)) or shutil.which("engan-infer")
    if exe is None:
        return None, "engan-infer console script not installed (pip install -e . puts it on PATH)"
    cmd = [exe, *map(str, files), str(out), "--model", str(model), "--backend", "ort", "--device", "cpu",
           "--threads", str(threads), "--workers", "2", "--quiet", "--overwrite"]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        pytest.fail(f"engan-infer exited {proc.returncode}: {(proc.stderr or proc.stdout).strip()[-500:]}")
    return round(wall, 2), "process wall: interpreter start, imports, model load and the run"
