"""RDMs to and from rsatoolbox: round trips, rsatoolbox's own RDMs and comparisons against
repsim's, measure names, the missing extra, bad input."""

from __future__ import annotations

import importlib
import re
import sys

import numpy as np
import pytest
import xarray as xr
from activation_files import write_activations

import repsim
from repsim import activations
from repsim.analysis import categorical_rdm, compare_rdms, rdm
from repsim.analysis.rsa import METRICS
from repsim.interop import MEASURES, from_rsatoolbox, to_rsatoolbox

try:
    import rsatoolbox
except ImportError:  # the optional extra; only the missing-extra test runs without it
    rsatoolbox = None
needs_rsatoolbox = pytest.mark.skipif(rsatoolbox is None, reason="rsatoolbox is not installed")

AGREEMENT = 1e-10
# rsatoolbox calc_rdm method -> the repsim metric that computes the same RDM
SAME_RDM = {"euclidean": "sqeuclidean_mean", "mahalanobis": "sqeuclidean_mean",
            "correlation": "correlation"}
# rsatoolbox compare method -> repsim compare_rdms method
SAME_COMPARISON = {"spearman": "spearman", "corr": "pearson", "tau-a": "kendall_tau_a",
                   "cosine": "cosine"}


def patterns(n=15, p=6, seed=0) -> xr.DataArray:
    rng = np.random.default_rng(seed)
    return xr.DataArray(rng.normal(size=(n, p)) + 2.0, dims=("stimulus", "feature"),
                        coords={"stimulus_id": ("stimulus", [f"s{i}" for i in range(n)]),
                                "audio_digit": ("stimulus", np.arange(n) % 3)},
                        name=f"layer{seed}")


# --------------------------------------------------------------------------- round trips


@needs_rsatoolbox
@pytest.mark.parametrize("metric", METRICS)
def test_a_labelled_rdm_survives_the_round_trip(metric):
    original = rdm(patterns(), metric)
    converted = to_rsatoolbox(original)
    assert converted.dissimilarity_measure == MEASURES[metric]
    np.testing.assert_array_equal(converted.pattern_descriptors["stimulus_id"],
                                  original["stimulus_id"])
    assert list(converted.rdm_descriptors["representation"]) == ["layer0"]
    xr.testing.assert_identical(from_rsatoolbox(converted), original)


@needs_rsatoolbox
def test_a_stack_from_an_activation_file_survives_the_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    n = 10
    states = {layer: {"h": rng.normal(size=(n, 2, 3, 2, 2)).astype(np.float32)}
              for layer in ("audio.1", "fused.2")}
    stimuli = {"stimulus_id": [f"clip{i}|img{i}" for i in range(n)],
               "condition": ["clean"] * n, "audio_digit": np.arange(n) % 3,
               "audio_snr": np.full(n, np.inf)}
    dataset = activations.open(write_activations(tmp_path / "acts.h5", states, stimuli))
    layers = [activations.select(dataset, layer, time=-1) for layer in ("audio.1", "fused.2")]
    original = rdm(layers)
    converted = to_rsatoolbox(original)
    assert converted.n_rdm == 2
    assert list(converted.rdm_descriptors["representation"]) == ["audio.1.h", "fused.2.h"]
    assert list(converted.rdm_descriptors["time"]) == [1, 1]
    for name in ("stimulus_id", "condition", "audio_digit", "audio_snr"):
        np.testing.assert_array_equal(converted.pattern_descriptors[name], stimuli[name])
    xr.testing.assert_identical(from_rsatoolbox(converted), original)
    dataset.close()


@needs_rsatoolbox
def test_a_numpy_rdm_survives_the_round_trip_without_labels():
    stack = rdm([patterns(seed=s).values for s in range(3)], "cosine")
    converted = to_rsatoolbox(stack, metric="cosine")
    back = from_rsatoolbox(converted)
    assert back.dims == ("representation", "stimulus", "stimulus_")
    assert back.attrs == {"metric": "cosine"}
    assert set(back.coords) == set()
    np.testing.assert_array_equal(back.values, stack)
    assert to_rsatoolbox(stack[0]).dissimilarity_measure is None


@needs_rsatoolbox
def test_rsatoolbox_rdms_come_back_unchanged():
    x = patterns()
    data = rsatoolbox.data.Dataset(x.values, descriptors={"subject": "s01"},
                                   obs_descriptors={"stimulus_id": x["stimulus_id"].values})
    theirs = rsatoolbox.rdm.calc_rdm([data, data], method="correlation")
    back = to_rsatoolbox(from_rsatoolbox(theirs))
    np.testing.assert_array_equal(back.dissimilarities, theirs.dissimilarities)
    assert back.dissimilarity_measure == theirs.dissimilarity_measure == "correlation"
    assert back.descriptors == theirs.descriptors
    np.testing.assert_array_equal(back.pattern_descriptors["stimulus_id"],
                                  theirs.pattern_descriptors["stimulus_id"])
    np.testing.assert_array_equal(back.rdm_descriptors["subject"],
                                  theirs.rdm_descriptors["subject"])


# --------------------------------------------------------------------------- agreement


@needs_rsatoolbox
@pytest.mark.parametrize("method", sorted(SAME_RDM))
def test_rsatoolbox_calc_rdm_equals_repsim_rdm_under_the_matching_name(method):
    x = patterns(n=20, p=9)
    theirs = rsatoolbox.rdm.calc_rdm(rsatoolbox.data.Dataset(x.values), method=method)
    ours = rdm(x, SAME_RDM[method])
    np.testing.assert_allclose(theirs.get_matrices()[0], ours.values, rtol=0, atol=AGREEMENT)
    assert to_rsatoolbox(ours).dissimilarity_measure == theirs.dissimilarity_measure


