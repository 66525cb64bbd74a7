"""``engan-infer``'s jobs: the options, finding the inputs, and planning where each output goes.

Discovery expands INPUT arguments (files, folders, glob patterns) through the runtime's
one listing (:mod:`engan.runtime.imageio.listing`), photos and videos alike; planning
names every output (a video's is ``<stem><suffix>.<--video-ext>``), refuses
to write over inputs or existing files (unless asked) or through a symlink out of
OUTPUT_DIR, and gives two inputs with the same output name a reason and working advice.
"""
from __future__ import annotations

import glob
import os
import re
import signal
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePath
from typing import Any, Iterable

import click

from engan.runtime.cli.console import EXIT_FAILED, EXIT_OK, CliError, display_path, quoted
from engan.runtime.entry import exit_code, signal_name
from engan.runtime.imageio import DEFAULT_MAX_IMAGE_PIXELS, DEFAULT_PNG_COMPRESS, EXT_TO_FORMAT
from engan.runtime.imageio.listing import is_image_name, is_inside, natural_key, walk_images
from engan.runtime.video.api import VIDEO_EXTENSIONS, is_video, video_output_name
from engan.runtime.video.writer import DEFAULT_CRF, DEFAULT_PRESET

#: The result page ``--html`` writes into OUTPUT_DIR.
HTML_NAME = "index.html"

#: ``--ext`` choices and what they write.
OUTPUT_EXTS = {"png": ".png", "jpg": ".jpg", "webp": ".webp"}

_GLOB_CHARS = re.compile(r"[*?\[]")


@dataclass(frozen=True)
class InferOptions:
    """Everything ``engan-infer`` was asked to do (one field per command-line option)."""

    inputs: tuple[str, ...]
    output_dir: Path
    model: str | None = None
    backend: str = "auto"
    device: str = "auto"
    ext: str = "png"
    quality: int = 95
    png_compress: int = DEFAULT_PNG_COMPRESS
    suffix: str = ""
    existing: str = "refuse"  # refuse | skip | overwrite
    recursive: bool = False
    follow_symlinks: bool = False
    max_pixels: int | None = None
    tile: int | None = None
    threads: int | None = None
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    workers: int = 2
    batch: int = 1
    compare: bool = False
    html: bool = False
    quiet: bool = False
    verbose: bool = False
    fade: tuple[float, float] | None = None
    video_ext: str = "mp4"  # mp4 | mkv | same
    crf: int = DEFAULT_CRF
    preset: str = DEFAULT_PRESET


@dataclass
class Job:
    """One input file and where its outputs go (``kind``: ``image`` or ``video``; a video's
    :class:`~engan.runtime.video.api.VideoResult` is ``video`` once enhanced, its poster frames
    for ``--html`` are ``posters``)."""

    index: int
    src: Path
    out: Path
    fmt: str
    compare: Path | None = None
    status: str = "pending"  # pending | enhanced | skipped | failed
    reason: str = ""
    size: tuple[int, int] | None = None
    mode: str = ""
    seconds: float | None = None
    notes: list[str] = field(default_factory=list)
    kind: str = "image"
    video: Any = None
    posters: tuple[Path, Path] | None = None

    def fail(self, reason: str) -> None:
        self.status, self.reason = "failed", reason


@dataclass
class RunResult:
    """What a run did: per-file jobs in input order, counts and wall time.

    Attributes:
        interrupted: stopped early by a signal (or a KeyboardInterrupt).
        signum: the signal that stopped it (SIGINT for a KeyboardInterrupt).
        html_failed: ``--html`` was asked for and ``index.html`` could not be written.
    """

    jobs: list[Job]
    seconds: float
    interrupted: bool = False
    info: dict = field(default_factory=dict)
    signum: int = signal.SIGINT
    html_failed: bool = False

    def count(self, status: str) -> int:
        return sum(j.status == status for j in self.jobs)

    @property
    def summary(self) -> str:
        """``N enhanced, M failed, K skipped in T s``."""
        return (f"{self.count('enhanced')} enhanced, {self.count('failed')} failed, "
                f"{self.count('skipped')} skipped in {self.seconds:.1f} s")

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return exit_code(self.signum)
        return EXIT_FAILED if self.count("failed") or self.html_failed else EXIT_OK

    @property
    def interrupted_line(self) -> str:
        by = "" if self.signum == signal.SIGINT else f" by {signal_name(self.signum)}"
        return (f"interrupted{by}: outputs written so far are complete; rerun with --skip-existing "
                "to finish")

# --------------------------------------------------------------------------- discovery


