"""Encode enhanced frames into a video file, copy the audio untouched, write atomically. Torch-free.

:class:`VideoWriter` encodes RGB frames with the timestamps they came with (variable frame
rate kept), H.264 yuv420p by default with a CRF and an x264 preset (or the input's codec
family, :data:`FAMILIES`, where this FFmpeg build encodes it and the container holds it),
10-bit where the encoder has a 10-bit format, and keeps the rotation (display matrix),
the pixel aspect ratio and the colour tags. Audio packets are muxed as they were read.

The file is written under a temp name beside the target (``.<name>.<pid>.<random>.tmp``,
the names of :mod:`engan.runtime.atomic`) and renamed over it by :meth:`VideoWriter.finish`,
so a killed run never leaves a partial video under the final name, and a later run can
tell a dead writer's temp file from a live one (:func:`engan.runtime.atomic.remove_stale_temp_files`).
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from engan.runtime.atomic import TEMP_SUFFIX, temp_prefix
from engan.runtime.video.frames import RANGE_LIMITED, yuv_matrix
from engan.runtime.video.probe import VideoError, VideoInfo, av_reason, import_av

#: File extension -> FFmpeg muxer.
CONTAINER_FORMATS: dict[str, str] = {"mp4": "mp4", "m4v": "mp4", "mov": "mov", "mkv": "matroska",
                                     "webm": "webm", "avi": "avi"}
#: Codec family (FFmpeg decoder name) -> encoders tried in order.
FAMILIES: dict[str, tuple[str, ...]] = {"h264": ("libx264",), "hevc": ("libx265",), "vp9": ("libvpx-vp9",),
                                        "vp8": ("libvpx",), "av1": ("libsvtav1", "libaom-av1")}
#: Video codecs a container holds when PyAV cannot tell (``OutputContainer.supported_codecs``).
_WEBM_VIDEO = {"vp8", "vp9", "av1"}
#: x264/x265 presets (``--preset``), fastest first.
PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow", "placebo")
#: The defaults of :func:`~engan.runtime.video.api.enhance_video` and ``engan-infer --crf/--preset``.
DEFAULT_CRF, DEFAULT_PRESET = 18, "medium"
#: Codecs :func:`codec_options` knows how to give a CRF and a preset.
CODEC_CHOICES = ("h264", "same")


def check_settings(crf: int, preset: str, codec: str) -> None:
    """Refuse encoder settings that cannot work, before any file is read."""
    if isinstance(crf, bool) or not isinstance(crf, (int, np.integer)) or not 0 <= crf <= 51:
        raise ValueError(f"crf must be a whole number from 0 (lossless) to 51, got {crf!r}; 18 looks like the input")
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {', '.join(PRESETS)}, got {preset!r}")
    if codec not in CODEC_CHOICES:
        raise ValueError(f"codec must be 'h264' or 'same' (the input's codec family), got {codec!r}")


def encoder_formats(name: str) -> tuple[str, ...]:
    """Pixel formats encoder ``name`` takes here; () when this FFmpeg build has no such encoder."""
    av = import_av()
    try:
        codec = av.codec.Codec(name, "w")
    except Exception:  # noqa: BLE001 - UnknownCodecError and friends differ between PyAV versions
        return ()
    return tuple(f.name for f in (codec.video_formats or ()))


def codec_options(encoder: str, crf: int, preset: str) -> dict[str, str]:
    """Encoder options for a CRF and an x264-style preset (mapped onto each encoder's own speed knob)."""
    speed = PRESETS.index(preset)  # 0 fastest .. 9 slowest
    if encoder in ("libx264", "libx265"):
        opts = {"crf": str(crf), "preset": preset}
        if encoder == "libx265":
            opts["x265-params"] = "log-level=error"
        return opts
    if encoder in ("libvpx-vp9", "libvpx"):  # constant quality needs a zero (vp9) or capped (vp8) bitrate
        return {"crf": str(max(4, crf)), "b": "0" if encoder == "libvpx-vp9" else "20M", "deadline": "good",
                "cpu-used": str(max(0, 5 - speed // 2))}
    if encoder == "libsvtav1":
        return {"crf": str(max(1, crf)), "preset": str(max(0, 12 - speed))}
    return {"crf": str(crf)}


def _container_holds(container: Any, codec: str, kind: str) -> bool:
    supported = getattr(container, "supported_codecs", None)
    if supported:
        return codec in supported
    return codec in _WEBM_VIDEO if container.format.name == "webm" and kind == "video" else True


def _pick_pix_fmt(encoder: str, bits: int, width: int, height: int, notes: list[str]) -> str:
    """yuv420p (10-bit for deep input when the encoder has it); 4:4:4 when a side is odd (4:2:0 needs even)."""
    formats = encoder_formats(encoder)
    odd = width % 2 or height % 2
    base = "yuv444p" if odd and "yuv444p" in formats else "yuv420p"
    if odd:
        notes.append(f"odd frame size {width}x{height}: written as {base} (4:2:0 needs even sides)")
    if bits > 8:
        deep = base + "10le"
        if deep in formats:
            return deep
        notes.append(f"{bits}-bit input written as 8-bit: the {encoder} encoder of this FFmpeg build has no "
                     f"{deep}; write .mp4 or .mkv with H.264 (libx264 writes 10-bit) to keep the depth")
    return base if base in formats or not formats else formats[0]


def can_write_rotation(stream: Any) -> bool:
    """Whether PyAV can put a display matrix on this output stream (PyAV >= 18)."""
    return hasattr(stream, "set_display_rotation")


class VideoWriter:
    """Encode RGB frames and copied audio packets into ``dst`` (renamed into place by :meth:`finish`).

    Args:
        dst: the final file; its extension picks the container (:data:`CONTAINER_FORMATS`).
        info: the input's :class:`VideoInfo` (size, rate, time base, rotation, aspect, colours, depth).
        audio_streams: input audio streams to copy (those the container cannot hold are dropped with a note).
        codec: ``"h264"`` (the default; the input's family where the container cannot hold H.264, e.g. WebM)
            or ``"same"`` (the input's codec family where this FFmpeg build encodes it, else H.264).
        crf, preset: quality and speed (x264 scale; mapped for other encoders).
        threads: encoder threads (0: the encoder's choice).
    """

    def __init__(self, dst: str | os.PathLike, info: VideoInfo, *, audio_streams: Iterable[Any] = (),
                 codec: str = "h264", crf: int = 18, preset: str = "medium", threads: int = 0) -> None:
        check_settings(crf, preset, codec)
        self._av = av = import_av()
        self.dst = Path(dst)
        ext = self.dst.suffix.lower().lstrip(".")
        if ext not in CONTAINER_FORMATS:
            raise ValueError(f"{self.dst.name}: unknown video extension .{ext}; use one of "
                             f"{', '.join('.' + e for e in CONTAINER_FORMATS)}")
        self.info = info
        self.notes: list[str] = []
        self.dst.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=temp_prefix(self.dst), suffix=TEMP_SUFFIX, dir=self.dst.parent)
        os.close(fd)
        self.tmp = Path(tmp)
        fmt = CONTAINER_FORMATS[ext]
        # the index up front: a browser (the --html page) plays an MP4 before it has all of it
        options = {"movflags": "+faststart"} if fmt in ("mp4", "mov") else {}
        try:
            self.container = av.open(str(self.tmp), mode="w", format=fmt, options=options)
            self._add_video(codec, crf, preset, threads)
            self._audio = self._add_audio(audio_streams)
        except BaseException:
            self.abort()
            raise
        self.frames_written = 0

    # ------------------------------------------------------------------ streams
    def _encoder(self, codec: str) -> str:
        family = self.info.codec
        same = next((e for e in FAMILIES.get(family, ()) if encoder_formats(e)), None)
        if same and not _container_holds(self.container, family, "video"):
            same = None
        if codec == "same" and same is None:
            self.notes.append(f"the input's codec ({family}) cannot be encoded here into "
                              f"{self.dst.suffix}; written as H.264")
        if _container_holds(self.container, "h264", "video") and not (codec == "same" and same):
            return "libx264"
        if same:
            return same
        for fam in ("vp9", "av1", "vp8"):  # WebM: the first family this build encodes
            enc = next((e for e in FAMILIES[fam] if encoder_formats(e)), None)
            if enc and _container_holds(self.container, fam, "video"):
                return enc
        raise VideoError(self.dst, f"no encoder of this FFmpeg build can write video into {self.dst.suffix}; "
                         "use --video-ext mp4")

    def _add_video(self, codec: str, crf: int, preset: str, threads: int) -> None:
        info, av = self.info, self._av
        encoder = self._encoder(codec)
        self.rotate_k = 0  # quarter turns baked into the pixels when the display matrix cannot be written
        width, height = info.width, info.height
        stream = self.container.add_stream(encoder, rate=info.average_rate or 30,
                                           options=codec_options(encoder, crf, preset))
        if info.rotation:
            if can_write_rotation(stream):
                stream.set_display_rotation(info.rotation)
            elif info.rotation % 90 == 0:
                self.rotate_k = info.rotation // 90
                if self.rotate_k % 2:
                    width, height = height, width
                self.notes.append(f"rotation ({info.rotation} degrees) turned into the pixels: this PyAV cannot "
                                  "write a display matrix (PyAV >= 18 can)")
            else:
                self.notes.append(f"rotation ({info.rotation} degrees) not kept: this PyAV cannot write it")
        self.pix_fmt = _pick_pix_fmt(encoder, info.bit_depth, width, height, self.notes)
        stream.width, stream.height, stream.pix_fmt = width, height, self.pix_fmt
        ctx = stream.codec_context
        ctx.time_base = info.time_base  # the input's timestamps pass through unchanged (VFR kept)
        stream.time_base = info.time_base
        if threads:
            ctx.thread_count = threads
        if info.sample_aspect_ratio and info.sample_aspect_ratio != 1:
            sar = info.sample_aspect_ratio
            ctx.sample_aspect_ratio = sar if self.rotate_k % 2 == 0 else 1 / sar  # turned pixels: aspect turns too
        self.matrix = yuv_matrix(info.colorspace, info.height)
        with contextlib.suppress(AttributeError, TypeError, ValueError):  # colour tags: PyAV >= 14 on most builds
            ctx.colorspace = self.matrix
            ctx.color_range = RANGE_LIMITED
        self.encoder, self.stream = encoder, stream
        self.bits = 10 if "10" in self.pix_fmt else 8
        self._in_format = "rgb48le" if self.bits > 8 else "rgb24"

    def _add_audio(self, streams: Iterable[Any]) -> dict[int, Any]:
        out: dict[int, Any] = {}
        for s in streams:
            name = s.codec_context.name if s.codec_context is not None else "unknown"
            if not _container_holds(self.container, name, "audio"):
                self.notes.append(f"audio stream {s.index} ({name}) dropped: {self.dst.suffix} cannot hold {name} "
                                  "without re-encoding; use --video-ext mkv or same to keep it")
                continue
            out[s.index] = self.container.add_stream_from_template(s)
        return out

    @property
    def audio_copied(self) -> int:
        return len(self._audio)

    # ------------------------------------------------------------------ writing
    def write(self, rgb: np.ndarray, pts: int, duration: int | None = None) -> None:
        """Encode one HxWx3 RGB frame: uint8, or uint16 for a 10-bit output (other depths are converted)."""
        av = self._av
        want = np.uint16 if self.bits > 8 else np.uint8
        if rgb.dtype != want:
            rgb = (rgb.astype(np.float32) * (65535 / 255) + 0.5).astype(np.uint16) if want == np.uint16 \
                else (rgb.astype(np.float32) * (255 / 65535) + 0.5).astype(np.uint8)
        if self.rotate_k:
            rgb = np.rot90(rgb, self.rotate_k)
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format=self._in_format)
        frame = frame.reformat(format=self.pix_fmt, dst_colorspace=self.matrix, dst_color_range=RANGE_LIMITED)
        frame.pts = int(pts)
        frame.time_base = self.info.time_base
        if duration:
            with contextlib.suppress(AttributeError):
                frame.duration = int(duration)
        self._mux(self.stream.encode(frame))
        self.frames_written += 1

    def copy_packet(self, packet: Any) -> None:
        """Mux one input audio packet as it is (a packet of a stream not copied is ignored)."""
        out = self._audio.get(packet.stream.index)
        if out is not None:
            packet.stream = out
            self._mux([packet])

    def _mux(self, packets: Iterable[Any]) -> None:
        try:
            for p in packets:
                self.container.mux(p)
        except self._av.error.FFmpegError as e:
            raise VideoError(self.dst, f"cannot be written: {av_reason(e)}") from None

    def finish(self) -> Path:
        """Flush the encoder, close the file and rename it over ``dst``; returns ``dst``."""
        try:
            self._mux(self.stream.encode(None))
            self.container.close()
            with open(self.tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(self.tmp, 0o666 & ~umask)  # mkstemp made it 0600
            os.replace(self.tmp, self.dst)
        except BaseException:
            self.abort()
            raise
        return self.dst

    def abort(self) -> None:
        """Close without finishing and delete the temp file (nothing is left under any name)."""
        container = getattr(self, "container", None)
        if container is not None:
            with contextlib.suppress(Exception):
                container.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.tmp)
