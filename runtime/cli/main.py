"""``engan-infer``'s command line: the options, checked and turned into one :class:`InferOptions`.

Nothing else happens here: :func:`engan.runtime.cli.pipeline.run` does the work and
this module prints the summary and exits with the run's code.
"""
from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import click

from engan.runtime.cli.jobs import InferOptions
from engan.runtime.cli.pipeline import run
from engan.runtime.entry import Interrupted, exit_code, startup_line, stop_requested, stop_signals
from engan.runtime.imageio import DEFAULT_MAX_IMAGE_PIXELS, DEFAULT_PNG_COMPRESS
from engan.runtime.prepost import DEFAULT_MAX_PIXELS, DEFAULT_OVERLAP, FADE_RANGE, PAD_MULTIPLE, check_fade_range
from engan.runtime.select import AUTO, BACKENDS
from engan.runtime.video.api import VIDEO_EXT_CHOICES
from engan.runtime.video.writer import DEFAULT_CRF, DEFAULT_PRESET, PRESETS

#: What ``--backend auto`` tries for an .onnx, best first (from the auto rule).
_AUTO_ORDER = " > ".join(c.label for c in AUTO if "onnx" in c.kinds)


def _is_ray_address(text: str) -> bool:
    """``local``, ``auto``, ``ray://host:port``, ``host:port``: what ``--ray`` takes as a cluster address."""
    return text in ("local", "auto") or text.startswith(("ray://", "http://", "https://")) or bool(
        re.fullmatch(r"[\w.-]+:\d+", text) and not os.path.exists(text))


def _inputs_and_ray(inputs: tuple[str, ...], ray: str | None) -> tuple[tuple[str, ...], str | None]:
    """``--ray`` takes the next word as its address; a word that is not one (``--ray photos/ out/``) is an INPUT."""
    if ray is not None and not _is_ray_address(ray):
        inputs, ray = (ray, *inputs), "local"
    if not inputs:
        raise click.UsageError("Missing argument 'INPUT...'.")
    return inputs, ray


@click.command(
    "engan-infer",
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog=(
        "Exit codes: 0 all enhanced (or skipped), 1 some files failed (each printed as "
        "'FAILED <path>: <reason>', index.html included), 2 usage error (nothing processed), "
        "128 + the signal number when stopped by a signal: 130 SIGINT (Ctrl-C), 129 SIGHUP, "
        "143 SIGTERM. A signal stops the run cleanly at any moment: writes under way finish or "
        "are removed, no temp file is left, and the summary is printed.\n\n"
        "Examples:\n\n"
        "  engan-infer photos/ out/\n\n"
        "  engan-infer 'shots/**/*.jpg' out/ --ext jpg --quality 90 --html\n\n"
        "  engan-infer big.tif out/ --model model.onnx --tile 512 --compare\n\n"
        "  engan-infer night/ out/ --backend openvino\n\n"
        "  engan-infer clip.mp4 night/ out/ --video-ext mkv --crf 20\n\n"
        "  engan-infer s3://bucket/night/ /shared/out --ray auto"),
)
@click.argument("inputs", metavar="INPUT...", nargs=-1)
@click.argument("output_dir", metavar="OUTPUT_DIR", nargs=1, type=click.Path(path_type=Path))
@click.option("--model", default=None, metavar="PATH|NAME",
              help="Model to run: an .onnx file, a TensorRT .engine/.plan, a .safetensors "
                   "checkpoint (needs torch), or the name of a shipped model.  "
                   "[default: the shipped model]")
@click.option("--backend", type=click.Choice(["auto", *BACKENDS], case_sensitive=False),
              default="auto", show_default=True,
              help=f"Inference engine. For an .onnx, auto picks the first that works here of {_AUTO_ORDER}; "
                   "the INT8 copy (<name>.int8.onnx) next to an .onnx runs on a CPU when one made from the same "
                   "checkpoint is there, while --backend ort runs the file as given. The first line names the "
                   "choice, --verbose says why.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"], case_sensitive=False),
              default="auto", show_default=True, help="Where to run the model.")
@click.option("--ext", type=click.Choice(["png", "jpg", "webp", "same"], case_sensitive=False),
              default="png", show_default=True,
              help="Output format. png keeps 16 bits and alpha; jpg flattens alpha onto white "
                   "and rounds 16-bit to 8-bit (said once); same keeps each input's format "
                   "(PNG, JPEG, WebP, BMP, TIFF; others become PNG).")
@click.option("--quality", type=click.IntRange(1, 100), default=95, show_default=True,
              help="JPEG/WebP quality.")
@click.option("--png-compress", type=click.IntRange(0, 9), default=DEFAULT_PNG_COMPRESS, show_default=True,
              metavar="0-9",
              help="zlib level of PNG outputs (lossless at every level): 1 is fast, 9 gives files "
                   "about 15 % smaller at 4-5x the encoding time.")
