"""Head-to-head: ours against each peer, image by image, on the same set.

A set's mean hides how fragile it is: LIME has 9 photos, and one of them can move a mean NIQE by 0.4. For each
metric this counts the images where ours is better and gives the mean per-image difference (ours - peer) with its
standard error, so a reader can tell a real lead from one these images cannot resolve (|mean| < 2 s.e.).
"""
from __future__ import annotations

import math
from typing import Any

# metric -> True when higher is better
METRICS_PAIRED = {"psnr": True, "ssim": True}
METRICS_UNPAIRED = {"niqe": False, "brisque": False}
LABELS = {"psnr": "PSNR", "ssim": "SSIM", "niqe": "NIQE", "brisque": "BRISQUE"}
DIGITS = {"psnr": 2, "ssim": 3, "niqe": 2, "brisque": 2}
UNITS = {"psnr": " dB"}
#: the heading above the lines of :func:`head_to_head_lines` in tables and report.md
HEAD_TO_HEAD_NOTE = "Head to head, image by image (ours − peer, mean ± standard error):"


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def compare_methods(per_ours: list[dict[str, Any]], per_other: list[dict[str, Any]], metric: str,
                    higher_is_better: bool) -> dict[str, Any]:
    """Wins, ties and the mean difference (ours - other) +- its standard error over images both scored."""
    diffs = [a[metric] - b[metric] for a, b in zip(per_ours, per_other, strict=True)
             if _finite(a.get(metric)) and _finite(b.get(metric))]
    n = len(diffs)
    mean = sum(diffs) / n if n else None
    se = (math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1) / n) if n > 1 else None)
    sign = 1 if higher_is_better else -1
    return {"metric": metric, "higher_is_better": higher_is_better, "n": n,
            "wins": sum(1 for d in diffs if sign * d > 0), "ties": sum(1 for d in diffs if d == 0),
            "mean_diff": mean, "se": se}


def head_to_head(set_result: dict[str, Any], ours: list[str], others: list[str]) -> list[dict[str, Any]]:
    """Every (ours, other) pair on one set's per-image numbers, for the metrics of the set's kind."""
    metrics = METRICS_PAIRED if set_result["kind"] == "paired" else METRICS_UNPAIRED
    methods = set_result["methods"]
    out = []
    for a in ours:
        for b in others:
            if a not in methods or b not in methods:
                continue
            out.append({"ours": a, "other": b, "metrics": [
                compare_methods(methods[a]["per_image"], methods[b]["per_image"], k, hib) for k, hib in metrics.items()]})
    return out


def _metric_text(c: dict[str, Any]) -> str:
    name, d = LABELS[c["metric"]], DIGITS[c["metric"]]
    word = "higher" if c["higher_is_better"] else "lower"
    if not c["n"]:
        return f"{name}: no image scored by both"
    text = f"{name} {word} on {c['wins']} of {c['n']}"
    if c["se"] is not None:
        text += f" ({c['mean_diff']:+.{d}f}{UNITS.get(c['metric'], '')} ± {c['se']:.{d}f}"
        text += ", within 2 s.e.)" if abs(c["mean_diff"]) < 2 * c["se"] else ")"
    return text


def head_to_head_lines(set_result: dict[str, Any]) -> list[str]:
    """One line per (ours, other) pair, e.g. ``vs Zero-DCE: NIQE lower on 5 of 9 (+0.28 ± 0.60, within 2 s.e.)``."""
    rows = set_result.get("head_to_head") or []
    several = len({r["ours"] for r in rows}) > 1
    return [f"{r['ours'] + ' ' if several else ''}vs {r['other']}: " + "; ".join(_metric_text(c) for c in r["metrics"])
            for r in rows]
