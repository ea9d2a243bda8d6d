"""Modality-ablation sensitivity: how much a layer changes when one input modality is removed.

Definitions, for one layer x time step with intact states ``h`` and states ``h_removed``
recorded on the same stimuli with one modality zeroed (matched by ``stimulus_id``):

- CKA sensitivity ``S = 1 - CKA(h, h_removed)`` (linear by default; see
  :mod:`repsim.analysis.cka`). If removal makes the layer constant across stimuli (e.g. an
  audio-branch layer without audio), no stimulus information is left: its HSIC with the
  intact states is exactly 0, so CKA is taken as 0 and ``S = 1``. An intact layer that is
  constant has no CKA at all: ValueError.
- Relative change ``||h - h_removed||_F / ||h||_F`` over all stimuli and features.
- Reliance index ``S_audio / (S_audio + S_visual)``: 1 when only removing audio changes the
  layer, 0 when only removing vision does, 0.5 for equal reliance; NaN when neither removal
  changes it (0 / 0). Given for both measures.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr

from repsim.analysis._arrays import aligned_matrices, is_constant
from repsim.analysis.cka import cka
from repsim.conditions import CLEAN, removed_condition

REMOVED = ("audio", "visual")
REMOVED_CONDITIONS = tuple(removed_condition(modality) for modality in REMOVED)


def modality_sensitivity(h, h_removed, kernel: str = "linear", debiased: bool = False,
                         threshold: float = 1.0) -> tuple[float, float]:
    """``(1 - CKA(h, h_removed), ||h - h_removed|| / ||h||)`` for one representation.

    ``h``/``h_removed``: NumPy, torch or xarray (stimuli first; matched by ``stimulus_id``
    when both carry it). See the module docstring for the constant cases.
    """
    intact, removed = aligned_matrices([h, h_removed], ["h", "h_removed"])
    if is_constant(intact):
        raise ValueError("h (the intact states) is constant across stimuli: CKA with it is "
                         "undefined")
    change = float(np.linalg.norm(intact - removed) / np.linalg.norm(intact))
    if is_constant(removed):
        return 1.0, change
    return 1.0 - cka(intact, removed, kernel=kernel, debiased=debiased,
                     threshold=threshold), change


def reliance_index(s_audio, s_visual):
    """``S_audio / (S_audio + S_visual)``, NaN where both are zero (elementwise)."""
    s_audio, s_visual = np.asarray(s_audio, dtype=float), np.asarray(s_visual, dtype=float)
    total = s_audio + s_visual
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total != 0, s_audio / np.where(total != 0, total, 1.0), np.nan)


def ablation_sensitivity(intact: xr.Dataset, ablated: xr.Dataset | None = None, *,
                         layers: Sequence[str] | None = None, state: str = "h",
                         intact_condition: str = CLEAN,
                         removed_conditions: Sequence[str] = REMOVED_CONDITIONS,
                         kernel: str = "linear", debiased: bool = False,
                         threshold: float = 1.0) -> xr.Dataset:
    """Sensitivity of every layer x time step to removing audio and to removing vision.

    ``intact``: an activation Dataset (``repsim.activations.open``) whose
    ``intact_condition`` rows are the intact states; ``ablated``: the Dataset holding the
    ``removed_conditions`` (audio removed, visual removed), by default the same one. Rows are
    matched by ``stimulus_id`` (ValueError if the id sets differ). Returns a Dataset with
    ``cka_sensitivity`` and ``relative_change`` over ``(removed, layer, time)`` and
    ``reliance_cka`` and ``reliance_change`` over ``(layer, time)`` (module docstring).
    """
    from repsim import activations

    ablated = intact if ablated is None else ablated
    if len(removed_conditions) != len(REMOVED):
        raise ValueError(f"removed_conditions needs the audio-removed and the visual-removed "
                         f"condition names, got {list(removed_conditions)}")
    layers = list(activations.layer_names(intact) if layers is None else layers)
    missing = [layer for layer in layers if layer not in activations.layer_names(ablated)]
    if missing:
        raise ValueError(f"layers {missing} are not in the ablated activations")
    steps = intact.sizes["time"]
    if ablated.sizes["time"] != steps:
        raise ValueError(f"the intact activations have {steps} time steps, the ablated "
                         f"{ablated.sizes['time']}")
    values = np.empty((2, len(REMOVED), len(layers), steps))
    for j, layer in enumerate(layers):
        for t in range(steps):
            h = activations.flatten(activations.select(intact, layer, state, time=t,
                                                       condition=intact_condition))
            for i, condition in enumerate(removed_conditions):
                h_removed = activations.flatten(activations.select(
                    ablated, layer, state, time=t, condition=condition))
                values[:, i, j, t] = modality_sensitivity(h, h_removed, kernel=kernel,
                                                          debiased=debiased,
                                                          threshold=threshold)
    dims = ("removed", "layer", "time")
    return xr.Dataset(
        {"cka_sensitivity": (dims, values[0]), "relative_change": (dims, values[1]),
         "reliance_cka": (dims[1:], reliance_index(values[0, 0], values[0, 1])),
         "reliance_change": (dims[1:], reliance_index(values[1, 0], values[1, 1]))},
        coords={"removed": list(REMOVED), "layer": layers, "time": np.arange(steps)},
        attrs={"kernel": kernel, "debiased": int(debiased), "state": state,
               "intact_condition": intact_condition,
               "removed_conditions": ",".join(removed_conditions)})
