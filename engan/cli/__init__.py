"""The ``engan`` command: a click group whose subcommands load lazily.

``engan --help`` stays instant and imports no torch; each subcommand imports what
it needs only when it runs.
"""
from __future__ import annotations

import importlib

import click

from engan import __version__

#: name -> ("module:attribute", one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "train": ("engan.cli.train:train", "Train EnlightenGAN on unpaired low/normal-light folders."),
    "export": ("engan.cli.export:export", "Export a generator to ONNX (FP32/FP16/INT8), TensorRT and a Triton repository."),
    "eval": ("engan.cli.eval:eval_cmd", "Score a model and its peers on LOL / unpaired sets."),
    "average": ("engan.cli.average:average", "Average a run's last snapshots (or given generators) into one."),
    "configure": ("engan.cli.configure:configure", "Copy a generator with other inference options (--knee, --denoise)."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(SUBCOMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in SUBCOMMANDS:
            return None
        target, _ = SUBCOMMANDS[name]
        mod, attr = target.split(":")
        return getattr(importlib.import_module(mod), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, SUBCOMMANDS[name][1]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="engan")
def main() -> None:
    """engan: EnlightenGAN low-light enhancement.

    \b
    Typical flow:
      engan train --low DARK/ --normal BRIGHT/ --out runs/x
      engan export --checkpoint runs/x --fp16 --out exports/x
      engan-infer photos/ out/ --model exports/x/model.onnx --html
    """
