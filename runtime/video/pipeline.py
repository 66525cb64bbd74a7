"""Decode, enhance and encode at the same time: three stages joined by bounded queues. Torch-free.

* a decode thread reads the file once (:class:`~engan.runtime.video.frames.VideoReader`),
  turns each frame into float32 RGB and its :class:`~engan.runtime.video.temporal.FrameStats`;
* the calling thread runs the model (any object with the Enhancer's ``enhance`` /
  ``enhance_batch``), so a signal handler there can stop the run;
* an encode thread smooths the model's response (:class:`~engan.runtime.video.temporal.Stabiliser`),
  rounds to the output's depth, encodes, muxes the copied audio, and reports progress.

The queues hold a few frames each (fewer for large frames), so memory stays flat however
long the video is. FFmpeg and numpy release the GIL while they work, so the stages overlap.
"""
from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Protocol, Sequence

import numpy as np

from engan.runtime import prepost
from engan.runtime.video.frames import DecodedFrame
from engan.runtime.video.temporal import Stabiliser, frame_stats, mean_luma

#: Bytes of float32 frames each queue may hold (at least 2 frames, at most ``queue_size``).
QUEUE_BYTES = 256 * 2**20
_POLL_S = 0.1
_END = object()

Progress = Callable[[int, "int | None"], None]


class VideoCancelled(Exception):
    """The run was cancelled (its ``cancel`` event was set); no output was left behind."""


class EnhancerLike(Protocol):
    def enhance(self, image: np.ndarray) -> np.ndarray: ...


class FrameSink(Protocol):
    """Where the encode stage puts frames (:class:`~engan.runtime.video.writer.VideoWriter`)."""

    bits: int

    def write(self, rgb: np.ndarray, pts: int, duration: int | None = None) -> None: ...

    def copy_packet(self, packet: Any) -> None: ...


@dataclass
class PipelineStats:
    """What one run measured.

    Attributes:
        frames: frames written.
        seconds: wall time from the first read to the last write.
        model_seconds: time spent inside the enhancer's calls.
        luma_in, luma_out: per-frame mean luma of the input and of the written frames (before encoding).
        pts: the written frames' timestamps (input time base).
        last_duration: the last frame's duration (input time base).
        cuts: frame indices where a scene cut reset the smoothing.
        raw_gain, smooth_gain: the model's luma gain per frame, and the one written.
    """

    frames: int = 0
    seconds: float = 0.0
    model_seconds: float = 0.0
    luma_in: list[float] = field(default_factory=list)
    luma_out: list[float] = field(default_factory=list)
    pts: list[int] = field(default_factory=list)
    last_duration: int = 0
    cuts: list[int] = field(default_factory=list)
    raw_gain: list[float] = field(default_factory=list)
    smooth_gain: list[float] = field(default_factory=list)