def discover_inputs(inputs: Iterable[str], recursive: bool = False,
                    exclude: str | os.PathLike | None = None, follow_symlinks: bool = False,
                    outside: list[Path] | None = None) -> list[tuple[Path, PurePath]]:
    """Expand INPUT arguments into (file, relative output path) pairs, in a stable order.

    Files keep their name; a folder contributes its image and video files (its whole tree with
    ``recursive``, mirrored under OUTPUT_DIR); a pattern with ``* ? [`` that does not
    name an existing path is expanded here (``**`` included), for shells that do not.
    The same real file reached twice is kept once. Files and patterns are the user's
    own choice and are read wherever they point; inside a folder, symlinks leading out
    of it are left out (collected in ``outside``) unless ``follow_symlinks``.

    Raises:
        click.BadParameter: an argument that names nothing (exit code 2).
    """
    excluded = {os.path.realpath(exclude)} if exclude is not None else set()
    out: list[tuple[Path, PurePath]] = []
    seen: set[str] = set()

    def add(items: list[tuple[Path, PurePath]]) -> None:
        for p, rel in sorted(items, key=lambda t: natural_key(t[1])):
            real = os.path.realpath(p)
            if real not in seen:
                seen.add(real)
                out.append((p, rel))

    def walk(folder: Path) -> list[tuple[Path, PurePath]]:
        try:
            return walk_images(folder, recursive, excluded, follow_symlinks, outside, also=VIDEO_EXTENSIONS)
        except OSError as e:  # a folder that cannot be listed is never silently left out
            raise click.BadParameter(
                f"cannot list folder {quoted(e.filename or folder)}: {e.strerror or e}; fix its permissions "
                "or leave it out of INPUT", param_hint="INPUT") from None

    for arg in inputs:
        p = Path(arg)
        if p.is_dir():
            add(walk(p))
        elif p.exists() or p.is_symlink():
            add([(p, PurePath(p.name))])
        elif _GLOB_CHARS.search(arg):
            matches = sorted(glob.glob(arg, recursive=True))
            if not matches:
                raise click.BadParameter(f"no file matches {quoted(arg)}", param_hint="INPUT")
            for m in matches:
                mp = Path(m)
                if mp.is_dir():
                    add(walk(mp))
                elif is_image_name(mp.name, VIDEO_EXTENSIONS):
                    add([(mp, PurePath(mp.name))])
        else:
            raise click.BadParameter(f"{quoted(arg)} does not exist", param_hint="INPUT")
    return out


# --------------------------------------------------------------------------- planning


def _output_ext(src: Path, ext: str) -> tuple[str, str]:
    """(extension, Pillow format) of an input's output; ``same`` keeps writable formats."""
    if ext == "same":
        suffix = src.suffix
        fmt = EXT_TO_FORMAT.get(suffix.lower())
        return (suffix, fmt) if fmt else (".png", "PNG")
    e = OUTPUT_EXTS[ext]
    return e, EXT_TO_FORMAT[e]


def _make_job(i: int, src: Path, rel: PurePath, opts: InferOptions) -> Job:
    stem = Path(rel.name).stem + opts.suffix
    parent = opts.output_dir / rel.parent
    if is_video(src):  # no compare video: --compare is for photos
        ext = os.path.splitext(video_output_name(rel.name, opts.video_ext))[1]
        return Job(index=i, src=src, out=parent / (stem + ext), fmt="", kind="video")
    ext, fmt = _output_ext(src, opts.ext)
    return Job(index=i, src=src, out=parent / (stem + ext), fmt=fmt,
               compare=parent / f"{stem}_compare{ext}" if opts.compare else None)


def drop_own_outputs(found: list[tuple[Path, PurePath]], opts: InferOptions
                     ) -> tuple[list[tuple[Path, PurePath]], list[Path]]:
    """Leave out inputs that are outputs of other inputs of this run.

    With OUTPUT_DIR inside (or equal to) an input folder, a rerun would otherwise
    enhance ``a_enh.png`` (or ``a_compare.png``) again. Only names this run would
    produce with a ``--suffix`` or as compare images are left out: an input that
    shares its stem with another input's output (``a.png`` beside ``a.jpg``) is
    kept, so the refusal to overwrite inputs protects it.

    Returns:
        (inputs to keep, inputs left out).
    """
    producer: dict[str, int] = {}
    for i, (src, rel) in enumerate(found):
        job = _make_job(i, src, rel, opts)
        if opts.suffix:
            producer.setdefault(os.path.realpath(job.out), i)
        if job.compare is not None:
            producer.setdefault(os.path.realpath(job.compare), i)
    keep, dropped = [], []
    for i, (src, rel) in enumerate(found):
        by = producer.get(os.path.realpath(src), i)
        (keep if by == i else dropped).append((src, rel))
    return keep, [src for src, _ in dropped]


def targets(job: Job) -> list[Path]:
    """The files a job writes: its output, and its compare image with ``--compare``."""
    return [t for t in (job.out, job.compare) if t is not None]


