"""torchrun / DistributedDataParallel plumbing, kept out of the trainer's logic.

When ``WORLD_SIZE`` > 1 is set in the environment (``torchrun --nproc_per_node N``)
the process group is initialised with ``nccl`` on CUDA and ``gloo`` on CPU; each
rank uses ``cuda:LOCAL_RANK``. Without those variables everything is a no-op and
the run is single-process.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job.

    Attributes:
        rank: global rank (0 writes files).
        world: number of processes.
        local_rank: rank on this node (selects the CUDA device).
        enabled: True when a process group is initialised.
    """

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    enabled: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_distributed(device: torch.device) -> DistInfo:
    """Initialise the process group when launched by torchrun; a no-op otherwise."""
    world = env_world_size()
    if world <= 1:
        return DistInfo()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=30))
    return DistInfo(rank=dist.get_rank(), world=dist.get_world_size(), local_rank=local_rank, enabled=True)


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def broadcast_buffers(module: torch.nn.Module, info: DistInfo) -> None:
    """Copy rank 0's buffers (BN running statistics) to every rank."""
    if info.enabled:
        for b in module.buffers():
            dist.broadcast(b, src=0)


def all_equal_flag(flag: bool, info: DistInfo) -> bool:
    """True on every rank only if ``flag`` is True on every rank."""
    if not info.enabled:
        return flag
    t = torch.tensor([1 if flag else 0], dtype=torch.int64)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item())


def shutdown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
