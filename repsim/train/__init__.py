"""Training: [TrainConfig][repsim.train.config.TrainConfig] (``repsim.train.config``), the
loop [run][repsim.train.loop.run] (``repsim.train.loop``), TensorBoard logging through its
``on_epoch`` hook ([TensorBoardLogger][repsim.train.tensorboard.TensorBoardLogger],
``repsim.train.tensorboard``) and ``python -m repsim.train`` (``repsim.train.cli``).

The names below are imported on first use (``repsim.lazy``): the command line's parser
needs none of torch."""

from typing import TYPE_CHECKING

from repsim.lazy import lazy_package

if TYPE_CHECKING:
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

lazy_package(__name__)
