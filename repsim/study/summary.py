"""The representation summary of one run: what the study report needs from its activations.

- ``reliance``: per layer and time step, the ablation sensitivities (1 - CKA between intact
  and modality-removed states) and the reliance index S_audio / (S_audio + S_visual)
  (:func:`repsim.labelled.ablation_sensitivity`);
- ``readout``: the same for the states the readout sees (the last fused layer; for late
  fusion the operator's output ``join.<L+1>``, or in a file without it, as summaries before
  version 2 had it, the two last branch layers side by side: the operator's input, which is
  what the readout reads only for concatenation), and on incongruent stimuli at the last
  step, how well a linear probe decodes the heard (audio) and the seen (visual) digit (or
  class: a dataset with named classes also gets ``class_names``);
- ``mechanism`` (only when the probe set has :data:`repsim.conditions.MECHANISM_CONDITIONS`),
  per audio-noise condition ``audio_snr<X>``: ``noise_entry``, per layer and time step, and
  for the readout's states, 1 - linear CKA and the relative change between the clean and the
  noisy states of the same stimuli (:func:`repsim.analysis.noise_entry`); ``survival``, the
  heard and the seen label decoded from the readout's states at the last step on noisy
  incongruent stimuli by probes trained on clean incongruent ones
  (:func:`repsim.analysis.transfer_probe`); for a gated run, ``gate``: the mean of the
  gate (the audio stream's share; the visual stream's is 1 minus it) clean and noisy; and
  (version 2, files that recorded the operator's output) ``fused``: the operator's output
  layer, whether the readout reads it (late fusion), and at the last step on incongruent
  stimuli, per condition (clean, each audio SNR), target (heard, seen) and view (``mean``:
  the spatial mean per channel, what a readout sees; ``map``: every position) the accuracy
  of a probe trained and tested, cross-validated, within the condition (``present``: is the
  information there?) and, under noise, of one trained on clean stimuli (``transfer``: does
  the clean reading still work?). Its noise entry is the per-layer one of that layer.
- ``time`` (version 3): per layer and target (heard, seen), on the incongruent stimuli, the
  temporal generalization of a decoder trained at each step and tested at every step
  (:func:`repsim.labelled.temporal_generalization_all`, C = 1, the probes' folds and seed):
  the sliding decoder's accuracy per step (``diagonal``), ``stability`` ((mean off-diagonal
  - chance) / (mean diagonal - chance)) and ``chance``. The onsets are the report's, over
  seeds (:mod:`repsim.study.timecourse`): a within-run permutation test would refit every
  decoder a hundred times (about 30 s per layer and label at the quick study's sizes).

Numbers are plain JSON (NaN as null), so the report reads summaries, not activation files.
"""

from __future__ import annotations

import math
import os

import numpy as np
import xarray as xr

from repsim import activations
from repsim.activations.format import CLASS_NAMES
from repsim.activations.labels import class_names, is_digits, label_coords
from repsim.analysis import (
    linear_probe,
    modality_sensitivity,
    noise_entry,
    reliance_index,
    transfer_probe,
)
from repsim.conditions import (
    CLEAN,
    INCONGRUENT,
    MECHANISM_CONDITIONS,
    MODALITIES,
    parse_condition,
    removed_condition,
)
from repsim.labelled import ablation_sensitivity, temporal_generalization_all
from repsim.models.fusion import GATE, JOIN

PROBE_TARGETS = ("heard", "seen")  # the audio and the visual label (activations.labels)
VIEWS = ("mean", "map")  # the spatial mean per channel (what a readout sees), every position
SUMMARY_VERSION = 3


def operator_layer(layer_names: list[str]) -> str | None:
    """The recorded output of the fusion operator (``join.<k>``), or None."""
    joins = [name for name in layer_names if name.split(".", 1)[0] == JOIN]
    return joins[0] if joins else None


def readout_layers(layer_names: list[str]) -> list[str]:
    """The layers whose last states the readout reads: the last fused layer, or (late
    fusion, no fused layer) the operator's output, or without it the last audio and visual
    layers."""
    fused = [name for name in layer_names if name.startswith("fused.")]
    if fused:
        return fused[-1:]
    joined = operator_layer(layer_names)
    if joined is not None:
        return [joined]
    depth = max(int(name.rsplit(".", 1)[1]) for name in layer_names
                if name.split(".", 1)[0] in MODALITIES)
    return [f"{stream}.{depth}" for stream in MODALITIES]


def _readout_states(data: xr.Dataset, layers: list[str], condition: str, time: int | None,
                    order: np.ndarray | None = None) -> np.ndarray:
    """What the readout reads on ``condition``: its layers' states side by side,
    ``(stimuli, features)`` at step ``time`` or ``(stimuli, time, features)`` for None."""
    return np.concatenate([activations.layer_states(data, layer, condition, time=time,
                                                    order=order) for layer in layers], axis=-1)


