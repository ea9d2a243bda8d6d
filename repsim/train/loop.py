"""The training loop: ``repsim.train.run(config)``.

One run trains on the train split, reports validation accuracy after every epoch, writes an
atomic checkpoint after every epoch, and finally evaluates the test split clean, on the noise
grid and with each modality removed (:mod:`repsim.rundir` names the files it writes). On the
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


@dataclass
class EpochRecord:
    """What one epoch produced; passed to ``on_epoch`` callbacks with the live model."""

    epoch: int
    train_loss: float
    val_accuracy: float
    lr: float
    epoch_seconds: float
    elapsed_seconds: float

    def as_row(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class TrainResult:
    """A finished run: where it wrote, its metrics and the trained model (eval mode)."""

    run_dir: Path
    checkpoint: Path
    metrics: Metrics
    model: FusionConvLSTM
    history: list[dict]


class TrainingStopped(Exception):
    """``should_stop`` asked the run to stop: the checkpoint of the last complete epoch (if
    any) is kept, and ``resume="auto"`` continues from it."""


class TrainingDiverged(ValueError):
    """The training loss became NaN or infinite."""


def lr_at(config: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """Learning rate at global ``step``: linear warm-up, then cosine decay to zero."""
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


def _rng_state(shuffle: torch.Generator, noise: torch.Generator) -> dict:
    """Every random state a run may draw from, as tensors and ints (weights_only-safe).

    The loop itself draws only from ``shuffle`` and ``noise``; the global torch and numpy
    states are kept too, so code called from the loop (callbacks, dataset transforms) that
    uses them also resumes exactly.
    """
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)  # noqa: NPY002
    return {"torch": torch.get_rng_state(), "shuffle": shuffle.get_state(),
            "noise": noise.get_state(),
            "numpy": {"kind": kind, "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
                      "pos": int(pos), "has_gauss": int(has_gauss), "cached": float(cached)}}


def _restore_rng_state(state: dict, shuffle: torch.Generator, noise: torch.Generator) -> None:
    """Inverse of :func:`_rng_state`."""
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
    follows the dataset's (10 for the digit datasets, whose configs are thus unchanged)."""
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

    ``resume`` names a checkpoint of the same configuration (fields in
    :data:`RESUMABLE_DIFFERENCES` may differ) to continue from; ``"auto"`` makes the run safe
    to start again: a finished run in ``config.run_dir`` is returned as it is (nothing is
    trained), a partial one is continued from its last checkpoint, none is started afresh,
    and a run of another configuration there is refused (ValueError naming the differing
    fields; its metrics are not recomputed, even for another ``noise_snrs``). ``dataset``
    skips building the data (it must be the dataset ``config.data`` describes); otherwise the
    data are built before anything is written, so a bad dataset leaves no run directory.
    The model's ``classes`` is set to the dataset's class count (:func:`with_classes`).
    ``on_epoch(record, model)`` is the per-epoch hook for loggers and monitors: ``record``
    is the epoch's :class:`EpochRecord` (``epoch`` counted from 1, ``train_loss``,
    ``val_accuracy``, ``lr`` of its last step, seconds; ``record.as_row()`` is its
    ``log.csv`` row) and ``model`` the live model (read it, do not change it). It is called
    once per epoch this call trains, after that epoch's checkpoint and ``log.csv`` row are
    written and its log line is printed, so an exception it raises stops the run with the
    epoch kept. A resumed run calls it only for the epochs after its checkpoint's, a finished
    one never; the final test metrics are in the returned :class:`TrainResult`.
    ``progress`` shows tqdm bars on stderr.
    ``should_stop`` is asked before every training step and before the final evaluation;
    when it answers True the run raises :class:`TrainingStopped`, abandoning the epoch in
    progress (its checkpoint of the last complete epoch stays).
    Raises :class:`TrainingDiverged` (a ValueError) if the loss stops being finite; the
    checkpoint of the last good epoch is left in place.
    """
    device = resolve_device(config.device)
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
    run_dir = prepare_run_dir(config.run_dir, resume=resume is not None, overwrite=overwrite)
    with claim(run_dir):  # a second run in this directory fails here, naming this one
        for name in RUN_FILES:
            remove_stale_temporaries(run_dir / name)
        return _train(config, run_dir, device, ckpt, resume, dataset, on_epoch, progress,
                      should_stop)


def check_run_dir(config: TrainConfig) -> None:
    """ValueError unless ``config.run_dir`` may receive this run without ``overwrite``: it
    does not exist, holds only hidden files (locks, temporaries) and a study's ``run.log``
    and ``failed.txt``, or holds a run of this configuration (its ``config.json``: a run
    continued, or one killed before its first checkpoint started again). A folder with a
    checkpoint is a run, which ``resume`` checks against the checkpoint's configuration. A
    user's own files are never replaced unasked."""
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
                     f"replace them")


