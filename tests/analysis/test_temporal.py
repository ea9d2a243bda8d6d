"""Time-resolved analyses against their peers and against recordings whose answer is known by
construction: temporal generalization equal to MNE-Python's GeneralizingEstimator and
cross_val_multiscore (same estimator, data and folds), the cluster test equal to MNE's
permutation_cluster_1samp_test (same data and sign flips), RDM movies equal to rsatoolbox's
calc_rdm_movie; a code that appears at step 3 and stays, one that flips its sign at step 6,
and pure noise, which gives no onset in at least 95 % of seeds."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from repsim.analysis import cka, compare_rdms, rdm
from repsim.analysis.temporal import (
    cross_temporal_similarity,
    decoding_onset,
    rdm_movie,
    temporal_generalization,
)

CLASSES = 4


def recording(n: int = 160, steps: int = 8, features: int = 24, appear: int | None = 2,
              flip: int | None = None, strength: float = 1.5, seed: int = 0
              ) -> tuple[np.ndarray, np.ndarray]:
    """States ``(n, steps, features)`` of noise, plus from step ``appear`` (0-based) on a
    class pattern that stays (and from ``flip`` on is negated); labels balanced."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % CLASSES
    patterns = rng.normal(size=(CLASSES, features))
    x = rng.normal(size=(n, steps, features))
    if appear is not None:
        sign = np.ones(steps)
        if flip is not None:
            sign[flip:] = -1
        code = np.where(np.arange(steps) >= appear, sign, 0.0)
        x += strength * code[None, :, None] * patterns[y][:, None, :]
    return x, y


def mne_scores(x: np.ndarray, y: np.ndarray, estimator, sliding: bool = False) -> np.ndarray:
    from mne.decoding import GeneralizingEstimator, SlidingEstimator, cross_val_multiscore

    cv = list(StratifiedKFold(5, shuffle=True, random_state=0).split(x[:, 0], y))
    kind = SlidingEstimator if sliding else GeneralizingEstimator
    return cross_val_multiscore(kind(estimator, scoring="accuracy"), x.transpose(0, 2, 1), y,
                                cv=cv).mean(0)


def test_the_same_estimator_gives_mnes_generalization_and_sliding_scores():
    pytest.importorskip("mne")
    x, y = recording(n=80, steps=5, features=6)
    estimator = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=5000))
    ours = temporal_generalization(x, y, estimator=estimator)
    np.testing.assert_allclose(ours.scores, mne_scores(x, y, estimator), rtol=0, atol=1e-6)
    np.testing.assert_allclose(ours.diagonal, mne_scores(x, y, estimator, sliding=True),
                               rtol=0, atol=1e-6)


def test_repsims_solver_agrees_with_mnes_scikit_learn_fits():
    pytest.importorskip("mne")
    from sklearn.base import clone

    x, y = recording(n=80, steps=4, features=30, strength=0.6, seed=1)
    estimator = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, tol=1e-6,
                                                                   max_iter=5000))
    ours = temporal_generalization(x, y)
    theirs = temporal_generalization(x, y, estimator=clone(estimator))
    assert np.mean(ours.predictions == theirs.predictions) >= 0.99
    np.testing.assert_allclose(ours.scores, mne_scores(x, y, estimator), rtol=0, atol=0.03)


def test_a_code_that_appears_and_stays_is_a_square_with_its_onset():
    x, y = recording(appear=2)
    result = temporal_generalization(x, y, n_permutations=200)
    early, late = slice(0, 2), slice(2, None)
    assert result.chance == pytest.approx(1 / CLASSES)
    assert np.all(np.abs(result.diagonal[early] - 0.25) < 0.12)
    assert np.all(result.diagonal[late] > 0.9)
    assert np.all(result.scores[late, late] > 0.9)  # a square: any late decoder reads any step
    assert np.all(np.abs(result.scores[early, late] - 0.25) < 0.12)
    assert result.stability > 0.6
    onset = decoding_onset(result=result)
    assert onset.onset == 3 and onset.method == "label permutation within a file"
    assert onset.clusters[0] == (3, 8) and onset.p_values[0] < 0.01


def test_a_code_that_flips_its_sign_is_diagonal_with_a_below_chance_band():
    x, y = recording(appear=2, flip=5)
    result = temporal_generalization(x, y, n_permutations=200)
    first, second = slice(2, 5), slice(5, None)
    assert np.all(result.diagonal[2:] > 0.9)
    assert np.all(result.scores[first, first] > 0.9)
    assert np.all(result.scores[second, second] > 0.9)
    assert np.all(result.scores[first, second] < 0.1)  # below chance (0.25): reversed
    assert np.all(result.scores[second, first] < 0.1)
    assert result.stability < 0.4
    assert decoding_onset(result=result).onset == 3


