"""The training loop: ``repsim.train.run(config)``.

One run trains on the train split, reports validation accuracy after every epoch, writes an
atomic checkpoint after every epoch, and finally evaluates the test split clean, on the noise
grid and with each modality removed (``repsim.rundir`` names the files it writes). On the
CPU a fixed seed and thread count give identical weights, and a run resumed from any epoch's
checkpoint with the thread count it was trained with ends with the same weights as an
uninterrupted one (resuming with another count is warned about).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from repsim.checkpoint import (
    build_payload,
    load_checkpoint,
    model_from_checkpoint,
    save_checkpoint,
)
from repsim.data.base import AVDataset, AVSplit, Batch, make_batch
from repsim.data.fingerprint import data_difference
from repsim.device import resolve_device, uses_bf16
from repsim.evaluate import accuracy, noise_grid
from repsim.models.config import check_batch_memory
from repsim.models.fusion import FusionConvLSTM
from repsim.provenance import claim, library_versions, remove_stale_temporaries
from repsim.rundir import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    FAILED_FILE,
    RUN_FILES,
    RUN_LOG_FILE,
    Metrics,
    check_no_checkpoint,
    prepare_run_dir,
    write_json,
    write_log,
    write_metrics,
)
from repsim.train.config import TrainConfig, config_differences

log = logging.getLogger("repsim.train")
TRAIN_STAGES = ("training", "validation", "checkpoints", "evaluation")  # TrainResult.seconds
BEST_STATE = "best_model_state"  # checkpoint keys of a run that stops at its plateau
BEST_EPOCH = "best_epoch"


@dataclass
class EpochRecord:
    """What one epoch produced; passed to ``on_epoch`` callbacks with the live model
    ([run][repsim.train.loop.run]).

    Parameters
    ----------
    epoch
        The epoch, counted from 1.
    train_loss
        The mean training loss over the epoch's pairs (cross-entropy; a per-step readout's is
        the mean over its steps).
    val_accuracy
        The validation accuracy after the epoch.
    lr
        The learning rate of the epoch's last step.
    epoch_seconds
        Seconds of the epoch's training steps (a stacked run's: its share of the stacked
        epoch).
    elapsed_seconds
        Seconds of the training steps of every epoch so far, those before a resume
        included.
    """

    epoch: int
    train_loss: float
    val_accuracy: float
    lr: float
    epoch_seconds: float
    elapsed_seconds: float

    def as_row(self) -> dict:
        """The epoch's ``log.csv`` row.

        Returns
        -------
        dict
            Every field by name.
        """
        return dataclasses.asdict(self)


@dataclass
class TrainResult:
    """A finished run: where it wrote, its metrics and the trained model (what
    [run][repsim.train.loop.run] returns).

    Parameters
    ----------
    run_dir
        The run directory.
    checkpoint
        The final checkpoint.
    metrics
        The run's ``metrics.json`` ([Metrics][repsim.rundir.Metrics]): the test grid's
        accuracies and what made them.
    model
        The trained model, in eval mode (with ``stop_at_plateau``: its best epoch's).
    history
        The ``log.csv`` rows, one per epoch, those before a resume included
        ([as_row][repsim.train.loop.EpochRecord.as_row]).
    seconds
        What this call spent, by stage (``TRAIN_STAGES``): ``training`` (the training steps
        of the epochs it trained), ``validation`` (the per-epoch validation),
        ``checkpoints`` (writing them and the log) and ``evaluation`` (the test grid); empty
        for a run that had already finished.
    """

    run_dir: Path
    checkpoint: Path
    metrics: Metrics
    model: FusionConvLSTM
    history: list[dict]
    seconds: dict[str, float] = dataclasses.field(default_factory=dict)


class TrainingStopped(Exception):
    """``should_stop`` asked the run to stop: the checkpoint of the last complete epoch (if
    any) is kept, and ``resume="auto"`` continues from it.

    Raised by [run][repsim.train.loop.run]; the message names the run directory and what was
    kept.
    """


class TrainingDiverged(ValueError):
    """The training loss became NaN or infinite (a ValueError).

    Raised by [run][repsim.train.loop.run]; the message names the epoch and where the
    checkpoint of the last good epoch, if any, is left in place.
    """


def lr_at(config: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """Learning rate at a global step: linear warm-up, then cosine decay to zero.

    The warm-up takes ``round(warmup_epochs * steps_per_epoch)`` steps (at most all but the
    last), rising to ``lr`` at its last step; the cosine then reaches zero at step
    ``epochs * steps_per_epoch``, the end of the last epoch.

    Parameters
    ----------
    config
        Its ``lr``, ``epochs`` and ``warmup_epochs``.
    step
        The global step, counted from 0 over all epochs.
    steps_per_epoch
        Training steps per epoch.

    Returns
    -------
    float

    Examples
    --------
    Two epochs of four steps, half an epoch of warm-up:

    >>> from repsim.train import TrainConfig, lr_at
    >>> config = TrainConfig(epochs=2, lr=0.1, warmup_epochs=0.5)
    >>> [round(lr_at(config, step, 4), 4) for step in range(9)]
    [0.05, 0.1, 0.1, 0.0933, 0.075, 0.05, 0.025, 0.0067, 0.0]
    """
    total = config.epochs * steps_per_epoch
    warmup = min(int(round(config.warmup_epochs * steps_per_epoch)), total - 1)
    if step < warmup:
        return config.lr * (step + 1) / warmup
    progress = (step - warmup) / max(total - warmup, 1)
    return config.lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def _advance(bar: tqdm, name: str) -> None:
    """Show the test condition about to be evaluated, and count the one before it."""
    bar.set_postfix_str(name)
    bar.update()


def _rng_state(shuffle: torch.Generator, noise: torch.Generator,
               global_rng: tuple | None = None) -> dict:
    """Every random state a run may draw from, as tensors and ints (weights_only-safe).

    The loop itself draws only from ``shuffle`` and ``noise``; the global torch and numpy
    states are kept too (the live ones, or ``global_rng``: a stacked run's own), so code
    called from the loop (callbacks, dataset transforms) that uses them also resumes exactly.
    """
    torch_state, numpy_state = global_rng if global_rng is not None else (
        torch.get_rng_state(), np.random.get_state(legacy=True))  # noqa: NPY002
    kind, keys, pos, has_gauss, cached = numpy_state
    return {"torch": torch_state, "shuffle": shuffle.get_state(),
            "noise": noise.get_state(),
            "numpy": {"kind": kind, "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
                      "pos": int(pos), "has_gauss": int(has_gauss), "cached": float(cached)}}


def _restore_rng_state(state: dict, shuffle: torch.Generator, noise: torch.Generator) -> None:
    """Inverse of ``_rng_state``."""
    torch.set_rng_state(state["torch"])
    shuffle.set_state(state["shuffle"])
    noise.set_state(state["noise"])
    numpy_state = state["numpy"]
    legacy = (numpy_state["kind"], numpy_state["keys"].numpy().astype(np.uint32),
              numpy_state["pos"], numpy_state["has_gauss"], numpy_state["cached"])
    np.random.set_state(legacy)  # noqa: NPY002


def _augment_snrs(config: TrainConfig, batch: int, device: torch.device,
                  generator: torch.Generator) -> tuple[torch.Tensor | float, torch.Tensor | float]:
    """Per-sample (audio, visual) SNRs for train-time noise; inf where a sample stays clean."""
    def draw() -> torch.Tensor:
        low, high = config.augment_snr
        snr = low + (high - low) * torch.rand(batch, generator=generator, device=device)
        noisy = torch.rand(batch, generator=generator, device=device) < config.augment_fraction
        return torch.where(noisy, snr, torch.full_like(snr, math.inf))

    audio = draw() if config.augment in ("audio", "both") else math.inf
    visual = draw() if config.augment in ("visual", "both") else math.inf
    return audio, visual


def _drop_modality(config: TrainConfig, batch: Batch, generator: torch.Generator) -> Batch:
    """Zero the audio or the visual input (even odds) of a random ``modality_dropout``
    fraction of the samples."""
    size, device = len(batch.audio), batch.audio.device
    dropped = torch.rand(size, generator=generator, device=device) < config.modality_dropout
    audio_side = torch.rand(size, generator=generator, device=device) < 0.5
    keep_audio = (~(dropped & audio_side)).to(batch.audio.dtype).reshape(size, 1, 1, 1, 1)
    keep_visual = (~(dropped & ~audio_side)).to(batch.visual.dtype).reshape(size, 1, 1, 1, 1)
    return dataclasses.replace(batch, audio=batch.audio * keep_audio,
                               visual=batch.visual * keep_visual)


def with_classes(config: TrainConfig, classes: int) -> TrainConfig:
    """``config`` with a readout of ``classes`` outputs: the model's class count always
    follows the dataset's (10 for the digit datasets, whose configs are thus unchanged).

    Parameters
    ----------
    config
        The training config.
    classes
        The dataset's class count.

    Returns
    -------
    TrainConfig
        ``config`` itself when its model has ``classes`` outputs already, else a copy.
    """
    if config.model.classes == classes:
        return config
    return dataclasses.replace(config, model=dataclasses.replace(config.model, classes=classes))


def _loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy; a per-step readout is trained at every step (mean over steps)."""
    if logits.dim() == 3:
        steps = logits.shape[1]
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                               targets.repeat_interleave(steps))
    return F.cross_entropy(logits, targets)


def run(config: TrainConfig, *, resume: str | os.PathLike | None = None,
        overwrite: bool = False, dataset: AVDataset | None = None,
        on_epoch: Callable[[EpochRecord, FusionConvLSTM], None] | None = None,
        progress: bool = False, should_stop: Callable[[], bool] | None = None) -> TrainResult:
    """Train (or continue) a run and evaluate it; returns where it wrote and what it measured.

    The model's ``classes`` is set to the dataset's class count (``with_classes``). Unless
    ``dataset`` is given, the data are built before anything is written, so a bad dataset
    leaves no run directory.

    Parameters
    ----------
    config
        The run ([TrainConfig][repsim.train.config.TrainConfig]); it writes into
        ``config.run_dir``.
    resume
        A checkpoint of the same configuration to continue from (the fields in
        ``RESUMABLE_DIFFERENCES`` may differ). ``"auto"`` makes the run safe to start again:
        a finished run in ``config.run_dir`` is returned as it is (nothing is trained), a
        partial one is continued from its last checkpoint, none is started afresh, and a run
        of another configuration there is refused (its metrics are not recomputed, even for
        another ``noise_snrs``).
    overwrite
        Write the run into a directory that holds a checkpoint (without ``resume``, trained
        afresh), another run or other files: the run's files replace those of their names;
        other files are left where they are.
    dataset
        Skips building the data; it must be the dataset ``config.data`` describes.
    on_epoch
        ``on_epoch(record, model)``, the per-epoch hook for loggers and monitors: ``record``
        is the epoch's [EpochRecord][repsim.train.loop.EpochRecord]
        (``record.as_row()`` is its ``log.csv`` row) and ``model`` the live model (read it,
        do not change it). It is called once per epoch this call trains, after that epoch's
        checkpoint and ``log.csv`` row are written and its line is logged, so an
        exception it raises stops the run with the epoch kept. A resumed run calls it only
        for the epochs after its checkpoint's, a finished one never; the final test metrics
        are in the returned [TrainResult][repsim.train.loop.TrainResult].
    progress
        Show tqdm bars on stderr.
    should_stop
        Asked before every training step and before the final evaluation; when it answers
        True the run raises [TrainingStopped][repsim.train.loop.TrainingStopped], abandoning
        the epoch in progress (its checkpoint of the last complete epoch stays).

    Returns
    -------
    TrainResult
        The run directory, the final checkpoint, the metrics, the trained model and the
        history.

    Raises
    ------
    TrainingDiverged
        A ValueError, if the loss stops being finite; the checkpoint of the last good epoch
        (if any) is left in place.
    TrainingStopped
        When ``should_stop`` answered True.
    ValueError
        For a checkpoint of another configuration (naming the differing fields) or trained
        on other data; a file that is not a repsim checkpoint; a run directory that cannot
        be written, holds a checkpoint without ``resume`` or ``overwrite``, holds other
        files than a run of this configuration without ``overwrite``, or is being written
        by another process; a model whose ``in_channels`` is not 1; a training batch too
        large for memory; or data the dataset's builder refuses
        ([DataConfig.build][repsim.data.config.DataConfig.build]).
    FileNotFoundError
        For a ``resume`` checkpoint that does not exist.
    """
    prepared = _prepare(config, resume, overwrite, dataset)
    if isinstance(prepared, TrainResult):
        return prepared
    config, ckpt, resume, dataset = prepared
    run_dir = prepare_run_dir(config.run_dir, resume=resume is not None, overwrite=overwrite)
    with claim(run_dir):  # a second run in this directory fails here, naming this one
        for name in RUN_FILES:
            remove_stale_temporaries(run_dir / name)
        state = _Run(config, run_dir, ckpt, resume, dataset, should_stop)
        for epoch in range(state.start_epoch, config.epochs):
            if state.at_plateau():
                break  # a resumed run that had reached its plateau
            record = _train_epoch(config, epoch, state.forward, state.model, state.optimizer,
                                  state.train_split, state.features, state.shuffle_generator,
                                  state.noise_generator, state.amp, state.steps_per_epoch,
                                  progress, state.stop)
            if state.end_epoch(record, on_epoch):
                break
        return state.finish(progress)


def _prepare(config: TrainConfig, resume: str | os.PathLike | None, overwrite: bool,
             dataset: AVDataset | None
             ) -> TrainResult | tuple[TrainConfig, dict | None, str | os.PathLike | None,
                                      AVDataset]:
    """What ``run`` checks and loads before it writes anything: the finished run's result
    (``resume="auto"``), or the config (classes set), the checkpoint to resume from, its
    path, and the dataset."""
    if not overwrite:
        check_run_dir(config)
    auto = resume == "auto"
    if auto:
        resume = config.run_dir / CHECKPOINT_FILE if (
            config.run_dir / CHECKPOINT_FILE).exists() else None
    ckpt = load_checkpoint(resume) if resume is not None else None
    if ckpt is not None:
        differences = config_differences(ckpt["config"], config.to_dict())
        if differences:
            raise ValueError(f"cannot resume from {resume}: it was trained with another "
                             f"configuration; differing fields: {'; '.join(differences)}")
        if auto and ckpt["complete"]:
            return _finished(config, ckpt)
    if dataset is None:  # built before the run directory, so bad data leave nothing behind
        check_no_checkpoint(config.run_dir, resume=resume is not None, overwrite=overwrite)
        log.info("building the %s dataset", config.data.dataset)
        dataset = config.data.build()
    config = with_classes(config, dataset.n_classes)
    check_batch_memory(config.model, config.batch_size, dataset.timesteps, *dataset.frame_shape)
    return config, ckpt, resume, dataset


def check_run_dir(config: TrainConfig) -> None:
    """Check that ``config.run_dir`` may receive this run without ``overwrite``.

    It may when it does not exist, holds only hidden files (locks, temporaries) and a
    study's ``run.log`` and ``failed.txt``, or holds a run of this configuration (its
    ``config.json``: a run continued, or one killed before its first checkpoint started
    again). A folder with a checkpoint is a run, which ``resume`` checks against the
    checkpoint's configuration. A user's own files are never replaced unasked.

    Parameters
    ----------
    config
        The run to be written.

    Raises
    ------
    ValueError
        Otherwise, naming some of the files and why they are not this run.
    """
    run_dir = config.run_dir
    if not run_dir.is_dir() or (run_dir / CHECKPOINT_FILE).exists():
        return
    names = sorted(path.name for path in run_dir.iterdir() if not path.name.startswith(".")
                   and path.name not in (RUN_LOG_FILE, FAILED_FILE))  # a study's, before it
    if not names:
        return
    try:
        saved = json.loads((run_dir / CONFIG_FILE).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        saved = None
    if isinstance(saved, dict) and "model" in saved and "data" in saved:
        differences = config_differences(saved, config.to_dict(), saved_as="there")
        if not differences:
            return
        why = f"its {CONFIG_FILE} differs: {'; '.join(differences)}"
    else:
        why = f"no {CONFIG_FILE} of a repsim run"
    shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
    raise ValueError(f"{run_dir} holds files that are not a run of this configuration "
                     f"({shown}; {why}); choose another --out-dir, or pass --overwrite to "
                     f"write the run there anyway (its own files are rewritten, the others "
                     f"stay)")


class _Run:
    """One run while it trains, in its claimed directory: its model, optimiser, random
    generators, data and history, what each epoch's end writes (``end_epoch``) and the
    final evaluation (``finish``). ``run`` trains its epochs one by one;
    ``repsim.train.stacked`` trains the epochs of several runs as one stacked network and
    ends each run's epochs here, so that each writes what it would write alone.

    ``global_rng``: the global torch and numpy random states this run's checkpoints record
    (None: the live ones; a stacked run keeps each seed's own, taken after its model was
    made, as its run alone would have them)."""

    def __init__(self, config: TrainConfig, run_dir: Path, ckpt: dict | None, resume,
                 dataset: AVDataset, should_stop: Callable[[], bool] | None,
                 keep_global_rng: bool = False) -> None:
        self.config, self.run_dir, self.resume = config, run_dir, resume
        self.should_stop, self.dataset = should_stop, dataset
        self.checkpoint_path = run_dir / CHECKPOINT_FILE
        device = self.device = resolve_device(config.device)
        self.fingerprint = dataset.fingerprint()
        difference = None if ckpt is None else data_difference(ckpt["data_fingerprint"],
                                                                dataset, self.fingerprint)
        if difference is not None:
            raise ValueError(f"cannot resume from {resume}: it was trained on different data; "
                             f"{difference}")
        if config.model.in_channels != 1:
            raise ValueError("datasets give one channel per modality: model in_channels must "
                             "be 1")
        torch.manual_seed(config.seed)
        np.random.seed(config.seed % 2**32)  # noqa: NPY002 (see _rng_state)
        model = FusionConvLSTM(config.model).to(device)
        self.global_rng = (torch.get_rng_state(), np.random.get_state(legacy=True)) \
            if keep_global_rng else None  # noqa: NPY002
        if device.type == "cuda":  # NHWC convolutions are cuDNN's fast path for bf16
            # Module.to takes memory_format at run time; torch's typed overloads leave it out.
            model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.model = model
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr,
                                           weight_decay=config.weight_decay)
        self.shuffle_generator = torch.Generator().manual_seed(config.seed)
        self.noise_generator = torch.Generator(device=device).manual_seed(config.seed + 1)
        self.history: list[dict] = []
        self.start_epoch = 0
        if ckpt is not None:
            model.load_state_dict(ckpt["model_state"])
            self.optimizer.load_state_dict(ckpt["optimizer_state"])
            _restore_rng_state(ckpt["rng_state"], self.shuffle_generator, self.noise_generator)
            if keep_global_rng:
                self.global_rng = (torch.get_rng_state(),
                                   np.random.get_state(legacy=True))  # noqa: NPY002
            self.history = list(ckpt["history"])
            self.start_epoch = int(ckpt["epoch"])
            log.info("resuming %s at epoch %d of %d", resume, self.start_epoch, config.epochs)
            if device.type == "cpu":
                _warn_if_other_threads(resume, ckpt)
        # Small splits live on the training device for the whole run: no per-batch copies.
        self.train_split = dataset.splits["train"].to(device)
        self.val_split = dataset.splits["val"].to(device)
        self.features = dataset.features
        self.forward = torch.compile(model) if config.compile else model
        self.bf16 = uses_bf16(config.precision, device)
        self.amp = (torch.autocast(device_type=device.type, dtype=torch.bfloat16) if self.bf16
                    else contextlib.nullcontext())
        self.steps_per_epoch = math.ceil(len(self.train_split) / config.batch_size)
        self.n_params = model.parameter_count()
        log.info("model: %d layers, hidden %d, fusion layer %d, %s parameters; device %s, %s",
                 config.model.layers, config.model.hidden, config.model.fusion_layer,
                 f"{self.n_params:,}", device, "bf16 autocast" if self.bf16 else "float32")
        write_json(run_dir / CONFIG_FILE, config.to_dict())
        self.seconds = dict.fromkeys(TRAIN_STAGES, 0.0)
        self.best = _Best.resumed(ckpt, self.history) if config.stop_at_plateau else None
        self.stacked: int | None = None  # seeds trained together with this one, if stacked

    def stop(self, where: str) -> None:
        """TrainingStopped when the caller asked to stop."""
        if self.should_stop is not None and self.should_stop():
            kept = (f"the checkpoint of the last complete epoch is kept in "
                    f"{self.checkpoint_path}" if self.checkpoint_path.exists()
                    else "no epoch had finished, nothing is kept")
            raise TrainingStopped(f"training of {self.run_dir} stopped {where}: {kept}")

    def at_plateau(self) -> bool:
        """True when the run stops at its plateau (``stop_at_plateau``) and has reached it."""
        return self.best is not None and at_plateau(self.history, self.config)

    def _payload(self, epoch: int, metrics: dict) -> dict:
        kept = build_payload(
            config=self.config.to_dict(), model=self.model, optimizer=self.optimizer,
            epoch=epoch, metrics=metrics, data_fingerprint=self.fingerprint,
            history=self.history, rng_state=_rng_state(self.shuffle_generator,
                                                       self.noise_generator, self.global_rng))
        return kept if self.best is None else {**kept, **self.best.entries()}

    def end_epoch(self, record: EpochRecord,
                  on_epoch: Callable[[EpochRecord, FusionConvLSTM], None] | None = None
                  ) -> bool:
        """After an epoch's training steps (``record``): validation, the history, the
        checkpoint and ``log.csv``, the log line, ``on_epoch``; True when the run has
        reached its plateau and stops."""
        config = self.config
        self.seconds["training"] += record.epoch_seconds
        started = time.perf_counter()
        record.val_accuracy = accuracy(self.model, self.val_split, self.features,
                                       seed=config.seed, batch_size=config.eval_batch_size,
                                       amp=self.bf16)
        self.seconds["validation"] += time.perf_counter() - started
        history = self.history
        record.elapsed_seconds = (history[-1]["elapsed_seconds"] if history else 0.0) \
            + record.epoch_seconds
        history.append(record.as_row())
        if self.best is not None:
            self.best.update(record, self.model)
        started = time.perf_counter()
        save_checkpoint(self.checkpoint_path, self._payload(record.epoch, {}))
        write_log(self.run_dir, history)
        self.seconds["checkpoints"] += time.perf_counter() - started
        log.info("%sepoch %d/%d  train loss %.4f  val accuracy %.2f%%  elapsed %.1f s",
                 f"{self.run_dir.name}: " if self.stacked else "", record.epoch,
                 config.epochs, record.train_loss, 100 * record.val_accuracy,
                 record.elapsed_seconds)
        if on_epoch is not None:
            on_epoch(record, self.model)
        if self.best is not None and self.at_plateau():
            log.info("validation accuracy at its plateau after epoch %d (no gain above %g in "
                     "%d epochs): stopping; the model of epoch %d (%.2f%%) is kept",
                     record.epoch, config.plateau_gain, config.plateau_patience,
                     self.best.epoch, 100 * self.best.accuracy)
            return True
        return False

    def finish(self, progress: bool = False) -> TrainResult:
        """The final evaluation on the test grid, ``metrics.json`` and the final checkpoint
        (with the best epoch's model when the run stops at its plateau)."""
        config, history, best, model = self.config, self.history, self.best, self.model
        self.stop("before the final evaluation")
        if best is not None and best.state is not None:
            model.load_state_dict(best.state)
        log.info("evaluating the test split on the noise grid")
        started = time.perf_counter()
        with tqdm(total=3 * len(config.noise_snrs) + 3, desc="test conditions", leave=False,
                  disable=not progress, file=sys.stderr) as bar:
            grid = noise_grid(model, self.dataset.splits["test"], self.features,
                              snrs=config.noise_snrs, batch_size=config.eval_batch_size,
                              seed=config.seed, amp=self.bf16,
                              progress=lambda name: _advance(bar, name))
        self.seconds["evaluation"] = time.perf_counter() - started
        trained = len(history)
        metrics = Metrics(
            run=self.run_dir.resolve().name, dataset=config.data.dataset,
            fusion_layer=config.model.fusion_layer, layers=config.model.layers,
            seed=config.seed, parameters=self.n_params,
            branch_hidden=config.model.branch_width() if config.model.fusion_layer > 1
            else None,
            clean_accuracy=grid["clean_accuracy"], noise=grid["noise"],
            removed=grid["removed"],
            val_accuracy=(best.accuracy if best is not None and best.state is not None
                          else history[-1]["val_accuracy"] if history else None),
            epochs=config.epochs,
            train_seconds=history[-1]["elapsed_seconds"] if history else 0.0,
            config=config.to_dict(), versions=library_versions(),
            test_items=len(self.dataset.splits["test"]),
            stopped_epoch=trained if best is not None and trained < config.epochs else None,
            best_epoch=best.epoch if best is not None else None, stacked=self.stacked)
        save_checkpoint(self.checkpoint_path,
                        self._payload(trained if best is not None else config.epochs,
                                      metrics.to_dict()))
        write_metrics(self.run_dir, metrics)
        return TrainResult(run_dir=self.run_dir, checkpoint=self.checkpoint_path,
                           metrics=metrics, model=model.eval(), history=history,
                           seconds=self.seconds)


def at_plateau(history: list[dict], config: TrainConfig) -> bool:
    """The plateau rule of ``stop_at_plateau``.

    Parameters
    ----------
    history
        The ``log.csv`` rows so far (their ``val_accuracy``).
    config
        Its ``plateau_patience`` and ``plateau_gain``.

    Returns
    -------
    bool
        True when the last ``plateau_patience`` epochs did not raise the best validation
        accuracy of the epochs before them by more than ``plateau_gain`` (never before
        ``plateau_patience + 1`` epochs).
    """
    values = [row["val_accuracy"] for row in history]
    patience = config.plateau_patience
    return len(values) > patience and \
        max(values[-patience:]) <= max(values[:-patience]) + config.plateau_gain


class _Best:
    """The epoch with the highest validation accuracy so far (the first of equals) and its
    weights: the model a run that stops at its plateau keeps. Its checkpoints carry both
    (``BEST_STATE``, ``BEST_EPOCH``), so that a resumed run keeps them too."""

    def __init__(self, epoch: int, accuracy: float, state: dict | None) -> None:
        self.epoch, self.accuracy, self.state = epoch, accuracy, state

    @classmethod
    def resumed(cls, ckpt: dict | None, history: list[dict]) -> _Best:
        if ckpt is None or not history:
            return cls(0, -math.inf, None)
        state, epoch = ckpt.get(BEST_STATE), ckpt.get(BEST_EPOCH)
        if not isinstance(state, dict) or not isinstance(epoch, int) \
                or not 1 <= epoch <= len(history):
            raise ValueError("the checkpoint of a run that stops at its plateau lacks the "
                             "best epoch's weights; start the run again")
        return cls(epoch, history[epoch - 1]["val_accuracy"], state)

    def update(self, record: EpochRecord, model: nn.Module) -> None:
        if record.val_accuracy > self.accuracy:
            self.epoch, self.accuracy = record.epoch, record.val_accuracy
            self.state = {key: value.detach().clone()
                          for key, value in model.state_dict().items()}

    def entries(self) -> dict:
        return {} if self.state is None else {
            BEST_STATE: {key: value.cpu() for key, value in self.state.items()},
            BEST_EPOCH: self.epoch}


def _warn_if_other_threads(resume: str | os.PathLike, ckpt: dict) -> None:
    """Warn when a CPU run resumes with another torch thread count than it was trained with:
    CPU results depend on it, so the resumed run may not equal an uninterrupted one."""
    recorded, now = ckpt.get("torch_threads"), torch.get_num_threads()
    if recorded is not None and recorded != now:
        log.warning("%s was trained with %d torch threads, this run has %d: bitwise equality "
                    "with an uninterrupted run is not guaranteed; to match it, run with "
                    "OMP_NUM_THREADS=%d (or torch.set_num_threads(%d))",
                    resume, recorded, now, recorded, recorded)


def _finished(config: TrainConfig, ckpt: dict) -> TrainResult:
    """The result of a run whose checkpoint is complete (``metrics.json`` rewritten from it,
    in case the run stopped between the two)."""
    run_dir = config.run_dir
    metrics = Metrics.from_dict(ckpt["metrics"], str(run_dir / CHECKPOINT_FILE))
    write_metrics(run_dir, metrics)
    log.info("%s has already finished (%d epochs); nothing to train", run_dir, ckpt["epoch"])
    return TrainResult(run_dir=run_dir, checkpoint=run_dir / CHECKPOINT_FILE, metrics=metrics,
                       model=model_from_checkpoint(ckpt), history=list(ckpt["history"]))


def diverged(config: TrainConfig, epoch: int, mean_loss: float) -> TrainingDiverged:
    """The error of a run whose mean loss in an epoch was not finite.

    Parameters
    ----------
    config
        The run (its run directory is named).
    epoch
        The epoch, counted from 0.
    mean_loss
        The epoch's mean loss.

    Returns
    -------
    TrainingDiverged
        Naming the epoch (from 1) and the checkpoint of the last good one, if any.
    """
    return TrainingDiverged(
        f"training diverged: the loss became {mean_loss} in epoch {epoch + 1}; "
        + (f"the last good checkpoint (epoch {epoch}) is kept in "
           f"{config.run_dir / CHECKPOINT_FILE}" if epoch > 0 else "no checkpoint was "
           "written") + "; try a lower --lr or --grad-clip")


def _train_epoch(config: TrainConfig, epoch: int, forward, model: FusionConvLSTM,
                 optimizer: torch.optim.Optimizer, split: AVSplit, features,
                 shuffle_generator: torch.Generator, noise_generator: torch.Generator,
                 amp, steps_per_epoch: int, progress: bool,
                 stop: Callable[[str], None]) -> EpochRecord:
    """One pass over the shuffled train pairs; raises TrainingDiverged on a non-finite loss
    (``stop(where)`` raises TrainingStopped when the caller asked to stop)."""
    device = split.waveforms.device
    model.train()
    started = time.perf_counter()
    order = torch.randperm(len(split), generator=shuffle_generator).to(device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    lr = config.lr
    bar = tqdm(order.split(config.batch_size), total=steps_per_epoch, leave=False,
               desc=f"epoch {epoch + 1}/{config.epochs}", disable=not progress,
               file=sys.stderr, unit="batch")
    for step, index in enumerate(bar):
        stop(f"in epoch {epoch + 1}")
        lr = lr_at(config, epoch * steps_per_epoch + step, steps_per_epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        audio_snr, visual_snr = (_augment_snrs(config, len(index), device, noise_generator)
                                 if config.augment != "none" else (math.inf, math.inf))
        batch = make_batch(split, features, split.pair_audio[index], split.pair_visual[index],
                           audio_snr=audio_snr, visual_snr=visual_snr,
                           generator=noise_generator)
        if config.modality_dropout > 0:
            batch = _drop_modality(config, batch, noise_generator)
        with amp:
            logits = forward(batch.audio, batch.visual)
        loss = _loss(logits.float(), batch.audio_digit)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        loss_sum += loss.detach() * len(index)
        if progress and step % 10 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()
    mean_loss = float(loss_sum) / len(split)
    if not math.isfinite(mean_loss):
        raise diverged(config, epoch, mean_loss)
    return EpochRecord(epoch=epoch + 1, train_loss=mean_loss, val_accuracy=math.nan, lr=lr,
                       epoch_seconds=time.perf_counter() - started, elapsed_seconds=math.nan)
