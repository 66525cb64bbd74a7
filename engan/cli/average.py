"""`engan average`: the uniform mean of a run's last snapshots (or of given generator files)."""
from __future__ import annotations

from pathlib import Path

import click

from engan.config import DENOISE_MODES

#: the inference-only generator options, shared by `engan average` and `engan configure` (engan/cli/configure.py)
KNEE_OPTION = click.option(
    "--knee", type=click.FloatRange(0.5, 1.0), default=None,
    help="Highlight shoulder of the written generator, applied at inference and in every export: pixels whose "
         "largest channel passes KNEE roll off towards white (hue kept) instead of clipping; 1 = plain clamp. "
         "Changes no weight. [default: the source's own, 1 unless set]")
DENOISE_OPTION = click.option(
    "--denoise", type=click.Choice(list(DENOISE_MODES)), default=None,
    help="Noise removal of the written generator, applied at inference and in every export. full: a local Wiener "
         "(Lee) filter takes out the input's sensor noise as amplified by the enhancement, its level estimated "
         "from each image's flattest 16x16 block (clean photos are left alone). chroma: the same, on colour only "
         "(luma kept: colour speckle goes, fine texture stays). off: none. Changes no weight; docs/experiments.md "
         "measures each. [default: the source's own, off unless set]")


@click.command("average", context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.argument("sources", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--last", type=click.IntRange(2), default=5, show_default=True,
              help="With one run folder as SOURCES: average its LAST newest snapshots "
                   "(snapshots/generator_stepNNNNNN.safetensors, the EMA weights when EMA is on).")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="File to write (atomically). [default: RUN/generator_avg<LAST>.safetensors for a run folder; "
                   "required for a list of files]")
@KNEE_OPTION
@DENOISE_OPTION
def average(sources: tuple[str, ...], last: int, out: str | None, knee: float | None, denoise: str | None) -> None:
    """Average generator weights: a checkpoint chosen by a rule, not by a benchmark.

    SOURCES is one `engan train` run folder, or two or more generator .safetensors files
    of one architecture. BatchNorm statistics are averaged too; the result loads like any
    generator (engan export, engan eval, engan-infer --backend torch).

    \b
    Examples:
      engan average runs/x --last 5                  # -> runs/x/generator_avg5.safetensors
      engan average a.safetensors b.safetensors --out ab.safetensors
      engan average runs/x --last 5 --knee 0.8       # + highlight shoulder above 0.8
      engan average runs/x --knee 0.8 --denoise full # + noise removal
    """
    from engan.models.averaging import last_snapshots, save_average
    from engan.models.checkpoint import CheckpointError

    try:
        if len(sources) == 1 and Path(sources[0]).is_dir():
            paths = last_snapshots(sources[0], last)
            target = Path(out) if out else Path(sources[0]) / f"generator_avg{last}.safetensors"
        else:
            if any(Path(s).is_dir() for s in sources):
                raise click.UsageError("pass one run folder, or generator files only (not a mix)")
            if out is None:
                raise click.UsageError("--out FILE is required when averaging a list of files")
            paths, target = [Path(s) for s in sources], Path(out)
        if target.resolve() in {p.resolve() for p in paths}:
            raise click.UsageError(f"--out {target} is one of the inputs; write the average to another file")
        save_average(paths, target, knee=knee, denoise=denoise)
    except CheckpointError as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"averaged {len(paths)} generators ({', '.join(p.name for p in paths)}) -> {target}")
