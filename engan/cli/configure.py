"""`engan configure`: copy a generator with other inference-time options (weights untouched)."""
from __future__ import annotations

from pathlib import Path

import click

from engan.cli.average import DENOISE_OPTION, KNEE_OPTION


@click.command("configure", context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.argument("checkpoint", type=click.Path(exists=True))
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="File to write (atomically).")
@KNEE_OPTION
@DENOISE_OPTION
def configure(checkpoint: str, out: str, knee: float | None, denoise: str | None) -> None:
    """Copy a generator with other inference-time options; the weights are not touched.

    CHECKPOINT is a generator .safetensors file or an `engan train` run folder (its
    generator.safetensors). The options act in eval mode only, so they are part of every
    export (engan export) and of the torch backend alike.

    \b
    Examples:
      engan configure runs/x/generator_avg5.safetensors --knee 0.8 --denoise full --out model.safetensors
      engan configure model.safetensors --denoise off --out plain.safetensors
    """
    from engan.models.checkpoint import CheckpointError, resolve_checkpoint, save_with_inference_options

    try:
        src = resolve_checkpoint(checkpoint)
        if Path(out).resolve() == src.resolve():
            raise click.UsageError(f"--out {out} is the input; write to another file")
        if knee is None and denoise is None:
            raise click.UsageError("nothing to change: give --knee and/or --denoise")
        save_with_inference_options(src, out, knee=knee, denoise=denoise)
    except CheckpointError as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"{src} -> {out} (knee {'kept' if knee is None else knee}, denoise {'kept' if denoise is None else denoise})")
