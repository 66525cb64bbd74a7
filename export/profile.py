"""Input-shape profiles for dynamic TensorRT engines (and Triton), in plain Python.

Sizes are written ``HxW`` (rows x columns, the NCHW order), e.g. ``400x608`` is a
608x400 (width x height) photo padded to multiples of 16. Every H and W must be a
multiple of 16, because padding stays outside the graph.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from engan.runtime.prepost import PAD_MULTIPLE

#: Smallest input the engine accepts by default (HxW).
DEFAULT_MIN_HW: tuple[int, int] = (256, 256)
#: Size TensorRT tunes its kernels for (HxW of a 608x400 photo, the LOL size padded).
DEFAULT_OPT_HW: tuple[int, int] = (400, 608)
#: Largest input by default (HxW of 1920x1080, padded to 1088).
DEFAULT_MAX_HW: tuple[int, int] = (1088, 1920)
#: Largest batch by default (min and opt batch are 1).
DEFAULT_MAX_BATCH: int = 4


class ProfileError(ValueError):
    """A shape or profile is malformed; the message says which value and how to fix it."""


_HW = re.compile(r"^\s*(\d+)\s*[xX×,]\s*(\d+)\s*$")


def _round_up(v: int, m: int = PAD_MULTIPLE) -> int:
    return max(m, -(-v // m) * m)


def format_hw(hw: tuple[int, int]) -> str:
    """``(400, 608)`` -> ``'400x608'``."""
    return f"{hw[0]}x{hw[1]}"


def parse_hw(text: str, what: str = "shape") -> tuple[int, int]:
    """Parse ``HxW`` (e.g. ``400x608``) into ``(H, W)``; both must be positive multiples of 16.

    Args:
        text: the size as typed by the user.
        what: the option name used in error messages (e.g. ``--opt-shape``).

    Raises:
        ProfileError: naming the option, the bad value and the nearest valid size.
    """
    m = _HW.match(str(text))
    if not m:
        raise ProfileError(f"{what} {text!r} is not HxW (height x width, e.g. 400x608)")
    hw = (int(m.group(1)), int(m.group(2)))
    check_hw(hw, what)
    return hw


def check_hw(hw: tuple[int, int], what: str = "shape") -> None:
    """Raise :class:`ProfileError` unless both sides are positive multiples of 16."""
    h, w = hw
    bad = [f"{n}={v}" for n, v in (("H", h), ("W", w)) if v <= 0 or v % PAD_MULTIPLE]
    if bad:
        raise ProfileError(
            f"{what} {format_hw(hw)}: {' and '.join(bad)} "
            f"{'is not a positive multiple' if len(bad) == 1 else 'are not positive multiples'} of {PAD_MULTIPLE}; "
            f"use {format_hw((_round_up(h), _round_up(w)))} (padding to {PAD_MULTIPLE} happens outside the graph)"
        )


@dataclass(frozen=True)
class ShapeProfile:
    """Min/opt/max input sizes (HxW) and the largest batch of a dynamic engine.

    Validated on construction: every side a multiple of 16, ``min <= opt <= max`` per
    side, ``max_batch >= 1``.
    """

    min_hw: tuple[int, int] = DEFAULT_MIN_HW
    opt_hw: tuple[int, int] = DEFAULT_OPT_HW
    max_hw: tuple[int, int] = DEFAULT_MAX_HW
    max_batch: int = DEFAULT_MAX_BATCH

    def __post_init__(self) -> None:
        for name, hw in (("--min-shape", self.min_hw), ("--opt-shape", self.opt_hw), ("--max-shape", self.max_hw)):
            if len(hw) != 2:
                raise ProfileError(f"{name} must be (H, W), got {hw!r}")
            check_hw(hw, name)
        for i, side in enumerate(("H", "W")):
            lo, opt, hi = self.min_hw[i], self.opt_hw[i], self.max_hw[i]
            if not lo <= opt <= hi:
                raise ProfileError(
                    f"profile {side} must satisfy min <= opt <= max, got {lo} <= {opt} <= {hi} "
                    f"(--min-shape {format_hw(self.min_hw)}, --opt-shape {format_hw(self.opt_hw)}, "
                    f"--max-shape {format_hw(self.max_hw)})"
                )
        if int(self.max_batch) < 1:
            raise ProfileError(f"--max-batch must be at least 1, got {self.max_batch}")

    def input_shapes(self) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        """NCHW ``(min, opt, max)`` shapes for ``IOptimizationProfile.set_shape``."""
        return (
            (1, 3, *self.min_hw),
            (1, 3, *self.opt_hw),
            (self.max_batch, 3, *self.max_hw),
        )

    def contains(self, n: int, h: int, w: int) -> bool:
        """Whether an ``n x 3 x h x w`` input lies inside the profile."""
        return (
            1 <= n <= self.max_batch
            and self.min_hw[0] <= h <= self.max_hw[0]
            and self.min_hw[1] <= w <= self.max_hw[1]
        )

    def describe(self) -> str:
        """One line for status output, e.g. ``256x256 .. 400x608 .. 1088x1920, batch <= 4``."""
        return (
            f"{format_hw(self.min_hw)} .. {format_hw(self.opt_hw)} .. {format_hw(self.max_hw)} (HxW), "
            f"batch <= {self.max_batch}"
        )
