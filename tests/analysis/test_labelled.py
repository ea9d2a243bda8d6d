"""xarray in, xarray out: cka_matrix, rdm and compare_rdms label their results with the
inputs' layer names and stimulus coordinates, with the values of the NumPy path."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from activation_files import write_activations

from repsim import activations
from repsim.analysis import (
    bootstrap_compare_rdms,
    categorical_rdm,
    cka_matrix,
    compare_rdms,
    permutation_test_rdms,
    rdm,
)
from repsim.analysis._arrays import label

N = 12
LAYERS = ("audio.1", "fused.2")


@pytest.fixture
def layers(tmp_path) -> list[xr.DataArray]:
    """Every layer at both time steps, as ``repsim.activations.select`` reads them."""
    rng = np.random.default_rng(0)
    states = {layer: {"h": rng.normal(size=(N, 2, 3, 2, 2)).astype(np.float32)}
              for layer in LAYERS}
    stimuli = {"stimulus_id": [f"clip{i}|img{i}" for i in range(N)],
               "condition": ["clean"] * N, "audio_digit": np.arange(N) % 3,
               "visual_digit": np.arange(N) % 4}
    dataset = activations.open(write_activations(tmp_path / "acts.h5", states, stimuli))
    yield [activations.select(dataset, layer, time=t) for layer in LAYERS for t in (0, 1)]
    dataset.close()


def plain(da: xr.DataArray) -> np.ndarray:
    return np.asarray(da.values)


def test_rdm_of_a_layer_carries_its_stimulus_coordinates_on_both_axes(layers):
    result = rdm(layers[0], "euclidean")
    assert result.dims == ("stimulus", "stimulus_")
    for name in ("stimulus_id", "condition", "audio_digit", "visual_digit"):
        np.testing.assert_array_equal(result[name], layers[0][name])
        np.testing.assert_array_equal(result[name + "_"], layers[0][name])
        assert result[name + "_"].dims == ("stimulus_",)
    assert result["representation"].item() == "audio.1.h"
    assert result["time"].item() == 0
    assert result.attrs == {"metric": "euclidean"}
    np.testing.assert_array_equal(result.values, rdm(plain(layers[0]), "euclidean"))


def test_rdm_stack_is_labelled_by_names_or_keys_and_shared_scalars(layers):
    stack = rdm(layers)
    assert stack.dims == ("representation", "stimulus", "stimulus_")
    assert list(stack["representation"].values) == ["audio.1.h"] * 2 + ["fused.2.h"] * 2
    assert list(stack["time"].values) == [0, 1, 0, 1]
    np.testing.assert_array_equal(stack["stimulus_id_"], layers[0]["stimulus_id"])
    np.testing.assert_array_equal(stack.values, rdm([plain(x) for x in layers]))
    keyed = rdm({"early": layers[0], "late": layers[3]})
    assert list(keyed["representation"].values) == ["early", "late"]
    assert list(keyed["time"].values) == [0, 1]


def test_rdm_stack_takes_the_first_inputs_stimulus_order(layers):
    order = np.random.default_rng(1).permutation(N)
    stack = rdm([layers[0], layers[1].isel(stimulus=order)])
    np.testing.assert_array_equal(stack["stimulus_id"], layers[0]["stimulus_id"])
    np.testing.assert_allclose(stack[1].values, rdm(layers[1]).values, atol=1e-12)


def test_cka_matrix_is_labelled_by_layer_and_time(layers):
    result = cka_matrix(layers)
    assert result.dims == ("representation", "representation_")
    assert list(result["representation_"].values) == ["audio.1.h"] * 2 + ["fused.2.h"] * 2
    assert list(result["time_"].values) == [0, 1, 0, 1]
    np.testing.assert_array_equal(result.values, cka_matrix([plain(x) for x in layers]))
    cross = cka_matrix({"early": layers[0], "late": layers[2]}, layers[1::2], kernel="rbf")
    assert list(cross["representation"].values) == ["early", "late"]
    assert list(cross["time"].values) == [0, 0]
    assert list(cross["time_"].values) == [1, 1]
    np.testing.assert_array_equal(
        cross.values, cka_matrix([plain(layers[0]), plain(layers[2])],
                                 [plain(x) for x in layers[1::2]], kernel="rbf"))


def test_compare_rdms_is_labelled_and_aligns_stimuli_by_id(layers):
    stack = rdm(layers)
    models = [categorical_rdm(layers[0]["audio_digit"].values),
              categorical_rdm(layers[0]["visual_digit"].values)]
    result = compare_rdms(stack, models, "kendall_tau_a")
    assert result.dims == ("representation", "representation_")
    assert list(result["time"].values) == [0, 1, 0, 1]
    np.testing.assert_array_equal(result["representation_"], [0, 1])
    np.testing.assert_array_equal(result.values,
                                  compare_rdms(stack.values, np.stack(models), "kendall_tau_a"))
    order = np.random.default_rng(2).permutation(N)
    shuffled = stack.isel(stimulus=order, stimulus_=order)
    np.testing.assert_allclose(compare_rdms(stack, shuffled).values,
                               compare_rdms(stack.values, stack.values), atol=1e-12)
    single = compare_rdms(stack[0], shuffled[2])
    assert isinstance(single, float)
    assert single == pytest.approx(compare_rdms(stack.values[0], stack.values[2]), abs=1e-12)
    assert list(compare_rdms(stack[0], stack)["representation"].values) == ["audio.1.h"]
    test = permutation_test_rdms(stack[0], shuffled[1], n_perm=5)
    assert test.statistic == pytest.approx(single_pair(stack, 0, 1), abs=1e-12)
    interval = bootstrap_compare_rdms(stack[0], shuffled[1], n_boot=5)
    assert interval.estimate == pytest.approx(single_pair(stack, 0, 1), abs=1e-12)


def single_pair(stack: xr.DataArray, i: int, j: int) -> float:
    return compare_rdms(stack.values[i], stack.values[j])


def test_numpy_in_numpy_out():
    rng = np.random.default_rng(3)
    reps = {"a": rng.normal(size=(10, 4)), "b": rng.normal(size=(10, 5))}
    assert type(cka_matrix(reps)) is np.ndarray
    assert type(rdm(reps["a"])) is np.ndarray
    assert type(rdm(reps)) is np.ndarray
    stack = rdm(list(reps.values()))
    assert type(compare_rdms(stack, stack)) is np.ndarray


def test_a_coordinate_labelling_two_axes_is_refused():
    with pytest.raises(ValueError, match="'index' would label two axes"):
        label(np.zeros((2, 3)), [("representation", {"index": np.arange(2)}),
                                 ("stimulus", {"index": np.arange(3)})])
