"""Ray Data on one machine vs plain ``engan-infer`` on the same folder of 600x400 photos (engan[ray]).

Both run the INT8 model (the runtime's CPU default). ``engan-infer`` runs as
:func:`engan.runtime.cli.pipeline.run` (one process, decode/encode threads around one model call at a
time on every core); Ray as :func:`engan.runtime.ray.run_ray` on a local Ray in two shapes:
one actor with engan-infer's threads (the same compute: the difference is Ray's machinery),
and Ray's usual shape, one single-threaded actor per CPU. Every time includes loading the
model (each Ray actor loads its own); Ray's start-up (``ray.init``) is measured on its own
(``ray_init_s``), since a cluster is started once for many jobs. ``overhead_pct`` = Ray's
time over ``engan-infer``'s, in %. Outputs must agree with ``engan-infer``'s within one 8-bit
level (thread counts differ).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from benchmarks.session import BenchSession, settings_of
from benchmarks.test_bench_e2e import PHOTO_HW, photo_files
from engan.runtime._optional import is_installed


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "ray_preset" in metafunc.fixturenames:
        metafunc.parametrize("ray_preset", settings_of(metafunc.config).presets)


def test_ray_vs_engan_infer(bench: BenchSession, ray_preset: str, tmp_path: Path) -> None:
    if bench.settings.quick:  # tests/runtime/test_ray.py checks the outputs; this is a timing
        reason = "Ray runs in full mode only (its start-up, ~10 s here, dwarfs a --quick folder); run without --quick"
        bench.record_skip("Ray Data", reason)
        pytest.skip(reason)
    if not (is_installed("ray") and is_installed("pyarrow")):
        bench.record_skip("Ray Data", "ray[data] not installed (pip install 'engan[ray]')")
        pytest.skip("ray[data] not installed (pip install 'engan[ray]')")
    import ray
    from PIL import Image

    from engan.runtime.cli.jobs import InferOptions
    from engan.runtime.cli.pipeline import run
    from engan.runtime.backends.base import usable_cpus
    from engan.runtime.ray import run_ray

    st, model = bench.settings, bench.model(ray_preset)
    onnx = model.onnx_int8 or model.onnx_fp32
    count = 15  # the LOL eval15 photos when the shared data is there
    files, source = photo_files(tmp_path / "in", count)

    def opts(out: str, **kw) -> InferOptions:
        return InferOptions(inputs=tuple(map(str, files)), output_dir=tmp_path / out, model=str(onnx), backend="ort",
                            device="cpu", quiet=True, existing="overwrite", **kw)

    t = time.perf_counter()
    ray.init(num_cpus=usable_cpus(), include_dashboard=False, log_to_driver=False)
    init_s = time.perf_counter() - t
    cpus = int(ray.cluster_resources().get("CPU", 1))
    # (label, actors, threads per actor): the same compute as engan-infer, then Ray's default here
    configs = [("same compute", 1, st.threads), ("1 actor per CPU", cpus, 1)]
    times: dict[str, list[float]] = {"infer": [], **{c[0]: [] for c in configs}}
    try:
        for rep in range(2):  # alternate the order between repetitions
            order = ["infer", *[c[0] for c in configs]]
            for what in (order if rep % 2 == 0 else order[::-1]):
                t = time.perf_counter()
                if what == "infer":
                    result = run(opts("plain", threads=st.threads))
                else:
                    _, actors, threads = next(c for c in configs if c[0] == what)
                    result = run_ray(opts(f"ray-{actors}", threads=threads), concurrency=actors, shutdown=False)
                times[what].append(time.perf_counter() - t)
                assert result.exit_code == 0, f"{what}: {result.summary}"
    finally:
        ray.shutdown()
    infer_s = float(np.median(times["infer"]))
    for label, actors, threads in configs:
        worst = max(int(np.abs(np.asarray(Image.open(tmp_path / f"ray-{actors}" / f"{f.stem}.png"), np.int16)
                               - np.asarray(Image.open(tmp_path / "plain" / f"{f.stem}.png"), np.int16)).max())
                    for f in files)
        assert worst <= 1, f"Ray outputs differ from engan-infer's by {worst} levels"
        ray_s = float(np.median(times[label]))
        bench.record({
            "group": "ray", "key": f"ray-{ray_preset}-{actors}x{threads}",
            "backend": f"Ray Data (local, {label}) vs engan-infer", "precision": "int8" if model.onnx_int8 else "fp32",
            "device": "cpu", "preset": model.preset, "height": PHOTO_HW[0], "width": PHOTO_HW[1], "batch": 1,
            "images": count, "inputs": source, "infer_s": round(infer_s, 2), "ray_s": round(ray_s, 2),
            "ray_init_s": round(init_s, 2), "actors": f"{actors} x {threads} thread(s)", "infer_threads": st.threads,
            "overhead_pct": round(100 * (ray_s - infer_s) / infer_s, 1), "infer_ips": round(count / infer_s, 2),
            "ray_ips": round(count / ray_s, 2), "max_abs_uint8_vs_engan_infer": worst, "weights": model.weights_source,
            "note": f"ray.init took {init_s:.1f} s (not counted); medians of {len(times['infer'])} alternating runs; "
                    f"engan-infer {st.threads} threads, workers 2",
        })