def _collision_fix(first: tuple[Path, PurePath], second: tuple[Path, PurePath], opts: InferOptions) -> str:
    """Advice that gives two inputs' outputs different names, each option checked to work."""

    def apart(o: InferOptions, a: tuple[Path, PurePath], b: tuple[Path, PurePath]) -> bool:
        ta = {os.path.realpath(t) for t in targets(_make_job(0, *a, o))}
        return not ta & {os.path.realpath(t) for t in targets(_make_job(1, *b, o))}

    fixes = ["give the inputs different names"]  # always works
    if opts.ext != "same" and apart(replace(opts, ext="same"), first, second):
        fixes.append("use --ext same")
    elif opts.video_ext != "same" and apart(replace(opts, video_ext="same"), first, second):
        fixes.append("use --video-ext same")
    else:
        pa, pb = os.path.abspath(first[0].parent), os.path.abspath(second[0].parent)
        common = Path(os.path.commonpath([pa, pb]))
        mirrored = [(p, PurePath(os.path.relpath(os.path.abspath(p), common))) for p, _ in (first, second)]
        if pa != pb and apart(opts, *mirrored):
            fixes.append(f"pass their common folder {quoted(common)} with --recursive (it mirrors "
                         "the tree under OUTPUT_DIR)")
        else:
            fixes.append("enhance them into separate OUTPUT_DIRs")
    return ", ".join(fixes[:-1]) + " or " + fixes[-1]


def link_out_of(folder: Path, out_dir: Path) -> tuple[Path, str] | None:
    """The symlink in ``folder`` (a folder under OUTPUT_DIR) that leads out of OUTPUT_DIR, and its target."""
    root = os.path.realpath(out_dir)
    if is_inside(os.path.realpath(folder), root):
        return None
    link = p = folder
    while p != out_dir and p != p.parent:  # the outermost link is the one to remove
        if p.is_symlink() and not is_inside(os.path.realpath(p), root):
            link = p
        p = p.parent
    return link, os.path.realpath(link)


def plan_jobs(found: list[tuple[Path, PurePath]], opts: InferOptions) -> list[Job]:
    """Output paths for every input; refuses (exit 2) to write over inputs or existing files.

    Two inputs that would write the same output: the later one fails with a reason and
    advice that works. Existing outputs (``index.html`` with ``--html`` included) are
    refused unless ``--skip-existing`` (the job is then marked skipped) or ``--overwrite``.
    An output folder under OUTPUT_DIR that is a symlink leading out of it is refused, so
    nothing is written outside OUTPUT_DIR.
    """
    input_reals = {os.path.realpath(p): p for p, _ in found}
    jobs: list[Job] = []
    claimed: dict[str, tuple[Path, PurePath]] = {}
    checked: set[Path] = set()
    for i, (src, rel) in enumerate(found):
        job = _make_job(i, src, rel, opts)
        for target in targets(job):
            if target.parent not in checked:
                checked.add(target.parent)
                escape = link_out_of(target.parent, opts.output_dir)
                if escape is not None:
                    raise CliError(
                        f"refusing to write {quoted(target)}: {quoted(escape[0])} is a symlink to "
                        f"{quoted(escape[1])}, outside OUTPUT_DIR; remove the link or choose another "
                        "OUTPUT_DIR")
            real = os.path.realpath(target)
            if real in input_reals:
                raise CliError(
                    f"refusing to write the output {quoted(target)} over the input "
                    f"{quoted(input_reals[real])}: choose another OUTPUT_DIR, a --suffix "
                    "or another --ext")
            if real in claimed and job.status != "failed":
                job.fail(f"its output {display_path(target)} is already written for "
                         f"{display_path(claimed[real][0])}; {_collision_fix(claimed[real], (src, rel), opts)}")
        if job.status != "failed":
            for target in targets(job):
                claimed[os.path.realpath(target)] = (src, rel)
        jobs.append(job)

    existing = [j for j in jobs if j.status == "pending" and all(t.exists() for t in targets(j))]
    partial = [j for j in jobs if j.status == "pending" and any(t.exists() for t in targets(j))]
    page = opts.output_dir / HTML_NAME
    page_exists = opts.html and (page.exists() or page.is_symlink())
    if opts.existing == "refuse" and (partial or page_exists):
        first = next(t for t in targets(partial[0]) if t.exists()) if partial else page
        raise CliError(
            f"{len(partial) + page_exists} output file(s) already exist, e.g. {quoted(first)}; "
            "pass --skip-existing to keep them (and enhance only the rest) "
            "or --overwrite to replace them")
    if opts.existing == "skip":
        for j in existing:
            j.status = "skipped"
    return jobs


def check_output_dir(out_dir: Path) -> None:
    """Create OUTPUT_DIR if needed and prove it is writable (exit 2 otherwise)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise click.BadParameter(
            f"{quoted(out_dir)} is a file, not a folder; give a folder path "
            "(it is created if missing)", param_hint="OUTPUT_DIR")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".engan-write-test.", dir=out_dir)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise click.BadParameter(
            f"cannot write to {quoted(out_dir)}: {(e.strerror or str(e)).lower()}; "
            "choose a folder you can write to", param_hint="OUTPUT_DIR") from None
