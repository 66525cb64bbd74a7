"""A run's checkpoints: the crash-safe full state and the generator files export and inference read.

``state/`` (:mod:`engan.train.state`) holds everything a resume needs; ``generator.safetensors``
(EMA weights when EMA is on), ``generator_raw.safetensors`` and ``snapshots/`` are rewritten at
every save, and rewritten from the state after a resume when a killed save left them behind.
"""
from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from engan.config import ExperimentConfig
from engan.models.checkpoint import GENERATOR_FILE, SNAPSHOT_DIR, read_metadata, save_generator, snapshot_name
from engan.train.distributed import DistInfo, barrier, broadcast_buffers
from engan.train.nets import Nets
from engan.train.state import flatten_module, flatten_optimizer, load_latest, save_state, unflatten, unflatten_optimizer

log = logging.getLogger("engan.train")

RAW_GENERATOR_FILE = "generator_raw.safetensors"


class RunDirError(RuntimeError):
    """The run folder cannot be used as asked (exists without --resume, or config mismatch)."""


def architecture_of(cfg: ExperimentConfig) -> dict[str, Any]:
    """The options a resumed run may not change (they define the saved tensors)."""
    return {"model": asdict(cfg.model), "discriminator": asdict(cfg.discriminator),
            "loss.sfp.feature_net": cfg.loss.option("sfp", "feature_net", "efficientnet-lite0")}


def remove_stale_temp_files(run_dir: Path) -> list[Path]:
    """Delete the temp files an interrupted atomic write left (``.<name>.<pid>.<random>.tmp``)."""
    removed = []
    for folder in (run_dir, run_dir / SNAPSHOT_DIR):
        if folder.is_dir():
            for p in folder.glob(".generator*.safetensors.*.tmp"):
                p.unlink(missing_ok=True)
                removed.append(p)
    return removed


class Checkpointer:
    """Save and restore one run's networks in ``out``."""

    def __init__(self, out: Path, nets: Nets, dist: DistInfo) -> None:
        self.out, self.nets, self.dist = out, nets, dist

    def collect_state(self, cfg: ExperimentConfig) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        nets = self.nets
        tensors: dict[str, torch.Tensor] = {}
        for prefix, module in nets.modules:
            tensors.update(flatten_module(prefix, module))
        meta: dict[str, Any] = {"config": cfg.to_dict(), "world_size": self.dist.world,
                                "schedule": {"kind": "constant-then-linear", "decay_start": cfg.train.decay_start,
                                             "total": cfg.train.steps}}
        for name, opt in nets.optimizers:
            t, m = flatten_optimizer(name, opt)
            tensors.update(t)
            meta[name] = m
        if nets.ema is not None:
            tensors.update(flatten_module("G_ema", nets.ema.module))
            meta["ema"] = {"decay": nets.ema.decay, "updates": nets.ema.updates}
        meta["scaler"] = nets.scaler.state_dict() if nets.amp else None
        return tensors, meta

    def save(self, step: int, cfg: ExperimentConfig, raise_errors: bool = False) -> bool:
        """Write a checkpoint of ``step`` (rank 0); returns False when the write failed.

        A failed write (disk full, ...) keeps the previous checkpoint intact, logs one
        warning and lets training go on (the next save retries); with ``raise_errors``
        the OSError is raised instead.
        """
        nets = self.nets
        broadcast_buffers(nets.G, self.dist)
        if nets.ema is not None:
            broadcast_buffers(nets.ema.module, self.dist)
        ok = True
        if self.dist.is_main:
            try:
                tensors, meta = self.collect_state(cfg)
                save_state(self.out, step, tensors, meta)
                self.save_generators(step)  # if this fails, --resume rewrites them from the state
            except OSError as e:
                ok = False
                log.warning("checkpoint at step %d failed (%s); the previous checkpoint is kept", step, e)
                if raise_errors:
                    raise
        barrier(self.dist)
        return ok

    def save_generators(self, step: int) -> None:
        nets, snaps = self.nets, self.out / SNAPSHOT_DIR
        raw_meta = {"step": step, "weights": "raw"}
        save_generator(snaps / snapshot_name(step, raw=True), nets.G, extra=raw_meta)
        if nets.ema is not None:
            ema_meta = {"step": step, "weights": "ema", "ema_decay": nets.ema.decay}
            save_generator(snaps / snapshot_name(step), nets.ema.module, extra=ema_meta)
            save_generator(self.out / RAW_GENERATOR_FILE, nets.G, extra=raw_meta)
            save_generator(self.out / GENERATOR_FILE, nets.ema.module, extra=ema_meta)
        else:
            save_generator(snaps / snapshot_name(step), nets.G, extra=raw_meta)
            save_generator(self.out / RAW_GENERATOR_FILE, nets.G, extra=raw_meta)
            save_generator(self.out / GENERATOR_FILE, nets.G, extra=raw_meta)

    def catch_up_generator_files(self, step: int) -> None:
        """After a resume: rewrite the generator files if a failed/killed save left them behind the state."""
        if not self.dist.is_main:
            return
        try:
            saved_step = read_metadata(self.out / GENERATOR_FILE).get("engan.step")
        except Exception:  # missing or torn file
            saved_step = None
        if saved_step != str(step):
            self.save_generators(step)

    def load(self, cfg: ExperimentConfig) -> int:
        """Restore the newest complete state; returns its step.

        Raises:
            RunDirError: the state was trained with other architecture options.
        """
        nets = self.nets
        st = load_latest(self.out)
        saved = ExperimentConfig.from_dict(st.meta["config"])
        if architecture_of(saved) != architecture_of(cfg):
            raise RunDirError(f"--resume: the checkpoint in {st.folder} was trained with other architecture "
                              "options; drop them or start a new --out")
        for prefix, module in nets.modules:
            module.load_state_dict(unflatten(prefix, st.tensors), strict=True)
        for name, opt in nets.optimizers:
            opt.load_state_dict(unflatten_optimizer(name, st.tensors, st.meta[name]))
        if nets.ema is not None:
            if "ema" in st.meta:
                nets.ema.module.load_state_dict(unflatten("G_ema", st.tensors), strict=True)
                nets.ema.updates = int(st.meta["ema"]["updates"])
            else:  # EMA switched on at resume: start it from the current weights
                nets.ema.module.load_state_dict(nets.G.state_dict())
        if nets.amp and st.meta.get("scaler"):
            nets.scaler.load_state_dict(st.meta["scaler"])
        if self.dist.is_main:
            log.info("resumed from %s (step %d)", st.folder, st.step)
        return st.step
