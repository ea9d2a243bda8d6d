"""Accuracy of a fusion model under test conditions: clean, noisy, or a modality removed.

Each test pair's noise comes from a generator of its own, seeded from the evaluation seed and
the pair's position (the same for every condition, so one pair's noise differs between SNRs
only in scale): an accuracy depends neither on which conditions were evaluated before it nor
on the batch size.

[noise_grid][repsim.evaluate.noise_grid] evaluates every condition of the grid batch by batch
together: a fusion network's stream before the fusion layer depends on its own modality only,
so the audio branch of the clean pairs serves the clean, visual-noise and visual-removed
conditions, the audio branch of ``audio_snrX`` serves ``both_snrX`` (the same noise draw),
and so on. Inputs are matched by their values (``torch.equal``), and a shared branch output
is the same tensor the condition would have computed (the same operations on the same
batch), so every accuracy is bitwise what evaluating the condition alone gives.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from repsim.conditions import MODALITIES, TEST_SNRS, Condition, grid_conditions
from repsim.data.base import AudioFeatures, AVSplit, Batch, make_batch
from repsim.data.noise import item_generators
from repsim.device import EVAL_BATCH_SIZE, autocast
from repsim.models.fusion import FusionConvLSTM, final_logits

SHARED_BYTES = 256 << 20  # branch outputs a grid batch keeps for the conditions sharing them


def _condition_batch(split: AVSplit, features: AudioFeatures, start: int, stop: int,
                     condition: Condition, seed: int, device: torch.device) -> Batch:
    """Pairs ``start:stop`` of ``split`` under ``condition``, each pair's noise from its own
    generator seeded from ``(seed, position)``."""
    return make_batch(split, features, split.pair_audio[start:stop],
                      split.pair_visual[start:stop], audio_snr=condition.audio_snr,
                      visual_snr=condition.visual_snr, remove=condition.remove,
                      generator=None if condition.noise is None else
                      item_generators(range(start, stop), seed, device=device))


def predict(model: nn.Module, split: AVSplit, features: AudioFeatures, *,
            condition: Condition = Condition(), batch_size: int = EVAL_BATCH_SIZE, seed: int = 0,
            amp: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and targets for every pair of ``split`` under ``condition``.

    Runs on the model's device (the split is moved there if needed).

    Parameters
    ----------
    model
        The fusion model (any ``nn.Module`` called as ``model(audio, visual)``); it runs in
        eval mode under ``torch.no_grad()``, and its mode is restored after.
    split
        The pairs to evaluate ([AVSplit][repsim.data.base.AVSplit]); moved to the model's
        device if needed.
    features
        The dataset's audio transform ([AudioFeatures][repsim.data.base.AudioFeatures]).
    condition
        The test condition ([Condition][repsim.conditions.Condition]): clean by default,
        noisy, or a modality removed.
    batch_size
        Pairs per forward (each pair's noise does not depend on it).
    seed
        The evaluation seed, from which each pair's noise generator is seeded (with the
        pair's position).
    amp
        bf16 autocast ([autocast][repsim.device.autocast]); None: exactly when on CUDA.

    Returns
    -------
    tuple of torch.Tensor
        Logits ``(n_pairs, classes)`` (float32, CPU; the last step of a per-step readout,
        [final_logits][repsim.models.fusion.final_logits]) and targets ``(n_pairs,)``: the
        audio digits (equal to the visual digits for congruent pairs).

    Raises
    ------
    ValueError
        For a batch size that is not positive.
    """
    _check_batch_size(batch_size)
    device = next(model.parameters()).device
    split = split if split.waveforms.device == device else split.to(device)
    was_training = model.training
    model.eval()
    outputs, targets = [], []
    try:
        with torch.no_grad(), autocast(device, amp):
            for start in range(0, len(split), batch_size):
                stop = min(start + batch_size, len(split))
                batch = _condition_batch(split, features, start, stop, condition, seed, device)
                outputs.append(final_logits(model(batch.audio, batch.visual)).float().cpu())
                targets.append(batch.audio_digit.cpu())
    finally:
        model.train(was_training)
    return torch.cat(outputs), torch.cat(targets)


def _check_batch_size(batch_size: int) -> None:
    if batch_size <= 0:
        raise ValueError(f"batch size must be positive, got {batch_size}")


