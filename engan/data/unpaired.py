"""Unpaired low/normal-light batches as a pure function of (seed, step, rank).

``UnpairedBatches.batch(step, rank, world)`` always returns the same arrays for the
same arguments, so a resumed run sees exactly the data an uninterrupted run would
have seen, without pickling RNG states or iterators, and DDP ranks get disjoint
shards by construction.

Pairing follows the authors' ``UnalignedDataset``: an epoch has
``N = max(|low|, |normal|)`` samples; sample ``i`` of the epoch's shuffled order
pairs ``low[i % |low|]`` with ``normal[i % |normal|]``. The global sample number
``g = (step * world + rank) * batch + j`` picks the epoch and the position, so
the stream does not depend on how many processes share it.

Augmentation per sample (spec section 5, in this order):

1. each of low and normal is randomly cropped to ``crop`` (independent offsets)
   and randomly h-flipped (independently);
2. with p = 0.5 both are h-flipped; 3. with p = 0.5 both are v-flipped;
4. the authors' "vary" darkening: with p = ``darken_prob`` the generator input
   is ``low / t`` with ``t`` drawn from {2.00, 2.01, ..., 4.00}; otherwise it is
   ``low``. The un-darkened ``low`` stays the reference of the SFP loss.
5. when a loss term needs it (``consistency``; not in the paper), the degraded twin of the
   generator input (:func:`engan.data.degrade.degrade`), drawn last so that the stream
   without it is unchanged.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from engan.config import DegradeConfig
from engan.data.augment import augment_pair
from engan.data.images import ImageBank


@dataclass(frozen=True)
class Batch:
    """One training batch, float32 NCHW RGB in [0, 1].

    Attributes:
        low: un-darkened low-light crops (the SFP reference).
        low_input: the generator input (``low``, darkened for some samples).
        normal: normal-light crops (the discriminators' real images).
        step: the step this batch belongs to.
        low_degraded: the degraded twins of ``low_input`` (None unless a loss term needs them).
    """

    low: np.ndarray
    low_input: np.ndarray
    normal: np.ndarray
    step: int
    low_degraded: np.ndarray | None = None


class UnpairedBatches:
    """Deterministic batches drawn from two image banks.

    Args:
        low: low-light images.
        normal: normal-light images.
        crop: square crop size (every image must be at least this large).
        batch: samples per batch (per process).
        seed: run seed.
        darken_prob, darken_min, darken_max: the "vary" augmentation.
        twin: ranges of the degraded twin of each generator input; None: no twin.
        quantize: round each generator input to 8 bits after darkening.
    """

    def __init__(
        self,
        low: ImageBank,
        normal: ImageBank,
        crop: int,
        batch: int,
        seed: int = 0,
        darken_prob: float = 0.5,
        darken_min: float = 2.0,
        darken_max: float = 4.0,
        twin: DegradeConfig | None = None,
        quantize: bool = False,
    ) -> None:
        self.low, self.normal = low, normal
        self.crop, self.batch_size, self.seed = int(crop), int(batch), int(seed)
        self.augment = (float(darken_prob), float(darken_min), float(darken_max), twin, bool(quantize))
        self.epoch_len = max(len(low), len(normal))

    @functools.lru_cache(maxsize=4)  # noqa: B019  (few epochs are live at once)
    def _order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, 0x0E90C4, epoch]).permutation(self.epoch_len)

    def sample(self, g: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
        """Global sample ``g`` -> (low, low_input, normal, twin or None), each 3 x crop x crop float32."""
        epoch, pos = divmod(int(g), self.epoch_len)
        i = int(self._order(epoch)[pos])
        a = self.low.images[i % len(self.low)]
        b = self.normal.images[i % len(self.normal)]
        rng = np.random.default_rng([self.seed, 0x5A4D, int(g)])
        return augment_pair(a, b, self.crop, rng, *self.augment)

    def batch(self, step: int, rank: int = 0, world: int = 1) -> Batch:
        """The batch of ``step`` for process ``rank`` of ``world``."""
        first = (int(step) * world + rank) * self.batch_size
        parts = [self.sample(first + j) for j in range(self.batch_size)]
        low, low_in, normal, twins = zip(*parts)
        return Batch(low=np.stack(low), low_input=np.stack(low_in), normal=np.stack(normal), step=int(step),
                     low_degraded=None if twins[0] is None else np.stack(twins))
