"""Print each model's exposure response on a folder of dark photos (engan.eval.response), no reference needed.

    python scripts/exposure_response.py runs/a/generator.safetensors runs/b/generator.safetensors \
        [--low ../shared/data/train/low] [--count 38] [--side 256]

A ratio of about 2 means a 2-stop darker input gives a clearly darker output (exposure order kept);
near 1 means every input is lifted to the same brightness, the failure seen in docs/experiments.md's seed study
(a screen for that collapse, not a quality score).
Reads the training set's own low-light folder by default, so no evaluation image is used.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from engan.eval.enhancers import ModelLoadError, make_enhance_fn
from engan.eval.response import DEFAULT_FACTORS, exposure_response, load_photos

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="*", default=["shipped"],
                    help=".safetensors / .onnx files or run folders (default: the shipped model)")
    ap.add_argument("--low", default=str(REPO.parent / "shared" / "data" / "train" / "low"),
                    help="folder of dark photos (default: ../shared/data/train/low, the training set's)")
    ap.add_argument("--count", type=int, default=38, help="photos taken evenly from --low (default: 38)")
    ap.add_argument("--side", type=int, default=256, help="longest side each photo is fitted to (default: 256)")
    args = ap.parse_args()
    if not Path(args.low).is_dir():
        ap.error(f"--low {args.low}: no such folder (give a folder of dark photos)")
    photos = load_photos(args.low, args.count, args.side)
    head = " ".join(f"out(÷{t:g})" for t in DEFAULT_FACTORS)
    print(f"{len(photos)} photos from {args.low}, longest side {args.side}")
    print(f"{'model':<40} {head}  ratio")
    for m in args.models:
        try:
            fn = make_enhance_fn(m).fn
        except ModelLoadError as e:
            ap.error(f"{m}: {e}")
        r = exposure_response(fn, photos)
        print(f"{m[-40:]:<40} " + " ".join(f"{v:8.1f}" for v in r.output_luma) + f"  {r.ratio:5.2f}", flush=True)
    print("input luma: " + " ".join(f"{v:.1f}" for v in r.input_luma))


if __name__ == "__main__":
    main()
