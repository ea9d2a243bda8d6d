"""Accuracy of a fusion model under test conditions: clean, noisy, or a modality removed.

Noise is drawn from a generator seeded afresh for every condition, so a condition's accuracy
does not depend on which conditions were evaluated before it.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch
from torch import nn

from repsim.data.base import MODALITIES, AudioFeatures, AVSplit, make_batch
from repsim.models.fusion import final_logits

NOISE_TARGETS = ("audio", "visual", "both")
# Arithmetic of training and evaluation: bf16 autocast, float32, or auto (bf16 on CUDA).
PRECISIONS = ("auto", "float32", "bf16")
DEFAULT_SNRS = (20.0, 10.0, 5.0, 0.0, -5.0, -10.0)


def _format_db(snr_db: float) -> str:
    """``-10.0`` -> ``"-10"``, ``2.5`` -> ``"2.5"``: the X in condition names."""
    return f"{snr_db:g}"


@dataclass(frozen=True)
class Condition:
    """A test condition: white noise on ``noise`` at ``snr_db`` dB, or ``remove`` a modality.

    ``Condition()`` is clean. Names follow the activation files: ``clean``, ``audio_snr-10``,
    ``both_snr0``, ``audio_removed``...
    """

    noise: str | None = None
    snr_db: float = math.inf
    remove: str | None = None

    def __post_init__(self) -> None:
        if self.noise not in (None, *NOISE_TARGETS):
            raise ValueError(f"noise must be one of {NOISE_TARGETS} or None, got {self.noise!r}")
        if self.remove not in (None, *MODALITIES):
            raise ValueError(f"remove must be 'audio', 'visual' or None, got {self.remove!r}")
        if math.isnan(self.snr_db):
            raise ValueError("SNR must be a number of dB or inf, not NaN")
        if self.noise is not None and math.isinf(self.snr_db):
            raise ValueError(f"{self.noise} noise needs a finite SNR, got {self.snr_db}")
        if self.noise is not None and self.remove is not None:
            raise ValueError("a condition either adds noise or removes a modality, not both")

    @property
    def name(self) -> str:
        """Condition name as used in activation files."""
        if self.remove is not None:
            return f"{self.remove}_removed"
        if self.noise is not None:
            return f"{self.noise}_snr{_format_db(self.snr_db)}"
        return "clean"

    @property
    def audio_snr(self) -> float:
        return self.snr_db if self.noise in ("audio", "both") else math.inf

    @property
    def visual_snr(self) -> float:
        return self.snr_db if self.noise in ("visual", "both") else math.inf


def uses_bf16(precision: str, device: torch.device) -> bool:
    """Whether ``precision`` (one of :data:`PRECISIONS`) means bf16 autocast on ``device``.

    ``auto`` is bf16 on CUDA (tensor cores) and float32 on the CPU, so that CPU results stay
    bit-reproducible unless bf16 is asked for; CPUs with native bf16 instructions (AVX512-BF16,
    AMX) run convolutions about twice as fast in it.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return precision == "bf16" or (precision == "auto" and device.type == "cuda")


def _autocast(device: torch.device, enabled: bool | None):
    """bf16 autocast when ``enabled`` (``None``: on exactly when on CUDA), else nothing."""
    if enabled is None:
        enabled = uses_bf16("auto", device)
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def predict(model: nn.Module, split: AVSplit, features: AudioFeatures, *,
            condition: Condition = Condition(), batch_size: int = 256, seed: int = 0,
            amp: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits ``(n_pairs, classes)`` (float32, CPU) and targets for every pair of ``split``.

    Runs on the model's device (the split is moved there if needed). Targets are the audio
    digits (equal to the visual digits for congruent pairs).
    """
    if batch_size <= 0:
        raise ValueError(f"batch size must be positive, got {batch_size}")
    device = next(model.parameters()).device
    split = split if split.waveforms.device == device else split.to(device)
    generator = torch.Generator(device=device).manual_seed(seed)
    was_training = model.training
    model.eval()
    outputs, targets = [], []
    try:
        with torch.no_grad(), _autocast(device, amp):
            for start in range(0, len(split), batch_size):
                stop = min(start + batch_size, len(split))
                batch = make_batch(split, features, split.pair_audio[start:stop],
                                   split.pair_visual[start:stop],
                                   audio_snr=condition.audio_snr,
                                   visual_snr=condition.visual_snr,
                                   remove=condition.remove, generator=generator)
                outputs.append(final_logits(model(batch.audio, batch.visual)).float().cpu())
                targets.append(batch.audio_digit.cpu())
    finally:
        model.train(was_training)
    return torch.cat(outputs), torch.cat(targets)


def accuracy(model: nn.Module, split: AVSplit, features: AudioFeatures, *,
             condition: Condition = Condition(), batch_size: int = 256, seed: int = 0,
             amp: bool | None = None) -> float:
    """Fraction of pairs of ``split`` whose predicted class is the digit, under ``condition``."""
    logits, targets = predict(model, split, features, condition=condition,
                              batch_size=batch_size, seed=seed, amp=amp)
    return int((logits.argmax(dim=1) == targets).sum()) / len(targets)


def grid_conditions(snrs: tuple[float, ...] | list[float] = DEFAULT_SNRS) -> list[Condition]:
    """Clean, each noise target at each finite SNR, then each modality removed."""
    for snr in snrs:
        if not math.isfinite(snr):
            raise ValueError(f"grid SNRs must be finite dB values (clean is always included), "
                             f"got {snr}")
    return ([Condition()]
            + [Condition(noise=target, snr_db=float(snr))
               for target in NOISE_TARGETS for snr in snrs]
            + [Condition(remove=modality) for modality in MODALITIES])


def noise_grid(model: nn.Module, split: AVSplit, features: AudioFeatures, *,
               snrs: tuple[float, ...] | list[float] = DEFAULT_SNRS, batch_size: int = 256,
               seed: int = 0, amp: bool | None = None, progress=None) -> dict:
    """Accuracy on ``split`` for every grid condition, in the metrics.json layout.

    Returns ``{"clean_accuracy", "noise": [{"noise", "snr_db", "accuracy"}, ...],
    "removed": {"audio", "visual"}}``. ``progress`` (optional) is called with each
    condition's name before it is evaluated.
    """
    device = next(model.parameters()).device
    split = split if split.waveforms.device == device else split.to(device)
    result: dict = {"clean_accuracy": None, "noise": [], "removed": {}}
    for condition in grid_conditions(snrs):
        if progress is not None:
            progress(condition.name)
        value = accuracy(model, split, features, condition=condition, batch_size=batch_size,
                         seed=seed, amp=amp)
        if condition.remove is not None:
            result["removed"][condition.remove] = value
        elif condition.noise is not None:
            result["noise"].append({"noise": condition.noise, "snr_db": condition.snr_db,
                                    "accuracy": value})
        else:
            result["clean_accuracy"] = value
    return result
