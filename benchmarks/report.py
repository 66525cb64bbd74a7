"""Result files of a benchmark run: JSON rows, a Markdown table and a PNG bar chart (PIL only).

``write_results(rows, skipped, machine, settings_dict, out_dir, stem)`` writes
``<stem>.json`` (``{"machine": ..., "settings": ..., "rows": [...], "skipped": [...]}``),
``<stem>.md`` and ``<stem>.png`` atomically and returns the Markdown text, which the
pytest terminal summary prints.
"""
from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any, Sequence

from benchmarks.machine import describe_cpu
from engan.runtime.atomic import atomic_write_bytes, atomic_write_text

#: Columns of the main Markdown table: (header, row key, format).
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("preset", "preset", "{}"),
    ("HxW", "_size", "{}"),
    ("batch", "batch", "{}"),
    ("backend", "backend", "{}"),
    ("prec", "precision", "{}"),
    ("p50 ms", "p50_ms", "{:.1f}"),
    ("p90 ms", "p90_ms", "{:.1f}"),
    ("img/s", "throughput_ips", "{:.2f}"),
    ("peak MiB", "peak_mem_mb", "{:.0f}"),
    ("speedup", "speedup_vs_eager", "{:.2f}x"),
    ("CPU ms", "cpu_ms", "{:.0f}"),
    ("CPU-time speedup", "speedup_cpu_time", "{:.2f}x"),
    ("PSNR dB", "psnr_vs_eager_db", "{:.1f}"),
    ("max |Δ|", "max_abs_vs_eager", "{:.4f}"),
    ("GFLOP/s", "achieved_gflops", "{:.1f}"),
    ("% peak", "pct_of_peak", "{:.0f}%"),
)


def _cell(row: dict[str, Any], key: str, fmt: str) -> str:
    if key == "_size":
        return f"{row['height']}x{row['width']}"
    v = row.get(key)
    if v is None:
        return "-"
    if key in ("psnr_vs_eager_db", "psnr_vs_default_db") and v >= 999:
        return "identical"
    try:
        return fmt.format(v)
    except (ValueError, TypeError):
        return str(v)


def markdown_table(rows: Sequence[dict[str, Any]], columns=COLUMNS) -> str:
    """A GitHub Markdown table of ``rows``."""
    head = "| " + " | ".join(c[0] for c in columns) + " |"
    rule = "|" + "|".join("---" for _ in columns) + "|"
    body = ["| " + " | ".join(_cell(r, key, fmt) for _, key, fmt in columns) + " |" for r in rows]
    return "\n".join([head, rule, *body])


