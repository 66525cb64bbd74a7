"""Open a video and describe it: streams, codec, bit depth, timing, rotation, aspect. Torch-free.

PyAV (``av``, FFmpeg in its wheel) is imported only inside functions, through
:func:`import_av`, so ``import engan.runtime.video`` works without it and the error
names the extra to install. Everything that can go wrong with an input file becomes a
:class:`VideoError` whose ``reason`` reads well in a ``FAILED <path>: <reason>`` line.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from types import ModuleType
from typing import Any

from engan.runtime._optional import BackendUnavailable

#: How many frames :func:`probe_video` reads to tell constant from variable frame rate.
VFR_FRAMES = 48


class VideoError(Exception):
    """A video that cannot be read or written; ``reason`` is one line for ``FAILED <path>: <reason>``."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class VideoUnavailable(BackendUnavailable):
    """PyAV is not installed; the message says how to install it."""


def import_av() -> ModuleType:
    """``import av``, or :class:`VideoUnavailable` naming the ``engan[video]`` extra."""
    try:
        import av
    except ImportError as e:
        raise VideoUnavailable(
            f"video files need PyAV (the Python package 'av', FFmpeg included), which cannot be imported here "
            f"({e}); install it with: pip install 'engan[video]'"
        ) from None
    return av


def av_reason(e: BaseException) -> str:
    """One line saying what FFmpeg disliked, without PyAV's errno prefix and file name."""
    text = getattr(e, "strerror", None) or str(e) or type(e).__name__
    return " ".join(str(text).split())


