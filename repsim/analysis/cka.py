"""Centered kernel alignment (CKA): one pair, every pair, and a minibatch (streaming) form.

Definitions (Kornblith, Norouzi, Lee & Hinton 2019, "Similarity of Neural Network
Representations Revisited", and their reference code; the formulas are also in the
analyses guide of the documentation):

- Gram matrices of the n stimuli: linear ``K = X X^T``; RBF ``K_ij = exp(-d_ij^2 / (2 s^2))``
  with the bandwidth ``s = threshold * sqrt(median of all n x n squared distances d_ij^2,
  diagonal included)``, recomputed for each representation.
- Biased estimator (``debiased=False``): ``HSIC(K, L) = <HKH, HLH>_F`` with the centering
  matrix ``H = I - 11^T/n`` (implemented by subtracting row and column means, in float64);
  ``CKA = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))``.
- Debiased estimator (``debiased=True``): the unbiased HSIC of Song et al. (2012), written as
  the Frobenius product of "U-centered" Gram matrices exactly as in Kornblith's reference code
  (diagonal zeroed, means over ``n - 2``); it needs ``n >= 4`` stimuli. Debiased CKA can be
  slightly negative for unrelated representations.
- Linear CKA with fewer features than stimuli is computed in feature space,
  ``||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F)`` on column-centered X and Y (and its debiased
  counterpart), which equals the Gram-matrix value at lower cost.

A representation that is the same for every stimulus has a zero centered Gram matrix, for
which CKA is 0/0: every function here raises a ValueError naming it (see
[repsim.labelled.ablation_sensitivity][] for how ablation treats it).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence

import numpy as np
import torch
import xarray as xr
from numpy.typing import ArrayLike

from repsim.analysis._arrays import (
    aligned_matrices,
    as_list,
    as_matrix,
    check_choice,
    is_constant,
    labelled_like,
    matmul,
    n_stimuli,
    representation_axis,
    single_threaded_torch,
    stimulus_positions,
    take_rows,
)
from repsim.analysis.choices import KERNELS, MIN_DEBIASED_STIMULI
from repsim.analysis.resampling import BootstrapResult, bootstrap

CPU = torch.device("cpu")


def cka(X: ArrayLike, Y: ArrayLike, kernel: str = "linear", debiased: bool = False,
        threshold: float = 1.0) -> float:
    """CKA between two representations of the same stimuli (definitions in the module docstring).

    Parameters
    ----------
    X, Y
        Representations ``(n, ...)`` of the same n stimuli: NumPy, torch or xarray, matched by
        ``stimulus_id`` when both carry it; every non-stimulus axis is flattened into features.
    kernel
        ``"linear"`` or ``"rbf"``.
    debiased
        Use the unbiased HSIC estimator of Song et al. (2012); needs at least 4 stimuli.
    threshold
        Scales the RBF bandwidth (the median distance times ``threshold``); ignored by the
        linear kernel.

    Returns
    -------
    float
        CKA, in [0, 1] for the biased estimator (debiased CKA can be slightly negative).

    Raises
    ------
    ValueError
        For a representation that is constant across stimuli (CKA is 0/0), non-finite values,
        stimuli that do not match, an unknown kernel, or fewer than 4 stimuli when debiased.

    Examples
    --------
    >>> import numpy as np
    >>> from repsim.analysis import cka
    >>> X = np.random.default_rng(0).normal(size=(100, 20))
    >>> round(cka(X, 2 * X @ np.linalg.qr(np.random.default_rng(1).normal(size=(20, 20)))[0]), 6)
    1.0
    """
    x, y = _checked_pair(X, Y, kernel, debiased, threshold)
    if kernel == "linear" and max(x.shape[1], y.shape[1]) < x.shape[0]:
        return _feature_space_linear_cka(x, y, debiased)
    with single_threaded_torch(CPU):
        grams = _packed_grams([(torch.from_numpy(x), "X"), (torch.from_numpy(y), "Y")], 2,
                              x.shape[0], kernel, debiased, threshold, CPU, normalize=True)
        return float(grams[0] @ grams[1])


def cka_matrix(reps_x: Sequence[ArrayLike] | Mapping[str, ArrayLike],
               reps_y: Sequence[ArrayLike] | Mapping[str, ArrayLike] | None = None,
               kernel: str = "linear", debiased: bool = False, threshold: float = 1.0,
               device: str | torch.device | None = None) -> np.ndarray | xr.DataArray:
    """CKA between every representation in ``reps_x`` and every one in ``reps_y``.

    Each Gram matrix is built, centered and normalized once (its upper triangle packed,
    off-diagonal entries weighted by sqrt(2), so that dot products are Frobenius products); all
    pairs then come from one matrix product, so comparing every layer x time step of two models
    costs one Gram matrix per representation.

    Parameters
    ----------
    reps_x
        Representations of the same stimuli (a sequence, or a dict in its order), e.g. every
        layer x time step of a model; stimuli are matched by ``stimulus_id`` when all inputs
        carry it.
    reps_y
        A second such collection; ``None`` compares ``reps_x`` with itself.
    kernel
        ``"linear"`` or ``"rbf"`` (as in [cka][repsim.analysis.cka.cka]).
    debiased
        Use the unbiased HSIC estimator (at least 4 stimuli).
    threshold
        Scales the RBF bandwidth.
    device
        Where to compute (e.g. ``"cuda"``); ``None`` is the CPU.

    Returns
    -------
    numpy.ndarray or xarray.DataArray
        float64 of shape ``(len(reps_x), len(reps_y))``; when any input is a DataArray, a
        DataArray ``(representation, representation_)`` labelled by the dicts' keys or the
        DataArrays' names (and shared scalar coordinates such as ``time``).

    Raises
    ------
    ValueError
        As [cka][repsim.analysis.cka.cka], naming the offending input (``reps_x[2]``).

    Examples
    --------
    Every layer of one model against every layer of another, from their activation files:

    ```python
    from repsim import activations
    from repsim.analysis import cka_matrix

    a = activations.open("runs/synthetic-f1-s0/activations.h5")
    b = activations.open("runs/synthetic-f3-s0/activations.h5")
    reps_a = {name: activations.select(a, name, time=-1) for name in activations.layer_names(a)}
    reps_b = {name: activations.select(b, name, time=-1) for name in activations.layer_names(b)}
    similarity = cka_matrix(reps_a, reps_b)   # DataArray (representation, representation_)
    ```
    """
    xs = as_list(reps_x, "reps_x")
    ys = xs if reps_y is None else as_list(reps_y, "reps_y")
    names = [f"reps_x[{i}]" for i in range(len(xs))]
    if reps_y is not None:
        names += [f"reps_y[{j}]" for j in range(len(ys))]
    inputs = xs if reps_y is None else xs + ys
    _check_options(kernel, debiased, threshold, n_stimuli(inputs[0]))
    positions = stimulus_positions(inputs, names)
    device = torch.device("cpu" if device is None else device)
    tensors = ((_checked_tensor(rep, rows, name, device), name)
               for rep, rows, name in zip(inputs, positions, names, strict=True))
    with single_threaded_torch(device):
        grams = _packed_grams(tensors, len(inputs), n_stimuli(inputs[0]), kernel, debiased,
                              threshold, device, normalize=True)
        grams_x = grams[:len(xs)]
        grams_y = grams_x if reps_y is None else grams[len(xs):]
        values = matmul(grams_x, grams_y.T).cpu().numpy()
    axis_x = representation_axis(reps_x)
    axes = [axis_x, axis_x if reps_y is None else representation_axis(reps_y)]
    return labelled_like([reps_x, reps_y], values, axes)


def minibatch_cka(batches: Iterable[Sequence], device: str | torch.device | None = None
                  ) -> np.ndarray:
    """Linear CKA between every pair of representations, accumulated over minibatches.

    Nguyen, Raghu & Kornblith (2021): for each minibatch of b >= 4 stimuli, the unbiased HSIC
    (Song et al. 2012) of every pair of representations is computed from that batch alone;
    the HSICs are averaged over batches and CKA is ``mean HSIC(K, L) / sqrt(mean HSIC(K, K)
    mean HSIC(L, L))``. Memory grows with b^2, not n^2. Since unbiased HSIC is a U-statistic,
    the batch mean is an unbiased estimate of the full-data unbiased HSIC (exactly equal to it
    when averaged over all b-subsets).

    Parameters
    ----------
    batches
        An iterable whose items are sequences of k representations of the same batch of stimuli
        (e.g. from [minibatches][repsim.analysis.cka.minibatches], which reads activation files
        block by block). To compare two models, put the layers of both in each batch.
    device
        Where to compute (e.g. ``"cuda"``); ``None`` is the CPU.

    Returns
    -------
    numpy.ndarray
        The ``(k, k)`` float64 CKA matrix; for two models, read its off-diagonal block.

    Raises
    ------
    ValueError
        For no batches, a batch of fewer than 4 stimuli, batches with different numbers of
        representations, or a representation constant across stimuli in every batch.
    """
    device = torch.device("cpu" if device is None else device)
    with single_threaded_torch(device):
        sums = _hsic_sums(batches, device)
    self_hsic = sums.diagonal()
    if not bool((self_hsic > 0).all()):
        empty = torch.nonzero(self_hsic <= 0).flatten().tolist()
        raise ValueError(f"representations {empty} are constant across stimuli in every "
                         f"batch: CKA is undefined")
    return (sums / torch.sqrt(torch.outer(self_hsic, self_hsic))).cpu().numpy()


def _hsic_sums(batches: Iterable[Sequence], device: torch.device) -> torch.Tensor:
    """Sum over minibatches of the unbiased HSIC of every pair of representations."""
    sums = None
    for number, batch in enumerate(batches):
        reps = as_list(batch, f"batch {number}")
        names = [f"batch {number} representation {i}" for i in range(len(reps))]
        size = n_stimuli(reps[0])
        if size < MIN_DEBIASED_STIMULI:
            raise ValueError(f"batch {number} has {size} stimuli; the unbiased HSIC needs at "
                             f"least {MIN_DEBIASED_STIMULI}")
        tensors = ((torch.from_numpy(m).to(device), name)
                   for m, name in zip(aligned_matrices(reps, names), names, strict=True))
        grams = _packed_grams(tensors, len(reps), size, "linear", True, 1.0, device,
                              normalize=False)
        hsic = matmul(grams, grams.T) / (size * (size - 3))
        if sums is not None and hsic.shape != sums.shape:
            raise ValueError(f"batch {number} has {len(reps)} representations, the first "
                             f"batch had {sums.shape[0]}")
        sums = hsic if sums is None else sums + hsic
    if sums is None:
        raise ValueError("minibatch_cka got no minibatches")
    return sums


def minibatches(reps: Sequence[ArrayLike] | Mapping[str, ArrayLike], batch_size: int,
                seed: int | None = None) -> Iterator[list[np.ndarray]]:
    """The representations ``reps`` block by block of stimuli, for
    [minibatch_cka][repsim.analysis.cka.minibatch_cka].

    Lazy xarray inputs (e.g. [repsim.activations.select][] on an open file) are read one block
    at a time, so memory holds one batch. The n stimuli are split into ``n // batch_size`` blocks
    of equal size (give or take one), each of at least ``batch_size`` stimuli; none is dropped.

    Parameters
    ----------
    reps
        Representations of the same stimuli (a sequence, or a dict in its order), matched
        across inputs by ``stimulus_id``.
    batch_size
        The smallest block, from 4 to the number of stimuli.
    seed
        ``None`` keeps file order; an integer shuffles stimuli into random batches first
        (Nguyen et al. use random minibatches).

    Yields
    ------
    list of numpy.ndarray
        One ``(b, features)`` matrix per representation, for the same b stimuli.

    Raises
    ------
    ValueError
        For a ``batch_size`` outside 4 to n, or stimuli that do not match.
    """
    reps = as_list(reps, "reps")
    names = [f"reps[{i}]" for i in range(len(reps))]
    positions = stimulus_positions(reps, names)
    total = n_stimuli(reps[0])
    if not MIN_DEBIASED_STIMULI <= batch_size <= total:
        raise ValueError(f"batch_size must be between {MIN_DEBIASED_STIMULI} and the number "
                         f"of stimuli ({total}), got {batch_size}")
    order = np.arange(total) if seed is None else np.random.default_rng(seed).permutation(total)
    for block in np.array_split(order, total // batch_size):
        block = np.sort(block)  # increasing rows read faster from chunked files
        yield [as_matrix(take_rows(rep, block if rows is None else rows[block]), name)
               for rep, rows, name in zip(reps, positions, names, strict=True)]


def bootstrap_cka(X: ArrayLike, Y: ArrayLike, kernel: str = "linear", debiased: bool = False,
                  threshold: float = 1.0, n_boot: int = 1000, seed: int = 0,
                  confidence: float = 0.95) -> BootstrapResult:
    """Percentile bootstrap confidence interval of [cka][repsim.analysis.cka.cka], resampling
    stimuli.

    Each resample draws n stimuli with replacement and recomputes CKA on those rows (the
    pairwise products/distances are computed once and indexed; the RBF bandwidth is
    recomputed per resample). Resamples in which CKA is undefined (e.g. every drawn stimulus
    the same) count in ``n_undefined`` and are left out of the interval. Duplicated stimuli
    enter the Gram matrices as they are (the plain nonparametric bootstrap): their identical
    pairs pull resampled CKA up a little, so the interval can sit above the estimate.

    Parameters
    ----------
    X, Y
        Representations ``(n, ...)`` of the same stimuli, as for
        [cka][repsim.analysis.cka.cka].
    kernel, debiased, threshold
        As for [cka][repsim.analysis.cka.cka].
    n_boot
        The number of resamples.
    seed
        Seeds the resampling: the same seed draws the same resamples.
    confidence
        The interval's coverage, between 0 and 1.

    Returns
    -------
    BootstrapResult
        The estimate, the interval and every resample's value
        ([BootstrapResult][repsim.analysis.resampling.BootstrapResult]).

    Raises
    ------
    ValueError
        As [cka][repsim.analysis.cka.cka], and for ``n_boot`` or ``confidence`` out of range.
    """
    x, y = _checked_pair(X, Y, kernel, debiased, threshold)
    bases = [_pairwise(torch.from_numpy(m), kernel) for m in (x, y)]

    def statistic(rows: np.ndarray) -> float:
        index = torch.from_numpy(rows)
        grams = []
        for base in bases:
            resampled = base[index][:, index]
            if kernel == "rbf" and _median(resampled) == 0:
                return float("nan")
            grams.append(_center_(_kernel_from_pairwise(resampled, kernel, threshold),
                                  debiased))
        norms = torch.linalg.vector_norm(grams[0]) * torch.linalg.vector_norm(grams[1])
        return float((grams[0] * grams[1]).sum() / norms) if norms > 0 else float("nan")

    with single_threaded_torch(CPU):
        return bootstrap(statistic, x.shape[0], n_boot=n_boot, seed=seed,
                         confidence=confidence)


# --------------------------------------------------------------------------- internals


def _check_options(kernel: str, debiased: bool, threshold: float, n: int) -> None:
    check_choice(kernel, KERNELS, "kernel")
    if kernel == "rbf" and not (np.isfinite(threshold) and threshold > 0):
        raise ValueError(f"the RBF threshold must be a positive number, got {threshold}")
    if debiased and n < MIN_DEBIASED_STIMULI:
        raise ValueError(f"debiased CKA needs at least {MIN_DEBIASED_STIMULI} stimuli, got {n}")


def _checked_pair(X, Y, kernel: str, debiased: bool, threshold: float):
    _check_options(kernel, debiased, threshold, n_stimuli(X))
    x, y = aligned_matrices([X, Y], ["X", "Y"])
    for matrix, name in ((x, "X"), (y, "Y")):
        _check_not_constant(matrix, name)
    return x, y


def _check_not_constant(matrix: np.ndarray, name: str) -> None:
    if is_constant(matrix):
        raise ValueError(f"{name} is constant across stimuli (every stimulus has the same "
                         f"pattern): its centered Gram matrix is zero and CKA is undefined")


def _pairwise(x: torch.Tensor, kernel: str) -> torch.Tensor:
    """What a kernel is computed from: dot products (linear) or squared distances (RBF)."""
    dots = matmul(x, x.T)
    if kernel == "linear":
        return dots
    norms = dots.diagonal()
    squared = (norms[:, None] + norms[None, :] - 2 * dots).clamp_min_(0)
    squared.fill_diagonal_(0)
    return squared


def _median(values: torch.Tensor) -> torch.Tensor:
    """The median of all entries as NumPy defines it (mean of the two middle ones if even)."""
    flat = values.reshape(-1)
    count = flat.numel()
    low = torch.kthvalue(flat, (count + 1) // 2).values
    high = torch.kthvalue(flat, count // 2 + 1).values
    return (low + high) / 2


def _kernel_from_pairwise(base: torch.Tensor, kernel: str, threshold: float) -> torch.Tensor:
    if kernel == "linear":
        return base
    median = _median(base)
    if median == 0:
        raise ValueError("the RBF bandwidth is zero: more than half of the pairwise squared "
                         "distances are zero (many identical stimuli)")
    return torch.exp(base / (-2 * threshold ** 2 * median))


def _center_(gram: torch.Tensor, debiased: bool) -> torch.Tensor:
    """Kornblith's centering, in place (on a Gram matrix just computed): double centering,
    or U-centering (zero diagonal, means over n - 2) for the unbiased HSIC."""
    n = gram.shape[0]
    if debiased:
        gram.fill_diagonal_(0)
        means = gram.sum(0) / (n - 2)
        means -= means.sum() / (2 * (n - 1))
    else:
        means = gram.mean(0)
        means -= means.mean() / 2
    gram.sub_(means[:, None]).sub_(means[None, :])
    if debiased:
        gram.fill_diagonal_(0)
    return gram


def _centered_gram(x: torch.Tensor, kernel: str, debiased: bool, threshold: float
                   ) -> torch.Tensor:
    return _center_(_kernel_from_pairwise(_pairwise(x, kernel), kernel, threshold), debiased)


def _upper_index(n: int, device: torch.device) -> torch.Tensor:
    """Flat positions ``i * n + j`` of the strict upper triangle (i < j), row by row."""
    rows, cols = torch.triu_indices(n, n, 1, device=device)
    return rows * n + cols


def _packed_grams(tensors: Iterable[tuple[torch.Tensor, str]], count: int, n: int,
                  kernel: str, debiased: bool, threshold: float, device: torch.device,
                  normalize: bool) -> torch.Tensor:
    """Centered Gram matrices packed as rows of a ``(count, n(n+1)/2)`` matrix whose dot
    products are Frobenius products: the diagonal, then the strict upper triangle times
    sqrt(2); with ``normalize``, each scaled to unit norm (ValueError naming a zero one).
    Rows are written in place, so one n x n matrix is alive at a time."""
    index = _upper_index(n, device)
    packed = torch.empty((count, n * (n + 1) // 2), dtype=torch.float64, device=device)
    for row, (x, name) in zip(packed, tensors, strict=True):
        gram = _centered_gram(x, kernel, debiased, threshold)
        scale = 1.0
        if normalize:
            norm = torch.linalg.vector_norm(gram)
            if not norm > 0:
                raise ValueError(f"{name}: the centered Gram matrix is zero, CKA is undefined")
            scale = 1.0 / norm
        torch.mul(gram.diagonal(), scale, out=row[:n])
        torch.index_select(gram.view(-1), 0, index, out=row[n:])
        row[n:] *= np.sqrt(2.0) * scale
    return packed


def _checked_tensor(rep, rows: np.ndarray | None, name: str, device: torch.device
                    ) -> torch.Tensor:
    """One representation, rows matched, checked and not constant, as a float64 tensor."""
    matrix = as_matrix(take_rows(rep, rows), name)
    _check_not_constant(matrix, name)
    return torch.from_numpy(matrix).to(device)


def _feature_space_linear_cka(x: np.ndarray, y: np.ndarray, debiased: bool) -> float:
    """Linear CKA from feature covariances (Kornblith's ``feature_space_linear_cka``)."""
    x = x - x.mean(0)
    y = y - y.mean(0)
    cross = np.linalg.norm(y.T @ x) ** 2
    self_x = np.linalg.norm(x.T @ x) ** 2
    self_y = np.linalg.norm(y.T @ y) ** 2
    if debiased:
        n = x.shape[0]
        rows_x, rows_y = np.einsum("ij,ij->i", x, x), np.einsum("ij,ij->i", y, y)

        def unbiased(product, a, b):
            # n(n-3) * unbiased HSIC, given centered features (Song et al. 2012, eq. 5)
            return product - n / (n - 2) * (a @ b) + a.sum() * b.sum() / ((n - 1) * (n - 2))

        cross, self_x, self_y = (unbiased(cross, rows_x, rows_y),
                                 unbiased(self_x, rows_x, rows_x),
                                 unbiased(self_y, rows_y, rows_y))
    return float(cross / np.sqrt(self_x * self_y))
