"""Train a fusion ConvLSTM: ``repsim.train.run(config)`` or ``python -m repsim.train``.

One run trains on the train split, reports validation accuracy after every epoch, writes an
atomic checkpoint after every epoch, and finally evaluates the test split clean, on the noise
grid and with each modality removed. The run directory holds ``ckpt.pt``, ``config.json``,
``log.csv`` and ``metrics.json``. On the CPU a fixed seed gives identical weights, and a run
resumed from any epoch's checkpoint ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import json
import logging
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from repsim.checkpoint import FORMAT, FORMAT_VERSION, load_checkpoint, save_checkpoint
from repsim.cli import keep_freed_memory, key_value, setup_logging, user_errors_exit_2
from repsim.data.base import AVDataset, AVSplit, Batch, make_batch
from repsim.data.registry import build_dataset, dataset_builder, dataset_names
from repsim.evaluate import DEFAULT_SNRS, NOISE_TARGETS, PRECISIONS, accuracy, noise_grid, uses_bf16
from repsim.models.fusion import FusionConvLSTM, ModelConfig
from repsim.provenance import atomic_path, library_versions

log = logging.getLogger("repsim.train")

AUGMENT_CHOICES = ("none", *NOISE_TARGETS)
# Fields that may differ between a checkpoint and the run that resumes it: they change where
# and how fast the run goes, or what is evaluated at the end, never the trained weights.
RESUMABLE_DIFFERENCES = ("device", "compile", "out_dir", "eval_batch_size", "noise_snrs")
CHECKPOINT_NAME = "ckpt.pt"
LOG_FIELDS = ("epoch", "train_loss", "val_accuracy", "lr", "epoch_seconds", "elapsed_seconds")


def _positive_int(name: str, value, allow_none: bool = False) -> None:
    """Raise ValueError unless ``value`` is a positive int (or None when allowed)."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


@dataclass
class DataConfig:
    """Which dataset to build and how; :meth:`build` passes these to its registry builder.

    ``seed`` is the dataset's seed (pairs, speakers, jitter), separate from the training
    seed, so models trained with different seeds see the same stimuli. ``options`` holds
    builder-specific keyword arguments. ``None`` sizes mean the dataset's defaults.
    """

    dataset: str = "synthetic"
    data_dir: str | None = None
    seed: int = 0
    timesteps: int | None = None
    height: int | None = None
    width: int | None = None
    options: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        dataset_builder(self.dataset, self.options)  # unknown name or option: ValueError
        for name in ("timesteps", "height", "width"):
            _positive_int(f"data {name}", getattr(self, name), allow_none=True)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"data seed must be an integer, got {self.seed!r}")

    def build(self) -> AVDataset:
        """Build the dataset through the registry."""
        return build_dataset(self.dataset, data_dir=self.data_dir, seed=self.seed,
                             timesteps=self.timesteps, height=self.height, width=self.width,
                             **self.options)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> DataConfig:
        return cls(**_known_fields(cls, values, "data"))


def _known_fields(cls, values: dict, what: str) -> dict:
    """``values`` if every key is a field of ``cls``, else ValueError naming the others."""
    if not isinstance(values, dict):
        raise ValueError(f"{what} config must be a JSON object, got {type(values).__name__}")
    unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
        raise ValueError(f"unknown {what} config field(s): {', '.join(unknown)}")
    return values


