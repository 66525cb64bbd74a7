"""``enhance_video`` (file to file) and ``iter_enhanced_frames`` (bring your own decoder). Torch-free.

>>> from engan.runtime import Enhancer
>>> from engan.runtime.video import enhance_video
>>> enh = Enhancer.load()
>>> res = enhance_video(enh, "night.mp4", "out/")          # -> out/night.mp4
>>> res.frames, res.fps, res.processing_fps, res.notes

``Enhancer.enhance_video`` is this function as a method:
``Enhancer.enhance_video = lambda self, src, dst, **kw: enhance_video(self, src, dst, **kw)``.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from engan.runtime import prepost
from engan.runtime.video.frames import DecodedFrame, VideoReader
from engan.runtime.video.pipeline import PipelineStats, Progress, run_pipeline
from engan.runtime.video.probe import VideoError, VideoInfo, is_vfr
from engan.runtime.video.temporal import SmoothingConfig, Stabiliser, flicker_ratio, frame_stats
from engan.runtime.video.writer import DEFAULT_CRF, DEFAULT_PRESET, VideoWriter, check_settings

#: Extensions read as video (lower case, with the dot).
VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v")
#: ``--video-ext`` choices: a container, or ``same`` as the input's.
VIDEO_EXT_CHOICES = ("mp4", "mkv", "same")


def is_video(path: str | os.PathLike) -> bool:
    """Whether ``path`` has a video extension (:data:`VIDEO_EXTENSIONS`); the file is not opened."""
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def video_output_name(src: str | os.PathLike, video_ext: str = "mp4") -> str:
    """The output file name of video ``src``: ``<stem>.mp4`` / ``.mkv``, or the input's extension for ``same``."""
    if video_ext not in VIDEO_EXT_CHOICES:
        raise ValueError(f"video_ext must be one of {', '.join(VIDEO_EXT_CHOICES)}, got {video_ext!r}")
    src = Path(src)
    ext = src.suffix.lower() if video_ext == "same" else "." + video_ext
    if ext not in VIDEO_EXTENSIONS:
        raise ValueError(f"{src.name}: cannot write a {ext or 'extension-less'} video; use video_ext='mp4' or 'mkv'")
    return src.stem + ext


@dataclass
class VideoResult:
    """What :func:`enhance_video` wrote.

    Attributes:
        src, dst: input and output files.
        frames: frames written (the input's count).
        fps: the input's average frame rate (None when it gives none).
        duration_s: the output video's duration from its timestamps.
        seconds: wall time of decode + enhance + encode; ``model_seconds`` the part inside the model.
        encoder, pix_fmt: what encoded the video; ``bit_depth`` its bits per sample.
        audio_copied: audio streams copied untouched.
        rotation: display rotation kept (counter-clockwise degrees).
        vfr: the input's timestamps were uneven (kept as they were).
        notes: one line per thing the user should know (dropped streams, lowered depth...).
        cuts: frames where a scene cut reset the smoothing.
        luma_in, luma_out: per-frame mean luma in and out (out before encoding): see :attr:`flicker_ratio`.
        raw_gain, smooth_gain: per-frame luma gain of the model, and the one written.
    """

    src: Path
    dst: Path
    frames: int
    fps: float | None
    duration_s: float | None
    seconds: float
    model_seconds: float
    encoder: str
    pix_fmt: str
    bit_depth: int
    audio_copied: int
    rotation: int
    vfr: bool
    notes: list[str] = field(default_factory=list)
    cuts: list[int] = field(default_factory=list)
    luma_in: list[float] = field(default_factory=list, repr=False)
    luma_out: list[float] = field(default_factory=list, repr=False)
    raw_gain: list[float] = field(default_factory=list, repr=False)
    smooth_gain: list[float] = field(default_factory=list, repr=False)

    @property
    def processing_fps(self) -> float:
        """Frames per second of the whole run (decode + enhance + encode)."""
        return self.frames / self.seconds if self.seconds else 0.0

    @property
    def flicker_ratio(self) -> float:
        """:func:`engan.runtime.video.temporal.flicker_ratio` of this run (1.0: no flicker added)."""
        return flicker_ratio(self.luma_in, self.luma_out)

    def summary(self) -> str:
        fps = f"{self.fps:.3g} fps" if self.fps else "unknown rate"
        return (f"{self.dst.name}: {self.frames} frames, {fps}, {self.encoder} {self.pix_fmt}, "
                f"{self.audio_copied} audio stream(s) copied, {self.processing_fps:.2f} frames/s")


