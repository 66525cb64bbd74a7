"""``engan eval``: score a model against the input and its peers on paired and unpaired sets."""
from __future__ import annotations

from pathlib import Path

import click

from engan.runtime.prepost import FADE_RANGE
from engan.runtime.select import BACKENDS


def _default_out(model: str | None) -> Path:
    from engan.eval.enhancers import model_display_name

    return Path("eval_out") / (model_display_name(model) if model is None or model.lower() != "none" else "peers-only")


@click.command("eval", context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.option("--model", "model", default=None, metavar="PATH|NAME",
              help="Model to score: a .safetensors generator or an `engan train` run folder (eager torch), "
                   "an .onnx file (engan runtime / ONNX Runtime), a shipped model name, or 'none' to score "
                   "only the input and the peers.  [default: the model shipped in the package]")
@click.option("--backend", type=click.Choice(["auto", *BACKENDS], case_sensitive=False), default="auto",
              help="Inference backend, as engan-infer's: auto picks the best here; 'ort' needs an .onnx model, "
                   "'openvino' an .onnx or OpenVINO .xml, 'trt' an engine, 'torch' a .safetensors one.")
@click.option("--lol", "lol", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Paired set with low/ and high/ subfolders of matching names (PSNR/SSIM).  "
                   "[default: ../shared/data/lol_eval15 when present, or $ENGAN_SHARED/data/lol_eval15]")
@click.option("--paired", "paired", type=click.Path(file_okay=False, path_type=Path), multiple=True,
              help="More paired sets (low/ + high/), scored like --lol; repeat the option for several.  [default: none]")
@click.option("--public-dark", is_flag=True, default=False,
              help="Also score a paired set built offline from scikit-image's bundled public-domain photos "
                   "(8, longest side 800), darkened as original**2.2 x 0.25 (~2 stops under, crushed shadows). "
                   "No engan model was trained on them: a generalisation check anyone can rerun, synthetic, "
                   "not a benchmark. "
                   "Written to OUT/public_dark/.  [default: off]")
@click.option("--unpaired", "unpaired", type=click.Path(file_okay=False, path_type=Path), multiple=True,
              help="Unpaired image folder(s) for NIQE/BRISQUE/brightness; give several folders after one --unpaired "
                   "or repeat the option.  [default: ../shared/data/unpaired_test/{DICM,LIME} when present]")
@click.option("--peers", default="all",
              help="Comma-separated peers to compare with (zero-dce, zero-dce++, pairlie, pairlie-lol), 'all' (every "
                   "peer whose weights are in --peers-dir) or 'none'. A named peer whose weights are missing is left "
                   "out with a note.")
@click.option("--peers-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder with zero_dce/Epoch99.pth, zero_dce_pp/Epoch99.pth and pairlie/PairLIE.pth.  "
                   "[default: ../shared/peers]")
@click.option("--zero-dce-pp-scale", type=click.FloatRange(min=1.0), default=1.0,
              help="Zero-DCE++ curve-estimation downscale factor: 1 = full resolution (reproduces 15.14 dB / 0.566 on LOL eval15); "
                   "12 = its authors' test setting.")
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output folder for report.md, report.json and grid_<set>.png.  [default: eval_out/<model-name>]")
@click.option("--max-images", type=click.IntRange(min=1), default=None, help="Evaluate at most N images per set.  [default: all]")
@click.option("--no-grid", is_flag=True, default=False, help="Do not write the comparison grid PNGs.")
@click.option("--grid-rows", type=click.IntRange(min=1), default=4, help="Images (rows) per comparison grid.")
@click.option("--no-unpaired", is_flag=True, default=False, help="Skip the unpaired sets (PSNR/SSIM on the paired set only).")
@click.option("--fast", is_flag=True, default=False,
              help="Quick score of one checkpoint: paired set only, no grid, and no peers unless --peers names "
                   "them (same as --no-unpaired --no-grid --peers none).")
@click.option("--fade-bright", is_flag=True, default=False,
              help="Score the model as `engan-infer --fade-bright` runs it: the enhancement fades out for photos "
                   f"whose mean luma is above {FADE_RANGE[0]:g}, none left from {FADE_RANGE[1]:g} (peers are scored as they are).  "
                   "[default: off]")
@click.option("--quiet", "-q", is_flag=True, default=False, help="No progress bars.")
@click.argument("extra_unpaired", nargs=-1, type=click.Path(file_okay=False, path_type=Path), metavar="")
def eval_cmd(model, backend, lol, paired, public_dark, unpaired, peers, peers_dir, zero_dce_pp_scale, out, max_images,
             no_grid, grid_rows, no_unpaired, fast, fade_bright, quiet, extra_unpaired) -> None:
    """Score a model and its peers on LOL (PSNR/SSIM) and unpaired sets (NIQE/BRISQUE).

    \b
    Rows: the input itself, the model (ours), and each peer with weights found.
    Writes OUT/report.md, OUT/report.json and OUT/grid_<set>.png, and prints the tables.

    \b
    Examples:
      engan eval --model runs/x --fast                      # LOL PSNR/SSIM in seconds
      engan eval --model runs/x/generator.safetensors \\
          --lol ../shared/data/lol_eval15 \\
          --unpaired ../shared/data/unpaired_test/DICM ../shared/data/unpaired_test/LIME \\
          --peers zero-dce,zero-dce++ --out eval_out/x
      engan eval --public-dark --fast                       # shipped model on public photos, darkened
    """
    from engan.eval.datasets import DatasetError, default_lol_dir, default_peers_dir, default_unpaired_dirs
    from engan.eval.enhancers import ModelLoadError
    from engan.eval.peers import PeerError, parse_peers
    from engan.eval.report import tables_text, write_report
    from engan.eval.runner import EvalConfig, run_eval

    if fast:
        no_unpaired, no_grid = True, True
        if click.get_current_context().get_parameter_source("peers") is click.core.ParameterSource.DEFAULT:
            peers = "none"
    try:
        peer_names = parse_peers(peers, peers_dir or default_peers_dir())
    except PeerError as e:
        raise click.BadParameter(str(e), param_hint="--peers") from None
    folders = list(unpaired) + list(extra_unpaired)
    if extra_unpaired and not unpaired:
        raise click.UsageError(f"unexpected argument(s) {' '.join(map(str, extra_unpaired))}; unpaired folders go after --unpaired")
    if no_unpaired:
        folders = []
    elif not folders:
        folders = default_unpaired_dirs()
    lol = lol if lol is not None else default_lol_dir()
    for d in ([lol] if lol else []) + list(paired) + folders:
        if not Path(d).is_dir():
            raise click.BadParameter(f"folder not found: {d}", param_hint="--lol/--paired/--unpaired")
    out = out or _default_out(model)
    if public_dark:
        from engan.eval.public_dark import write_public_dark_set

        try:
            paired = tuple(paired) + (write_public_dark_set(out / "public_dark"),)
        except ModuleNotFoundError as e:
            raise click.ClickException(f"--public-dark needs scikit-image ({e}); pip install 'engan[eval]'") from None
    cfg = EvalConfig(
        model=model, backend=backend, lol=lol, paired=tuple(paired), unpaired=tuple(folders), peers=tuple(peer_names),
        peers_dir=peers_dir, zero_dce_pp_scale=zero_dce_pp_scale, out=out, max_images=max_images,
        grid=not no_grid, grid_rows=grid_rows, fade=FADE_RANGE if fade_bright else None,
    )
    written: dict = {}

    def save(report: dict, grids: dict) -> None:  # after each set, so finished sets survive an interruption
        written.update(write_report(report, grids, cfg.out, grid=cfg.grid))

    try:
        report, _ = run_eval(cfg, progress=not quiet, on_set=save)
    except (DatasetError, ModelLoadError, PeerError) as e:
        raise click.ClickException(str(e)) from None
    click.echo(tables_text(report))
    for note in report["notes"]:
        click.echo(f"note: {note}")
    click.echo(f"\nwrote {', '.join(str(p) for p in written.values())}")
