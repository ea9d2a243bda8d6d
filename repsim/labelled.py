"""Analyses of a whole activation file: every layer x time step, labelled by the file.

``repsim.analysis`` takes arrays and knows nothing of the file format; the functions here
read the cells (layer x time step) of an activation Dataset
([repsim.activations.open][repsim.activations.reader.open]) one at a time, hand them to the
array analyses and tabulate the results as xarray Datasets. ``repsim.analysis.probe_all``
and ``repsim.analysis.ablation_sensitivity`` still find them;
[temporal_generalization_all][repsim.labelled.temporal_generalization_all] is the
time-resolved decoding of every layer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

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
    """Probe every layer x time step of an activation Dataset
    ([repsim.activations.open][repsim.activations.reader.open]) with
    [repsim.analysis.linear_probe][repsim.analysis.probes.linear_probe].

    Cells are read one at a time; the fits of all cells share the same labels and folds.

    Parameters
    ----------
    dataset
        The activation Dataset.
    target
        What to decode: the name of a stimulus coordinate (e.g. ``"audio_digit"``), or an
        array over the selected stimuli.
    condition
        Selects the stimuli; None: all rows of the file.
    layers
        The layers to probe, in order; None: every layer of the file.
    state
        The recorded state (``"h"``, ``"c"``).
    groups
        A stimulus coordinate's name (e.g. ``"speaker"``) or an array over the selected
        stimuli: no group spans training and test folds. None: stratified folds.
    folds, seed, Cs, inner_folds, tol, max_iter, device
        As for [repsim.analysis.linear_probe][repsim.analysis.probes.linear_probe].

    Returns
    -------
    xarray.Dataset
        Dims ``(layer, time)`` (and ``fold``; ``time`` as long as the longest layer's, NaN
        past a shorter layer's steps, which the coordinate ``steps`` gives per layer):
        ``accuracy``, ``ci_low``, ``ci_high``, ``chance``, ``unconverged`` (fits that stopped
        short of ``tol``), ``fold_accuracy`` and ``regularization`` (the C chosen per fold).

    Raises
    ------
    ValueError
        For no layers to probe, an unknown layer, state or condition, a ``target`` or
        ``groups`` name that is no stimulus coordinate, and as
        [repsim.analysis.linear_probe][repsim.analysis.probes.linear_probe].
    """
    layers = list(activations.layer_names(dataset) if layers is None else layers)
    if not layers:
        raise ValueError("the activation dataset has no layers to probe")
    first = activations.select(dataset, layers[0], state, condition=condition)
    steps = {layer: activations.time_steps(dataset, layer, state) for layer in layers}
    cells = _LazyCells(dataset, [(layer, t) for layer in layers for t in range(steps[layer])],
                       state, condition)
    results = probe_cells(cells, labels_of(target, first, "target"), folds=folds, seed=seed,
                          groups=None if groups is None else labels_of(groups, first, "groups"),
                          Cs=Cs, inner_folds=inner_folds, tol=tol, max_iter=max_iter,
                          device=device)
    longest = max(steps.values())
    found = dict(zip(cells.cells, results, strict=True))

    def grid(value, shape: tuple[int, ...] = ()) -> np.ndarray:
        """``value(result)`` on the (layer, time) grid; NaN where a layer has fewer steps."""
        values = np.full((len(layers), longest, *shape), np.nan)
        for (layer, t), result in found.items():
            values[layers.index(layer), t] = value(result)
        return values

    dims, fold_dims = ("layer", "time"), ("layer", "time", "fold")
    return xr.Dataset(
        {"accuracy": (dims, grid(lambda r: r.accuracy)),
         "ci_low": (dims, grid(lambda r: r.ci[0])),
         "ci_high": (dims, grid(lambda r: r.ci[1])),
         "chance": (dims, grid(lambda r: r.chance)),
         "unconverged": (dims, grid(lambda r: r.unconverged)),
         "fold_accuracy": (fold_dims, grid(lambda r: r.fold_accuracies, (folds,))),
         "regularization": (fold_dims, grid(lambda r: r.regularization, (folds,)))},
        coords={"layer": layers, "time": np.arange(longest), "fold": np.arange(folds),
                "steps": ("layer", [steps[layer] for layer in layers])},
        attrs={"target": target if isinstance(target, str) else "array",
               "condition": "all" if condition is None else condition, "state": state,
               "folds": folds, "inner_folds": inner_folds, "seed": seed, "Cs": list(Cs)})


class _LazyCells(Sequence):
    """``(layer, time)`` cells of an activation Dataset, each read (and flattened) on access."""

    def __init__(self, dataset, cells: list[tuple[str, int]], state, condition):
        self.dataset, self.cells, self.state, self.condition = dataset, cells, state, condition

    def __len__(self) -> int:
        return len(self.cells)

    # Cells are read one at a time, never sliced: no slice overload.
    def __getitem__(self, index: int) -> xr.DataArray:  # type: ignore[override]
        layer, time = self.cells[index]
        return activations.select(self.dataset, layer, self.state, time=time,
                                  condition=self.condition)


def ablation_sensitivity(intact: xr.Dataset, ablated: xr.Dataset | None = None, *,
                         layers: Sequence[str] | None = None, state: str = "h",
                         intact_condition: str = CLEAN,
                         removed_conditions: Sequence[str] | Mapping[str, str]
                         = REMOVED_CONDITIONS,
                         kernel: str = "linear", debiased: bool = False,
                         threshold: float = 1.0) -> xr.Dataset:
    """Sensitivity of every layer x time step to removing each input (the definitions are
    [repsim.analysis.modality_sensitivity][repsim.analysis.ablation.modality_sensitivity]'s
    and [repsim.analysis.reliance_index][repsim.analysis.ablation.reliance_index]'s).

    Rows are matched by ``stimulus_id``. Layers may differ in their steps (``time`` is the
    longest; NaN past a shorter layer's).

    Parameters
    ----------
    intact
        An activation Dataset ([repsim.activations.open][repsim.activations.reader.open])
        whose ``intact_condition`` rows are the intact states.
    ablated
        The Dataset holding the removal conditions; None: the same one as ``intact``.
    layers
        The layers, in order; None: every layer of ``intact``.
    state
        The recorded state (``"h"``, ``"c"``).
    intact_condition
        The condition of the intact states.
    removed_conditions
        ``{input: condition}`` for any number of inputs (e.g. ``{"audio": "mute_a"}``), or two
        condition names, read as the audio-removed and the visual-removed condition (repsim's
        ``audio_removed`` and ``visual_removed`` by default).
    kernel, debiased, threshold
        The CKA options (as for [cka][repsim.analysis.cka.cka]).

    Returns
    -------
    xarray.Dataset
        ``cka_sensitivity``, ``relative_change`` and ``share_cka`` / ``share_change`` (each
        input's sensitivity over the sum of all inputs') over ``(removed, layer, time)``, and
        with two inputs the reliance index of the first, ``reliance_cka`` and
        ``reliance_change`` over ``(layer, time)``.

    Raises
    ------
    ValueError
        For ``removed_conditions`` that name no removal or are neither a mapping nor two
        names, a layer the ablated activations lack, a layer with different numbers of steps
        in the two, stimulus id sets that differ, intact states constant across stimuli (no
        CKA), or an unknown layer, state or condition.
    """
    ablated = intact if ablated is None else ablated
    if isinstance(removed_conditions, Mapping):
        removals = {str(name): str(condition) for name, condition in removed_conditions.items()}
    elif len(removed_conditions) == len(MODALITIES):
        removals = dict(zip(MODALITIES, removed_conditions, strict=True))
    else:
        raise ValueError(f"removed_conditions is {{input: condition}} or the audio-removed and "
                         f"the visual-removed condition names, got {list(removed_conditions)}")
    if not removals:
        raise ValueError("removed_conditions names no removal")
    layers = list(activations.layer_names(intact) if layers is None else layers)
    missing = [layer for layer in layers if layer not in activations.layer_names(ablated)]
    if missing:
        raise ValueError(f"layers {missing} are not in the ablated activations")
    steps = {layer: activations.time_steps(intact, layer, state) for layer in layers}
    for layer in layers:
        if activations.time_steps(ablated, layer, state) != steps[layer]:
            raise ValueError(f"layer {layer!r} has {steps[layer]} time steps in the intact "
                             f"activations, {activations.time_steps(ablated, layer, state)} "
                             f"in the ablated")
    values = np.full((2, len(removals), len(layers), max(steps.values())), np.nan)
    for j, layer in enumerate(layers):  # every step of a layer in one read per condition
        whole = activations.select(intact, layer, state, condition=intact_condition).load()
        removed = [activations.select(ablated, layer, state, condition=condition).load()
                   for condition in removals.values()]
        for t in range(steps[layer]):
            h = activations.flatten(whole.isel(time=t))
            for i, states in enumerate(removed):
                values[:, i, j, t] = modality_sensitivity(
                    h, activations.flatten(states.isel(time=t)), kernel=kernel,
                    debiased=debiased, threshold=threshold)
    dims = ("removed", "layer", "time")
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = values / values.sum(axis=1, keepdims=True)
    variables: dict[str, tuple[tuple[str, ...], np.ndarray]] = {
        "cka_sensitivity": (dims, values[0]), "relative_change": (dims, values[1]),
                 "share_cka": (dims, shares[0]), "share_change": (dims, shares[1])}
    if len(removals) == 2:
        variables |= {"reliance_cka": (dims[1:], reliance_index(values[0, 0], values[0, 1])),
                      "reliance_change": (dims[1:], reliance_index(values[1, 0],
                                                                   values[1, 1]))}
    return xr.Dataset(
        variables,
        coords={"removed": list(removals), "layer": layers,
                "time": np.arange(values.shape[-1]),
                "steps": ("layer", [steps[layer] for layer in layers])},
        attrs={"kernel": kernel, "debiased": int(debiased), "state": state,
               "intact_condition": intact_condition,
               "removed_conditions": ",".join(removals.values())})


def temporal_generalization_all(dataset: xr.Dataset, targets: str | Sequence[str], *,
                                layers: Sequence[str] | None = None, condition: str = CLEAN,
                                state: str = "h", groups: str | None = None, folds: int = 5,
                                seed: int = 0, C: float = 1.0, n_permutations: int = 0,
                                alpha: float = 0.05, tol: float = 1e-4, max_iter: int = 1000,
                                device: str | torch.device | None = None,
                                progress: Callable[[], None] | None = None) -> xr.Dataset:
    """Temporal generalization of every layer of an activation Dataset for each of
    ``targets``, on the ``condition`` stimuli
    ([repsim.analysis.temporal_generalization][repsim.analysis.temporal.temporal_generalization]).
    The layers are read a group at a time (up to ``repsim.analysis.temporal.SOLVE_BYTES`` of
    float64 states), and every fit of a group's layers and targets goes to the solver in one
    call: the same accuracies as one call per layer and target, in fewer passes.

    Parameters
    ----------
    dataset
        The activation Dataset ([repsim.activations.open][repsim.activations.reader.open]).
    targets
        Stimulus coordinates to decode, e.g. ``"audio_digit"``: one name or several.
    layers
        The layers, in order; None: every layer of the file.
    condition
        Selects the stimuli.
    state
        The recorded state (``"h"``, ``"c"``).
    groups
        A stimulus coordinate (e.g. ``"speaker"``) whose values never span training and test
        folds; None: stratified folds.
    folds, seed, C, n_permutations, tol, max_iter, device
        As for
        [repsim.analysis.temporal_generalization][repsim.analysis.temporal.temporal_generalization].
    alpha
        The level of the onset test
        ([repsim.analysis.decoding_onset][repsim.analysis.temporal.decoding_onset] within the
        file), with ``n_permutations``.
    progress
        Called after each layer and target.

    Returns
    -------
    xarray.Dataset
        ``accuracy`` ``(layer, target, train_time, test_time)`` (NaN past a layer's own
        steps, which ``steps`` gives), ``chance``, ``stability`` and, with
        ``n_permutations``, ``onset`` (the first step of the first significant cluster, NaN
        if none: [repsim.analysis.decoding_onset][repsim.analysis.temporal.decoding_onset]
        within the file) and ``onset_p`` (that cluster's p, or the smallest cluster p when
        none is significant; NaN without clusters), all ``(layer, target)``.

    Raises
    ------
    ValueError
        For no layer or no target, an unknown layer, state or condition, and as
        [repsim.analysis.temporal_generalization][repsim.analysis.temporal.temporal_generalization]
        and [repsim.analysis.decoding_onset][repsim.analysis.temporal.decoding_onset].
    """
    from repsim.analysis.temporal import (
        SOLVE_BYTES,
        _chunks,
        _generalizations,
        decoding_onset,
    )

    targets = [targets] if isinstance(targets, str) else list(targets)
    layers = list(activations.layer_names(dataset) if layers is None else layers)
    if not layers or not targets:
        raise ValueError("temporal generalization needs at least one layer and one target")
    steps = {layer: activations.time_steps(dataset, layer, state) for layer in layers}
    longest = max(steps.values())
    shape = (len(layers), len(targets))
    accuracy = np.full((*shape, longest, longest), np.nan)
    chance, stability, onset, onset_p = (np.full(shape, np.nan) for _ in range(4))
    sizes = [8 * activations.select(dataset, layer, state, condition=condition).size
             for layer in layers]  # float64 bytes: one joint solve reads a group's layers
    for group in _chunks(list(enumerate(layers)), sizes, SOLVE_BYTES):
        states = {}  # each layer read once, used for every target
        for i, layer in group:
            selected = activations.select(dataset, layer, state, condition=condition)
            states[i] = selected.copy(data=np.asarray(selected.values))
        cells = [(i, j) for i, _ in group for j in range(len(targets))]
        results = _generalizations(
            [(states[i], targets[j]) for i, j in cells], folds=folds, seed=seed,
            groups=groups, C=C, n_permutations=n_permutations, tol=tol, max_iter=max_iter,
            device=device, stacklevel=3)
        for (i, j), result in zip(cells, results, strict=True):
            count = steps[layers[i]]
            accuracy[i, j, :count, :count] = result.scores
            chance[i, j], stability[i, j] = result.chance, result.stability
            if n_permutations:
                found = decoding_onset(result=result, alpha=alpha)
                onset[i, j] = np.nan if found.onset is None else found.onset
                significant = found.p_values[found.p_values < alpha]
                p = significant[0] if len(significant) else (
                    found.p_values.min() if len(found.p_values) else np.nan)
                onset_p[i, j] = p
            if progress is not None:
                progress()
    cell, grid = ("layer", "target"), ("layer", "target", "train_time", "test_time")
    variables = {"accuracy": (grid, accuracy), "chance": (cell, chance),
                 "stability": (cell, stability)}
    if n_permutations:
        variables |= {"onset": (cell, onset), "onset_p": (cell, onset_p)}
    return xr.Dataset(
        variables,
        coords={"layer": layers, "target": targets, "train_time": np.arange(longest),
                "test_time": np.arange(longest),
                "steps": ("layer", [steps[layer] for layer in layers])},
        attrs={"condition": condition, "state": state, "folds": folds, "seed": seed, "C": C,
               "n_permutations": n_permutations, "alpha": alpha})

