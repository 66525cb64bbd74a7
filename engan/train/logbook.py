"""A run's records: ``config.json``, ``metrics.jsonl`` (and TensorBoard when installed), sample grids."""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import torch

from engan.config import ExperimentConfig
from engan.runtime.atomic import atomic_write_text
from engan.train.samples import write_sample_grid

log = logging.getLogger("engan.train")

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"


class Logbook:
    """Writes one run's records under ``out`` (rank 0 only; the caller checks)."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self._tb = None

    def open(self, cfg: ExperimentConfig, resumed_step: int) -> None:
        """Write ``config.json``, drop metric lines past ``resumed_step``, open TensorBoard if installed."""
        self.out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.out / CONFIG_FILE, cfg.to_json() + "\n")
        self._trim_metrics(resumed_step)
        try:
            from torch.utils.tensorboard import SummaryWriter
        except Exception:  # tensorboard is optional
            self._tb = None
        else:
            self._tb = SummaryWriter(str(self.out / "tb"))

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None

    def _trim_metrics(self, step: int) -> None:
        """On resume, drop metric lines beyond the resumed step (they will be recomputed)."""
        path = self.out / METRICS_FILE
        if not path.is_file():
            return
        keep = []
        for line in path.read_text().splitlines():
            try:
                if json.loads(line)["step"] <= step:
                    keep.append(line)
            except (ValueError, KeyError, TypeError):
                continue
        atomic_write_text(path, "".join(x + "\n" for x in keep))

    def metrics(self, step: int, values: dict[str, float]) -> None:
        rec = {"step": step, **{k: (round(v, 6) if isinstance(v, float) and math.isfinite(v) else v)
                                for k, v in values.items()}}
        with open(self.out / METRICS_FILE, "a") as f:
            f.write(json.dumps(rec) + "\n")
        if self._tb is not None:
            for k, v in values.items():
                self._tb.add_scalar(f"train/{k}", v, step)

    def sample(self, step: int, generator: torch.nn.Module, inputs: torch.Tensor) -> None:
        """``samples/stepNNNNNN.png``: before/after grid of fixed training crops (a failed write only warns)."""
        try:
            write_sample_grid(self.out / "samples" / f"step{step:06d}.png", generator, inputs)
        except OSError as e:
            log.warning("sample grid at step %d not written (%s)", step, e)
