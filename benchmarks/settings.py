"""What one ``pytest benchmarks`` run measures: quick (CI) or full (people measuring).

Every knob is a command-line option registered in ``benchmarks/conftest.py``:

``--quick``              CI mode: ``tiny`` preset, 256x256 and 400x608, 3 rounds; asserts parity only.
``--bench-presets``      comma list of generator presets (full default: ``lite,paper``).
``--bench-sizes``        comma list of HxW sizes, e.g. ``400x608,720x1280`` (H first).
``--bench-rounds``       interleaved timing rounds per size (default: adaptive, see :data:`ROUND_BUDGET_S`).
``--bench-threads``      CPU threads for every backend (default: all cores this process may use; 1 in
                         --quick: CI only checks that the suite works, and on a busy machine two
                         OpenMP threads that wait for each other can make eager torch 20x slower).
``--bench-weights``      generator ``.safetensors`` or run folder to benchmark instead of the default weights.
``--bench-calib-images`` INT8 calibration images (default 32, 4 in --quick).
``--bench-out``          folder for the result files (default ``benchmarks/results``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
#: The sizes of the issue, as (H, W): 256x256, 608x400 LOL photos padded to 16 (H=400, W=608),
#: 1280x720 and 1920x1088 (H=1088, W=1920).
FULL_SIZES: tuple[tuple[int, int], ...] = ((256, 256), (400, 608), (720, 1280), (1088, 1920))
QUICK_SIZES: tuple[tuple[int, int], ...] = ((256, 256), (400, 608))
FULL_PRESETS = ("lite", "paper")
QUICK_PRESETS = ("tiny",)
#: Full mode: timing rounds per (preset, size) are chosen so that one size takes about this
#: long (at least MIN_ROUNDS, at most MAX_ROUNDS); quick mode always uses QUICK_ROUNDS.
ROUND_BUDGET_S = 90.0
MIN_ROUNDS, MAX_ROUNDS, QUICK_ROUNDS = 3, 15, 3


def shared_dir() -> Path:
    """``$ENGAN_SHARED`` or the repository's sibling ``shared/`` (read-only research data)."""
    return Path(os.environ.get("ENGAN_SHARED", REPO.parent / "shared"))


def parse_size(text: str) -> tuple[int, int]:
    """``"400x608"`` -> (400, 608): height first, both multiples of 16."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"size {text!r} is not HxW (e.g. 400x608, height first)") from None
    if h <= 0 or w <= 0 or h % 16 or w % 16:
        raise ValueError(f"size {text!r}: height and width must be positive multiples of 16 (e.g. 400x608)")
    return h, w


@dataclass(frozen=True)
class BenchSettings:
    """The resolved options of one benchmark run.

    Attributes:
        quick: CI mode (small sizes, few rounds, parity asserts only).
        presets: generator presets to benchmark.
        sizes: (H, W) input sizes, multiples of 16.
        rounds: interleaved timing rounds per size; None chooses per size from ROUND_BUDGET_S.
        warmup: untimed runs of every backend before timing.
        threads: CPU threads every backend may use.
        weights: generator weights to use for every preset they match (None: shipped / seeded random).
        out_dir: where latest.json/.md/.png are written.
        calib_images: INT8 calibration images.
        parity_images: distinct real images cycled through the timing rounds.
    """

    quick: bool = False
    presets: tuple[str, ...] = FULL_PRESETS
    sizes: tuple[tuple[int, int], ...] = FULL_SIZES
    rounds: int | None = None
    warmup: int = 1
    threads: int = 2
    weights: str | None = None
    out_dir: Path = BENCH_DIR / "results"
    calib_images: int = 32
    parity_images: int = 4

    @property
    def mode(self) -> str:
        return "quick" if self.quick else "full"

    @property
    def result_stem(self) -> str:
        """``latest`` for full runs; ``quick`` for CI runs, so a CI run never overwrites measured results."""
        return "quick" if self.quick else "latest"

    def rounds_for(self, seconds_per_round: float) -> int:
        """Timing rounds for a size whose one round (every backend once) takes ``seconds_per_round``."""
        if self.rounds:
            return self.rounds
        if self.quick:
            return QUICK_ROUNDS
        fit = int(ROUND_BUDGET_S / max(seconds_per_round, 1e-3))
        return max(MIN_ROUNDS, min(MAX_ROUNDS, fit))


def default_threads() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))  # type: ignore[attr-defined]
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def settings_from_options(
    quick: bool,
    presets: str | None,
    sizes: str | None,
    rounds: int | None,
    threads: int | None,
    weights: str | None,
    out_dir: str | None,
    calib_images: int | None = None,
) -> BenchSettings:
    """Build :class:`BenchSettings` from the raw pytest options (None = the mode's default)."""
    return BenchSettings(
        quick=quick,
        presets=tuple(p.strip() for p in presets.split(",") if p.strip()) if presets else (
            QUICK_PRESETS if quick else FULL_PRESETS),
        sizes=tuple(parse_size(s) for s in sizes.split(",") if s.strip()) if sizes else (
            QUICK_SIZES if quick else FULL_SIZES),
        rounds=rounds,
        warmup=1,
        threads=threads or (1 if quick else default_threads()),
        weights=weights,
        out_dir=Path(out_dir) if out_dir else BENCH_DIR / "results",
        calib_images=calib_images or (4 if quick else 32),
        parity_images=2 if quick else 4,
    )
