"""Exponential moving average of a module's parameters AND buffers (BN running statistics)."""
from __future__ import annotations

import copy

import torch
from torch import nn


class ModelEMA:
    """Keep ``ema = d * ema + (1 - d) * model`` after every optimiser step.

    The decay warms up as ``min(decay, (1 + n) / (10 + n))`` (n = updates so far, as
    TensorFlow's ``ExponentialMovingAverage(num_updates=...)``), so short runs are not
    dominated by the random initialisation. Float buffers (BN running mean/var) are
    averaged like parameters; integer buffers (``num_batches_tracked``) are copied.

    Args:
        model: the module to follow (its copy is kept in ``eval()`` mode).
        decay: target decay in (0, 1).
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}; use 0 to disable EMA")
        self.decay = float(decay)
        self.updates = 0
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    def current_decay(self) -> float:
        return min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        d = self.current_decay()
        self.updates += 1
        for e, m in zip(self.module.parameters(), model.parameters()):
            e.lerp_(m.detach(), 1.0 - d)
        for e, m in zip(self.module.buffers(), model.buffers()):
            if e.dtype.is_floating_point:
                e.lerp_(m.detach(), 1.0 - d)
            else:
                e.copy_(m)
