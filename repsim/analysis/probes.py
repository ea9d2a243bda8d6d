"""Linear probes: cross-validated multinomial logistic regression with nested selection of C.

The model is scikit-learn's ``LogisticRegression(C=C)`` (multinomial, L2 on the weights, the
intercepts unpenalized): minimize ``C * sum_i CE_i + ||W||^2 / 2`` over the training rows,
``CE_i`` the softmax cross-entropy. Features are standardized with the mean and standard
deviation of the training rows of each fit (features constant there get scale 1, as
StandardScaler does), so no statistic of a held-out row reaches a model.

Protocol of [linear_probe][repsim.analysis.probes.linear_probe]: stratified K-fold
(``groups``: stratified group K-fold, so that no group is in training and test at once),
shuffled with ``seed``. In each outer training set, ``inner_folds``-fold cross-validation
(same splitter, same seed) picks C from ``Cs`` by mean inner validation accuracy (ties go to
the smaller C, i.e. the stronger regularization, as scikit-learn's grid search does with an
ascending grid); a model refit on the whole outer training set with that C predicts the outer
test fold. ``accuracy`` pools the out-of-fold predictions of all stimuli.

Every fit of one representation (outer folds x (inner folds + 1) x Cs, here 120 by default)
is solved in one batch by ``repsim.analysis.probe_solver``, to the gradient tolerance
``tol`` on the objective above divided by ``C`` x the training rows (scikit-learn's scaling):
in kernel form (exact in the stimulus space) when a fit has more than
``probe_solver.KERNEL_RATIO`` features per training row, in primal form otherwise. Fits
that stop short of ``tol`` are counted in ``ProbeResult.unconverged`` and reported in one
RuntimeWarning per call.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import ArrayLike
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from repsim.analysis import probe_solver
from repsim.analysis._arrays import (
    as_matrix,
    labels_of,
    n_stimuli,
    single_threaded_torch,
    stimulus_positions,
    take_rows,
)
from repsim.analysis.choices import DEFAULT_CS

CONFIDENCE_Z = 1.959963984540054  # two-sided 95 % normal quantile, for the Wilson interval


@dataclass(frozen=True)
class ProbeResult:
    """Cross-validated accuracy of a linear probe.

    Parameters
    ----------
    accuracy
        The fraction of stimuli whose out-of-fold prediction is right.
    ci
        Its 95 % Wilson score interval (stimuli treated as independent trials).
    chance
        The accuracy of always answering the most frequent class.
    fold_accuracies
        The accuracy on each outer test fold.
    regularization
        The C chosen by nested validation for each outer fold.
    predictions
        The out-of-fold predicted label of every stimulus.
    classes
        The label values.
    unconverged
        How many of its fits stopped short of the gradient tolerance (0 when every fit reached
        the optimum).
    """

    accuracy: float
    ci: tuple[float, float]
    chance: float
    fold_accuracies: np.ndarray
    regularization: np.ndarray
    predictions: np.ndarray
    classes: np.ndarray
    unconverged: int


def linear_probe(X: ArrayLike, y: ArrayLike | str, folds: int = 5, seed: int = 0,
                 groups: ArrayLike | str | None = None, *,
                 Cs: Sequence[float] = DEFAULT_CS, inner_folds: int = 3, tol: float = 1e-4,
                 max_iter: int = 1000, device: str | torch.device | None = None
                 ) -> ProbeResult:
    """Decode the labels ``y`` from ``X`` with a cross-validated linear probe (the protocol is in
    the module docstring).

    Parameters
    ----------
    X
        Patterns ``(n, ...)``, stimuli on axis 0 (other axes flattened): NumPy, torch or xarray.
    y
        One label per stimulus, or the name of a stimulus coordinate of a DataArray ``X``
        (e.g. ``"audio_digit"``).
    folds
        The outer cross-validation folds (at least 2).
    seed
        Shuffles the folds (outer and inner).
    groups
        One group per stimulus (or a coordinate's name), e.g. the speaker: stratified group
        K-fold keeps each group on one side of every split. ``None``: stratified K-fold.
    Cs
        The inverse regularization strengths to choose from; a single C skips the nested
        selection.
    inner_folds
        The folds of the nested selection of C.
    tol
        The gradient tolerance of every fit (scikit-learn's scaling).
    max_iter
        The most iterations of a fit.
    device
        Where to solve (e.g. ``"cuda"``); ``None`` is the CPU.

    Returns
    -------
    ProbeResult
        Accuracy, its interval, chance, per-fold accuracies, the chosen C per fold and the
        out-of-fold predictions.

    Raises
    ------
    ValueError
        For labels of the wrong length, NaN labels, a single class, a class or group count too
        small for the folds, every feature constant, or options out of range.

    Warns
    -----
    RuntimeWarning
        Once per call when any fit stopped short of ``tol``.

    Examples
    --------
    Which digit did a layer hear? Decode it from the last time step, folds split by speaker:

    ```python
    from repsim import activations
    from repsim.analysis import linear_probe

    ds = activations.open("runs/synthetic-f1-s0/activations.h5")
    states = activations.select(ds, "fused.2", time=-1, condition="incongruent")
    result = linear_probe(states, "audio_digit", groups="speaker")
    result.accuracy, result.ci, result.chance
    ```
    """
    return probe_cells([X], y, folds=folds, seed=seed, groups=groups, Cs=Cs,
                       inner_folds=inner_folds, tol=tol, max_iter=max_iter, device=device)[0]


def probe_cells(cells: Sequence[ArrayLike], y: ArrayLike | str, folds: int = 5, seed: int = 0,
                groups: ArrayLike | str | None = None, *,
                Cs: Sequence[float] = DEFAULT_CS, inner_folds: int = 3, tol: float = 1e-4,
                max_iter: int = 1000, device: str | torch.device | None = None
                ) -> list[ProbeResult]:
    """[linear_probe][repsim.analysis.probes.linear_probe] for several representations of the same
    stimuli (e.g. every layer x time step), with the same labels and folds.

    Stimuli are matched to the first representation by ``stimulus_id`` when all carry it, and
    ``y``/``groups`` follow the first representation's order. Every cell has the same folds
    and Cs; its fits are one batched solve, one cell at a time (a cell is read only when its
    turn comes, so that cells of a large file need not fit in memory together).

    Parameters
    ----------
    cells
        The representations ``(n, ...)`` of the same stimuli.
    y, folds, seed, groups, Cs, inner_folds, tol, max_iter, device
        As for [linear_probe][repsim.analysis.probes.linear_probe].

    Returns
    -------
    list of ProbeResult
        One per cell, in order.

    Raises
    ------
    ValueError
        For no cells, and as [linear_probe][repsim.analysis.probes.linear_probe].
    """
    cells = list(cells)
    if not cells:
        raise ValueError("probe_cells got no representations")
    names = [f"cells[{i}]" for i in range(len(cells))]
    positions = stimulus_positions(cells, names)
    codes, classes = _encode(labels_of(y, cells[0], "y"), n_stimuli(cells[0]))
    group_labels = None if groups is None else labels_of(groups, cells[0], "groups")
    Cs = _check_settings(Cs, folds, inner_folds, tol, max_iter)
    plan = _Plan.build(codes, group_labels, folds, inner_folds, Cs, seed)
    device = torch.device("cpu" if device is None else device)
    results = []
    for cell, rows, name in zip(cells, positions, names, strict=True):
        features = _standardized(as_matrix(take_rows(cell, rows), name))
        with single_threaded_torch(device):
            solution = probe_solver.solve(
                features, codes, len(classes), plan.sets, plan.set_of, plan.C,
                plan.parent[plan.set_of], tol=tol, max_iter=max_iter, device=device)
        results.append(plan.result(solution, codes, classes))
    unconverged = sum(r.unconverged for r in results)
    if unconverged:
        warnings.warn(f"{unconverged} of {len(results) * len(plan.C)} logistic fits stopped "
                      f"short of the gradient tolerance {tol} (max_iter={max_iter} reached, or "
                      f"no further decrease): see ProbeResult.unconverged",
                      RuntimeWarning, stacklevel=2)
    return results


def transfer_probe(X: ArrayLike, X_shifted: ArrayLike, y: ArrayLike, folds: int = 5,
                   seed: int = 0, *, C: float = 1.0, tol: float = 1e-4, max_iter: int = 1000,
                   device: str | torch.device | None = None) -> ProbeResult:
    """What survives a shift of the inputs: a probe trained on ``X`` and tested on ``X_shifted``,
    the same stimuli under another condition (e.g. clean and audio-noisy).

    Stratified K-fold over the stimuli as in [linear_probe][repsim.analysis.probes.linear_probe]
    (one ``C``, no nested selection): each fold's model is fitted on the ``X`` rows outside the
    fold, standardized with their statistics, and predicts the ``X_shifted`` rows of the fold, so
    that no stimulus is both trained on and tested on.

    Parameters
    ----------
    X
        The training condition's patterns ``(n, ...)``.
    X_shifted
        The same stimuli under the other condition, of the same shape; matched to ``X``'s rows by
        ``stimulus_id`` when both carry it, else taken in the same order.
    y
        One label per stimulus, in ``X``'s order.
    folds
        The cross-validation folds.
    seed
        Shuffles the folds.
    C
        The inverse regularization strength of every fit.
    tol, max_iter, device
        As for [linear_probe][repsim.analysis.probes.linear_probe].

    Returns
    -------
    ProbeResult
        ``accuracy`` pools the predictions of every shifted stimulus.

    Raises
    ------
    ValueError
        For inputs of different shapes, every feature constant, and as
        [linear_probe][repsim.analysis.probes.linear_probe].
    """
    positions = stimulus_positions([X, X_shifted], ["X", "X_shifted"])
    clean = as_matrix(take_rows(X, positions[0]), "X")
    shifted = as_matrix(take_rows(X_shifted, positions[1]), "X_shifted")
    if clean.shape != shifted.shape:
        raise ValueError(f"X {clean.shape} and X_shifted {shifted.shape} must be the same "
                         f"stimuli with the same features")
    codes, classes = _encode(labels_of(y, X, "y"), clean.shape[0])
    Cs = _check_settings([C], folds, 2, tol, max_iter)
    plan = _Plan.build(codes, None, folds, 2, Cs, seed)
    n = codes.size
    # Both conditions in one matrix, z-scored with the clean rows' statistics (an affine map
    # each fit's own standardization undoes): every fit trains on clean rows and predicts
    # every row, and fold f's model (fit f: one C, no inner folds) scores its shifted rows.
    scale = clean.std(0)
    keep = scale > 0
    if not keep.any():
        raise ValueError("every feature of X is constant across stimuli: nothing to decode")
    features = (np.concatenate([clean, shifted])[:, keep] - clean[:, keep].mean(0)) / scale[keep]
    device = torch.device("cpu" if device is None else device)
    with single_threaded_torch(device):
        solution = probe_solver.solve(features, np.concatenate([codes, codes]), len(classes),
                                      plan.sets, plan.set_of, plan.C, plan.parent[plan.set_of],
                                      tol=tol, max_iter=max_iter, device=device)
    predictions = np.empty(n, dtype=np.int64)
    fold_accuracies = []
    for fold, (_, test) in enumerate(plan.outer):
        predictions[test] = solution.predictions[n + test, fold]
        fold_accuracies.append(np.mean(predictions[test] == codes[test]))
    if solution.unconverged:
        warnings.warn(f"{solution.unconverged} of {len(plan.C)} logistic fits stopped short "
                      f"of the gradient tolerance {tol}", RuntimeWarning, stacklevel=2)
    correct = int((predictions == codes).sum())
    return ProbeResult(correct / n, wilson_interval(correct, n),
                       float(np.bincount(codes).max() / n),
                       np.array(fold_accuracies), np.array([C] * len(plan.outer)),
                       classes[predictions], classes, solution.unconverged)


# --------------------------------------------------------------------------- protocol


def _encode(labels: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    if labels.shape[0] != count:
        raise ValueError(f"y has {labels.shape[0]} labels for {count} stimuli")
    missing = int(np.count_nonzero(labels != labels))  # NaN is the one value unequal to itself
    if missing:
        raise ValueError(f"y: the labels contain {missing} NaN values; drop those stimuli or "
                         f"give them a label")
    classes, codes = np.unique(labels, return_inverse=True)
    if classes.size < 2:
        raise ValueError(f"y has a single class ({classes[0]!r}); a probe needs at least two")
    return codes.astype(np.int64), classes


def _check_settings(Cs, folds, inner_folds, tol, max_iter) -> tuple[float, ...]:
    Cs = tuple(sorted(float(c) for c in np.atleast_1d(Cs)))
    if not Cs or not all(np.isfinite(c) and c > 0 for c in Cs):
        raise ValueError(f"Cs must be positive numbers, got {Cs}")
    if folds < 2 or (len(Cs) > 1 and inner_folds < 2):
        raise ValueError(f"folds and inner_folds must be at least 2, got {folds} and "
                         f"{inner_folds}")
    if not tol > 0 or max_iter < 1:
        raise ValueError(f"tol must be positive and max_iter at least 1, got {tol}, {max_iter}")
    return Cs


def _splits(codes: np.ndarray, groups: np.ndarray | None, n_splits: int, seed: int,
            where: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified (group) K-fold splits of the given rows, shuffled with ``seed``."""
    if groups is None:
        counts = np.bincount(codes)
        smallest = int(counts[counts > 0].min())
        if smallest < n_splits:
            raise ValueError(f"{where}: the rarest class has {smallest} stimuli, fewer than "
                             f"the {n_splits} folds; use fewer folds")
        splitter = StratifiedKFold(n_splits, shuffle=True, random_state=seed)
        return list(splitter.split(codes, codes))
    distinct = np.unique(groups).size
    if distinct < n_splits:
        raise ValueError(f"{where}: {distinct} groups cannot fill {n_splits} folds")
    splitter = StratifiedGroupKFold(n_splits, shuffle=True, random_state=seed)
    with warnings.catch_warnings():  # "least populated class" warnings: groups decide
        warnings.simplefilter("ignore", UserWarning)
        return list(splitter.split(codes, codes, groups))


@dataclass
class _Plan:
    """Every fit of one representation: its training set, C, and the rows it is scored on.

    Problems are ordered by outer fold: the Cs refit on the outer training set first, then
    the Cs of each inner fold. ``sets`` holds each distinct training set once; ``parent``
    gives, for each set, the index of its fold's outer training set.
    """

    sets: list[np.ndarray]
    set_of: np.ndarray
    parent: np.ndarray
    evaluate: list[np.ndarray]
    C: np.ndarray
    outer: list[tuple[np.ndarray, np.ndarray]]
    Cs: tuple[float, ...]
    inner_folds: int

    @classmethod
    def build(cls, codes, groups, folds, inner_folds, Cs, seed) -> _Plan:
        outer = _splits(codes, groups, folds, seed, "outer folds")
        sets, set_of, parent, evaluate, C = [], [], [], [], []

        def add(train: np.ndarray, scored: np.ndarray, outer_set: int) -> None:
            sets.append(train)
            parent.append(outer_set)
            for c in Cs:
                set_of.append(len(sets) - 1)
                evaluate.append(scored)
                C.append(c)

        for fold, (outer_train, outer_test) in enumerate(outer):
            outer_set = len(sets)
            add(outer_train, outer_test, outer_set)
            if len(Cs) == 1:
                continue
            inner = _splits(codes[outer_train], None if groups is None else groups[outer_train],
                            inner_folds, seed, f"inner folds of outer fold {fold}")
            for inner_train, inner_test in inner:
                add(outer_train[inner_train], outer_train[inner_test], outer_set)
        return cls(sets, np.array(set_of), np.array(parent), evaluate, np.array(C), outer,
                   Cs, inner_folds)

    def result(self, solution: probe_solver.Solution, codes: np.ndarray, classes: np.ndarray
               ) -> ProbeResult:
        """Choose C per outer fold from the inner scores; pool the chosen refits' predictions
        (``solution.predictions``: (n, problems), the predicted code of every row under every
        fit)."""
        predictions = solution.predictions
        n_cs = len(self.Cs)
        per_fold = n_cs * (1 + (self.inner_folds if n_cs > 1 else 0))
        out_of_fold = np.empty_like(codes)
        fold_accuracies, chosen = [], []
        for fold, (_, test) in enumerate(self.outer):
            base = fold * per_fold
            if n_cs > 1:
                scores = np.zeros(n_cs)
                for q in range(base + n_cs, base + per_fold):
                    rows = self.evaluate[q]
                    scores[(q - base) % n_cs] += np.mean(predictions[rows, q] == codes[rows])
                best = int(np.argmax(scores))  # first maximum: the smallest such C
            else:
                best = 0
            out_of_fold[test] = predictions[test, base + best]
            fold_accuracies.append(np.mean(out_of_fold[test] == codes[test]))
            chosen.append(self.Cs[best])
        correct = int((out_of_fold == codes).sum())
        accuracy = correct / codes.size
        chance = np.bincount(codes).max() / codes.size
        return ProbeResult(accuracy, wilson_interval(correct, codes.size), float(chance),
                           np.array(fold_accuracies), np.array(chosen),
                           classes[out_of_fold], classes, solution.unconverged)


def wilson_interval(successes: int, trials: int) -> tuple[float, float]:
    """The 95 % Wilson score interval of a binomial proportion.

    Parameters
    ----------
    successes
        The count of successes.
    trials
        The count of trials.

    Returns
    -------
    tuple of float
        ``(low, high)``.
    """
    z2 = CONFIDENCE_Z ** 2
    p = successes / trials
    centre = (p + z2 / (2 * trials)) / (1 + z2 / trials)
    half = CONFIDENCE_Z * np.sqrt(p * (1 - p) / trials + z2 / (4 * trials ** 2)) \
        / (1 + z2 / trials)
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def _standardized(x: np.ndarray) -> np.ndarray:
    """Global z-scores with constant features dropped.

    Each fit re-standardizes with its own training rows, which undoes this affine map
    exactly; it only keeps the solver's float32 products well scaled. Features constant over
    all stimuli carry no information and would get zero weight in every fit.
    """
    scale = x.std(0)
    keep = scale > 0
    if not keep.any():
        raise ValueError("every feature is constant across stimuli: nothing to decode")
    return (x[:, keep] - x[:, keep].mean(0)) / scale[keep]