def accuracy(model: nn.Module, split: AVSplit, features: AudioFeatures, *,
             condition: Condition = Condition(), batch_size: int = EVAL_BATCH_SIZE, seed: int = 0,
             amp: bool | None = None) -> float:
    """Fraction of pairs of ``split`` whose predicted class is the digit, under ``condition``.

    The predictions are [predict][repsim.evaluate.predict]'s arg-max.

    Parameters
    ----------
    model
        The fusion model (any ``nn.Module`` called as ``model(audio, visual)``); it runs in
        eval mode under ``torch.no_grad()``, and its mode is restored after.
    split
        The pairs to evaluate ([AVSplit][repsim.data.base.AVSplit]); moved to the model's
        device if needed.
    features
        The dataset's audio transform ([AudioFeatures][repsim.data.base.AudioFeatures]).
    condition
        The test condition ([Condition][repsim.conditions.Condition]); clean by default.
    batch_size
        Pairs per forward (each pair's noise does not depend on it).
    seed
        The evaluation seed, from which each pair's noise generator is seeded (with the
        pair's position).
    amp
        bf16 autocast ([autocast][repsim.device.autocast]); None: exactly when on CUDA.

    Returns
    -------
    float
        The accuracy, in [0, 1].

    Raises
    ------
    ValueError
        For a batch size that is not positive.
    """
    logits, targets = predict(model, split, features, condition=condition,
                              batch_size=batch_size, seed=seed, amp=amp)
    return int((logits.argmax(dim=1) == targets).sum()) / len(targets)


class _SharedStreams:
    """One grid batch's branch outputs, by input value, so that conditions that give a
    stream the same input compute it once (module docstring); at most SHARED_BYTES kept."""

    def __init__(self, model: FusionConvLSTM) -> None:
        self.model = model
        self.kept: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {
            modality: [] for modality in MODALITIES}
        self.bytes = 0

    def logits(self, audio: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
        return self.model.from_branches(self._branch("audio", audio),
                                        self._branch("visual", visual))

    def _branch(self, modality: str, x: torch.Tensor) -> torch.Tensor:
        for given, output in self.kept[modality]:
            if torch.equal(given, x):
                return output
        output = self.model.branch(modality, x)
        size = (x.numel() * x.element_size() + output.numel() * output.element_size())
        if self.bytes + size <= SHARED_BYTES:
            self.kept[modality].append((x, output))
            self.bytes += size
        return output


def noise_grid(model: nn.Module, split: AVSplit, features: AudioFeatures, *,
               snrs: tuple[float, ...] | list[float] = TEST_SNRS, batch_size: int = EVAL_BATCH_SIZE,
               seed: int = 0, amp: bool | None = None,
               progress: Callable[[str], object] | None = None) -> dict:
    """Accuracy on ``split`` for every grid condition, in the metrics.json layout: each
    equal to [accuracy][repsim.evaluate.accuracy] of that condition alone (module docstring).

    Parameters
    ----------
    model
        The fusion model: a [FusionConvLSTM][repsim.models.fusion.FusionConvLSTM] shares
        its streams' outputs among conditions (module docstring); any other ``nn.Module``
        called as ``model(audio, visual)`` runs each condition in full. It runs in eval mode
        under ``torch.no_grad()``, and its mode is restored after.
    split
        The pairs to evaluate ([AVSplit][repsim.data.base.AVSplit]); moved to the model's
        device if needed.
    features
        The dataset's audio transform ([AudioFeatures][repsim.data.base.AudioFeatures]).
    snrs
        The finite SNRs in dB of the grid
        ([grid_conditions][repsim.conditions.grid_conditions]: clean, each noise kind at each
        SNR, each modality removed).
    batch_size
        Pairs per forward (each pair's noise does not depend on it).
    seed
        The evaluation seed, from which each pair's noise generator is seeded (with the
        pair's position).
    amp
        bf16 autocast ([autocast][repsim.device.autocast]); None: exactly when on CUDA.
    progress
        Called with each condition's name, in grid order, as its evaluation begins (with the
        first batch of pairs, which every condition goes through before the next).

    Returns
    -------
    dict
        ``{"clean_accuracy", "noise": [{"noise", "snr_db", "accuracy"}, ...],
        "removed": {"audio", "visual"}}``.

    Raises
    ------
    ValueError
        For a batch size that is not positive, or an SNR that is not finite.
    """
    _check_batch_size(batch_size)
    device = next(model.parameters()).device
    split = split if split.waveforms.device == device else split.to(device)
    conditions = grid_conditions(snrs)
    correct = [0] * len(conditions)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), autocast(device, amp):
            for start in range(0, len(split), batch_size):
                stop = min(start + batch_size, len(split))
                streams = _SharedStreams(model) if isinstance(model, FusionConvLSTM) else None
                for index, condition in enumerate(conditions):
                    if progress is not None and start == 0:
                        progress(condition.name)
                    batch = _condition_batch(split, features, start, stop, condition, seed,
                                             device)
                    logits = (model(batch.audio, batch.visual) if streams is None
                              else streams.logits(batch.audio, batch.visual))
                    predicted = final_logits(logits).float().cpu().argmax(dim=1)
                    correct[index] += int((predicted == batch.audio_digit.cpu()).sum())
    finally:
        model.train(was_training)
    result: dict = {"clean_accuracy": None, "noise": [], "removed": {}}
    for condition, count in zip(conditions, correct, strict=True):
        value = count / len(split)
        if condition.remove is not None:
            result["removed"][condition.remove] = value
        elif condition.noise is not None:
            result["noise"].append({"noise": condition.noise, "snr_db": condition.snr_db,
                                    "accuracy": value})
        else:
            result["clean_accuracy"] = value
    return result
