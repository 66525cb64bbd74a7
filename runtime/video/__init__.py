"""engan.runtime.video: enhance video files frame by frame, without flicker. Torch-free.

>>> from engan.runtime import Enhancer
>>> from engan.runtime.video import enhance_video, iter_enhanced_frames
>>> res = enhance_video(Enhancer.load(), "night.mp4", "out/")     # out/night.mp4, audio copied
>>> res.frames, res.processing_fps, res.flicker_ratio, res.notes

Needs PyAV (``pip install 'engan[video]'``); importing this package does not, and the
names below load their modules on first use. Modules: ``probe`` (describe a file),
``frames`` (decode), ``writer`` (encode, atomically), ``temporal`` (smoothing, flicker
ratio), ``pipeline`` (threads), ``api`` (the functions users call), ``jobs`` (what
engan-infer calls: one job per video, status lines, poster frames).
"""
from __future__ import annotations

import importlib
from typing import Any

_LAZY: dict[str, str] = {
    "VIDEO_EXTENSIONS": "api", "VIDEO_EXT_CHOICES": "api", "is_video": "api", "video_output_name": "api",
    "enhance_video": "api", "iter_enhanced_frames": "api", "VideoResult": "api",
    "run_video_job": "jobs", "VideoJobResult": "jobs", "poster_frames": "jobs",
    "VideoError": "probe", "VideoUnavailable": "probe", "VideoInfo": "probe", "probe_video": "probe",
    "VideoReader": "frames", "DecodedFrame": "frames", "iter_frames": "frames",
    "VideoWriter": "writer", "VideoCancelled": "pipeline",
    "Stabiliser": "temporal", "SmoothingConfig": "temporal", "flicker_ratio": "temporal", "mean_luma": "temporal",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'engan.runtime.video' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"engan.runtime.video.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
