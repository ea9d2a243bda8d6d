"""Linear probes: accuracy against scikit-learn on the same folds, nested selection, groups,
standardization, the exact optimum at both shapes (features << and >> stimuli), unfinished
fits, the activation-file form, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr
from activation_files import write_activations
from scipy.special import logsumexp
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from repsim import activations
from repsim.analysis import linear_probe, probe_all, probe_cells, probe_solver
from repsim.analysis.probes import CONFIDENCE_Z


def activation_like(n=400, features=48, classes=10, seed=0, noise=1.2):
    """Features of a random ReLU network with a rank-8 bottleneck, fed clustered inputs."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(classes, 16))
    labels = rng.permutation(np.arange(n) % classes)
    inputs = centers[labels] + noise * rng.normal(size=(n, 16))
    hidden = np.maximum(inputs @ rng.normal(size=(16, 8)) / 4, 0)
    features = np.maximum(hidden @ rng.normal(size=(8, features)) / np.sqrt(8)
                          + 0.1 * rng.normal(size=features), 0)
    return features + 0.05 * rng.normal(size=features.shape), labels


def sklearn_out_of_fold(x, y, make_model, seed=0, folds=5):
    """Out-of-fold predictions of a scikit-learn estimator on our outer folds."""
    predictions = np.empty_like(y)
    for train, test in StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y):
        predictions[test] = make_model().fit(x[train], y[train]).predict(x[test])
    return predictions


def test_fixed_c_matches_scikit_learn_on_the_same_folds():
    x, y = activation_like()
    for c in (0.01, 1.0):
        ours = linear_probe(x, y, Cs=[c])
        theirs = sklearn_out_of_fold(x, y, lambda c=c: make_pipeline(
            StandardScaler(), LogisticRegression(C=c, max_iter=5000)))
        assert abs(ours.accuracy - np.mean(theirs == y)) <= 0.01
        assert np.mean(ours.predictions == theirs) >= 0.97
        np.testing.assert_array_equal(ours.regularization, [c] * 5)


def test_nested_selection_matches_scikit_learn_grid_search():
    x, y = activation_like(seed=1)
    cs = (1e-3, 1e-2, 1e-1, 1.0)
    ours = linear_probe(x, y, Cs=cs, inner_folds=3, seed=0)

    def search():
        return GridSearchCV(
            make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)),
            {"logisticregression__C": list(cs)},
            cv=StratifiedKFold(3, shuffle=True, random_state=0))

    chosen = []
    theirs = np.empty_like(y)
    for train, test in StratifiedKFold(5, shuffle=True, random_state=0).split(x, y):
        fitted = search().fit(x[train], y[train])
        theirs[test] = fitted.predict(x[test])
        chosen.append(fitted.best_params_["logisticregression__C"])
    assert abs(ours.accuracy - np.mean(theirs == y)) <= 0.01
    assert np.sum(np.array(chosen) == ours.regularization) >= 4
    assert 0.2 < ours.accuracy < 0.95  # a fixture where the choice matters


def test_result_fields_chance_and_wilson_interval():
    x, y = activation_like(n=300, classes=3, seed=2)
    y = np.where(np.arange(300) < 150, 0, y)  # imbalanced: half the stimuli are class 0
    result = linear_probe(x, y, Cs=[0.1])
    assert result.chance == pytest.approx(np.mean(y == 0))
    assert result.accuracy == pytest.approx(np.mean(result.predictions == y))
    assert result.fold_accuracies.shape == (5,)
    assert result.accuracy == pytest.approx(result.fold_accuracies.mean(), abs=0.01)
    np.testing.assert_array_equal(result.classes, [0, 1, 2])
    low, high = result.ci
    assert low < result.accuracy < high
    for bound in result.ci:  # Wilson bounds solve (p_hat - p)^2 = z^2 p (1 - p) / n
        assert (result.accuracy - bound) ** 2 == pytest.approx(
            CONFIDENCE_Z ** 2 * bound * (1 - bound) / 300, rel=1e-9)


def test_groups_keep_a_group_out_of_training_and_test_at_once():
    rng = np.random.default_rng(3)
    group = np.repeat(np.arange(20), 15)
    labels = group % 2  # the label is a property of the group
    x = np.eye(20)[group] + 0.1 * rng.normal(size=(300, 20))
    leaky = linear_probe(x, labels, Cs=[1.0])
    grouped = linear_probe(x, labels, Cs=[1.0], groups=group)
    assert leaky.accuracy > 0.95  # memorizing group identity works when groups are shared
    assert grouped.accuracy < 0.7  # and fails on unseen groups


