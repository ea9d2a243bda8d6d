"""TensorBoard logging of a training run: an ordinary ``on_epoch`` callback of
[repsim.train.run][repsim.train.loop.run] (``python -m repsim.train --logger tensorboard``).

Every epoch adds ``train_loss``, ``val_accuracy`` and ``lr`` (the values of ``log.csv``, at
step = epoch number) to ``<run>/tensorboard/``;
[TensorBoardLogger.finish][repsim.train.tensorboard.TensorBoardLogger.finish] adds the
run's hyper-parameters (its [TrainConfig][repsim.train.config.TrainConfig] flattened to
``model.hidden``, ``data.options.distractor_snr``, ...; lists as words) with its final
accuracies (``accuracy/clean``, ``accuracy/audio_snr-10``, ``accuracy/audio_removed``,
``accuracy/val``, ...) in ``<run>/tensorboard/hparams/``, for TensorBoard's HPARAMS tab::

    with TensorBoardLogger(config) as logger:       # ImportError now if tensorboard is missing
        result = run(config, on_epoch=logger, resume="auto")
        logger.finish(result.metrics)

No epoch appears twice: the first epoch a logger sees is TensorBoard's ``purge_step``, which
hides events of that epoch and later ones already in the folder (from an attempt that was
interrupted, or a run started again with ``overwrite``), and ``finish`` replaces the
hyper-parameter record. Epochs trained before the logger was first used are not back-filled.
tensorboard is an optional extra: ``pip install -e '.[tensorboard]'``.
"""

from __future__ import annotations

import shutil

from repsim.conditions import CLEAN, MODALITIES, Condition, removed_condition
from repsim.config import words
from repsim.models.fusion import FusionConvLSTM
from repsim.rundir import TENSORBOARD_DIR, Metrics
from repsim.train.config import TrainConfig, flatten
from repsim.train.loop import EpochRecord

INSTALL = "pip install -e '.[tensorboard]'"
# Logged every epoch: EpochRecord fields, named as the columns of log.csv.
SCALARS = ("train_loss", "val_accuracy", "lr")
HPARAMS_RUN = "hparams"  # the sub-folder of the hyper-parameter record


def _summary_writer_class():
    """torch's ``SummaryWriter``; ImportError naming the extra when tensorboard is missing."""
    try:
        import tensorboard  # noqa: F401  (checked first: torch's own message names no extra)
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as error:
        raise ImportError(f"TensorBoard logging needs the tensorboard package: {INSTALL}"
                          ) from error
    return SummaryWriter


def hyperparameters(config: TrainConfig) -> dict[str, str | int | float]:
    """The config as TensorBoard hyper-parameters.

    Parameters
    ----------
    config
        The run's config.

    Returns
    -------
    dict
        Dotted names (``model.hidden``, ``data.options.distractor_snr``, ...) to numbers and
        strings (None, booleans and lists as words).
    """
    def value(item):
        if isinstance(item, list | tuple):
            return words(item)
        if item is None or isinstance(item, bool):
            return str(item).lower()
        return item

    return {name: value(item) for name, item in flatten(config.to_dict(), whole=()).items()}


def final_metrics(metrics: Metrics) -> dict[str, float]:
    """A run's final accuracies as TensorBoard metrics.

    Parameters
    ----------
    metrics
        The run's ``metrics.json``.

    Returns
    -------
    dict
        ``accuracy/<test condition>`` for every test accuracy, and ``accuracy/val`` (when the
        metrics have one).
    """
    values = {f"accuracy/{CLEAN}": metrics.clean_accuracy}
    values.update({f"accuracy/{Condition(noise=kind, snr_db=snr).name}": accuracy
                   for (kind, snr), accuracy in metrics.noise_accuracy.items()})
    values.update({f"accuracy/{removed_condition(modality)}": metrics.removed[modality]
                   for modality in MODALITIES})
    if metrics.val_accuracy is not None:
        values["accuracy/val"] = metrics.val_accuracy
    return values


class TensorBoardLogger:
    """Writes a run's TensorBoard events into ``<config.run_dir>/tensorboard/``; a context
    manager that closes the event file.

    Call it as ``on_epoch`` of [run][repsim.train.loop.run], then
    [finish][repsim.train.tensorboard.TensorBoardLogger.finish] with the final metrics:

    ```python
    with TensorBoardLogger(config) as logger:       # ImportError now if tensorboard is missing
        result = run(config, on_epoch=logger, resume="auto")
        logger.finish(result.metrics)
    ```

    Every epoch adds ``train_loss``, ``val_accuracy`` and ``lr`` (the values of ``log.csv``,
    at step = epoch number), flushed at once, so a killed run loses none of its logged
    epochs. No epoch appears twice: the first epoch a logger sees is TensorBoard's
    ``purge_step``, which hides events of that epoch and later ones already in the folder
    (from an attempt that was interrupted, or a run started again with ``overwrite``).
    Epochs trained before the logger was first used are not back-filled.

    Parameters
    ----------
    config
        The run's config: where it writes (``config.run_dir``) and the hyper-parameters
        [finish][repsim.train.tensorboard.TensorBoardLogger.finish] records.

    Raises
    ------
    ImportError
        At construction, naming ``pip install -e '.[tensorboard]'``, so a missing package is
        found before any training.
    """

    def __init__(self, config: TrainConfig):
        self._writer_class = _summary_writer_class()
        self.config = config
        self.log_dir = config.run_dir / TENSORBOARD_DIR
        self._writer = None

    def _open(self, purge_step: int | None = None):
        if self._writer is None:
            self._writer = self._writer_class(str(self.log_dir), purge_step=purge_step)
        return self._writer

    def __call__(self, record: EpochRecord, model: FusionConvLSTM) -> None:
        """Log one epoch (flushed at once, so a killed run loses none of its logged epochs).

        Parameters
        ----------
        record
            The epoch's record.
        model
            The live model (not read).
        """
        writer = self._open(purge_step=record.epoch)
        for name in SCALARS:
            writer.add_scalar(name, getattr(record, name), record.epoch)
        writer.flush()

    def finish(self, metrics: Metrics) -> None:
        """Record the hyper-parameters with the final accuracies, and close.

        They go into ``<run>/tensorboard/hparams/``, for TensorBoard's HPARAMS tab: the
        config flattened to dotted names (``model.hidden``, ...; lists as words) with
        ``accuracy/clean``, ``accuracy/audio_snr-10``, ``accuracy/audio_removed``,
        ``accuracy/val``, ...; an earlier record of this run is replaced.

        Parameters
        ----------
        metrics
            The run's final metrics ([Metrics][repsim.rundir.Metrics], e.g.
            ``result.metrics`` of [run][repsim.train.loop.run]).
        """
        shutil.rmtree(self.log_dir / HPARAMS_RUN, ignore_errors=True)
        self._open().add_hparams(hyperparameters(self.config), final_metrics(metrics),
                                 run_name=HPARAMS_RUN)
        self.close()

    def close(self) -> None:
        """Close the event file, if open (a later epoch opens it again)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> TensorBoardLogger:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
