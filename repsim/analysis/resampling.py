"""Seeded resampling: percentile bootstrap over stimuli and permutation tests.

Both take a ``statistic`` that maps an index array over the n units (stimuli or conditions)
to a number, so that each analysis decides what a resample means (e.g. RSA drops the pairs
of a stimulus with its own copy; see [repsim.analysis.bootstrap_compare_rdms][]).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from repsim.analysis._arrays import check_choice

ALTERNATIVES = ("greater", "less", "two-sided")
# Null values this close to the observed one count as "at least as extreme": a permutation
# that reproduces the data must not lose the tie to float rounding.
_TIE_TOLERANCE = 1e-12


@dataclass(frozen=True)
class BootstrapResult:
    """A statistic, its percentile bootstrap interval and the resampled values.

    Parameters
    ----------
    estimate
        The statistic on the original sample.
    ci_low, ci_high
        The ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles of the finite
        resampled values.
    confidence
        The interval's coverage.
    samples
        Every resample's value (NaN where the statistic was undefined).
    """

    estimate: float
    ci_low: float
    ci_high: float
    confidence: float
    samples: np.ndarray

    @property
    def n_undefined(self) -> int:
        """Resamples on which the statistic was undefined (NaN), left out of the interval."""
        return int(np.isnan(self.samples).sum())


@dataclass(frozen=True)
class PermutationResult:
    """An observed statistic, its permutation p-value and the null distribution.

    Parameters
    ----------
    statistic
        The statistic on the data as they are.
    p_value
        ``(1 + #null at least as extreme as observed) / (1 + n_perm)`` (Phipson & Smyth 2010:
        never zero, exact for random permutations).
    null
        The statistic under each permutation.
    alternative
        ``"greater"``, ``"less"`` or ``"two-sided"``: what "at least as extreme" meant.
    """

    statistic: float
    p_value: float
    null: np.ndarray
    alternative: str


def bootstrap(statistic: Callable[[np.ndarray], float], n: int, n_boot: int = 1000,
              seed: int = 0, confidence: float = 0.95) -> BootstrapResult:
    """Percentile bootstrap of ``statistic`` over n units resampled with replacement.

    Parameters
    ----------
    statistic
        Maps an index array over the n units (with repeats) to a number; NaN for a resample
        on which it is undefined.
    n
        The number of units (stimuli or conditions).
    n_boot
        The number of resamples: draws of n of ``range(n)`` with replacement (NumPy
        ``default_rng(seed)``); the statistic is also computed once on ``arange(n)``.
    seed
        Seeds the draws.
    confidence
        The interval's coverage, between 0 and 1.

    Returns
    -------
    BootstrapResult
        The estimate on ``arange(n)``, the percentile interval of the finite resampled values and
        every resample's value.

    Raises
    ------
    ValueError
        For fewer than 2 units, ``n_boot < 1``, ``confidence`` outside (0, 1), or a statistic
        undefined on every resample.
    """
    _check_count(n_boot, "n_boot")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    if n < 2:
        raise ValueError(f"bootstrapping needs at least 2 units, got {n}")
    rng = np.random.default_rng(seed)
    estimate = float(statistic(np.arange(n)))
    samples = np.array([statistic(rng.integers(0, n, size=n)) for _ in range(n_boot)],
                       dtype=np.float64)
    finite = samples[np.isfinite(samples)]
    if finite.size == 0:
        raise ValueError("the statistic was undefined on every bootstrap resample")
    tail = (1 - confidence) / 2
    low, high = np.quantile(finite, [tail, 1 - tail])
    return BootstrapResult(estimate, float(low), float(high), confidence, samples)


def permutation_test(statistic: Callable[[np.ndarray], float], n: int, n_perm: int = 1000,
                     seed: int = 0, alternative: str = "greater") -> PermutationResult:
    """Permutation test of ``statistic``: the identity order and ``n_perm`` random permutations.

    Parameters
    ----------
    statistic
        Maps an order of the n units (a permutation of ``range(n)``) to a number.
    n
        The number of units.
    n_perm
        The number of random permutations (NumPy ``default_rng(seed)``).
    seed
        Seeds the permutations.
    alternative
        ``"greater"`` (null >= observed counts), ``"less"`` (null <= observed) or
        ``"two-sided"`` (|null| >= |observed|, for statistics centered on zero under the null).

    Returns
    -------
    PermutationResult
        The observed statistic, the p-value and the null distribution.

    Raises
    ------
    ValueError
        For an unknown ``alternative``, fewer than 2 units or ``n_perm < 1``.
    """
    _check_count(n_perm, "n_perm")
    check_choice(alternative, ALTERNATIVES, "alternative")
    if n < 2:
        raise ValueError(f"a permutation test needs at least 2 units, got {n}")
    rng = np.random.default_rng(seed)
    observed = float(statistic(np.arange(n)))
    null = np.array([statistic(rng.permutation(n)) for _ in range(n_perm)], dtype=np.float64)
    slack = _TIE_TOLERANCE * max(1.0, abs(observed))
    if alternative == "greater":
        extreme = null >= observed - slack
    elif alternative == "less":
        extreme = null <= observed + slack
    else:
        extreme = np.abs(null) >= abs(observed) - slack
    p_value = (1 + int(extreme.sum())) / (1 + n_perm)
    return PermutationResult(observed, p_value, null, alternative)


def _check_count(value: int, name: str) -> None:
    if not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
