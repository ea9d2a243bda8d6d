"""Accuracy of a fusion model under test conditions: clean, noisy, or a modality removed.

Each test pair's noise comes from a generator of its own, seeded from the evaluation seed and
the pair's position (the same for every condition, so one pair's noise differs between SNRs
only in scale): an accuracy depends neither on which conditions were evaluated before it nor
on the batch size.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from repsim.conditions import TEST_SNRS, Condition, grid_conditions
from repsim.data.base import AudioFeatures, AVSplit, make_batch
from repsim.data.noise import item_generators
from repsim.device import EVAL_BATCH_SIZE, autocast
from repsim.models.fusion import final_logits


def predict(model: nn.Module, split: AVSplit, features: AudioFeatures, *,
            condition: Condition = Condition(), batch_size: int = EVAL_BATCH_SIZE, seed: int = 0,
            amp: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits ``(n_pairs, classes)`` (float32, CPU) and targets for every pair of ``split``.

    Runs on the model's device (the split is moved there if needed). Targets are the audio
    digits (equal to the visual digits for congruent pairs).
    """
    if batch_size <= 0:
        raise ValueError(f"batch size must be positive, got {batch_size}")
    device = next(model.parameters()).device
    split = split if split.waveforms.device == device else split.to(device)
    was_training = model.training
    model.eval()
    outputs, targets = [], []
    try:
        with torch.no_grad(), autocast(device, amp):
            for start in range(0, len(split), batch_size):
                stop = min(start + batch_size, len(split))
                batch = make_batch(split, features, split.pair_audio[start:stop],
                                   split.pair_visual[start:stop],
                                   audio_snr=condition.audio_snr,
                                   visual_snr=condition.visual_snr,
                                   remove=condition.remove,
                                   generator=None if condition.noise is None else
                                   item_generators(range(start, stop), seed, device=device))
                outputs.append(final_logits(model(batch.audio, batch.visual)).float().cpu())
                targets.append(batch.audio_digit.cpu())
    finally:
        model.train(was_training)
    return torch.cat(outputs), torch.cat(targets)


def accuracy(model: nn.Module, split: AVSplit, features: AudioFeatures, *,
             condition: Condition = Condition(), batch_size: int = EVAL_BATCH_SIZE, seed: int = 0,
             amp: bool | None = None) -> float:
    """Fraction of pairs of ``split`` whose predicted class is the digit, under ``condition``."""
    logits, targets = predict(model, split, features, condition=condition,
                              batch_size=batch_size, seed=seed, amp=amp)
    return int((logits.argmax(dim=1) == targets).sum()) / len(targets)


def noise_grid(model: nn.Module, split: AVSplit, features: AudioFeatures, *,
               snrs: tuple[float, ...] | list[float] = TEST_SNRS, batch_size: int = EVAL_BATCH_SIZE,
               seed: int = 0, amp: bool | None = None,
               progress: Callable[[str], object] | None = None) -> dict:
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
