"""RSA: RDMs against scipy's pdist, comparisons against scipy and a brute-force tau-a,
condition averages, model RDMs, bootstrap and permutation test, bad input."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import pdist, squareform
from scipy.stats import pearsonr, spearmanr

from repsim.analysis import (
    average_by_condition,
    bootstrap_compare_rdms,
    categorical_rdm,
    compare_rdms,
    kendall_tau_a,
    permutation_test_rdms,
    rdm,
)

METRICS = ["correlation", "euclidean", "sqeuclidean", "cosine"]


def brute_tau_a(x, y) -> float:
    """(concordant - discordant) over all m(m-1)/2 pairs, pair by pair."""
    total = sum(np.sign(x[i] - x[j]) * np.sign(y[i] - y[j])
                for i, j in itertools.combinations(range(len(x)), 2))
    return total / (len(x) * (len(x) - 1) / 2)


def upper(matrix: np.ndarray) -> np.ndarray:
    return matrix[np.triu_indices(matrix.shape[0], 1)]


def patterns(n=25, p=9, seed=0, offset=3.0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, p)) + offset


# --------------------------------------------------------------------------- rdm


@pytest.mark.parametrize("metric", METRICS)
def test_rdm_matches_pdist(metric):
    x = patterns()
    result = rdm(x, metric=metric)
    np.testing.assert_allclose(result, squareform(pdist(x, metric)), rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(result, result.T)
    np.testing.assert_array_equal(np.diag(result), 0.0)


def test_sqeuclidean_mean_divides_the_squared_distance_by_the_feature_count():
    x = patterns(p=7)
    np.testing.assert_allclose(rdm(x, "sqeuclidean_mean"),
                               squareform(pdist(x, "sqeuclidean")) / 7, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("metric", METRICS)
def test_rdm_of_several_representations_is_a_stack(metric):
    reps = [patterns(seed=s) for s in range(3)]
    stack = rdm(reps, metric=metric)
    assert stack.shape == (3, 25, 25)
    for layer, x in zip(stack, reps, strict=True):
        np.testing.assert_allclose(layer, squareform(pdist(x, metric)), rtol=1e-10,
                                   atol=1e-12)


def test_rdm_flattens_states_and_matches_stimuli_by_id():
    rng = np.random.default_rng(1)
    states = rng.normal(size=(12, 2, 3, 3))
    flat = states.reshape(12, -1)
    ids = np.array([f"s{i}" for i in range(12)])
    order = rng.permutation(12)
    first = xr.DataArray(flat, dims=("stimulus", "feature"),
                         coords={"stimulus_id": ("stimulus", ids)})
    second = xr.DataArray(flat[order], dims=("stimulus", "feature"),
                          coords={"stimulus_id": ("stimulus", ids[order])})
    stack = rdm([first, second])
    np.testing.assert_allclose(stack[0], squareform(pdist(flat, "correlation")), atol=1e-12)
    np.testing.assert_allclose(stack[1], stack[0], atol=1e-12)
    np.testing.assert_allclose(rdm(states, "euclidean"), squareform(pdist(flat)), atol=1e-12)


# --------------------------------------------------------------------------- compare_rdms


def test_compare_rdms_matches_scipy():
    a, b = rdm(patterns(seed=2)), rdm(patterns(seed=3) ** 2)
    assert compare_rdms(a, b, "spearman") == pytest.approx(
        spearmanr(upper(a), upper(b)).statistic, abs=1e-12)
    assert compare_rdms(a, b, "pearson") == pytest.approx(
        pearsonr(upper(a), upper(b)).statistic, abs=1e-12)
    va, vb = upper(a), upper(b)
    assert compare_rdms(a, b, "cosine") == pytest.approx(
        va @ vb / np.sqrt((va @ va) * (vb @ vb)), abs=1e-12)
    assert compare_rdms(a, b, "kendall_tau_a") == pytest.approx(brute_tau_a(va, vb), abs=1e-12)


def test_spearman_handles_ties_like_scipy():
    labels = np.repeat(np.arange(4), 5)
    model = categorical_rdm(labels)
    data = rdm(patterns(n=20, seed=4))
    assert compare_rdms(data, model, "spearman") == pytest.approx(
        spearmanr(upper(data), upper(model)).statistic, abs=1e-12)


def test_stacks_give_every_pair():
    data = rdm([patterns(seed=s) for s in range(3)])
    models = [categorical_rdm(np.arange(25) % k) for k in (2, 5)]
    for method in ("spearman", "pearson", "kendall_tau_a", "cosine"):
        matrix = compare_rdms(data, models, method)
        assert matrix.shape == (3, 2)
        for i, j in itertools.product(range(3), range(2)):
            assert matrix[i, j] == pytest.approx(compare_rdms(data[i], models[j], method),
                                                 abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 2)), min_size=2, max_size=40))
def test_kendall_tau_a_counts_ties_in_the_denominator(pairs):
    x, y = (np.array(v, dtype=float) for v in zip(*pairs, strict=True))
    assert kendall_tau_a(x, y) == pytest.approx(brute_tau_a(x, y), abs=1e-12)


def test_kendall_tau_a_on_rdms_with_ties_matches_brute_force():
    labels = np.array([0, 0, 1, 1, 2, 2, 2, 3])
    model = categorical_rdm(labels)
    data = np.round(rdm(patterns(n=8, seed=5)), 1)  # rounding creates ties in the data too
    assert compare_rdms(data, model, "kendall_tau_a") == pytest.approx(
        brute_tau_a(upper(data), upper(model)), abs=1e-12)


def test_kendall_tau_a_scales_to_large_rdms():
    rng = np.random.default_rng(6)
    x = rng.integers(0, 50, size=200_000).astype(float)
    y = x + rng.integers(0, 30, size=x.size)
    sample = rng.choice(x.size, 300, replace=False)
    # a permutation-free identity: tau-a(x, x) = 1 - (pairs tied in x) / (all pairs)
    counts = np.unique(x, return_counts=True)[1]
    pairs = x.size * (x.size - 1) / 2
    assert kendall_tau_a(x, x) == pytest.approx(1 - (counts * (counts - 1) / 2).sum() / pairs,
                                                abs=1e-12)
    assert kendall_tau_a(x[sample], y[sample]) == pytest.approx(
        brute_tau_a(x[sample], y[sample]), abs=1e-12)


@settings(max_examples=20, deadline=None)
@given(n=st.integers(3, 10), p=st.integers(2, 6), seed=st.integers(0, 10_000),
       scale=st.floats(0.1, 10), shift=st.floats(-5, 5))
def test_rdm_invariances_and_self_similarity(n, p, seed, scale, shift):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, p))
    q, _ = np.linalg.qr(rng.normal(size=(p, p)))
    np.testing.assert_allclose(rdm(x @ q + shift, "euclidean"), rdm(x, "euclidean"),
                               atol=1e-9)
    np.testing.assert_allclose(rdm(scale * x + shift, "correlation"), rdm(x, "correlation"),
                               atol=1e-9)
    np.testing.assert_allclose(rdm(scale * x, "cosine"), rdm(x, "cosine"), atol=1e-9)
    d = rdm(x, "euclidean")
    for method in ("spearman", "pearson", "cosine"):
        assert compare_rdms(d, d, method) == pytest.approx(1.0, abs=1e-12)
    assert compare_rdms(d, d ** 2, "spearman") == pytest.approx(1.0, abs=1e-12)


# --------------------------------------------------------------------------- conditions


def test_average_by_condition_means_each_cell():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(30, 4))
    audio, visual = rng.integers(0, 3, 30), rng.integers(0, 2, 30)
    means, conditions = average_by_condition(x, audio, visual)
    cells = sorted({(a, v) for a, v in zip(audio, visual, strict=True)})
    assert [tuple(c) for c in conditions] == cells
    for row, (a, v) in zip(means, cells, strict=True):
        np.testing.assert_allclose(row, x[(audio == a) & (visual == v)].mean(0), atol=1e-12)
    single, digits = average_by_condition(x, audio)
    np.testing.assert_array_equal(digits, [0, 1, 2])
    np.testing.assert_allclose(single[1], x[audio == 1].mean(0), atol=1e-12)


def test_average_by_condition_reads_coordinate_names():
    rng = np.random.default_rng(8)
    x = rng.normal(size=(10, 3))
    digit = np.array([0, 1] * 5)
    da = xr.DataArray(x, dims=("stimulus", "feature"),
                      coords={"audio_digit": ("stimulus", digit)})
    means, labels = average_by_condition(da, "audio_digit")
    np.testing.assert_allclose(means[1], x[digit == 1].mean(0), atol=1e-12)
    np.testing.assert_array_equal(labels, [0, 1])


def test_categorical_model_rdm():
    np.testing.assert_array_equal(categorical_rdm(np.array([1, 1, 2])),
                                  [[0, 0, 1], [0, 0, 1], [1, 1, 0]])


# --------------------------------------------------------------------------- resampling


def test_bootstrap_drops_pairs_of_a_stimulus_with_its_own_copy():
    a, b = rdm(patterns(n=12, seed=9)), rdm(patterns(n=12, seed=10))
    result = bootstrap_compare_rdms(a, b, "pearson", n_boot=15, seed=4)
    rng = np.random.default_rng(4)
    expected = []
    for _ in range(15):
        rows = rng.integers(0, 12, size=12)
        first, second = [], []
        for p, q in itertools.combinations(range(12), 2):
            if rows[p] != rows[q]:
                first.append(a[rows[p], rows[q]])
                second.append(b[rows[p], rows[q]])
        expected.append(pearsonr(first, second).statistic)
    np.testing.assert_allclose(result.samples, expected, atol=1e-12)
    assert result.estimate == pytest.approx(compare_rdms(a, b, "pearson"), abs=1e-12)
    assert result.ci_low <= result.ci_high


def test_bootstrap_counts_resamples_where_the_comparison_is_undefined():
    labels = np.array([0, 0, 0, 0, 0, 1])
    model = categorical_rdm(labels)
    data = rdm(patterns(n=6, seed=11))
    result = bootstrap_compare_rdms(data, model, "pearson", n_boot=40, seed=0)
    # resamples without stimulus 5 leave a constant model RDM: no correlation
    assert result.n_undefined > 0
    assert np.isfinite(result.ci_low)
    # tau-a stays defined (0) for a constant vector: every pair is tied
    tau = bootstrap_compare_rdms(data, model, "kendall_tau_a", n_boot=40, seed=0)
    assert tau.n_undefined == 0
    assert np.sum(tau.samples == 0) >= result.n_undefined


def test_permutation_test_permutes_condition_labels():
    rng = np.random.default_rng(12)
    labels = np.repeat(np.arange(4), 4)
    x = np.eye(4)[labels] * 3 + rng.normal(size=(16, 4))
    data, model = rdm(x, "euclidean"), categorical_rdm(labels)
    result = permutation_test_rdms(data, model, "spearman", n_perm=99, seed=5)
    generator = np.random.default_rng(5)
    null = []
    for _ in range(99):
        order = generator.permutation(16)
        null.append(compare_rdms(data[np.ix_(order, order)], model, "spearman"))
    np.testing.assert_allclose(result.null, null, atol=1e-12)
    observed = compare_rdms(data, model, "spearman")
    assert result.statistic == pytest.approx(observed, abs=1e-12)
    assert result.p_value == pytest.approx((1 + np.sum(np.array(null) >= observed)) / 100)
    assert result.p_value < 0.05
    tau = permutation_test_rdms(data, model, "kendall_tau_a", n_perm=20, seed=5)
    assert tau.statistic == pytest.approx(brute_tau_a(upper(data), upper(model)), abs=1e-12)


# --------------------------------------------------------------------------- bad input


def test_unknown_metric_and_method_are_refused():
    with pytest.raises(ValueError, match="unknown metric 'manhattan'"):
        rdm(patterns(), metric="manhattan")
    a = rdm(patterns())
    with pytest.raises(ValueError, match="unknown method 'kendall'"):
        compare_rdms(a, a, method="kendall")
    with pytest.raises(ValueError, match="unknown method"):
        bootstrap_compare_rdms(a, a, method="tau_b")


def test_rdms_of_different_sizes_and_shapes_are_refused():
    with pytest.raises(ValueError, match="different numbers of stimuli"):
        compare_rdms(rdm(patterns(n=10)), rdm(patterns(n=11)))
    with pytest.raises(ValueError, match="square"):
        compare_rdms(np.zeros((4, 5)), np.zeros((4, 5)))
    with pytest.raises(ValueError, match="different numbers of stimuli"):
        rdm([patterns(n=5), patterns(n=6)])


def test_non_finite_values_are_refused():
    x = patterns()
    x[2, 2] = np.nan
    with pytest.raises(ValueError, match="X contains 1 NaN"):
        rdm(x)
    a = rdm(patterns())
    a[0, 1] = a[1, 0] = np.inf
    with pytest.raises(ValueError, match="A contains"):
        compare_rdms(a, rdm(patterns()))


def test_undefined_distances_and_correlations_are_refused():
    x = patterns()
    x[4] = 2.0  # a constant pattern: no correlation distance
    with pytest.raises(ValueError, match=r"stimuli \[4\] have a constant pattern"):
        rdm(x, "correlation")
    x[4] = 0.0
    with pytest.raises(ValueError, match="all-zero pattern"):
        rdm(x, "cosine")
    flat = np.ones((6, 6)) - np.eye(6)
    with pytest.raises(ValueError, match="all equal"):
        compare_rdms(flat, rdm(patterns(n=6)), "spearman")
    with pytest.raises(ValueError, match="at least 3"):
        compare_rdms(np.zeros((2, 2)), np.zeros((2, 2)))


def test_labels_of_the_wrong_length_are_refused():
    with pytest.raises(ValueError, match="labels\\[0\\] has 3 entries for 25 stimuli"):
        average_by_condition(patterns(), np.arange(3))
    with pytest.raises(ValueError, match="names no stimulus coordinate"):
        average_by_condition(patterns(), "audio_digit")
