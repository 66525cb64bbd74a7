"""EnlightenGAN training loop (knows no CLI): ``Trainer(config, out_dir).fit()``.

The iteration itself is :class:`engan.train.step.GanStep` over the loss terms the
configuration switches on (:mod:`engan.losses.registry`); checkpoints are
:mod:`engan.train.checkpoints`, records :mod:`engan.train.logbook`.

Run folder: ``generator.safetensors`` (EMA weights when EMA is on),
``generator_raw.safetensors``, ``snapshots/generator_step{N:06d}.safetensors``
(+ ``generator_raw_step{N:06d}``), ``state/`` (crash-safe full state), ``config.json``
(the resolved configuration: ``engan train --config`` it to repeat the run),
``metrics.jsonl``, ``samples/step{N:06d}.png``.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from pathlib import Path

import torch
from torch import nn

from engan.config import ExperimentConfig, LossConfig
from engan.data import DataError, UnpairedBatches, list_images, load_folder
from engan.losses import ActiveTerm, needed_passes, resolve_terms
from engan.losses.registry import normalized_terms
from engan.models import count_parameters
from engan.models.checkpoint import CheckpointError, load_generator
from engan.train.checkpoints import Checkpointer, RunDirError, architecture_of, remove_stale_temp_files
from engan.train.distributed import DistInfo, barrier, init_distributed, shutdown
from engan.train.logbook import CONFIG_FILE, METRICS_FILE, Logbook
from engan.train.nets import Nets, build_nets
from engan.train.samples import sample_inputs
from engan.train.state import has_state
from engan.train.step import GanStep, TrainingDiverged

log = logging.getLogger("engan.train")

__all__ = ["Trainer", "RunDirError", "TrainingDiverged", "CONFIG_FILE", "METRICS_FILE", "resolve_device"]

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


def resolve_loss(loss: LossConfig) -> LossConfig:
    """Every registered term with its typed weight and options (defaults filled in), validated."""
    return LossConfig(terms=normalized_terms(loss.terms))


class Trainer:
    """Train an EnlightenGAN generator on unpaired folders.

    Args:
        config: the whole experiment (data folders, model, loss terms, schedule).
        out_dir: run folder; must be new or empty unless ``resume``.
        resume: continue from the newest complete checkpoint in ``out_dir``.
        progress: show a tqdm bar (rank 0 only).
        load_data: read the folders now (False for callers that feed :meth:`step` themselves).

    Raises:
        DataError: a data folder is missing, empty or unusable (before any model is built).
        RunDirError: ``out_dir`` exists without ``resume``, or ``resume`` with other architecture options.
        engan.losses.LossConfigError: an unknown loss term or option, or a bad value.
        engan.models.checkpoint.CheckpointError: ``train.pretrained`` is unreadable or another generator.
        engan.losses.FeatureNetError: the SFP feature network cannot be built.
    """

    def __init__(self, config: ExperimentConfig, out_dir: str | os.PathLike, resume: bool = False,
                 progress: bool = True, load_data: bool = True) -> None:
        self.cfg = dataclasses.replace(config, loss=resolve_loss(config.loss))
        self.out = Path(out_dir)
        self.progress = progress
        self.device = resolve_device(self.cfg.train.device)
        self.dist: DistInfo = init_distributed(self.device)
        if self.dist.enabled and self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)
        if self.cfg.train.threads > 0 and self.device.type == "cpu":
            torch.set_num_threads(self.cfg.train.threads)
        try:
            self._setup(resume, load_data)
        except BaseException:
            shutdown(self.dist)  # do not leave a DDP process group behind on a setup error
            raise

    def _setup(self, resume: bool, load_data: bool) -> None:
        tc, dc = self.cfg.train, self.cfg.data
        self._check_run_dir(resume)
        terms = resolve_terms(self.cfg.loss.terms)

        # data first: a wrong folder fails in seconds, before models are built
        if dc.crop % 16:
            raise DataError(f"crop {dc.crop} is not a multiple of 16 (the generator needs that); try {dc.crop - dc.crop % 16 or 16}")
        if dc.crop < self.cfg.discriminator.patch_size:
            raise DataError(f"crop {dc.crop} is smaller than the {self.cfg.discriminator.patch_size}px local patches")
        self.data: UnpairedBatches | None = None
        if load_data:
            for folder in (dc.low_dir, dc.normal_dir):
                list_images(folder)
            low = load_folder(dc.low_dir, min_size=dc.crop)
            normal = load_folder(dc.normal_dir, min_size=dc.crop)
            twin = dc.degrade if "degraded" in needed_passes(terms) else None
            self.data = UnpairedBatches(low, normal, dc.crop, tc.batch, tc.seed,
                                        dc.darken_prob, dc.darken_min, dc.darken_max, twin, dc.quantize)
            self.sample_x = sample_inputs(low, count=4, size=min(dc.crop, 256))
        terms = self._prepare_terms(terms, normal.images if load_data else None)

        self.memory_format = torch.channels_last if tc.channels_last else torch.contiguous_format
        init = None
        if tc.pretrained and not (resume and has_state(self.out)):
            init = self._pretrained_state(Path(tc.pretrained))
        self.nets: Nets = build_nets(self.cfg, self.device, self.memory_format, init)
        self.term_states: dict[str, nn.Module] = {}
        for t in terms:
            state = t.term.build(t.options) if t.term.build is not None else None
            if state is not None:
                self.term_states[t.name] = state.to(self.device).to(memory_format=self.memory_format)
        self.checkpoints = Checkpointer(self.out, self.nets, self.dist)
        self.step_no = 0
        self.last_saved = -1
        if resume and has_state(self.out):
            self.step_no = self.last_saved = self.checkpoints.load(self.cfg)
            self.checkpoints.catch_up_generator_files(self.step_no)
        elif resume:
            raise RunDirError(f"nothing to resume in {self.out}: no checkpoint under {self.out}/state; drop --resume")
        self.nets.wrap_ddp(self.dist, self.device)
        self.terms = terms
        self._step = GanStep(self.nets, terms, self.term_states, self.cfg, self.device, self.memory_format,
                             self.dist.rank)
        self.logbook = Logbook(self.out)

    def _prepare_terms(self, terms: list[ActiveTerm], normal_images) -> list[ActiveTerm]:
        """Fill options measured from the data (the exposure level) and record them in the config.

        ``normal_images`` None: the folders are not loaded, and a term that must measure them is an error.
        """
        prepared = []
        for t in terms:
            if t.term.prepare is not None:
                try:
                    opts = t.term.prepare(t.options, normal_images)
                except ValueError as e:
                    raise DataError(f"loss term {t.name}: {e}") from None
                if opts != t.options:
                    entry = {**self.cfg.loss.terms[t.name], **dataclasses.asdict(opts)}
                    self.cfg = dataclasses.replace(self.cfg, loss=LossConfig(terms={**self.cfg.loss.terms, t.name: entry}))
                    log.info("loss term %s: %s from the data", t.name, dataclasses.asdict(opts))
                t = ActiveTerm(t.term, t.weight, opts)
            prepared.append(t)
        return prepared

    def _pretrained_state(self, path: Path) -> dict[str, torch.Tensor]:
        """The weights of ``path`` to start the generator from; it must be the generator this run builds."""
        source = load_generator(path)
        gcfg = self.cfg.model.generator
        diff = [f"{f} {getattr(source.config, f)} in the file, {getattr(gcfg, f)} in this run"
                for f in PRETRAINED_MUST_MATCH if getattr(source.config, f) != getattr(gcfg, f)]
        if diff:
            raise CheckpointError(
                f"--pretrained {path} holds another generator than this run builds ({'; '.join(diff)}); "
                "leave out the model settings to take the file's, or pass a matching generator"
            )
        log.info("generator initialised from %s", path)
        return source.state_dict()  # stages the file lacks (a new refine stage) keep their init

    # ------------------------------------------------------------------ public attributes
    @property
    def is_main(self) -> bool:
        return self.dist.is_main

    @property
    def G(self) -> nn.Module:
        return self.nets.G

    @property
    def D_A(self) -> nn.Module:
        return self.nets.D_A

    @property
    def D_P(self) -> nn.Module:
        return self.nets.D_P

    @property
    def ema(self):
        return self.nets.ema

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

    # ------------------------------------------------------------------ training
    def step(self, batch) -> dict[str, float]:
        """Run one training iteration on ``batch`` (its ``step`` picks the LR and the patches)."""
        out = self._step(batch)
        self.step_no = int(batch.step) + 1
        return out

    def save(self, raise_errors: bool = False) -> bool:
        """Write a checkpoint of the current step (see :meth:`Checkpointer.save`)."""
        ok = self.checkpoints.save(self.step_no, self.cfg, raise_errors)
        if ok:
            self.last_saved = self.step_no
        return ok

    def fit(self, until: int | None = None) -> dict[str, float]:
        """Train from the current step up to ``config.train.steps``; returns the last losses.

        Args:
            until: stop after this step instead (as if interrupted there; the LR schedule
                still follows ``config.train.steps``). A checkpoint is written at the stop.
        """
        from tqdm import tqdm

        from engan.data import Prefetcher

        if self.data is None:
            raise RuntimeError("Trainer was built with load_data=False; call step() with your own batches")
        tc = self.cfg.train
        if self.is_main:
            self.logbook.open(self.cfg, self.step_no)
            self._log_start()
        barrier(self.dist)
        data, rank, world = self.data, self.dist.rank, self.dist.world
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
                s = self.step_no
                bar.set_postfix(G=f"{last['g_total']:.3f}", D=f"{last.get('d_global', 0) + last.get('d_local', 0):.3f}",
                                lr=f"{last['lr']:.1e}", refresh=False)
                bar.update(1)
                if self.is_main and (s % tc.log_every == 0 or s == tc.steps):
                    self.logbook.metrics(s, last)
                if s % tc.save_every == 0 or s == tc.steps:
                    self.save()
                if self.is_main and (s % tc.sample_every == 0 or s == tc.steps):
                    self.logbook.sample(s, self.ema.module if self.ema is not None else self.G, self.sample_x)
                t0 = time.perf_counter()  # sec/step counts training only, not saving or sampling
        except KeyboardInterrupt:
            if self.step_no > max(self.last_saved, 0):
                bar.write(f"interrupted: saving a checkpoint at step {self.step_no} (resume with --resume)")
                self.save()
            raise
        finally:
            bar.close()
            self.logbook.close()
        if self.last_saved != self.step_no and self.step_no > 0:
            self.save(raise_errors=True)
        return last

    def close(self) -> None:
        """Release the process group (DDP); safe to call more than once."""
        shutdown(self.dist)

    def _log_start(self) -> None:
        from tqdm import tqdm

        d, tc = self.data, self.cfg.train
        terms = ", ".join(f"{t.name} {t.weight:g}" for t in self.terms)
        msg = (f"engan train: G {self.cfg.model.preset} ({count_parameters(self.G):,} params), "
               f"D_A {count_parameters(self.D_A):,}, D_P {count_parameters(self.D_P):,}; loss {terms}; "
               f"device {self.device}{f' x{self.dist.world} (DDP)' if self.dist.enabled else ''}; "
               f"data {len(d.low) if d else 0} low + {len(d.normal) if d else 0} normal images; "
               f"steps {self.step_no}->{tc.steps}, batch {tc.batch}, crop {self.cfg.data.crop}; out {self.out}")
        if self.progress:
            tqdm.write(msg)
        log.info(msg)
