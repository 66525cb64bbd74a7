"""Exposure response: how a model's output brightness follows its input's, measured on dark photos alone.

Each photo is made 0, 1 and 2 stops darker (divided by t = 1, 2, 4, rounded to 8 bits), enhanced, and
the mean BT.601 luma of the outputs is recorded per t. The *response ratio* is the mean output luma at
the first t over that at the last: about 2 when a 2-stop darker input gives a clearly darker result (the
scene's exposure order is kept), near 1 when every input is lifted to the same brightness ("flattening").

No reference image is needed, so this can be read on the training set's own low-light folder. In
docs/experiments.md's seed study the runs that flattened (ratio 1.07-1.4) all failed on unseen photos and the
two good runs without the exposure-order term read 2.1-2.3; in between (1.5-1.95) the ratio alone did
not decide: one such run was good, others were not. A screen for collapse, not a quality score.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from engan.eval.datasets import fit_longest_side, folder_images, load_rgb
from engan.eval.metrics import brightness
from engan.runtime.prepost import to_uint8

#: darkening divisors: 0, 1 and 2 stops under the photo as it is
DEFAULT_FACTORS = (1.0, 2.0, 4.0)


@dataclass(frozen=True)
class Response:
    """Mean output luma (0-255) per darkening divisor, and the first-over-last ratio."""

    factors: tuple[float, ...]
    input_luma: tuple[float, ...]
    output_luma: tuple[float, ...]

    @property
    def ratio(self) -> float:
        return self.output_luma[0] / max(self.output_luma[-1], 1e-6)


def exposure_response(fn: Callable[[np.ndarray], np.ndarray], images: Sequence[np.ndarray],
                      factors: Sequence[float] = DEFAULT_FACTORS) -> Response:
    """Enhance each uint8 RGB image divided by each factor; mean input and output luma per factor.

    Raises:
        ValueError: no images, or factors that are not at least two increasing values >= 1.
    """
    factors = tuple(float(t) for t in factors)
    if len(factors) < 2 or factors[0] < 1 or any(b <= a for a, b in zip(factors, factors[1:])):
        raise ValueError(f"factors must be two or more increasing divisors >= 1, got {factors}")
    if not images:
        raise ValueError("exposure_response needs at least one image")
    ins, outs = [], []
    for t in factors:
        darkened = [to_uint8(np.asarray(im, dtype=np.float64) / 255.0 / t) for im in images]
        ins.append(float(np.mean([brightness(d) for d in darkened])))
        outs.append(float(np.mean([brightness(fn(d)) for d in darkened])))
    return Response(factors, tuple(ins), tuple(outs))


def load_photos(folder: str | os.PathLike, count: int = 38, side: int = 256) -> list[np.ndarray]:
    """``count`` photos spread evenly over ``folder`` (sorted names), each fitted to ``side`` pixels."""
    paths = folder_images(folder)
    if not paths:
        raise ValueError(f"no images in {folder}")
    step = max(1, len(paths) // count)
    return [fit_longest_side(load_rgb(p), side) for p in paths[::step][:count]]
