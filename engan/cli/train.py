"""`engan train`: resolve a recipe (+ file + settings) into an ExperimentConfig and run the Trainer."""
from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import click

#: the recipe a new run starts from when neither --recipe nor --config is given: the shipped model's
DEFAULT_RECIPE = "v3"

#: options of earlier releases -> the setting each now is ("loss:NAME" = a term's weight); they still work
#: for one release, each with a one-line deprecation notice
LEGACY_OPTIONS: dict[str, str] = {
    "preset": "model.preset", "head": "model.generator.head", "curve_iters": "model.generator.curve_iters",
    "crop": "data.crop", "save_every": "train.save_every", "sample_every": "train.sample_every",
    "threads": "train.threads", "workers": "data.workers", "ema_decay": "train.ema_decay",
    "ndf": "discriminator.ndf", "darken_prob": "data.darken_prob", "darken_min": "data.darken_min",
    "darken_max": "data.darken_max", "feature_net": "loss.sfp.feature_net", "vgg_weights": "loss.sfp.vgg_weights",
    "color_cell": "loss.color.cell", "exposure_level": "loss.exposure.level", "order_slope": "loss.order.slope",
    "color_weight": "loss:color", "exposure_weight": "loss:exposure", "order_weight": "loss:order",
    "identity_weight": "loss:identity", "highlight_weight": "loss:highlight",
}


def legacy_settings(values: dict[str, object]) -> tuple[list[str], list[str], list[str]]:
    """Given legacy option values -> (``--set`` items, ``--loss`` items, deprecation notices)."""
    sets, losses, notes = [], [], []
    for name, value in values.items():
        if value is None:
            continue
        target, flag = LEGACY_OPTIONS[name], "--" + name.replace("_", "-")
        if target.startswith("loss:"):
            item = f"{target[5:]}={value}"
            losses.append(item)
            notes.append(f"{flag} is deprecated and goes in the next release; use --loss {item}")
        else:
            if name == "vgg_weights":
                value = Path(str(value)).resolve()
                if values.get("feature_net") is None:  # as before: weights given means VGG16
                    sets.append("loss.sfp.feature_net=vgg16")
            item = f"{target}={value}"
            sets.append(item)
            notes.append(f"{flag} is deprecated and goes in the next release; use --set {item}")
    return sets, losses, notes


def pretrained_model(value: str):
    """``--pretrained``: a generator file, a run folder or a shipped model name -> (file, its ModelConfig).

    Raises:
        click.BadParameter: nothing usable at ``value`` (the message says what to pass).
    """
    from engan.config import ModelConfig, preset_for_width
    from engan.models.checkpoint import CheckpointError, generator_config_from_metadata, read_metadata, resolve_checkpoint

    try:
        path = resolve_checkpoint(value).resolve()
        meta = read_metadata(path)
        gen = generator_config_from_metadata(meta)
    except CheckpointError as e:
        raise click.BadParameter(str(e), param_hint="--pretrained") from None
    return path, ModelConfig(preset=meta.get("engan.preset", preset_for_width(gen.base_width)), generator=gen)


class _TrainCommand(click.Command):
    """Lists the recipes and the registered loss terms under the options in ``--help``."""

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        from engan.losses.registry import help_lines
        from engan.recipes import recipe_help

        with formatter.section("Recipes (--recipe)"):
            formatter.write_dl(recipe_help())
        with formatter.section("Loss terms (--loss NAME=WEIGHT; options: --set loss.NAME.OPTION=VALUE)"):
            formatter.write_dl(help_lines())
        super().format_epilog(ctx, formatter)


def _legacy(name: str, **kw):
    return click.option("--" + name.replace("_", "-"), name, hidden=True, default=None, **kw)


def _legacy_options(f):
    for name in reversed(LEGACY_OPTIONS):
        f = _legacy(name, type=str)(f)
    return click.option("--amp/--no-amp", "amp", hidden=True, default=None)(f)


@click.command("train", cls=_TrainCommand, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
               epilog="Settings apply in order: the recipe, then --config, then --set/--loss and the options above. "
                      "A run's config.json holds everything it used: `engan train --config runs/x/config.json "
                      "--out runs/y` repeats it.")
@click.option("--recipe", default=None, metavar="NAME",
              help=f"Named recipe to start from (listed below). [default: {DEFAULT_RECIPE}, the shipped model's, "
                   "unless --config is given; on --resume: the saved run's]")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="Settings file over the recipe: TOML, YAML or JSON with the sections of config.json (model, "
                   "discriminator, loss, data, train); a run's config.json repeats that run. [default: none]")
@click.option("--low", type=click.Path(file_okay=False), default=None,
              help="Folder of low-light images (recursive; PNG/JPEG/BMP/TIFF/WebP, any size >= the crop). "
                   "Required for a new run unless the --config file names it.")
@click.option("--normal", type=click.Path(file_okay=False), default=None,
              help="Folder of normal-light images, unpaired with --low. Required like --low.")
@click.option("--out", "out", type=click.Path(file_okay=True), required=True,
              help="Run folder to create (generator.safetensors, snapshots/, state/, samples/, metrics.jsonl, "
                   "config.json). Must be new or empty unless --resume.")
@click.option("--loss", "losses", multiple=True, metavar="NAME=WEIGHT",
              help="Weight of one loss term (listed below; 0 switches it off). Repeat for several.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Any single setting, as SECTION.FIELD=VALUE: train.lr=1e-4, data.crop=256, "
                   "model.generator.refine=gain, loss.order.slope=0.3, data.degrade.stops=0,1.5. Repeat for several.")
