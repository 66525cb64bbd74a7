"""Two CPU processes with the gloo backend train as one DDP job and end with identical replicas."""
from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from PIL import Image

from tests.helpers import make_image


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, cfg_json: str, out: str, dump: str) -> None:
    import json

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    from engan.config import ExperimentConfig
    from engan.train.trainer import Trainer

    cfg = ExperimentConfig.from_dict(json.loads(cfg_json))
    t = Trainer(cfg, out, progress=False)
    assert t.dist.enabled and t.dist.world == world and t.dist.rank == rank
    t.fit()
    state = {f"G.{k}": v for k, v in t.G.state_dict().items()}
    state.update({f"D_A.{k}": v for k, v in t.D_A.state_dict().items()})
    state.update({f"D_P.{k}": v for k, v in t.D_P.state_dict().items()})
    state.update({f"G_ema.{k}": v for k, v in t.ema.module.state_dict().items()})
    torch.save(state, os.path.join(dump, f"rank{rank}.pt"))
    t.close()


@pytest.mark.slow
def test_two_gloo_processes_hold_identical_weights(tmp_path):
    from engan.config import DataConfig, DiscriminatorConfig, ExperimentConfig, TrainConfig, model_config
    from engan.models import create_generator

    for i in range(4):
        (tmp_path / "low").mkdir(exist_ok=True)
        (tmp_path / "normal").mkdir(exist_ok=True)
        Image.fromarray(make_image(48, 48, seed=i, dark=0.25)).save(tmp_path / "low" / f"{i}.png")
        Image.fromarray(make_image(48, 48, seed=9 + i, dark=0.9)).save(tmp_path / "normal" / f"{i}.png")
    cfg = ExperimentConfig(
        model=model_config("tiny"), discriminator=DiscriminatorConfig(ndf=8),
        data=DataConfig(low_dir=str(tmp_path / "low"), normal_dir=str(tmp_path / "normal"), crop=32),
        train=TrainConfig(steps=3, batch=2, save_every=3, sample_every=3, ema_decay=0.9, seed=5, device="cpu"),
    )
    out, dump = tmp_path / "run", tmp_path / "dump"
    dump.mkdir()
    mp.spawn(_worker, args=(2, _free_port(), cfg.to_json(), str(out), str(dump)), nprocs=2, join=True)
    r0 = torch.load(dump / "rank0.pt", weights_only=True)
    r1 = torch.load(dump / "rank1.pt", weights_only=True)
    assert r0.keys() == r1.keys()
    for k in r0:
        torch.testing.assert_close(r0[k], r1[k], rtol=0, atol=0, msg=k)
    # it trained (weights moved from the seeded init), and only rank 0 wrote the run folder
    torch.manual_seed(5)
    init = create_generator("tiny").state_dict()
    assert not torch.equal(init["conv1_1.weight"], r0["G.conv1_1.weight"])
    assert (out / "generator.safetensors").is_file() and (out / "state" / "step000003").is_dir()
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 3
