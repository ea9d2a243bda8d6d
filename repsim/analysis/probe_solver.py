"""The solver behind :mod:`~repsim.analysis.probes`: many L2 logistic regressions at once.

Fit q is scikit-learn's ``LogisticRegression(C=C_q)`` (multinomial) on the training rows
``T_q = sets[set_of[q]]`` of one feature matrix, standardized with the mean and scale of
those rows (scale 1 where constant, as StandardScaler does): minimize
``C_q * sum_{i in T_q} CE_i + ||W_q||^2 / 2`` over the weights ``W_q`` (features x classes)
and unpenalized intercepts ``b_q``. The solver works on that objective divided by
``C_q |T_q|`` (a mean loss, as scikit-learn's lbfgs does, so ``tol`` means what it means
there). Each fit is solved in one of two exact forms, chosen by its shape:

- primal, when the fit has at most ``KERNEL_RATIO`` times as many features as training rows:
  L-BFGS over ``(W, b)``, with per-fit standardization folded into the products
  (``(x - mean) / scale @ W = x @ (W / scale) - mean @ (W / scale)``) so that one float32
  feature matrix serves every fit, and a low-rank preconditioner
  (:class:`~repsim.analysis.probe_forms.PrimalBatch`).
- kernel, when it has more: the optimal ``W`` lies in the span of
  the standardized training rows ``Z`` (representer theorem), so only ``K = Z Z^T``
  matters. With ``K = U diag(lam) U^T`` and ``V = Z^T U diag(lam^-1/2)`` (orthonormal
  columns), ``W = V Omega`` turns the fit into the same problem over ``r <= |T_q|``
  features ``F = Z V`` (``U diag(lam^1/2)`` on the training rows; ``k(x) U diag(lam^-1/2)``
  for any row ``x`` with cross-kernel ``k(x)``): the same logits, ``||Omega|| = ||W||`` and
  the same gradient norm. It runs in float64, and its preconditioner is exact for the
  feature covariance, ``diag(lam) / |T_q|``
  (:class:`~repsim.analysis.probe_forms.KernelBatch`). Directions with ``lam`` below the
  eigensolver's rounding (``lam_max * |T_q| * eps``) are dropped.

Both forms go through one batched L-BFGS (:func:`_lbfgs`): every fit keeps its own
curvature pairs, step sizes and stopping test, while the data passes are matrix products
over all fits at once. A primal fit stops at max |gradient| <= ``tol`` (scikit-learn's test),
a kernel fit at ||gradient||_2 <= ``tol``, which bounds the largest entry of its gradient
with respect to ``(W, b)`` too. A fit that reaches ``max_iter``, or whose line search finds
no decrease along the preconditioned gradient before that, is counted as unconverged.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from repsim.analysis.probe_forms import Batch, KernelBatch, PrimalBatch, kernel_form

LBFGS_MEMORY = 10
ARMIJO = 1e-4
MAX_BACKTRACKS = 20
# Memory for one batch of problems (parameters, gradients and L-BFGS pairs); larger batches
# are solved in chunks.
BATCH_BYTES = 1 << 30
# A fit with more than this many features per training row is solved in kernel form. Where
# features outnumber rows only a little, the primal form is cheaper (the kernel form's eigh
# and float64 passes cost 4-5x more at 2000 stimuli x 2048-3300 features, measured) and meets
# the same test; far beyond, the primal's max |gradient| test passes far from the optimum
# (objective 12x too high at 24 rows x 200,000 features, C=10) while the kernel form is exact
# and cheaper.
KERNEL_RATIO = 2


@dataclass(frozen=True)
class Solution:
    """Solved fits: ``predictions`` (rows, fits), the predicted class code of every row under
    every fit (no rows when not asked for); ``short`` (fits,), whether each fit stopped short
    of ``tol``; with ``coefficients=True``, ``weights`` (one (features, classes) array per
    fit, on the fit's standardized features) and ``intercepts`` (fits, classes)."""

    predictions: np.ndarray
    short: np.ndarray
    weights: list[np.ndarray] | None = None
    intercepts: np.ndarray | None = None

    @property
    def unconverged(self) -> int:
        """How many fits stopped short of ``tol``."""
        return int(self.short.sum())


def solve(x: np.ndarray | Sequence[np.ndarray], codes: np.ndarray, classes: int,
          sets: Sequence[np.ndarray], set_of: np.ndarray, C: np.ndarray,
          spectrum_of: np.ndarray, *, tol: float, max_iter: int, device: torch.device,
          matrix_of: np.ndarray | None = None, predictions: bool = True,
          coefficients: bool = False) -> Solution:
    """Solve every fit (module docstring) on ``x`` (rows x features, float64; the probes pass
    it globally standardized, the units of ``probe_forms.CONSTANT_SCALE``), or on several
    such matrices with the same rows (e.g. a recording's time steps, or layers).

    ``set_of[q]``: the index in ``sets`` of fit q's training rows; ``matrix_of[s]``: the
    index in ``x`` of the matrix whose rows set s holds (None: one matrix);
    ``spectrum_of[q]``: the index of a set of the same matrix whose covariance spectrum
    preconditions a primal fit q (for the probes: the outer training set, shared by the fits
    of one outer fold). ``codes``: the rows' labels, ``(rows,)`` for every fit or ``(rows,
    fits)`` per fit (a permutation test's relabelled fits). The kernel fits of every matrix
    are solved in one batch, and so are the primal fits. ``predictions=False``
    skips the predictions (and the kernel forms' products with the rows outside their
    sets)."""
    matrices = [x] if isinstance(x, np.ndarray) else list(x)
    matrix_of = np.zeros(len(sets), dtype=np.int64) if matrix_of is None else matrix_of
    n = matrices[0].shape[0]
    tensors = [torch.from_numpy(matrix).to(device) for matrix in matrices]
    labels = torch.from_numpy(codes).to(device)
    widths = np.array([matrix.shape[1] for matrix in matrices])
    kernel = widths[matrix_of[set_of]] > KERNEL_RATIO * np.array([len(s) for s in sets])[set_of]
    predicted = np.empty((n if predictions else 0, len(C)), dtype=np.int64)
    weights: list = [None] * len(C)
    intercepts = np.empty((len(C), classes))
    short = np.zeros(len(C), dtype=bool)
    for use_kernel in (False, True):
        fits = np.flatnonzero(kernel == use_kernel)
        if fits.size == 0:
            continue
        if use_kernel:
            forms = {s: kernel_form(tensors[matrix_of[s]],
                                    torch.as_tensor(sets[s], device=device), predictions)
                     for s in np.unique(set_of[fits])}
            width = max(form.basis.shape[1] for form in forms.values())
            dtype: torch.dtype = torch.float64
        else:  # the matrices of its fits, zero-padded to the widest
            read = np.unique(matrix_of[set_of[fits]])
            width = int(widths[read].max())
            stack = torch.zeros((len(read), n, width), dtype=torch.float32, device=device)
            for i, m in enumerate(read):
                stack[i, :, :widths[m]] = tensors[m]
            dtype = torch.float32
        size = (width + 1) * classes
        chunk = max(1, BATCH_BYTES // (dtype.itemsize * size * (2 * LBFGS_MEMORY + 10)))
        for start in range(0, fits.size, chunk):
            part = fits[start:start + chunk]
            used, local_set = np.unique(set_of[part], return_inverse=True)
            part_labels = labels if labels.dim() == 1 else labels[:, part]
            if use_kernel:
                batch: Batch = KernelBatch([forms[s] for s in used], width, part_labels,
                                           classes, local_set, C[part])
            else:
                spectra, local_spectrum = np.unique(spectrum_of[part], return_inverse=True)
                batch = PrimalBatch(stack, part_labels, classes, [sets[s] for s in used],
                                    local_set, np.searchsorted(read, matrix_of[used]),
                                    [sets[s] for s in spectra], local_spectrum,
                                    np.searchsorted(read, matrix_of[spectra]), C[part])
            theta, short[part] = _lbfgs(batch, len(part), size, tol, max_iter)
            if predictions:
                predicted[:, part] = batch.predict(theta)
            if coefficients:
                part_weights, intercepts[part] = batch.coefficients(theta)
                for q, value in zip(part, part_weights, strict=True):
                    weights[q] = value[:widths[matrix_of[set_of[q]]]]
    if not coefficients:
        return Solution(predicted, short)
    return Solution(predicted, short, weights, intercepts)


# --------------------------------------------------------------------------- L-BFGS


def _lbfgs(problems: Batch, count: int, size: int, tol: float, max_iter: int
           ) -> tuple[torch.Tensor, np.ndarray]:
    """Minimize ``count`` independent objectives from zero with batched, preconditioned
    L-BFGS; returns the solutions and whether each stopped short of ``tol``.

    Each problem has its own curvature pairs (``LBFGS_MEMORY``), initial inverse Hessian
    (``problems.precondition``, scaled to the curvature of its latest pair where
    ``problems.rescale_preconditioner``) and Armijo backtracking with safeguarded quadratic
    interpolation. A problem converges when ``problems.gradient_size`` <= ``tol``. When its
    line search fails, its curvature pairs are dropped and the preconditioned gradient is
    tried next; when that fails too, the problem has stalled (e.g. at the float32
    resolution of its objective) and stops unconverged, as do the problems left at
    ``max_iter``. The state of stopped problems is dropped, so each pass touches the others
    only.
    """
    device, dtype = problems.codes.device, problems.dtype
    solution = torch.zeros((count, size), dtype=dtype, device=device)
    ids = torch.arange(count, device=device)  # original index of each row of the state
    theta = torch.zeros((count, size), dtype=dtype, device=device)
    loss, grad, curvature = problems.evaluate(ids, theta)
    steps = torch.zeros((LBFGS_MEMORY, count, size), dtype=dtype, device=device)
    changes = torch.zeros_like(steps)
    rho = torch.zeros((LBFGS_MEMORY, count), dtype=dtype, device=device)
    stopped = problems.gradient_size(grad) <= tol
    short = torch.zeros(count, dtype=torch.bool, device=device)
    for iteration in range(max_iter):
        if bool(stopped.any()):
            solution[ids[stopped]] = theta[stopped]
            keep = ~stopped
            ids, theta, loss, grad, curvature = (a[keep] for a in
                                                 (ids, theta, loss, grad, curvature))
            steps, changes, rho = steps[:, keep], changes[:, keep], rho[:, keep]
        if ids.numel() == 0:
            return solution, short.cpu().numpy()
        direction = -_two_loop(grad, steps, changes, rho, iteration,
                               functools.partial(problems.precondition, ids,
                                                 curvature=curvature),
                               problems.rescale_preconditioner)
        slope = (grad * direction).sum(1)
        uphill = slope >= 0  # stale curvature pairs: restart those from the preconditioner
        if bool(uphill.any()):
            rho[:, uphill] = 0.0
            direction[uphill] = -problems.precondition(ids[uphill], grad[uphill],
                                                       curvature[uphill])
            slope[uphill] = (grad[uphill] * direction[uphill]).sum(1)
        fresh = (rho == 0).all(0)  # the direction is the preconditioned gradient
        step = torch.ones(ids.numel(), dtype=dtype, device=device)
        trial_loss, trial_grad, trial_curvature = problems.evaluate(ids, theta + direction)
        failing = trial_loss > loss + ARMIJO * slope.double()
        for _ in range(MAX_BACKTRACKS):
            if not bool(failing.any()):
                break
            which = torch.nonzero(failing).flatten()
            t = step[which].double()
            excess = trial_loss[which] - loss[which] - slope[which].double() * t
            quadratic = -slope[which].double() * t * t / (2 * excess)
            step[which] = torch.minimum(torch.maximum(quadratic, 0.1 * t), 0.5 * t).to(dtype)
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
        rho[:, failing] = 0.0
        theta[accept] += moved[accept]
        loss[accept], grad[accept] = trial_loss[accept], trial_grad[accept]
        curvature[accept] = trial_curvature[accept]
        stuck = failing & fresh
        short[ids[stuck]] = True
        stopped = (problems.gradient_size(grad) <= tol) | stuck
    solution[ids] = theta
    short[ids[~stopped]] = True
    return solution, short.cpu().numpy()


def _two_loop(grad, steps, changes, rho, iteration: int, initial: Callable,
              rescale: bool) -> torch.Tensor:
    """L-BFGS two-loop recursion, batched: approximately (inverse Hessian) @ grad per row,
    with ``initial`` (scaled to the latest curvature pair, with ``rescale``) as the inverse
    Hessian the curvature pairs correct."""
    slots = [(iteration - 1 - j) % LBFGS_MEMORY for j in range(min(iteration, LBFGS_MEMORY))]
    q = grad.clone()
    alphas = []
    for slot in slots:
        alpha = rho[slot] * (steps[slot] * q).sum(1)
        q -= alpha[:, None] * changes[slot]
        alphas.append(alpha)
    q = initial(q)
    if rescale and slots:  # scaled to the latest pair's curvature (Nocedal & Wright 7.20)
        latest = changes[slots[0]]
        fitted = (latest * initial(latest)).sum(1) * rho[slots[0]]
        q *= torch.where(fitted > 0, 1.0 / fitted, 1.0)[:, None]
    for slot, alpha in zip(reversed(slots), reversed(alphas), strict=True):
        beta = rho[slot] * (changes[slot] * q).sum(1)
        q += (alpha - beta)[:, None] * steps[slot]
    return q
