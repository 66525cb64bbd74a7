"""``engan-infer INPUT... OUTPUT_DIR``: enhance photos with an exported EnlightenGAN model.

Torch-free (stdlib, numpy, Pillow, click, tqdm; the backend library is imported by
:class:`engan.runtime.enhancer.Enhancer` only when the model is loaded).

The run is a small pipeline: a pool of decode threads reads inputs ahead, the main
thread runs the enhancer (batching consecutive same-size images), and a pool of encode
threads writes the outputs. The queues between them are bounded, so memory stays flat
however many files there are, and every per-file message is printed in input order.

Behaviour on bad input: a file that cannot be read, decoded, enhanced or written prints
one ``FAILED <path>: <reason>`` line and the run goes on; the exit code is 1 when any
file (``index.html`` included) failed, 2 for usage errors (bad options, an OUTPUT_DIR that
is a file or cannot be written, outputs that would overwrite inputs or existing files, a
model that does not load), 128 + the signal number when stopped by SIGINT (130), SIGHUP
(129) or SIGTERM (143) (see :mod:`engan.runtime.entry`), 0 otherwise. Every path printed
is passed through :func:`engan.runtime.report.printable`, so control characters in file
names show as escapes and never act on the terminal or forge a line.

Outputs are written atomically (temp file + rename): under OUTPUT_DIR a file is either
complete or absent, even after ``kill -9`` (only a hidden ``.<name>.<pid>.<random>.tmp``
can remain then; the next run that writes ``<name>`` deletes it once its writer is gone,
so ``--skip-existing`` resumes into a clean folder, and two runs on one folder never
delete each other's files in progress).
"""
from __future__ import annotations

import glob
import os
import re
import signal
import sys
import tempfile
import time
import warnings
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePath
from typing import Any, Callable, Iterable, Protocol, Sequence

import click
import numpy as np
from PIL import Image

from engan.runtime.atomic import remove_own_temp_files, remove_stale_temp_files
from engan.runtime.entry import (
    Interrupted, defer_stops, exit_code, raise_if_stopping, signal_name, startup_line, stop_requested,
    stop_signals,
)
from engan.runtime.imageio import (
    DEFAULT_MAX_IMAGE_PIXELS,
    DEFAULT_PNG_COMPRESS,
    EXT_TO_FORMAT,
    IMAGE_EXTENSIONS,
    DecodedImage,
    DecodeError,
    EncodeError,
    Pixels,
    read_image,
    write_error,
    write_image,
)
from engan.runtime.prepost import (
    DEFAULT_MAX_PIXELS, DEFAULT_OVERLAP, FADE_RANGE, LUMA_WEIGHTS, PAD_MULTIPLE, check_fade_range,
)
from engan.runtime.report import ReportEntry, compare_image, display_path, printable, quoted, write_index_html

#: Exit codes; a stop signal gives 128 + its number (EXIT_INTERRUPTED for SIGINT, 129 SIGHUP, 143 SIGTERM).
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

#: The result page ``--html`` writes into OUTPUT_DIR.
HTML_NAME = "index.html"

#: ``--ext`` choices and what they write.
OUTPUT_EXTS = {"png": ".png", "jpg": ".jpg", "webp": ".webp"}

_GLOB_CHARS = re.compile(r"[*?\[]")

#: Progress bar layout: always images per second (tqdm would switch to s/img below 1).
_BAR = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_noinv_fmt}]"


class EnhancerLike(Protocol):
    """What the CLI needs from :class:`engan.runtime.enhancer.Enhancer`."""

    info: dict

    def enhance(self, image: Any) -> Any: ...

    def enhance_batch(self, images: Sequence[Any]) -> list: ...


class CliError(click.ClickException):
    """A problem that stops the run before any file is processed (exit code 2)."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str) -> None:
        super().__init__(printable(message))  # library messages may quote paths raw


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
    fade: tuple[float, float] | None = None


@dataclass
class Job:
    """One input file and where its outputs go."""

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


def _natural_key(rel: PurePath) -> list:
    """Sort ``2.png`` before ``10.png``."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", str(rel))]


def _is_image_name(name: str) -> bool:
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _inside(real: str, root: str) -> bool:
    """Whether the real path ``real`` is ``root`` or lies under it."""
    return real == root or real.startswith(root.rstrip(os.sep) + os.sep)


