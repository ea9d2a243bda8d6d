"""Time-resolved analyses: when information appears in a representation, whether its code
holds over time, and how its geometry changes from step to step.

Inputs are ``(stimulus, time, <features>)``: NumPy, torch, or a DataArray with ``stimulus``
and ``time`` dims (a layer of an activation file,
[repsim.activations.select][repsim.activations.reader.select]).

- [temporal_generalization][repsim.analysis.temporal.temporal_generalization] (King &
  Dehaene 2014): a decoder trained on the states at step ``t`` is tested on the held-out
  stimuli's states at every step ``t'``, giving a ``(train_time, test_time)`` matrix of
  cross-validated accuracies, the mean over folds as MNE-Python's ``GeneralizingEstimator``
  with ``cross_val_multiscore`` gives it. Its diagonal is the sliding decoder (MNE's
  ``SlidingEstimator``). The decoder is the probes' regularised multinomial logistic
  regression on features standardized with the training rows' mean and scale
  (``repsim.analysis.probes``, as [linear_probe][repsim.analysis.probes.linear_probe]), one
  ``C``, on stratified folds (stratified group folds with ``groups``, so that a speaker or a
  pair never spans training and test); the fits of every fold at every training step are
  solved as one batch (and those of every layer and target, in
  [temporal_generalization_all][repsim.labelled.temporal_generalization_all]). A
  scikit-learn ``estimator`` may be given instead (then each fit is that estimator's, as MNE
  does it). A code that holds over time gives a square of high scores;
  one that changes gives a diagonal band; one that reverses gives below-chance scores off the
  diagonal. ``stability`` sums that up:
  ``(mean off-diagonal - chance) / (mean diagonal - chance)``, 1 for a code that is the same
  at every step, 0 for one that no other step's decoder reads (chance-corrected, so that a
  time-specific code does not score ``chance / diagonal``); it means something only where
  the diagonal is clearly above chance (an onset), since it divides by the diagonal's excess.
- [decoding_onset][repsim.analysis.temporal.decoding_onset]: the first step at which
  decoding exceeds chance, from a cluster-based permutation test over time (Maris &
  Oostenveld 2007), which controls the chance of any false cluster at ``alpha`` over all
  steps. Two forms:

  * over seeds (``scores``: one accuracy time course per trained network, and ``chance``):
    a one-sample t statistic of ``scores - chance`` at each step, clusters of consecutive
    steps whose t exceeds the one-sided ``alpha`` critical value (or ``threshold``), each
    cluster's mass the sum of its t values; the null distribution is the largest cluster
    mass under sign flips of whole time courses (all ``2^n`` when ``n_permutations`` allows,
    else random distinct ones; the observed mass always counted), as MNE-Python's
    ``permutation_cluster_1samp_test(..., tail=1)`` computes it;
  * within one file (``result``, a
    [temporal_generalization][repsim.analysis.temporal.temporal_generalization] computed with
    ``n_permutations``): the labels are permuted among the stimuli of each fold (so every
    fold keeps its class counts and the stratified folds stay valid), the sliding decoders
    are refitted on the permuted labels at every step (one permutation for all steps, so the
    time course keeps its correlation), and the statistic is the accuracy minus the
    permutations' mean; a step enters a cluster when it exceeds their ``1 - alpha`` quantile
    there (the observed time course counted among them in both, so that no labelling is
    favoured). Refitting is what makes the test exact: holding the out-of-fold
    predictions fixed and permuting only the test labels ignores that one fold's labels
    also trained the others' decoders, and let 10 % of pure-noise recordings through at
    ``alpha = 0.05`` (measured on 300 of them).

  A cluster's p is the fraction of the null (observed included) at least as large as its
  mass; the onset is the first step of the first cluster with p < ``alpha``, None if none.
- [rdm_movie][repsim.analysis.temporal.rdm_movie]: an RDM per time step (rsatoolbox's
  ``calc_rdm_movie``), optionally of condition-averaged patterns.
- [cross_temporal_similarity][repsim.analysis.temporal.cross_temporal_similarity]: CKA or RSA
  between every step of ``X`` and every step of ``Y``, two layers or one layer of two
  networks, stimuli matched by ``stimulus_id``: a ``(time of X, time of Y)`` matrix.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import xarray as xr
from numpy.typing import ArrayLike
from scipy import stats

from repsim.analysis import probe_solver
from repsim.analysis._arrays import (
    STIMULUS_DIM,
    check_choice,
    check_finite,
    labels_of,
    single_threaded_torch,
    stimulus_positions,
    take_rows,
)
from repsim.analysis.choices import KERNELS, METHODS, METRICS
from repsim.analysis.probe_forms import standardization
from repsim.analysis.probes import _check_settings, _encode, _splits

TIME_DIM = "time"
MEASURES = ("cka", "rsa")
TIE = 1e-12  # relative difference under which two cluster masses are equal
# The standardized states (and kernel forms) of this many bytes of time steps go to the
# solver in one call: more steps per call, fewer passes of its per-iteration overhead.
SOLVE_BYTES = 1 << 29


@dataclass(frozen=True)
class TemporalGeneralization:
    """Cross-validated decoding from every training step to every test step (what
    [temporal_generalization][repsim.analysis.temporal.temporal_generalization] returns).

    Parameters
    ----------
    scores
        Accuracy ``(train_time, test_time)``, the mean over folds.
    fold_scores
        Each fold's accuracy, ``(folds, train_time, test_time)``.
    chance
        The accuracy of always answering the most frequent class.
    predictions
        Each stimulus's out-of-fold predicted label, ``(train_time, test_time, stimuli)``.
    labels
        Each stimulus's true label.
    fold
        The test fold each stimulus fell in.
    null_diagonal
        The sliding decoder's accuracy refitted on labels permuted within folds,
        ``(permutations, time)``: what [decoding_onset][repsim.analysis.temporal.decoding_onset]
        tests against; empty without ``n_permutations``.
    unconverged
        Fits that stopped short of the tolerance (repsim's solver only).
    """

    scores: np.ndarray
    fold_scores: np.ndarray
    chance: float
    predictions: np.ndarray
    labels: np.ndarray
    fold: np.ndarray
    null_diagonal: np.ndarray
    unconverged: int = 0

    @property
    def diagonal(self) -> np.ndarray:
        """The sliding decoder: trained and tested at the same step, ``(time,)``."""
        return np.diagonal(self.scores).copy()

    @property
    def stability(self) -> float:
        """``(mean off-diagonal - chance) / (mean diagonal - chance)``: 1 for a code that
        holds at every step, 0 for one no other step reads; NaN with one step or no
        above-chance diagonal."""
        steps = self.scores.shape[0]
        diagonal = float(np.mean(np.diagonal(self.scores))) - self.chance
        if steps < 2 or diagonal <= 0:
            return float("nan")
        off = self.scores[~np.eye(steps, dtype=bool)]
        return (float(np.mean(off)) - self.chance) / diagonal


@dataclass(frozen=True)
class Onset:
    """A cluster-based permutation test over time steps (module docstring; what
    [decoding_onset][repsim.analysis.temporal.decoding_onset] returns).

    Parameters
    ----------
    onset
        The first step (1 = first) of the first cluster with p < ``alpha``; None if none.
    clusters
        The ``(first, last)`` steps of each cluster (1-based, inclusive).
    masses
        Each cluster's mass.
    p_values
        Each cluster's p.
    statistic
        The statistic at each step.
    threshold
        The cluster-forming threshold: a number, or one per step.
    null
        The largest cluster mass of the observed data and of every permutation.
    alpha
        The level of the test.
    method
        "sign flips over seeds" or "label permutation within a file".
    """

    onset: int | None
    clusters: list[tuple[int, int]]
    masses: np.ndarray
    p_values: np.ndarray
    statistic: np.ndarray
    threshold: float | np.ndarray
    null: np.ndarray
    alpha: float
    method: str


def time_series(X: ArrayLike, name: str = "X") -> np.ndarray:
    """``X`` as a finite float64 ``(stimuli, time, features)`` array.

    Parameters
    ----------
    X
        NumPy, torch or a DataArray: axis 0 (or the ``stimulus`` dim) indexes stimuli, axis 1
        (or ``time``) steps; the rest are flattened.
    name
        What error messages call ``X``.

    Returns
    -------
    numpy.ndarray
        float64 ``(stimuli, time, features)``.

    Raises
    ------
    ValueError
        For a DataArray without ``stimulus`` and ``time`` dims, values that are not real
        numbers, fewer than two axes, an empty array, or NaN or inf values.
    """
    if isinstance(X, torch.Tensor):
        X = X.detach().cpu().double().numpy()
    elif isinstance(X, xr.DataArray):
        missing = [dim for dim in (STIMULUS_DIM, TIME_DIM) if dim not in X.dims]
        if missing:
            raise ValueError(f"{name} needs dims {STIMULUS_DIM!r} and {TIME_DIM!r}; it has "
                             f"{X.dims}")
        X = X.transpose(STIMULUS_DIM, TIME_DIM, ...).values
    array = np.asarray(X)
    if array.dtype.kind not in "biuf":
        raise ValueError(f"{name} must hold real numbers, got dtype {array.dtype}")
    if array.ndim < 2:
        raise ValueError(f"{name} must be (stimuli, time, <features>), got shape {array.shape}")
    array = np.asarray(array.reshape(*array.shape[:2], -1), dtype=np.float64)
    if 0 in array.shape:
        raise ValueError(f"{name} is empty (shape {array.shape}: stimuli x time x features)")
    check_finite(array, name)
    return array


# --------------------------------------------------------------------------- decoding


def temporal_generalization(X: ArrayLike, y: ArrayLike | str, *, folds: int = 5,
                            seed: int = 0, groups: ArrayLike | str | None = None,
                            C: float = 1.0, n_permutations: int = 0, estimator: Any = None,
                            tol: float = 1e-4, max_iter: int = 1000,
                            device: str | torch.device | None = None
                            ) -> TemporalGeneralization:
    """Decode ``y`` from ``X`` trained at each step and tested at every step (module
    docstring).

    Folds are scikit-learn's ``StratifiedKFold(folds, shuffle=True, random_state=seed)``
    (``StratifiedGroupKFold`` with ``groups``), as the probes use.

    Parameters
    ----------
    X
        States ``(stimulus, time, ...)``: NumPy, torch, or a DataArray with ``stimulus`` and
        ``time`` dims (as [time_series][repsim.analysis.temporal.time_series] reads it).
    y
        One label per stimulus, or the name of a stimulus coordinate of a DataArray ``X``.
    folds
        The cross-validation folds.
    seed
        Shuffles the folds and draws the permutations.
    groups
        One group per stimulus, or the name of a stimulus coordinate of a DataArray ``X``
        (e.g. the speaker): stratified group folds, so that no group spans training and test.
        ``None``: stratified folds.
    C
        The inverse regularization strength of the decoders (one ``C``, no nested selection).
    n_permutations
        Sliding decoders refitted on labels permuted within folds (seeded by ``seed``), for
        [decoding_onset][repsim.analysis.temporal.decoding_onset]; 0: none.
    estimator
        A scikit-learn classifier to fit instead of repsim's solver (cloned for each fold and
        step); ``None``: repsim's solver.
    tol
        The gradient tolerance of every fit of repsim's solver.
    max_iter
        The most iterations of a fit of repsim's solver.
    device
        Where repsim's solver runs (e.g. ``"cuda"``); ``None`` is the CPU.

    Returns
    -------
    TemporalGeneralization
        The ``(train_time, test_time)`` accuracies (mean and per fold), chance, the
        out-of-fold predictions and, with ``n_permutations``, the permuted sliding decoders'
        accuracies.

    Raises
    ------
    ValueError
        For an ``X`` that [time_series][repsim.analysis.temporal.time_series] refuses, labels
        or groups that name no stimulus coordinate or are not one per stimulus, NaN labels, a
        single class, a class or group count too small for the folds, or options out of range
        (``folds`` under 2, ``C`` or ``tol`` not positive, ``max_iter`` under 1, a negative
        ``n_permutations``).

    Warns
    -----
    RuntimeWarning
        Once per call when any fit of repsim's solver stopped short of ``tol``.
    """
    if estimator is None:
        return _generalizations([(X, y)], folds=folds, seed=seed, groups=groups, C=C,
                                n_permutations=n_permutations, tol=tol, max_iter=max_iter,
                                device=device, stacklevel=3)[0]
    _check_settings([C], folds, 2, tol, max_iter)
    decoding = _decoding(X, y, groups, folds, seed, n_permutations, {})
    predicted, null = _fitted(decoding, estimator)
    return decoding.result(predicted, null, 0)


def _generalizations(pairs: Sequence[tuple[ArrayLike, ArrayLike | str]], *, folds: int,
                     seed: int, groups: ArrayLike | str | None, C: float,
                     n_permutations: int, tol: float, max_iter: int,
                     device: str | torch.device | None, stacklevel: int = 2
                     ) -> list[TemporalGeneralization]:
    """[temporal_generalization][repsim.analysis.temporal.temporal_generalization] of ``X``
    for ``y`` for each ``(X, y)`` of ``pairs``, with repsim's solver: every fit of every pair
    in one solver call per class count (:func:`_solved`); pairs that share an ``X`` object
    share its conversion and standardization. One warning for all fits that stopped short
    of ``tol``."""
    _check_settings([C], folds, 2, tol, max_iter)
    converted: dict[int, np.ndarray] = {}
    decodings = [_decoding(X, y, groups, folds, seed, n_permutations, converted)
                 for X, y in pairs]
    solved = _solved(decodings, C, tol, max_iter,
                     torch.device("cpu" if device is None else device))
    unconverged = sum(outcome.unconverged for outcome in solved)
    if unconverged:
        fits = sum(d.x.shape[1] * folds * (1 + n_permutations) for d in decodings)
        warnings.warn(f"{unconverged} of {fits} logistic fits stopped short of the gradient "
                      f"tolerance {tol}", RuntimeWarning, stacklevel=stacklevel)
    return [decoding.result(outcome.predicted, outcome.null, outcome.unconverged)
            for decoding, outcome in zip(decodings, solved, strict=True)]


@dataclass(frozen=True)
class _Decoding:
    """One temporal-generalization problem: states ``x`` ``(stimuli, time, features)``,
    label ``codes`` of the ``labels`` values, the folds ``splits`` (each stimulus's in
    ``fold``) and the labels ``permuted`` within folds ``(permutations, stimuli)``."""

    x: np.ndarray
    codes: np.ndarray
    labels: np.ndarray
    splits: list[tuple[np.ndarray, np.ndarray]]
    fold: np.ndarray
    permuted: np.ndarray

    def result(self, predicted: np.ndarray, null: np.ndarray, unconverged: int
               ) -> TemporalGeneralization:
        """The scores of predicted codes ``(train_time, test_time, stimuli)`` and the
        permuted sliding decoders' ``(permutations, time, stimuli)``."""
        codes, steps = self.codes, self.x.shape[1]
        fold_scores = np.stack([np.mean(predicted[:, :, test] == codes[test], axis=2)
                                for _, test in self.splits])
        null_diagonal = np.mean([np.mean(null[:, :, test] == self.permuted[:, None, test],
                                         axis=2) for _, test in self.splits], axis=0)
        return TemporalGeneralization(
            scores=fold_scores.mean(0), fold_scores=fold_scores,
            chance=float(np.bincount(codes).max() / codes.size),
            predictions=self.labels[predicted], labels=self.labels[codes], fold=self.fold,
            null_diagonal=null_diagonal.reshape(-1, steps), unconverged=unconverged)


