"""Hardening of `engan train`: SIGKILL at random moments, disk full while checkpointing.

The kill test runs the real `engan train` command (``engan.cli.main(["train", ...])``) in
forked child processes and kills them with SIGKILL after random delays, several times in
a row, resuming with ``--resume`` each time. Forking a process that already imported
torch makes a start cost ~3 s instead of the ~60 s a fresh interpreter needs on the
loaded 2-core CI box (importing torch and torch._dynamo); a separate real-subprocess
SIGKILL test lives in tests/train/test_trainer.py.
"""
from __future__ import annotations

import json
import logging
import multiprocessing
import os
import random
import signal
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from tests.helpers import disk_full_for, make_image, tiny_config
from engan.config import ExperimentConfig, TrainConfig
from engan.models.checkpoint import load_generator, read_metadata
from engan.train.state import LATEST, META_FILE, STATE_DIR, TENSORS_FILE, _load_folder, load_latest
from engan.train.trainer import METRICS_FILE, Trainer

KILLS = int(os.environ.get("ENGAN_KILLS", 3))  # raise it for a longer soak
STEPS = max(7, 3 * KILLS)
SAVE_EVERY = 1


@pytest.fixture(scope="module")
def warm_parent():
    """Import in the parent what every `engan train` child needs, so forked children start fast."""
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])  # imports torch._dynamo (~30 s cold here)
    import efficientnet_lite_pytorch  # noqa: F401  (the default SFP feature network)

    import engan.cli.train  # noqa: F401


@pytest.fixture(scope="module")
def data_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    (root / "low").mkdir()
    (root / "normal").mkdir()
    for i in range(3):
        Image.fromarray(make_image(40, 48, seed=i, dark=0.25)).save(root / "low" / f"l{i}.png")
        Image.fromarray(make_image(48, 40, seed=20 + i, dark=0.9)).save(root / "normal" / f"n{i}.png")
    return root / "low", root / "normal"


def _engan_train(argv: list[str], log_path: str) -> None:
    """Child process body: the `engan train` console entry point, output to ``log_path``."""
    log = open(log_path, "a", buffering=1)  # noqa: SIM115 - lives until the process dies
    sys.stdout = sys.stderr = log
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    from engan.cli import main

    main(argv, prog_name="engan")


def _start(argv: list[str], log_path: Path) -> multiprocessing.Process:
    proc = multiprocessing.get_context("fork").Process(target=_engan_train, args=(argv, str(log_path)), daemon=True)
    proc.start()
    return proc


def _latest_step(run: Path) -> int:
    try:
        name = (run / STATE_DIR / LATEST).read_text().strip()
    except (FileNotFoundError, ValueError):
        return 0
    return int(name.removeprefix("step")) if name.startswith("step") else 0


def _metric_steps(run: Path) -> list[int]:
    path = run / METRICS_FILE
    if not path.is_file():
        return []
    steps = []
    for line in path.read_text().splitlines():
        try:
            steps.append(json.loads(line)["step"])
        except (ValueError, KeyError):  # a line cut by the kill is not a step
            pass
    return steps


def _check_nothing_is_corrupt(run: Path) -> int:
    """Every visible checkpoint file loads; LATEST names a complete folder. Returns its step (0: none yet)."""
    state = run / STATE_DIR
    for folder in sorted(state.glob("step*")) if state.is_dir() else []:
        if (folder / TENSORS_FILE).exists() and (folder / META_FILE).exists():  # not half-pruned
            assert _load_folder(folder).step == int(folder.name[4:]), folder
    for f in [run / "generator.safetensors", run / "generator_raw.safetensors",
              *sorted((run / "snapshots").glob("*.safetensors"))]:
        if f.exists():
            g = load_generator(f, preset="tiny")  # a torn file raises CheckpointError
            assert not g.training
    if not (state / LATEST).is_file():
        return 0
    latest = load_latest(run)
    assert latest.folder.name == (state / LATEST).read_text().strip()  # no fallback was needed
    return latest.step