@click.option("--steps", type=click.IntRange(1), default=None,
              help="Total optimisation steps (a resumed run continues up to this). [default: the recipe's]")
@click.option("--batch", type=click.IntRange(1), default=None,
              help="Images per step and per process (DDP: x world size). [default: the recipe's]")
@click.option("--lr", type=click.FloatRange(0, min_open=True), default=None,
              help="Adam learning rate of G and both discriminators: constant for the first half of the steps, "
                   "then linear decay to 0 (train.decay_start). [default: the recipe's; paper: 1e-4]")
@click.option("--pretrained", type=str, default=None, metavar="PATH|NAME",
              help="Start the generator from these weights (a fine-tune): a .safetensors generator, a run folder "
                   "or a shipped model name (engan-lite). Without --recipe/--config the run takes the file's "
                   "generator; with them, the file must fit theirs (stages it lacks start fresh). Discriminators "
                   "start fresh. Ignored on --resume. [default: random init]")
@click.option("--resume", is_flag=True, default=False,
              help="Continue the run in --out from its last complete checkpoint (also to a larger --steps). "
                   "Settings not given keep their saved values; architecture settings may not change.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default=None,
              help="Where to train; auto = CUDA when available (float16 autocast), else CPU. [default: auto]")
@click.option("--seed", type=int, default=None,
              help="Seed of initialisation, sampling and augmentation; same seed = same run. [default: 0]")
@click.option("--quiet", is_flag=True, default=False, help="No progress bar. [default: off]")
@_legacy_options
def train(recipe, config_file, low, normal, out, losses, sets, steps, batch, lr, pretrained, resume, device, seed,
          quiet, amp, **legacy) -> None:
    """Train EnlightenGAN on unpaired low-light (--low) and normal-light (--normal) folders.

    \b
    Examples:
      engan train --recipe v3 --low data/low --normal data/normal --out runs/x
      engan train --recipe smoke --low data/low --normal data/normal --out runs/t   # seconds, CPU
      engan train --out runs/x --resume --steps 3000
      engan train --config runs/x/config.json --out runs/x2 --seed 1
    Multi-GPU / multi-node: torchrun --nproc_per_node N $(which engan) train ...
    """
    from engan.config import ExperimentConfig
    from engan.data import DataError
    from engan.losses import FeatureNetError, LossConfigError
    from engan.models.checkpoint import CheckpointError
    from engan.recipes import ConfigError, resolve, settings_layer
    from engan.train import RunDirError, Trainer, TrainingDiverged
    from engan.train.logbook import CONFIG_FILE
    from engan.train.state import StateError

    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    out_dir = Path(out)
    old_sets, old_losses, notes = legacy_settings(legacy)
    if amp is not None:
        old_sets.append(f"train.amp={amp}")
        notes.append(f"--{'' if amp else 'no-'}amp is deprecated and goes in the next release; use --set train.amp={str(amp).lower()}")
    for note in notes:
        click.echo(f"engan train: {note}", err=True)
    base = None
    if resume:
        if recipe is not None:
            raise click.UsageError("--recipe with --resume: a resumed run keeps its saved recipe; change single "
                                   "settings with --set or --loss")
        cfg_file = out_dir / CONFIG_FILE
        if not cfg_file.is_file():
            raise click.UsageError(f"--resume: {cfg_file} not found; there is no run to continue in {out_dir} "
                                   "(drop --resume to start a new run)")
        base = ExperimentConfig.from_dict(json.loads(cfg_file.read_text()))
    chosen = recipe is not None or config_file is not None
    if not resume and not chosen:
        recipe = DEFAULT_RECIPE
    direct = {"train": {k: v for k, v in (("steps", steps), ("batch", batch), ("lr", lr), ("device", device),
                                          ("seed", seed)) if v is not None}}
    for key, folder in (("low_dir", low), ("normal_dir", normal)):
        if folder is not None:
            direct.setdefault("data", {})[key] = str(Path(folder).resolve())
    try:
        layer = settings_layer(list(old_sets) + list(sets), list(old_losses) + list(losses))
        cfg = resolve(recipe, config_file, base=base)
        if pretrained is not None and not resume:
            path, model = pretrained_model(pretrained)
            # a recipe or file chose the generator: the weights must fit it (checked when loaded); else take the file's
            cfg = dataclasses.replace(cfg, model=cfg.model if chosen else model,
                                      train=dataclasses.replace(cfg.train, pretrained=str(path)))
        cfg = resolve(settings=_merge(layer, direct), base=cfg)
    except ConfigError as e:
        raise click.UsageError(str(e)) from None
    if not resume and not (cfg.data.low_dir and cfg.data.normal_dir):
        raise click.UsageError("a new run needs --low DIR and --normal DIR (or a --config file that names them)")
    if cfg.data.darken_min > cfg.data.darken_max:
        raise click.UsageError(f"data.darken_min {cfg.data.darken_min:g} is above data.darken_max "
                               f"{cfg.data.darken_max:g}; give a range with min <= max")
    try:
        trainer = Trainer(cfg, out_dir, resume=resume, progress=not quiet)
        try:
            trainer.fit()
        finally:
            trainer.close()
    except LossConfigError as e:
        raise click.UsageError(str(e)) from None
    except (CheckpointError, DataError, FeatureNetError, RunDirError, StateError, TrainingDiverged) as e:
        raise click.ClickException(str(e)) from None
    if trainer.is_main:
        click.echo(f"done: {out_dir / 'generator.safetensors'} (step {trainer.step_no})")


def _merge(a: dict, b: dict) -> dict:
    """Nested ``a`` updated by ``b`` (neither changed)."""
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in a.items()}
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out
