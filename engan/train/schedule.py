"""The paper's learning-rate schedule as a pure function of the step."""
from __future__ import annotations


def lr_at(step: int, total: int, lr: float, decay_start: float = 0.5) -> float:
    """Constant ``lr``, then linear decay towards 0 over the last ``1 - decay_start`` of the run.

    ``step`` is the 0-based index of the update. With ``decay_start=0.5`` this is the
    authors' 100 + 100 epochs: the first half at ``lr``, then ``lr * (total - step) /
    (total - start)``, so the last update uses ``lr / (total - start)`` and the
    schedule reaches 0 at ``total``.
    """
    start = int(round(decay_start * total))
    if step < start or total <= start:
        return lr
    return lr * max(0.0, (total - step) / (total - start))
