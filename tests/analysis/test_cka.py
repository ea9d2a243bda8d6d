"""CKA: against formulas written out here in float64, invariances, streaming, bad input."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import xarray as xr
from activation_files import write_activations
from hypothesis import given, settings
from hypothesis import strategies as st

from repsim import activations
from repsim.analysis import bootstrap_cka, cka, cka_matrix, minibatch_cka, minibatches

# --------------------------------------------------------------------------- references


def centering(n: int) -> np.ndarray:
    return np.eye(n) - np.ones((n, n)) / n


def reference_gram(x: np.ndarray, kernel: str, threshold: float = 1.0) -> np.ndarray:
    """Linear or RBF Gram matrix, distances summed pair by pair (no dot-product trick)."""
    if kernel == "linear":
        return x @ x.T
    squared = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    bandwidth = threshold * np.sqrt(np.median(squared))
    return np.exp(-squared / (2 * bandwidth ** 2))


def reference_hsic(k: np.ndarray, m: np.ndarray, debiased: bool) -> float:
    """Biased HSIC via the centering matrix H; unbiased HSIC by Song et al. (2012), eq. 5."""
    n = k.shape[0]
    if not debiased:
        h = centering(n)
        return np.trace(h @ k @ h @ m) / (n - 1) ** 2
    k, m = k - np.diag(np.diag(k)), m - np.diag(np.diag(m))
    one = np.ones(n)
    return (np.trace(k @ m) + (one @ k @ one) * (one @ m @ one) / ((n - 1) * (n - 2))
            - 2 / (n - 2) * (one @ k @ m @ one)) / (n * (n - 3))


def reference_cka(x, y, kernel="linear", debiased=False, threshold=1.0) -> float:
    k, m = reference_gram(x, kernel, threshold), reference_gram(y, kernel, threshold)
    return reference_hsic(k, m, debiased) / np.sqrt(
        reference_hsic(k, k, debiased) * reference_hsic(m, m, debiased))


def related_pair(n=40, p=12, q=30, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, p))
    y = np.tanh(x @ rng.normal(size=(p, q))) + 0.5 * rng.normal(size=(n, q))
    return x, y


def random_orthogonal(p: int, rng) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(p, p)))
    return q * np.sign(np.diag(r))


OPTIONS = [("linear", False), ("linear", True), ("rbf", False), ("rbf", True)]

# --------------------------------------------------------------------------- values


@pytest.mark.parametrize(("kernel", "debiased"), OPTIONS)
@pytest.mark.parametrize("shape", [(40, 12, 30), (25, 60, 3)])
def test_cka_matches_the_written_out_formula(kernel, debiased, shape):
    x, y = related_pair(*shape)
    expected = reference_cka(x, y, kernel, debiased, threshold=0.8)
    assert cka(x, y, kernel=kernel, debiased=debiased, threshold=0.8) == pytest.approx(
        expected, abs=1e-8)
    assert cka_matrix([x], [y], kernel=kernel, debiased=debiased, threshold=0.8)[0, 0] \
        == pytest.approx(expected, abs=1e-8)


@pytest.mark.parametrize("debiased", [False, True])
def test_feature_space_and_gram_paths_agree(debiased):
    x, y = related_pair(n=60, p=5, q=7)  # fewer features than stimuli: feature space
    assert cka(x, y, debiased=debiased) == pytest.approx(
        cka_matrix([x], [y], debiased=debiased)[0, 0], abs=1e-12)


@pytest.mark.parametrize(("kernel", "debiased"), OPTIONS)
def test_cka_of_a_representation_with_itself_is_one(kernel, debiased):
    x, _ = related_pair()
    assert cka(x, x, kernel=kernel, debiased=debiased) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize(("kernel", "debiased"), OPTIONS)
def test_invariant_to_orthogonal_transforms_and_isotropic_scaling(kernel, debiased):
    x, y = related_pair()
    rng = np.random.default_rng(1)
    base = cka(x, y, kernel=kernel, debiased=debiased)
    rotated = x @ random_orthogonal(x.shape[1], rng)
    assert cka(rotated, y, kernel=kernel, debiased=debiased) == pytest.approx(base, abs=1e-10)
    assert cka(7.5 * x, 0.01 * y, kernel=kernel, debiased=debiased) == pytest.approx(
        base, abs=1e-10)


@pytest.mark.parametrize("debiased", [False, True])
def test_linear_cka_is_invariant_to_mean_shifts(debiased):
    x, y = related_pair()
    shifted = x + np.arange(x.shape[1]) * 3.0
    assert cka(shifted, y, debiased=debiased) == pytest.approx(cka(x, y, debiased=debiased),
                                                               abs=1e-10)


@pytest.mark.parametrize(("kernel", "debiased"), OPTIONS)
def test_not_invariant_to_non_isotropic_scaling(kernel, debiased):
    x, y = related_pair()
    stretched = x * np.linspace(0.1, 10, x.shape[1])
    assert abs(cka(stretched, y, kernel=kernel, debiased=debiased)
               - cka(x, y, kernel=kernel, debiased=debiased)) > 1e-3


@pytest.mark.parametrize(("kernel", "debiased"), OPTIONS)
def test_symmetric(kernel, debiased):
    x, y = related_pair()
    assert cka(x, y, kernel=kernel, debiased=debiased) == pytest.approx(
        cka(y, x, kernel=kernel, debiased=debiased), abs=1e-14)


@pytest.mark.parametrize(("kernel", "debiased"), OPTIONS)
def test_float32_input_gives_the_float64_answer(kernel, debiased):
    x, y = related_pair()
    x32, y32 = x.astype(np.float32), y.astype(np.float32)
    exact = reference_cka(x32.astype(np.float64), y32.astype(np.float64), kernel, debiased)
    assert cka(x32, y32, kernel=kernel, debiased=debiased) == pytest.approx(exact, abs=1e-6)
    assert cka(torch.from_numpy(x32), torch.from_numpy(y32), kernel=kernel,
               debiased=debiased) == pytest.approx(exact, abs=1e-6)


def test_unrelated_representations_have_small_debiased_cka():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(200, 50)), rng.normal(size=(200, 50))
    assert abs(cka(x, y, debiased=True)) < 0.05 < cka(x, y)  # the biased estimate is inflated


# --------------------------------------------------------------------------- cka_matrix


@pytest.mark.parametrize(("kernel", "debiased"), OPTIONS)
def test_cka_matrix_equals_every_pairwise_cka(kernel, debiased):
    rng = np.random.default_rng(4)
    reps = [rng.normal(size=(30, p)) @ rng.normal(size=(p, 20)) for p in (2, 5, 20)]
    reps.append(np.tanh(reps[0]) + 0.1 * rng.normal(size=(30, 20)))
    full = cka_matrix(reps, kernel=kernel, debiased=debiased, device="cpu")
    expected = np.array([[reference_cka(a, b, kernel, debiased) for b in reps] for a in reps])
    np.testing.assert_allclose(full, expected, atol=1e-10)
    np.testing.assert_allclose(np.diag(full), 1.0, atol=1e-12)
    cross = cka_matrix(reps[:2], reps[1:], kernel=kernel, debiased=debiased)
    np.testing.assert_allclose(cross, expected[:2, 1:], atol=1e-10)


def test_cka_matrix_accepts_dicts_tensors_and_higher_dimensional_states():
    rng = np.random.default_rng(5)
    states = rng.normal(size=(16, 3, 4, 4))  # (stimuli, channel, y, x)
    other = rng.normal(size=(16, 8))
    flat = states.reshape(16, -1)
    expected = reference_cka(flat, other)
    result = cka_matrix({"a": torch.from_numpy(states)}, {"b": other})
    assert result.shape == (1, 1)
    assert result[0, 0] == pytest.approx(expected, abs=1e-10)


def labelled(values: np.ndarray, ids) -> xr.DataArray:
    return xr.DataArray(values, dims=("stimulus", "feature"),
                        coords={"stimulus_id": ("stimulus", np.asarray(ids))})


def test_labelled_inputs_are_matched_by_stimulus_id():
    x, y = related_pair(n=20)
    ids = np.array([f"s{i}" for i in range(20)])
    order = np.random.default_rng(6).permutation(20)
    expected = cka(x, y)
    assert cka(labelled(x, ids), labelled(y[order], ids[order])) == pytest.approx(
        expected, abs=1e-12)
    assert cka_matrix([labelled(x, ids)], [labelled(y[order], ids[order])])[0, 0] \
        == pytest.approx(expected, abs=1e-12)


# --------------------------------------------------------------------------- minibatches


def test_one_minibatch_is_the_debiased_estimate():
    x, y = related_pair()
    assert minibatch_cka([[x, y]])[0, 1] == pytest.approx(cka(x, y, debiased=True), abs=1e-12)


def test_averaging_over_every_subset_recovers_the_full_unbiased_estimate():
    # unbiased HSIC is a U-statistic: its mean over all b-subsets is the full-sample value
    x, y = related_pair(n=8, p=3, q=4)
    batches = [[x[list(rows)], y[list(rows)]] for rows in itertools.combinations(range(8), 5)]
    assert minibatch_cka(batches)[0, 1] == pytest.approx(cka(x, y, debiased=True), abs=1e-10)


def test_random_minibatches_estimate_the_full_debiased_cka():
    x, y = related_pair(n=600, p=10, q=20, seed=7)
    full = cka(x, y, debiased=True)
    estimate = minibatch_cka(minibatches([x, y], batch_size=100, seed=0))[0, 1]
    assert estimate == pytest.approx(full, abs=0.03)


def test_minibatches_read_an_activation_file_block_by_block(tmp_path):
    rng = np.random.default_rng(8)
    n = 24
    states = {"audio.1": {"h": rng.normal(size=(n, 2, 3, 2, 2)).astype(np.float32)},
              "fused.2": {"h": rng.normal(size=(n, 2, 2, 2, 2)).astype(np.float32)}}
    ids = np.array([f"clip{i}|img{i}" for i in range(n)])
    path = write_activations(tmp_path / "acts.h5", states,
                                         {"stimulus_id": ids, "condition": ["clean"] * n})
    dataset = activations.open(path)
    layers = [activations.select(dataset, layer, time=1) for layer in ("audio.1", "fused.2")]
    arrays = [states[layer]["h"][:, 1].reshape(n, -1).astype(np.float64)
              for layer in ("audio.1", "fused.2")]
    from_file = minibatch_cka(minibatches(layers, batch_size=8, seed=3))
    from_arrays = minibatch_cka(minibatches(arrays, batch_size=8, seed=3))
    np.testing.assert_allclose(from_file, from_arrays, atol=1e-12)
    blocks = list(minibatches(layers, batch_size=8))
    assert [block[0].shape for block in blocks] == [(8, 12)] * 3
    np.testing.assert_allclose(blocks[1][1], arrays[1][8:16])
    dataset.close()


# --------------------------------------------------------------------------- bootstrap


def test_bootstrap_cka_resamples_stimuli_with_the_seeded_generator():
    x, y = related_pair(n=30)
    result = bootstrap_cka(x, y, kernel="rbf", n_boot=20, seed=11)
    rng = np.random.default_rng(11)
    expected = []
    for _ in range(20):
        rows = rng.integers(0, 30, size=30)
        expected.append(reference_cka(x[rows], y[rows], "rbf"))
    np.testing.assert_allclose(result.samples, expected, atol=1e-10)
    assert result.estimate == pytest.approx(cka(x, y, kernel="rbf"), abs=1e-12)
    assert (result.ci_low, result.ci_high) == pytest.approx(
        tuple(np.quantile(expected, [0.025, 0.975])), abs=1e-12)
    again = bootstrap_cka(x, y, kernel="rbf", n_boot=20, seed=11)
    np.testing.assert_array_equal(again.samples, result.samples)


# --------------------------------------------------------------------------- properties


@settings(max_examples=25, deadline=None)
@given(n=st.integers(4, 12), p=st.integers(1, 6), q=st.integers(1, 6),
       seed=st.integers(0, 10_000), kernel=st.sampled_from(["linear", "rbf"]),
       debiased=st.booleans(), scale=st.floats(0.01, 100))
def test_properties_over_shapes(n, p, q, seed, kernel, debiased, scale):
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=(n, p)), rng.normal(size=(n, q))
    value = cka(x, y, kernel=kernel, debiased=debiased)
    assert value == pytest.approx(cka(y, x, kernel=kernel, debiased=debiased), abs=1e-10)
    assert value == pytest.approx(reference_cka(x, y, kernel, debiased), abs=1e-8)
    assert -1 - 1e-12 <= value <= 1 + 1e-12
    if not debiased:
        assert value >= -1e-12
    transformed = scale * x @ random_orthogonal(p, rng) + 2.0
    assert cka(transformed, y, kernel=kernel, debiased=debiased) == pytest.approx(
        value, abs=1e-7)
    assert cka(x, x, kernel=kernel, debiased=debiased) == pytest.approx(1.0, abs=1e-10)


# --------------------------------------------------------------------------- bad input


def test_different_numbers_of_stimuli_are_refused():
    with pytest.raises(ValueError, match="different numbers of stimuli"):
        cka(np.ones((5, 2)) * np.arange(5)[:, None], np.arange(12.0).reshape(6, 2))
    with pytest.raises(ValueError, match="different numbers of stimuli"):
        rng = np.random.default_rng(0)
        cka_matrix([rng.normal(size=(6, 2))], [rng.normal(size=(7, 2))])


def test_debiased_needs_four_stimuli():
    x = np.arange(6.0).reshape(3, 2) ** 2
    with pytest.raises(ValueError, match="at least 4 stimuli"):
        cka(x, x, debiased=True)
    with pytest.raises(ValueError, match="at least 4"):
        minibatch_cka([[x, x]])
    assert cka(x, x) == pytest.approx(1.0)  # the biased estimator is defined


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_are_refused(bad):
    x, y = related_pair()
    x[3, 1] = bad
    with pytest.raises(ValueError, match="X contains"):
        cka(x, y)
    with pytest.raises(ValueError, match=r"reps_x\[0\] contains"):
        cka_matrix([x])


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
def test_constant_representations_are_refused(kernel):
    x, _ = related_pair()
    constant = np.ones((x.shape[0], 4)) * 3.0
    with pytest.raises(ValueError, match="Y is constant across stimuli"):
        cka(x, constant, kernel=kernel)
    with pytest.raises(ValueError, match=r"reps_y\[1\] is constant"):
        cka_matrix([x], [x, constant], kernel=kernel)
    with pytest.raises(ValueError, match="constant across stimuli in every batch"):
        minibatch_cka([[x[:10], constant[:10]]])


def test_rbf_with_mostly_identical_stimuli_is_refused():
    x = np.zeros((10, 3))
    x[0] = 1.0
    with pytest.raises(ValueError, match="RBF bandwidth is zero"):
        cka(x, np.random.default_rng(0).normal(size=(10, 2)), kernel="rbf")


def test_unknown_kernel_and_bad_threshold_are_refused():
    x, y = related_pair()
    with pytest.raises(ValueError, match="unknown kernel 'cosine'"):
        cka(x, y, kernel="cosine")
    with pytest.raises(ValueError, match="unknown kernel"):
        cka_matrix([x], kernel="poly")
    with pytest.raises(ValueError, match="threshold must be a positive number"):
        cka(x, y, kernel="rbf", threshold=0.0)


def test_mismatched_stimulus_ids_are_refused():
    x, y = related_pair(n=10)
    ids = [f"s{i}" for i in range(10)]
    other = ids[:-1] + ["intruder"]
    with pytest.raises(ValueError, match="mismatched stimulus ids"):
        cka(labelled(x, ids), labelled(y, other))
    with pytest.raises(ValueError, match="duplicated stimulus ids"):
        cka(labelled(x, ids), labelled(y, ids[:-1] + ids[:1]))


def test_empty_and_non_numeric_inputs_are_refused():
    with pytest.raises(ValueError, match="empty"):
        cka(np.zeros((0, 3)), np.zeros((0, 3)))
    with pytest.raises(ValueError, match="real numbers"):
        cka(np.array([["a", "b"]] * 5), np.ones((5, 2)))
    with pytest.raises(ValueError, match="no representations"):
        cka_matrix([])
    with pytest.raises(ValueError, match="no minibatches"):
        minibatch_cka([])
    with pytest.raises(ValueError, match="batch_size must be between 4"):
        list(minibatches([np.ones((10, 2))], batch_size=3))
