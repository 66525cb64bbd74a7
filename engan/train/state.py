"""Full training state on disk: safetensors + JSON (no pickle), crash-safe.

Layout under ``RUN_DIR/state/``::

    step000200/tensors.safetensors   every tensor (models, EMA, optimizer moments)
    step000200/state.json            everything else; written last = "complete" marker
    LATEST                           name of the newest complete folder (atomic replace)

A new checkpoint is written into a hidden ``.partial-*`` folder, fsynced, renamed
to ``stepNNNNNN`` and only then published by atomically replacing ``LATEST``. A
kill at any moment therefore leaves ``LATEST`` pointing at a complete folder; a
failed write (disk full, ...) removes the partial folder and keeps the previous
checkpoint. The newest ``keep`` folders are kept (2 by default).
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from engan.runtime.atomic import atomic_write_text

log = logging.getLogger("engan.train")

STATE_DIR = "state"
LATEST = "LATEST"
TENSORS_FILE = "tensors.safetensors"
META_FILE = "state.json"
_STEP_RE = re.compile(r"^step(\d{6,})$")


class StateError(RuntimeError):
    """No usable training state; the message names the folder and what to do."""


@dataclass
class TrainingState:
    """A loaded checkpoint: ``tensors`` by flat name and the JSON ``meta`` (has ``step``)."""

    step: int
    tensors: dict[str, torch.Tensor]
    meta: dict[str, Any]
    folder: Path


# ---------------------------------------------------------------- flattening helpers
def flatten_module(prefix: str, module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{k}": v.detach().cpu().contiguous() for k, v in module.state_dict().items()}


def unflatten(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    p = prefix + "."
    return {k[len(p):]: v for k, v in tensors.items() if k.startswith(p)}


def flatten_optimizer(prefix: str, opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer state dict into tensors (safetensors) and JSON (param groups, scalars)."""
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, st in sd["state"].items():
        for name, v in st.items():
            if torch.is_tensor(v):
                tensors[f"{prefix}.state.{idx}.{name}"] = v.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(idx), {})[name] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def unflatten_optimizer(prefix: str, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    p = prefix + ".state."
    for k, v in tensors.items():
        if k.startswith(p):
            idx, name = k[len(p):].split(".", 1)
            state.setdefault(int(idx), {})[name] = v
    for idx, sc in meta.get("scalars", {}).items():
        state.setdefault(int(idx), {}).update(sc)
    return {"state": state, "param_groups": meta["param_groups"]}


# ---------------------------------------------------------------- writing
def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_file(path: Path, data: bytes) -> None:
    """Write and fsync one file (a seam tests use to simulate a full disk)."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def step_dir_name(step: int) -> str:
    return f"step{step:06d}"


def save_state(
    run_dir: str | os.PathLike,
    step: int,
    tensors: dict[str, torch.Tensor],
    meta: dict[str, Any],
    keep: int = 2,
) -> Path:
    """Write one complete checkpoint and publish it; the previous one survives any failure.

    Raises:
        OSError: the write failed; the partial folder is removed and ``LATEST`` unchanged.
    """
    from safetensors.torch import save

    root = Path(run_dir) / STATE_DIR
    root.mkdir(parents=True, exist_ok=True)
    name = step_dir_name(step)
    final = root / name
    tmp = root / f".partial-{name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        _write_file(tmp / TENSORS_FILE, save(tensors, metadata={"format": "pt", "engan.kind": "training-state"}))
        _write_file(tmp / META_FILE, json.dumps({**meta, "step": step}, indent=1, sort_keys=True).encode())
        _fsync_dir(tmp)
        if final.exists():  # a re-save of the same step (e.g. after resume): replace it
            old = root / f".old-{name}-{os.getpid()}"
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
        _fsync_dir(root)
        atomic_write_text(root / LATEST, name + "\n")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    prune(root, keep=keep, protect=name)
    return final


def prune(root: Path, keep: int, protect: str) -> None:
    """Remove all but the newest ``keep`` complete step folders (never ``protect``), and stale partials."""
    steps = sorted((p for p in root.iterdir() if p.is_dir() and _STEP_RE.match(p.name)), key=lambda p: p.name)
    for p in steps[:-keep] if keep > 0 else []:
        if p.name != protect:
            shutil.rmtree(p, ignore_errors=True)
    for p in root.glob(".partial-*"):
        shutil.rmtree(p, ignore_errors=True)


# ---------------------------------------------------------------- reading
def _load_folder(folder: Path) -> TrainingState:
    from safetensors.torch import load_file

    meta = json.loads((folder / META_FILE).read_text())
    tensors = load_file(str(folder / TENSORS_FILE))
    return TrainingState(step=int(meta["step"]), tensors=tensors, meta=meta, folder=folder)


def has_state(run_dir: str | os.PathLike) -> bool:
    root = Path(run_dir) / STATE_DIR
    return root.is_dir() and any(_STEP_RE.match(p.name) for p in root.iterdir())


def load_latest(run_dir: str | os.PathLike) -> TrainingState:
    """Load the newest complete checkpoint (``LATEST``; falls back to older complete folders).

    Raises:
        StateError: there is no complete checkpoint in ``RUN_DIR/state``.
    """
    root = Path(run_dir) / STATE_DIR
    if not root.is_dir():
        raise StateError(f"nothing to resume in {run_dir}: no {STATE_DIR}/ folder; drop --resume to start a new run")
    candidates: list[Path] = []
    latest = root / LATEST
    if latest.is_file():
        candidates.append(root / latest.read_text().strip())
    candidates += sorted((p for p in root.iterdir() if p.is_dir() and _STEP_RE.match(p.name)),
                         key=lambda p: p.name, reverse=True)
    errors = []
    seen = set()
    for folder in candidates:
        if folder in seen:
            continue
        seen.add(folder)
        try:
            return _load_folder(folder)
        except Exception as e:  # incomplete or corrupt: try the previous one
            errors.append(f"{folder.name}: {type(e).__name__}: {e}")
            log.warning("checkpoint %s is unusable (%s); trying an older one", folder, e)
    raise StateError(
        f"no complete checkpoint in {root}"
        + (f" ({'; '.join(errors)})" if errors else "")
        + "; drop --resume to start a new run in another --out folder"
    )
