"""Mechanism measures: noise entry (against float64 formulas written out here) and the transfer
probe of what survives noise (against scikit-learn on the same folds)."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from repsim.analysis import noise_entry, transfer_probe


def linear_cka_float64(x: np.ndarray, y: np.ndarray) -> float:
    """Kornblith et al. (2019) linear CKA: ||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F)."""
    x = np.asarray(x, dtype=np.float64) - np.mean(x, axis=0)
    y = np.asarray(y, dtype=np.float64) - np.mean(y, axis=0)
    return float(np.linalg.norm(y.T @ x) ** 2
                 / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)))


def test_noise_entry_is_one_minus_cka_and_relative_change():
    rng = np.random.default_rng(0)
    clean = rng.normal(size=(40, 12))
    noisy = clean + 0.7 * rng.normal(size=clean.shape)
    entry, change = noise_entry(clean, noisy)
    assert entry == pytest.approx(1 - linear_cka_float64(clean, noisy), abs=1e-10)
    assert change == pytest.approx(np.sqrt(np.sum((noisy - clean) ** 2) / np.sum(clean ** 2)),
                                   rel=1e-10)
    assert 0 < entry < 1


def test_noise_that_never_reaches_a_layer_enters_nothing():
    clean = np.random.default_rng(1).normal(size=(20, 5))
    entry, change = noise_entry(clean, clean.copy())
    assert entry == pytest.approx(0.0, abs=1e-12) and change == 0.0


def test_noise_entry_grows_with_the_noise_and_matches_stimuli_by_id():
    rng = np.random.default_rng(2)
    clean = rng.normal(size=(50, 8))
    draw = rng.normal(size=clean.shape)
    entries = [noise_entry(clean, clean + level * draw)[0] for level in (0.1, 0.5, 2.0)]
    assert entries == sorted(entries)
    ids = [f"s{i}" for i in range(50)]
    order = rng.permutation(50)
    labelled = xr.DataArray(clean, dims=("stimulus", "unit"), coords={"stimulus_id": (
        "stimulus", ids)})
    shuffled = xr.DataArray((clean + 0.5 * draw)[order], dims=("stimulus", "unit"),
                            coords={"stimulus_id": ("stimulus", np.array(ids)[order])})
    assert noise_entry(labelled, shuffled)[0] == pytest.approx(entries[1], abs=1e-10)


def test_noise_entry_refuses_constant_clean_states():
    with pytest.raises(ValueError, match="constant"):
        noise_entry(np.ones((10, 3)), np.random.default_rng(0).normal(size=(10, 3)))


def digits_with_a_shift(n=300, features=20, seed=0, shift=1.0):
    """Class clusters (the seen digit) and the same stimuli with noise added to every row."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % 10)
    centers = rng.normal(size=(10, features))
    clean = centers[labels] + 0.8 * rng.normal(size=(n, features))
    return clean, clean + shift * rng.normal(size=clean.shape), labels


def test_transfer_probe_matches_scikit_learn_trained_clean_tested_shifted():
    clean, shifted, labels = digits_with_a_shift()
    ours = transfer_probe(clean, shifted, labels, folds=5, seed=0, C=1.0)
    theirs = np.empty_like(labels)
    for train, test in StratifiedKFold(5, shuffle=True, random_state=0).split(clean, labels):
        model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=5000))
        theirs[test] = model.fit(clean[train], labels[train]).predict(shifted[test])
    assert abs(ours.accuracy - np.mean(theirs == labels)) <= 0.01
    assert np.mean(ours.predictions == theirs) >= 0.97
    assert ours.chance == pytest.approx(0.1)


def test_transfer_probe_loses_what_the_shift_destroys():
    clean, mild, labels = digits_with_a_shift(shift=0.2)
    _, harsh, _ = digits_with_a_shift(shift=5.0)
    kept = transfer_probe(clean, mild, labels).accuracy
    lost = transfer_probe(clean, harsh, labels).accuracy
    assert kept > 0.8 and lost < kept - 0.3


def test_transfer_probe_bad_input():
    clean, shifted, labels = digits_with_a_shift(n=50)
    with pytest.raises(ValueError, match="same stimuli"):
        transfer_probe(clean, shifted[:, :5], labels)
    with pytest.raises(ValueError, match="folds"):
        transfer_probe(clean, shifted, labels, folds=1)
