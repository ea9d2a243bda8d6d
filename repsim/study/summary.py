"""The representation summary of one run: what the study report needs from its activations.

- ``reliance``: per layer and time step, the ablation sensitivities (1 - CKA between intact
  and modality-removed states) and the reliance index S_audio / (S_audio + S_visual)
  (:func:`repsim.labelled.ablation_sensitivity`);
- ``readout``: the same for the states the readout sees (the last fused layer; for late
  fusion the two last branch layers side by side), and on incongruent stimuli at the last
  step, how well a linear probe decodes the heard (audio) and the seen (visual) digit (or
  class: a dataset with named classes also gets ``class_names``).

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
from repsim.analysis import linear_probe, modality_sensitivity, reliance_index
from repsim.conditions import CLEAN, INCONGRUENT, MODALITIES, removed_condition
from repsim.labelled import ablation_sensitivity

PROBE_TARGETS = ("heard", "seen")  # the audio and the visual label (activations.labels)
SUMMARY_VERSION = 1


def readout_layers(layer_names: list[str]) -> list[str]:
    """The layers whose last states the readout reads: the last fused layer, or (late
    fusion, no fused layer) the last audio and visual layers."""
    fused = [name for name in layer_names if name.startswith("fused.")]
    if fused:
        return fused[-1:]
    depth = max(int(name.rsplit(".", 1)[1]) for name in layer_names)
    return [f"{stream}.{depth}" for stream in MODALITIES]


def _readout_states(data: xr.Dataset, layers: list[str], condition: str, time: int,
                    order: np.ndarray | None = None) -> np.ndarray:
    return np.concatenate([activations.layer_states(data, layer, condition, time=time,
                                                    order=order) for layer in layers], axis=1)


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
        for t in range(steps):
            intact = _readout_states(data, readout, CLEAN, t)
            for i, modality in enumerate(MODALITIES):
                removed = _readout_states(data, readout, removed_condition(modality), t, order)
                sensitivity[i, t] = modality_sensitivity(intact, removed)[0]
        incongruent = _readout_states(data, readout, INCONGRUENT, steps - 1)
        table = activations.stimulus_table(data, INCONGRUENT)
        probes = {}
        for name, target in zip(PROBE_TARGETS, label_coords(data), strict=True):
            labels = table[target].to_numpy()
            folds = min(probe_folds, int(np.unique(labels, return_counts=True)[1].min()))
            if folds < 2:
                raise ValueError(f"too few incongruent stimuli per class to probe {target} "
                                 f"(raise evaluation.probe_stimuli)")
            result = linear_probe(incongruent, labels, folds=folds, seed=probe_seed,
                                  Cs=(1.0,))
            probes[name] = {"accuracy": result.accuracy, "chance": result.chance,
                            "ci": list(result.ci), "folds": folds}
        # class names only for datasets that have them: digit summaries stay as they were
        classes = {} if is_digits(data) else {CLASS_NAMES: class_names(data)}
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
                "probe_stimuli": int(len(table)), "probe": probes}}
    finally:
        data.close()
