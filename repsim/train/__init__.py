"""Training: :class:`TrainConfig` (:mod:`~repsim.train.config`), the loop :func:`run`
(:mod:`~repsim.train.loop`) and ``python -m repsim.train`` (:mod:`~repsim.train.cli`)."""

from repsim.train.config import TrainConfig
from repsim.train.loop import (
    EpochRecord,
    TrainingDiverged,
    TrainingStopped,
    TrainResult,
    lr_at,
    run,
)

__all__ = ["EpochRecord", "TrainConfig", "TrainResult", "TrainingDiverged", "TrainingStopped",
           "lr_at", "run"]