def _decoding(X: ArrayLike, y: ArrayLike | str, groups: ArrayLike | str | None, folds: int,
              seed: int, n_permutations: int, converted: dict[int, np.ndarray]
              ) -> _Decoding:
    """The checked problem of decoding ``y`` from ``X`` (``converted`` keeps each ``X``
    object's :func:`time_series`, for pairs that share it)."""
    if id(X) not in converted:
        converted[id(X)] = time_series(X)
    x = converted[id(X)]
    codes, classes = _encode(labels_of(y, X, "y"), x.shape[0])
    group_labels = None if groups is None else labels_of(groups, X, "groups")
    if isinstance(n_permutations, bool) or not isinstance(n_permutations, int) \
            or n_permutations < 0:
        raise ValueError(f"n_permutations must be a non-negative integer, got "
                         f"{n_permutations!r}")
    splits = _splits(codes, group_labels, folds, seed, "folds")
    fold = np.empty(x.shape[0], dtype=np.int64)
    for index, (_, test) in enumerate(splits):
        fold[test] = index
    permuted = codes[_within_fold_orders(fold, n_permutations, seed)]
    return _Decoding(x, codes, classes, list(splits), fold, permuted)


def _within_fold_orders(fold: np.ndarray, count: int, seed: int) -> np.ndarray:
    """``count`` permutations ``(count, stimuli)`` of the stimuli, each moving stimuli only
    within their fold (so that each fold keeps its class counts)."""
    rng = np.random.default_rng(seed)
    orders = np.tile(np.arange(fold.size), (count, 1))
    for f in np.unique(fold):
        members = np.flatnonzero(fold == f)
        orders[:, members] = members[rng.permuted(np.tile(np.arange(members.size),
                                                          (count, 1)), axis=1)]
    return orders


