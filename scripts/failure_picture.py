"""Rebuild docs/failure_modes.jpg: the model card's failure-mode picture, from public-domain photos only.

    python scripts/failure_picture.py [--colour-run runs/lite_d/generator.safetensors]
    python scripts/failure_picture.py --run "gA (no identity term)=runs/gpu1/gA_avg5.safetensors" \
        --run "gB (identity term)=runs/gpu1/gB_avg5.safetensors" --photos rocket,astronaut,coffee --out docs/gpu_runs.jpg
    python scripts/failure_picture.py --noise 3 --run "...=m.safetensors" --out docs/denoise.jpg
    python scripts/failure_picture.py --fade --photos coffee --as-shot astronaut,coffee --out docs/fade_bright.jpg

Rows: scikit-image sample photos darkened as in `engan eval --public-dark`; columns: the dark
input, the shipped model, optionally a colour-term run and any other runs, and the original.
``--as-shot`` adds rows of photos fed as they are (well exposed), ``--fade`` a column of the shipped
model with ``engan-infer --fade-bright``.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from engan.config import DegradeConfig
from engan.data.degrade import degrade
from engan.eval.datasets import fit_longest_side
from engan.eval.enhancers import make_enhance_fn
from engan.runtime.prepost import to_uint8
from engan.eval.grid import compose_grid
from engan.eval.public_dark import darken, sample_photo
from engan.eval.runner import GridRow
from engan.runtime.prepost import FADE_RANGE

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--colour-run", default=None, help="a .safetensors trained with the colour term (optional column)")
    ap.add_argument("--run", action="append", default=[], metavar="LABEL=PATH",
                    help="another generator .safetensors as a column (repeatable)")
    ap.add_argument("--photos", default="coffee,chelsea,rocket",
                    help="comma list of scikit-image sample photos, one row each (default: coffee,chelsea,rocket)")
    ap.add_argument("--noise", type=int, default=None, metavar="SEED",
                    help="add sensor noise and JPEG to each darkened input (engan.data.degrade, no further darkening, "
                         "drawn with this seed), as real dark photos have")
    ap.add_argument("--as-shot", default="", metavar="PHOTOS",
                    help="comma list of sample photos added as rows fed as they are, not darkened (default: none)")
    ap.add_argument("--fade", action="store_true", help="add a column: the shipped model with --fade-bright")
    ap.add_argument("--out", default=str(REPO / "docs" / "failure_modes.jpg"))
    args = ap.parse_args()
    models = {"engan-lite (shipped)": make_enhance_fn(None).fn}  # the shipped FP32 ONNX, as engan eval scores it
    if args.fade:
        models["shipped, --fade-bright"] = make_enhance_fn(None, fade=FADE_RANGE).fn
    colour = [f"colour term (lite_d, not shipped)={args.colour_run}"] if args.colour_run else []
    for spec in colour + args.run:
        label, sep, path = spec.partition("=")
        if not sep or not label or not path:
            ap.error(f"--run {spec!r}: use LABEL=PATH, e.g. --run 'gB=runs/gpu1/gB_avg5.safetensors'")
        models[label] = make_enhance_fn(path).fn
    as_shot = [n for n in args.as_shot.split(",") if n]
    rows = []
    for name, darkened in [(n, True) for n in args.photos.split(",") if n] + [(n, False) for n in as_shot]:
        orig = sample_photo(name, max_side=400)
        shown = darken(orig) if darkened else orig
        if args.noise is not None and darkened:
            chw = np.ascontiguousarray(shown.transpose(2, 0, 1), dtype=np.float32) / 255.0
            noisy = degrade(chw, np.random.default_rng(args.noise), DegradeConfig(stops=(0.0, 0.0)))
            shown = to_uint8(noisy.transpose(1, 2, 0))
        if as_shot:  # mixed rows: one input column, the row name says which
            input_label, row_name = "Input", f"{name} ({'darkened' if darkened else 'as shot'})"
        else:
            input_label = "Input (darkened, noise added)" if args.noise is not None else "Input (darkened)"
            row_name = name
        row = GridRow(row_name, {input_label: fit_longest_side(shown, 240)})
        for label, fn in models.items():
            row.tiles[label] = fit_longest_side(fn(shown), 240)
        row.tiles["Original"] = fit_longest_side(orig, 240)
        rows.append(row)
    compose_grid(rows).convert("RGB").save(args.out, quality=85, optimize=True)
    print(f"wrote {args.out} ({Path(args.out).stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