def _walk_folder(folder: Path, recursive: bool, exclude: set[str], follow_symlinks: bool = False,
                 outside: list[Path] | None = None) -> list[tuple[Path, PurePath]]:
    """Image files of a folder as (path, path relative to the folder).

    Hidden files and folders are skipped, and so is ``exclude`` (the output folder).
    A symlink, to a file or a folder, is followed only when its target lies inside the
    folder's own tree, unless ``follow_symlinks``: one leading out of it (to ``/etc``,
    another disk, a home folder) is left out and added to ``outside``. A folder whose
    real path was already visited (a symlink loop, or two links to one place) is not
    entered again. A folder that cannot be listed (permissions) is a usage error naming
    it, never silently left out.
    """
    found: list[tuple[Path, PurePath]] = []
    root = os.path.realpath(folder)

    def stays_inside(p: str | os.PathLike) -> bool:
        if follow_symlinks or not os.path.islink(p) or _inside(os.path.realpath(p), root):
            return True
        if outside is not None:
            outside.append(Path(p))
        return False

    def unlistable(e: OSError, where: str | os.PathLike = folder) -> click.BadParameter:
        return click.BadParameter(
            f"cannot list folder {quoted(e.filename or where)}: {e.strerror or e}; fix its permissions "
            "or leave it out of INPUT", param_hint="INPUT")

    if not recursive:
        try:
            names = os.listdir(folder)
        except OSError as e:
            raise unlistable(e) from None
        for name in names:
            p = folder / name
            if _is_image_name(name) and not p.is_dir() and stays_inside(p):
                found.append((p, PurePath(name)))
        return found
    visited = {root}

    def walk_error(e: OSError) -> None:  # os.walk would otherwise skip the folder without a word
        raise unlistable(e)

    for root_dir, dirs, files in os.walk(folder, followlinks=True, onerror=walk_error):
        keep = []
        for d in sorted(dirs, key=lambda d: (os.path.islink(os.path.join(root_dir, d)), d)):  # real folders first
            path = os.path.join(root_dir, d)
            real = os.path.realpath(path)
            if d.startswith(".") or real in visited or real in exclude or not stays_inside(path):
                continue
            visited.add(real)
            keep.append(d)
        dirs[:] = keep
        for name in files:
            if _is_image_name(name):
                p = Path(root_dir, name)
                if stays_inside(p):
                    found.append((p, PurePath(os.path.relpath(p, folder))))
    return found


def discover_inputs(inputs: Iterable[str], recursive: bool = False,
                    exclude: str | os.PathLike | None = None, follow_symlinks: bool = False,
                    outside: list[Path] | None = None) -> list[tuple[Path, PurePath]]:
    """Expand INPUT arguments into (file, relative output path) pairs, in a stable order.

    Files keep their name; a folder contributes its image files (its whole tree with
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
        for p, rel in sorted(items, key=lambda t: _natural_key(t[1])):
            real = os.path.realpath(p)
            if real not in seen:
                seen.add(real)
                out.append((p, rel))

    def walk(folder: Path) -> list[tuple[Path, PurePath]]:
        return _walk_folder(folder, recursive, excluded, follow_symlinks, outside)

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
                elif _is_image_name(mp.name):
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
    ext, fmt = _output_ext(src, opts.ext)
    stem = Path(rel.name).stem + opts.suffix
    parent = opts.output_dir / rel.parent
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


def _targets(job: Job) -> list[Path]:
    return [t for t in (job.out, job.compare) if t is not None]


def _collision_fix(first: tuple[Path, PurePath], second: tuple[Path, PurePath], opts: InferOptions) -> str:
    """Advice that gives two inputs' outputs different names, each option checked to work."""

    def apart(o: InferOptions, a: tuple[Path, PurePath], b: tuple[Path, PurePath]) -> bool:
        ta = {os.path.realpath(t) for t in _targets(_make_job(0, *a, o))}
        return not ta & {os.path.realpath(t) for t in _targets(_make_job(1, *b, o))}

    fixes = ["give the inputs different names"]  # always works
    if opts.ext != "same" and apart(replace(opts, ext="same"), first, second):
        fixes.append("use --ext same")
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