def _plain(values) -> list:
    """Nested lists of floats with NaN as None (JSON has no NaN)."""
    array = np.asarray(values, dtype=float)
    return [None if math.isnan(x) else float(x) for x in array] if array.ndim == 1 \
        else [_plain(row) for row in array]


def summarize(path: str | os.PathLike, *, probe_folds: int = 5, probe_seed: int = 0) -> dict:
    """The summary of the activation file at ``path`` (see the module docstring)."""
    data = activations.open(path)
    try:
        names = activations.layer_names(data)
        grid = ablation_sensitivity(data)
        readout = readout_layers(names)
        steps = data.sizes["time"]
        order = activations.stimulus_ids(data, CLEAN)
        sensitivity = np.empty((len(MODALITIES), steps))
        intact = _readout_states(data, readout, CLEAN, None)  # every step in one read
        for i, modality in enumerate(MODALITIES):
            removed = _readout_states(data, readout, removed_condition(modality), None, order)
            for t in range(steps):
                sensitivity[i, t] = modality_sensitivity(intact[:, t], removed[:, t])[0]
        incongruent = _readout_states(data, readout, INCONGRUENT, steps - 1)
        table = activations.stimulus_table(data, INCONGRUENT)
        probes = {}
        fewest = probe_folds  # the folds every target allows: the time decoders use them
        for name, target in zip(PROBE_TARGETS, label_coords(data), strict=True):
            labels = table[target].to_numpy()
            folds = _probe_folds(labels, probe_folds, target)
            fewest = min(fewest, folds)
            result = linear_probe(incongruent, labels, folds=folds, seed=probe_seed,
                                  Cs=(1.0,))
            probes[name] = {"accuracy": result.accuracy, "chance": result.chance,
                            "ci": list(result.ci), "folds": folds}
        # class names only for datasets that have them: digit summaries stay as they were
        classes = {} if is_digits(data) else {CLASS_NAMES: class_names(data)}
        mechanism = _mechanism(data, names, readout, probe_folds, probe_seed)
        time = _time(data, fewest, probe_seed)
        return {
            "version": SUMMARY_VERSION, "layers": names, "time_steps": steps, **classes,
            "reliance": {
                "cka_sensitivity": {removed: _plain(grid["cka_sensitivity"].sel(
                    removed=removed).values) for removed in grid["removed"].values.tolist()},
                "reliance_cka": _plain(grid["reliance_cka"].values),
                "reliance_change": _plain(grid["reliance_change"].values)},
            "readout": {
                "layers": readout,
                "cka_sensitivity": dict(zip(MODALITIES, map(_plain, sensitivity), strict=True)),
                "reliance_cka": _plain(reliance_index(sensitivity[0], sensitivity[1])),
                "probe_stimuli": int(len(table)), "probe": probes},
            **({"mechanism": mechanism} if mechanism else {}), "time": time}
    finally:
        data.close()


def _time(data: xr.Dataset, folds: int, seed: int) -> dict:
    """The ``time`` part of the summary (module docstring)."""
    targets = dict(zip(PROBE_TARGETS, label_coords(data), strict=True))
    grid = temporal_generalization_all(data, list(targets.values()), condition=INCONGRUENT,
                                       folds=folds, seed=seed)
    layers = {}
    for layer, steps in zip(grid["layer"].values, grid["steps"].values, strict=True):
        layers[str(layer)] = {
            name: {"diagonal": _plain(np.diagonal(cell["accuracy"].values)[:int(steps)]),
                   "stability": _plain([float(cell["stability"])])[0],
                   "chance": float(cell["chance"])}
            for name, target in targets.items()
            for cell in [grid.sel(layer=layer, target=target)]}
    return {"condition": INCONGRUENT, "folds": folds, "layers": layers}


def _probe_folds(labels: np.ndarray, folds: int, target: str) -> int:
    """``folds``, or fewer when a digit has fewer stimuli; ValueError below 2."""
    folds = min(folds, int(np.unique(labels, return_counts=True)[1].min()))
    if folds < 2:
        raise ValueError(f"too few incongruent stimuli per digit to probe {target} "
                         f"(raise evaluation.probe_stimuli)")
    return folds