@click.option("--video-ext", type=click.Choice(VIDEO_EXT_CHOICES, case_sensitive=False), default="mp4",
              show_default=True,
              help="Container of video outputs: mp4 or mkv (H.264, audio copied untouched), or same as each "
                   "input's (mp4, mov, mkv, webm, avi, m4v; WebM gets VP9). --ext and --quality are for photos.")
@click.option("--crf", type=click.IntRange(0, 51), default=DEFAULT_CRF, show_default=True, metavar="0-51",
              help="Video quality (constant rate factor): lower is better and larger, 0 lossless; "
                   f"{DEFAULT_CRF} looks like the input.")
@click.option("--preset", type=click.Choice(PRESETS), default=DEFAULT_PRESET, show_default=True, metavar="NAME",
              help=f"Video encoder speed, x264's preset names: {', '.join(PRESETS)}. Faster ones make larger "
                   "files at the same --crf.")
@click.option("--suffix", default="", show_default=True, metavar="STR",
              help="Appended to each output name before the extension, e.g. _enhanced.")
@click.option("--skip-existing", is_flag=True,
              help="Keep outputs that already exist and enhance only the missing ones "
                   "(resume an interrupted run).  [default: refuse to run if any exists]")
@click.option("--overwrite", is_flag=True,
              help="Replace outputs that already exist.  [default: refuse to run if any exists]")
@click.option("-r", "--recursive", is_flag=True,
              help="Enter sub-folders of folder inputs and mirror their tree under OUTPUT_DIR.  "
                   "[default: only the folder's own files]")
@click.option("--follow-symlinks", is_flag=True,
              help="In folder inputs, also follow symlinks (to files or folders) that lead out of the "
                   "folder.  [default: left out, and said so; symlinks inside the folder's own tree "
                   "and files named on the command line are always read]")
@click.option("--max-pixels", type=click.IntRange(min=0), default=None, metavar="N",
              help="Pixel budget of one model call; larger images are processed as "
                   "overlapping tiles blended together; 0 never tiles.  "
                   "[default: the runtime's, 1000000]")
@click.option("--tile", type=click.IntRange(min=16), default=None, metavar="N",
              help="Force square tiles of N pixels (a multiple of 16, at least 80) for every image.  "
                   "[default: tile only above --max-pixels]")
@click.option("--threads", type=click.IntRange(min=1), default=None, metavar="N",
              help="Threads the backend may use for one image; more than the CPUs this process may "
                   "use is lowered to that number (a note says so).  [default: the backend's "
                   "choice]")
@click.option("--max-image-pixels", type=click.IntRange(min=0), default=DEFAULT_MAX_IMAGE_PIXELS,
              show_default=True, metavar="N",
              help="Decompression-bomb guard: refuse files whose header claims more pixels, "
                   "before decoding them. 0 turns the guard off (trusted files only).")
@click.option("-j", "--workers", type=click.IntRange(0, 64), default=2, show_default=True,
              metavar="N",
              help="Decode threads and encode threads that overlap inference. 0 does "
                   "everything in one thread.")
@click.option("--batch", type=click.IntRange(1, 256), default=1, show_default=True, metavar="N",
              help="Enhance up to N consecutive same-size images (or N frames of a video) in one model call.")
@click.option("--compare", is_flag=True,
              help="Also write <name>_compare.<ext>: input | output side by side (twice as wide). Photos only.")
@click.option("--html", is_flag=True,
              help="Write OUTPUT_DIR/index.html showing every input next to its result, with "
                   "sizes, timings and the backend used (links are relative); a video shows the same "
                   "frame of both, from OUTPUT_DIR/.posters, linking to both videos. An existing index.html "
                   "is refused, kept or replaced like the images (--skip-existing, --overwrite).")
@click.option("--fade-bright", is_flag=True,
              help="Fade the enhancement out for photos that are not dark, by each photo's mean "
                   f"brightness (luma): full up to {FADE_RANGE[0]:g} (the brightest of the dark training photos), "
                   f"none from {FADE_RANGE[1]:g} (the well-lit training photos' mean), smooth in between. Use it "
                   "on folders that mix dark and well-exposed photos: the model alone washes the "
                   "well-exposed ones out. Same pixels on every backend (applied by the runtime, "
                   "over the whole image, tiled or not).  [default: off, the model's output as it is]")
@click.option("--fade-range", type=(float, float), default=None, metavar="LO HI",
              help=f"Mean-luma range of --fade-bright (implies it), 0 <= LO < HI <= 1.  "
                   f"[default: {FADE_RANGE[0]:g} {FADE_RANGE[1]:g}]")
@click.option("--ray", "ray_address", is_flag=False, flag_value="local", default=None, metavar="[ADDRESS]",
              help="Run on Ray Data (pip install 'engan[ray]'): each actor loads the model once and writes "
                   "byte-identical outputs. --ray or --ray local starts a local Ray on this machine's CPUs; "
                   "--ray ADDRESS joins a cluster (auto, ray://host:10001, host:6379), where OUTPUT_DIR and "
                   "--model must be reachable from every node. INPUT may also be a pyarrow URI "
                   "(s3://bucket/night/).  [default: off]")