def resolve_output(src: str | os.PathLike, dst: str | os.PathLike, video_ext: str | None) -> Path:
    """``dst`` itself, or ``dst/<name>`` when it is a folder (existing, or written with a trailing slash)."""
    text = os.fspath(dst)
    out = Path(dst)
    if out.is_dir() or text.endswith((os.sep, "/")):
        return out / video_output_name(src, video_ext or "mp4")
    if out.suffix.lower() not in VIDEO_EXTENSIONS:
        raise ValueError(f"{out}: not a video file name (use {', '.join(VIDEO_EXTENSIONS)}) and not a folder; "
                         "end a new folder's name with '/'")
    return out


def _dropped_note(info: VideoInfo) -> list[str]:
    if not info.dropped:
        return []
    return [f"dropped {', '.join(info.dropped)}: only video and audio are kept"]


def _duration(stats: PipelineStats, tb: Fraction) -> float | None:
    """Seconds from the first frame's timestamp to the end of the last frame."""
    if not stats.pts:
        return None
    return float((stats.pts[-1] - stats.pts[0] + stats.last_duration) * tb)


class _FrameBar:
    """``progress=True``: a tqdm bar counting frames, with rate and ETA (tqdm is a base dependency)."""

    def __init__(self, name: str, total: int | None) -> None:
        from tqdm import tqdm

        self._bar = tqdm(total=total, unit="frame", desc=name, leave=False, dynamic_ncols=True)

    def __call__(self, done: int, total: int | None) -> None:
        self._bar.update(done - self._bar.n)

    def close(self) -> None:
        self._bar.close()


