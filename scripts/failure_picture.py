"""Rebuild docs/failure_modes.jpg: the model card's failure-mode picture, from public-domain photos only.

    python scripts/failure_picture.py [--colour-run runs/lite_d/generator.safetensors]
    python scripts/failure_picture.py --run "gA (no identity term)=runs/gpu1/gA_avg5.safetensors" \
        --run "gB (identity term)=runs/gpu1/gB_avg5.safetensors" --photos rocket,astronaut,coffee --out docs/gpu_runs.jpg
    python scripts/failure_picture.py --noise 3 --run "...=m.safetensors" --out docs/denoise.jpg
    python scripts/failure_picture.py --fade --photos coffee --as-shot astronaut,coffee --out docs/fade_bright.jpg
    python scripts/failure_picture.py --photos "" --scenes sunset,lamp --out docs/hue_shift.jpg
    python scripts/failure_picture.py --photos rocket,coffee --noise 3 --zoom 0.3,0.3 \
        --run "learned noise stage (tried, not shipped)=runs/K/generator_avg5.safetensors" --out docs/blocks_x4.jpg

Rows: scikit-image sample photos darkened as in `engan eval --public-dark`; columns: the dark
input, the shipped model, optionally a colour-term run and any other runs, and the original.
``--as-shot`` adds rows of photos fed as they are (well exposed), ``--fade`` a column of the shipped
model with ``engan-infer --fade-bright``, ``--scenes`` rows of drawn scenes with saturated light sources
(scikit-image has no sunset), and ``--zoom`` a x4 crop under each row, where noise and JPEG blocks show.
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
#: the drawn scenes of --scenes
SCENES = ("sunset", "lamp")
#: longest side (px) of every tile; a --zoom tile shows a TILE / 4 square of the full-size image
TILE = 240


def synthetic_scene(name: str, height: int = 266, width: int = 400) -> np.ndarray:
    """A drawn 8-bit RGB scene whose light source is saturated: ``sunset`` (a pink sky and sun over a dark
    shore) or ``lamp`` (an orange lampshade in a dim room). Deterministic."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    v, u = yy / height, xx / width
    grain = np.random.default_rng(0).normal(0.0, 4.0, (height, width, 1)).astype(np.float32)
    if name == "sunset":
        t = np.clip(v / 0.7, 0.0, 1.0)[..., None]  # 0 at the top of the sky, 1 at the horizon
        img = (1 - t) * np.array([70, 60, 140], np.float32) + t * np.array([250, 125, 170], np.float32)
        d = np.hypot(u - 0.6, (v - 0.55) * height / width)
        sun = np.clip((0.07 - d) / 0.01, 0.0, 1.0)[..., None]
        glow = np.exp(-(d / 0.12) ** 2)[..., None]
        img = img + glow * np.array([40, 20, 25], np.float32)
        img = (1 - sun) * img + sun * np.array([255, 150, 190], np.float32)
        shore = (v > 0.7 + 0.03 * np.sin(u * 9.0))[..., None]
        img = np.where(shore, np.array([35, 22, 35], np.float32) + grain, img)
    elif name == "lamp":
        wall = np.array([90, 80, 70], np.float32) * (1.0 - 0.5 * v)[..., None]
        d = np.hypot((u - 0.5) / 0.16, (v - 0.35) / 0.22)
        shade = np.clip((1.0 - d) / 0.05, 0.0, 1.0)[..., None]
        glow = np.exp(-(d / 2.0) ** 2)[..., None]
        img = wall + glow * np.array([90, 45, 10], np.float32) + grain
        img = (1 - shade) * img + shade * np.array([255, 140, 40], np.float32)
    else:
        raise ValueError(f"unknown scene {name!r}; choose one of: {', '.join(SCENES)}")
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


def zoom_x4(img: np.ndarray, centre: tuple[float, float]) -> np.ndarray:
    """The ``TILE / 4`` square of ``img`` around the relative ``centre`` (x, y), enlarged x4 by pixel
    repetition (no smoothing, so blocks and grain stay visible)."""
    side = TILE // 4
    h, w = img.shape[:2]
    x0 = int(np.clip(centre[0] * w - side / 2, 0, max(0, w - side)))
    y0 = int(np.clip(centre[1] * h - side / 2, 0, max(0, h - side)))
    crop = img[y0:y0 + side, x0:x0 + side]
    return np.repeat(np.repeat(crop, 4, axis=0), 4, axis=1)


def _centre(text: str) -> tuple[float, float]:
    try:
        x, y = (float(p) for p in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give X,Y as fractions of the width and height, e.g. 0.25,0.3")
    if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
        raise argparse.ArgumentTypeError(f"{text!r}: X and Y are fractions of the width and height, in [0, 1]")
    return x, y


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
    ap.add_argument("--scenes", default="", metavar="SCENES",
                    help=f"comma list of drawn scenes with saturated light sources, added as darkened rows "
                         f"({', '.join(SCENES)}; default: none)")
    ap.add_argument("--zoom", type=_centre, default=None, metavar="X,Y",
                    help="under each row, a row of x4 crops around this point (fractions of width and height)")
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
    scenes = [n for n in args.scenes.split(",") if n]
    for name in scenes:
        if name not in SCENES:
            ap.error(f"--scenes: unknown scene {name!r}; choose from {', '.join(SCENES)}")
    rows = []
    todo = [(n, True) for n in args.photos.split(",") if n] + [(n, True) for n in scenes]
    for name, darkened in todo + [(n, False) for n in as_shot]:
        orig = synthetic_scene(name) if name in SCENES else sample_photo(name, max_side=400)
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
        full = {input_label: shown, **{label: fn(shown) for label, fn in models.items()}, "Original": orig}
        rows.append(GridRow(row_name, {k: fit_longest_side(v, TILE) for k, v in full.items()}))
        if args.zoom is not None:
            rows.append(GridRow(f"{row_name}, x4 crop", {k: zoom_x4(v, args.zoom) for k, v in full.items()}))
    compose_grid(rows).convert("RGB").save(args.out, quality=85, optimize=True)
    print(f"wrote {args.out} ({Path(args.out).stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
