"""Helpers that walk activation files (``repsim.activations``) and feed the array analyses.

The rest of :mod:`repsim.analysis` takes arrays; the functions here read the cells
(layer x time step) of an activation Dataset one at a time and tabulate the results.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import xarray as xr

from repsim.analysis._arrays import labels_of
from repsim.analysis.probes import DEFAULT_CS, probe_cells


def probe_all(dataset: xr.Dataset, target="audio_digit", *, condition: str | None = "clean",
              layers: Sequence[str] | None = None, state: str = "h", groups=None,
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
    from repsim import activations

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

    def __getitem__(self, index: int):
        from repsim import activations

        layer, time = self.layers[index // self.steps], index % self.steps
        return activations.select(self.dataset, layer, self.state, time=time,
                                  condition=self.condition)