@dataclass(frozen=True)
class AudioInfo:
    """One audio stream, copied to the output untouched."""

    index: int
    codec: str
    sample_rate: int | None
    channels: int | None


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe` found out about a video file.

    Attributes:
        path: the file.
        container: FFmpeg's demuxer name (``mov,mp4,m4a,3gp,3g2,mj2``, ``matroska,webm``...).
        codec: the video decoder's name (``h264``, ``hevc``, ``vp9``...).
        pix_fmt: the decoded pixel format (``yuv420p``, ``yuv420p10le``...).
        bit_depth: bits per sample of the decoded frames (8, 10, 12...).
        width, height: coded frame size (before rotation).
        average_rate: mean frames per second (None when the file does not say).
        time_base: the video stream's timestamp unit.
        frames: frame count from the header (0 when unknown, e.g. Matroska).
        vfr: the first frames' timestamps are not evenly spaced (variable frame rate).
        rotation: counter-clockwise degrees a player turns the picture (display matrix), 0 when none.
        sample_aspect_ratio: pixel aspect (None or 1 for square pixels).
        duration_s: the container's duration in seconds (None when unknown).
        video_s: the video stream's own length from its header (stream duration, or Matroska's
            ``DURATION`` tag), None when the file does not say; a shorter decode means truncation.
        colorspace, color_range: FFmpeg's AVColorSpace / AVColorRange numbers of the first frame.
        audio: the audio streams, copied without re-encoding.
        dropped: one ``"subtitle stream 2 (mov_text)"``-like entry per stream that is not kept.
    """

    path: Path
    container: str
    codec: str
    pix_fmt: str
    bit_depth: int
    width: int
    height: int
    average_rate: Fraction | None
    time_base: Fraction
    frames: int
    vfr: bool
    rotation: int
    sample_aspect_ratio: Fraction | None
    duration_s: float | None
    video_s: float | None = None
    colorspace: int = 2
    color_range: int = 0
    audio: tuple[AudioInfo, ...] = ()
    dropped: tuple[str, ...] = field(default_factory=tuple)

    @property
    def fps(self) -> float | None:
        return float(self.average_rate) if self.average_rate else None


def open_input(path: str | os.PathLike) -> Any:
    """``av.open(path)`` with every failure turned into a :class:`VideoError`."""
    av = import_av()
    path = Path(path)
    if not path.exists():
        raise VideoError(path, "no such file")
    if path.is_dir():
        raise VideoError(path, "is a folder, not a video file")
    try:
        return av.open(str(path), mode="r", metadata_errors="replace")
    except av.error.FFmpegError as e:
        raise VideoError(path, f"not a readable video: {av_reason(e)} (corrupt, truncated or not a video)") from None
    except OSError as e:
        raise VideoError(path, f"cannot be opened: {e.strerror or e}") from None


def video_stream(container: Any, path: str | os.PathLike) -> Any:
    """The first video stream that is not a cover picture, or a :class:`VideoError`."""
    for s in container.streams.video:
        disposition = getattr(s, "disposition", 0)  # an int flag set, or a Flag enum in some PyAV versions
        if int(getattr(disposition, "value", disposition)) & 0x400:  # AV_DISPOSITION_ATTACHED_PIC: a cover
            continue
        return s
    kinds = sorted({s.type for s in container.streams}) or ["none"]
    raise VideoError(path, f"has no video stream (streams: {', '.join(kinds)})")


def stream_codec(stream: Any) -> str:
    ctx = stream.codec_context
    return getattr(ctx, "name", None) or "unknown"


def bit_depth(pix_fmt: str | None) -> int:
    """Bits per sample of an FFmpeg pixel format (8 when unknown)."""
    if not pix_fmt:
        return 8
    import av

    try:
        return max(int(c.bits) for c in av.VideoFormat(pix_fmt).components) or 8
    except (ValueError, TypeError, AttributeError):
        return 8


def _rotation(frame: Any, stream: Any) -> int:
    """Counter-clockwise display rotation: the decoded frame's display matrix, else the stream's ``rotate`` tag."""
    rot = getattr(frame, "rotation", None)
    if rot is None:
        try:
            rot = -float(stream.metadata.get("rotate", 0))  # the old tag is clockwise
        except (TypeError, ValueError):
            rot = 0
    return int(round(float(rot))) % 360


def is_vfr(pts: list[int]) -> bool:
    """Uneven steps between timestamps (display order): more than 10 % and one tick off the median step."""
    steps = sorted(b - a for a, b in zip(pts, pts[1:]) if b > a)
    if len(steps) < 3:
        return False
    median = steps[len(steps) // 2]
    return any(abs(s - median) > max(1, 0.1 * median) for s in steps)


def _dropped(container: Any, keep: set[int]) -> tuple[str, ...]:
    out = []
    for s in container.streams:
        if s.index in keep:
            continue
        ctx = getattr(s, "codec_context", None)
        name = getattr(ctx, "name", None) if ctx is not None else None
        name = name or getattr(getattr(s, "codec", None), "name", None) or "unknown codec"
        out.append(f"{s.type} stream {s.index} ({name})")
    return tuple(out)


def build_info(container: Any, stream: Any, first: Any, frame_pts: list[int], path: str | os.PathLike) -> VideoInfo:
    """A :class:`VideoInfo` from an open container, its video stream, the first decoded frame and the
    timestamps of the first frames (see :class:`engan.runtime.video.frames.VideoReader`)."""
    audio = tuple(AudioInfo(s.index, stream_codec(s), getattr(s.codec_context, "sample_rate", None),
                            getattr(s.codec_context, "channels", None)) for s in container.streams.audio)
    pix_fmt = first.format.name
    rate = stream.average_rate or getattr(stream, "guessed_rate", None)
    return VideoInfo(
        path=Path(path), container=container.format.name, codec=stream_codec(stream), pix_fmt=pix_fmt,
        bit_depth=bit_depth(pix_fmt), width=first.width, height=first.height,
        average_rate=Fraction(rate) if rate else None,
        time_base=Fraction(stream.time_base) if stream.time_base else Fraction(1, 90000),
        frames=int(stream.frames or 0), vfr=is_vfr(frame_pts), rotation=_rotation(first, stream),
        sample_aspect_ratio=Fraction(stream.sample_aspect_ratio) if stream.sample_aspect_ratio else None,
        duration_s=container.duration / 1_000_000 if container.duration else None,
        video_s=stream_seconds(stream), colorspace=int(first.colorspace), color_range=int(first.color_range),
        audio=audio,
        dropped=_dropped(container, {stream.index, *(a.index for a in audio)}),
    )


def stream_seconds(stream: Any) -> float | None:
    """A stream's length from its header: its duration, else a Matroska ``DURATION`` tag (``HH:MM:SS.nnn``)."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    tag = stream.metadata.get("DURATION") or stream.metadata.get("duration")
    try:
        h, m, sec = str(tag).split(":")
        return int(h) * 3600 + int(m) * 60 + float(sec)
    except ValueError:
        return None


def check_decodable(stream: Any, path: str | os.PathLike) -> None:
    """A :class:`VideoError` when this FFmpeg build has no decoder for the video stream."""
    ctx = stream.codec_context
    codec = stream_codec(stream) if ctx is not None else "unknown"
    if ctx is None or codec in ("none", "unknown") or getattr(ctx, "codec", None) is None:
        raise VideoError(path, f"unsupported video codec ({codec}): this FFmpeg build cannot decode it; "
                         "re-encode the file to H.264 first")


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Open ``path`` and describe its video; :class:`VideoError` when it cannot be read."""
    import dataclasses

    from engan.runtime.video.frames import VideoReader

    with VideoReader(path, audio=False) as reader:
        return dataclasses.replace(reader.info, vfr=is_vfr(reader.sample_timestamps(VFR_FRAMES)))
