"""Run the evaluation: every method (input-as-output, ours, peers) over every set.

Quick scoring of one checkpoint (what training uses between snapshots)::

    from engan.eval.runner import evaluate_paired, make_enhance_fn
    scores = evaluate_paired(make_enhance_fn("runs/x").fn, "../shared/data/lol_eval15")
    scores["psnr"], scores["ssim"]      # means over the pairs; scores["per_image"] has each

The full comparison (what ``engan eval`` runs) is :func:`run_eval` with an
:class:`EvalConfig`; it returns the report dictionary that :mod:`engan.eval.report`
writes as ``report.json`` / ``report.md`` / grid PNGs.
"""
from __future__ import annotations

import datetime as _dt
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from engan.eval import metrics
from engan.eval.compare import head_to_head
from engan.eval.datasets import DatasetError, fit_longest_side, folder_images, list_pairs, load_rgb
from engan.eval.enhancers import EnhanceFn, Method, ModelLoadError, identity_fn, make_enhance_fn  # noqa: F401

#: Label of the input-as-output baseline row.
INPUT_LABEL = "Input (no enhancement)"

#: Longest side of a grid tile, in pixels.
TILE_SIDE = 256


@dataclass(frozen=True)
class EvalConfig:
    """Everything ``engan eval`` needs; the CLI fills it from its options.

    Attributes:
        model: ``.safetensors``/run folder/``.onnx``/shipped name; ``"none"`` scores only the
            baselines and peers; ``None`` = the shipped model.
        backend: ``auto`` | ``ort`` | ``torch`` (see :func:`make_enhance_fn`).
        lol: paired set folder (``low/`` + ``high/``), or ``None`` to skip.
        paired: more paired set folders, scored after ``lol`` (e.g. the ``--public-dark`` set).
        unpaired: unpaired image folders.
        peers: peer names (``zero-dce``, ``zero-dce++``, ``pairlie``, ``pairlie-lol``).
        peers_dir: folder holding ``zero_dce/Epoch99.pth``, ``zero_dce_pp/Epoch99.pth`` and ``pairlie/PairLIE.pth``.
        zero_dce_pp_scale: Zero-DCE++ curve-estimation downscale factor (1 = full resolution).
        out: output folder for report.md, report.json and the grids.
        max_images: evaluate at most this many images per set (``None`` = all).
        grid: write a comparison grid PNG per set.
        grid_rows: images (rows) per grid.
        fade: ``(lo, hi)``: score the model with ``engan-infer --fade-bright``'s fade (None: as it is).
    """

    model: str | None = None
    backend: str = "auto"
    lol: Path | None = None
    paired: tuple[Path, ...] = ()
    unpaired: tuple[Path, ...] = ()
    peers: tuple[str, ...] = ("zero-dce", "zero-dce++")
    peers_dir: Path | None = None
    zero_dce_pp_scale: float = 1.0
    out: Path = Path("eval_out")
    max_images: int | None = None
    grid: bool = True
    grid_rows: int = 4
    fade: tuple[float, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: (str(v) if isinstance(v, Path) else [str(x) if isinstance(x, Path) else x for x in v]
                    if isinstance(v, tuple) else v) for k, v in d.items()}


@dataclass
class GridRow:
    """Downscaled tiles of one image for the comparison grid: input, each method, ground truth."""

    name: str
    tiles: dict[str, np.ndarray] = field(default_factory=dict)


def _tile(img: np.ndarray, side: int = TILE_SIDE) -> np.ndarray:
    return fit_longest_side(img, side)


def _grid_indices(n: int, rows: int) -> set[int]:
    if rows <= 0 or n == 0:
        return set()
    return {int(round(i)) for i in np.linspace(0, n - 1, min(rows, n))}


def _timed(fn: EnhanceFn, img: np.ndarray) -> tuple[np.ndarray, float]:
    t0 = time.perf_counter()
    out = fn(img)
    dt = time.perf_counter() - t0
    out = np.asarray(out)
    if out.shape != img.shape or out.dtype != np.uint8:
        raise ValueError(f"enhance function returned {out.dtype} {out.shape} for a uint8 {img.shape} input; it must return the same shape as uint8")
    return out, dt


def _summarise(per_image: list[dict[str, Any]], keys: tuple[str, ...]) -> dict[str, float]:
    """Means over images; the time mean skips the first image (it pays for warm-up) when there are others."""
    out = {k: metrics.finite_mean([r.get(k) for r in per_image]) for k in keys}
    if "time_s" in keys and len(per_image) > 1:
        out["time_s"] = metrics.finite_mean([r.get("time_s") for r in per_image[1:]])
    return out


def _progress(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="img", disable=not enabled, leave=False, dynamic_ncols=True)