@dataclass
class TrainConfig:
    """Everything that defines a training run; round-trips through JSON.

    ``augment`` adds white noise during training to ``"audio"``, ``"visual"`` or ``"both"``
    modalities (independently) of a random ``augment_fraction`` of samples, each at an SNR
    drawn uniformly from ``augment_snr`` dB. ``modality_dropout`` zeroes one modality (audio
    or visual, equally likely) of that fraction of training samples, so that neither stream
    can be ignored. ``noise_snrs`` are the finite SNRs of the final
    test grid (clean is always evaluated). ``out_dir`` None means
    ``runs/<dataset>-f<k>-s<seed>``. The learning rate warms up linearly over the first
    ``warmup_epochs`` and then follows a cosine decay to zero at the last step.
    """

    model: ModelConfig = field(default_factory=lambda: ModelConfig(layers=2, hidden=16))
    data: DataConfig = field(default_factory=DataConfig)
    epochs: int = 6
    batch_size: int = 32
    lr: float = 1e-2
    weight_decay: float = 1e-4
    warmup_epochs: float = 0.5
    grad_clip: float = 1.0
    seed: int = 0
    device: str = "auto"
    compile: bool = False
    precision: str = "auto"
    augment: str = "none"
    augment_snr: tuple[float, float] = (-10.0, 20.0)
    augment_fraction: float = 0.5
    modality_dropout: float = 0.0
    noise_snrs: tuple[float, ...] = DEFAULT_SNRS
    eval_batch_size: int = 256
    out_dir: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.model, dict):
            self.model = ModelConfig.from_dict(_known_fields(ModelConfig, self.model, "model"))
        if isinstance(self.data, dict):
            self.data = DataConfig.from_dict(self.data)
        self.augment_snr = tuple(float(x) for x in self.augment_snr)
        self.noise_snrs = tuple(float(x) for x in self.noise_snrs)
        for name in ("epochs", "batch_size", "eval_batch_size"):
            _positive_int(name, getattr(self, name))
        for name in ("lr", "weight_decay", "warmup_epochs", "grad_clip"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.lr == 0:
            raise ValueError("lr must be positive, got 0")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.augment not in AUGMENT_CHOICES:
            raise ValueError(f"augment must be one of {AUGMENT_CHOICES}, got {self.augment!r}")
        if (len(self.augment_snr) != 2 or not all(map(math.isfinite, self.augment_snr))
                or self.augment_snr[0] > self.augment_snr[1]):
            raise ValueError(f"augment_snr must be two finite dB values low <= high, "
                             f"got {self.augment_snr}")
        for name in ("augment_fraction", "modality_dropout"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        for snr in self.noise_snrs:
            if not math.isfinite(snr):
                raise ValueError(f"noise_snrs are the finite SNRs of the test grid (clean is "
                                 f"always evaluated), got {snr}")

    @property
    def run_dir(self) -> Path:
        """Where the run writes its files."""
        if self.out_dir is not None:
            return Path(self.out_dir)
        return Path("runs") / f"{self.data.dataset}-f{self.model.fusion_layer}-s{self.seed}"

    def to_dict(self) -> dict:
        """Plain JSON-able dict (tuples become lists)."""
        values = dataclasses.asdict(self)
        values["augment_snr"] = list(self.augment_snr)
        values["noise_snrs"] = list(self.noise_snrs)
        return values

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """Inverse of :meth:`to_dict`."""
        return cls(**_known_fields(cls, values, "train"))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> TrainConfig:
        return cls.from_dict(json.loads(text))


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
    metrics: dict
    model: FusionConvLSTM
    history: list[dict]


class TrainingDiverged(ValueError):
    """The training loss became NaN or infinite."""


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; asking for CUDA without one is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available here")
    return device


def lr_at(config: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """Learning rate at global ``step``: linear warm-up, then cosine decay to zero."""
    total = config.epochs * steps_per_epoch
    warmup = min(int(round(config.warmup_epochs * steps_per_epoch)), total - 1)
    if step < warmup:
        return config.lr * (step + 1) / warmup
    progress = (step - warmup) / max(total - warmup, 1)
    return config.lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def _flatten(values: dict, prefix: str = "") -> dict:
    """Nested dict -> ``{"model.hidden": 16, ...}``."""
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict) and key != "options":
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def config_differences(saved: dict, current: dict) -> list[str]:
    """``"field: saved -> current"`` for every field that would change the trained weights."""
    saved_flat, current_flat = _flatten(saved), _flatten(current)
    differences = []
    for key in sorted(set(saved_flat) | set(current_flat)):
        if key in RESUMABLE_DIFFERENCES:
            continue
        before, after = saved_flat.get(key, "<absent>"), current_flat.get(key, "<absent>")
        if before != after:
            differences.append(f"{key}: {before!r} (checkpoint) vs {after!r} (now)")
    return differences


def prepare_run_dir(run_dir: Path, *, resume: bool, overwrite: bool) -> Path:
    """Create ``run_dir`` and check it can be written, before any work is done."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=run_dir, prefix=".write-test-"):
            pass
    except OSError as error:
        raise ValueError(f"cannot write to output directory {run_dir}: "
                         f"{error.strerror or error}") from None
    if (run_dir / CHECKPOINT_NAME).exists() and not (resume or overwrite):
        raise ValueError(f"{run_dir} already holds a checkpoint; continue it with --resume "
                         f"{run_dir / CHECKPOINT_NAME}, start again with --overwrite, or "
                         f"choose another --out-dir")
    return run_dir


def _rng_state(shuffle: torch.Generator, noise: torch.Generator) -> dict:
    """Every random state a run may draw from, as tensors and ints (weights_only-safe).

    The loop itself draws only from ``shuffle`` and ``noise``; the global torch and numpy
    states are kept too, so code called from the loop (callbacks, dataset transforms) that
    uses them also resumes exactly.
    """
    kind, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002
    return {"torch": torch.get_rng_state(), "shuffle": shuffle.get_state(),
            "noise": noise.get_state(),
            "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)),
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


def _loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy; a per-step readout is trained at every step (mean over steps)."""
    if logits.dim() == 3:
        steps = logits.shape[1]
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                               targets.repeat_interleave(steps))
    return F.cross_entropy(logits, targets)


def _write_log(path: Path, history: list[dict]) -> None:
    """Rewrite the per-epoch CSV log atomically (it survives resumes intact)."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=LOG_FIELDS)
        writer.writeheader()
        for row in history:
            writer.writerow({key: row[key] for key in LOG_FIELDS})


def _write_json(path: Path, values: dict) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(values, indent=2, allow_nan=False) + "\n")


def run(config: TrainConfig, *, resume: str | os.PathLike | None = None,
        overwrite: bool = False, dataset: AVDataset | None = None,
        on_epoch: Callable[[EpochRecord, FusionConvLSTM], None] | None = None,
        progress: bool = False) -> TrainResult:
    """Train (or continue) a run and evaluate it; returns where it wrote and what it measured.

    ``resume`` names a checkpoint of the same configuration (fields in
    :data:`RESUMABLE_DIFFERENCES` may differ) to continue from. ``dataset`` skips building
    the data (it must be the dataset ``config.data`` describes). ``on_epoch`` is called after
    each epoch's checkpoint is written. ``progress`` shows tqdm bars on stderr.
    Raises :class:`TrainingDiverged` (a ValueError) if the loss stops being finite; the
    checkpoint of the last good epoch is left in place.
    """
    device = resolve_device(config.device)
    ckpt = load_checkpoint(resume) if resume is not None else None
    if ckpt is not None:
        differences = config_differences(ckpt["config"], config.to_dict())
        if differences:
            raise ValueError(f"cannot resume from {resume}: it was trained with another "
                             f"configuration; differing fields: {'; '.join(differences)}")
    run_dir = prepare_run_dir(config.run_dir, resume=resume is not None, overwrite=overwrite)
    checkpoint_path = run_dir / CHECKPOINT_NAME

    if dataset is None:
        log.info("building the %s dataset", config.data.dataset)
        dataset = config.data.build()
    fingerprint = dataset.fingerprint()
    if ckpt is not None and ckpt["data_fingerprint"] != fingerprint:
        raise ValueError(f"cannot resume from {resume}: it was trained on different data "
                         f"(dataset fingerprint {str(ckpt['data_fingerprint'])[:12]} != "
                         f"{fingerprint[:12]})")
    if config.model.in_channels != 1:
        raise ValueError("datasets give one channel per modality: model in_channels must be 1")

    torch.manual_seed(config.seed)
    np.random.seed(config.seed % 2**32)  # noqa: NPY002 (see _rng_state)
    model = FusionConvLSTM(config.model).to(device)
    cuda = device.type == "cuda"
    if cuda:  # NHWC convolutions are cuDNN's fast path for bf16
        model = model.to(memory_format=torch.channels_last)
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

    _write_json(run_dir / "config.json", config.to_dict())
    for epoch in range(start_epoch, config.epochs):
        record = _train_epoch(config, epoch, forward, model, optimizer, train_split,
                              features, shuffle_generator, noise_generator, amp,
                              steps_per_epoch, progress)
        record.val_accuracy = accuracy(model, val_split, features, seed=config.seed,
                                       batch_size=config.eval_batch_size, amp=bf16)
        record.elapsed_seconds = (history[-1]["elapsed_seconds"] if history else 0.0) \
            + record.epoch_seconds
        history.append(record.as_row())
        save_checkpoint(checkpoint_path, _payload(config, model, optimizer, epoch + 1,
                                                  {}, fingerprint, history,
                                                  _rng_state(shuffle_generator,
                                                             noise_generator)))
        _write_log(run_dir / "log.csv", history)
        log.info("epoch %d/%d  train loss %.4f  val accuracy %.2f%%  elapsed %.1f s",
                 epoch + 1, config.epochs, record.train_loss, 100 * record.val_accuracy,
                 record.elapsed_seconds)
        if on_epoch is not None:
            on_epoch(record, model)

    log.info("evaluating the test split on the noise grid")
    with tqdm(total=3 * len(config.noise_snrs) + 3, desc="test conditions", leave=False,
              disable=not progress, file=sys.stderr) as bar:
        grid = noise_grid(model, dataset.splits["test"], features, snrs=config.noise_snrs,
                          batch_size=config.eval_batch_size, seed=config.seed, amp=bf16,
                          progress=lambda name: (bar.set_postfix_str(name), bar.update()))
    metrics = {
        "run": run_dir.resolve().name, "dataset": config.data.dataset,
        "fusion_layer": config.model.fusion_layer, "layers": config.model.layers,
        "seed": config.seed, "parameters": n_params,
        "branch_hidden": config.model.branch_width() if config.model.fusion_layer > 1 else None,
        **grid,
        "val_accuracy": history[-1]["val_accuracy"] if history else None,
        "epochs": config.epochs,
        "train_seconds": history[-1]["elapsed_seconds"] if history else 0.0,
        "config": config.to_dict(), "versions": library_versions(),
    }
    save_checkpoint(checkpoint_path, _payload(config, model, optimizer, config.epochs, metrics,
                                              fingerprint, history,
                                              _rng_state(shuffle_generator, noise_generator)))
    _write_json(run_dir / "metrics.json", metrics)
    return TrainResult(run_dir=run_dir, checkpoint=checkpoint_path, metrics=metrics,
                       model=model.eval(), history=history)


def _train_epoch(config: TrainConfig, epoch: int, forward, model: FusionConvLSTM,
                 optimizer: torch.optim.Optimizer, split: AVSplit, features,
                 shuffle_generator: torch.Generator, noise_generator: torch.Generator,
                 amp, steps_per_epoch: int, progress: bool) -> EpochRecord:
    """One pass over the shuffled train pairs; raises TrainingDiverged on a non-finite loss."""
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
               f"{config.run_dir / CHECKPOINT_NAME}" if epoch > 0 else "no checkpoint was "
               "written") + "; try a lower --lr or --grad-clip")
    return EpochRecord(epoch=epoch + 1, train_loss=mean_loss, val_accuracy=math.nan, lr=lr,
                       epoch_seconds=time.perf_counter() - started, elapsed_seconds=math.nan)


def _payload(config: TrainConfig, model: FusionConvLSTM, optimizer: torch.optim.Optimizer,
             epoch: int, metrics: dict, fingerprint: str, history: list[dict],
             rng_state: dict) -> dict:
    """The checkpoint dict (CPU tensors and plain values only)."""
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION, "config": config.to_dict(),
        "model_state": {key: value.detach().cpu() for key, value in model.state_dict().items()},
        "optimizer_state": optimizer.state_dict(), "epoch": epoch, "metrics": metrics,
        "versions": library_versions(), "data_fingerprint": fingerprint,
        "history": history, "rng_state": rng_state,
        "complete": bool(metrics),
    }


EXAMPLES = """examples:
  python -m repsim.train                                  # synthetic data, early fusion (k=1)
  python -m repsim.train --fusion-layer late --out-dir runs/late
  python -m repsim.train --dataset avmnist --data-dir ../shared/data --layers 4 --hidden 32
  python -m repsim.train --augment both --augment-snr -10 20 --epochs 12
  python -m repsim.train --data-option distractor_snr=0   # a competing talker in every clip
  python -m repsim.train --config runs/late/config.json --resume runs/late/ckpt.pt
  python -m repsim.report runs/synthetic-f1-s0 runs/late   # accuracy tables side by side
"""


def _fusion_layer(text: str) -> int | str:
    """``--fusion-layer`` value: a layer number or ``late``."""
    if text == "late":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a layer number or 'late', got {text!r}") from None


def _snr_list(text: str) -> float:
    """One ``--snrs`` value in dB (``inf`` is accepted and means clean)."""
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an SNR in dB or 'inf', got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m repsim.train`` argument parser; unset options keep the config's value."""
    parser = argparse.ArgumentParser(
        prog="python -m repsim.train", epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train a fusion ConvLSTM, then test it clean, on a noise grid and with "
                    "each modality removed. Writes ckpt.pt, config.json, log.csv and "
                    "metrics.json into the run directory.")
    defaults = TrainConfig()
    arg = parser.add_argument
    arg("--config", metavar="JSON", help="start from this TrainConfig JSON (e.g. a run's "
        "config.json); the options below override it")
    data = parser.add_argument_group("data")
    data.add_argument("--dataset", choices=dataset_names(),
                      help=f"dataset (default {defaults.data.dataset})")
    data.add_argument("--data-dir", help="where the dataset's files are (avmnist)")
    data.add_argument("--data-seed", type=int, help="dataset seed (default 0)")
    data.add_argument("--timesteps", type=int, help="time steps T (default: the dataset's)")
    data.add_argument("--height", type=int, help="frame height H (default: the dataset's)")
    data.add_argument("--width", type=int, help="frame width W (default: the dataset's)")
    data.add_argument("--data-option", type=key_value, action="append", metavar="KEY=VALUE",
                      help="any other dataset option, e.g. --data-option distractor_snr=0 "
                           "(repeatable; see python -m repsim.data)")
    model = parser.add_argument_group("model")
    model.add_argument("--fusion-layer", type=_fusion_layer, metavar="K",
                       help="1..layers+1, or 'late' (default 1: early fusion)")
    model.add_argument("--layers", type=int, help=f"ConvLSTM layers (default "
                       f"{defaults.model.layers})")
    model.add_argument("--hidden", type=int, help=f"channels per layer (default "
                       f"{defaults.model.hidden})")
    model.add_argument("--kernel", type=int, help="convolution kernel size (default 3)")
    model.add_argument("--readout", choices=("last", "per_step"),
                       help="classify at the last step (default) or at every step")
    model.add_argument("--match-params", action="store_true", default=None,
                       help="narrow the branch layers so the parameter count matches k=1")
    train = parser.add_argument_group("training")
    train.add_argument("--epochs", type=int, help=f"default {defaults.epochs}")
    train.add_argument("--batch-size", type=int, help=f"default {defaults.batch_size}")
    train.add_argument("--lr", type=float, help=f"peak learning rate (default {defaults.lr})")
    train.add_argument("--weight-decay", type=float,
                       help=f"AdamW weight decay (default {defaults.weight_decay})")
    train.add_argument("--grad-clip", type=float,
                       help=f"gradient norm clip, 0 = off (default {defaults.grad_clip})")
    train.add_argument("--seed", type=int, help="training seed (default 0)")
    train.add_argument("--device", help="auto (default), cpu, cuda or cuda:N")
    train.add_argument("--compile", action="store_true", default=None,
                       help="torch.compile the model for training")
    train.add_argument("--precision", choices=PRECISIONS,
                       help="bf16 autocast or float32; auto (default) is bf16 on CUDA and "
                            "float32 on the CPU, where bf16 is faster on CPUs with bf16 "
                            "instructions")
    train.add_argument("--augment", choices=AUGMENT_CHOICES,
                       help="train-time white noise on these modalities (default none)")
    train.add_argument("--augment-snr", type=float, nargs=2, metavar=("LOW", "HIGH"),
                       help="range of train-time SNRs in dB (default -10 20)")
    train.add_argument("--augment-fraction", type=float,
                       help="fraction of samples that get noise (default 0.5)")
    train.add_argument("--modality-dropout", type=float, metavar="FRACTION",
                       help=f"fraction of training samples with one modality zeroed "
                            f"(default {defaults.modality_dropout})")
    evaluation = parser.add_argument_group("evaluation")
    evaluation.add_argument("--snrs", type=_snr_list, nargs="+", metavar="DB",
                            help="test-grid SNRs in dB (default inf 20 10 5 0 -5 -10; clean "
                                 "is always included)")
    evaluation.add_argument("--eval-batch-size", type=int, help="default 256")
    output = parser.add_argument_group("output")
    output.add_argument("--out-dir", help="run directory (default runs/<dataset>-f<k>-s<seed>)")
    output.add_argument("--resume", metavar="CKPT",
                        help="continue from this checkpoint (same configuration)")
    output.add_argument("--overwrite", action="store_true",
                        help="start afresh even if the run directory holds a checkpoint")
    output.add_argument("--quiet", action="store_true", help="no progress bars")
    output.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """A TrainConfig from ``--config`` (or the defaults) with the given options applied."""
    if args.config is not None:
        path = Path(args.config)
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {path}")
        try:
            base = TrainConfig.from_json(path.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} is not valid JSON: {error}") from None
    else:
        base = TrainConfig()

    def given(**names: str) -> dict:
        return {field_name: getattr(args, arg_name) for field_name, arg_name in names.items()
                if getattr(args, arg_name) is not None}

    data = dataclasses.replace(base.data, **given(
        dataset="dataset", data_dir="data_dir", seed="data_seed", timesteps="timesteps",
        height="height", width="width"))
    if args.data_option:
        data = dataclasses.replace(data, options={**data.options, **dict(args.data_option)})
    model = dataclasses.replace(base.model, **given(
        fusion_layer="fusion_layer", layers="layers", hidden="hidden", kernel="kernel",
        readout="readout", match_params="match_params"))
    changes = given(epochs="epochs", batch_size="batch_size", lr="lr",
                    weight_decay="weight_decay", grad_clip="grad_clip", seed="seed",
                    device="device", compile="compile", precision="precision",
                    augment="augment",
                    augment_snr="augment_snr", augment_fraction="augment_fraction",
                    modality_dropout="modality_dropout",
                    eval_batch_size="eval_batch_size", out_dir="out_dir")
    if args.snrs is not None:
        changes["noise_snrs"] = tuple(snr for snr in args.snrs if not math.isinf(snr)
                                      or snr < 0)
    return dataclasses.replace(base, model=model, data=data, **changes)


def summary_line(result: TrainResult) -> str:
    """One line: what was trained, how well, and where it was written."""
    metrics = result.metrics
    return (f"trained {metrics['dataset']} fusion layer {metrics['fusion_layer']} of "
            f"{metrics['layers']} ({metrics['parameters']:,} parameters) for "
            f"{metrics['epochs']} epochs in {metrics['train_seconds']:.0f} s: clean test "
            f"accuracy {100 * metrics['clean_accuracy']:.1f}% (val "
            f"{100 * metrics['val_accuracy']:.1f}%); wrote {result.run_dir}/ "
            f"(ckpt.pt, metrics.json, log.csv, config.json)")


@user_errors_exit_2
def main(argv: list[str] | None = None) -> int:
    """``python -m repsim.train``: parse, :func:`run`, print the summary line."""
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    keep_freed_memory()
    config = config_from_args(args)
    result = run(config, resume=args.resume, overwrite=args.overwrite,
                 progress=not args.quiet)
    print(summary_line(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