def test_predictions_do_not_depend_on_feature_units():
    x, y = activation_like(seed=4)
    rng = np.random.default_rng(5)
    rescaled = x * rng.uniform(0.01, 100, size=x.shape[1]) + rng.normal(size=x.shape[1]) * 50
    first, second = linear_probe(x, y, Cs=[0.1]), linear_probe(rescaled, y, Cs=[0.1])
    assert np.mean(first.predictions == second.predictions) >= 0.99


def test_several_cells_share_folds_and_match_stimuli_by_id():
    x, y = activation_like(n=200, seed=6)
    ids = np.array([f"s{i}" for i in range(200)])
    order = np.random.default_rng(7).permutation(200)
    first = xr.DataArray(x, dims=("stimulus", "feature"),
                         coords={"stimulus_id": ("stimulus", ids), "digit": ("stimulus", y)})
    shuffled = xr.DataArray(x[order], dims=("stimulus", "feature"),
                            coords={"stimulus_id": ("stimulus", ids[order])})
    one, two = probe_cells([first, shuffled], "digit", Cs=[0.1], device="cpu")
    assert one.accuracy == two.accuracy
    np.testing.assert_array_equal(one.predictions, two.predictions)


def test_probe_all_covers_every_layer_and_time_step(tmp_path):
    rng = np.random.default_rng(8)
    n, steps = 120, 3
    digit = np.arange(n) % 4
    informative = np.eye(4)[digit][:, None, :, None, None] * np.arange(2, steps + 2)[
        None, :, None, None, None]
    states = {"audio.1": {"h": (informative + 0.6 * rng.normal(size=(n, steps, 4, 1, 1)))},
              "visual.1": {"h": rng.normal(size=(n, steps, 2, 2, 1))}}
    stimuli = {"stimulus_id": np.array([f"c{i}|i{i}" for i in range(n)]),
               "condition": np.array(["clean"] * 100 + ["audio_removed"] * 20),
               "audio_digit": digit, "speaker": np.array([f"sp{i % 12}" for i in range(n)])}
    path = write_activations(tmp_path / "acts.h5", states, stimuli)
    with activations.open(path) as dataset:
        table = probe_all(dataset, target="audio_digit", Cs=[0.1, 1.0], groups="speaker")
        assert table["accuracy"].dims == ("layer", "time")
        assert list(table["layer"].values) == ["audio.1", "visual.1"]
        assert table.sizes == {"layer": 2, "time": 3, "fold": 5}
        assert int(table["unconverged"].sum()) == 0
        for layer in ("audio.1", "visual.1"):
            for t in range(steps):
                cell = activations.select(dataset, layer, time=t, condition="clean")
                expected = linear_probe(cell, "audio_digit", Cs=[0.1, 1.0], groups="speaker")
                assert table["accuracy"].sel(layer=layer, time=t) == expected.accuracy
                np.testing.assert_array_equal(
                    table["regularization"].sel(layer=layer, time=t), expected.regularization)
    audio, noise = table["accuracy"].sel(layer="audio.1"), table["accuracy"].sel(
        layer="visual.1")
    assert audio.min() > 0.8 and noise.max() < 0.5
    assert float(table["chance"][0, 0]) == pytest.approx(0.25)


def standardized(x, rows):
    """The training rows of one fit as scikit-learn's StandardScaler leaves them (float64)."""
    return StandardScaler().fit_transform(x[rows].astype(np.float64))


def objective(z, y, c, weights, intercepts):
    """scikit-learn's L2 multinomial objective: C * sum of cross-entropies + ||W||^2 / 2."""
    logits = z @ weights + intercepts
    return c * np.sum(logsumexp(logits, 1) - logits[np.arange(len(y)), y]) \
        + 0.5 * np.sum(weights ** 2)


def exact_fit(z, y, c):
    """The optimum in float64. By the representer theorem W = z^T A; with z z^T =
    U diag(lam) U^T, the rank(z) columns of U sqrt(lam) give the same logits and ||W||, so
    scikit-learn at tol 1e-12 on them solves the same problem, well conditioned even when
    features far outnumber rows."""
    lam, u = np.linalg.eigh(z @ z.T)
    keep = lam > lam[-1] * 1e-10
    model = LogisticRegression(C=c, tol=1e-12, max_iter=100_000).fit(
        u[:, keep] * np.sqrt(lam[keep]), y)
    return z.T @ (u[:, keep] / np.sqrt(lam[keep]) @ model.coef_.T), model.intercept_


@pytest.mark.parametrize(("n", "features", "tol", "rtol"), [
    (30, 200_000, 1e-8, 1e-6), (300, 25_000, 1e-8, 1e-6),  # kernel form, float64
    (400, 48, 1e-4, 1e-4)])  # primal form, float32 products, at the default tol