def enhance_frames(enhancer: Any, frames: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Enhance float32 HxWx3 frames: one ``enhance_batch`` call when there are several and it exists.

    An enhancer that answers in integers (not the Enhancer's float-in, float-out contract) is
    read back to float in [0, 1].
    """
    if len(frames) > 1 and hasattr(enhancer, "enhance_batch"):
        out = list(enhancer.enhance_batch(list(frames)))
    else:
        out = [enhancer.enhance(f) for f in frames]
    return [y if y.dtype == np.float32 else prepost.to_float(y) for y in map(np.asarray, out)]


class _Stop(Exception):
    """Internal: another stage failed or the run was cancelled."""


class _Run:
    """One pipeline run: the threads, their queues and the first error any of them met."""

    def __init__(self, cancel: threading.Event | None, depth: int) -> None:
        self.cancel = cancel
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.q_in: queue.Queue = queue.Queue(depth)
        self.q_out: queue.Queue = queue.Queue(depth)

    def stopping(self) -> bool:
        return self.stop.is_set() or (self.cancel is not None and self.cancel.is_set())

    def put(self, q: queue.Queue, item: Any) -> None:
        while True:
            if self.stopping():
                raise _Stop
            try:
                q.put(item, timeout=_POLL_S)
                return
            except queue.Full:
                continue

    def get(self, q: queue.Queue) -> Any:
        while True:
            if self.stopping():
                raise _Stop
            try:
                return q.get(timeout=_POLL_S)
            except queue.Empty:
                continue

    def guard(self, fn: Callable[[], None]) -> Callable[[], None]:
        def body() -> None:
            try:
                fn()
            except _Stop:
                pass
            except BaseException as e:  # noqa: BLE001 - handed to the calling thread
                self.errors.append(e)
                self.stop.set()
        return body


def queue_depth(width: int, height: int, queue_size: int) -> int:
    """Frames per queue: ``queue_size``, fewer for large frames (see :data:`QUEUE_BYTES`)."""
    per_frame = max(1, width * height * 3 * 4)
    return max(2, min(queue_size, QUEUE_BYTES // per_frame))


def run_pipeline(items: Iterable[Any], enhancer: Any, sink: FrameSink, *, stabiliser: Stabiliser | None = None,
                 batch_size: int = 1, queue_size: int = 4, frame_hw: tuple[int, int] = (1080, 1920),
                 progress: Progress | None = None, total: int | None = None,
                 cancel: threading.Event | None = None, grid: int = 16) -> PipelineStats:
    """Decode (a thread), enhance (this thread), smooth and encode (a thread); returns what was measured.

    Args:
        items: :class:`DecodedFrame` objects and audio packets in file order (``VideoReader.items()``).
        enhancer: anything with ``enhance(float32 HxWx3) -> float32 HxWx3`` (and ``enhance_batch``).
        sink: receives the frames and the audio packets (:class:`~engan.runtime.video.writer.VideoWriter`).
        stabiliser: smooths the model's response; None writes the per-frame output as it is.
        batch_size: frames per model call (``enhance_batch``; 1 on a CPU, more can help a GPU).
        queue_size: frames each queue holds at most.
        frame_hw: the frames' (height, width), to size the queues.
        progress: ``progress(frames_written, total)``, called from the encode thread after each frame.
        total: the expected frame count for ``progress`` (None when unknown).
        cancel: set it (from any thread) to stop; :class:`VideoCancelled` is raised here.

    Raises:
        VideoCancelled: ``cancel`` was set.
        Any error of a stage (a :class:`~engan.runtime.video.probe.VideoError` for a corrupt file).
    """
    run = _Run(cancel, queue_depth(frame_hw[1], frame_hw[0], queue_size))
    stats = PipelineStats()
    out_dtype = np.uint16 if sink.bits > 8 else np.uint8

    def decode() -> None:
        for item in items:
            if isinstance(item, DecodedFrame):
                st = frame_stats(item.rgb, item.time, grid)
                run.put(run.q_in, (item, prepost.to_float(item.rgb), st))
            else:
                run.put(run.q_in, item)
        run.put(run.q_in, _END)

    def encode() -> None:
        while True:
            item = run.get(run.q_out)
            if item is _END:
                return
            if not isinstance(item, tuple):
                sink.copy_packet(item)
                continue
            frame, y, st = item
            if stabiliser is not None:
                y = stabiliser.step(st, y)
            pixels = prepost.from_float(y, out_dtype)
            del y
            sink.write(pixels, frame.pts, frame.duration)
            stats.luma_in.append(st.mean_luma)
            stats.luma_out.append(mean_luma(pixels))
            stats.pts.append(frame.pts)
            stats.last_duration = frame.duration or 0
            stats.frames += 1
            if progress is not None:
                progress(stats.frames, total)

    threads = [threading.Thread(target=run.guard(decode), name="engan-video-decode", daemon=True),
               threading.Thread(target=run.guard(encode), name="engan-video-encode", daemon=True)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    try:
        _enhance_stage(run, enhancer, max(1, batch_size), stats)
    except _Stop:
        pass
    except BaseException:
        run.stop.set()
        raise
    finally:
        if run.errors or run.stopping():
            run.stop.set()
        for t in threads:
            t.join()
    stats.seconds = time.perf_counter() - t0
    if run.errors:
        raise run.errors[0]
    if cancel is not None and cancel.is_set():
        raise VideoCancelled("cancelled")
    if stabiliser is not None:
        stats.cuts = list(stabiliser.state.cuts)
        stats.raw_gain, stats.smooth_gain = stabiliser.state.raw_gain, stabiliser.state.smooth_gain
    return stats


def _enhance_stage(run: _Run, enhancer: Any, batch_size: int, stats: PipelineStats) -> None:
    """The calling thread's part: take decoded frames, run the model, hand results to the encoder."""
    batch: list[tuple[DecodedFrame, np.ndarray, Any]] = []

    def flush() -> None:
        if not batch:
            return
        t = time.perf_counter()
        ys = enhance_frames(enhancer, [x for _, x, _ in batch])
        stats.model_seconds += time.perf_counter() - t
        for (frame, _, st), y in zip(batch, ys):
            run.put(run.q_out, (frame, y, st))
        batch.clear()

    while True:
        item = run.get(run.q_in)
        if item is _END:
            flush()
            run.put(run.q_out, _END)
            return
        if not isinstance(item, tuple):
            run.put(run.q_out, item)  # audio: straight on to the muxer, in file order
            continue
        if batch and batch[0][1].shape != item[1].shape:
            flush()  # a stream whose frame size changes: stack only equal sizes
        batch.append(item)
        if len(batch) >= batch_size:
            flush()