def markdown_report(rows: Sequence[dict[str, Any]], skipped: Sequence[dict[str, str]], machine: dict[str, Any],
                    settings: dict[str, Any], notes: Sequence[str] = ()) -> str:
    """The whole Markdown report: machine, the backend table, levers, end-to-end, skips."""
    peak = machine.get("peak_gflops", {})
    libs = ", ".join(f"{k} {v}" for k, v in machine.get("libraries", {}).items())
    gpu = machine.get("gpu")
    gpeak = machine.get("gpu_peak_gflops") or {}
    lines = [
        f"# engan benchmark ({settings.get('mode', '?')} mode)",
        "",
        f"- CPU: {describe_cpu(machine)}",
        f"- GPU: {gpu['name'] + ' (' + gpu['capability'] + ', ' + str(gpu['memory_gib']) + ' GiB)' if gpu else 'none'}",
        f"- measured peak: fp32 matmul {peak.get('fp32', '-')} GFLOP/s, fp32 3x3 conv {peak.get('fp32_conv', '-')} "
        f"GFLOP/s, bf16 matmul {peak.get('bf16', '-')} GFLOP/s ({peak.get('method', '')})",
        *([f"- measured GPU peak: fp32 matmul {gpeak.get('fp32', '-')} GFLOP/s, fp16 matmul "
           f"{gpeak.get('fp16', '-')} GFLOP/s ({gpeak.get('method', '')}); GPU rows' % peak divide by these"]
          if gpeak else []),
        f"- load average (1/5/15 min) at start {machine.get('load_average_start')}, "
        f"at end {machine.get('load_average_end')} (shared machine: compare rows of one size, they are interleaved)",
        f"- libraries: {libs}",
        f"- weights: {', '.join(sorted({r['weights'] for r in rows if r.get('weights')})) or '-'}",
        "- latency: p50/p90 of interleaved rounds after warm-up; speedup = reference p50 / row p50 "
        "(reference: eager FP32 on the same device, same rounds); CPU ms = process CPU time per call (all "
        "threads; robust to other jobs on a shared machine, so its speedup is the fairer one under load); "
        "PSNR/max |Δ| vs that reference on the timed outputs (and any inputs the rounds did not reach); "
        "GFLOP/s = model GFLOP / min(p50, CPU time / threads) (wall time on a quiet machine, CPU time when other "
        "jobs take the cores; the peak is measured the same way); % peak = that / measured fp32 (bf16 rows: bf16) "
        "matmul peak of the row's device (GPU rows: GPU peak, fp16 rows: fp16; '-' where it was not measured)",
        "",
    ]
    groups = [("Backends", "backends"), ("Levers (ONNX Runtime session options, batch)", "levers"),
              ("End-to-end (engan-infer on a folder vs model-only)", "e2e"),
              ("OpenVINO (one interleaved run with eager FP32 and ONNX Runtime)", "openvino"),
              ("Ray Data on one machine vs engan-infer (same folder)", "ray"),
              ("Video (enhance_video end to end vs model-only; flicker ratio, 1.0 = none added)", "video")]
    for title, group in groups:
        sel = [r for r in rows if r.get("group") == group]
        if not sel:
            continue
        lines += [f"## {title}", ""]
        if group == "e2e":
            lines.append(markdown_table(sel, E2E_COLUMNS))
        elif group == "video":
            lines.append(markdown_table(sel, VIDEO_COLUMNS))
        elif group == "levers":
            lines.append(markdown_table(sel, LEVER_COLUMNS))
        elif group == "openvino":
            lines.append(markdown_table(sel, COLUMNS + (("vs ORT INT8", "vs_ort_int8", "{:.2f}x"),)))
        elif group == "ray":
            lines.append(markdown_table(sel, RAY_COLUMNS))
        else:
            lines.append(markdown_table(sel))
        lines.append("")
    if skipped:
        lines += ["## Skipped", ""] + [f"- {s['what']}: {s['reason']}" for s in skipped] + [""]
    if notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    return "\n".join(lines)


LEVER_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("preset", "preset", "{}"),
    ("HxW", "_size", "{}"),
    ("batch", "batch", "{}"),
    ("model", "precision", "{}"),
    ("variant", "variant", "{}"),
    ("p50 ms", "p50_ms", "{:.1f}"),
    ("p90 ms", "p90_ms", "{:.1f}"),
    ("img/s", "throughput_ips", "{:.2f}"),
    ("vs runtime default", "speedup_vs_default", "{:.2f}x"),
    ("CPU ms", "cpu_ms", "{:.0f}"),
    ("CPU-time vs default", "cpu_speedup_vs_default", "{:.2f}x"),
    ("PSNR vs default", "psnr_vs_default_db", "{:.1f}"),
)

RAY_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("preset", "preset", "{}"),
    ("images", "images", "{}"),
    ("HxW", "_size", "{}"),
    ("model", "precision", "{}"),
    ("engan-infer s", "infer_s", "{:.2f}"),
    ("Ray s", "ray_s", "{:.2f}"),
    ("Ray actors", "actors", "{}"),
    ("Ray overhead", "overhead_pct", "{:.1f}%"),
    ("engan-infer img/s", "infer_ips", "{:.2f}"),
    ("Ray img/s", "ray_ips", "{:.2f}"),
)

E2E_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("preset", "preset", "{}"),
    ("images", "images", "{}"),
    ("HxW", "_size", "{}"),
    ("model", "precision", "{}"),
    ("workers", "workers", "{}"),
    ("model-only s", "model_only_s", "{:.2f}"),
    ("engan-infer s", "e2e_s", "{:.2f}"),
    ("overhead", "overhead_pct", "{:.1f}%"),
    ("CPU overhead", "cpu_overhead_pct", "{:.1f}%"),
    ("process wall s", "process_wall_s", "{:.2f}"),
)

