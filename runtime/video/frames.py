"""Decode a video into RGB arrays with their timestamps, in one pass. Torch-free.

:class:`VideoReader` demuxes the video stream and the audio streams together, decodes
the video and yields, in file order, :class:`DecodedFrame` objects (RGB ``uint8``, or
``uint16`` for inputs deeper than 8 bits) and the audio packets untouched, so the writer
can copy the sound without a second read. Opening it decodes the first frame to describe
the file (:attr:`VideoReader.info`); those frames are kept and yielded first, so no frame
is ever decoded twice.

>>> with VideoReader("clip.mp4", audio=False) as r:
...     for f in r.frames():
...         f.rgb, f.pts, f.time_base     # HxWx3 uint8, timestamp in time_base units
"""
from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Iterator

import numpy as np

from engan.runtime.video.probe import (
    VideoError, VideoInfo, av_reason, build_info, check_decodable, import_av, open_input, video_stream,
)

#: FFmpeg AVColorSpace numbers that name no usable YUV matrix: RGB, unspecified, reserved.
_NO_MATRIX = (0, 2, 3)
#: AVColorRange numbers.
RANGE_LIMITED, RANGE_FULL = 1, 2
#: Decoded frames :class:`VideoReader` holds at most while it describes the file.
PEEK_FRAMES = 8


def yuv_matrix(colorspace: int, height: int) -> int:
    """The YUV<->RGB matrix (an AVColorSpace number) to read and write a video with.

    The file's own when it names one; else what players assume: BT.709 from 720 lines up,
    BT.601 below. Decoding and encoding with the same matrix keeps colours where they were.
    """
    if colorspace not in _NO_MATRIX and colorspace <= 14:
        return int(colorspace)
    return 1 if height >= 720 else 5


def yuv_range(color_range: int, pix_fmt: str) -> int:
    """The input's YUV range: its tag, else full for ``yuvj*`` formats and limited for the rest."""
    if color_range in (RANGE_LIMITED, RANGE_FULL):
        return int(color_range)
    return RANGE_FULL if pix_fmt.startswith("yuvj") else RANGE_LIMITED


@dataclass
class DecodedFrame:
    """One decoded picture.

    Attributes:
        rgb: HxWx3 RGB, ``uint8`` for 8-bit video, ``uint16`` (full 16-bit scale) for deeper video.
        pts: presentation timestamp in ``time_base`` units (filled in when the file has none).
        time_base: the unit of ``pts`` (seconds per tick).
        index: 0-based position in display order.
        duration: how long the frame is shown, in ``time_base`` units (None when unknown).
    """

    rgb: np.ndarray
    pts: int
    time_base: Fraction
    index: int
    duration: int | None = None

    @property
    def time(self) -> float:
        """Seconds from the stream's time origin."""
        return float(self.pts * self.time_base)


