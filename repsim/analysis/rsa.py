"""Representational similarity analysis: RDMs, their comparison, models and resampling.

Definitions:

- ``rdm(X, metric)``: the n x n representational dissimilarity matrix between the stimulus
  patterns (rows of X), with the meanings of ``scipy.spatial.distance.pdist``:
  "euclidean" ``||u - v||``, "sqeuclidean" ``||u - v||^2``, "cosine" ``1 - u.v / (|u||v|)``
  and "correlation" ``1 - (u - mean u).(v - mean v) / (|u - mean u||v - mean v|)`` (means
  over features); and "sqeuclidean_mean" ``||u - v||^2 / p`` over p features, which is what
  rsatoolbox's ``calc_rdm(method="euclidean")`` computes (its "squared euclidean"
  measure). rsatoolbox's "correlation" equals ours; it has no unscaled euclidean distance
  ([repsim.interop][] converts RDMs and names). Computed from one Gram matrix per
  representation; symmetric, zero diagonal, cosine/correlation distances clipped to [0, 2]
  and squared distances to >= 0 against rounding.
- Labelled RDMs: an RDM of a DataArray is a DataArray ``(stimulus, stimulus_)`` with the
  input's stimulus coordinates on both axes (``stimulus_id`` and ``stimulus_id_``...) and
  the metric in ``attrs["metric"]``; a stack is ``(representation, stimulus, stimulus_)``.
  [compare_rdms][repsim.analysis.rsa.compare_rdms] (and its bootstrap and permutation test)
  puts B's stimuli in A's order when both are labelled RDMs with ``stimulus_id``.
- ``compare_rdms(A, B, method)`` reads only the strict upper triangle (the n(n-1)/2
  distinct pairs; RDMs are symmetric): "pearson" and "cosine" of the two vectors,
  "spearman" (Pearson of average ranks), and "kendall_tau_a":
  ``(concordant - discordant) / (m(m-1)/2)`` over the m entries, so pairs tied in either
  RDM count in the denominator (unlike scipy's default tau-b). Tau-a runs in O(m log m).
- Bootstrap over stimuli ([bootstrap_compare_rdms][repsim.analysis.rsa.bootstrap_compare_rdms]):
  resampling stimuli with replacement duplicates some; the pair of a stimulus with its own
  copy has distance zero by construction, not by measurement, so such pairs are dropped from
  both RDMs before comparing, as rsatoolbox does (it sets them to NaN and ignores them).
- Permutation test ([permutation_test_rdms][repsim.analysis.rsa.permutation_test_rdms]): the
  condition labels of the first RDM are permuted (rows and columns together) to build the
  null distribution.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import xarray as xr
from numpy.typing import ArrayLike

from repsim.analysis._arrays import (
    ID_COORD,
    SECOND,
    STIMULUS_DIM,
    as_list,
    as_matrix,
    as_rdm_stack,
    check_choice,
    check_finite,
    coords_along,
    labelled_like,
    labels_of,
    representation_axis,
    scalar_labels,
    stimulus_axis,
    stimulus_positions,
    take_rows,
)
from repsim.analysis.choices import METHODS, METRICS
from repsim.analysis.resampling import (
    BootstrapResult,
    PermutationResult,
    bootstrap,
    permutation_test,
)


def rdm(X: ArrayLike, metric: str = "correlation") -> np.ndarray | xr.DataArray:
    """The representational dissimilarity matrix of ``X``: every pair of stimulus patterns.

    Computed from one Gram matrix per representation; symmetric with a zero diagonal;
    cosine/correlation distances are clipped to [0, 2] and squared distances to >= 0 against
    rounding.

    Parameters
    ----------
    X
        Patterns ``(n, ...)``, stimuli on axis 0 (other axes flattened): NumPy, torch or xarray.
        A list, tuple or dict of representations gives a stack (stimuli matched to the first
        by ``stimulus_id`` when all carry it).
    metric
        As in ``scipy.spatial.distance.pdist``: ``"correlation"``, ``"euclidean"``,
        ``"sqeuclidean"`` or ``"cosine"``; or ``"sqeuclidean_mean"``, the squared distance over
        the number of features (rsatoolbox's ``"euclidean"``).

    Returns
    -------
    numpy.ndarray or xarray.DataArray
        The ``(n, n)`` float64 RDM, or ``(k, n, n)`` for a stack; for a DataArray input, a
        labelled RDM ``(stimulus, stimulus_)`` with the input's stimulus coordinates on both axes
        and the metric in ``attrs["metric"]``.

    Raises
    ------
    ValueError
        For an unknown metric, non-finite values, or stimuli whose pattern is all zeros (cosine)
        or constant (correlation), which make the distance undefined; the message names them.

    Examples
    --------
    >>> import numpy as np
    >>> from repsim.analysis import compare_rdms, rdm
    >>> X = np.random.default_rng(0).normal(size=(30, 8))
    >>> D = rdm(X, metric="euclidean")
    >>> D.shape, bool(np.allclose(D, D.T)), float(D[0, 0])
    ((30, 30), True, 0.0)
    >>> round(compare_rdms(D, rdm(3 * X, metric="euclidean"), method="kendall_tau_a"), 6)
    1.0
    """
    check_choice(metric, METRICS, "metric")
    attrs = {"metric": metric}
    if not isinstance(X, list | tuple | Mapping):
        return labelled_like([X], _rdm(as_matrix(X, "X"), metric, "X"),
                             [stimulus_axis(X)] * 2, scalar_labels(X), attrs)
    reps = as_list(X, "X")
    names = [f"X[{i}]" for i in range(len(reps))]
    positions = stimulus_positions(reps, names)
    stack = np.empty(0)
    for i, (x, rows, name) in enumerate(zip(reps, positions, names, strict=True)):
        matrix = _rdm(as_matrix(take_rows(x, rows), name), metric, name)
        if i == 0:  # filled in place: no list of n x n matrices to copy
            stack = np.empty((len(reps), *matrix.shape))
        stack[i] = matrix
    return labelled_like([X], stack, [representation_axis(X), *[stimulus_axis(reps[0])] * 2],
                         attrs=attrs)


def compare_rdms(A: ArrayLike, B: ArrayLike, method: str = "spearman"
                 ) -> float | np.ndarray | xr.DataArray:
    """Similarity of RDMs on their strict upper triangles (the n(n-1)/2 distinct pairs).

    Ranks and norms are computed once per RDM, and all pairs of a correlation-type method come
    from one matrix product.

    Parameters
    ----------
    A, B
        ``(n, n)`` RDMs, or stacks ``(k, n, n)`` or lists of them. When both are labelled RDMs
        with ``stimulus_id``, B's stimuli are put in A's order.
    method
        ``"spearman"`` (Pearson of average ranks), ``"pearson"``, ``"cosine"`` or
        ``"kendall_tau_a"`` (tied pairs count in the denominator, unlike scipy's tau-b).

    Returns
    -------
    float or numpy.ndarray or xarray.DataArray
        A float for two single RDMs; otherwise a ``(k_A, k_B)`` array of every pair, a
        DataArray labelled by the RDMs' stack coordinates (or names) when either input is
        labelled.

    Raises
    ------
    ValueError
        For an unknown method, RDMs of different sizes or stimuli, or an RDM whose entries are
        all equal (it has no correlation), naming it.

    Examples
    --------
    How well does a layer follow the heard digit? Compare its RDM with a categorical model:

    ```python
    from repsim.analysis import categorical_rdm, compare_rdms, rdm

    layer = rdm(states, metric="correlation")              # states: (n, features)
    heard = categorical_rdm(audio_digit)                   # 0 within a digit, 1 across
    compare_rdms(layer, heard, method="kendall_tau_a")
    ```
    """
    check_choice(method, METHODS, "method")
    same = B is A
    B = B if same else _in_order_of(A, B)
    vectors_a, single_a = _upper_triangles(A, "A")
    vectors_b, single_b = (vectors_a, single_a) if same else _upper_triangles(B, "B")
    if vectors_a.shape[1] != vectors_b.shape[1]:
        raise ValueError(f"A and B describe different numbers of stimuli "
                         f"({_stimuli_of(vectors_a)} and {_stimuli_of(vectors_b)})")
    if method == "kendall_tau_a":
        ranked_a = [_dense_ranks(v) for v in vectors_a]
        ranked_b = ranked_a if same else [_dense_ranks(v) for v in vectors_b]
        result = np.array([[_tau_a_of_ranks(a, b) for b in ranked_b] for a in ranked_a])
    else:
        unit_a = _unit_rows(vectors_a, method, "A")
        unit_b = unit_a if same else _unit_rows(vectors_b, method, "B")
        result = unit_a @ unit_b.T
    if single_a and single_b:
        return float(result[0, 0])
    return labelled_like([A, B], result, [_stack_axis(A), _stack_axis(B)])


def kendall_tau_a(x: ArrayLike, y: ArrayLike) -> float:
    """Kendall's tau-a of two equal-length vectors in O(m log m).

    Parameters
    ----------
    x, y
        Two vectors of m values.

    Returns
    -------
    float
        ``(concordant - discordant) / (m(m-1)/2)``, every tied pair counting in the denominator.

    Raises
    ------
    ValueError
        For vectors of different lengths or fewer than 2 values.
    """
    x, y = (np.asarray(v, dtype=np.float64).ravel() for v in (x, y))
    if x.size != y.size or x.size < 2:
        raise ValueError(f"kendall_tau_a needs two vectors of equal length >= 2, got "
                         f"{x.size} and {y.size}")
    check_finite(x, "x")
    check_finite(y, "y")
    return _tau_a_of_ranks(_dense_ranks(x), _dense_ranks(y))


def average_by_condition(X: ArrayLike, *labels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Condition-averaged patterns: the mean of ``X``'s rows for each distinct label value.

    Parameters
    ----------
    X
        Patterns ``(n, ...)``, stimuli on axis 0.
    *labels
        One or more arrays with a label per stimulus, or names of stimulus coordinates of a
        DataArray ``X`` (e.g. ``"audio_digit", "visual_digit"`` gives one pattern per
        audio-digit x visual-digit cell that occurs).

    Returns
    -------
    patterns : numpy.ndarray
        ``(c, n_features)``, in sorted label order.
    conditions : numpy.ndarray
        The label values of each row: ``(c,)`` for one label or ``(c, n_labels)`` for several.

    Raises
    ------
    ValueError
        For no labels, or labels whose length is not the number of stimuli.
    """
    x = as_matrix(X, "X")
    if not labels:
        raise ValueError("average_by_condition needs at least one label array or name")
    columns = [labels_of(label, X, f"labels[{i}]") for i, label in enumerate(labels)]
    for i, column in enumerate(columns):
        if column.shape[0] != x.shape[0]:
            raise ValueError(f"labels[{i}] has {column.shape[0]} entries for {x.shape[0]} "
                             f"stimuli")
    codes, values = zip(*(np.unique(c, return_inverse=True)[::-1] for c in columns),
                        strict=True)
    combined = np.ravel_multi_index(codes, [len(v) for v in values])
    cells, inverse = np.unique(combined, return_inverse=True)
    indicator = np.zeros((cells.size, x.shape[0]))
    indicator[inverse, np.arange(x.shape[0])] = 1.0
    patterns = (indicator @ x) / indicator.sum(1, keepdims=True)
    cell_codes = np.unravel_index(cells, [len(v) for v in values])
    conditions = [v[c] for v, c in zip(values, cell_codes, strict=True)]
    return patterns, conditions[0] if len(conditions) == 1 else np.stack(conditions, axis=1)


def categorical_rdm(labels: ArrayLike) -> np.ndarray:
    """Model RDM of a categorical hypothesis: 0 between stimuli with the same label, 1 otherwise.

    Parameters
    ----------
    labels
        One label per stimulus (e.g. ``audio_digit``: "same audio digit, same response").

    Returns
    -------
    numpy.ndarray
        The ``(n, n)`` float64 model RDM.
    """
    labels = labels_of(labels, name="labels")
    return (labels[:, None] != labels[None, :]).astype(np.float64)


def bootstrap_compare_rdms(A: ArrayLike, B: ArrayLike, method: str = "spearman",
                           n_boot: int = 1000, seed: int = 0, confidence: float = 0.95
                           ) -> BootstrapResult:
    """Bootstrap confidence interval of ``compare_rdms(A, B, method)``, resampling stimuli with
    replacement.

    Both RDMs are indexed by the same resampled stimuli; pairs made of a stimulus and its own
    copy are dropped (their zero distance is made by the resampling, not measured). Resamples
    where the comparison is undefined (e.g. a model RDM whose remaining entries are all equal)
    are NaN and left out of the interval.

    Parameters
    ----------
    A, B
        Two ``(n, n)`` RDMs of the same stimuli.
    method
        As for [compare_rdms][repsim.analysis.rsa.compare_rdms].
    n_boot
        The number of resamples.
    seed
        Seeds the resampling.
    confidence
        The interval's coverage, between 0 and 1.

    Returns
    -------
    BootstrapResult
        The comparison, its percentile interval and every resample's value.
    """
    check_choice(method, METHODS, "method")
    a, b = _square_pair(A, B)
    n = a.shape[0]

    def statistic(rows: np.ndarray) -> float:
        i, j = np.triu_indices(n, 1)
        keep = rows[i] != rows[j]
        first, second = a[rows[i[keep]], rows[j[keep]]], b[rows[i[keep]], rows[j[keep]]]
        if first.size < 2:
            return float("nan")
        if method == "kendall_tau_a":
            return _tau_a_of_ranks(_dense_ranks(first), _dense_ranks(second))
        unit = [_unit_rows(v[None], method, None) for v in (first, second)]
        return float(unit[0][0] @ unit[1][0])

    return bootstrap(statistic, n, n_boot=n_boot, seed=seed, confidence=confidence)


def permutation_test_rdms(A: ArrayLike, B: ArrayLike, method: str = "spearman",
                          n_perm: int = 1000, seed: int = 0, alternative: str = "greater"
                          ) -> PermutationResult:
    """Permutation test of ``compare_rdms(A, B, method)``: the null permutes the condition labels of
    ``A`` (its rows and columns together).

    For the correlation-type methods ``A``'s ranks/centering are computed once (they only move
    under a permutation), so each permutation costs O(n^2).

    Parameters
    ----------
    A, B
        Two ``(n, n)`` RDMs of the same stimuli.
    method
        As for [compare_rdms][repsim.analysis.rsa.compare_rdms].
    n_perm
        The number of permutations.
    seed
        Seeds the permutations.
    alternative
        ``"greater"``, ``"less"`` or ``"two-sided"`` (as for
        [permutation_test][repsim.analysis.resampling.permutation_test]).

    Returns
    -------
    PermutationResult
        The observed comparison, its p-value and the null distribution.
    """
    check_choice(method, METHODS, "method")
    a, b = _square_pair(A, B)
    n = a.shape[0]
    i, j = np.triu_indices(n, 1)
    vector_b = b[i, j]
    if method == "kendall_tau_a":
        ranks_b = _dense_ranks(vector_b)

        def statistic(order: np.ndarray) -> float:
            return _tau_a_of_ranks(_dense_ranks(a[order[i], order[j]]), ranks_b)
    else:
        unit_a = _unit_rows(a[i, j][None], method, "A")[0]
        unit_b = _unit_rows(vector_b[None], method, "B")[0]
        square = np.zeros((n, n))
        square[i, j] = unit_a  # permuting A permutes its (unit) transformed entries

        def statistic(order: np.ndarray) -> float:
            first, second = np.minimum(order[i], order[j]), np.maximum(order[i], order[j])
            return float(square[first, second] @ unit_b)

    return permutation_test(statistic, n, n_perm=n_perm, seed=seed, alternative=alternative)


# --------------------------------------------------------------------------- internals


def _rdm(x: np.ndarray, metric: str, name: str) -> np.ndarray:
    if metric in ("correlation", "cosine"):
        if metric == "correlation":
            x = x - x.mean(1, keepdims=True)
        norms = np.sqrt(np.einsum("ij,ij->i", x, x))
        if not (norms > 0).all():
            bad = np.flatnonzero(norms == 0)
            kind = "constant" if metric == "correlation" else "all-zero"
            raise ValueError(f"{name}: stimuli {bad[:5].tolist()} have a {kind} pattern; "
                             f"their {metric} distance is undefined")
        x = x / norms[:, None]
        distances = x @ x.T
        np.subtract(1.0, distances, out=distances)
        np.clip(distances, 0.0, 2.0, out=distances)
    else:
        x = x - x.mean(0)  # distances do not change; products get smaller, rounding too
        squared_norms = np.einsum("ij,ij->i", x, x)
        distances = squared_norms[:, None] + squared_norms[None, :] - 2.0 * (x @ x.T)
        np.maximum(distances, 0.0, out=distances)
        if metric == "euclidean":
            np.sqrt(distances, out=distances)
        elif metric == "sqeuclidean_mean":
            distances /= x.shape[1]
    distances += distances.T  # exactly symmetric whatever the BLAS did
    distances *= 0.5
    np.fill_diagonal(distances, 0.0)
    return distances


def _square_stack(rdms, name: str) -> tuple[np.ndarray, bool]:
    """RDM input as a checked float64 ``(k, n, n)`` stack of at least 3 stimuli, and whether
    it was a single RDM."""
    stack, single = as_rdm_stack(rdms, name)
    if stack.shape[1] < 3:
        raise ValueError(f"{name} has {stack.shape[1]} stimuli; comparing RDMs needs at "
                         f"least 3 (two distinct pairs)")
    return stack, single


def _in_order_of(A, B):
    """``B`` with its stimuli (rows and columns) put in ``A``'s order when both are labelled
    RDMs with stimulus ids; otherwise ``B`` as it is."""
    if not all(isinstance(r, xr.DataArray) and ID_COORD in coords_along(r, STIMULUS_DIM)
               for r in (A, B)):
        return B
    rows = stimulus_positions([A, B], ["A", "B"])[1]
    if rows is None:
        return B
    return B.isel({STIMULUS_DIM: rows, STIMULUS_DIM + SECOND: rows})


def _stack_axis(rdms):
    """The output axis over the RDMs of an input: a labelled stack's own first axis, else
    :func:`representation_axis` of its RDMs (one for a single RDM)."""
    if isinstance(rdms, xr.DataArray) and rdms.ndim == 3:
        return rdms.dims[0], coords_along(rdms, rdms.dims[0])
    if isinstance(rdms, list | tuple) or np.ndim(rdms) == 3:
        return representation_axis(list(rdms))
    return representation_axis([rdms])


def _upper_triangles(rdms, name: str) -> tuple[np.ndarray, bool]:
    stack, single = _square_stack(rdms, name)
    n = stack.shape[1]
    i, j = np.triu_indices(n, 1)
    return np.take(stack.reshape(len(stack), -1), i * n + j, axis=1), single


def _square_pair(A, B) -> tuple[np.ndarray, np.ndarray]:
    a, single_a = _square_stack(A, "A")
    b, single_b = _square_stack(_in_order_of(A, B), "B")
    if not (single_a and single_b):
        raise ValueError("resampling compares one RDM A with one RDM B; got stacks")
    if a.shape != b.shape:
        raise ValueError(f"A and B describe different numbers of stimuli ({a.shape[1]} and "
                         f"{b.shape[1]})")
    return a[0], b[0]


def _stimuli_of(vectors: np.ndarray) -> int:
    return int(round((1 + np.sqrt(1 + 8 * vectors.shape[1])) / 2))


def _unit_rows(vectors: np.ndarray, method: str, name: str | None) -> np.ndarray:
    """Rows transformed for ``method`` (ranked, centered) and scaled to unit norm, so that a
    dot product is the similarity. ``name=None``: undefined rows become NaN, else ValueError."""
    if method == "spearman":
        vectors = _average_ranks(vectors)
    if method in ("spearman", "pearson"):
        vectors = vectors - vectors.mean(1, keepdims=True)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    if not (norms > 0).all():
        if name is not None:
            kind = "all zero" if method == "cosine" else "all equal"
            raise ValueError(f"{name}: an RDM's upper-triangle entries are {kind}; its "
                             f"{method} similarity is undefined")
        with np.errstate(invalid="ignore", divide="ignore"):
            return vectors / norms
    return vectors / norms


def _average_ranks(vectors: np.ndarray) -> np.ndarray:
    """Ranks 1..m of each row, ties given their average rank (scipy's ``rankdata``)."""
    count = vectors.shape[1]
    ranks = np.empty(vectors.shape)
    positions = np.arange(1.0, count + 1.0)
    starts_run = np.empty(count, dtype=bool)
    starts_run[0] = True
    for row, vector in zip(ranks, vectors, strict=True):
        order = np.argsort(vector)
        ordered = vector[order]
        np.not_equal(ordered[1:], ordered[:-1], out=starts_run[1:])
        if starts_run.all():  # no ties: ranks are the sorting positions
            row[order] = positions
            continue
        starts = np.flatnonzero(starts_run)
        lengths = np.diff(starts, append=count)
        row[order] = np.repeat(starts + (lengths + 1) / 2, lengths)  # runs' average ranks
    return ranks


def _dense_ranks(vector: np.ndarray) -> np.ndarray:
    """Integer codes 0..u-1 preserving order and ties."""
    return np.unique(vector, return_inverse=True)[1].astype(np.int64)


def _tied_pairs(codes: np.ndarray) -> int:
    counts = np.bincount(codes)
    return int((counts * (counts - 1) // 2).sum())


def _tau_a_of_ranks(x: np.ndarray, y: np.ndarray) -> float:
    """Tau-a from dense ranks: concordant - discordant = pairs - ties_x - ties_y + ties_xy
    - 2 * discordant, where discordant pairs are inversions of y once sorted by (x, y)."""
    count = x.size
    pairs = count * (count - 1) // 2
    joint = x * (int(y.max()) + 1) + y
    order = np.argsort(joint, kind="stable")
    run_starts = np.flatnonzero(np.diff(joint[order], prepend=-1))
    run_lengths = np.diff(run_starts, append=count)
    ties_xy = int((run_lengths * (run_lengths - 1) // 2).sum())
    difference = pairs - _tied_pairs(x) - _tied_pairs(y) + ties_xy \
        - 2 * _count_inversions(y[order])
    return difference / pairs


def _count_inversions(values: np.ndarray) -> int:
    """Pairs i < j with values[i] > values[j] (integer codes), by bottom-up merge sort.

    At width w the array is made of sorted blocks of w; each pair of neighbouring blocks is
    merged by one stable sort of (block pair, value, side) keys for all pairs at once, which
    runs in linear time on two sorted runs; an element of the right block is inverted with
    every left-block element placed after it. log2(m) levels: O(m log m), vectorised.
    """
    values = values.astype(np.int64)
    count = values.size
    index = np.arange(count)
    span = int(values.max()) + 1
    inversions, width = 0, 1
    while width < count:
        block_start = index // (2 * width) * (2 * width)
        right = (index - block_start) >= width
        order = np.argsort(((block_start * span) + values) * 2 + right, kind="stable")
        merged_position = np.empty(count, dtype=np.int64)
        merged_position[order] = index
        left_size = np.minimum(width, count - block_start)
        left_before = merged_position - block_start - (index - block_start - width)
        inversions += int((left_size - left_before)[right].sum())
        values = values[order]
        width *= 2
    return inversions