@dataclass
class _Predicted:
    """What the solver gives one decoding (:func:`_solved`): the predicted codes
    ``(train_time, test_time, stimuli)``, the permuted sliding decoders' ``(permutations,
    time, stimuli)``, and how many of its fits stopped short of ``tol``."""

    predicted: np.ndarray
    null: np.ndarray
    unconverged: int = 0


def _solved(decodings: Sequence[_Decoding], C: float, tol: float, max_iter: int,
            device: torch.device) -> list[_Predicted]:
    """For each decoding, the predicted codes ``(train_time, test_time, stimuli)`` from
    repsim's solver, the sliding decoders' predictions ``(permutations, time, stimuli)``
    under its permuted labels, and how many of its fits stopped short of ``tol``.

    Every fold at every training step of every decoding with the same number of classes
    goes to the solver in one call, up to ``SOLVE_BYTES`` of data at a time (the permuted
    fits in one more). Each fit's weights then read its held-out stimuli at every step,
    standardized with its training rows' statistics."""
    out = [_Predicted(np.empty((d.x.shape[1], d.x.shape[1], d.x.shape[0]), dtype=np.int64),
                      np.empty((len(d.permuted), d.x.shape[1], d.x.shape[0]), dtype=np.int64))
           for d in decodings]
    scales: dict[int, np.ndarray] = {}  # each states array's (steps, features) scale
    work = []  # (decoding, step) of every step with information
    for i, d in enumerate(decodings):
        if id(d.x) not in scales:
            scales[id(d.x)] = d.x.std(0)
        for t in range(d.x.shape[1]):
            if (scales[id(d.x)][t] > 0).any():
                work.append((i, t))
            else:  # no information at this step: the majority class
                out[i].predicted[t] = np.bincount(d.codes[d.splits[0][0]]).argmax()
                out[i].null[:, t] = out[i].predicted[t, t]
    with single_threaded_torch(device):
        for classes in sorted({d.labels.size for d in decodings}):
            items = [(i, t) for i, t in work if decodings[i].labels.size == classes]
            for chunk in _chunks(items, [_step_bytes(decodings[i]) for i, _ in items],
                                 SOLVE_BYTES):
                _solve_chunk(decodings, chunk, classes, scales, out, C, tol, max_iter,
                             device)
    return out