def _link_out_of(folder: Path, out_dir: Path) -> tuple[Path, str] | None:
    """The symlink in ``folder`` (a folder under OUTPUT_DIR) that leads out of OUTPUT_DIR, and its target."""
    root = os.path.realpath(out_dir)
    if _inside(os.path.realpath(folder), root):
        return None
    link = p = folder
    while p != out_dir and p != p.parent:  # the outermost link is the one to remove
        if p.is_symlink() and not _inside(os.path.realpath(p), root):
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
        for target in _targets(job):
            if target.parent not in checked:
                checked.add(target.parent)
                escape = _link_out_of(target.parent, opts.output_dir)
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
            for target in _targets(job):
                claimed[os.path.realpath(target)] = (src, rel)
        jobs.append(job)

    existing = [j for j in jobs if j.status == "pending" and all(t.exists() for t in _targets(j))]
    partial = [j for j in jobs if j.status == "pending" and any(t.exists() for t in _targets(j))]
    page = opts.output_dir / HTML_NAME
    page_exists = opts.html and (page.exists() or page.is_symlink())
    if opts.existing == "refuse" and (partial or page_exists):
        first = next(t for t in _targets(partial[0]) if t.exists()) if partial else page
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


# --------------------------------------------------------------------------- enhancing


def load_enhancer(opts: InferOptions) -> EnhancerLike:
    """Load the model with :class:`engan.runtime.enhancer.Enhancer` (exit 2 on failure)."""
    try:
        from engan.runtime.enhancer import Enhancer

        kwargs: dict[str, Any] = {"backend": opts.backend, "device": opts.device}
        for name in ("max_pixels", "tile", "threads", "fade"):  # unset: keep the runtime's defaults
            if getattr(opts, name) is not None:
                kwargs[name] = getattr(opts, name)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"threads=\d+ lowered")  # the first line says it
            return Enhancer.load(opts.model, **kwargs)
    except Exception as e:  # every load failure is the user's to fix: say what and stop
        raise_if_stopping()  # unless a stop signal caused it (e.g. inside `import onnxruntime`)
        msg = str(e) or type(e).__name__
        raise CliError(f"could not load the model: {msg}") from None


def enhance_pixels(enhancer: EnhancerLike, pixels: Pixels) -> Pixels:
    """Enhance one decoded image, keeping its kind (PIL mode, or uint16 array layout).

    The enhancer takes PIL images (L/LA/RGB/RGBA/I;16) and numpy arrays (16-bit colour
    PNGs as HxWx2/3/4 uint16) alike and carries alpha through untouched.
    """
    out = enhancer.enhance(pixels)
    if isinstance(pixels, np.ndarray):
        out = np.asarray(out)
        if out.shape != pixels.shape or out.dtype != pixels.dtype:
            raise TypeError(f"the enhancer returned {out.dtype} {out.shape} for {pixels.dtype} {pixels.shape}")
    elif out.size != pixels.size:
        raise TypeError(f"the enhancer returned size {out.size} for {pixels.size}")
    return out


#: said once per run when --fade-bright is off and a photo is already as bright as the fade's upper end
WELL_EXPOSED_NOTE = (f"already well exposed (mean luma at least {FADE_RANGE[1]:g}): the model brightens such photos "
                     "further; --fade-bright leaves them as they are")


def mean_luma(pixels: Pixels) -> float | None:
    """Mean Rec.601 luma in [0, 1] of a decoded image (None for kinds it does not read: 32-bit, float)."""
    if isinstance(pixels, Image.Image):
        if pixels.mode not in ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"):
            return None
        return float(np.asarray(pixels.convert("L"), dtype=np.float64).mean()) / 255.0
    a = np.asarray(pixels)
    if a.dtype != np.uint16 or a.ndim != 3:
        return None
    rgb = a[..., :3] if a.shape[2] >= 3 else a[..., :1]
    w = np.asarray(LUMA_WEIGHTS if rgb.shape[2] == 3 else (1.0,))
    return float((rgb.mean(axis=(0, 1)) * w).sum()) / 65535.0


def _batch_key(dec: DecodedImage) -> tuple | None:
    """Images with equal keys can share one enhance_batch call (None: never batched)."""
    if isinstance(dec.pixels, Image.Image):
        return dec.pixels.mode, dec.pixels.size
    return None


