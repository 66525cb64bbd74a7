"""Uniform weight averaging of generator snapshots (a fixed-rule stabiliser).

A GAN's generator keeps moving until the learning rate reaches 0: on this
project's CPU runs, EMA snapshots 200 steps apart read 13-19 dB on LOL. The mean
of the last few EMA snapshots of a run (in the spirit of stochastic weight
averaging) is a checkpoint chosen by a rule fixed in advance, not by a
benchmark. Floating-point tensors, BatchNorm running statistics included, are
averaged; integer buffers (``num_batches_tracked``) come from the newest file.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from engan.models.checkpoint import (
    SNAPSHOT_DIR, CheckpointError, load_generator, read_metadata, save_generator, set_inference_options, snapshot_step,
)


def last_snapshots(run_dir: str | os.PathLike, count: int) -> list[Path]:
    """The ``count`` newest EMA snapshots of an ``engan train`` run folder, oldest first.

    Raises:
        CheckpointError: the folder has no ``snapshots/`` or fewer than ``count`` EMA snapshots.
    """
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    folder = Path(run_dir) / SNAPSHOT_DIR
    files = folder.iterdir() if folder.is_dir() else ()
    found = sorted((step, p) for p in files if (step := snapshot_step(p.name)) is not None)
    if len(found) < count:
        raise CheckpointError(
            f"{folder} holds {len(found)} EMA snapshots (generator_stepNNNNNN.safetensors), fewer than the "
            f"{count} asked for; lower --last or train longer (snapshots are written every train.save_every steps: --set train.save_every=N)"
        )
    return [p for _, p in found[-count:]]


def average_generators(paths: list[str | os.PathLike]) -> torch.nn.Module:
    """A generator whose weights are the uniform mean of the generators in ``paths``.

    Raises:
        CheckpointError: fewer than two files, or files that hold different architectures.
    """
    if len(paths) < 2:
        raise CheckpointError(f"averaging needs at least two generators, got {len(paths)}")
    models = [load_generator(p) for p in paths]
    first = models[0]
    for p, m in zip(paths[1:], models[1:]):
        if m.config != first.config:
            raise CheckpointError(f"{p} holds another architecture ({m.config}) than {paths[0]} ({first.config}); "
                                  "average snapshots of one run only")
    states = [m.state_dict() for m in models]
    mean = {}
    for k, v in states[-1].items():
        mean[k] = torch.stack([s[k].double() for s in states]).mean(0).to(v.dtype) if v.is_floating_point() else v
    first.load_state_dict(mean)
    return first.eval()


def save_average(paths: list[str | os.PathLike], out: str | os.PathLike, **inference: object) -> Path:
    """Average ``paths`` (see :func:`average_generators`) and save to ``out`` with their names in the metadata.

    ``inference``: the written generator's inference-only options (``knee``, ``denoise``;
    they change no weight); one not given or ``None`` keeps the snapshots' own.
    """
    model = set_inference_options(average_generators(paths), **inference)
    steps = [read_metadata(p).get("engan.step") for p in paths]
    extra = {"averaged_from": [Path(p).name for p in paths]}
    if all(s is not None for s in steps):
        extra["averaged_steps"] = [int(s) for s in steps]
    return save_generator(out, model, extra=extra)