def _step_bytes(decoding: _Decoding) -> int:
    """The solver's data for one training step of ``decoding``: the standardized states
    and its folds' kernel forms."""
    n, _, features = decoding.x.shape
    return 8 * n * (features + 2 * len(decoding.splits)
                    * max(len(train) for train, _ in decoding.splits))


def _chunks(items: list, sizes: list[int], budget: int) -> list[list]:
    """``items`` in consecutive groups of at most ``budget`` bytes (at least one each)."""
    chunks: list[list] = []
    total = 0
    for item, size in zip(items, sizes, strict=True):
        if not chunks or total + size > budget:
            chunks.append([])
            total = 0
        chunks[-1].append(item)
        total += size
    return chunks


def _solve_chunk(decodings: Sequence[_Decoding], chunk: list[tuple[int, int]], classes: int,
                 scales: dict[int, np.ndarray], out: list[_Predicted], C: float, tol: float,
                 max_iter: int, device: torch.device) -> None:
    """Solve the fits of ``chunk``'s (decoding, training step) items (every fold of each)
    and write their predictions into ``out`` (:func:`_solved`)."""
    matrix: dict[tuple[int, int], int] = {}  # (states, step) -> its place in z
    z: list[np.ndarray] = []
    shift: list[np.ndarray] = []
    keep: list[np.ndarray] = []
    for i, t in chunk:
        x = decodings[i].x
        if (id(x), t) in matrix:
            continue
        matrix[(id(x), t)] = len(z)
        keep.append(scales[id(x)][t] > 0)  # constant features: weight 0 in any fit
        shift.append(x[:, t, keep[-1]].mean(0))
        z.append((x[:, t, keep[-1]] - shift[-1])  # well scaled for the float32 form
                 / scales[id(x)][t, keep[-1]])
    fits = [(i, t, f) for i, t in chunk for f in range(len(decodings[i].splits))]
    sets = [decodings[i].splits[f][0] for i, _, f in fits]  # one training set per fit
    matrix_of = np.array([matrix[(id(decodings[i].x), t)] for i, t, _ in fits])
    every = np.arange(len(fits))
    solution = probe_solver.solve(
        z, _codes([decodings[i].codes for i, _, _ in fits]), classes, sets, every,
        np.full(every.size, C), every, tol=tol, max_iter=max_iter, device=device,
        matrix_of=matrix_of, predictions=False, coefficients=True)
    assert solution.weights is not None and solution.intercepts is not None
    for q, (i, t, f) in enumerate(fits):
        # the fit standardizes z = (x - shift) / scale with its training rows' mean and
        # scale: folded into weights on the raw features, which then read the held-out
        # stimuli at every step in one product
        d, j = decodings[i], matrix_of[q]
        train, test = d.splits[f]
        scale = scales[id(d.x)][t, keep[j]]
        mean, inverse = (value.numpy() for value in standardization(
            torch.from_numpy(z[j]), torch.from_numpy(train)))
        weights = solution.weights[q] * (inverse / scale)[:, None]
        bias = solution.intercepts[q] - ((shift[j] / scale + mean) * inverse
                                         ) @ solution.weights[q]
        logits = d.x[test][:, :, keep[j]] @ weights + bias  # (test, time, classes)
        out[i].predicted[t][:, test] = logits.argmax(-1).T
        out[i].unconverged += int(solution.short[q])
    most = max(len(d.permuted) for d in decodings)
    relabelled = [(q, p) for p in range(most) for q, (i, _, _) in enumerate(fits)
                  if p < len(decodings[i].permuted)]  # permutation-major, as for one
    if not relabelled:
        return
    set_of = np.array([q for q, _ in relabelled])
    null = probe_solver.solve(
        z, _codes([decodings[fits[q][0]].permuted[p] for q, p in relabelled]), classes, sets,
        set_of, np.full(set_of.size, C), set_of, tol=tol, max_iter=max_iter, device=device,
        matrix_of=matrix_of)
    for column, (q, p) in enumerate(relabelled):
        i, t, f = fits[q]
        test = decodings[i].splits[f][1]
        out[i].null[p, t, test] = null.predictions[test, column]
        out[i].unconverged += int(null.short[column])


