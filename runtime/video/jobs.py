"""What ``engan-infer`` needs to treat a video like a photo: one job, its status line, poster frames.

>>> job = run_video_job(enhancer, "night/clip.mov", "out/", video_ext="mp4", existing="skip")
>>> job.status, job.line()            # 'enhanced' | 'skipped' | 'failed', 'FAILED night/clip.mov: ...'
>>> before_png, after_png = poster_frames(job.src, job.dst)     # for the --html page
"""
from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engan.runtime.video.api import VideoResult, enhance_video, resolve_output
from engan.runtime.video.frames import VideoReader
from engan.runtime.video.pipeline import VideoCancelled
from engan.runtime.video.probe import VideoError, VideoUnavailable

#: ``existing`` choices of :func:`run_video_job`, as engan-infer's: refuse, --skip-existing, --overwrite.
EXISTING_CHOICES = ("refuse", "skip", "overwrite")


@dataclass
class VideoJobResult:
    """One video of a batch.

    Attributes:
        src, dst: input and output.
        status: ``enhanced``, ``skipped`` (output exists, ``--skip-existing``) or ``failed``.
        reason: why it failed or was skipped (one line).
        result: the :class:`VideoResult` when enhanced.
    """

    src: Path
    dst: Path
    status: str
    reason: str = ""
    result: VideoResult | None = None

    @property
    def ok(self) -> bool:
        return self.status != "failed"

    def line(self) -> str:
        """``FAILED <src>: <reason>``, ``skipped <src>: <reason>`` or ``<src> -> <dst>: <summary>``."""
        if self.status == "failed":
            return f"FAILED {self.src}: {self.reason}"
        if self.status == "skipped":
            return f"skipped {self.src}: {self.reason}"
        return f"{self.src} -> {self.dst}" + (f": {self.result.summary()}" if self.result else "")


def run_video_job(enhancer: Any, src: str | os.PathLike, dst: str | os.PathLike, *, video_ext: str = "mp4",
                  existing: str = "refuse", **kwargs: Any) -> VideoJobResult:
    """Enhance one video for a batch: every failure becomes a ``failed`` result, never an exception.

    Args:
        enhancer: the loaded Enhancer.
        src: the input video.
        dst: the output file, or a folder (``<stem>.<video_ext>`` inside it).
        video_ext: ``mp4``, ``mkv`` or ``same``.
        existing: ``refuse`` (an existing output fails the job), ``skip`` or ``overwrite``.
        **kwargs: passed to :func:`enhance_video` (crf, preset, codec, smooth, progress, cancel...).

    Raises:
        VideoCancelled, KeyboardInterrupt: the run is being stopped (nothing partial is left behind).
        VideoUnavailable: PyAV is missing (the whole batch needs it, not this file).
    """
    if existing not in EXISTING_CHOICES:
        raise ValueError(f"existing must be one of {', '.join(EXISTING_CHOICES)}, got {existing!r}")
    src = Path(src)
    try:
        out = resolve_output(src, dst, video_ext)
    except ValueError as e:
        return VideoJobResult(src, Path(dst), "failed", str(e))
    if out.exists():
        if existing == "skip":
            return VideoJobResult(src, out, "skipped", f"{out} exists (--skip-existing)")
        if existing == "refuse":
            return VideoJobResult(src, out, "failed", f"{out} exists; pass --skip-existing or --overwrite")
    try:
        result = enhance_video(enhancer, src, out, overwrite=existing == "overwrite", **kwargs)
    except VideoError as e:
        return VideoJobResult(src, out, "failed", e.reason)
    except (VideoCancelled, VideoUnavailable):
        raise
    except (OSError, ValueError, RuntimeError, MemoryError) as e:
        return VideoJobResult(src, out, "failed", f"{type(e).__name__}: {' '.join(str(e).split())}")
    return VideoJobResult(src, out, "enhanced", result=result)


def _png(rgb: np.ndarray, rotation: int, max_side: int) -> bytes:
    from PIL import Image

    if rgb.dtype != np.uint8:
        rgb = (rgb.astype(np.float32) * (255 / 65535) + 0.5).astype(np.uint8)
    if rotation % 90 == 0 and rotation:
        rgb = np.rot90(rgb, rotation // 90)  # upright, as a player shows it
    im = Image.fromarray(np.ascontiguousarray(rgb))
    if max(im.size) > max_side:
        im.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def poster_frames(src: str | os.PathLike, dst_video: str | os.PathLike, *, at: float = 1 / 3,
                  max_side: int = 640) -> tuple[bytes, bytes]:
    """Before/after poster PNGs: the same moment (``at`` of the way in) of the input and the enhanced video.

    Both are turned upright by their rotation and fit within ``max_side`` pixels.

    Raises:
        VideoError: either file cannot be read.
    """
    pngs = []
    seconds = None
    for path in (src, dst_video):
        with VideoReader(path, audio=False) as reader:
            info = reader.info
            if seconds is None:  # the output keeps the input's timestamps: one time picks the same frame
                start = float(reader.stream.start_time * info.time_base) if reader.stream.start_time else 0.0
                seconds = start + at * (info.duration_s or 0.0)
            frame = reader.frame_at(seconds)
            if frame is None:
                raise VideoError(path, "has no frame to show")
            pngs.append(_png(frame.rgb, info.rotation, max_side))
    return pngs[0], pngs[1]
