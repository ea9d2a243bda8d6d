"""Comparing two configurations across seeds: effect sizes, intervals and paired tests.

Seeds are the unit of replication (each seed is one trained network, like one subject). For
a measure (e.g. clean accuracy) of configuration A (fusion layer 1) and B (fusion layer k)
on the same seeds, the paired differences ``d_s = A_s - B_s`` give:

- the mean difference with a t-based 95 % interval and a percentile bootstrap interval over
  seeds beside it;
- the paired t-test p-value, and the sign-flip permutation p-value: exact over all 2^n sign
  patterns up to n = ``EXACT_SIGN_FLIPS`` (16), Monte Carlo above (said in the result),
  together with the smallest p-value the test can reach with n seeds (2 / 2^n, two-sided);
- the probability of improvement ``P(A > B) + P(A = B) / 2`` over all pairs of seeds
  (Agarwal et al. 2021, "Deep RL at the edge of the statistical precipice"), with a
  bootstrap interval that resamples the seeds of A and of B;
- the smallest difference a two-sided paired t-test at level ``alpha`` detects with
  probability ``power`` at the observed spread of the differences (for reading "no
  significant difference" as "no difference larger than this"). A test judged within a
  corrected family is computed at the family's per-test level (``detection_alpha``), or the
  figure would promise differences the correction does not let through.

[equivalence_test][repsim.analysis.stats.equivalence_test] asks the opposite question: is the
mean difference inside ``(-margin, +margin)``, the smallest difference that matters? It is
Schuirmann's (1987) two one-sided tests (TOST): the paired t-test of ``mean <= -margin``
against ``mean > -margin`` and of ``mean >= +margin`` against ``mean < +margin``; its p-value
is the larger of the two one-sided p-values, and it rejects at level ``alpha`` exactly when
the ``1 - 2 alpha`` t interval (90 % at 5 %) lies inside the margin. The difference test and
TOST are separate questions of the same differences: a comparison can pass both (a real
difference smaller than the margin), either, or neither (too few seeds or too much spread to
say). The formulas are written out in the documentation's "Studies and their statistics".

[holm][repsim.analysis.stats.holm] corrects a family of p-values (Holm 1979). Resampling is
vectorised: every bootstrap draw and sign pattern is a row of one array, never a Python loop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy import integrate, optimize, stats

EXACT_SIGN_FLIPS = 16
CONFIDENCE = 0.95


@dataclass(frozen=True)
class PairedComparison:
    """Everything [compare_paired][repsim.analysis.stats.compare_paired] reports about ``A - B``.

    Parameters
    ----------
    n
        The number of seeds (pairs).
    mean_difference
        The mean of the paired differences ``A_s - B_s``.
    t_interval
        Its t-based interval at ``1 - alpha``.
    bootstrap_interval
        Its percentile bootstrap interval over seeds.
    t_p_value
        The two-sided paired t-test p-value of "the mean difference is 0".
    sign_flip_p_value
        The two-sided sign-flip permutation p-value.
    sign_flip_exact
        Whether it is exact (every sign pattern) rather than Monte Carlo.
    smallest_sign_flip_p_value
        The smallest p-value the exact sign-flip test can reach with ``n`` seeds.
    probability_of_improvement
        ``P(A > B) + P(A = B) / 2`` over all pairs of seeds.
    improvement_interval
        Its bootstrap interval (seeds of A and of B resampled independently).
    detectable_difference
        The smallest mean difference the t-test detects with the chosen power at the observed
        spread, at ``detection_alpha``.
    """

    n: int
    mean_difference: float
    t_interval: tuple[float, float]
    bootstrap_interval: tuple[float, float]
    t_p_value: float
    sign_flip_p_value: float
    sign_flip_exact: bool
    smallest_sign_flip_p_value: float
    probability_of_improvement: float
    improvement_interval: tuple[float, float]
    detectable_difference: float


def _differences(a, b) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError(f"paired values need two 1-D arrays of the same length (one value "
                         f"per seed), got shapes {a.shape} and {b.shape}")
    if a.size < 2:
        raise ValueError(f"a paired comparison needs at least 2 seeds, got {a.size}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("paired values must be finite")
    return a, b, a - b


def paired_t(differences: ArrayLike, confidence: float = CONFIDENCE
             ) -> tuple[float, tuple[float, float], float]:
    """The mean of ``differences``, its t interval and the two-sided one-sample t-test p-value.

    Parameters
    ----------
    differences
        The paired differences, one per seed (at least 2).
    confidence
        The interval's coverage.

    Returns
    -------
    mean : float
        The mean difference.
    interval : tuple of float
        Its t interval.
    p_value : float
        The two-sided p-value of "the mean is 0"; 1 when every difference equals the mean,
        which is then 0.

    Raises
    ------
    ValueError
        For fewer than 2 differences.
    """
    d = np.asarray(differences, dtype=np.float64)
    n, mean = d.size, float(d.mean())
    sd = float(d.std(ddof=1))
    if sd == 0:
        return mean, (mean, mean), 1.0 if mean == 0 else 0.0
    sem = sd / math.sqrt(n)
    half = stats.t.ppf((1 + confidence) / 2, n - 1) * sem
    p = 2 * stats.t.sf(abs(mean) / sem, n - 1)
    return mean, (mean - half, mean + half), float(p)


@dataclass(frozen=True)
class Equivalence:
    """What [equivalence_test][repsim.analysis.stats.equivalence_test] reports.

    Parameters
    ----------
    margin
        The equivalence margin: differences inside ``(-margin, +margin)`` do not matter.
    p_lower
        The one-sided p-value against a difference of ``-margin`` or less.
    p_upper
        The one-sided p-value against a difference of ``+margin`` or more.
    p_value
        The TOST p-value, the larger of the two.
    interval
        The ``1 - 2 alpha`` t interval of the mean difference.
    """

    margin: float
    p_lower: float
    p_upper: float
    p_value: float
    interval: tuple[float, float]


def equivalence_test(differences: ArrayLike, margin: float, alpha: float = 0.05
                     ) -> Equivalence:
    """Two one-sided paired t-tests (TOST) that the mean of ``differences`` lies inside
    ``(-margin, +margin)``.

    With no spread (every difference equal), each one-sided p is 0 or 1 by whether the mean is
    inside its bound.

    Parameters
    ----------
    differences
        The paired differences, one per seed (at least 2, finite).
    margin
        The smallest difference that matters (positive).
    alpha
        The test's level: the interval reported is at ``1 - 2 alpha``.

    Returns
    -------
    Equivalence
        Both one-sided p-values, the TOST p-value and the interval.

    Raises
    ------
    ValueError
        For a margin that is not a positive number, or fewer than 2 finite differences.

    Examples
    --------
    >>> from repsim.analysis.stats import equivalence_test
    >>> result = equivalence_test([0.2, -0.1, 0.3, 0.0, 0.1], margin=1.0)
    >>> result.p_value < 0.05   # the 90 % interval lies inside (-1, 1)
    True
    """
    if not (isinstance(margin, int | float) and math.isfinite(margin) and margin > 0):
        raise ValueError(f"an equivalence margin must be a positive number, got {margin!r}")
    d = np.asarray(differences, dtype=np.float64)
    if d.ndim != 1 or d.size < 2 or not np.isfinite(d).all():
        raise ValueError("an equivalence test needs a 1-D array of at least 2 finite "
                         "differences")
    n, mean = d.size, float(d.mean())
    sd = float(d.std(ddof=1))
    if sd == 0:
        lower, upper = float(mean <= -margin), float(mean >= margin)
        return Equivalence(float(margin), lower, upper, max(lower, upper), (mean, mean))
    sem = sd / math.sqrt(n)
    lower = float(stats.t.sf((mean + margin) / sem, n - 1))
    upper = float(stats.t.cdf((mean - margin) / sem, n - 1))
    half = float(stats.t.ppf(1 - alpha, n - 1)) * sem
    return Equivalence(float(margin), lower, upper, max(lower, upper),
                       (mean - half, mean + half))


def sign_flip_p_value(differences: ArrayLike, n_resamples: int = 100_000, seed: int = 0
                      ) -> tuple[float, bool]:
    """The two-sided sign-flip permutation p-value of ``mean(differences) = 0``.

    Parameters
    ----------
    differences
        The paired differences, one per seed.
    n_resamples
        The random sign patterns drawn when n exceeds ``EXACT_SIGN_FLIPS``.
    seed
        Seeds those draws.

    Returns
    -------
    p_value : float
        Exact for n <= ``EXACT_SIGN_FLIPS``: the share of the 2^n sign patterns with |mean| >=
        the observed; else ``(1 + count) / (1 + n_resamples)`` over random patterns.
    exact : bool
        Whether every sign pattern was used.
    """
    d = np.asarray(differences, dtype=np.float64)
    n = d.size
    observed = abs(d.mean())
    slack = 1e-12 * max(1.0, observed)
    if n <= EXACT_SIGN_FLIPS:
        patterns = 1 - 2 * ((np.arange(2 ** n)[:, None] >> np.arange(n)) & 1)
        extreme = np.abs(patterns @ d / n) >= observed - slack
        return float(extreme.mean()), True
    rng = np.random.default_rng(seed)
    patterns = rng.choice(np.array([-1.0, 1.0]), size=(n_resamples, n))
    count = int((np.abs(patterns @ d / n) >= observed - slack).sum())
    return (1 + count) / (1 + n_resamples), False


def smallest_sign_flip_p_value(n: int) -> float:
    """The smallest two-sided p-value the exact sign-flip test can give with ``n`` seeds.

    Parameters
    ----------
    n
        The number of seeds.

    Returns
    -------
    float
        ``2 / 2^n`` (capped at 1).
    """
    return 2.0 / 2 ** n


def probability_of_improvement(a: ArrayLike, b: ArrayLike) -> float:
    """The probability of improvement ``P(A > B) + P(A = B) / 2``.

    Parameters
    ----------
    a, b
        Per-seed values of the two configurations.

    Returns
    -------
    float
        Over all pairs of one value of ``a`` and one of ``b``.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(((a[:, None] > b[None, :]) + 0.5 * (a[:, None] == b[None, :])).mean())