def _codes(columns: list[np.ndarray]) -> np.ndarray:
    """The labels of each fit: one column ``(rows,)`` when every fit has the same, else
    ``(rows, fits)``."""
    first = columns[0]
    if all(column is first or np.array_equal(column, first) for column in columns):
        return first
    return np.stack(columns, axis=1)


def _fitted(decoding: _Decoding, estimator: Any) -> tuple[np.ndarray, np.ndarray]:
    """As ``_solved``, from clones of a scikit-learn ``estimator`` fitted at each fold
    and training step (and for each permutation)."""
    from sklearn.base import clone

    x, codes = decoding.x, decoding.codes
    n, steps, _ = x.shape
    predicted = np.empty((steps, steps, n), dtype=np.int64)
    null = np.empty((len(decoding.permuted), steps, n), dtype=np.int64)
    for train, test in decoding.splits:
        for t in range(steps):
            model = clone(estimator).fit(x[train, t], codes[train])
            flat = model.predict(x[test].reshape(-1, x.shape[2]))
            predicted[t][:, test] = np.asarray(flat).reshape(len(test), steps).T
            for p, labels in enumerate(decoding.permuted):
                model = clone(estimator).fit(x[train, t], labels[train])
                null[p, t, test] = model.predict(x[test, t])
    return predicted, null