def check_complete(src: str | os.PathLike, info: VideoInfo, stats: PipelineStats, step: int) -> None:
    """A :class:`VideoError` when fewer frames were decoded than the header promises (a truncated file).

    Two frames or 2 % may be missing (edit lists and rounding do that), no more.
    """
    if not stats.frames:
        raise VideoError(src, "its video stream has no decodable frame (empty, corrupt or truncated)")
    missing = info.frames - stats.frames
    if info.frames and missing > max(2, info.frames // 50):
        raise VideoError(src, f"truncated or corrupt: decoded {stats.frames} of the {info.frames} frames its header "
                         "lists")
    got = _duration(stats, info.time_base) or 0.0
    frame_s = float(step * info.time_base)
    if info.video_s and info.video_s - got > max(2 * frame_s, 0.02 * info.video_s):
        raise VideoError(src, f"truncated or corrupt: decoded {got:.2f} s of the {info.video_s:.2f} s its header "
                         "lists")


def enhance_video(enhancer: Any, src: str | os.PathLike, dst: str | os.PathLike, *, crf: int = DEFAULT_CRF,
                  preset: str = DEFAULT_PRESET, codec: str = "h264", video_ext: str | None = None, smooth: bool = True,
                  smoothing: SmoothingConfig | None = None, overwrite: bool = False,
                  progress: Progress | bool | None = None,
                  cancel: threading.Event | None = None, batch_size: int = 1, queue_size: int = 4,
                  threads: int = 0) -> VideoResult:
    """Enhance every frame of video ``src`` and write ``dst``, keeping its timing, audio, rotation and aspect.

    Args:
        enhancer: an :class:`~engan.runtime.Enhancer` (or anything with its ``enhance``/``enhance_batch``).
            Large frames are tiled by it exactly as photos are.
        src: the input video (mp4, mov, mkv, webm, avi...).
        dst: the output file, or a folder (then ``<stem>.<video_ext>`` inside it).
        crf, preset: H.264 quality (0-51, 18 looks like the input) and speed (x264 preset names).
        codec: ``"h264"`` or ``"same"`` (the input's codec family where this FFmpeg build encodes it).
        video_ext: ``mp4`` (default), ``mkv`` or ``same``, when ``dst`` is a folder.
        smooth: smooth the model's per-frame response (no flicker); False: plain per-frame output.
        smoothing: the smoothing's knobs (:class:`~engan.runtime.video.temporal.SmoothingConfig`).
        overwrite: replace an existing ``dst`` (otherwise FileExistsError).
        progress: ``progress(frames_done, total_or_None)`` after each frame (from a worker thread), or
            True for a progress bar on stderr (frames, rate, ETA).
        cancel: a threading.Event; setting it stops the run, leaves no output and raises VideoCancelled.
        batch_size: frames per model call.
        queue_size: frames buffered between stages (memory stays flat).
        threads: decoder and encoder threads (0: FFmpeg's choice).

    Returns:
        :class:`VideoResult`.

    Raises:
        VideoError: the input cannot be read (corrupt, truncated, no video stream, unsupported codec) or
            the output cannot be written; ``.reason`` is one line for ``FAILED <path>: <reason>``.
        FileExistsError: ``dst`` exists and ``overwrite`` is False.
        VideoUnavailable: PyAV is not installed (``pip install 'engan[video]'``).
    """
    check_settings(crf, preset, codec)
    out = resolve_output(src, dst, video_ext)
    if out.exists() and Path(src).exists() and out.resolve() == Path(src).resolve():
        raise ValueError(f"{out}: the output would overwrite its input; write to another folder")
    if (out.exists() or out.is_symlink()) and not overwrite:
        raise FileExistsError(f"{out} exists; pass overwrite=True (engan-infer: --overwrite) to replace it")
    reader = VideoReader(src, audio=True, threads=threads)
    writer = bar = None
    try:
        info = reader.info
        if progress is True:
            bar = _FrameBar(Path(src).name, info.frames or None)
        writer = VideoWriter(out, info, audio_streams=reader.audio_streams, codec=codec, crf=crf, preset=preset,
                             threads=threads)
        stats = run_pipeline(reader.items(), enhancer, writer, stabiliser=Stabiliser(smoothing) if smooth else None,
                             batch_size=batch_size, queue_size=queue_size, frame_hw=(info.height, info.width),
                             progress=bar or progress or None, total=info.frames or None, cancel=cancel)
        check_complete(src, info, stats, reader.frame_step)
        writer.finish()
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    finally:
        reader.close()
        if bar is not None:
            bar.close()
    return VideoResult(
        src=Path(src), dst=out, frames=stats.frames, fps=info.fps,
        duration_s=_duration(stats, info.time_base),
        seconds=stats.seconds, model_seconds=stats.model_seconds, encoder=writer.encoder, pix_fmt=writer.pix_fmt,
        bit_depth=writer.bits, audio_copied=writer.audio_copied, rotation=info.rotation,
        vfr=info.vfr or is_vfr(stats.pts),
        notes=_dropped_note(info) + writer.notes, cuts=stats.cuts, luma_in=stats.luma_in, luma_out=stats.luma_out,
        raw_gain=stats.raw_gain, smooth_gain=stats.smooth_gain,
    )


def iter_enhanced_frames(enhancer: Any, frames: Iterable[np.ndarray | DecodedFrame], *, fps: float = 30.0,
                         smooth: bool = True, smoothing: SmoothingConfig | None = None) -> Iterator[np.ndarray]:
    """Enhance frames from your own decoder, with the same temporal smoothing as :func:`enhance_video`.

    Args:
        enhancer: an :class:`~engan.runtime.Enhancer` (or anything with its ``enhance``).
        frames: HxWx3 RGB arrays (uint8, uint16 or float in [0, 1]) in display order, or
            :class:`~engan.runtime.video.frames.DecodedFrame` objects (their timestamps are used).
        fps: the frame rate of plain arrays (for the smoothing's time constant).
        smooth: smooth the model's response; False gives exactly ``enhancer.enhance(frame)`` per frame.

    Yields:
        The enhanced frames, each of its input's dtype and size.
    """
    stabiliser = Stabiliser(smoothing) if smooth else None
    grid = (smoothing or SmoothingConfig()).grid
    for i, f in enumerate(frames):
        arr, t = (f.rgb, f.time) if isinstance(f, DecodedFrame) else (np.asarray(f), i / fps)
        if arr.ndim != 3 or arr.shape[-1] != 3:
            raise ValueError(f"frame {i}: expected an HxWx3 RGB array, got shape {arr.shape}")
        y = enhancer.enhance(prepost.to_float(arr))
        if stabiliser is not None:
            y = stabiliser.step(frame_stats(arr, t, grid), y)
        yield prepost.from_float(y, arr.dtype)
