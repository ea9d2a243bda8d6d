"""Analyses of a whole activation file: every layer x time step, labelled by the file.

:mod:`repsim.analysis` takes arrays and knows nothing of the file format; the functions here
read the cells (layer x time step) of an activation Dataset (:func:`repsim.activations.open`)
one at a time, hand them to the array analyses and tabulate the results as xarray Datasets.
``repsim.analysis.probe_all`` and ``repsim.analysis.ablation_sensitivity`` still find them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import xarray as xr
from numpy.typing import ArrayLike

from repsim import activations
from repsim.analysis._arrays import labels_of
from repsim.analysis.ablation import modality_sensitivity, reliance_index
from repsim.analysis.probes import DEFAULT_CS, probe_cells
from repsim.conditions import CLEAN, MODALITIES, removed_condition

REMOVED_CONDITIONS = tuple(removed_condition(modality) for modality in MODALITIES)


def probe_all(dataset: xr.Dataset, target: ArrayLike | str = "audio_digit", *,
              condition: str | None = CLEAN, layers: Sequence[str] | None = None,
              state: str = "h", groups: ArrayLike | str | None = None,
              folds: int = 5, seed: int = 0, Cs: Sequence[float] = DEFAULT_CS,
              inner_folds: int = 3, tol: float = 1e-4, max_iter: int = 1000,
              device: str | torch.device | None = None) -> xr.Dataset:
    """Probe every layer x time step of an activation Dataset (``repsim.activations.open``).

    ``target`` and ``groups`` name stimulus coordinates (e.g. ``"audio_digit"``,
    ``groups="speaker"``) or are arrays over the selected stimuli; ``condition`` selects the
    stimuli (None: all rows of the file). Cells are read one at a time. Returns a Dataset
    with dims ``(layer, time)`` (and ``fold``): ``accuracy``, ``ci_low``, ``ci_high``,
    ``chance``, ``unconverged`` (fits that stopped short of ``tol``), ``fold_accuracy`` and
    ``regularization`` (the C chosen per fold).
    """
    layers = list(activations.layer_names(dataset) if layers is None else layers)
    if not layers:
        raise ValueError("the activation dataset has no layers to probe")
    first = activations.select(dataset, layers[0], state, condition=condition)
    steps = first.sizes["time"]
    cells = _LazyCells(dataset, layers, state, condition, steps)
    results = probe_cells(cells, labels_of(target, first, "target"), folds=folds, seed=seed,
                          groups=None if groups is None else labels_of(groups, first, "groups"),
                          Cs=Cs, inner_folds=inner_folds, tol=tol, max_iter=max_iter,
                          device=device)
    shape = (len(layers), steps)

    def grid(values) -> np.ndarray:
        return np.asarray(values).reshape(shape + np.shape(values[0]))

    dims, fold_dims = ("layer", "time"), ("layer", "time", "fold")
    return xr.Dataset(
        {"accuracy": (dims, grid([r.accuracy for r in results])),
         "ci_low": (dims, grid([r.ci[0] for r in results])),
         "ci_high": (dims, grid([r.ci[1] for r in results])),
         "chance": (dims, grid([r.chance for r in results])),
         "unconverged": (dims, grid([r.unconverged for r in results])),
         "fold_accuracy": (fold_dims, grid([r.fold_accuracies for r in results])),
         "regularization": (fold_dims, grid([r.regularization for r in results]))},
        coords={"layer": layers, "time": np.arange(steps), "fold": np.arange(folds)},
        attrs={"target": target if isinstance(target, str) else "array",
               "condition": "all" if condition is None else condition, "state": state,
               "folds": folds, "inner_folds": inner_folds, "seed": seed, "Cs": list(Cs)})


class _LazyCells(Sequence):
    """Layer x time cells of an activation Dataset, each read (and flattened) on access."""

    def __init__(self, dataset, layers, state, condition, steps):
        self.dataset, self.layers, self.state = dataset, layers, state
        self.condition, self.steps = condition, steps

    def __len__(self) -> int:
        return len(self.layers) * self.steps

    # Cells are read one at a time, never sliced: no slice overload.
    def __getitem__(self, index: int) -> xr.DataArray:  # type: ignore[override]
        layer, time = self.layers[index // self.steps], index % self.steps
        return activations.select(self.dataset, layer, self.state, time=time,
                                  condition=self.condition)


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
    ablated = intact if ablated is None else ablated
    if len(removed_conditions) != len(MODALITIES):
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
    values = np.empty((2, len(MODALITIES), len(layers), steps))
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
        coords={"removed": list(MODALITIES), "layer": layers, "time": np.arange(steps)},
        attrs={"kernel": kernel, "debiased": int(debiased), "state": state,
               "intact_condition": intact_condition,
               "removed_conditions": ",".join(removed_conditions)})