class VideoReader:
    """One pass over a video file: decoded frames and (optionally) its audio packets.

    Args:
        path: the video file.
        audio: also yield the audio streams' packets (for copying them).
        threads: decoder threads (0: FFmpeg's choice for this machine).

    Raises:
        VideoError: unreadable, corrupt or truncated file, no video stream, unsupported codec.
    """

    def __init__(self, path: str | os.PathLike, *, audio: bool = True, threads: int = 0) -> None:
        self.path = path
        self.frames_read = 0  # before the first decode: a decode error names how far it got
        self._av = import_av()
        self.container = open_input(path)
        try:
            self.stream = video_stream(self.container, path)
            check_decodable(self.stream, path)
            if threads >= 0:
                self.stream.thread_type = "AUTO"  # frame + slice threads: decoding keeps up with encoding
                self.stream.codec_context.thread_count = threads
            self.audio_streams = list(self.container.streams.audio) if audio else []
            self._raw = self._demux_decode()
            self._ready: deque = deque()
            self.info = self._describe()
        except BaseException:
            self.container.close()
            raise
        self.matrix = yuv_matrix(self.info.colorspace, self.info.height)
        self.range = yuv_range(self.info.color_range, self.info.pix_fmt)
        self.rgb_format = "rgb48le" if self.info.bit_depth > 8 else "rgb24"
        self._last_pts: int | None = None
        self.frame_step = self._ticks_per_frame()

    # ------------------------------------------------------------------ decoding
    def _demux_decode(self) -> Iterator[Any]:
        """av.VideoFrame and (audio) av.Packet objects in file order; FFmpeg errors become VideoError."""
        av = self._av
        try:
            for packet in self.container.demux(self.stream, *self.audio_streams):
                if packet.stream.index == self.stream.index:
                    yield from packet.decode()  # the empty packet at the end flushes the decoder
                elif packet.dts is not None and packet.size:  # skip the demuxer's flush packets
                    yield packet
        except av.error.FFmpegError as e:
            raise VideoError(self.path, f"its video cannot be decoded after frame {self.frames_read}: "
                             f"{av_reason(e)} (corrupt or truncated)") from None

    def _describe(self) -> VideoInfo:
        """Decode up to :data:`PEEK_FRAMES` frames (kept for :meth:`items`) and describe the file."""
        first, pts = None, []
        for item in self._raw:
            self._ready.append(item)
            if isinstance(item, self._av.VideoFrame):
                first = first or item
                if item.pts is not None:
                    pts.append(int(item.pts))
                if len(pts) >= PEEK_FRAMES:
                    break
        if first is None:
            raise VideoError(self.path, "its video stream has no decodable frame (empty, corrupt or truncated)")
        return build_info(self.container, self.stream, first, pts, self.path)

    def sample_timestamps(self, count: int) -> list[int]:
        """Timestamps of the first ``count`` frames, decoding without converting (uses the reader up)."""
        pts = [int(f.pts) for f in self._ready if isinstance(f, self._av.VideoFrame) and f.pts is not None]
        self._ready.clear()
        for item in self._raw:
            if len(pts) >= count:
                break
            if isinstance(item, self._av.VideoFrame) and item.pts is not None:
                pts.append(int(item.pts))
        return pts

    def _ticks_per_frame(self) -> int:
        """Ticks of one frame at the average rate (for frames without a timestamp)."""
        rate, tb = self.info.average_rate, self.info.time_base
        return max(1, round(1 / (rate * tb))) if rate and tb else 1

    def to_rgb(self, frame: Any) -> np.ndarray:
        """An av.VideoFrame as HxWx3 uint8 (8-bit video) or uint16 (deeper), with the file's matrix and range."""
        kwargs: dict[str, Any] = {"format": self.rgb_format}
        if not frame.format.name.startswith(("rgb", "bgr", "gbr", "gray")):
            kwargs.update(src_colorspace=self.matrix, src_color_range=self.range)
        return frame.to_ndarray(**kwargs)

    def _wrap(self, frame: Any) -> DecodedFrame:
        pts = frame.pts
        if pts is None or (self._last_pts is not None and pts <= self._last_pts):
            # no timestamp, or one that does not advance: the next slot at the average rate
            pts = 0 if self._last_pts is None else self._last_pts + self.frame_step
        self._last_pts = int(pts)
        # AVFrame.duration (PyAV >= 14 on FFmpeg >= 6), else one frame at the average rate: the writer
        # gives it to the last frame, which keeps the video's length
        duration = getattr(frame, "duration", None) or self.frame_step
        out = DecodedFrame(self.to_rgb(frame), int(pts), self.info.time_base, self.frames_read, int(duration))
        self.frames_read += 1
        return out

    def items(self) -> Iterator[Any]:
        """:class:`DecodedFrame` objects and audio ``av.Packet`` objects, in file order (one pass)."""
        while True:
            item = self._ready.popleft() if self._ready else next(self._raw, None)
            if item is None:
                return
            yield self._wrap(item) if isinstance(item, self._av.VideoFrame) else item

    def frames(self) -> Iterator[DecodedFrame]:
        """Only the decoded frames (audio packets, if any were asked for, are passed over)."""
        for item in self.items():
            if isinstance(item, DecodedFrame):
                yield item

    def frame_at(self, seconds: float) -> DecodedFrame | None:
        """The first frame shown at or after ``seconds`` (seeks to the keyframe before it); None past the end."""
        av = self._av
        target = int(seconds / self.info.time_base) if self.info.time_base else 0
        try:
            self.container.seek(max(0, target), stream=self.stream, backward=True, any_frame=False)
        except av.error.FFmpegError:
            self.container.seek(0)
        self._ready.clear()
        self._raw = self._demux_decode()
        self._last_pts = None
        last = None
        for frame in self.frames():
            last = frame
            if frame.pts >= target:
                return frame
        return last

    # ------------------------------------------------------------------ lifetime
    def close(self) -> None:
        self.container.close()

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def iter_frames(path: str | os.PathLike) -> Iterator[DecodedFrame]:
    """Decoded frames of ``path`` in display order (a convenience over :class:`VideoReader`)."""
    with VideoReader(path, audio=False) as reader:
        yield from reader.frames()