def _mechanism(data: xr.Dataset, names: list[str], readout: list[str], probe_folds: int,
               probe_seed: int) -> dict:
    """The ``mechanism`` part of the summary (module docstring); empty when the file has
    none of the conditions it needs."""
    present = set(activations.condition_names(data))
    steps = data.sizes["time"]
    noisy = [name for name in MECHANISM_CONDITIONS
             if name in present and not parse_condition(name).incongruent]
    entry: dict = {}
    order = activations.stimulus_ids(data, CLEAN)
    if noisy:  # every step of a layer in one read (a read per step cost more than the CKA)
        clean_layers = {layer: activations.layer_states(data, layer, CLEAN) for layer in names}
        clean_readout = _readout_states(data, readout, CLEAN, None)
    for condition in noisy:
        by_layer = {}
        for layer in names:
            states = activations.layer_states(data, layer, condition, order=order)
            by_layer[layer] = [noise_entry(clean_layers[layer][:, t], states[:, t])
                               for t in range(steps)]
        noisy_readout = _readout_states(data, readout, condition, None, order)
        at_readout = [noise_entry(clean_readout[:, t], noisy_readout[:, t])
                      for t in range(steps)]
        entry[condition] = {
            "cka": {layer: _plain([e for e, _ in values]) for layer, values in by_layer.items()},
            "change": {layer: _plain([c for _, c in values])
                       for layer, values in by_layer.items()},
            "readout": {"cka": _plain([e for e, _ in at_readout]),
                        "change": _plain([c for _, c in at_readout])}}
    survival: dict = {}
    shifted = [name for name in MECHANISM_CONDITIONS
               if name in present and parse_condition(name).incongruent]
    if shifted:
        clean = _readout_states(data, readout, INCONGRUENT, steps - 1)
        ids = activations.stimulus_ids(data, INCONGRUENT)
        table = activations.stimulus_table(data, INCONGRUENT)
        for condition in shifted:
            states = _readout_states(data, readout, condition, steps - 1, ids)
            survival[parse_condition(condition).inputs.name] = {
                name: transfer_probe(clean, states, table[target].to_numpy(),
                                     folds=_probe_folds(table[target].to_numpy(), probe_folds,
                                                        target),
                                     seed=probe_seed).accuracy
                for name, target in zip(PROBE_TARGETS, label_coords(data), strict=True)}
    gates = [name for name in names if name.split(".", 1)[0] == GATE]
    gate = {}
    if gates and (noisy or shifted):
        gate = {"layer": gates[0], "audio_share": {
            condition: float(activations.select(data, gates[0], condition=condition)
                             .mean().item())
            for condition in (CLEAN, *noisy)}}
    joined = operator_layer(names)
    fused = {} if joined is None or not shifted else {
        "layer": joined, "readout": readout == [joined],
        "probes": _fused_probes(data, joined, shifted, probe_folds, probe_seed)}
    parts = {"noise_entry": entry, "survival": survival, "gate": gate, "fused": fused}
    return {key: value for key, value in parts.items() if value}


def _view_states(data: xr.Dataset, layer: str, condition: str, view: str,
                 order: np.ndarray | None = None) -> np.ndarray:
    """``layer``'s states at the last step as ``(stimuli, features)``: every position
    (``map``) or the spatial mean of each channel (``mean``; a vector layer is its own)."""
    states = np.asarray(activations.select(data, layer, time=-1, condition=condition,
                                           order=order).values, dtype=np.float32)
    if view == "mean" and states.ndim == 4:  # (stimulus, channel, y, x)
        states = states.mean(axis=(2, 3))
    return states.reshape(len(states), -1)


def _fused_probes(data: xr.Dataset, layer: str, shifted: list[str], probe_folds: int,
                  probe_seed: int) -> dict:
    """``fused.probes`` (module docstring): per condition, ``present`` (and under noise
    ``transfer``) -> view -> target -> accuracy."""
    ids = activations.stimulus_ids(data, INCONGRUENT)
    table = activations.stimulus_table(data, INCONGRUENT)
    labels = {name: table[target].to_numpy()
              for name, target in zip(PROBE_TARGETS, label_coords(data), strict=True)}
    folds = {name: _probe_folds(values, probe_folds, name) for name, values in labels.items()}
    clean = {view: _view_states(data, layer, INCONGRUENT, view) for view in VIEWS}

    def present(states: dict) -> dict:
        return {view: {name: linear_probe(states[view], labels[name], folds=folds[name],
                                          seed=probe_seed, Cs=(1.0,)).accuracy
                       for name in PROBE_TARGETS} for view in VIEWS}

    probes = {CLEAN: {"present": present(clean)}}
    for condition in shifted:
        noisy = {view: _view_states(data, layer, condition, view, ids) for view in VIEWS}
        probes[parse_condition(condition).inputs.name] = {
            "present": present(noisy),
            "transfer": {view: {name: transfer_probe(clean[view], noisy[view], labels[name],
                                                     folds=folds[name], seed=probe_seed
                                                     ).accuracy
                                for name in PROBE_TARGETS} for view in VIEWS}}
    return probes
