"""Check that two ``engan-infer`` installs write byte-identical files (a refactor changed no pixel).

Runs a baseline ``engan-infer`` (e.g. another checkout's venv) and the candidate on the
same inputs with the same options, then compares every output file byte for byte:

    python scripts/check_identical.py --base /path/to/other/.venv/bin/engan-infer \\
        --folder ../shared/data/lol_eval15/low --odd /tmp/odd-images

``--odd`` names a folder of odd images to enhance too; it is generated there when empty
(grey, grey+alpha, RGBA, 16-bit grey/RGB/RGBA PNGs, 1x1, 17x33, a 2500x1800 photo that
gets tiled, palette with and without transparency, an EXIF-rotated JPEG, a CMYK JPEG,
BMP, TIFF, WebP and an animated GIF). Each folder runs with ``--backend auto`` and
``--backend ort`` (and ``--compare``), the odd folder also with ``--ext same``.
Exit code 0 when every file is identical and both runs exit alike, 1 otherwise.
"""
from __future__ import annotations

import argparse
import filecmp
import io
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def write_odd_images(folder: Path) -> None:
    """A folder of images that exercise every decode/encode path of engan-infer."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(22)

    def dark(h: int, w: int, c: int = 3) -> np.ndarray:
        yy, xx = np.mgrid[0:h, 0:w]
        base = (40 * (1 + np.sin(xx / 23.0) * np.cos(yy / 17.0)))[..., None]
        noise = rng.integers(0, 25, (h, w, c))
        return np.clip(base + noise, 0, 255).astype(np.uint8)

    rgb = dark(120, 160)
    Image.fromarray(rgb).convert("L").save(folder / "grey.png")
    Image.fromarray(rgb).convert("LA").save(folder / "grey_alpha.png")
    rgba = np.dstack([rgb, np.tile(np.linspace(0, 255, 160, dtype=np.uint8), (120, 1))])
    Image.fromarray(rgba, "RGBA").save(folder / "rgba.png")
    wide = (rgb.astype(np.uint16) * 257 + rng.integers(0, 257, rgb.shape)).astype(np.uint16)
    Image.fromarray(wide[..., 0]).save(folder / "grey16.png")
    _write_png16(folder / "rgb16.png", wide)
    _write_png16(folder / "rgba16.png", np.dstack([wide, np.full(wide.shape[:2], 40000, np.uint16)]))
    Image.fromarray(dark(1, 1)).save(folder / "tiny_1x1.png")
    Image.fromarray(dark(33, 17)).save(folder / "odd_17x33.png")
    Image.fromarray(dark(1800, 2500)).save(folder / "large_2500x1800.jpg", quality=92)
    Image.fromarray(rgb).quantize(64).save(folder / "palette.png")
    pal = Image.fromarray(rgb).quantize(64)
    pal.info["transparency"] = 0
    pal.save(folder / "palette_transparent.png", transparency=0)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when shown
    Image.fromarray(dark(90, 140)).save(folder / "exif_rotated.jpg", exif=exif.tobytes(), quality=90)
    Image.fromarray(rgb).convert("CMYK").save(folder / "cmyk.jpg", quality=90)
    Image.fromarray(rgb).save(folder / "bmp_plain.bmp")
    Image.fromarray(rgb).save(folder / "tiff_plain.tif")
    Image.fromarray(rgb).save(folder / "webp_plain.webp", quality=90)
    frames = [Image.fromarray(dark(64, 64)).convert("P") for _ in range(3)]
    frames[0].save(folder / "animated.gif", save_all=True, append_images=frames[1:], duration=100)


def _write_png16(path: Path, arr) -> None:
    from engan.runtime.imageio import write_png_array

    buf = io.BytesIO()
    write_png_array(buf, arr)
    path.write_bytes(buf.getvalue())


def run(exe: str, inputs: Path, out: Path, args: list[str]) -> tuple[int, str]:
    if out.exists():
        shutil.rmtree(out)
    res = subprocess.run([exe, str(inputs), str(out), "--quiet", *args], capture_output=True, text=True)
    return res.returncode, res.stderr


def compare_trees(a: Path, b: Path) -> tuple[int, int, list[str]]:
    """(files compared, identical, problems) between two output folders."""
    files_a = {p.relative_to(a) for p in a.rglob("*") if p.is_file()}
    files_b = {p.relative_to(b) for p in b.rglob("*") if p.is_file()}
    problems = [f"only in base: {p}" for p in sorted(files_a - files_b)]
    problems += [f"only in new: {p}" for p in sorted(files_b - files_a)]
    same = 0
    for rel in sorted(files_a & files_b):
        if filecmp.cmp(a / rel, b / rel, shallow=False):
            same += 1
        else:
            problems.append(f"differs: {rel}")
    return len(files_a | files_b), same, problems


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True, help="the baseline engan-infer executable")
    ap.add_argument("--new", default=str(Path(sys.executable).parent / "engan-infer"),
                    help="the candidate engan-infer (default: this interpreter's)")
    ap.add_argument("--folder", action="append", default=[], type=Path, help="a folder of photos (repeatable)")
    ap.add_argument("--odd", type=Path, help="folder of odd images (generated when missing or empty)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/engan-check-identical"), help="where outputs go")
    args = ap.parse_args()

    runs: list[tuple[str, Path, list[str]]] = []
    for folder in args.folder:
        for backend in ("auto", "ort"):
            runs.append((f"{folder.name} --backend {backend}", folder, ["--backend", backend, "--compare"]))
    if args.odd is not None:
        if not args.odd.is_dir() or not any(args.odd.iterdir()):
            write_odd_images(args.odd)
        for backend in ("auto", "ort"):
            runs.append((f"odd --backend {backend}", args.odd, ["--backend", backend, "--compare"]))
        runs.append(("odd --ext same", args.odd, ["--backend", "auto", "--ext", "same"]))

    total = identical = 0
    failed = False
    for i, (label, folder, opts) in enumerate(runs):
        code_a, err_a = run(args.base, folder, args.work / f"{i}-base", opts)
        code_b, err_b = run(args.new, folder, args.work / f"{i}-new", opts)
        n, same, problems = compare_trees(args.work / f"{i}-base", args.work / f"{i}-new")
        total, identical = total + n, identical + same
        if err_a != err_b:  # --quiet: only FAILED lines, which must match too
            problems.append(f"stderr differs: base {err_a.strip()[-300:]!r} new {err_b.strip()[-300:]!r}")
        status = "identical" if not problems and code_a == code_b else "DIFFERENT"
        failed |= status != "identical"
        print(f"{label:28s} exit {code_a}/{code_b}  {same}/{n} files identical  {status}")
        for p in problems[:10]:
            print(f"    {p}")
        if code_a != code_b:
            print(f"    base stderr: {err_a.strip()[-300:]}\n    new stderr: {err_b.strip()[-300:]}")
    print(f"total: {identical}/{total} files identical over {len(runs)} runs")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
