"""The networks a run trains, their optimisers, EMA and (on CUDA) gradient scaler."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from engan.config import ExperimentConfig
from engan.models import PatchDiscriminator, create_generator
from engan.train.distributed import DistInfo
from engan.train.ema import ModelEMA


@dataclass
class Nets:
    """G, the global (``D_A``) and local (``D_P``) discriminators, and what updates them.

    ``*_run`` are the modules to call in a step: the DDP wrappers when distributed, else
    the modules themselves.
    """

    G: nn.Module
    D_A: nn.Module
    D_P: nn.Module
    opt_g: torch.optim.Optimizer
    opt_da: torch.optim.Optimizer
    opt_dp: torch.optim.Optimizer
    ema: ModelEMA | None
    scaler: Any
    amp: bool
    G_run: nn.Module | None = None
    DA_run: nn.Module | None = None
    DP_run: nn.Module | None = None

    @property
    def optimizers(self) -> tuple[tuple[str, torch.optim.Optimizer], ...]:
        return (("opt_g", self.opt_g), ("opt_da", self.opt_da), ("opt_dp", self.opt_dp))

    @property
    def modules(self) -> tuple[tuple[str, nn.Module], ...]:
        return (("G", self.G), ("D_A", self.D_A), ("D_P", self.D_P))

    def set_lr(self, lr: float) -> None:
        for _, opt in self.optimizers:
            for group in opt.param_groups:
                group["lr"] = lr

    def autocast(self):
        """float16 autocast on CUDA with AMP, else nothing."""
        return torch.autocast("cuda", dtype=torch.float16) if self.amp else contextlib.nullcontext()

    def wrap_ddp(self, dist: DistInfo, device: torch.device) -> None:
        """Set the ``*_run`` modules: DDP wrappers when distributed, else the modules themselves."""
        self.G_run, self.DA_run, self.DP_run = self.G, self.D_A, self.D_P
        if dist.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [device.index] if device.type == "cuda" else None
            self.G_run = DDP(self.G, device_ids=ids)
            self.DA_run = DDP(self.D_A, device_ids=ids)
            self.DP_run = DDP(self.D_P, device_ids=ids)


def build_nets(cfg: ExperimentConfig, device: torch.device, memory_format: torch.memory_format,
               generator_init: dict[str, torch.Tensor] | None = None) -> Nets:
    """Build G and both discriminators (seeded by the run's seed), Adam for each, EMA and scaler.

    ``generator_init``: a state dict to start G from (a fine-tune); keys it lacks keep their init.
    """
    tc, dcfg = cfg.train, cfg.discriminator
    torch.manual_seed(tc.seed)  # same seed on every rank -> same init; DDP broadcasts rank 0's anyway
    G = create_generator(cfg.model.generator)
    if generator_init is not None:
        G.load_state_dict(generator_init, strict=False)
    G.to(device)
    D_A = PatchDiscriminator(3, dcfg.ndf, dcfg.global_layers).to(device)
    D_P = PatchDiscriminator(3, dcfg.ndf, dcfg.local_layers).to(device)
    for m in (G, D_A, D_P):
        m.to(memory_format=memory_format)
    G.train()
    betas = (tc.beta1, tc.beta2)
    amp = bool(tc.amp and device.type == "cuda")
    trained = [p for name, p in G.named_parameters() if name.startswith(tc.trainable)]
    if not trained:
        raise ValueError(f"train.trainable {tc.trainable!r} names no generator parameter (they start with: "
                         f"{', '.join(sorted({n.split('.')[0] for n, _ in G.named_parameters()})[:8])}, ...)")
    for name, p in G.named_parameters():
        p.requires_grad_(name.startswith(tc.trainable))  # frozen parts need no gradient (and cost no backward)
    return Nets(
        G=G, D_A=D_A, D_P=D_P,
        opt_g=torch.optim.Adam(trained, lr=tc.lr, betas=betas),
        opt_da=torch.optim.Adam(D_A.parameters(), lr=tc.lr, betas=betas),
        opt_dp=torch.optim.Adam(D_P.parameters(), lr=tc.lr, betas=betas),
        ema=ModelEMA(G, tc.ema_decay) if tc.ema_decay > 0 else None,
        scaler=torch.amp.GradScaler("cuda", enabled=amp),
        amp=amp,
    )
