"""Linear probes: cross-validated multinomial logistic regression with nested selection of C.

The model is scikit-learn's ``LogisticRegression(C=C)`` (multinomial, L2 on the weights, the
intercepts unpenalized): minimize ``C * sum_i CE_i + ||W||^2 / 2`` over the training rows,
``CE_i`` the softmax cross-entropy. Features are standardized with the mean and standard
deviation of the training rows of each fit (features constant there get scale 1, as
StandardScaler does), so no statistic of a held-out row reaches a model.

Protocol of :func:`linear_probe`: stratified K-fold (``groups``: stratified group K-fold, so
that no group is in training and test at once), shuffled with ``seed``. In each outer
training set, ``inner_folds``-fold cross-validation (same splitter, same seed) picks C from
``Cs`` by mean inner validation accuracy (ties go to the smaller C, i.e. the stronger
regularization, as scikit-learn's grid search does with an ascending grid); a model refit on
the whole outer training set with that C predicts the outer test fold. ``accuracy`` pools the
out-of-fold predictions of all stimuli.

Speed comes from sharing work, not from a weaker model: every fit of one representation
(outer folds x (inner folds + 1) x Cs, here 120 by default) runs as one batch through a
batched L-BFGS, in which each problem keeps its own curvature pairs, step sizes and stopping
test (max |gradient| <= ``tol``, scikit-learn's criterion on the same mean-scaled objective)
while the data passes are two matrix products over all problems at once. Per-fit
standardization is folded into those products algebraically (``(x - mean) / scale @ W =
x @ (W / scale) - mean @ (W / scale)``), so one feature matrix serves every fit. Products run
in float32 (on a torch ``device`` when given); losses are summed in float64.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from repsim.analysis._arrays import (
    as_matrix,
    labels_of,
    matmul,
    n_stimuli,
    single_threaded_torch,
    stimulus_positions,
    take_rows,
)

DEFAULT_CS = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)
CONFIDENCE_Z = 1.959963984540054  # two-sided 95 % normal quantile, for the Wilson interval
LBFGS_MEMORY = 10
ARMIJO = 1e-4
MAX_BACKTRACKS = 20
PRECONDITIONER_RANK = 64
SUBSPACE_ITERATIONS = 3
# Memory for one batch of problems (parameters, gradients and L-BFGS pairs); larger batches
# are solved in chunks.
BATCH_BYTES = 1 << 30


@dataclass(frozen=True)
class ProbeResult:
    """Cross-validated accuracy of a linear probe.

    ``accuracy``: fraction of stimuli whose out-of-fold prediction is right; ``ci``: its 95 %
    Wilson score interval (stimuli treated as independent trials); ``chance``: the accuracy of
    always answering the most frequent class; ``fold_accuracies``: accuracy on each outer test
    fold; ``regularization``: the C chosen by nested validation for each outer fold;
    ``predictions``: the out-of-fold predicted label of every stimulus; ``classes``: the
    label values.
    """

    accuracy: float
    ci: tuple[float, float]
    chance: float
    fold_accuracies: np.ndarray
    regularization: np.ndarray
    predictions: np.ndarray
    classes: np.ndarray


def linear_probe(X, y, folds: int = 5, seed: int = 0, groups=None, *,
                 Cs: Sequence[float] = DEFAULT_CS, inner_folds: int = 3, tol: float = 1e-4,
                 max_iter: int = 1000, device: str | torch.device | None = None
                 ) -> ProbeResult:
    """Decode the labels ``y`` from ``X`` (stimuli x features) with a cross-validated linear
    probe (see the module docstring). ``y``/``groups``: arrays with one entry per stimulus,
    or names of stimulus coordinates of a DataArray ``X``. One C in ``Cs`` skips the nested
    selection."""
    return probe_cells([X], y, folds=folds, seed=seed, groups=groups, Cs=Cs,
                       inner_folds=inner_folds, tol=tol, max_iter=max_iter, device=device)[0]


def probe_cells(cells: Sequence, y, folds: int = 5, seed: int = 0, groups=None, *,
                Cs: Sequence[float] = DEFAULT_CS, inner_folds: int = 3, tol: float = 1e-4,
                max_iter: int = 1000, device: str | torch.device | None = None
                ) -> list[ProbeResult]:
    """:func:`linear_probe` for several representations of the same stimuli (e.g. every
    layer x time step), with the same labels and folds; stimuli are matched to the first
    representation by ``stimulus_id`` when all carry it, and ``y``/``groups`` follow the
    first representation's order."""
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
            predictions = _fit_and_predict(torch.from_numpy(features).to(device),
                                           torch.from_numpy(codes).to(device), len(classes),
                                           plan, tol, max_iter)
        results.append(plan.result(predictions, codes, classes))
    return results


