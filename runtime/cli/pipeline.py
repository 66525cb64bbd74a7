"""``engan-infer``'s pipeline: decode threads, the enhancer in the main thread, encode threads.

A pool of decode threads reads inputs ahead, the main thread runs the enhancer
(batching consecutive same-size images), and a pool of encode threads writes the
outputs. The queues between them are bounded, so memory stays flat however many files
there are, and every per-file message is printed in input order. A stop signal ends it
cleanly (:mod:`engan.runtime.entry`): writes under way finish or are removed, and the
summary counts exactly the files written. Videos run after the photos, one at a time on the
same Enhancer (:mod:`engan.runtime.cli.videos`).
"""
from __future__ import annotations

import signal
import sys
import time
import warnings
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any, Callable, Protocol, Sequence

import click
import numpy as np
from PIL import Image

from engan.runtime.atomic import remove_own_temp_files
from engan.runtime.cli.console import CliError, Console, first_line, verbose_lines
from engan.runtime.cli.jobs import InferOptions, Job, RunResult
from engan.runtime.cli.planning import find_inputs, finish_page, plan_run
from engan.runtime.cli.videos import COMPARE_NOTE, require_pyav, run_videos
from engan.runtime.entry import Interrupted, defer_stops, raise_if_stopping, stop_requested
from engan.runtime.imageio import (
    IMAGE_EXTENSIONS, DecodedImage, DecodeError, EncodeError, Pixels, compare_image, read_image, write_image,
)
from engan.runtime.prepost import FADE_RANGE, luma
from engan.runtime.video.api import VIDEO_EXTENSIONS, is_video

#: Progress bar layout: always images per second (tqdm would switch to s/img below 1).
_BAR = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_noinv_fmt}]"


class EnhancerLike(Protocol):
    """What the CLI needs from :class:`engan.runtime.enhancer.Enhancer`."""

    info: dict

    def enhance(self, image: Any) -> Any: ...

    def enhance_batch(self, images: Sequence[Any]) -> list: ...


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
            warnings.filterwarnings("ignore", message=r"threads=\d+ lowered")  # a note line says it
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
    means = a.mean(axis=(0, 1))  # per channel; grey+alpha has its grey first
    return float(luma(means, np.float64) if a.shape[2] >= 3 else means[0]) / 65535.0


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



class _Pipeline:
    """decode pool -> enhancer (main thread, batched) -> encode pool, with bounded queues.

    Stopped by an exception in the main thread (a stop signal): reads and writes not yet
    started are cancelled, the ones under way finish (a write is complete or removed),
    and the jobs that completed are reported; the others stay ``pending``.
    """

    def __init__(self, opts: InferOptions, enhancer: EnhancerLike, console: Console, bar) -> None:
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
    console = Console(opts.quiet)
    out_dir = opts.output_dir
    found = find_inputs(opts, console, opts.inputs)
    if not found:
        raise click.BadParameter("no image or video files found in the given inputs "
                                 f"(looked for {', '.join(sorted(IMAGE_EXTENSIONS + VIDEO_EXTENSIONS))})",
                                 param_hint="INPUT")
    videos = [p for p, _ in found if is_video(p)]
    if videos:
        require_pyav(videos)  # before anything is written: the install hint, exit 2
    plan = plan_run(opts, console, started, found)
    jobs, written = plan.jobs, plan.written
    work = [j for j in jobs if j.status == "pending"]
    photos = [j for j in work if j.kind == "image"]
    video_work = [j for j in work if j.kind == "video"]
    info: dict = {}
    stopped: int = 0
    if work:
        enhancer = enhancer or load_enhancer(opts)
        info = dict(getattr(enhancer, "info", {}) or {})
        console.info(first_line(info, len(work), len(jobs) - len(work), out_dir, n_videos=len(video_work)))
        if opts.verbose:
            for line in verbose_lines(info):
                console.info(line)
        for note in info.get("notes") or ():
            console.info(f"note: {note}")
        if opts.compare and video_work:
            console.info(f"note: {COMPARE_NOTE}")
        from tqdm import tqdm

        with warnings.catch_warnings():
            # Our own decompression-bomb guard runs on every file; Pillow's warnings
            # about its (lower) limit and about odd metadata are noise here.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            warnings.filterwarnings("ignore", module=r"PIL(\.|$)")
            with tqdm(total=len(photos), unit="img", desc="enhancing", disable=opts.quiet or not photos,
                      file=sys.stderr, dynamic_ncols=True, leave=False, bar_format=_BAR) as bar:
                console.bar = None if opts.quiet or not photos else bar
                try:
                    _Pipeline(opts, enhancer, console, bar).run(photos)
                except KeyboardInterrupt:
                    stopped = signal.SIGINT
                except Interrupted as e:
                    stopped = e.signum
                finally:
                    defer_stops()  # from here on the run finishes its page and summary
                    console.bar = None
        if video_work and not stopped:  # stops stay deferred: a signal cancels the video under way
            stopped = run_videos(opts, enhancer, console, video_work)
    defer_stops()
    if stopped:
        remove_own_temp_files({t.parent for t in written} | {out_dir})
    result = RunResult(jobs=jobs, seconds=time.perf_counter() - t0, interrupted=bool(stopped),
                       info=info, signum=stopped or signal.SIGINT)
    finish_page(opts, plan, result, console)
    late = stop_requested()
    if late and not result.interrupted:
        result.interrupted, result.signum = True, late
    return result
