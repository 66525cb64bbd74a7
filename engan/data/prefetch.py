"""Prepare the next batches in background threads while the current step trains.

Batches are a pure function of the step (see :mod:`engan.data.unpaired`), so the
prefetcher only changes *when* a batch is built, never *what* it contains. numpy's
cropping and flipping release the GIL, so threads are enough; no worker processes,
no pickling of the in-RAM images.
"""
from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Generic, TypeVar

T = TypeVar("T")


class Prefetcher(Generic[T]):
    """Yield ``make(step)`` for ``step`` in ``[start, stop)``, ``workers`` steps ahead.

    Args:
        make: builds the item of one step.
        start, stop: step range.
        workers: background threads; 0 builds each item in the caller's thread.
    """

    def __init__(self, make: Callable[[int], T], start: int, stop: int, workers: int = 0) -> None:
        self.make, self.start, self.stop, self.workers = make, int(start), int(stop), max(0, int(workers))

    def __iter__(self):
        if self.workers == 0:
            for step in range(self.start, self.stop):
                yield self.make(step)
            return
        pending: deque[Future] = deque()
        nxt = self.start
        with ThreadPoolExecutor(self.workers, thread_name_prefix="engan-data") as pool:
            try:
                for _ in range(self.start, self.stop):
                    while nxt < self.stop and len(pending) < self.workers + 1:
                        pending.append(pool.submit(self.make, nxt))
                        nxt += 1
                    yield pending.popleft().result()
            finally:
                for f in pending:
                    f.cancel()
