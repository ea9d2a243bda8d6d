"""Seeded bootstrap and permutation tests, checked against the same resampling done here."""

from __future__ import annotations

import numpy as np
import pytest

from repsim.analysis import bootstrap, permutation_test


def test_bootstrap_percentile_interval_of_a_mean():
    values = np.random.default_rng(0).normal(loc=2.0, size=50)
    result = bootstrap(lambda rows: values[rows].mean(), 50, n_boot=300, seed=3,
                       confidence=0.9)
    rng = np.random.default_rng(3)
    expected = np.array([values[rng.integers(0, 50, size=50)].mean() for _ in range(300)])
    np.testing.assert_allclose(result.samples, expected, atol=1e-15)
    assert result.estimate == pytest.approx(values.mean())
    assert (result.ci_low, result.ci_high) == pytest.approx(
        tuple(np.quantile(expected, [0.05, 0.95])))
    assert result.ci_low < values.mean() < result.ci_high
    assert result.confidence == 0.9 and result.n_undefined == 0


def test_bootstrap_is_reproducible_for_a_seed_and_differs_across_seeds():
    values = np.arange(20.0)

    def statistic(rows):
        return values[rows].std()

    first, again = bootstrap(statistic, 20, n_boot=50, seed=1), bootstrap(statistic, 20,
                                                                          n_boot=50, seed=1)
    np.testing.assert_array_equal(first.samples, again.samples)
    assert not np.array_equal(first.samples, bootstrap(statistic, 20, n_boot=50,
                                                       seed=2).samples)


def test_bootstrap_leaves_undefined_resamples_out_of_the_interval():
    def statistic(rows):
        return np.nan if rows[0] == 0 else float(rows.mean())

    result = bootstrap(statistic, 5, n_boot=200, seed=0)
    undefined = np.isnan(result.samples)
    assert result.n_undefined == undefined.sum() > 0
    finite = result.samples[~undefined]
    assert (result.ci_low, result.ci_high) == pytest.approx(
        tuple(np.quantile(finite, [0.025, 0.975])))


def test_permutation_test_p_value_and_alternatives():
    rng = np.random.default_rng(4)
    group = np.repeat([0, 1], 15)
    values = rng.normal(size=30) + group * 1.5

    def difference(order):
        labels = group[order]
        return values[labels == 1].mean() - values[labels == 0].mean()

    result = permutation_test(difference, 30, n_perm=199, seed=9)
    generator = np.random.default_rng(9)
    null = np.array([difference(generator.permutation(30)) for _ in range(199)])
    np.testing.assert_allclose(result.null, null)
    observed = difference(np.arange(30))
    assert result.p_value == pytest.approx((1 + np.sum(null >= observed)) / 200)
    assert result.p_value < 0.01
    less = permutation_test(difference, 30, n_perm=199, seed=9, alternative="less")
    assert less.p_value == pytest.approx((1 + np.sum(null <= observed)) / 200)
    both = permutation_test(difference, 30, n_perm=199, seed=9, alternative="two-sided")
    assert both.p_value == pytest.approx((1 + np.sum(np.abs(null) >= abs(observed))) / 200)


def test_a_statistic_the_permutation_cannot_change_has_p_one():
    result = permutation_test(lambda order: 0.3, 10, n_perm=50, seed=0)
    assert result.p_value == 1.0


def test_bad_settings_are_refused():
    def statistic(rows):
        return float(rows.sum())

    with pytest.raises(ValueError, match="n_boot must be a positive integer"):
        bootstrap(statistic, 10, n_boot=0)
    with pytest.raises(ValueError, match="confidence must be between 0 and 1"):
        bootstrap(statistic, 10, confidence=1.5)
    with pytest.raises(ValueError, match="at least 2 units"):
        bootstrap(statistic, 1)
    with pytest.raises(ValueError, match="undefined on every bootstrap resample"):
        bootstrap(lambda rows: np.nan, 10, n_boot=5)
    with pytest.raises(ValueError, match="n_perm must be a positive integer"):
        permutation_test(statistic, 10, n_perm=-1)
    with pytest.raises(ValueError, match="unknown alternative 'bigger'"):
        permutation_test(statistic, 10, alternative="bigger")