def improvement_interval(a: ArrayLike, b: ArrayLike, n_boot: int = 10_000, seed: int = 0,
                         confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Percentile bootstrap interval of
    [probability_of_improvement][repsim.analysis.stats.probability_of_improvement].

    Parameters
    ----------
    a, b
        Per-seed values; the seeds of ``a`` and of ``b`` are resampled independently (all draws
        at once).
    n_boot
        The number of resamples.
    seed
        Seeds the resampling.
    confidence
        The interval's coverage.

    Returns
    -------
    tuple of float
        ``(low, high)``.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    rng = np.random.default_rng(seed)
    ra = a[rng.integers(0, a.size, size=(n_boot, a.size))]
    rb = b[rng.integers(0, b.size, size=(n_boot, b.size))]
    wins = (ra[:, :, None] > rb[:, None, :]) + 0.5 * (ra[:, :, None] == rb[:, None, :])
    values = wins.mean(axis=(1, 2))
    tail = (1 - confidence) / 2
    low, high = np.quantile(values, [tail, 1 - tail])
    return float(low), float(high)


def bootstrap_mean_interval(values: ArrayLike, n_boot: int = 10_000, seed: int = 0,
                            confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (all draws at once).

    Parameters
    ----------
    values
        One value per seed.
    n_boot
        The number of resamples.
    seed
        Seeds the resampling.
    confidence
        The interval's coverage.

    Returns
    -------
    tuple of float
        ``(low, high)``.
    """
    values = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, size=(n_boot, values.size))].mean(axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(low), float(high)


def detectable_difference(sd: float, n: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest mean difference a two-sided paired t-test detects with probability ``power``.

    The power of the noncentral t, integrated over the chi-square of the variance, which stays
    finite where scipy's ``nct`` does not.

    Parameters
    ----------
    sd
        The standard deviation of the paired differences.
    n
        The number of seeds.
    alpha
        The test's level (a corrected family's per-test level).
    power
        The probability of detecting the difference.

    Returns
    -------
    float
        The difference, in the units of ``sd``'s measure.
    """
    if n < 2:
        raise ValueError(f"a paired t-test needs at least 2 seeds, got {n}")
    if sd <= 0:
        return 0.0
    critical = stats.t.ppf(1 - alpha / 2, n - 1)

    df = n - 1

    def shortfall(effect: float) -> float:
        shift = effect * math.sqrt(n) / sd

        def rejected(v: float) -> float:  # P(|T| > critical | chi-square value v)
            bound = critical * math.sqrt(v / df)
            return (stats.norm.cdf(shift - bound) + stats.norm.cdf(-shift - bound)) \
                * stats.chi2.pdf(v, df)

        return integrate.quad(rejected, 0, math.inf)[0] - power

    high = sd
    while shortfall(high) < 0:  # widen the bracket until the power is reached
        high *= 2
    return float(optimize.brentq(shortfall, 0.0, high))


def normalized_auc(snrs: ArrayLike, accuracies: ArrayLike) -> float:
    """The area under the accuracy-SNR curve (trapezoids) divided by the SNR range.

    Parameters
    ----------
    snrs
        The SNRs of the grid (finite, distinct; any order).
    accuracies
        The accuracy at each SNR.

    Returns
    -------
    float
        The mean accuracy over the range: 1 for a network perfect at every SNR; a grid of one
        SNR gives the accuracy at it.

    Raises
    ------
    ValueError
        For unequal numbers of points, or SNRs that are not finite and distinct.
    """
    snrs, accuracies = np.asarray(snrs, dtype=np.float64), np.asarray(accuracies, np.float64)
    if snrs.ndim != 1 or snrs.shape != accuracies.shape or snrs.size < 1:
        raise ValueError("normalized_auc needs (SNR, accuracy) points of equal number")
    if snrs.size == 1:
        return float(accuracies[0])
    order = np.argsort(snrs)
    snrs, accuracies = snrs[order], accuracies[order]
    if not np.isfinite(snrs).all() or snrs[-1] == snrs[0]:
        raise ValueError("normalized_auc needs finite, distinct SNRs")
    widths = np.diff(snrs)
    return float(np.sum(widths * (accuracies[1:] + accuracies[:-1]) / 2) / (snrs[-1] - snrs[0]))


def holm(p_values: ArrayLike) -> np.ndarray:
    """Holm's (1979) step-down adjusted p-values.

    Parameters
    ----------
    p_values
        A family of p-values in [0, 1], 1-D.

    Returns
    -------
    numpy.ndarray
        The adjusted p-values, in the order given, capped at 1.

    Raises
    ------
    ValueError
        For p-values that are not a 1-D array in [0, 1].

    Examples
    --------
    >>> from repsim.analysis.stats import holm
    >>> holm([0.01, 0.04, 0.03]).round(2).tolist()
    [0.03, 0.06, 0.06]
    """
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1 or ((p < 0) | (p > 1)).any() or np.isnan(p).any():
        raise ValueError("holm needs a 1-D array of p-values in [0, 1]")
    order = np.argsort(p, kind="stable")
    m = p.size
    adjusted = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out = np.empty(m)
    out[order] = np.minimum(adjusted, 1.0)
    return out


def compare_paired(a: ArrayLike, b: ArrayLike, *, alpha: float = 0.05, power: float = 0.8,
                   n_boot: int = 10_000, seed: int = 0, detection_alpha: float | None = None
                   ) -> PairedComparison:
    """Compare per-seed values ``a`` and ``b`` (same seeds, same order): every figure of the module
    docstring.

    Parameters
    ----------
    a, b
        One value per seed of configuration A and of B (finite, at least 2 seeds).
    alpha
        The level of the tests; intervals are at ``1 - alpha``.
    power
        The power of the detectable difference.
    n_boot
        The number of bootstrap resamples.
    seed
        Seeds the resampling and any Monte Carlo sign flips.
    detection_alpha
        The level of the detectable difference (a corrected family's per-test level); ``None``
        is ``alpha``.

    Returns
    -------
    PairedComparison
        The mean difference, intervals, p-values, probability of improvement and detectable
        difference.

    Raises
    ------
    ValueError
        For arrays that are not 1-D of one length, fewer than 2 seeds, or non-finite values.
    """
    a, b, d = _differences(a, b)
    mean, t_interval, t_p = paired_t(d, 1 - alpha)
    flip_p, exact = sign_flip_p_value(d, seed=seed)
    return PairedComparison(
        n=d.size, mean_difference=mean, t_interval=t_interval,
        bootstrap_interval=bootstrap_mean_interval(d, n_boot, seed, 1 - alpha),
        t_p_value=t_p, sign_flip_p_value=flip_p, sign_flip_exact=exact,
        smallest_sign_flip_p_value=smallest_sign_flip_p_value(d.size),
        probability_of_improvement=probability_of_improvement(a, b),
        improvement_interval=improvement_interval(a, b, n_boot, seed, 1 - alpha),
        detectable_difference=detectable_difference(
            float(d.std(ddof=1)), d.size,
            alpha if detection_alpha is None else detection_alpha, power))
