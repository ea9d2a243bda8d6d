"""Training: :class:`TrainConfig` (:mod:`~repsim.train.config`), the loop :func:`run`
(:mod:`~repsim.train.loop`), TensorBoard logging through its ``on_epoch`` hook
(:mod:`~repsim.train.tensorboard`) and ``python -m repsim.train`` (:mod:`~repsim.train.cli`)."""

from repsim.train.config import TrainConfig
from repsim.train.loop import (
    EpochRecord,
    TrainingDiverged,
    TrainingStopped,
    TrainResult,
    lr_at,
    run,
)
from repsim.train.tensorboard import TensorBoardLogger

__all__ = ["EpochRecord", "TensorBoardLogger", "TrainConfig", "TrainResult", "TrainingDiverged",
           "TrainingStopped", "lr_at", "run"]
