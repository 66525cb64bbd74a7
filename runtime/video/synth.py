"""Small generated clips for tests, benchmarks and trying things out. Torch-free.

:func:`write_clip` writes frames with PyAV, with exactly the features a test needs:
audio (a tone), a rotation, a pixel aspect, uneven timestamps (variable frame rate), a
subtitle stream, 10-bit. :func:`static_dark_frames` is a still, dim scene with sensor
noise and a slow light drift; :func:`cut_frames` joins two different scenes with a hard cut.
"""
from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from engan.runtime.video.probe import import_av


def dark_scene(h: int, w: int, seed: int = 0, level: float = 0.1) -> np.ndarray:
    """A deterministic dim scene, float32 HxWx3 in [0, 1]: soft gradients, blocks and a few bright lamps."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([0.6 + 0.4 * np.sin(xx / (9 + 3 * c) + seed + c) * np.cos(yy / (7 + 2 * c) - seed)
                    for c in range(3)], -1)
    for _ in range(6):  # furniture: flat blocks of other colours
        y0, x0 = rng.integers(0, max(1, h - 8)), rng.integers(0, max(1, w - 8))
        img[y0:y0 + rng.integers(4, max(5, h // 3)), x0:x0 + rng.integers(4, max(5, w // 3))] = rng.random(3) * 1.2
    img *= level
    for _ in range(2):  # small bright lamps: the highlights a dark scene has
        cy, cx = rng.integers(0, h), rng.integers(0, w)
        img += (0.9 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * (1 + min(h, w) / 40) ** 2)))[..., None]
    return np.clip(img, 0.0, 1.0)


def static_dark_frames(n: int, h: int, w: int, seed: int = 0, noise: float = 3 / 255, drift: float = 0.03,
                       level: float = 0.1) -> Iterator[np.ndarray]:
    """``n`` uint8 frames of a static camera on a dim scene: sensor noise and a slow light drift."""
    base = dark_scene(h, w, seed, level)
    rng = np.random.default_rng(seed + 1)
    for i in range(n):
        light = 1.0 + drift * np.sin(2 * np.pi * i / 40.0)
        frame = base * light + rng.normal(0.0, noise, base.shape).astype(np.float32)
        yield (np.clip(frame, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)


def cut_frames(n: int, cut: int, h: int, w: int, seed: int = 0) -> Iterator[np.ndarray]:
    """``n`` frames with a hard cut before frame ``cut``: a very dark scene, then a brighter, different one."""
    first = static_dark_frames(cut, h, w, seed=seed, level=0.05, drift=0.0)
    second = static_dark_frames(n - cut, h, w, seed=seed + 7, level=0.3, drift=0.0)
    yield from first
    yield from second


def tone(seconds: float, rate: int = 16000, hz: float = 440.0) -> np.ndarray:
    """A mono float32 sine, shape (1, samples)."""
    t = np.arange(int(round(seconds * rate))) / rate
    return (0.2 * np.sin(2 * np.pi * hz * t)).astype(np.float32)[None]


def write_clip(path: str | os.PathLike, frames: Iterable[np.ndarray], *, fps: int = 25,
               pts: Sequence[int] | None = None, time_base: Fraction | None = None, audio: bool = False,
               rotation: int = 0, sample_aspect_ratio: Fraction | None = None, subtitle: bool = False,
               codec: str = "libx264", pix_fmt: str = "yuv420p", options: dict[str, str] | None = None) -> Path:
    """Write ``frames`` (HxWx3 uint8, or uint16 for a >8-bit ``pix_fmt``) as a video file.

    Args:
        path: the file; its extension picks the container.
        fps: the nominal frame rate.
        pts: per-frame timestamps in ``time_base`` units (default ``i``, with time base ``1/fps``);
            uneven steps make a variable-frame-rate clip.
        audio: add an AAC mono tone as long as the video.
        rotation: display rotation, counter-clockwise degrees (needs PyAV >= 18).
        subtitle: add an ASS subtitle stream (Matroska; needs PyAV >= 16).
        codec, pix_fmt, options: the video encoder (default lossless-looking H.264: ``qp=10``).
    """
    av = import_av()
    path = Path(path)
    tb = time_base or Fraction(1, fps)
    out = av.open(str(path), mode="w")
    try:
        v = out.add_stream(codec, rate=fps, options=options or ({"qp": "10"} if codec == "libx264" else {}))
        frames = iter(frames)
        first = next(frames)
        v.height, v.width = first.shape[:2]
        v.pix_fmt = pix_fmt
        v.codec_context.time_base = tb
        v.time_base = tb
        if rotation:
            v.set_display_rotation(rotation)
        if sample_aspect_ratio:
            v.codec_context.sample_aspect_ratio = sample_aspect_ratio
        a = out.add_stream("aac", rate=16000) if audio else None
        if a is not None:
            a.layout = "mono"
        s = out.add_stream("ass") if subtitle else None
        fmt = "rgb48le" if first.dtype == np.uint16 else "rgb24"
        last = 0
        for i, rgb in enumerate(_chain(first, frames)):
            f = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format=fmt)
            f.pts = last = int(pts[i]) if pts is not None else i
            f.time_base = tb
            out.mux(v.encode(f))
        out.mux(v.encode(None))
        seconds = float((last + (1 if pts is None else max(1, round(1 / (fps * tb))))) * tb)
        if a is not None:
            af = av.AudioFrame.from_ndarray(tone(seconds), format="flt", layout="mono")
            af.sample_rate, af.pts = 16000, 0
            out.mux(a.encode(af))
            out.mux(a.encode(None))
        if s is not None:
            p = av.Packet(b"0,0,Default,,0,0,0,,night")
            p.stream, p.pts, p.dts, p.duration, p.time_base = s, 0, 0, 500, Fraction(1, 1000)
            out.mux(p)
    finally:
        out.close()
    return path


def _chain(first: np.ndarray, rest: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    yield first
    yield from rest