@click.option("-v", "--verbose", is_flag=True,
              help="Also print, under the first line, the model file, why this backend was chosen and why "
                   "each better one was not, the library versions, threads and tiling.")
@click.option("-q", "--quiet", is_flag=True,
              help="No progress bar, warnings or summary; only 'FAILED' lines are printed (and the "
                   "'interrupted' line when a signal stops the run).")
def main(inputs: tuple[str, ...], output_dir: Path, model: str | None, backend: str, device: str,
         ext: str, quality: int, png_compress: int, video_ext: str, crf: int, preset: str, suffix: str,
         skip_existing: bool, overwrite: bool,
         recursive: bool, follow_symlinks: bool, max_pixels: int | None, tile: int | None, threads: int | None,
         max_image_pixels: int, workers: int, batch: int, compare: bool, html: bool,
         fade_bright: bool, fade_range: tuple[float, float] | None, ray_address: str | None,
         verbose: bool, quiet: bool) -> None:
    r"""Enhance low-light photos with EnlightenGAN, without PyTorch.

    INPUT... are image or video files, folders or glob patterns (quote them to let
    engan-infer expand them, '**' included). Each output is written to OUTPUT_DIR
    (created if missing) at the input's size, atomically: a file there is complete or
    absent, even if the run is killed. Grey stays grey, alpha is kept, 16-bit PNGs stay
    16-bit (with --ext png), EXIF orientation is applied and ICC profiles are kept.
    Videos (mp4, mov, mkv, webm, avi, m4v; needs pip install 'engan[video]') are
    enhanced after the photos, one at a time, without flicker, keeping their timing and
    audio: clip.mov becomes OUTPUT_DIR/clip.mp4 (see --video-ext).

    The first line names the model and its release, its precision and the backend
    with its device, e.g. '<model> <release> · INT8 · ONNX Runtime CPU'; --verbose
    adds why that backend was chosen. A file that cannot be read, decoded or written
    prints one 'FAILED <path>: <reason>' line and the others go on. The last line is
    'N enhanced, M failed, K skipped in T s'. Control characters in printed file
    names are shown as escapes (\n, \x1b).
    """
    inputs, ray_address = _inputs_and_ray(inputs, ray_address)
    if skip_existing and overwrite:
        raise click.UsageError("--skip-existing and --overwrite contradict each other; pass one")
    if os.sep in suffix or (os.altsep and os.altsep in suffix):
        raise click.BadParameter("must not contain a path separator", param_hint="--suffix")
    if tile is not None:
        budget = DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels
        if tile % PAD_MULTIPLE:
            raise click.BadParameter(f"must be a multiple of {PAD_MULTIPLE}, got {tile}", param_hint="--tile")
        if tile < DEFAULT_OVERLAP + PAD_MULTIPLE:
            raise click.BadParameter(
                f"must be at least {DEFAULT_OVERLAP + PAD_MULTIPLE} (tiles overlap by {DEFAULT_OVERLAP} px), "
                f"got {tile}", param_hint="--tile")
        if budget and tile * tile > budget:
            raise click.BadParameter(
                f"{tile}x{tile} tiles exceed the {budget}-pixel budget of one model call; "
                f"use a smaller --tile or raise --max-pixels to at least {tile * tile}", param_hint="--tile")
    fade = None
    if fade_bright or fade_range is not None:
        try:
            fade = check_fade_range(fade_range or FADE_RANGE)
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="--fade-range") from None
    opts = InferOptions(
        inputs=tuple(inputs), output_dir=output_dir, model=model, backend=backend.lower(),
        device=device.lower(), ext=ext.lower(), quality=quality, png_compress=png_compress, suffix=suffix,
        existing="skip" if skip_existing else "overwrite" if overwrite else "refuse",
        recursive=recursive, follow_symlinks=follow_symlinks, max_pixels=max_pixels, tile=tile, threads=threads,
        max_image_pixels=max_image_pixels, workers=workers, batch=batch, compare=compare,
        html=html, quiet=quiet, verbose=verbose, fade=fade, video_ext=video_ext.lower(), crf=crf, preset=preset)
    with stop_signals():  # a no-op under engan-infer's entry point, which installed them first
        try:
            if ray_address is not None:
                from engan.runtime.ray import run_ray

                try:
                    result = run_ray(opts, ray_address)
                except ImportError as e:
                    raise click.UsageError(str(e)) from None
            else:
                result = run(opts)
        except (Interrupted, KeyboardInterrupt) as e:  # before any file was processed
            signum = getattr(e, "signum", signal.SIGINT)
            click.echo(startup_line(signum), err=True)
            click.get_current_context().exit(exit_code(signum))
        if result.interrupted:
            click.echo(result.interrupted_line, err=True)
        if not quiet:
            click.echo(result.summary)
        late = stop_requested()  # a signal while printing: still a stopped run
        code = exit_code(late) if late and not result.interrupted else result.exit_code
    click.get_current_context().exit(code)