def run_paired_set(
    methods: list[Method],
    folder: str | os.PathLike,
    max_images: int | None = None,
    grid_rows: int = 0,
    progress: bool = True,
) -> tuple[dict[str, Any], list[GridRow]]:
    """PSNR / SSIM / brightness / clipped % / time of every method on a ``low/`` + ``high/`` set.

    Returns:
        ``(result, grid_rows)``: ``result["methods"][label]`` has ``mean`` and ``per_image``.
    """
    pairs = list_pairs(folder)[: max_images or None]
    keys = ("psnr", "ssim", "brightness", "clipped", "time_s")
    per: dict[str, list[dict[str, Any]]] = {m.label: [] for m in methods}
    rows: list[GridRow] = []
    pick = _grid_indices(len(pairs), grid_rows)
    gt_brightness, gt_clipped = [], []
    with _progress(len(pairs), f"{Path(folder).name} (paired)", progress) as bar:
        for i, pair in enumerate(pairs):
            low, high = load_rgb(pair.low), load_rgb(pair.high)
            if low.shape != high.shape:
                raise DatasetError(f"{pair.low} is {low.shape[1]}x{low.shape[0]} but {pair.high} is {high.shape[1]}x{high.shape[0]}; pairs must match in size")
            gt_brightness.append(metrics.brightness(high))
            gt_clipped.append(metrics.clipped(high, low))
            row = GridRow(pair.name, {"Input": _tile(low)}) if i in pick else None
            for m in methods:
                out, dt = _timed(m.fn, low)
                per[m.label].append({
                    "image": pair.low.name, "psnr": metrics.psnr_8bit(high, out), "ssim": metrics.ssim(high, out),
                    "brightness": metrics.brightness(out), "clipped": metrics.clipped(out, low),
                    "time_s": dt if m.kind != "identity" else None,
                })
                if row is not None and m.kind != "identity":
                    row.tiles[m.label] = _tile(out)
            if row is not None:
                row.tiles["Ground truth"] = _tile(high)
                rows.append(row)
            bar.update(1)
    result = {
        "name": Path(folder).name, "kind": "paired", "path": str(folder), "n_images": len(pairs),
        "reference_brightness": metrics.finite_mean(gt_brightness),
        "reference_clipped": metrics.finite_mean(gt_clipped),
        "methods": {label: {"mean": _summarise(p, keys), "per_image": p} for label, p in per.items()},
    }
    return result, rows


def _safe(metric: Callable[[np.ndarray], float], img: np.ndarray) -> float | None:
    try:
        return metric(img)
    except ValueError:  # image too small for the metric
        return None


def run_unpaired_set(
    methods: list[Method],
    folder: str | os.PathLike,
    max_images: int | None = None,
    grid_rows: int = 0,
    progress: bool = True,
) -> tuple[dict[str, Any], list[GridRow]]:
    """NIQE / BRISQUE / brightness / clipped % / time of every method on a folder of images."""
    from engan.eval.brisque import brisque
    from engan.eval.niqe import niqe

    files = folder_images(folder)[: max_images or None]
    if not files:
        raise DatasetError(f"{folder} holds no images")
    keys = ("niqe", "brisque", "brightness", "clipped", "time_s")
    per: dict[str, list[dict[str, Any]]] = {m.label: [] for m in methods}
    rows: list[GridRow] = []
    pick = _grid_indices(len(files), grid_rows)
    with _progress(len(files), f"{Path(folder).name} (unpaired)", progress) as bar:
        for i, f in enumerate(files):
            img = load_rgb(f)
            row = GridRow(f.stem, {"Input": _tile(img)}) if i in pick else None
            for m in methods:
                out, dt = _timed(m.fn, img)
                per[m.label].append({
                    "image": f.name, "niqe": _safe(niqe, out), "brisque": _safe(brisque, out),
                    "brightness": metrics.brightness(out), "clipped": metrics.clipped(out, img),
                    "time_s": dt if m.kind != "identity" else None,
                })
                if row is not None and m.kind != "identity":
                    row.tiles[m.label] = _tile(out)
            if row is not None:
                rows.append(row)
            bar.update(1)
    result = {
        "name": Path(folder).name, "kind": "unpaired", "path": str(folder), "n_images": len(files),
        "methods": {label: {"mean": _summarise(p, keys), "per_image": p} for label, p in per.items()},
    }
    return result, rows


