"""The two exact forms of the probes' logistic fits, as batches for the L-BFGS of
:mod:`~repsim.analysis.probe_solver` (whose module docstring states the objective).

A batch holds many fits over one feature matrix and gives their objective, gradient,
curvature, preconditioner and predictions: :class:`PrimalBatch` over the standardized
features, :class:`KernelBatch` over the training rows' kernel (:func:`kernel_form`).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from repsim.analysis._arrays import matmul

PRECONDITIONER_RANK = 64
SUBSPACE_ITERATIONS = 3
# Memory for the block of training rows copied while a kernel is accumulated.
KERNEL_BLOCK_BYTES = 1 << 26
# Features whose standard deviation over a fit's training rows is at most this (in units of
# the global standard deviation) are constant there and get scale 1, as in StandardScaler.
CONSTANT_SCALE = 1e-6
# Batches keep the layouts (:class:`Blocks`) of this many recent groups of problems in play
# (those of the iterations, and those of recent backtracking steps).
LAYOUTS_KEPT = 4


class Blocks:
    """Problems grouped by the matrix they read (a stack ``data`` of ``(groups, rows,
    dims)``), so that a pass over the data for any problems is one batched product: the
    problems of a group sit side by side in its block of weights (padded to the most problems
    any group in play has). The layout of recent groups of problems in play is kept (the
    problems in play change only when some stop, or in a backtracking step)."""

    def __init__(self, data: torch.Tensor, group_of: torch.Tensor) -> None:
        self.data, self.group_of = data, group_of
        self._layouts: OrderedDict[bytes, tuple] = OrderedDict()

    def _layout(self, ids: torch.Tensor) -> tuple:
        """The groups in play's data, each problem's group (among them) and place within its
        group's block, and the block's width in problems."""
        key = ids.cpu().numpy().tobytes()
        if key in self._layouts:
            self._layouts.move_to_end(key)
            return self._layouts[key]
        used, slot = torch.unique(self.group_of[ids], return_inverse=True)
        order = torch.argsort(slot, stable=True)
        counts = torch.bincount(slot)
        place = torch.empty_like(order)
        place[order] = torch.arange(len(ids), device=ids.device) \
            - (torch.cumsum(counts, 0) - counts)[slot[order]]
        data = self.data if len(used) == len(self.data) else self.data[used]
        self._layouts[key] = (data, slot, place, int(counts.max()))
        if len(self._layouts) > LAYOUTS_KEPT:
            self._layouts.popitem(last=False)
        return self._layouts[key]

    def forward(self, ids: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """``data @ weights`` of each problem: weights (problems, dims, k) -> (problems,
        rows, k)."""
        return self._product(ids, weights, transpose=False)

    def backward(self, ids: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        """``data^T @ residual`` of each problem: residual (problems, rows, k) -> (problems,
        dims, k)."""
        return self._product(ids, residual, transpose=True)

    def _product(self, ids: torch.Tensor, values: torch.Tensor, transpose: bool
                 ) -> torch.Tensor:
        """Each problem's group data (transposed or not) times its ``values`` (problems,
        inner, k), as one batched product over the groups in play."""
        data, slot, place, most = self._layout(ids)
        if transpose:
            data = data.transpose(1, 2)
        groups, outer, inner = data.shape
        k = values.shape[2]
        blocks = values.new_zeros((groups, most, inner, k))
        blocks[slot, place] = values
        products = matmul(data, blocks.permute(0, 2, 1, 3).reshape(groups, inner, most * k))
        return products.view(groups, outer, most, k)[slot, :, place]


class Batch:
    """What the two forms share: problem q has training rows ``sets[set_of[q]]`` and
    parameters ``theta_q = (weights (dims x classes), intercepts (classes))``, flattened,
    and minimizes ``mean_{i in set} CE_i + ||weights||^2 / (2 C_q |set|)``. A subclass gives
    the logits of every row and the back-projection of residuals onto the weights. ``codes``
    are the rows' labels, ``(rows,)`` for every problem or ``(rows, problems)`` per problem
    (permuted labels)."""

    dtype: torch.dtype
    # Whether L-BFGS scales the preconditioner to the curvature of its latest pair.
    rescale_preconditioner: bool

    def __init__(self, codes: torch.Tensor, classes: int, rows: int,
                 sets: Sequence[np.ndarray], set_of: np.ndarray, C: np.ndarray) -> None:
        device = codes.device
        self.codes, self.classes = codes, classes
        self.rows = torch.arange(rows, device=device)
        weights = torch.zeros((len(set_of), rows), dtype=self.dtype, device=device)
        for q, s in enumerate(set_of):
            weights[q, torch.as_tensor(sets[s], device=device)] = 1.0 / len(sets[s])
        self.row_weights = weights.T.contiguous()  # (rows, problems)
        sizes = np.array([len(sets[s]) for s in set_of])
        self.penalty = torch.as_tensor(1.0 / (C * sizes), dtype=self.dtype, device=device)

    def _logits(self, ids: torch.Tensor, theta: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (rows, problems, classes) and the weights (problems, dims, classes)."""
        raise NotImplementedError

    def _back(self, ids: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        """The loss gradient on the weights, (problems, dims, classes), from the weighted
        residuals (rows, problems, classes)."""
        raise NotImplementedError

    def gradient_size(self, grad: torch.Tensor) -> torch.Tensor:
        """The size of each problem's gradient that its stopping test compares with ``tol``."""
        raise NotImplementedError

    def precondition(self, ids: torch.Tensor, vector: torch.Tensor, curvature: torch.Tensor
                     ) -> torch.Tensor:
        """The initial inverse Hessian of L-BFGS applied to one vector per problem."""
        raise NotImplementedError

    def coefficients(self, theta: torch.Tensor) -> tuple[list[np.ndarray], np.ndarray]:
        """Weights (features, classes) of each problem and intercepts (problems, classes)."""
        raise NotImplementedError

    def evaluate(self, ids: torch.Tensor, theta: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Objective (float64), gradient and mean softmax curvature ``(1 - sum_k p_k^2) /
        (K - 1)`` of problems ``ids`` at ``theta`` (one row per problem)."""
        logits, weights = self._logits(ids, theta)
        top = logits.amax(2, keepdim=True)
        probabilities = torch.exp(logits - top)  # one exp pass for softmax and log-sum-exp
        totals = probabilities.sum(2, keepdim=True)
        probabilities /= totals
        log_norm = (top + torch.log(totals)).squeeze(2)
        row_weights = self.row_weights[:, ids]
        penalty = self.penalty[ids]
        codes = self.codes if self.codes.dim() == 1 else self.codes[:, ids]
        picked = (self.rows, slice(None), codes) if codes.dim() == 1 else (
            self.rows[:, None], torch.arange(len(ids), device=ids.device), codes)
        true = logits[picked]
        loss = ((log_norm - true).double() * row_weights).sum(0) \
            + 0.5 * penalty.double() * weights.double().square().sum((1, 2))
        curvature = ((1 - probabilities.square().sum(2)) * row_weights).sum(0) \
            / (self.classes - 1)
        residual = probabilities
        residual[picked] -= 1.0
        residual *= row_weights[:, :, None]
        grad_weights = self._back(ids, residual) + penalty[:, None, None] * weights
        return loss, torch.cat([grad_weights.reshape(len(ids), -1), residual.sum(0)], 1), \
            curvature

    def predict(self, theta: torch.Tensor) -> np.ndarray:
        """Predicted class codes of every row under every problem: (rows, problems)."""
        ids = torch.arange(theta.shape[0], device=theta.device)
        return self._logits(ids, theta)[0].argmax(2).cpu().numpy()


class PrimalBatch(Batch):
    """Fits in primal form on float32 feature matrices ``x`` (matrices x rows x features,
    the same rows; a matrix with fewer features padded with zero columns, which stay at
    weight 0); the weights are ``W_q`` on the features of its set's matrix
    (``set_matrix``) standardized with that set's mean and scale.

    Preconditioner (the initial inverse Hessian of L-BFGS): the Hessian of problem q is
    approximately ``c_q S ⊗ I + (1 / (C_q |set|)) I``, with ``S`` the standardized feature
    covariance of its spectrum set (``spectrum_sets[spectrum_of[q]]``, of the same matrix)
    and ``c_q`` the mean softmax curvature at the current point; ``S`` is replaced by its top
    ``PRECONDITIONER_RANK`` eigenpairs (randomized subspace iteration) plus the next
    eigenvalue for the rest. It cut L-BFGS iterations 3-4x on activation-like data; it
    changes the path, never the optimum. The spectra's bases are stacked, so that applying
    it is two batched products for all problems (:class:`Blocks`, by spectrum).
    """

    dtype = torch.float32
    # Scaling it to the latest curvature pair cost evaluations here (157 -> 184 on
    # bench_analysis.py --quick, probes at one C) and left float32 fits unconverged.
    rescale_preconditioner = False

    def __init__(self, x: torch.Tensor, codes: torch.Tensor, classes: int,
                 sets: Sequence[np.ndarray], set_of: np.ndarray, set_matrix: np.ndarray,
                 spectrum_sets: Sequence[np.ndarray], spectrum_of: np.ndarray,
                 spectrum_matrix: np.ndarray, C: np.ndarray) -> None:
        super().__init__(codes, classes, x.shape[1], sets, set_of, C)
        self.features = x.shape[2]
        device = x.device
        statistics = [standardization(x[m], torch.as_tensor(rows, device=device))
                      for rows, m in zip(sets, set_matrix, strict=True)]
        index = torch.as_tensor(set_of, device=device)
        self.mean = torch.stack([mean for mean, _ in statistics])[index]  # (problems, p)
        self.inv_scale = torch.stack([inv for _, inv in statistics])[index]
        generator = torch.Generator(device=device).manual_seed(0)
        spectra = [top_spectrum(x[m], torch.as_tensor(rows, device=device), generator)
                   for rows, m in zip(spectrum_sets, spectrum_matrix, strict=True)]
        self.eigenvalues = torch.stack([values for _, values, _ in spectra])  # (spectra, rank)
        self.tail = torch.stack([tail for _, _, tail in spectra])  # (spectra,)
        self.spectrum_of = torch.as_tensor(spectrum_of, device=device)
        self.spectra = Blocks(torch.stack([basis for basis, _, _ in spectra]),  # (S, p, rank)
                              self.spectrum_of)
        self.blocks = Blocks(x, torch.as_tensor(set_matrix, device=device)[index])

    def _logits(self, ids, theta):
        weights = theta[:, :-self.classes].view(len(ids), self.features, self.classes)
        scaled = weights * self.inv_scale[ids, :, None]
        offset = theta[:, -self.classes:] - torch.einsum("ap,apk->ak", self.mean[ids], scaled)
        return self.blocks.forward(ids, scaled).permute(1, 0, 2) + offset, weights

    def _back(self, ids, residual):
        products = self.blocks.backward(ids, residual.permute(1, 0, 2))
        return (products - self.mean[ids, :, None] * residual.sum(0)[:, None, :]) \
            * self.inv_scale[ids, :, None]

    def gradient_size(self, grad: torch.Tensor) -> torch.Tensor:
        """max |gradient| per problem: scikit-learn's stopping test."""
        return grad.abs().amax(1)

    def precondition(self, ids: torch.Tensor, vector: torch.Tensor, curvature: torch.Tensor
                     ) -> torch.Tensor:
        """Apply the approximate inverse Hessian (class docstring) to one vector per problem."""
        p, k = self.features, self.classes
        count = len(ids)
        penalty = self.penalty[ids]
        own = self.spectrum_of[ids]
        weights = vector[:, :-k].view(count, p, k)
        tail = 1.0 / (curvature * self.tail[own] + penalty)  # (count,)
        gain = 1.0 / (curvature[:, None] * self.eigenvalues[own] + penalty[:, None]) \
            - tail[:, None]  # (count, rank)
        along = self.spectra.backward(ids, weights)  # (count, rank, k) on its own spectrum
        correction = self.spectra.forward(ids, along * gain[:, :, None])  # (count, p, k)
        out = weights * tail[:, None, None] + correction
        bias = vector[:, -k:] / (curvature + penalty)[:, None]
        return torch.cat([out.reshape(count, -1), bias], 1)

    def coefficients(self, theta: torch.Tensor) -> tuple[list[np.ndarray], np.ndarray]:
        """Weights (features, classes) of each problem and intercepts (problems, classes)."""
        k = self.classes
        return (list(theta[:, :-k].view(len(theta), -1, k).double().cpu().numpy()),
                theta[:, -k:].double().cpu().numpy())


@dataclass(frozen=True)
class KernelForm:
    """One training set in kernel form: ``training`` (set x r) = ``Z V`` = ``U
    diag(lam^1/2)``, the features of its training rows; ``features`` (rows x r), those of
    every row of ``x`` (None when only the training rows were asked for); ``variances`` (r,)
    = ``lam / |set|`` (their covariance over the set is diagonal); ``basis`` (set x r) = ``U
    diag(lam^-1/2)``, so that ``W = Z^T basis Omega``; ``rows``, ``mean`` and ``inv_scale``
    (features,) give ``Z = (x[rows] - mean) * inv_scale`` with ``x`` the feature matrix the
    form was made from."""

    training: torch.Tensor
    features: torch.Tensor | None
    variances: torch.Tensor
    basis: torch.Tensor
    x: torch.Tensor
    rows: torch.Tensor
    mean: torch.Tensor
    inv_scale: torch.Tensor


def kernel_form(x: torch.Tensor, rows: torch.Tensor, every_row: bool = True) -> KernelForm:
    """The kernel form of training set ``rows`` of ``x`` (module docstring).

    With ``every_row``, the cross-kernel ``Z_all Z^T`` of every row with the standardized
    training rows is ``x Y^T - 1 (Y mean)^T`` with ``Y = (x[rows] - mean) / scale^2``;
    without, only the kernel ``Z Z^T`` of the training rows (a symmetric product: half the
    arithmetic). Either is accumulated over blocks of features: only a block of the training
    rows is ever copied, never all of ``x``.
    """
    n, p = x.shape
    m = len(rows)
    block = max(1, KERNEL_BLOCK_BYTES // (x.element_size() * m))
    average = x.new_full((1, m), 1.0 / m)
    cross = x.new_zeros((n if every_row else m, m))
    means, inv_scales = x.new_empty(p), x.new_empty(p)
    for start in range(0, p, block):
        part = x[:, start:start + block]
        scaled = part[rows]
        mean = matmul(average, scaled)
        scaled -= mean
        variance = torch.linalg.vector_norm(scaled, dim=0).square_() / m
        constant = variance <= CONSTANT_SCALE ** 2
        inverse = torch.where(constant, 1.0, variance.rsqrt())
        means[start:start + block], inv_scales[start:start + block] = mean[0], inverse
        if every_row:
            scaled *= inverse.square()
            cross += matmul(part, scaled.T) - matmul(scaled, mean.T).T
        else:
            scaled *= inverse
            cross += matmul(scaled, scaled.T)  # NumPy's BLAS takes this as one SYRK
    values, vectors = torch.linalg.eigh(cross[rows] if every_row else cross)
    keep = values > values[-1] * m * torch.finfo(x.dtype).eps
    basis = vectors[:, keep] * values[keep].rsqrt()
    return KernelForm(vectors[:, keep] * values[keep].sqrt(),
                      matmul(cross, basis) if every_row else None, values[keep] / m, basis, x,
                      rows, means, inv_scales)


class KernelBatch(Batch):
    """Fits in kernel form: problem q works on the features of its set's
    :class:`KernelForm` (zero-padded to ``width``); its weights are ``Omega_q``. The
    preconditioner is exact for the feature covariance: ``1 / (c_q lam_j / |set| + 1 / (C_q
    |set|))`` per weight. The forms may come from different feature matrices (e.g. the time
    steps of a recording) with the same rows.

    The objective reads each set's training rows only, stacked ``(sets, rows, width)`` and
    zero-padded: each pass over the data is one batched product for every set
    (:class:`Blocks`).
    """

    dtype = torch.float64
    # The preconditioner's curvature is a mean over classes and rows: scaled to the latest
    # curvature pair, the first trial step of an iteration is no longer too long in almost
    # every iteration (temporal benchmark: 3512 -> 2011 fit evaluations).
    rescale_preconditioner = True

    def __init__(self, forms: Sequence[KernelForm], width: int, codes: torch.Tensor,
                 classes: int, set_of: np.ndarray, C: np.ndarray) -> None:
        sizes = [form.rows.numel() for form in forms]
        local = codes.new_zeros((max(sizes), len(set_of)))  # row i of problem q: its set's
        for q, s in enumerate(set_of):
            rows = forms[s].rows
            local[:sizes[s], q] = codes[rows] if codes.dim() == 1 else codes[rows, q]
        super().__init__(local, classes, max(sizes), [np.arange(size) for size in sizes],
                         set_of, C)
        self.forms, self.width = forms, width
        self.training = codes.new_zeros((len(forms), max(sizes), width), dtype=self.dtype)
        variances = codes.new_zeros((len(forms), width), dtype=self.dtype)
        for s, form in enumerate(forms):
            r = form.variances.numel()
            self.training[s, :sizes[s], :r] = form.training
            variances[s, :r] = form.variances
        self.variances = variances
        self.set_of = torch.as_tensor(set_of, device=codes.device)
        self.blocks = Blocks(self.training, self.set_of)

    def _logits(self, ids, theta):
        weights = theta[:, :-self.classes].view(len(ids), self.width, self.classes)
        return self.blocks.forward(ids, weights).permute(1, 0, 2) + theta[:, -self.classes:], \
            weights

    def _back(self, ids, residual):
        return self.blocks.backward(ids, residual.permute(1, 0, 2))

    def predict(self, theta: torch.Tensor) -> np.ndarray:
        """Predicted class codes of every row under every problem: (rows, problems)."""
        k = self.classes
        weights = theta[:, :-k].view(len(theta), self.width, k)
        out = np.empty((self.forms[0].x.shape[0], len(theta)), dtype=np.int64)
        for q, s in enumerate(self.set_of.tolist()):
            features = self.forms[s].features
            if features is None:
                raise ValueError("these kernel forms hold their training rows only")
            logits = matmul(features, weights[q, :features.shape[1]]) + theta[q, -k:]
            out[:, q] = logits.argmax(1).cpu().numpy()
        return out

    def gradient_size(self, grad: torch.Tensor) -> torch.Tensor:
        """||gradient||_2 per problem: the norm of the gradient over ``(W, b)`` as well."""
        return torch.linalg.vector_norm(grad, dim=1)

    def precondition(self, ids: torch.Tensor, vector: torch.Tensor, curvature: torch.Tensor
                     ) -> torch.Tensor:
        """Apply the inverse of the diagonal Hessian approximation (class docstring)."""
        k, count = self.classes, len(ids)
        penalty = self.penalty[ids]
        diagonal = curvature[:, None] * self.variances[self.set_of[ids]] + penalty[:, None]
        weights = vector[:, :-k].view(count, self.width, k) / diagonal[:, :, None]
        bias = vector[:, -k:] / (curvature + penalty)[:, None]
        return torch.cat([weights.reshape(count, -1), bias], 1)

    def coefficients(self, theta: torch.Tensor) -> tuple[list[np.ndarray], np.ndarray]:
        """Weights ``W = Z^T basis Omega`` (features, classes) of each problem, on its own
        matrix's features, and intercepts (problems, classes)."""
        k = self.classes
        omega = theta[:, :-k].view(len(theta), self.width, k)
        weights = []
        for q, s in enumerate(self.set_of.tolist()):
            form = self.forms[s]
            standardized = (form.x[form.rows] - form.mean) * form.inv_scale
            weights.append((standardized.T @ (form.basis @ omega[q, :form.basis.shape[1]]))
                           .cpu().numpy())
        return weights, theta[:, -k:].cpu().numpy()


def standardization(x: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and inverse scale of ``x[rows]`` in ``x``'s dtype (float64 sums; scale 1 where
    constant, as scikit-learn's StandardScaler does)."""
    block = x[rows].double()
    scale = block.std(0, correction=0)
    scale[scale <= CONSTANT_SCALE] = 1.0
    return block.mean(0).to(x.dtype), scale.reciprocal().to(x.dtype)


def top_spectrum(x: torch.Tensor, rows: torch.Tensor, generator: torch.Generator
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Top eigenpairs of the standardized covariance of ``x[rows]`` by randomized subspace
    iteration (Halko, Martinsson & Tropp 2011), and the next eigenvalue (0 if none left)."""
    mean, inv_scale = standardization(x, rows)
    standardized = (x[rows] - mean) * inv_scale
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
