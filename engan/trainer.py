"""EnlightenGAN training loop (knows no CLI): ``Trainer(config, out_dir).fit()``.

One iteration, as the authors' ``optimize_parameters`` (spec section 3):

1. one forward of G on the (possibly darkened) low-light input (with the identity or highlight
   term on, on the low-light and the normal-light crops together);
2. G step on ``L_G = L_G^glob + L_G^loc + w (L_SFP^glob + L_SFP^loc) [+ w_col L_col + w_exp L_exp
   + w_idt L_idt + w_hl L_hl]`` (``L_col``, ``L_exp``, ``L_idt``, ``L_hl``: the optional colour,
   exposure, identity and highlight terms, off by default; the discriminators are frozen for
   this backward, which only skips work: the authors compute and then zero those gradients);
3. D_A and D_P step on the *pre-step* fake (detached); one D update per G update,
   no image pool.

Everything random in a step is a pure function of ``(seed, step, rank)``, so a
resumed run repeats an uninterrupted one exactly (same seed, same device).

Run folder (see the contract in the README):
``generator.safetensors`` (EMA weights when EMA is on), ``generator_raw.safetensors``,
``snapshots/generator_step{N:06d}.safetensors`` (+ ``generator_raw_step{N:06d}``),
``state/`` (crash-safe full state, :mod:`engan.train_state`), ``config.json``,
``metrics.jsonl``, ``samples/step{N:06d}.png``.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from engan.config import ExperimentConfig
from engan.data import Batch, DataError, ImageBank, Prefetcher, UnpairedBatches, list_images, load_folder
from engan.distributed import DistInfo, barrier, broadcast_buffers, init_distributed, shutdown
from engan.ema import ModelEMA
from engan.losses import (
    SFPLoss, build_feature_net, color_angle_loss, crop_patches, exposure_loss, exposure_order_loss, highlight_loss, identity_loss,
    lsgan_d_loss, lsgan_g_loss, mean_luma_of_images, patch_offsets, ragan_d_loss, ragan_g_loss, to_disc_range,
)
from engan.models import PatchDiscriminator, count_parameters, create_generator
from engan.models.checkpoint import (
    GENERATOR_FILE, SNAPSHOT_DIR, CheckpointError, load_generator, read_metadata, save_generator, snapshot_name,
)
from engan.runtime.atomic import atomic_write_text
from engan.sampling import sample_inputs, write_sample_grid
from engan.schedule import lr_at
from engan.train_state import (
    flatten_module, flatten_optimizer, has_state, load_latest, save_state, unflatten, unflatten_optimizer,
)

log = logging.getLogger("engan.train")

RAW_GENERATOR_FILE = "generator_raw.safetensors"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
LOSS_KEYS = ("g_total", "g_global", "g_local", "sfp_global", "sfp_local", "color", "exposure", "order", "identity",
             "highlight", "d_global", "d_local")


class RunDirError(RuntimeError):
    """The run folder cannot be used as asked (exists without --resume, or config mismatch)."""


class TrainingDiverged(RuntimeError):
    """A loss became NaN/inf."""


#: generator fields that decide the tensors' shapes and meaning: --pretrained weights must agree on them
PRETRAINED_MUST_MATCH = ("base_width", "head", "curve_iters", "align_corners")


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a GPU is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was given but torch sees no CUDA GPU; use --device cpu or auto")
    return dev


def architecture_of(cfg: ExperimentConfig) -> dict[str, Any]:
    """The options a resumed run may not change (they define the saved tensors)."""
    return {"model": asdict(cfg.model), "discriminator": asdict(cfg.discriminator),
            "loss.feature_net": cfg.loss.feature_net}


def remove_stale_temp_files(run_dir: Path) -> list[Path]:
    """Delete the temp files an interrupted atomic write left (``.<name>.<pid>.<random>.tmp``)."""
    removed = []
    for folder in (run_dir, run_dir / SNAPSHOT_DIR):
        if folder.is_dir():
            for p in folder.glob(".generator*.safetensors.*.tmp"):
                p.unlink(missing_ok=True)
                removed.append(p)
    return removed


def _set_requires_grad(modules: list[nn.Module], flag: bool) -> None:
    for m in modules:
        for p in m.parameters():
            p.requires_grad_(flag)


class Trainer:
    """Train an EnlightenGAN generator on unpaired folders.

    Args:
        config: the whole experiment (data folders, model, losses, schedule).
        out_dir: run folder; must be new or empty unless ``resume``.
        resume: continue from the newest complete checkpoint in ``out_dir``.
        progress: show a tqdm bar (rank 0 only).
        load_data: read the folders now (False for callers that feed :meth:`step` themselves).

    Raises:
        DataError: a data folder is missing, empty or unusable (before any model is built).
        RunDirError: ``out_dir`` exists without ``resume``, or ``resume`` with other architecture options.
        engan.models.checkpoint.CheckpointError: ``train.pretrained`` is unreadable or another generator.
        engan.losses.FeatureNetError: the SFP feature network cannot be built.
    """

    def __init__(
        self,
        config: ExperimentConfig,
        out_dir: str | os.PathLike,
        resume: bool = False,
        progress: bool = True,
        load_data: bool = True,
    ) -> None:
        self.cfg = config
        self.out = Path(out_dir)
        self.progress = progress
        tc, dc = config.train, config.data
        self.device = resolve_device(tc.device)
        self.dist: DistInfo = init_distributed(self.device)
        if self.dist.enabled and self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)
        if tc.threads > 0 and self.device.type == "cpu":
            torch.set_num_threads(tc.threads)
        try:
            self._setup(resume, load_data)
        except BaseException:
            shutdown(self.dist)  # do not leave a DDP process group behind on a setup error
            raise

    def _setup(self, resume: bool, load_data: bool) -> None:
        config, tc, dc = self.cfg, self.cfg.train, self.cfg.data
        self._check_run_dir(resume)

        # data first: a wrong folder fails in seconds, before models are built
        if dc.crop % 16:
            raise DataError(f"--crop {dc.crop} is not a multiple of 16 (the generator needs that); try {dc.crop - dc.crop % 16 or 16}")
        if dc.crop < config.discriminator.patch_size:
            raise DataError(f"--crop {dc.crop} is smaller than the {config.discriminator.patch_size}px local patches")
        self.data: UnpairedBatches | None = None
        if load_data:
            for folder in (dc.low_dir, dc.normal_dir):
                list_images(folder)
            low = load_folder(dc.low_dir, min_size=dc.crop)
            normal = load_folder(dc.normal_dir, min_size=dc.crop)
            self.data = UnpairedBatches(low, normal, dc.crop, tc.batch, tc.seed,
                                        dc.darken_prob, dc.darken_min, dc.darken_max, dc.noise_prob)
            self.sample_x = sample_inputs(low, count=4, size=min(dc.crop, 256))
            self._resolve_exposure_level(normal)
        elif config.loss.exposure_weight > 0 and config.loss.exposure_level is None:
            raise DataError("the exposure term needs a level: set LossConfig.exposure_level when the data "
                            "folders are not loaded (--exposure-level on the command line)")

        # models (same seed on every rank -> same init; DDP broadcasts rank 0's anyway)
        torch.manual_seed(tc.seed)
        dcfg = config.discriminator
        self.G = create_generator(config.model.generator)
        if tc.pretrained and not (resume and has_state(self.out)):
            self._load_pretrained(Path(tc.pretrained))
        self.G.to(self.device)
        self.D_A = PatchDiscriminator(3, dcfg.ndf, dcfg.global_layers).to(self.device)
        self.D_P = PatchDiscriminator(3, dcfg.ndf, dcfg.local_layers).to(self.device)
        self.sfp = SFPLoss(build_feature_net(config.loss)).to(self.device)
        self.memory_format = torch.channels_last if tc.channels_last else torch.contiguous_format
        for m in (self.G, self.D_A, self.D_P, self.sfp):
            m.to(memory_format=self.memory_format)
        self.G.train()
        betas = (tc.beta1, tc.beta2)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=tc.lr, betas=betas)
        self.opt_da = torch.optim.Adam(self.D_A.parameters(), lr=tc.lr, betas=betas)
        self.opt_dp = torch.optim.Adam(self.D_P.parameters(), lr=tc.lr, betas=betas)
        self.ema = ModelEMA(self.G, tc.ema_decay) if tc.ema_decay > 0 else None
        self.amp = bool(tc.amp and self.device.type == "cuda")
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.step_no = 0
        self.last_saved = -1
        if resume and has_state(self.out):
            self._load_state()
            self._catch_up_generator_files()
        elif resume:
            raise RunDirError(f"nothing to resume in {self.out}: no checkpoint under {self.out}/state; drop --resume")

        # DDP wrappers (the raw modules stay reachable as self.G / self.D_A / self.D_P)
        self.G_run, self.DA_run, self.DP_run = self.G, self.D_A, self.D_P
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.G_run = DDP(self.G, device_ids=ids)
            self.DA_run = DDP(self.D_A, device_ids=ids)
            self.DP_run = DDP(self.D_P, device_ids=ids)
        self._tb = None

    def _load_pretrained(self, path: Path) -> None:
        """Start the generator from ``path``'s weights (a fine-tune); it must be the generator this run builds."""
        source = load_generator(path)
        diff = [f"{f} {getattr(source.config, f)} in the file, {getattr(self.G.config, f)} in this run"
                for f in PRETRAINED_MUST_MATCH if getattr(source.config, f) != getattr(self.G.config, f)]
        if diff:
            raise CheckpointError(
                f"--pretrained {path} holds another generator than this run builds ({'; '.join(diff)}); "
                "leave out --preset/--head/--curve-iters to take the file's, or pass a matching generator"
            )
        self.G.load_state_dict(source.state_dict())
        log.info("generator initialised from %s", path)

    def _resolve_exposure_level(self, normal: ImageBank) -> None:
        """With the exposure term on and no level given, use the normal-light set's mean luma (saved in config.json)."""
        lc = self.cfg.loss
        if lc.exposure_weight > 0 and lc.exposure_level is None:
            level = round(mean_luma_of_images(normal.images), 4)
            self.cfg = dataclasses.replace(self.cfg, loss=dataclasses.replace(lc, exposure_level=level))
            log.info("exposure level %.4f: the mean luma of %d images in %s", level, len(normal), normal.root)

    # ------------------------------------------------------------------ run folder
    @property
    def is_main(self) -> bool:
        return self.dist.is_main

    def _check_run_dir(self, resume: bool) -> None:
        exists = self.out.is_dir() and any(self.out.iterdir())
        if self.out.exists() and not self.out.is_dir():
            raise RunDirError(f"--out {self.out} is a file; pass a folder")
        if exists and not resume:
            raise RunDirError(
                f"run folder {self.out} already exists and is not empty; pass --resume to continue it, "
                "or choose another --out"
            )
        if resume and self.is_main:
            remove_stale_temp_files(self.out)
        if resume and (self.out / CONFIG_FILE).is_file():
            saved = ExperimentConfig.from_dict(json.loads((self.out / CONFIG_FILE).read_text()))
            a, b = architecture_of(saved), architecture_of(self.cfg)
            if a != b:
                diff = [k for k in a if a[k] != b[k]]
                raise RunDirError(
                    f"--resume: {self.out} was trained with other architecture options ({', '.join(diff)}: "
                    f"saved {[a[k] for k in diff]}, given {[b[k] for k in diff]}); drop those options or start "
                    "a new --out"
                )
        barrier(self.dist)

    # ------------------------------------------------------------------ one step
    def _to_device(self, a: np.ndarray | torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(a).to(self.device, non_blocking=True)
        return t.contiguous(memory_format=self.memory_format)

    def _autocast(self):
        if self.amp:
            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    def step(self, batch: Batch) -> dict[str, float]:
        """Run one training iteration on ``batch`` (its ``step`` picks the LR and the patches).

        Returns:
            Loss values (``g_total``, ``g_global``, ``g_local``, ``sfp_global``, ``sfp_local``,
            ``color``, ``exposure``, ``identity`` and ``highlight`` (0 when off), ``d_global``, ``d_local``) and ``lr``.
        """
        tc, dcfg = self.cfg.train, self.cfg.discriminator
        step = int(batch.step)
        lr = lr_at(step, tc.steps, tc.lr, tc.decay_start)
        for opt in (self.opt_g, self.opt_da, self.opt_dp):
            for group in opt.param_groups:
                group["lr"] = lr
        low, low_in, normal = self._to_device(batch.low), self._to_device(batch.low_input), self._to_device(batch.normal)
        rng = np.random.default_rng([tc.seed, 0x9A7C4, step, self.dist.rank])
        offs = patch_offsets(low.shape[-2], low.shape[-1], dcfg.patch_size, dcfg.num_patches, rng)
        P = dcfg.patch_size
        n = low.shape[0]

        # 1) G forward; 2) G step with frozen Ds
        self.G.train()
        _set_requires_grad([self.D_A, self.D_P], False)
        with self._autocast():
            lc = self.cfg.loss
            if lc.identity_weight > 0 or lc.highlight_weight > 0:  # one forward: BatchNorm sees both halves
                both_in = torch.cat([low_in, normal], 0)
                both = self.G_run(both_in)
                fake, same = both[:n], both[n:]
            else:
                fake = self.G_run(low_in)  # [0, 1], unclamped in train mode
            fake_d, real_d = to_disc_range(fake), to_disc_range(normal)
            with torch.no_grad():  # C_A(x_r) has no path to G: skip its backward
                pred_real = self.D_A(real_d)
            g_glob = ragan_g_loss(pred_real, self.D_A(fake_d))
            fake_p, real_p = crop_patches(fake_d, offs, P), crop_patches(real_d, offs, P)
            g_loc = lsgan_g_loss(self.D_P(fake_p))
            zero = torch.zeros((), device=self.device)  # the value of a term that is off
            sfp_glob = self.sfp(fake, low)
            sfp_loc = self.sfp(crop_patches(fake, offs, P), crop_patches(low, offs, P)) if lc.patch_sfp else zero
            col = color_angle_loss(fake, low, lc.color_cell) if lc.color_weight > 0 else zero
            expo = exposure_loss(fake, lc.exposure_level) if lc.exposure_weight > 0 else zero
            order = exposure_order_loss(fake, low_in, lc.order_slope) if lc.order_weight > 0 else zero
            idt = identity_loss(same, normal) if lc.identity_weight > 0 else zero
            hl = highlight_loss(both, both_in) if lc.highlight_weight > 0 else zero
            loss_g = (g_glob + g_loc + lc.sfp_weight * (sfp_glob + sfp_loc) + lc.color_weight * col
                      + lc.exposure_weight * expo + lc.order_weight * order + lc.identity_weight * idt
                      + lc.highlight_weight * hl)
        if not self.amp and not torch.isfinite(loss_g):
            raise TrainingDiverged(
                f"generator loss became {loss_g.item()} at step {step + 1}; lower --lr or resume from the last checkpoint"
            )
        self.opt_g.zero_grad(set_to_none=True)
        self.scaler.scale(loss_g).backward()
        self.scaler.step(self.opt_g)
        if self.ema is not None:
            self.ema.update(self.G)

        # 3) D_A and D_P on the pre-step fake, detached
        _set_requires_grad([self.D_A, self.D_P], True)
        fake_det = fake_d.detach()
        with self._autocast():
            pred = self.DA_run(torch.cat([real_d, fake_det], 0))
            d_glob = ragan_d_loss(pred[:n], pred[n:])
            pred_p = self.DP_run(torch.cat([real_p, crop_patches(fake_det, offs, P)], 0))
            d_loc = lsgan_d_loss(pred_p[: real_p.shape[0]], pred_p[real_p.shape[0]:])
            loss_d = d_glob + d_loc
        self.opt_da.zero_grad(set_to_none=True)
        self.opt_dp.zero_grad(set_to_none=True)
        self.scaler.scale(loss_d).backward()
        self.scaler.step(self.opt_da)
        self.scaler.step(self.opt_dp)
        self.scaler.update()
        self.step_no = step + 1
        parts = (loss_g, g_glob, g_loc, sfp_glob, sfp_loc, col, expo, order, idt, hl, d_glob, d_loc)
        vals = torch.stack([v.detach().float() for v in parts]).cpu().tolist()  # one device sync
        out = dict(zip(LOSS_KEYS, vals))
        out["lr"] = lr
        return out

    # ------------------------------------------------------------------ loop
    def fit(self, until: int | None = None) -> dict[str, float]:
        """Train from the current step up to ``config.train.steps``; returns the last losses.

        Args:
            until: stop after this step instead (as if interrupted there; the LR schedule
                still follows ``config.train.steps``). A checkpoint is written at the stop.
        """
        from tqdm import tqdm

        if self.data is None:
            raise RuntimeError("Trainer was built with load_data=False; call step() with your own batches")
        tc = self.cfg.train
        if self.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.out / CONFIG_FILE, self.cfg.to_json() + "\n")
            self._trim_metrics()
            self._open_tensorboard()
            self._log_start()
        barrier(self.dist)
        data = self.data
        rank, world = self.dist.rank, self.dist.world
        stop = tc.steps if until is None else min(int(until), tc.steps)
        batches = Prefetcher(lambda s: data.batch(s, rank, world), self.step_no, stop, self.cfg.data.workers)
        bar = tqdm(total=tc.steps, initial=self.step_no, desc="train", unit="step", dynamic_ncols=True,
                   disable=not (self.progress and self.is_main), smoothing=0.1)
        last: dict[str, float] = {}
        t0 = time.perf_counter()
        try:
            for batch in batches:
                last = self.step(batch)
                now = time.perf_counter()
                last["sec_per_step"] = now - t0
                t0 = now
                s = self.step_no
                bar.set_postfix(G=f"{last['g_total']:.3f}", D=f"{last['d_global'] + last['d_local']:.3f}",
                                sfp=f"{last['sfp_global']:.3f}", lr=f"{last['lr']:.1e}", refresh=False)
                bar.update(1)
                if self.is_main and (s % tc.log_every == 0 or s == tc.steps):
                    self._log_metrics(s, last)
                if s % tc.save_every == 0 or s == tc.steps:
                    self.save()
                if self.is_main and (s % tc.sample_every == 0 or s == tc.steps):
                    self._write_sample(s)
                t0 = time.perf_counter()  # sec/step counts training only, not saving or sampling
        except KeyboardInterrupt:
            if self.step_no > max(self.last_saved, 0):
                bar.write(f"interrupted: saving a checkpoint at step {self.step_no} (resume with --resume)")
                self.save()
            raise
        finally:
            bar.close()
            if self._tb is not None:
                self._tb.close()
        if self.last_saved != self.step_no and self.step_no > 0:
            self.save(raise_errors=True)
        return last

    def close(self) -> None:
        """Release the process group (DDP); safe to call more than once."""
        shutdown(self.dist)

    # ------------------------------------------------------------------ checkpoints
    def _collect_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors = {**flatten_module("G", self.G), **flatten_module("D_A", self.D_A), **flatten_module("D_P", self.D_P)}
        meta: dict[str, Any] = {"config": self.cfg.to_dict(), "world_size": self.dist.world,
                                "schedule": {"kind": "constant-then-linear", "decay_start": self.cfg.train.decay_start,
                                             "total": self.cfg.train.steps}}
        for name, opt in (("opt_g", self.opt_g), ("opt_da", self.opt_da), ("opt_dp", self.opt_dp)):
            t, m = flatten_optimizer(name, opt)
            tensors.update(t)
            meta[name] = m
        if self.ema is not None:
            tensors.update(flatten_module("G_ema", self.ema.module))
            meta["ema"] = {"decay": self.ema.decay, "updates": self.ema.updates}
        meta["scaler"] = self.scaler.state_dict() if self.amp else None
        return tensors, meta

    def save(self, raise_errors: bool = False) -> bool:
        """Write a checkpoint of the current step (rank 0); returns False when the write failed.

        A failed write (disk full, ...) keeps the previous checkpoint intact, logs one
        warning and lets training go on (the next save retries); with ``raise_errors``
        the OSError is raised instead.
        """
        s = self.step_no
        broadcast_buffers(self.G, self.dist)
        if self.ema is not None:
            broadcast_buffers(self.ema.module, self.dist)
        ok = True
        if self.is_main:
            try:
                tensors, meta = self._collect_state()
                save_state(self.out, s, tensors, meta)
                self._save_generators(s)  # if this fails, --resume rewrites them from the state
            except OSError as e:
                ok = False
                log.warning("checkpoint at step %d failed (%s); the previous checkpoint is kept", s, e)
                if raise_errors:
                    raise
        if ok:
            self.last_saved = s
        barrier(self.dist)
        return ok

    def _catch_up_generator_files(self) -> None:
        """After a resume: rewrite the generator files if a failed/killed save left them behind the state."""
        if not self.is_main:
            return
        try:
            saved_step = read_metadata(self.out / GENERATOR_FILE).get("engan.step")
        except Exception:  # missing or torn file
            saved_step = None
        if saved_step != str(self.step_no):
            self._save_generators(self.step_no)

    def _save_generators(self, s: int) -> None:
        snaps = self.out / SNAPSHOT_DIR
        raw_meta = {"step": s, "weights": "raw"}
        save_generator(snaps / snapshot_name(s, raw=True), self.G, extra=raw_meta)
        if self.ema is not None:
            ema_meta = {"step": s, "weights": "ema", "ema_decay": self.ema.decay}
            save_generator(snaps / snapshot_name(s), self.ema.module, extra=ema_meta)
            save_generator(self.out / RAW_GENERATOR_FILE, self.G, extra=raw_meta)
            save_generator(self.out / GENERATOR_FILE, self.ema.module, extra=ema_meta)
        else:
            save_generator(snaps / snapshot_name(s), self.G, extra=raw_meta)
            save_generator(self.out / RAW_GENERATOR_FILE, self.G, extra=raw_meta)
            save_generator(self.out / GENERATOR_FILE, self.G, extra=raw_meta)

    def _load_state(self) -> None:
        st = load_latest(self.out)
        saved = ExperimentConfig.from_dict(st.meta["config"])
        if architecture_of(saved) != architecture_of(self.cfg):
            raise RunDirError(f"--resume: the checkpoint in {st.folder} was trained with other architecture "
                              "options; drop them or start a new --out")
        for prefix, module in (("G", self.G), ("D_A", self.D_A), ("D_P", self.D_P)):
            module.load_state_dict(unflatten(prefix, st.tensors), strict=True)
        for name, opt in (("opt_g", self.opt_g), ("opt_da", self.opt_da), ("opt_dp", self.opt_dp)):
            opt.load_state_dict(unflatten_optimizer(name, st.tensors, st.meta[name]))
        if self.ema is not None:
            if "ema" in st.meta:
                self.ema.module.load_state_dict(unflatten("G_ema", st.tensors), strict=True)
                self.ema.updates = int(st.meta["ema"]["updates"])
            else:  # EMA switched on at resume: start it from the current weights
                self.ema.module.load_state_dict(self.G.state_dict())
        if self.amp and st.meta.get("scaler"):
            self.scaler.load_state_dict(st.meta["scaler"])
        self.step_no = self.last_saved = st.step
        if self.is_main:
            log.info("resumed from %s (step %d)", st.folder, st.step)

    # ------------------------------------------------------------------ logging
    def _log_start(self) -> None:
        d = self.data
        msg = (f"engan train: G {self.cfg.model.preset} ({count_parameters(self.G):,} params), "
               f"D_A {count_parameters(self.D_A):,}, D_P {count_parameters(self.D_P):,}, "
               f"SFP {self.cfg.loss.feature_net}; device {self.device}"
               f"{f' x{self.dist.world} (DDP)' if self.dist.enabled else ''}; "
               f"data {len(d.low) if d else 0} low + {len(d.normal) if d else 0} normal images; "
               f"steps {self.step_no}->{self.cfg.train.steps}, batch {self.cfg.train.batch}, crop {self.cfg.data.crop}; "
               f"out {self.out}")
        from tqdm import tqdm

        if self.progress:
            tqdm.write(msg)
        log.info(msg)

    def _trim_metrics(self) -> None:
        """On resume, drop metric lines beyond the resumed step (they will be recomputed)."""
        path = self.out / METRICS_FILE
        if not path.is_file():
            return
        keep = []
        for line in path.read_text().splitlines():
            try:
                if json.loads(line)["step"] <= self.step_no:
                    keep.append(line)
            except (ValueError, KeyError, TypeError):
                continue
        atomic_write_text(path, "".join(x + "\n" for x in keep))

    def _log_metrics(self, s: int, vals: dict[str, float]) -> None:
        rec = {"step": s, **{k: (round(v, 6) if isinstance(v, float) and math.isfinite(v) else v)
                             for k, v in vals.items()}}
        with open(self.out / METRICS_FILE, "a") as f:
            f.write(json.dumps(rec) + "\n")
        if self._tb is not None:
            for k, v in vals.items():
                self._tb.add_scalar(f"train/{k}", v, s)

    def _open_tensorboard(self) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except Exception:  # tensorboard is optional
            self._tb = None
            return
        self._tb = SummaryWriter(str(self.out / "tb"))

    def _write_sample(self, s: int) -> None:
        gen = self.ema.module if self.ema is not None else self.G
        try:
            write_sample_grid(self.out / "samples" / f"step{s:06d}.png", gen, self.sample_x)
        except OSError as e:
            log.warning("sample grid at step %d not written (%s)", s, e)
