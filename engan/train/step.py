"""One training iteration, as the authors' ``optimize_parameters`` (spec section 3), over registered terms.

1. one forward of G over the generator input, concatenated with the extra inputs the
   active terms need (the normal-light crops, the degraded twins), so BatchNorm sees
   one batch;
2. G step on the weighted sum of the active loss terms (:mod:`engan.losses.registry`),
   the discriminators frozen for this backward (that only skips work: the authors
   compute and then zero those gradients);
3. D_A and D_P step on the *pre-step* fake (detached); one D update per G update,
   no image pool. When no active term reads the discriminators (a distillation fine-tune),
   they are not trained.

Everything random in a step is a pure function of ``(seed, step, rank)``, so a resumed
run repeats an uninterrupted one exactly (same seed, same device).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from engan.config import ExperimentConfig
from engan.data import Batch
from engan.losses import (ActiveTerm, Critics, TermInputs, crop_patches, lsgan_d_loss, needed_passes,
                          patch_offsets, ragan_d_loss, to_disc_range)
from engan.models.checkpoint import freeze_batchnorm
from engan.train.nets import Nets
from engan.train.schedule import lr_at


class TrainingDiverged(RuntimeError):
    """A loss became NaN/inf."""


def _set_requires_grad(modules: list[nn.Module], flag: bool) -> None:
    for m in modules:
        for p in m.parameters():
            p.requires_grad_(flag)


class GanStep:
    """Callable ``step(batch) -> metrics`` for one run's networks and active terms.

    Args:
        nets: the networks and optimisers.
        terms: the active loss terms (weight > 0), in registry order.
        states: the modules terms built (``name -> module``; the SFP feature network).
        cfg: the run's configuration (schedule, patches, seed).
        device, memory_format: where and how batches go.
        rank: this process's rank (part of the step's random stream).
    """

    def __init__(self, nets: Nets, terms: list[ActiveTerm], states: dict[str, nn.Module], cfg: ExperimentConfig,
                 device: torch.device, memory_format: torch.memory_format, rank: int = 0) -> None:
        self.nets, self.terms, self.states, self.cfg = nets, terms, states, cfg
        self.device, self.memory_format, self.rank = device, memory_format, rank
        self.passes = needed_passes(terms)
        self.train_critics = any(t.term.critics for t in terms)

    def _to_device(self, a: np.ndarray | torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(a).to(self.device, non_blocking=True)
        return t.contiguous(memory_format=self.memory_format)

    def __call__(self, batch: Batch) -> dict[str, float]:
        """Run one iteration; returns ``g_total``, each term's value (and parts), ``d_global``, ``d_local``, ``lr``."""
        tc, dcfg, nets = self.cfg.train, self.cfg.discriminator, self.nets
        step = int(batch.step)
        lr = lr_at(step, tc.steps, tc.lr, tc.decay_start)
        nets.set_lr(lr)
        low, low_in, normal = (self._to_device(a) for a in (batch.low, batch.low_input, batch.normal))
        rng = np.random.default_rng([tc.seed, 0x9A7C4, step, self.rank])
        offs = patch_offsets(low.shape[-2], low.shape[-1], dcfg.patch_size, dcfg.num_patches, rng)
        P, n = dcfg.patch_size, low.shape[0]

        # 1) G forward; 2) G step with frozen Ds
        nets.G.train()
        if tc.freeze_bn:
            freeze_batchnorm(nets.G)
        _set_requires_grad([nets.D_A, nets.D_P], False)
        extra = {"normal": normal}
        if "degraded" in self.passes:
            if batch.low_degraded is None:
                raise RuntimeError("a loss term needs the degraded twins but the batch has none")
            extra["degraded"] = self._to_device(batch.low_degraded)
        with nets.autocast():
            inputs = torch.cat([low_in] + [extra[p] for p in self.passes], 0)
            outs = dict(zip(("fake",) + self.passes, nets.G_run(inputs).split(n)))
            ctx = TermInputs(
                fake=outs["fake"], low=low, low_in=low_in, normal=normal,
                critics=Critics(nets.D_A, nets.D_P, offs, P),
                same=outs.get("normal"), degraded_in=extra.get("degraded"), degraded=outs.get("degraded"),
            )
            values: dict[str, torch.Tensor] = {}
            loss_g = torch.zeros((), device=self.device)
            for t in self.terms:
                v = t.term.compute(ctx, t.options, self.states.get(t.name))
                if isinstance(v, dict):
                    values.update({f"{t.name}.{k}": p for k, p in v.items()})
                    v = sum(v.values())
                values[t.name] = v
                loss_g = loss_g + t.weight * v
        if not nets.amp and not torch.isfinite(loss_g):
            raise TrainingDiverged(
                f"generator loss became {loss_g.item()} at step {step + 1}; lower the learning rate "
                "(--lr) or resume from the last checkpoint"
            )
        nets.opt_g.zero_grad(set_to_none=True)
        nets.scaler.scale(loss_g).backward()
        nets.scaler.step(nets.opt_g)
        if nets.ema is not None:
            nets.ema.update(nets.G)

        # 3) D_A and D_P on the pre-step fake, detached (only when a term uses them)
        critics: dict[str, torch.Tensor] = {}
        if self.train_critics:
            critics = self._critics_step(ctx.fake.detach(), normal, offs, P, n)
        nets.scaler.update()

        keys = ("g_total", *values, *critics)
        parts = (loss_g, *values.values(), *critics.values())
        vals = torch.stack([v.detach().float() for v in parts]).cpu().tolist()  # one device sync
        out = dict(zip(keys, vals))
        out["lr"] = lr
        return out

    def _critics_step(self, fake: torch.Tensor, normal: torch.Tensor, offs: list[tuple[int, int]], P: int,
                      n: int) -> dict[str, torch.Tensor]:
        nets = self.nets
        _set_requires_grad([nets.D_A, nets.D_P], True)
        fake_d, real_d = to_disc_range(fake), to_disc_range(normal)
        with nets.autocast():
            pred = nets.DA_run(torch.cat([real_d, fake_d], 0))
            d_glob = ragan_d_loss(pred[:n], pred[n:])
            real_p = crop_patches(real_d, offs, P)
            pred_p = nets.DP_run(torch.cat([real_p, crop_patches(fake_d, offs, P)], 0))
            d_loc = lsgan_d_loss(pred_p[: real_p.shape[0]], pred_p[real_p.shape[0]:])
            loss_d = d_glob + d_loc
        nets.opt_da.zero_grad(set_to_none=True)
        nets.opt_dp.zero_grad(set_to_none=True)
        nets.scaler.scale(loss_d).backward()
        nets.scaler.step(nets.opt_da)
        nets.scaler.step(nets.opt_dp)
        return {"d_global": d_glob, "d_local": d_loc}