def evaluate_paired(
    enhance_fn: EnhanceFn,
    lol_dir: str | os.PathLike,
    max_images: int | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Score one enhance function on a paired set: the fast path for training snapshots.

    Args:
        enhance_fn: uint8 HxWx3 RGB -> uint8 HxWx3 RGB (e.g. ``make_enhance_fn(path).fn``).
        lol_dir: folder with ``low/`` and ``high/`` (matching names).
        max_images: first N pairs only.

    Returns:
        ``{"psnr", "ssim", "brightness", "clipped", "time_s", "n_images", "per_image": [...]}`` (means
        over the pairs; PSNR of identical images is capped at 100 dB).
    """
    res, _ = run_paired_set([Method("model", enhance_fn, "ours")], lol_dir, max_images, 0, progress)
    m = res["methods"]["model"]
    return {**m["mean"], "n_images": res["n_images"], "per_image": m["per_image"]}


def evaluate_unpaired(
    enhance_fn: EnhanceFn,
    folder: str | os.PathLike,
    max_images: int | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Score one enhance function on an unpaired folder.

    Returns:
        ``{"niqe", "brisque", "brightness", "clipped", "time_s", "n_images", "per_image"}``.
    """
    res, _ = run_unpaired_set([Method("model", enhance_fn, "ours")], folder, max_images, 0, progress)
    m = res["methods"]["model"]
    return {**m["mean"], "n_images": res["n_images"], "per_image": m["per_image"]}


def build_methods(cfg: EvalConfig) -> tuple[list[Method], list[str]]:
    """The rows to evaluate (input, ours, peers) and notes about what was left out."""
    from engan.eval.datasets import default_peers_dir

    notes: list[str] = []
    methods = [Method(INPUT_LABEL, identity_fn, "identity", {"note": "the low-light input itself, unchanged"})]
    if cfg.model is None or str(cfg.model).lower() != "none":
        methods.append(make_enhance_fn(cfg.model, cfg.backend, cfg.fade))
    if cfg.peers:
        from engan.eval.peers import PEERS, load_peer, peer_enhance_fn
        from engan.runtime.meta import file_sha256

        peers_dir = Path(cfg.peers_dir) if cfg.peers_dir else default_peers_dir()
        for name in cfg.peers:
            spec = PEERS[name]
            try:
                net = load_peer(name, peers_dir, scale_factor=cfg.zero_dce_pp_scale)
            except FileNotFoundError as e:
                notes.append(f"{spec.label} left out: {e}")
                continue
            label = spec.label
            info: dict[str, Any] = {
                "weights": str(peers_dir / spec.weights), "sha256": file_sha256(peers_dir / spec.weights),
                "params": sum(p.numel() for p in net.parameters()), "backend": "torch (eager, fp32)",
            }
            if name.startswith("pairlie"):
                info["exponent"] = net.exponent
            if name == "zero-dce++":
                info["scale_factor"] = cfg.zero_dce_pp_scale
                if cfg.zero_dce_pp_scale != 1:
                    label = f"{spec.label} (curves at 1/{cfg.zero_dce_pp_scale:g})"
            methods.append(Method(label, peer_enhance_fn(net), "peer", info))
    return methods, notes


def environment_info() -> dict[str, Any]:
    """Machine and library versions for report.json."""
    import importlib.metadata as md

    from engan.eval.enhancers import physical_cores

    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    libs = {}
    for dist in ("engan", "numpy", "scipy", "scikit-image", "torch", "onnxruntime", "pillow", "brisque", "libsvm-official", "scikit-video"):
        try:
            libs[dist] = md.version(dist)
        except md.PackageNotFoundError:
            libs[dist] = None
    return {
        "python": sys.version.split()[0], "platform": platform.platform(), "cpu": cpu,
        "logical_cpus": os.cpu_count(), "physical_cores": physical_cores(), "libraries": libs,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def run_eval(
    cfg: EvalConfig,
    progress: bool = True,
    on_set: Callable[[dict[str, Any], dict[str, list[GridRow]]], None] | None = None,
) -> tuple[dict[str, Any], dict[str, list[GridRow]]]:
    """Evaluate every method on every configured set.

    Args:
        cfg: what to evaluate.
        progress: show a tqdm bar per set.
        on_set: called with the report so far after each set (the CLI writes the files
            then, so a long run leaves finished sets on disk).

    Returns:
        ``(report, grids)``: the JSON-ready report dict and, per set name, the grid rows.

    Raises:
        DatasetError: no set to evaluate, or a set folder is malformed.
        ModelLoadError: the model to score cannot be loaded.
    """
    paired = ([cfg.lol] if cfg.lol is not None else []) + list(cfg.paired)
    if not paired and not cfg.unpaired:
        raise DatasetError("nothing to evaluate: no paired set (--lol, --paired, --public-dark) and no unpaired folder "
                           "(--unpaired) was given or found")
    methods, notes = build_methods(cfg)
    rows = cfg.grid_rows if cfg.grid else 0
    sets: list[dict[str, Any]] = []
    grids: dict[str, list[GridRow]] = {}
    t0 = time.perf_counter()
    report: dict[str, Any] = {
        "config": cfg.to_dict(),
        "methods": [{"label": m.label, "kind": m.kind, **m.info} for m in methods],
        "notes": notes,
        "sets": sets,
        "environment": environment_info(),
        "wall_s": 0.0,
    }
    jobs = [(run_paired_set, f) for f in paired] + [(run_unpaired_set, f) for f in cfg.unpaired]
    for run_set, folder in jobs:
        res, g = run_set(methods, folder, cfg.max_images, rows, progress)
        res["head_to_head"] = head_to_head(res, [m.label for m in methods if m.kind == "ours"],
                                           [m.label for m in methods if m.kind == "peer"])
        base, k = res["name"], 2
        while res["name"] in grids:  # two folders with the same name: keep both
            res["name"], k = f"{base}-{k}", k + 1
        sets.append(res)
        grids[res["name"]] = g
        report["wall_s"] = round(time.perf_counter() - t0, 2)
        if on_set is not None:
            on_set(report, grids)
    return report, grids
