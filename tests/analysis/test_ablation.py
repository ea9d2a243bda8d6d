"""Modality-ablation sensitivity on arrays and on activation files matched by stimulus id."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from activation_files import write_activations

from repsim import activations
from repsim.analysis import ablation_sensitivity, cka, modality_sensitivity, reliance_index

N, STEPS = 30, 2


def recorded_states(audio: np.ndarray, visual: np.ndarray, seed: int = 0) -> dict:
    """Three toy layers: one sees only audio, one only vision, one both (n, T, C, H, W)."""
    rng = np.random.default_rng(seed)
    weights = {name: rng.normal(size=(4, 3 * 2 * 2)) for name in ("a", "v", "fa", "fv")}
    steps = np.arange(1, STEPS + 1)[None, :, None]

    def layer(drive):
        states = np.tanh(drive[:, None, :] * steps + 0.3).reshape(len(drive), STEPS, 3, 2, 2)
        return states.astype(np.float32)  # as activation files store them

    return {"audio.1": {"h": layer(audio @ weights["a"])},
            "visual.1": {"h": layer(visual @ weights["v"])},
            "fused.2": {"h": layer(audio @ weights["fa"] + 0.5 * visual @ weights["fv"])}}


def conditions(seed: int = 1):
    rng = np.random.default_rng(seed)
    audio, visual = rng.normal(size=(N, 4)), rng.normal(size=(N, 4))
    return {"clean": recorded_states(audio, visual),
            "audio_removed": recorded_states(np.zeros_like(audio), visual),
            "visual_removed": recorded_states(audio, np.zeros_like(visual))}


IDS = np.array([f"clip{i}|image{i}" for i in range(N)])


def write(path, by_condition: dict, order=None):
    """One activation file stacking the given conditions along stimulus (rows in ``order``)."""
    names = list(by_condition)
    layers = list(next(iter(by_condition.values())))
    states = {layer: {"h": np.concatenate([by_condition[c][layer]["h"] for c in names])}
              for layer in layers}
    stimuli = {"stimulus_id": np.tile(IDS, len(names)),
               "condition": np.repeat(names, N)}
    if order is not None:
        states = {layer: {"h": value["h"][order]} for layer, value in states.items()}
        stimuli = {key: value[order] for key, value in stimuli.items()}
    return write_activations(path, states, stimuli)


def flat(states: dict, layer: str, t: int) -> np.ndarray:
    return states[layer]["h"][:, t].reshape(N, -1)


def test_modality_sensitivity_is_one_minus_cka_and_the_relative_change():
    data = conditions()
    h, removed = flat(data["clean"], "fused.2", 1), flat(data["visual_removed"], "fused.2", 1)
    sensitivity, change = modality_sensitivity(h, removed, kernel="rbf")
    assert sensitivity == pytest.approx(1 - cka(h, removed, kernel="rbf"), abs=1e-14)
    assert change == pytest.approx(np.sqrt(((h - removed) ** 2).sum() / (h ** 2).sum()))
    assert modality_sensitivity(h, h) == pytest.approx((0.0, 0.0), abs=1e-12)


def test_a_layer_made_constant_by_removal_has_sensitivity_one():
    data = conditions()
    h, silenced = flat(data["clean"], "audio.1", 0), flat(data["audio_removed"], "audio.1", 0)
    assert np.ptp(silenced, axis=0).max() == 0  # the audio branch without audio is constant
    sensitivity, change = modality_sensitivity(h, silenced)
    assert sensitivity == 1.0
    assert change == pytest.approx(np.linalg.norm(h - silenced) / np.linalg.norm(h))


def test_reliance_index():
    np.testing.assert_allclose(reliance_index([1.0, 0.0, 0.2, 0.0], [0.0, 1.0, 0.6, 0.0]),
                               [1.0, 0.0, 0.25, np.nan])


def expected_table(data: dict):
    """Sensitivities computed straight from the arrays, layer by layer."""
    table = {}
    for layer in ("audio.1", "visual.1", "fused.2"):
        for t in range(STEPS):
            h = flat(data["clean"], layer, t)
            table[layer, t] = [modality_sensitivity(h, flat(data[c], layer, t))
                               for c in ("audio_removed", "visual_removed")]
    return table


def test_ablation_sensitivity_of_an_activation_file(tmp_path):
    data = conditions()
    order = np.random.default_rng(2).permutation(3 * N)  # conditions interleaved
    with activations.open(write(tmp_path / "acts.h5", data, order)) as dataset:
        result = ablation_sensitivity(dataset)
    assert result["cka_sensitivity"].dims == ("removed", "layer", "time")
    assert result["reliance_cka"].dims == ("layer", "time")
    for (layer, t), values in expected_table(data).items():
        for removed, (sensitivity, change) in zip(("audio", "visual"), values, strict=True):
            cell = result.sel(layer=layer, time=t, removed=removed)
            assert float(cell["cka_sensitivity"]) == pytest.approx(sensitivity, abs=1e-10)
            assert float(cell["relative_change"]) == pytest.approx(change, rel=1e-6)
    reliance = result["reliance_cka"]
    np.testing.assert_allclose(reliance.sel(layer="audio.1"), 1.0, atol=1e-9)
    np.testing.assert_allclose(reliance.sel(layer="visual.1"), 0.0, atol=1e-9)
    assert ((0.1 < reliance.sel(layer="fused.2")) & (reliance.sel(layer="fused.2") < 0.9)).all()
    np.testing.assert_allclose(result["reliance_change"].sel(layer="audio.1"), 1.0)


def test_two_files_are_matched_by_stimulus_id(tmp_path):
    data = conditions()
    intact = write(tmp_path / "intact.h5", {"clean": data["clean"]})
    shuffled = np.random.default_rng(3).permutation(2 * N)
    ablated = write(tmp_path / "ablated.h5", {c: data[c] for c in ("audio_removed",
                                                                     "visual_removed")},
                    shuffled)
    with activations.open(intact) as first, activations.open(ablated) as second:
        result = ablation_sensitivity(first, second, layers=["fused.2"])
    for t in range(STEPS):
        expected = expected_table(data)["fused.2", t]
        np.testing.assert_allclose(
            result["cka_sensitivity"].sel(layer="fused.2", time=t), [e[0] for e in expected],
            atol=1e-10)


def test_mismatched_stimulus_ids_are_refused(tmp_path):
    data = conditions()
    with activations.open(write(tmp_path / "acts.h5", data)) as dataset:
        renamed = dataset.assign_coords(stimulus_id=("stimulus", np.concatenate(
            [IDS, IDS, np.r_[IDS[:-1], ["somebody else"]]])))
        with pytest.raises(ValueError, match="mismatched stimulus ids"):
            ablation_sensitivity(renamed)


def test_two_files_with_different_stimuli_are_refused(tmp_path):
    data = conditions()
    intact = write(tmp_path / "intact.h5", {"clean": data["clean"]})
    ablated = write(tmp_path / "ablated.h5", {c: data[c] for c in ("audio_removed",
                                                                     "visual_removed")})
    with activations.open(intact) as first, activations.open(ablated) as second:
        other = second.assign_coords(stimulus_id=("stimulus", np.char.add(
            second["stimulus_id"].values.astype(str), "-other-model")))
        with pytest.raises(ValueError, match="mismatched stimulus ids between h and "
                                             "h_removed: 30 of h's ids are missing"):
            ablation_sensitivity(first, other)


def test_bad_input_is_refused(tmp_path):
    data = conditions()
    h = flat(data["clean"], "fused.2", 0)
    with pytest.raises(ValueError, match="h \\(the intact states\\) is constant"):
        modality_sensitivity(np.ones_like(h), h)
    with pytest.raises(ValueError, match="different numbers of stimuli"):
        modality_sensitivity(h, h[:-1])
    with pytest.raises(ValueError, match="unknown kernel"):
        modality_sensitivity(h, h * 2, kernel="laplace")
    labelled = xr.DataArray(h, dims=("stimulus", "feature"),
                            coords={"stimulus_id": ("stimulus", IDS)})
    with pytest.raises(ValueError, match="mismatched stimulus ids"):
        modality_sensitivity(labelled, labelled.assign_coords(
            stimulus_id=("stimulus", np.r_[IDS[1:], ["x"]])))
    with activations.open(write(tmp_path / "acts.h5", data)) as dataset:
        with pytest.raises(ValueError, match="unknown condition 'silence'"):
            ablation_sensitivity(dataset, removed_conditions=("silence", "visual_removed"))
        with pytest.raises(ValueError, match="removed_conditions is {input: condition} or "):
            ablation_sensitivity(dataset, removed_conditions=("audio_removed",))