def test_sigkill_at_random_moments_resumes_from_the_last_good_checkpoint(warm_parent, data_dirs, tmp_path):
    low, normal = data_dirs
    run, log_path = tmp_path / "run", tmp_path / "train.log"
    new = ["train", "--recipe", "smoke", "--low", str(low), "--normal", str(normal), "--out", str(run),
           "--steps", str(STEPS), "--batch", "1", "--set", f"train.save_every={SAVE_EVERY}",
           "--set", "train.sample_every=100", "--quiet"]  # smoke: tiny G, ndf 8 (small D state), crop 32, 1 thread
    resume = ["train", "--out", str(run), "--resume", "--quiet"]
    seed = int(os.environ.get("ENGAN_KILL_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    why = f"(ENGAN_KILL_SEED={seed}; child output in {log_path})"

    def wait_for_checkpoint_after(step: int, proc) -> float:
        deadline = time.monotonic() + 180
        while proc.is_alive() and _latest_step(run) <= step and time.monotonic() < deadline:
            time.sleep(0.01)
        return time.monotonic()

    last_good, kills, step_time = 0, [], None
    for cycle in range(KILLS):
        proc = _start(new if cycle == 0 else resume, log_path)
        # let it get past its last checkpoint, then kill it at a random moment of the
        # following one or two steps: inside a step, while writing the state or the generator files
        t = wait_for_checkpoint_after(last_good, proc)
        if step_time is None:  # one step + save on this machine, to scale the random delays
            step_time = wait_for_checkpoint_after(_latest_step(run), proc) - t
        time.sleep(rng.uniform(0.0, 1.5) * step_time)
        if not proc.is_alive():
            break  # it finished all steps before the kill
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(30)
        assert proc.exitcode == -signal.SIGKILL, why
        done = max(_metric_steps(run), default=0)  # steps the killed process completed
        good = _check_nothing_is_corrupt(run)
        kills.append((done, good))
        assert good >= last_good, f"the checkpoint went back from step {last_good} to {good} {why}"
        assert done - good <= SAVE_EVERY, f"killed after step {done}, resumable from {good} {why}"
        last_good = good

    assert len(kills) == KILLS, f"only {len(kills)} kill(s) landed before the run finished {why}"
    final = _start(resume, log_path)
    final.join(300)
    assert final.exitcode == 0, f"{log_path.read_text()[-3000:]} {why}"
    assert _check_nothing_is_corrupt(run) == STEPS
    assert read_metadata(run)["engan.step"] == str(STEPS)
    # each step logged exactly once: every resume started at its checkpoint and dropped the lost steps
    assert _metric_steps(run) == list(range(1, STEPS + 1)), why
    assert (run / "snapshots" / f"generator_step{STEPS:06d}.safetensors").is_file()
    assert f"done: {run / 'generator.safetensors'} (step {STEPS})" in log_path.read_text()


# ----------------------------------------------------------------------------- disk full


def _tiny_config(data_dirs, steps: int, **train) -> ExperimentConfig:
    return tiny_config(data_dirs, steps, **{"batch": 1, "save_every": 1, "sample_every": 100,
                                            "ema_decay": TrainConfig().ema_decay, **train})


def _disk_full_for_generator_files(monkeypatch):
    """Make every atomic write of a ``generator*`` file fail with ENOSPC after a third of its bytes."""
    return disk_full_for(monkeypatch, lambda p: p.name.startswith("generator"), divisor=3)


@pytest.fixture(scope="module")
def disk_full_run(data_dirs, tmp_path_factory):
    """A 3-step run whose generator writes hit ENOSPC from step 2 on: (run folder, generator bytes at
    step 1, the warnings logged, the error the final save raised)."""
    out = tmp_path_factory.mktemp("diskfull") / "run"
    t = Trainer(_tiny_config(data_dirs, steps=3), out, progress=False)
    t.fit(until=1)
    before = {p.name: p.read_bytes() for p in out.glob("generator*.safetensors")}
    records: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda r: records.append(r.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("engan.train")
    logger.addHandler(handler)
    try:
        with _disk_full_for_generator_files(pytest.MonkeyPatch()), pytest.raises(OSError) as err:
            t.fit()  # step 2 warns and goes on; the final save (step 3) raises
    finally:
        logger.removeHandler(handler)
    return out, before, records, err.value


def test_disk_full_while_writing_the_generator_keeps_the_previous_one(disk_full_run):
    """ENOSPC half-way through the generator files: the previous ones stay complete and loadable,
    no temp file is left, training goes on, and the final save raises instead of pretending success."""
    out, before, warnings_logged, error = disk_full_run
    assert str(error) == "[Errno 28] No space left on device"
    assert warnings_logged[0] == ("checkpoint at step 2 failed ([Errno 28] No space left on device); "
                                  "the previous checkpoint is kept")
    assert {p.name: p.read_bytes() for p in out.glob("generator*.safetensors")} == before
    assert read_metadata(out)["engan.step"] == "1"
    load_generator(out, preset="tiny")
    hidden = [p.name for p in out.rglob(".*") if p.is_file()]
    assert hidden == [], f"temp files left behind: {hidden}"
    assert sorted(p.name for p in (out / "snapshots").iterdir()) == [
        "generator_raw_step000001.safetensors", "generator_step000001.safetensors"]


def _copy_run(src: Path, dst: Path) -> Path:
    import shutil

    return Path(shutil.copytree(src, dst))


def test_generator_file_catches_up_with_the_state_after_a_failed_write(disk_full_run, data_dirs, tmp_path):
    """A failed generator write leaves the state ahead of the generator files; --resume rewrites them
    from the state, so generator.safetensors always ends at the state's step."""
    out = _copy_run(disk_full_run[0], tmp_path / "run")
    Trainer(_tiny_config(data_dirs, steps=3), out, resume=True, progress=False).fit()  # disk space is back
    assert read_metadata(out)["engan.step"] == str(load_latest(out).step) == "3"
    assert (out / "snapshots" / "generator_step000003.safetensors").is_file()


def test_resume_removes_temp_files_a_killed_run_left(disk_full_run, data_dirs, tmp_path):
    """A SIGKILL during an atomic generator write leaves a hidden temp file; --resume deletes them."""
    out = _copy_run(disk_full_run[0], tmp_path / "run")
    stale = [out / ".generator.safetensors.k3j2h1g0.tmp",
             out / "snapshots" / ".generator_step000002.safetensors.x1.tmp"]
    for p in stale:
        p.write_bytes(b"half a generator")  # what atomic_open leaves when the process is killed mid-write
    Trainer(_tiny_config(data_dirs, steps=3), out, resume=True, progress=False).fit()
    assert [p.name for p in stale if p.exists()] == []