class _Inline:
    """An executor that runs each task at once in the calling thread (``--workers 0``)."""

    def submit(self, fn: Callable, *args: Any) -> Future:
        fut: Future = Future()
        try:
            fut.set_result(fn(*args))
        except BaseException as e:  # noqa: BLE001 - handed to the consumer like a pool would
            fut.set_exception(e)
        return fut

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        pass


class _Console:
    """Per-file messages on stderr, kept clear of the progress bar; warnings said once."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.bar = None
        self._said: set[str] = set()

    def _write(self, line: str) -> None:
        line = printable(line)  # reasons may quote file names: no control character reaches the terminal
        if self.bar is not None:
            self.bar.write(line, file=sys.stderr)
        else:
            click.echo(line, err=True)

    def failed(self, path: Path, reason: str) -> None:
        self._write(f"FAILED {display_path(path)}: {reason}")

    def warn_once(self, path: Path, note: str) -> None:
        if self.quiet or note in self._said:
            return
        self._said.add(note)
        self._write(f"warning: {display_path(path)}: {note} (said once per run)")

    def info(self, line: str) -> None:
        if not self.quiet:
            self._write(line)


class _Pipeline:
    """decode pool -> enhancer (main thread, batched) -> encode pool, with bounded queues.

    Stopped by an exception in the main thread (a stop signal): reads and writes not yet
    started are cancelled, the ones under way finish (a write is complete or removed),
    and the jobs that completed are reported; the others stay ``pending``.
    """

    def __init__(self, opts: InferOptions, enhancer: EnhancerLike, console: _Console, bar) -> None:
        self.opts, self.enhancer, self.console, self.bar = opts, enhancer, console, bar
        workers = opts.workers
        self.decode_pool = ThreadPoolExecutor(workers, "engan-decode") if workers else _Inline()
        self.encode_pool = ThreadPoolExecutor(workers, "engan-encode") if workers else _Inline()
        self.read_ahead = max(1, 2 * workers) + opts.batch
        self.write_behind = max(1, 2 * workers)
        self.finishing: deque[tuple[Job, Future | None]] = deque()

    # -- stages
    def _decode(self, job: Job) -> DecodedImage:
        return read_image(job.src, self.opts.max_image_pixels or None)

    def _encode(self, job: Job, dec: DecodedImage, enhanced: Pixels) -> list[str]:
        notes = write_image(job.out, enhanced, fmt=job.fmt, quality=self.opts.quality,
                            icc_profile=dec.icc_profile, exif=dec.exif, png_compress=self.opts.png_compress)
        if self.opts.fade is None and (mean_luma(dec.pixels) or 0.0) >= FADE_RANGE[1]:
            notes = [*notes, WELL_EXPOSED_NOTE]
        if job.compare is not None:
            write_image(job.compare, compare_image(dec.pixels, enhanced), fmt=job.fmt,
                        quality=self.opts.quality, icc_profile=dec.icc_profile,
                        png_compress=self.opts.png_compress)
        return notes

    def _write(self, job: Job, dec: DecodedImage, enhanced: Pixels) -> None:
        """The encode stage: write the outputs and settle the job's status here, in the pool
        thread, so a stop signal in the main thread never loses track of a finished write."""
        try:
            job.notes.extend(self._encode(job, dec, enhanced))
            job.status = "enhanced"
        except (EncodeError, OSError) as e:
            raise_if_stopping()  # --workers 0: a write the signal cut short is not a failure
            job.fail(str(e))
        except Exception as e:  # noqa: BLE001 - an encoder bug must not stop the run
            raise_if_stopping()
            job.fail(f"could not write the output: {str(e) or type(e).__name__}")

    def _enhance(self, batch: list[tuple[Job, DecodedImage]]) -> None:
        """Run the model on a batch (one by one if the batch call fails), queue the writes."""
        t0 = time.perf_counter()
        results: list[Pixels | BaseException]
        if len(batch) > 1:
            try:
                results = list(self.enhancer.enhance_batch([d.pixels for _, d in batch]))
            except Exception:  # noqa: BLE001 - fall back to single images to find the bad one
                raise_if_stopping()
                results = [self._enhance_one(d) for _, d in batch]
        else:
            results = [self._enhance_one(batch[0][1])]
        share = (time.perf_counter() - t0) / len(batch)
        for (job, dec), res in zip(batch, results):
            job.seconds = share
            if isinstance(res, BaseException):
                job.fail(f"enhancement failed: {str(res) or type(res).__name__}")
                self.finishing.append((job, None))
            else:
                self.finishing.append((job, self.encode_pool.submit(self._write, job, dec, res)))
            self._drain(block=len(self.finishing) > self.write_behind)

    def _enhance_one(self, dec: DecodedImage) -> Pixels | BaseException:
        try:
            return enhance_pixels(self.enhancer, dec.pixels)
        except Exception as e:  # noqa: BLE001 - reported as this file's failure
            raise_if_stopping()
            return e

    def _drain(self, block: bool = False, all_: bool = False) -> None:
        """Report finished jobs in input order; block for the oldest when asked."""
        while self.finishing:
            job, fut = self.finishing[0]
            if fut is not None and not fut.done():
                if not (block or all_):
                    return
                wait([fut])  # a stop signal may land here: the job stays queued
            self.finishing.popleft()
            block = False
            if fut is not None and (fut.cancelled() or fut.exception() is not None):
                continue  # stopped before or while it was written (_write settles every other outcome)
            for note in job.notes:
                self.console.warn_once(job.src, note)
            if job.status == "failed":
                self.console.failed(job.src, job.reason)
            if self.bar is not None:
                self.bar.update(1)

    # -- driver
    def run(self, jobs: list[Job]) -> None:
        todo = iter(jobs)
        reading: deque[tuple[Job, Future]] = deque()
        batch: list[tuple[Job, DecodedImage]] = []
        exhausted = stopping = False
        try:
            while True:
                while not exhausted and len(reading) < self.read_ahead:
                    job = next(todo, None)
                    if job is None:
                        exhausted = True
                    else:
                        reading.append((job, self.decode_pool.submit(self._decode, job)))
                if not reading:
                    break
                job, fut = reading.popleft()
                try:
                    dec = fut.result()
                except DecodeError as e:
                    raise_if_stopping()
                    dec, reason = None, str(e)
                except Exception as e:  # noqa: BLE001 - a decoder bug is this file's failure
                    raise_if_stopping()
                    dec, reason = None, f"could not decode: {str(e) or type(e).__name__}"
                if dec is None:
                    if batch:
                        self._enhance(batch)
                        batch = []
                    job.fail(reason)
                    self.finishing.append((job, None))
                    self._drain()
                    continue
                job.size, job.mode = dec.size, dec.mode
                job.notes.extend(dec.warnings)
                key = _batch_key(dec)
                if batch and (key is None or key != _batch_key(batch[0][1])):
                    self._enhance(batch)
                    batch = []
                batch.append((job, dec))
                if key is None or len(batch) >= self.opts.batch or not reading:
                    self._enhance(batch)
                    batch = []
            self._drain(all_=True)
        except BaseException:
            stopping = True
            raise
        finally:
            for _, fut in reading:
                fut.cancel()
            self.decode_pool.shutdown(wait=True, cancel_futures=True)
            self.encode_pool.shutdown(wait=True, cancel_futures=stopping)
            self._drain(all_=True)  # after an interrupt: report the writes that completed


def run(opts: InferOptions, enhancer: EnhancerLike | None = None) -> RunResult:
    """Enhance every input of ``opts``; returns what happened (prints as it goes).

    Under :func:`engan.runtime.entry.stop_signals`, a stop signal before the pipeline
    starts raises :class:`~engan.runtime.entry.Interrupted` (nothing was enhanced); one
    while it runs stops it cleanly (see :class:`_Pipeline`) and the result says
    ``interrupted``; later ones are recorded and set ``interrupted`` too, so the page and
    the summary are always complete.

    Args:
        opts: the parsed options.
        enhancer: an already loaded enhancer (tests); loaded from ``opts`` otherwise,
            and only when at least one file needs enhancing.

    Raises:
        click.ClickException: usage problems, before any file is processed (exit 2).
    """
    started, t0 = time.time(), time.perf_counter()
    console = _Console(opts.quiet)
    out_dir = opts.output_dir
    if out_dir.exists() and not out_dir.is_dir():
        check_output_dir(out_dir)  # raises the "is a file" usage error
    outside: list[Path] = []
    found = discover_inputs(opts.inputs, opts.recursive, exclude=out_dir,
                            follow_symlinks=opts.follow_symlinks, outside=outside)
    if outside:
        console.info(f"left out {len(outside)} symlink(s) leading out of their input folder, e.g. "
                     f"{display_path(outside[0])} -> {display_path(os.path.realpath(outside[0]))}; "
                     "pass --follow-symlinks to read them")
    if not found:
        raise click.BadParameter("no image files found in the given inputs "
                                 f"(looked for {', '.join(sorted(IMAGE_EXTENSIONS))})",
                                 param_hint="INPUT")
    found, own = drop_own_outputs(found, opts)
    if own:
        console.info(f"left out {len(own)} input(s) that this run writes as outputs, "
                     f"e.g. {display_path(own[0])}")
    jobs = plan_jobs(found, opts)
    check_output_dir(out_dir)
    page = out_dir / HTML_NAME if opts.html else None
    keep_page = page is not None and opts.existing == "skip" and (page.exists() or page.is_symlink())
    targets = [t for j in jobs if j.status != "failed" for t in _targets(j)]
    stale = remove_stale_temp_files(targets + ([page] if page else []), started)
    if stale:
        console.info(f"removed {stale} temp file(s) left by an interrupted run")
    for j in jobs:
        if j.status == "failed":
            console.failed(j.src, j.reason)
    work = [j for j in jobs if j.status == "pending"]
    info: dict = {}
    stopped: int = 0
    if work:
        enhancer = enhancer or load_enhancer(opts)
        info = dict(getattr(enhancer, "info", {}) or {})
        console.info(_describe(info, len(work), len(jobs) - len(work), out_dir))
        from tqdm import tqdm

        with warnings.catch_warnings():
            # Our own decompression-bomb guard runs on every file; Pillow's warnings
            # about its (lower) limit and about odd metadata are noise here.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            warnings.filterwarnings("ignore", module=r"PIL(\.|$)")
            with tqdm(total=len(work), unit="img", desc="enhancing", disable=opts.quiet,
                      file=sys.stderr, dynamic_ncols=True, leave=False, bar_format=_BAR) as bar:
                console.bar = None if opts.quiet else bar
                try:
                    _Pipeline(opts, enhancer, console, bar).run(work)
                except KeyboardInterrupt:
                    stopped = signal.SIGINT
                except Interrupted as e:
                    stopped = e.signum
                finally:
                    defer_stops()  # from here on the run finishes its page and summary
                    console.bar = None
    defer_stops()
    if stopped:
        remove_own_temp_files({t.parent for t in targets} | {out_dir})
    result = RunResult(jobs=jobs, seconds=time.perf_counter() - t0, interrupted=bool(stopped),
                       info=info, signum=stopped or signal.SIGINT)
    if keep_page:
        console.info(f"kept the existing {display_path(page)} (--skip-existing); pass --overwrite to replace it")
    elif page is not None:
        reason = _write_html(opts, result, page)
        if reason:
            console.failed(page, reason)
            result.html_failed = True
    late = stop_requested()
    if late and not result.interrupted:
        result.interrupted, result.signum = True, late
    return result


#: Enhancer.info keys shown on the console (first three) and on the HTML page.
_INFO_KEYS = ("model", "backend", "device", "precision", "model_name", "preset", "params",
              "threads", "max_pixels", "tile", "fade", "reason")


def _describe(info: dict, n_work: int, n_skip: int, out_dir: Path) -> str:
    parts = [f"{k}={display_path(Path(info[k]).name) if k == 'model' else info[k]}"
             for k in _INFO_KEYS[:4] if info.get(k)]
    if info.get("fade"):
        parts.append("fade-bright={:g}-{:g}".format(*info["fade"]))
    reason = info.get("reason")
    line = f"engan-infer: {n_work} image(s) -> {display_path(out_dir)}"
    if n_skip:
        line += f" ({n_skip} already done or failed)"
    if parts:
        line += " | " + " ".join(parts)
    if reason:
        line += f" ({reason})"
    return line


def _write_html(opts: InferOptions, result: RunResult, page: Path) -> str:
    """Write the result page; returns why it could not be written ('' when it was)."""
    entries = [ReportEntry(input_path=j.src, output_path=j.out, status=j.status, reason=j.reason,
                           compare_path=j.compare if j.status != "failed" else None,
                           size=j.size, mode=j.mode, seconds=j.seconds)
               for j in result.jobs]
    n_done = result.count("enhanced")
    model = str(result.info.get("model") or "")
    model_dir = os.path.dirname(os.path.abspath(model)) + os.sep if model else ""

    def shown(k: str, v: Any) -> Any:  # the page names the model file, never where it lives
        if k == "model":
            return os.path.basename(model)
        return v.replace(model_dir, "") if isinstance(v, str) and model_dir else v

    info = {k: shown(k, result.info[k]) for k in _INFO_KEYS if result.info.get(k) not in (None, "")}
    info.update({
        "output": f"--ext {opts.ext}" + (f", --suffix {opts.suffix}" if opts.suffix else ""),
        "workers / batch": f"{opts.workers} / {opts.batch}",
        "throughput": f"{n_done / result.seconds:.2f} images/s" if n_done and result.seconds else "n/a",
    })
    try:
        write_index_html(page, entries, info=info, summary=result.summary)
    except OSError as e:
        return write_error(page, e)
    return ""


# --------------------------------------------------------------------------- click


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
        "  engan-infer big.tif out/ --model model.onnx --tile 512 --compare"),
)
@click.argument("inputs", metavar="INPUT...", nargs=-1, required=True)
@click.argument("output_dir", metavar="OUTPUT_DIR", nargs=1, type=click.Path(path_type=Path))
@click.option("--model", default=None, metavar="PATH|NAME",
              help="Model to run: an .onnx file, a TensorRT .engine/.plan, a .safetensors "
                   "checkpoint (needs torch), or the name of a shipped model. With --backend auto "
                   "on a CPU, the INT8 copy (<name>.int8.onnx) next to an .onnx runs when one made "
                   "from the same checkpoint is there; --backend ort runs the file as given.  "
                   "[default: the shipped model]")
@click.option("--backend", type=click.Choice(["auto", "ort", "trt", "torch"], case_sensitive=False),
              default="auto", show_default=True,
              help="Inference engine. auto picks TensorRT > ONNX Runtime CUDA > ONNX Runtime CPU "
                   "from what is installed and says which it picked.")
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
                   "use is lowered to that number (the first line says so).  [default: the backend's "
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
              help="Enhance up to N consecutive same-size images in one model call.")
@click.option("--compare", is_flag=True,
              help="Also write <name>_compare.<ext>: input | output side by side (twice as wide).")
@click.option("--html", is_flag=True,
              help="Write OUTPUT_DIR/index.html showing every input next to its result, with "
                   "sizes, timings and the backend used (links are relative). An existing index.html "
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
@click.option("-q", "--quiet", is_flag=True,
              help="No progress bar, warnings or summary; only 'FAILED' lines are printed (and the "
                   "'interrupted' line when a signal stops the run).")
def main(inputs: tuple[str, ...], output_dir: Path, model: str | None, backend: str, device: str,
         ext: str, quality: int, png_compress: int, suffix: str, skip_existing: bool, overwrite: bool,
         recursive: bool, follow_symlinks: bool, max_pixels: int | None, tile: int | None, threads: int | None,
         max_image_pixels: int, workers: int, batch: int, compare: bool, html: bool,
         fade_bright: bool, fade_range: tuple[float, float] | None, quiet: bool) -> None:
    """Enhance low-light photos with EnlightenGAN, without PyTorch.

    INPUT... are image files, folders or glob patterns (quote them to let engan-infer
    expand them, '**' included). Each output is written to OUTPUT_DIR (created if
    missing) at the input's size, atomically: a file there is complete or absent,
    even if the run is killed. Grey stays grey, alpha is kept, 16-bit PNGs stay 16-bit
    (with --ext png), EXIF orientation is applied and ICC profiles are kept.

    A file that cannot be read, decoded or written prints one 'FAILED <path>: <reason>'
    line and the others go on. The last line is 'N enhanced, M failed, K skipped in T s'.
    Control characters in printed file names are shown as escapes (\n, \x1b).
    """
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
        html=html, quiet=quiet, fade=fade)
    with stop_signals():  # a no-op under engan-infer's entry point, which installed them first
        try:
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


if __name__ == "__main__":  # pragma: no cover
    from engan.runtime.entry import main as entry_main  # signal handling, as the console script

    entry_main()