VIDEO_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("model", "preset", "{}"),
    ("prec", "precision", "{}"),
    ("HxW", "_size", "{}"),
    ("frames", "frames", "{}"),
    ("model-only fps", "model_fps", "{:.2f}"),
    ("end-to-end fps", "e2e_fps", "{:.2f}"),
    ("e2e / model", "e2e_pct", "{:.0f}%"),
    ("CPU s/frame model", "model_cpu_s", "{:.3f}"),
    ("CPU s/frame e2e", "e2e_cpu_s", "{:.3f}"),
    ("flicker smoothed", "flicker_smoothed", "{:.3f}"),
    ("flicker per-frame", "flicker_per_frame", "{:.3f}"),
)


# --------------------------------------------------------------------------- chart
_PALETTE = {"fp32": (70, 110, 190), "int8": (220, 120, 40), "fp16": (60, 160, 90), "bf16": (150, 90, 170)}


def bar_chart_png(rows: Sequence[dict[str, Any]], title: str) -> bytes:
    """Horizontal bars of throughput (images/s) per backend, grouped by (preset, size); PNG bytes."""
    from PIL import Image, ImageDraw, ImageFont

    rows = [r for r in rows if r.get("group") == "backends" and r.get("throughput_ips")]
    font = ImageFont.load_default()
    bar_h, gap, left, right, top = 16, 4, 330, 140, 40
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["preset"], r["height"], r["width"], r["batch"]), []).append(r)
    height = top + sum(22 + len(g) * (bar_h + gap) + 8 for g in groups.values()) + 10
    width = left + 420 + right
    img = Image.new("RGB", (width, max(height, 80)), "white")
    draw = ImageDraw.Draw(img)
    draw.text((10, 10), title, fill="black", font=font)
    y = top
    for (preset, h, w, batch), sel in groups.items():
        draw.text((10, y), f"{preset}  {h}x{w} (HxW)  batch {batch}   images/s (speedup vs eager fp32)",
                  fill=(40, 40, 40), font=font)
        y += 22
        best = max(r["throughput_ips"] for r in sel) or 1.0
        for r in sel:
            length = int(400 * r["throughput_ips"] / best)
            color = _PALETTE.get(r["precision"], (120, 120, 120))
            draw.text((20, y + 2), f"{r['backend']} {r['precision']}"[:52], fill="black", font=font)
            draw.rectangle([left, y, left + max(length, 1), y + bar_h], fill=color)
            draw.text((left + length + 6, y + 2),
                      f"{r['throughput_ips']:.2f}  ({r['speedup_vs_eager']:.2f}x)", fill="black", font=font)
            y += bar_h + gap
        y += 8
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def write_results(rows: Sequence[dict[str, Any]], skipped: Sequence[dict[str, str]], machine: dict[str, Any],
                  settings: dict[str, Any], out_dir: Path, stem: str = "latest",
                  notes: Sequence[str] = ()) -> tuple[str, list[Path]]:
    """Write ``<stem>.json``, ``<stem>.md`` and ``<stem>.png`` in ``out_dir``; returns (markdown, paths)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    md = markdown_report(rows, skipped, machine, settings, notes)
    payload = {"machine": machine, "settings": settings, "rows": list(rows), "skipped": list(skipped),
               "notes": list(notes)}
    paths = [out_dir / f"{stem}.json", out_dir / f"{stem}.md", out_dir / f"{stem}.png"]
    atomic_write_text(paths[0], json.dumps(payload, indent=2, default=str) + "\n")
    atomic_write_text(paths[1], md + "\n")
    gpu = machine.get("gpu")
    title = f"engan {settings.get('mode', '')} benchmark - {describe_cpu(machine)}" + (f" - {gpu['name']}" if gpu else "")
    atomic_write_bytes(paths[2], bar_chart_png(rows, title))
    return md, paths