def _train(config: TrainConfig, run_dir: Path, device: torch.device, ckpt: dict | None,
           resume, dataset: AVDataset, on_epoch, progress: bool,
           should_stop) -> TrainResult:
    """The body of :func:`run` once the run directory is prepared and claimed."""
    checkpoint_path = run_dir / CHECKPOINT_FILE

    def stop(where: str) -> None:
        if should_stop is not None and should_stop():
            kept = (f"the checkpoint of the last complete epoch is kept in {checkpoint_path}"
                    if checkpoint_path.exists() else "no epoch had finished, nothing is kept")
            raise TrainingStopped(f"training of {run_dir} stopped {where}: {kept}")

    fingerprint = dataset.fingerprint()
    difference = None if ckpt is None else data_difference(ckpt["data_fingerprint"], dataset,
                                                            fingerprint)
    if difference is not None:
        raise ValueError(f"cannot resume from {resume}: it was trained on different data; "
                         f"{difference}")
    if config.model.in_channels != 1:
        raise ValueError("datasets give one channel per modality: model in_channels must be 1")

    torch.manual_seed(config.seed)
    np.random.seed(config.seed % 2**32)  # noqa: NPY002 (see _rng_state)
    model = FusionConvLSTM(config.model).to(device)
    cuda = device.type == "cuda"
    if cuda:  # NHWC convolutions are cuDNN's fast path for bf16
        # Module.to takes memory_format at run time; torch's typed overloads leave it out.
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr,
                                  weight_decay=config.weight_decay)
    shuffle_generator = torch.Generator().manual_seed(config.seed)
    noise_generator = torch.Generator(device=device).manual_seed(config.seed + 1)
    history: list[dict] = []
    start_epoch = 0
    if ckpt is not None:
        model.load_state_dict(ckpt["model_state"])
        optimizer.load_state_dict(ckpt["optimizer_state"])
        _restore_rng_state(ckpt["rng_state"], shuffle_generator, noise_generator)
        history = list(ckpt["history"])
        start_epoch = int(ckpt["epoch"])
        log.info("resuming %s at epoch %d of %d", resume, start_epoch, config.epochs)
        if device.type == "cpu":
            _warn_if_other_threads(resume, ckpt)

    # Small splits live on the training device for the whole run: no per-batch copies.
    train_split = dataset.splits["train"].to(device)
    val_split = dataset.splits["val"].to(device)
    features = dataset.features
    forward = torch.compile(model) if config.compile else model
    bf16 = uses_bf16(config.precision, device)
    amp = (torch.autocast(device_type=device.type, dtype=torch.bfloat16) if bf16
           else contextlib.nullcontext())
    steps_per_epoch = math.ceil(len(train_split) / config.batch_size)
    n_params = model.parameter_count()
    log.info("model: %d layers, hidden %d, fusion layer %d, %s parameters; device %s, %s",
             config.model.layers, config.model.hidden, config.model.fusion_layer,
             f"{n_params:,}", device, "bf16 autocast" if bf16 else "float32")

    write_json(run_dir / CONFIG_FILE, config.to_dict())
    for epoch in range(start_epoch, config.epochs):
        record = _train_epoch(config, epoch, forward, model, optimizer, train_split,
                              features, shuffle_generator, noise_generator, amp,
                              steps_per_epoch, progress, stop)
        record.val_accuracy = accuracy(model, val_split, features, seed=config.seed,
                                       batch_size=config.eval_batch_size, amp=bf16)
        record.elapsed_seconds = (history[-1]["elapsed_seconds"] if history else 0.0) \
            + record.epoch_seconds
        history.append(record.as_row())
        save_checkpoint(checkpoint_path, build_payload(
            config=config.to_dict(), model=model, optimizer=optimizer, epoch=epoch + 1,
            metrics={}, data_fingerprint=fingerprint, history=history,
            rng_state=_rng_state(shuffle_generator, noise_generator)))
        write_log(run_dir, history)
        log.info("epoch %d/%d  train loss %.4f  val accuracy %.2f%%  elapsed %.1f s",
                 epoch + 1, config.epochs, record.train_loss, 100 * record.val_accuracy,
                 record.elapsed_seconds)
        if on_epoch is not None:
            on_epoch(record, model)

    stop("before the final evaluation")
    log.info("evaluating the test split on the noise grid")
    with tqdm(total=3 * len(config.noise_snrs) + 3, desc="test conditions", leave=False,
              disable=not progress, file=sys.stderr) as bar:
        grid = noise_grid(model, dataset.splits["test"], features, snrs=config.noise_snrs,
                          batch_size=config.eval_batch_size, seed=config.seed, amp=bf16,
                          progress=lambda name: _advance(bar, name))
    metrics = Metrics(
        run=run_dir.resolve().name, dataset=config.data.dataset,
        fusion_layer=config.model.fusion_layer, layers=config.model.layers, seed=config.seed,
        parameters=n_params,
        branch_hidden=config.model.branch_width() if config.model.fusion_layer > 1 else None,
        clean_accuracy=grid["clean_accuracy"], noise=grid["noise"], removed=grid["removed"],
        val_accuracy=history[-1]["val_accuracy"] if history else None, epochs=config.epochs,
        train_seconds=history[-1]["elapsed_seconds"] if history else 0.0,
        config=config.to_dict(), versions=library_versions(),
        test_items=len(dataset.splits["test"]))
    save_checkpoint(checkpoint_path, build_payload(
        config=config.to_dict(), model=model, optimizer=optimizer, epoch=config.epochs,
        metrics=metrics.to_dict(), data_fingerprint=fingerprint, history=history,
        rng_state=_rng_state(shuffle_generator, noise_generator)))
    write_metrics(run_dir, metrics)
    return TrainResult(run_dir=run_dir, checkpoint=checkpoint_path, metrics=metrics,
                       model=model.eval(), history=history)


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
        raise TrainingDiverged(
            f"training diverged: the loss became {mean_loss} in epoch {epoch + 1}; "
            + (f"the last good checkpoint (epoch {epoch}) is kept in "
               f"{config.run_dir / CHECKPOINT_FILE}" if epoch > 0 else "no checkpoint was "
               "written") + "; try a lower --lr or --grad-clip")
    return EpochRecord(epoch=epoch + 1, train_loss=mean_loss, val_accuracy=math.nan, lr=lr,
                       epoch_seconds=time.perf_counter() - started, elapsed_seconds=math.nan)