@needs_rsatoolbox
@pytest.mark.parametrize("method", sorted(SAME_COMPARISON))
def test_rsatoolbox_compare_equals_compare_rdms(method):
    reps = [patterns(n=16, seed=s) for s in range(3)]
    data = rdm(reps, "correlation")
    rounded = np.round(rdm(reps, "sqeuclidean_mean").values, 1)  # ties in the data RDMs too
    digits = reps[0]["audio_digit"].values
    models = np.stack([categorical_rdm(digits), categorical_rdm(np.arange(16) % 2), rounded[0]])
    theirs = rsatoolbox.rdm.compare(to_rsatoolbox(data), to_rsatoolbox(models), method=method)
    ours = compare_rdms(data, models, SAME_COMPARISON[method])
    np.testing.assert_allclose(theirs, ours.values, rtol=0, atol=AGREEMENT)
    theirs = rsatoolbox.rdm.compare(to_rsatoolbox(rounded), to_rsatoolbox(rounded), method)
    np.testing.assert_allclose(theirs, compare_rdms(rounded, rounded, SAME_COMPARISON[method]),
                               rtol=0, atol=AGREEMENT)


# --------------------------------------------------------------------------- measure names


def test_every_metric_has_its_own_rsatoolbox_name():
    assert set(MEASURES) == set(METRICS)
    assert len(set(MEASURES.values())) == len(MEASURES)


@needs_rsatoolbox
def test_rsatoolbox_euclidean_is_never_read_as_repsim_euclidean():
    x = patterns()
    squared = rsatoolbox.rdm.calc_rdm(rsatoolbox.data.Dataset(x.values), method="euclidean")
    rooted = rsatoolbox.rdm.sqrt_transform(squared)
    assert rooted.dissimilarity_measure == "euclidean"
    back = from_rsatoolbox(rooted)
    assert back.attrs == {"dissimilarity_measure": "euclidean"}
    np.testing.assert_allclose(back.values * np.sqrt(x.sizes["feature"]),
                               rdm(x, "euclidean").values, atol=1e-12)
    assert to_rsatoolbox(back).dissimilarity_measure == "euclidean"
    assert to_rsatoolbox(rdm(x, "euclidean")).dissimilarity_measure != "euclidean"


@needs_rsatoolbox
def test_a_measure_repsim_lacks_is_kept_verbatim():
    theirs = rsatoolbox.rdm.RDMs(rdm(patterns().values)[None],
                                 dissimilarity_measure="crossnobis")
    back = from_rsatoolbox(theirs)
    assert "metric" not in back.attrs
    assert to_rsatoolbox(back).dissimilarity_measure == "crossnobis"


# --------------------------------------------------------------------------- missing extra


def test_without_rsatoolbox_the_module_imports_and_calls_name_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "rsatoolbox", None)
    monkeypatch.setitem(sys.modules, "rsatoolbox.rdm", None)
    monkeypatch.delitem(sys.modules, "repsim.interop")
    monkeypatch.setattr(repsim, "interop", None, raising=False)
    interop = importlib.import_module("repsim.interop")
    extra = re.escape("pip install -e '.[rsatoolbox]'")
    with pytest.raises(ImportError, match=extra):
        interop.to_rsatoolbox(np.zeros((3, 3)))
    with pytest.raises(ImportError, match=extra):
        interop.from_rsatoolbox(None)


# --------------------------------------------------------------------------- bad input


@needs_rsatoolbox
def test_bad_input_is_refused_naming_the_problem():
    good = rdm(patterns(n=5), "correlation")
    with pytest.raises(ValueError, match=r"square \(n, n\) RDM or a \(k, n, n\) stack"):
        to_rsatoolbox(np.zeros((4, 5)))
    with pytest.raises(ValueError, match="got shape \\(2, 3, 4, 4\\)"):
        to_rsatoolbox(np.zeros((2, 3, 4, 4)))
    with pytest.raises(ValueError, match="unknown metric 'manhattan'"):
        to_rsatoolbox(good.values, metric="manhattan")
    with pytest.raises(ValueError, match="'sqeuclidean_mean' contradicts .* say 'correlation'"):
        to_rsatoolbox(good, metric="sqeuclidean_mean")
    assert to_rsatoolbox(good, metric="correlation").dissimilarity_measure == "correlation"
    crossnobis = good.copy()
    crossnobis.attrs = {"dissimilarity_measure": "crossnobis"}
    with pytest.raises(ValueError, match="'correlation' contradicts .* say 'crossnobis'"):
        to_rsatoolbox(crossnobis, metric="correlation")
    skewed = good.values.copy()
    skewed[0, 1] += 0.1
    with pytest.raises(ValueError, match="not symmetric"):
        to_rsatoolbox(skewed)
    with pytest.raises(ValueError, match="non-zero diagonal"):
        to_rsatoolbox(good.values + np.eye(5))
    holed = good.values.copy()
    holed[0, 1] = holed[1, 0] = np.nan
    with pytest.raises(ValueError, match="rdm contains 2 NaN"):
        to_rsatoolbox(holed)
    with pytest.raises(TypeError, match="needs an rsatoolbox.rdm.RDMs, got ndarray"):
        from_rsatoolbox(good.values)
