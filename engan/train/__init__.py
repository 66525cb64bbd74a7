"""Training: the loop (:class:`Trainer`), one iteration (:mod:`.step`), networks (:mod:`.nets`),
checkpoints (:mod:`.checkpoints`, :mod:`.state`), records (:mod:`.logbook`), the LR schedule,
the generator EMA and DDP helpers."""
from engan.train.checkpoints import RunDirError
from engan.train.step import TrainingDiverged
from engan.train.trainer import Trainer

__all__ = ["Trainer", "RunDirError", "TrainingDiverged"]