def test_noise_gives_no_onset_in_at_least_95_percent_of_seeds():
    # 100 recordings of pure noise; the test's level is 5 % by construction (measured: 15
    # onsets in 500 such recordings, 16 in 300 larger ones)
    found = [decoding_onset(result=temporal_generalization(*recording(
        n=48, steps=5, features=4, appear=None, seed=seed), n_permutations=50, seed=seed)
        ).onset for seed in range(100)]
    assert sum(onset is not None for onset in found) <= 5


def test_over_seeds_noise_rarely_and_a_real_onset_always_gives_an_onset():
    rng = np.random.default_rng(0)
    noise = [decoding_onset(scores=0.25 + 0.05 * rng.normal(size=(8, 10)), chance=0.25,
                            n_permutations=256, seed=s).onset for s in range(200)]
    assert sum(onset is not None for onset in noise) <= 10  # 95 % of 200
    rising = 0.25 + np.where(np.arange(10) >= 4, 0.3, 0.0) + 0.05 * rng.normal(size=(8, 10))
    result = decoding_onset(scores=rising, chance=0.25)
    assert result.onset == 5 and result.clusters == [(5, 10)]


def _mne_orders_exact(n: int) -> np.ndarray:
    from mne.stats.cluster_level import bin_perm_rep

    return bin_perm_rep(n)[1:2 ** n]  # what MNE enumerates for tail=1: all but all-zeros


def test_the_cluster_test_over_seeds_equals_mnes():
    mne_stats = pytest.importorskip("mne.stats")
    rng = np.random.default_rng(4)
    scores = 0.1 + np.where(np.arange(12) >= 5, 0.08, 0.0) + 0.06 * rng.normal(size=(8, 12))
    scores[:, 1] += 0.09  # a second, short cluster
    # more permutations than the 2^8 - 1 sign flips: MNE enumerates them all
    t_obs, clusters, p_values, null = mne_stats.permutation_cluster_1samp_test(
        scores - 0.1, tail=1, n_permutations=10_000, out_type="mask", verbose=False)
    ours = decoding_onset(scores=scores, chance=0.1,
                          signs=2.0 * _mne_orders_exact(8) - 1.0)
    np.testing.assert_allclose(ours.statistic, t_obs, rtol=1e-10)
    assert [(where.start + 1, where.stop) for (where,) in clusters] == ours.clusters
    masses = [t_obs[mask].sum() for mask in clusters]
    np.testing.assert_allclose(ours.masses, masses, rtol=1e-10)
    np.testing.assert_allclose(ours.null, null, rtol=1e-10)
    # MNE recomputes the identity flip's mass by another summation, which can land one bit
    # below the observed mass and then not count as a tie; we count it (see TIE)
    ties = [np.sum(np.isclose(null, mass, rtol=1e-12, atol=0) & (null < mass))
            for mass in masses]
    np.testing.assert_allclose(ours.p_values, p_values + np.array(ties) / len(null),
                               rtol=0, atol=1e-12)
    # random sign flips: the same ones MNE draws from the same generator
    n_permutations = 100
    drawn = np.random.default_rng(7).choice(2 ** 8 - 1, n_permutations - 1, replace=False)
    orders = np.array([[int(b) for b in np.binary_repr(s + 1, 8)] for s in drawn])
    _, _, p_random, null_random = mne_stats.permutation_cluster_1samp_test(
        scores - 0.1, tail=1, n_permutations=n_permutations, seed=np.random.default_rng(7),
        verbose=False)
    ours = decoding_onset(scores=scores, chance=0.1, signs=2.0 * orders - 1.0)
    np.testing.assert_allclose(ours.null, null_random, rtol=1e-10)
    ties = [np.sum(np.isclose(null_random, mass, rtol=1e-12, atol=0) & (null_random < mass))
            for mass in ours.masses]
    np.testing.assert_allclose(ours.p_values, p_random + np.array(ties) / len(null_random),
                               rtol=0, atol=1e-12)


def test_rdm_movie_frames_equal_rsatoolboxs():
    rsatoolbox = pytest.importorskip("rsatoolbox")
    from rsatoolbox.data import TemporalDataset
    from rsatoolbox.rdm import calc_rdm_movie

    x, y = recording(n=40, steps=5, features=7)
    data = TemporalDataset(x.transpose(0, 2, 1), obs_descriptors={"label": y},
                           time_descriptors={"time": np.arange(5)})
    for ours_metric, theirs_metric in (("correlation", "correlation"),
                                       ("sqeuclidean_mean", "euclidean")):
        theirs = calc_rdm_movie(data, method=theirs_metric).get_matrices()
        np.testing.assert_allclose(rdm_movie(x, ours_metric), theirs, rtol=0, atol=1e-12)
        averaged = calc_rdm_movie(data, method=theirs_metric, descriptor="label")
        np.testing.assert_allclose(rdm_movie(x, ours_metric, labels=y),
                                   averaged.get_matrices(), rtol=0, atol=1e-12)
    assert rsatoolbox is not None


