"""``engan-infer``'s videos: the PyAV check, one video at a time after the photos, poster frames for ``--html``.

Videos follow the photos' rules (:mod:`~engan.runtime.cli.jobs` plans both: the same output
names, collision checks and refusals) and run on the photos' loaded Enhancer, one at a time
through :func:`engan.runtime.video.jobs.run_video_job`, each with a frame progress bar (rate
and ETA). While they run, stop signals are deferred (:func:`engan.runtime.entry.defer_stops`)
and read by the video's cancel hook: the video under way stops at its next frame, its temp
file is deleted, and the run ends with the ``interrupted`` line and the summary. PyAV is
imported only when a video is among the inputs.
"""
from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from typing import Any

from engan.runtime.atomic import atomic_write_bytes
from engan.runtime.cli.console import CliError, Console, display_path, quoted
from engan.runtime.cli.jobs import HTML_NAME, InferOptions, Job, link_out_of
from engan.runtime.entry import stop_requested

#: The folder in OUTPUT_DIR where ``--html`` puts the videos' poster frames (hidden, so never read back as input).
POSTER_DIR = ".posters"

#: Said once when ``--compare`` meets a video.
COMPARE_NOTE = "--compare writes side-by-side images of photos only; videos are written without one"

#: Frame progress bar of one video: always frames per second, and the time left.
_BAR = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} frames [{elapsed}<{remaining}, {rate_noinv_fmt}]"


def require_pyav(videos: list[Path]) -> None:
    """A usage error (exit 2) naming ``pip install 'engan[video]'`` when PyAV cannot be imported."""
    from engan.runtime.video.probe import VideoUnavailable, import_av

    try:
        import_av()
    except VideoUnavailable as e:
        raise CliError(f"{len(videos)} video file(s) among the inputs, e.g. {quoted(videos[0])}: {e}; "
                       "or leave the videos out of INPUT") from None


class _StopEvent(threading.Event):
    """A video's cancel hook: set by hand, or once a stop signal has been recorded."""

    def is_set(self) -> bool:
        return super().is_set() or bool(stop_requested())


def run_videos(opts: InferOptions, enhancer: Any, console: Console, jobs: list[Job]) -> int:
    """Enhance the pending video ``jobs`` one at a time, printing as it goes; settles each job.

    Call with stop signals deferred. Returns the stop signal's number when one stopped the run
    (the video under way is left ``pending``, nothing of it written), else 0.
    """
    from tqdm import tqdm

    from engan.runtime.video.jobs import run_video_job
    from engan.runtime.video.pipeline import VideoCancelled

    cancel = _StopEvent()
    for job in jobs:
        if stop_requested():
            return stop_requested()
        if job.out.is_dir():  # run_video_job would write into it
            job.fail(f"its output {display_path(job.out)} is a folder; remove it or choose another OUTPUT_DIR")
            console.failed(job.src, job.reason)
            continue
        bar = tqdm(total=None, unit="frame", desc=display_path(job.src.name), disable=opts.quiet, file=sys.stderr,
                   dynamic_ncols=True, leave=False, bar_format=_BAR)

        def progress(done: int, total: int | None, bar: Any = bar) -> None:  # from the video's encode thread
            if total and bar.total != total:
                bar.total = total
            bar.update(done - bar.n)

        console.bar = None if opts.quiet else bar
        try:
            res = run_video_job(enhancer, job.src, job.out, video_ext=opts.video_ext, existing=opts.existing,
                                crf=opts.crf, preset=opts.preset, progress=progress, cancel=cancel,
                                batch_size=opts.batch)
        except VideoCancelled:
            return stop_requested() or signal.SIGINT
        except KeyboardInterrupt:  # run() called without engan-infer's signal handlers: nothing partial is left
            return signal.SIGINT
        finally:
            console.bar = None
            bar.close()
        job.status, job.reason = res.status, res.reason
        if res.result is not None:
            job.video, job.seconds = res.result, res.result.seconds
            job.notes.extend(res.result.notes)
        for note in job.notes:
            console.warn_once(job.src, note)
        if job.status == "failed":
            console.failed(job.src, job.reason)
        elif res.result is not None:
            said = res.result.summary().removeprefix(f"{res.result.dst.name}: ")  # the name is on the line
            console.info(f"{display_path(job.src)} -> {display_path(job.out)}: {said}")
    return 0


def poster_paths(job: Job, out_dir: Path) -> tuple[Path, Path]:
    """Where ``--html`` puts a video's before and after poster frames: ``OUTPUT_DIR/.posters/<output>.before.png``."""
    rel = job.out.relative_to(out_dir)
    folder = out_dir / POSTER_DIR / rel.parent
    return folder / f"{rel.name}.before.png", folder / f"{rel.name}.after.png"


def write_posters(jobs: list[Job], out_dir: Path, console: Console) -> None:
    """Write the poster frames of every enhanced or skipped video (atomically) and set ``job.posters``.

    A video whose frames cannot be read, or a poster folder that is a symlink out of OUTPUT_DIR,
    gets a warning and a row without posters; the page is still written.
    """
    from engan.runtime.video.jobs import poster_frames
    from engan.runtime.video.probe import VideoError, VideoUnavailable

    for job in jobs:
        if job.kind != "video" or job.status not in ("enhanced", "skipped"):
            continue
        before, after = poster_paths(job, out_dir)
        try:
            escape = link_out_of(before.parent, out_dir)
            if escape is not None:
                raise OSError(f"{display_path(escape[0])} is a symlink out of OUTPUT_DIR")
            pngs = poster_frames(job.src, job.out)
            before.parent.mkdir(parents=True, exist_ok=True)
            for path, data in zip((before, after), pngs):
                atomic_write_bytes(path, data)
        except VideoError as e:
            console.warn_once(job.src, f"no poster frames on {HTML_NAME}: {e.reason}")
        except (OSError, ValueError, RuntimeError, VideoUnavailable) as e:
            console.warn_once(job.src, f"no poster frames on {HTML_NAME}: {' '.join(str(e).split())}")
        else:
            job.posters = (before, after)