# --------------------------------------------------------------------------- onset


def decoding_onset(*, scores: ArrayLike | None = None, chance: float | ArrayLike | None = None,
                   result: TemporalGeneralization | None = None, alpha: float = 0.05,
                   threshold: float | None = None, n_permutations: int = 1000,
                   signs: ArrayLike | None = None, seed: int = 0) -> Onset:
    """When decoding first exceeds chance, by a cluster-based permutation test over time
    (module docstring): over seeds (``scores`` and ``chance``), or within one file
    (``result``). Give ``scores`` or ``result``, not both.

    Parameters
    ----------
    scores
        Over seeds: one accuracy time course per trained network, ``(seeds, time)``, at least
        2 seeds.
    chance
        Over seeds: the chance accuracy, a number or one per step.
    result
        Within one file: a
        [temporal_generalization][repsim.analysis.temporal.temporal_generalization] computed
        with ``n_permutations``.
    alpha
        The level of the test, over all steps (between 0 and 1).
    threshold
        Over seeds: overrides the cluster-forming t value (default: the one-sided ``alpha``
        critical value).
    n_permutations
        Over seeds: the sign flips drawn with ``seed`` (all ``2^n`` when it allows).
    signs
        Over seeds: the sign flips to use instead, the rows of a ``(permutations, seeds)``
        array of +-1.
    seed
        Draws the sign flips.

    Returns
    -------
    Onset
        The onset (None if none), the clusters with their masses and p-values, the statistic,
        the threshold and the null distribution.

    Raises
    ------
    ValueError
        For ``alpha`` outside (0, 1), ``n_permutations`` not a positive integer, both or
        neither of ``scores`` and ``result``, ``chance``, ``signs`` or ``threshold`` with a
        ``result``, ``scores`` without ``chance``, ``scores`` that are not ``(seeds, time)``
        with at least 2 seeds or not finite, ``signs`` of the wrong shape or not +-1, or a
        ``result`` without permutations.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha}")
    if isinstance(n_permutations, bool) or not isinstance(n_permutations, int) \
            or n_permutations < 1:
        raise ValueError(f"n_permutations must be a positive integer, got {n_permutations!r}")
    if (scores is None) == (result is None):
        raise ValueError("give scores (time courses over seeds, with chance) or result (a "
                         "temporal_generalization of one file), not both or neither")
    if result is not None:
        if chance is not None or signs is not None or threshold is not None:
            raise ValueError("chance, signs and threshold are for scores over seeds; a "
                             "result is tested against its permutations")
        return _label_permutation_onset(result, alpha)
    if chance is None:
        raise ValueError("scores over seeds need chance (a number, or one per step)")
    values = np.asarray(scores, dtype=np.float64)
    if values.ndim != 2 or values.shape[0] < 2:
        raise ValueError(f"scores must be (seeds, time) with at least 2 seeds, got shape "
                         f"{values.shape}")
    check_finite(values, "scores")
    centred = values - np.broadcast_to(np.asarray(chance, dtype=np.float64), values.shape[1:])
    n = centred.shape[0]
    if threshold is None:
        threshold = float(stats.t.ppf(1 - alpha, n - 1))
    flips = _sign_flips(n, n_permutations, seed) if signs is None else _checked_signs(signs, n)
    statistic = _t_statistic(centred)
    null = [_largest_mass(_t_statistic(centred * row[:, None]), threshold) for row in flips]
    return _result(statistic, float(threshold), np.asarray(null), alpha,
                   "sign flips over seeds")


def _t_statistic(values: np.ndarray) -> np.ndarray:
    """One-sample t of each column; 0 where it is undefined (no variance, zero mean)."""
    n = values.shape[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        t = values.mean(0) / np.sqrt(values.var(0, ddof=1) / n)
    return np.nan_to_num(t, nan=0.0, posinf=np.inf, neginf=-np.inf)


def _sign_flips(n: int, count: int, seed: int) -> np.ndarray:
    """Sign flips of ``n`` time courses, the identity left out (the observed data count
    anyway): all ``2^n - 1`` when ``count`` allows, else ``count`` distinct random ones."""
    total = 2 ** n - 1
    if count >= total:
        every = np.array(list(itertools.product((1.0, -1.0), repeat=n)))
        return every[1:]  # row 0 is the identity
    rng = np.random.default_rng(seed)
    chosen = rng.choice(total, size=count, replace=False) + 1  # 0 would be the identity
    bits = (chosen[:, None] >> np.arange(n)[::-1]) & 1
    return 1.0 - 2.0 * bits


def _checked_signs(signs: ArrayLike, n: int) -> np.ndarray:
    flips = np.asarray(signs, dtype=np.float64)
    if flips.ndim != 2 or flips.shape[1] != n or not np.all(np.abs(flips) == 1):
        raise ValueError(f"signs must be (permutations, {n}) of +1 and -1, got shape "
                         f"{flips.shape}")
    return flips


def _runs(above: np.ndarray) -> list[tuple[int, int]]:
    """``(start, stop)`` (stop exclusive) of each run of consecutive True steps."""
    edges = np.diff(np.concatenate([[0], above.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True))


def _largest_mass(statistic: np.ndarray, threshold: float | np.ndarray) -> float:
    """The largest cluster mass of ``statistic`` (0 when no step exceeds the threshold)."""
    runs = _runs(statistic > threshold)
    return max((float(statistic[a:b].sum()) for a, b in runs), default=0.0)


def _result(statistic: np.ndarray, threshold: float | np.ndarray, permuted: np.ndarray,
            alpha: float, method: str) -> Onset:
    """Clusters of the observed ``statistic``, their p against the null (the observed
    largest mass, then each permutation's), and the onset."""
    runs = _runs(statistic > threshold)
    masses = np.array([float(statistic[a:b].sum()) for a, b in runs])
    null = np.concatenate([[masses.max() if len(masses) else 0.0], permuted])
    # a permutation whose mass equals the observed one counts, whatever the last bit of two
    # sums of the same numbers in another order (the identity sign flip, for one)
    p_values = np.array([float(np.mean(null >= (mass - TIE * abs(mass) if np.isfinite(mass)
                                                  else mass))) for mass in masses])
    significant = [a for (a, _), p in zip(runs, p_values, strict=True) if p < alpha]
    return Onset(onset=int(significant[0]) + 1 if significant else None,
                 clusters=[(int(a) + 1, int(b)) for a, b in runs], masses=masses,
                 p_values=p_values, statistic=statistic, threshold=threshold, null=null,
                 alpha=alpha, method=method)


def _label_permutation_onset(result: TemporalGeneralization, alpha: float) -> Onset:
    """Within one file: the sliding decoder's accuracy against its refits on permuted labels
    (module docstring)."""
    null = result.null_diagonal
    if len(null) == 0:
        raise ValueError("this result has no permutations: compute it with "
                         "temporal_generalization(..., n_permutations=1000)")
    # the observed time course is one labelling among the permuted ones: it enters the mean
    # and the threshold as they do, so that no labelling is favoured (an exact test)
    every = np.vstack([result.diagonal, null])
    centred = every - every.mean(0)
    threshold = np.quantile(centred, 1 - alpha, axis=0)
    statistic, null_statistic = centred[0], centred[1:]
    masses = np.array([_largest_mass(row, threshold) for row in null_statistic])
    return _result(statistic, threshold, masses, alpha, "label permutation within a file")


# --------------------------------------------------------------------------- geometry


def rdm_movie(X: ArrayLike, metric: str = "correlation", labels: ArrayLike | str | None = None
              ) -> np.ndarray:
    """An RDM at every time step of ``X`` (rsatoolbox's ``calc_rdm_movie``).

    Parameters
    ----------
    X
        States ``(stimulus, time, ...)`` (as [time_series][repsim.analysis.temporal.time_series]
        reads them).
    metric
        The dissimilarity, as [repsim.analysis.rdm][repsim.analysis.rdm] means it.
    labels
        One label per stimulus, or a stimulus coordinate's name: the patterns are then the
        means of each label's stimuli, in sorted label order, as rsatoolbox's
        ``calc_rdm_movie(..., descriptor=...)`` averages them. ``None``: single stimuli.

    Returns
    -------
    numpy.ndarray
        ``(time, n, n)``; with ``labels``, ``(time, c, c)`` for ``c`` label values.

    Raises
    ------
    ValueError
        For an unknown metric, an ``X`` that [time_series][repsim.analysis.temporal.time_series]
        refuses, or labels that name no stimulus coordinate or are not 1-D.
    """
    from repsim.analysis.rsa import average_by_condition, rdm

    check_choice(metric, METRICS, "metric")
    x = time_series(X)
    steps = range(x.shape[1])
    if labels is not None:
        groups = labels_of(labels, X, "labels")
        patterns = [average_by_condition(x[:, t], groups)[0] for t in steps]
    else:
        patterns = [x[:, t] for t in steps]
    return np.stack([np.asarray(rdm(pattern, metric=metric)) for pattern in patterns])


def cross_temporal_similarity(X: ArrayLike, Y: ArrayLike, measure: str = "cka", *,
                              kernel: str = "linear", debiased: bool = False,
                              metric: str = "correlation", method: str = "spearman"
                              ) -> np.ndarray:
    """Similarity of every step of ``X`` with every step of ``Y``: two layers, or one layer of
    two networks.

    Parameters
    ----------
    X, Y
        States ``(stimulus, time, ...)`` of the same stimuli: matched by ``stimulus_id`` when
        both are DataArrays that carry it.
    measure
        ``"cka"``: [repsim.analysis.cka_matrix][repsim.analysis.cka.cka_matrix] with
        ``kernel`` and ``debiased``; ``"rsa"``:
        [repsim.analysis.compare_rdms][repsim.analysis.rsa.compare_rdms] of the two steps'
        RDMs (``metric``, ``method``).
    kernel
        The CKA kernel, ``"linear"`` or ``"rbf"``.
    debiased
        Use the unbiased HSIC estimator of CKA.
    metric
        The RDMs' dissimilarity (RSA).
    method
        How RDMs are compared (RSA).

    Returns
    -------
    numpy.ndarray
        ``(time of X, time of Y)``.

    Raises
    ------
    ValueError
        For an unknown measure, kernel, metric or method, inputs that
        [time_series][repsim.analysis.temporal.time_series] refuses, stimuli that do not
        match, or ``X`` and ``Y`` with different numbers of stimuli.
    """
    from repsim.analysis.cka import cka_matrix
    from repsim.analysis.rsa import compare_rdms, rdm

    check_choice(measure, MEASURES, "measure")
    check_choice(kernel, KERNELS, "kernel")
    check_choice(metric, METRICS, "metric")
    check_choice(method, METHODS, "method")
    rows = stimulus_positions([X, Y], ["X", "Y"])
    x, y = time_series(take_rows(X, rows[0]), "X"), time_series(take_rows(Y, rows[1]), "Y")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"X has {x.shape[0]} stimuli and Y {y.shape[0]}; they must be the "
                         f"same stimuli")
    xs, ys = [x[:, t] for t in range(x.shape[1])], [y[:, u] for u in range(y.shape[1])]
    if measure == "cka":
        return np.asarray(cka_matrix(xs, ys, kernel=kernel, debiased=debiased))
    x_rdms, y_rdms = np.asarray(rdm(xs, metric=metric)), np.asarray(rdm(ys, metric=metric))
    return np.asarray(compare_rdms(x_rdms, y_rdms, method=method)).reshape(len(xs), len(ys))