def test_cross_temporal_similarity_is_cka_or_rsa_of_every_pair_of_steps():
    x, _ = recording(n=30, steps=4, features=6, seed=2)
    y, _ = recording(n=30, steps=3, features=5, seed=3)
    order = np.random.default_rng(0).permutation(30)
    import xarray as xr

    ids = np.array([f"s{i}" for i in range(30)])
    labelled_x = xr.DataArray(x, dims=("stimulus", "time", "feature"),
                              coords={"stimulus_id": ("stimulus", ids)})
    labelled_y = xr.DataArray(y[order], dims=("stimulus", "time", "feature"),
                              coords={"stimulus_id": ("stimulus", ids[order])})
    similarity = cross_temporal_similarity(labelled_x, labelled_y)
    assert similarity.shape == (4, 3)
    for t in range(4):
        for u in range(3):
            assert similarity[t, u] == pytest.approx(cka(x[:, t], y[:, u]), abs=1e-12)
    rsa = cross_temporal_similarity(x, y, "rsa", metric="euclidean", method="pearson")
    assert rsa[2, 1] == pytest.approx(compare_rdms(rdm(x[:, 2], "euclidean"),
                                                   rdm(y[:, 1], "euclidean"), "pearson"))


def test_bad_input_is_named():
    x, y = recording(n=40, steps=3, features=4)
    with pytest.raises(ValueError, match=r"must be \(stimuli, time, <features>\)"):
        temporal_generalization(x[:, 0, 0], y)
    with pytest.raises(ValueError, match="give scores .* or result"):
        decoding_onset()
    with pytest.raises(ValueError, match="need chance"):
        decoding_onset(scores=np.zeros((4, 3)))
    with pytest.raises(ValueError, match="signs must be"):
        decoding_onset(scores=np.ones((4, 3)), chance=0.5, signs=np.ones((5, 3)))
    with pytest.raises(ValueError, match="unknown measure"):
        cross_temporal_similarity(x, x, "mutual_information")
    with pytest.raises(ValueError, match="X has 40, Y has 39"):
        cross_temporal_similarity(x, x[1:])


@pytest.mark.parametrize("budget", [None, 1])
def test_every_layer_and_target_in_one_solve_gives_each_ones_own_decoding(tmp_path,
                                                                          monkeypatch, budget):
    """``temporal_generalization_all`` solves the fits of all layers and targets together
    (grouped by class count; with a budget of one byte, one layer and one training step at
    a time): each cell's accuracies, chance and onset are those of its own
    ``temporal_generalization`` (the accuracies within one stimulus of 80: a fit solved in
    another batch stops at the tolerance by another path)."""
    from activation_files import write_activations

    from repsim import activations
    from repsim.analysis import temporal
    from repsim.labelled import temporal_generalization_all

    if budget is not None:
        monkeypatch.setattr(temporal, "SOLVE_BYTES", budget)
    n, steps = 80, 5
    x, heard = recording(n=n, steps=steps, features=200, appear=1, seed=3)  # kernel form
    narrow, _ = recording(n=n, steps=steps, features=6, appear=3, seed=4)  # primal form
    rows = {"stimulus_id": np.array([f"s{i}" for i in range(n)]),
            "condition": np.array(["clean"] * n), "audio_digit": heard,
            "parity": heard % 2 + 2 * (np.arange(n) % 3 == 0)}  # 3 classes
    path = write_activations(tmp_path / "a.h5", {
        "wide.1": {"h": x.reshape(n, steps, 8, 5, 5).astype(np.float32)},
        "narrow.2": {"h": narrow.reshape(n, steps, 6, 1, 1).astype(np.float32)}}, rows)
    data = activations.open(path)
    grid = temporal_generalization_all(data, ["audio_digit", "parity"], n_permutations=20)
    assert list(grid["layer"].values) == ["wide.1", "narrow.2"]
    for layer in ("wide.1", "narrow.2"):
        states = activations.select(data, layer)
        for target in ("audio_digit", "parity"):
            alone = temporal_generalization(states, target, n_permutations=20)
            cell = grid.sel(layer=layer, target=target)
            np.testing.assert_allclose(cell["accuracy"].values, alone.scores, rtol=0,
                                       atol=0.0125 + 1e-12)
            assert float(cell["chance"]) == alone.chance
            onset = decoding_onset(result=alone).onset
            assert float(cell["onset"]) == onset or (onset is None
                                                     and np.isnan(cell["onset"]))
    assert float(grid["onset"].sel(layer="wide.1", target="audio_digit")) == 2
    assert float(grid["onset"].sel(layer="narrow.2", target="audio_digit")) == 4