def test_the_probe_reaches_the_exact_optimum_at_any_shape(n, features, tol, rtol):
    x, y = activation_like(n=n, features=features, classes=3, seed=10)
    folds = list(StratifiedKFold(5, shuffle=True, random_state=0).split(x, y))
    predicted = np.empty_like(y)
    optima = []
    for train, test in folds:
        weights, intercepts = exact_fit(standardized(x, train), y[train], 1.0)
        scaler = StandardScaler().fit(x[train])
        predicted[test] = np.argmax(scaler.transform(x[test]) @ weights + intercepts, 1)
        optima.append(objective(standardized(x, train), y[train], 1.0, weights, intercepts))
    probe = linear_probe(x, y, Cs=[1.0])
    assert probe.unconverged == 0
    assert abs(probe.accuracy - np.mean(predicted == y)) <= 1.01 / n
    assert np.mean(probe.predictions == predicted) >= 0.97
    train = folds[0][0]
    solution = probe_solver.solve(
        x, y.astype(np.int64), 3, [train], np.array([0]), np.array([1.0]), np.array([0]),
        tol=tol, max_iter=1000, device=torch.device("cpu"), coefficients=True)
    assert solution.unconverged == 0
    ours = objective(standardized(x, train), y[train], 1.0, solution.weights[0],
                     solution.intercepts[0])
    assert ours == pytest.approx(optima[0], rel=rtol)


def test_nested_selection_mixing_both_forms_matches_scikit_learn():
    # 150 features: outer fits (80 rows) in primal form, inner fits (53 rows) in kernel form
    x, y = activation_like(n=100, features=150, classes=3, seed=11)
    cs = (0.01, 0.1, 1.0)
    ours = linear_probe(x, y, Cs=cs)
    search = GridSearchCV(
        make_pipeline(StandardScaler(), LogisticRegression(tol=1e-10, max_iter=100_000)),
        {"logisticregression__C": list(cs)}, cv=StratifiedKFold(3, shuffle=True,
                                                                 random_state=0))
    theirs, chosen = np.empty_like(y), []
    for train, test in StratifiedKFold(5, shuffle=True, random_state=0).split(x, y):
        fitted = search.fit(x[train], y[train])
        theirs[test] = fitted.predict(x[test])
        chosen.append(fitted.best_params_["logisticregression__C"])
    np.testing.assert_array_equal(ours.regularization, chosen)
    assert np.mean(ours.predictions == theirs) >= 0.97


@pytest.mark.parametrize("features", [48, 2_000])
def test_unfinished_fits_warn_once_and_are_counted(features, monkeypatch):
    x, y = activation_like(n=200, features=features, seed=9)
    with pytest.warns(RuntimeWarning, match="5 of 5 logistic fits stopped short") as caught:
        result = linear_probe(x, y, Cs=[10.0], max_iter=1)
    assert len(caught) == 1 and result.unconverged == 5
    # a line search that finds no decrease is not convergence either (ARMIJO = 1 asks for
    # more decrease than a convex objective can give, so every line search fails)
    monkeypatch.setattr(probe_solver, "ARMIJO", 1.0)
    with pytest.warns(RuntimeWarning, match="10 of 10 logistic fits stopped short"):
        results = probe_cells([x, x], y, Cs=[10.0])
    assert [r.unconverged for r in results] == [5, 5]


def test_bad_input_is_refused(tmp_path):
    x, y = activation_like(n=100)
    with pytest.raises(ValueError, match="single class"):
        linear_probe(x, np.zeros(100))
    with pytest.raises(ValueError, match="y has 99 labels for 100 stimuli"):
        linear_probe(x, y[:99])
    missing = y.astype(float)
    missing[[3, 7]] = np.nan
    with pytest.raises(ValueError, match="labels contain 2 NaN"):
        linear_probe(x, missing)
    bad = x.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="contains 1 NaN"):
        linear_probe(bad, y)
    rare = y.copy()
    rare[:3] = 99  # a class with 3 stimuli cannot fill 5 stratified folds
    with pytest.raises(ValueError, match="rarest class has 3 stimuli"):
        linear_probe(x, rare)
    with pytest.raises(ValueError, match="Cs must be positive"):
        linear_probe(x, y, Cs=[0.0])
    with pytest.raises(ValueError, match="3 groups cannot fill 5 folds"):
        linear_probe(x, y, groups=np.arange(100) % 3)
    with pytest.raises(ValueError, match="every feature is constant"):
        linear_probe(np.ones((100, 3)), y)
    with pytest.raises(ValueError, match="different numbers of stimuli"):
        probe_cells([x, x[:90]], y)
    states = {"fused.1": {"h": np.ones((20, 2, 1, 1, 1))}}
    path = write_activations(
        tmp_path / "a.h5", states, {"stimulus_id": np.arange(20).astype(str),
                                    "condition": np.array(["clean"] * 20)})
    with activations.open(path) as dataset, \
            pytest.raises(ValueError, match="'visual_digit' names no stimulus coordinate"):
        probe_all(dataset, target="visual_digit")