# --------------------------------------------------------------------------- protocol


def _encode(labels: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    if labels.shape[0] != count:
        raise ValueError(f"y has {labels.shape[0]} labels for {count} stimuli")
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
    the Cs of each inner fold. ``sets`` holds each distinct training set once.
    """

    sets: list[np.ndarray]
    set_of: np.ndarray
    outer_of: np.ndarray
    evaluate: list[np.ndarray]
    C: np.ndarray
    outer: list[tuple[np.ndarray, np.ndarray]]
    Cs: tuple[float, ...]
    inner_folds: int

    @classmethod
    def build(cls, codes, groups, folds, inner_folds, Cs, seed) -> _Plan:
        outer = _splits(codes, groups, folds, seed, "outer folds")
        sets, set_of, outer_of, evaluate, C = [], [], [], [], []

        def add(train: np.ndarray, scored: np.ndarray, fold: int) -> None:
            sets.append(train)
            outer_of.append(fold)
            for c in Cs:
                set_of.append(len(sets) - 1)
                evaluate.append(scored)
                C.append(c)

        for fold, (outer_train, outer_test) in enumerate(outer):
            add(outer_train, outer_test, fold)
            if len(Cs) == 1:
                continue
            inner = _splits(codes[outer_train], None if groups is None else groups[outer_train],
                            inner_folds, seed, f"inner folds of outer fold {fold}")
            for inner_train, inner_test in inner:
                add(outer_train[inner_train], outer_train[inner_test], fold)
        return cls(sets, np.array(set_of), np.array(outer_of), evaluate, np.array(C), outer,
                   Cs, inner_folds)

    def result(self, predictions: np.ndarray, codes: np.ndarray, classes: np.ndarray
               ) -> ProbeResult:
        """Choose C per outer fold from the inner scores; pool the chosen refits' predictions.

        ``predictions`` (n, problems): predicted codes of every row under every fit.
        """
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
        return ProbeResult(accuracy, _wilson(correct, codes.size), float(chance),
                           np.array(fold_accuracies), np.array(chosen),
                           classes[out_of_fold], classes)


def _wilson(successes: int, trials: int) -> tuple[float, float]:
    """95 % Wilson score interval of a binomial proportion."""
    z2 = CONFIDENCE_Z ** 2
    p = successes / trials
    centre = (p + z2 / (2 * trials)) / (1 + z2 / trials)
    half = CONFIDENCE_Z * np.sqrt(p * (1 - p) / trials + z2 / (4 * trials ** 2)) \
        / (1 + z2 / trials)
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def _standardized(x: np.ndarray) -> np.ndarray:
    """Global z-scores with constant features dropped, as float32.

    Each fit re-standardizes with its own training rows, which undoes this affine map
    exactly; it only keeps float32 products well scaled. Features constant over all stimuli
    carry no information and would get zero weight in every fit.
    """
    scale = x.std(0)
    keep = scale > 0
    if not keep.any():
        raise ValueError("every feature is constant across stimuli: nothing to decode")
    return ((x[:, keep] - x[:, keep].mean(0)) / scale[keep]).astype(np.float32)


# --------------------------------------------------------------------------- solver


class _LogisticBatch:
    """Many multinomial L2 logistic regressions on one feature matrix (rows x features).

    Problem q trains on the rows of training set ``sets[set_of[q]]``, standardized with that
    set's mean and scale, and minimizes ``mean_{i in set} CE_i + ||W_q||^2 / (2 C_q |set|)``
    (scikit-learn's objective divided by the set size, so ``tol`` means what it means there)
    over ``theta_q = (W_q (features x classes), b_q (classes))``, flattened.

    Preconditioner (the initial inverse Hessian of L-BFGS): the Hessian of problem q is
    approximately ``c_q S ⊗ I + (1 / (C_q |set|)) I``, with ``S`` the standardized feature
    covariance of the outer training set the problem lives in and ``c_q`` the mean softmax
    curvature ``(1 - sum_k p_k^2) / (K - 1)`` at the current point; ``S`` is replaced by its
    top ``PRECONDITIONER_RANK`` eigenpairs (randomized subspace iteration) plus the next
    eigenvalue for the rest. Outer test rows never enter it. It cut L-BFGS iterations 3-4x
    on activation-like data; it changes the path, never the optimum. The spectra of all
    outer folds are stacked so that applying it is two matrix products for all problems.
    """

    def __init__(self, x: torch.Tensor, codes: torch.Tensor, classes: int,
                 sets: Sequence[np.ndarray], set_of: np.ndarray, spectrum_sets: Sequence[
                     np.ndarray], spectrum_of: np.ndarray, C: np.ndarray) -> None:
        self.x, self.codes, self.classes = x, codes, classes
        device = x.device
        n, p = x.shape
        self.rows = torch.arange(n, device=device)
        statistics = [_standardization(x, rows) for rows in sets]
        index = torch.as_tensor(set_of, device=device)
        self.mean = torch.stack([mean for mean, _ in statistics])[index]  # (problems, p)
        self.inv_scale = torch.stack([inv for _, inv in statistics])[index]
        generator = torch.Generator(device=device).manual_seed(0)
        spectra = [_top_spectrum(x, rows, generator) for rows in spectrum_sets]
        self.rank = spectra[0][0].shape[1]
        self.basis = torch.cat([basis for basis, _, _ in spectra], 1)  # (p, spectra * rank)
        self.eigenvalues = torch.stack([values for _, values, _ in spectra])  # (spectra, rank)
        self.tail = torch.stack([tail for _, _, tail in spectra])  # (spectra,)
        self.spectrum_of = torch.as_tensor(spectrum_of, device=device)
        weights = torch.zeros((len(set_of), n), device=device)
        for q, s in enumerate(set_of):
            weights[q, torch.as_tensor(sets[s], device=device)] = 1.0 / len(sets[s])
        self.row_weights = weights.T.contiguous()  # (n, problems)
        sizes = np.array([len(sets[s]) for s in set_of])
        self.penalty = torch.as_tensor(1.0 / (C * sizes), dtype=torch.float32, device=device)

    def _logits(self, ids: torch.Tensor, theta: torch.Tensor):
        n, p = self.x.shape
        weights = theta[:, :-self.classes].view(-1, p, self.classes)
        scaled = weights * self.inv_scale[ids, :, None]
        offset = theta[:, -self.classes:] - torch.einsum("ap,apk->ak", self.mean[ids], scaled)
        products = matmul(self.x, scaled.permute(1, 0, 2).reshape(p, -1))
        return products.view(n, len(ids), self.classes) + offset, weights

    def evaluate(self, ids: torch.Tensor, theta: torch.Tensor):
        """Objective (float64), gradient and softmax curvature of problems ``ids`` at
        ``theta`` (one row per problem)."""
        n, p = self.x.shape
        logits, weights = self._logits(ids, theta)
        top = logits.amax(2, keepdim=True)
        probabilities = torch.exp(logits - top)  # one exp pass for softmax and log-sum-exp
        totals = probabilities.sum(2, keepdim=True)
        probabilities /= totals
        log_norm = (top + torch.log(totals)).squeeze(2)
        row_weights = self.row_weights[:, ids]
        penalty = self.penalty[ids]
        true = logits[self.rows, :, self.codes]
        loss = ((log_norm - true).double() * row_weights).sum(0) \
            + 0.5 * penalty.double() * weights.double().square().sum((1, 2))
        curvature = ((1 - probabilities.square().sum(2)) * row_weights).sum(0) \
            / (self.classes - 1)
        residual = probabilities
        residual[self.rows, :, self.codes] -= 1.0
        residual *= row_weights[:, :, None]
        products = matmul(self.x.T, residual.view(n, -1)).view(p, len(ids), self.classes)
        column_sums = residual.sum(0)
        grad_weights = (products.permute(1, 0, 2) - self.mean[ids, :, None]
                        * column_sums[:, None, :]) * self.inv_scale[ids, :, None] \
            + penalty[:, None, None] * weights
        return loss, torch.cat([grad_weights.reshape(len(ids), -1), column_sums], 1), curvature

    def precondition(self, ids: torch.Tensor, vector: torch.Tensor, curvature: torch.Tensor
                     ) -> torch.Tensor:
        """Apply the approximate inverse Hessian (class docstring) to one vector per problem."""
        p, k = self.x.shape[1], self.classes
        count, spectra = len(ids), self.eigenvalues.shape[0]
        penalty = self.penalty[ids]
        own = self.spectrum_of[ids]
        weights = vector[:, :-k].view(count, p, k)
        tail = 1.0 / (curvature * self.tail[own] + penalty)  # (count,)
        every = matmul(self.basis.T, weights.permute(1, 0, 2).reshape(p, -1))
        every = every.view(spectra, self.rank, count, k)
        problem = torch.arange(count, device=ids.device)
        gain = 1.0 / (curvature[:, None] * self.eigenvalues[own] + penalty[:, None]) \
            - tail[:, None]  # (count, rank)
        masked = torch.zeros_like(every)
        masked[own, :, problem] = every[own, :, problem] * gain[:, :, None]
        correction = matmul(self.basis, masked.view(spectra * self.rank, -1)).view(p, count, k)
        out = weights * tail[:, None, None] + correction.permute(1, 0, 2)
        bias = vector[:, -k:] / (curvature + penalty)[:, None]
        return torch.cat([out.reshape(count, -1), bias], 1)

    def predict(self, theta: torch.Tensor) -> np.ndarray:
        """Predicted class codes of every row under every problem: (rows, problems)."""
        ids = torch.arange(theta.shape[0], device=self.x.device)
        return self._logits(ids, theta)[0].argmax(2).cpu().numpy()


def _standardization(x: torch.Tensor, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and inverse scale of ``x[rows]`` (float64 sums; scale 1 where constant, as
    scikit-learn's StandardScaler does)."""
    block = x[torch.as_tensor(rows, device=x.device)].double()
    scale = block.std(0, correction=0)
    scale[scale <= 1e-6] = 1.0
    return block.mean(0).float(), scale.reciprocal().float()


def _top_spectrum(x: torch.Tensor, rows: np.ndarray, generator: torch.Generator):
    """Top eigenpairs of the standardized covariance of ``x[rows]`` by randomized subspace
    iteration (Halko, Martinsson & Tropp 2011), and the next eigenvalue (0 if none left)."""
    mean, inv_scale = _standardization(x, rows)
    standardized = (x[torch.as_tensor(rows, device=x.device)] - mean) * inv_scale
    count, features = standardized.shape
    width = min(PRECONDITIONER_RANK + 8, features)
    basis = torch.randn((features, width), generator=generator, device=x.device)
    for _ in range(SUBSPACE_ITERATIONS):
        basis = torch.linalg.qr(matmul(standardized.T, matmul(standardized, basis)))[0]
    projected = matmul(standardized, basis)
    values, vectors = torch.linalg.eigh(projected.T @ projected / count)
    values, vectors = values.flip(0).clamp_min(0), vectors.flip(1)
    rank = min(PRECONDITIONER_RANK, width)
    tail = values[rank] if rank < width else values.new_zeros(())
    return (basis @ vectors[:, :rank]).contiguous(), values[:rank].contiguous(), tail


def _fit_and_predict(x: torch.Tensor, codes: torch.Tensor, classes: int, plan: _Plan,
                     tol: float, max_iter: int) -> np.ndarray:
    """Solve every problem of ``plan`` (in memory-bounded chunks) and predict every row."""
    size = (x.shape[1] + 1) * classes
    chunk = max(1, BATCH_BYTES // (4 * size * (2 * LBFGS_MEMORY + 10)))
    columns = []
    for start in range(0, len(plan.C), chunk):
        part = slice(start, min(start + chunk, len(plan.C)))
        used, set_of = np.unique(plan.set_of[part], return_inverse=True)
        folds, spectrum_of = np.unique(plan.outer_of[plan.set_of[part]], return_inverse=True)
        batch = _LogisticBatch(x, codes, classes, [plan.sets[s] for s in used], set_of,
                               [plan.outer[f][0] for f in folds], spectrum_of, plan.C[part])
        theta, unfinished = _lbfgs(batch, len(set_of), size, x.device, tol, max_iter)
        if unfinished:
            warnings.warn(f"{unfinished} of {len(set_of)} logistic fits did not reach "
                          f"max|gradient| <= {tol} in {max_iter} iterations",
                          RuntimeWarning, stacklevel=3)
        columns.append(batch.predict(theta))
    return np.concatenate(columns, axis=1)


def _lbfgs(problems: _LogisticBatch, count: int, size: int, device: torch.device,
           tol: float, max_iter: int) -> tuple[torch.Tensor, int]:
    """Minimize ``count`` independent objectives from zero with batched, preconditioned
    L-BFGS; returns the solutions and how many hit ``max_iter`` unfinished.

    Each problem has its own curvature pairs (``LBFGS_MEMORY``), initial inverse Hessian
    (``problems.precondition``) and Armijo backtracking with safeguarded quadratic
    interpolation. A problem stops when max |gradient| <= ``tol``, or when no step along a
    descent direction lowers it any more (the float32 resolution of the objective). The
    state of finished problems is dropped, so each pass touches unfinished problems only.
    """
    solution = torch.zeros((count, size), device=device)
    ids = torch.arange(count, device=device)  # original index of each row of the state
    theta = torch.zeros((count, size), device=device)
    loss, grad, curvature = problems.evaluate(ids, theta)
    steps = torch.zeros((LBFGS_MEMORY, count, size), device=device)
    changes = torch.zeros_like(steps)
    rho = torch.zeros((LBFGS_MEMORY, count), device=device)
    finished = grad.abs().amax(1) <= tol
    for iteration in range(max_iter):
        if bool(finished.any()):
            solution[ids[finished]] = theta[finished]
            keep = ~finished
            ids, theta, loss, grad, curvature = (a[keep] for a in
                                                 (ids, theta, loss, grad, curvature))
            steps, changes, rho = steps[:, keep], changes[:, keep], rho[:, keep]
        if ids.numel() == 0:
            return solution, 0
        direction = -_two_loop(grad, steps, changes, rho, iteration,
                               functools.partial(problems.precondition, ids,
                                                 curvature=curvature))
        slope = (grad * direction).sum(1)
        uphill = slope >= 0  # stale curvature pairs: restart those from the preconditioner
        if bool(uphill.any()):
            rho[:, uphill] = 0.0
            direction[uphill] = -problems.precondition(ids[uphill], grad[uphill],
                                                       curvature[uphill])
            slope[uphill] = (grad[uphill] * direction[uphill]).sum(1)
        step = torch.ones(ids.numel(), device=device)
        trial_loss, trial_grad, trial_curvature = problems.evaluate(ids, theta + direction)
        failing = trial_loss > loss + ARMIJO * slope.double()
        for _ in range(MAX_BACKTRACKS):
            if not bool(failing.any()):
                break
            which = torch.nonzero(failing).flatten()
            t = step[which].double()
            excess = trial_loss[which] - loss[which] - slope[which].double() * t
            quadratic = -slope[which].double() * t * t / (2 * excess)
            step[which] = torch.minimum(torch.maximum(quadratic, 0.1 * t), 0.5 * t).float()
            (trial_loss[which], trial_grad[which],
             trial_curvature[which]) = problems.evaluate(
                ids[which], theta[which] + step[which, None] * direction[which])
            failing[which] = trial_loss[which] > loss[which] + ARMIJO \
                * step[which].double() * slope[which].double()
        accept = ~failing
        moved = step[:, None] * direction
        change = trial_grad - grad
        curvature_pair = (moved * change).sum(1)
        slot = iteration % LBFGS_MEMORY
        steps[slot], changes[slot] = moved, change
        rho[slot] = torch.where(accept & (curvature_pair > 1e-10 * change.square().sum(1)),
                                1.0 / curvature_pair, 0.0)
        theta[accept] += moved[accept]
        loss[accept], grad[accept] = trial_loss[accept], trial_grad[accept]
        curvature[accept] = trial_curvature[accept]
        finished = (grad.abs().amax(1) <= tol) | failing
    solution[ids] = theta
    return solution, int((~finished).sum())


def _two_loop(grad, steps, changes, rho, iteration: int, initial: Callable) -> torch.Tensor:
    """L-BFGS two-loop recursion, batched: approximately (inverse Hessian) @ grad per row,
    with ``initial`` as the inverse Hessian the curvature pairs correct."""
    slots = [(iteration - 1 - j) % LBFGS_MEMORY for j in range(min(iteration, LBFGS_MEMORY))]
    q = grad.clone()
    alphas = []
    for slot in slots:
        alpha = rho[slot] * (steps[slot] * q).sum(1)
        q -= alpha[:, None] * changes[slot]
        alphas.append(alpha)
    q = initial(q)
    for slot, alpha in zip(reversed(slots), reversed(alphas), strict=True):
        beta = rho[slot] * (changes[slot] * q).sum(1)
        q += (alpha - beta)[:, None] * steps[slot]
    return q
