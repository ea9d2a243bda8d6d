"""Paired comparisons across seeds, against scipy and brute force written out here."""

import itertools
import math

import numpy as np
import pytest
from scipy import stats

from repsim.analysis.stats import (
    bootstrap_mean_interval,
    compare_paired,
    detectable_difference,
    holm,
    improvement_interval,
    normalized_auc,
    paired_t,
    probability_of_improvement,
    sign_flip_p_value,
    smallest_sign_flip_p_value,
)

RNG = np.random.default_rng(0)
A = np.array([0.91, 0.87, 0.93, 0.88, 0.90])
B = np.array([0.85, 0.88, 0.86, 0.84, 0.83])


def test_paired_t_matches_scipy():
    mean, (low, high), p = paired_t(A - B)
    reference = stats.ttest_rel(A, B)
    interval = reference.confidence_interval(0.95)
    assert mean == pytest.approx(np.mean(A - B))
    assert p == pytest.approx(reference.pvalue, rel=1e-12)
    assert (low, high) == pytest.approx((interval.low, interval.high), rel=1e-12)


def test_exact_sign_flip_equals_brute_force_enumeration():
    for n in (3, 5, 8):
        d = RNG.normal(0.3, 1.0, size=n)
        count = sum(abs(np.mean(np.array(signs) * d)) >= abs(d.mean()) - 1e-12
                    for signs in itertools.product((1, -1), repeat=n))
        p, exact = sign_flip_p_value(d)
        assert exact and p == pytest.approx(count / 2 ** n, abs=1e-15)
    assert sign_flip_p_value(np.full(5, 0.02))[0] == smallest_sign_flip_p_value(5) == 1 / 16


def test_monte_carlo_sign_flip_is_close_to_the_exact_value_above_16_seeds():
    d = RNG.normal(0.4, 1.0, size=18)
    patterns = 1 - 2 * ((np.arange(2 ** 18)[:, None] >> np.arange(18)) & 1)
    exact = np.mean(np.abs(patterns @ d) >= abs(d.sum()) - 1e-9)
    p, is_exact = sign_flip_p_value(d, n_resamples=50_000)
    assert not is_exact and p == pytest.approx(exact, abs=0.01)


def test_probability_of_improvement_counts_every_pair():
    a, b = np.array([1.0, 2.0, 3.0, 3.0]), np.array([2.0, 3.0, 0.5])
    wins = sum(1.0 if x > y else 0.5 if x == y else 0.0 for x in a for y in b)
    assert probability_of_improvement(a, b) == pytest.approx(wins / (len(a) * len(b)))
    low, high = improvement_interval(a, b, n_boot=2000)
    assert 0 <= low <= probability_of_improvement(a, b) <= high <= 1


def test_holm_on_a_worked_example():
    # sorted: 0.005 x 4 = 0.02, 0.01 x 3 = 0.03, 0.03 x 2 = 0.06, 0.04 x 1 -> max(0.06, 0.04)
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(holm([0.5, 0.9]), [1.0, 1.0])
    with pytest.raises(ValueError, match="p-values in"):
        holm([0.2, 1.5])


@pytest.mark.parametrize("n", [2, 5])  # n = 2: where scipy's nct gives NaN
def test_detectable_difference_has_the_asked_power_in_simulation(n):
    sd = 2.0
    effect = detectable_difference(sd, n)
    samples = np.random.default_rng(1).normal(effect, sd, size=(40_000, n))
    t = samples.mean(1) / (samples.std(1, ddof=1) / math.sqrt(n))
    power = np.mean(np.abs(t) > stats.t.ppf(0.975, n - 1))
    assert power == pytest.approx(0.8, abs=0.01)


def test_bootstrap_interval_covers_the_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(2)
    covered = 0
    for repetition in range(1000):
        values = rng.normal(1.0, 1.0, size=30)
        low, high = bootstrap_mean_interval(values, n_boot=2000, seed=repetition)
        covered += low <= 1.0 <= high
    assert 0.92 <= covered / 1000 <= 0.97


def test_normalized_auc_is_the_trapezoid_mean():
    snrs, accuracy = [20, -10, 0, 10], [0.9, 0.1, 0.3, 0.7]
    ordered = np.array([0.1, 0.3, 0.7, 0.9])
    area = 10 * (0.1 + 0.3) / 2 + 10 * (0.3 + 0.7) / 2 + 10 * (0.7 + 0.9) / 2
    assert normalized_auc(snrs, accuracy) == pytest.approx(area / 30)
    assert normalized_auc([0, 10], ordered[[1, 1]]) == pytest.approx(0.3)
    assert normalized_auc([0], [0.4]) == 0.4
    with pytest.raises(ValueError, match="distinct"):
        normalized_auc([5, 5], [0.1, 0.2])


def test_compare_paired_puts_it_together_and_refuses_bad_input():
    result = compare_paired(A, B, n_boot=2000)
    assert result.n == 5 and result.sign_flip_exact
    assert result.mean_difference == pytest.approx(np.mean(A - B))
    assert result.t_interval[0] < result.mean_difference < result.t_interval[1]
    assert result.bootstrap_interval[0] < result.mean_difference < result.bootstrap_interval[1]
    assert result.probability_of_improvement == probability_of_improvement(A, B)
    assert result.detectable_difference == pytest.approx(
        detectable_difference(np.std(A - B, ddof=1), 5))
    strict = compare_paired(A, B, n_boot=2000, detection_alpha=0.01)
    assert strict.detectable_difference == pytest.approx(
        detectable_difference(np.std(A - B, ddof=1), 5, alpha=0.01))
    assert strict.t_interval == result.t_interval
    with pytest.raises(ValueError, match="same length"):
        compare_paired(A, B[:4])
    with pytest.raises(ValueError, match="at least 2 seeds"):
        compare_paired(A[:1], B[:1])
