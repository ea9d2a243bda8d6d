"""repsim.extract is one caller of repsim.record: the same arrays and coordinates as before
the recorder existed, and the same as recording the checkpoint's model directly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_probeset import tiny_dataset

import repsim
from repsim import activations, extract
from repsim.checkpoint import load_checkpoint, model_from_checkpoint
from repsim.probeset import ProbeSet

TESTS = Path(__file__).parents[1]
REFERENCE = TESTS / "data" / "extract-v2"
CONDITIONS = ("clean", "incongruent", "audio_snr0", "visual_removed")
# Largest difference allowed from the reference arrays (values are at most about 1): a few
# float32 ulps, far below any change of layer, condition or weights.
FLOAT32_ROUNDING = 1e-6


@pytest.fixture(scope="module")
def extracted(tmp_path_factory):
    """The reference checkpoint extracted now, as the reference file was (see its README): in
    a process with one thread from its start (OMP_NUM_THREADS=1), since a convolution's float
    sums depend on the thread count."""
    output = tmp_path_factory.mktemp("extract") / "activations.h5"
    code = (f"from test_probeset import tiny_dataset; from repsim import extract; "
            f"extract.run(extract.ExtractConfig(checkpoint={str(REFERENCE / 'ckpt.pt')!r}, "
            f"output={str(output)!r}, n_stimuli=7, batch_size=5, device='cpu', "
            f"states=('h', 'c'), conditions={CONDITIONS!r}, snrs=()), dataset=tiny_dataset())")
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=300)
    return activations.open(output)


def test_extract_gives_the_arrays_and_coordinates_it_gave_before_the_recorder(extracted):
    now = extracted
    before = activations.open(REFERENCE / "activations.h5")
    assert before.attrs["format_version"] == 2 and now.attrs["format_version"] == 4
    assert sorted(now.data_vars) == sorted(before.data_vars)
    for name in before.data_vars:
        assert now[name].dims == before[name].dims, name
        # float32 rounding: a convolution's sums are ordered by the CPU's vector code (and
        # the data's alignment), so another machine differs in the last bits (seen: 2 ulp)
        np.testing.assert_allclose(now[name].values, before[name].values, rtol=0,
                                   atol=FLOAT32_ROUNDING, err_msg=name)
    assert sorted(now.coords) == sorted(before.coords)
    for name in before.coords:
        assert np.array_equal(now[name].values, before[name].values), name
    assert activations.layer_names(now) == activations.layer_names(before)
    assert activations.state_names(now) == ["h", "c"]
    assert now.attrs["checkpoint_sha256"] == before.attrs["checkpoint_sha256"]
    assert now.attrs["model_class"] == "repsim.models.fusion.FusionConvLSTM"
    assert json.loads(now.attrs["conditions"]) == list(CONDITIONS)


def test_recording_the_checkpoints_model_directly_equals_extract(tmp_path):
    """In one process (one thread count), extract and a direct recording agree exactly."""
    dataset = tiny_dataset()
    extract.run(extract.ExtractConfig(checkpoint=str(REFERENCE / "ckpt.pt"),
                                      output=str(tmp_path / "extracted.h5"), n_stimuli=7,
                                      batch_size=5, device="cpu", states=("h", "c"),
                                      conditions=CONDITIONS, snrs=()), dataset=dataset)
    now = activations.open(tmp_path / "extracted.h5")
    model = model_from_checkpoint(load_checkpoint(REFERENCE / "ckpt.pt"))
    probe = ProbeSet.build(dataset, CONDITIONS, n_stimuli=7, seed=0)
    batches = [{"audio": batch.audio, "visual": batch.visual} for _, batch in probe.batches(5)]
    recorded = activations.open(repsim.record(
        model, batches, ["audio.0", "visual.0", "fused.*"], tmp_path / "direct.h5",
        table=probe.coordinates(), time_dim=1).path)
    for layer, module in model.recorded_modules().items():
        assert np.array_equal(recorded[f"{module}.h"].values, now[f"{layer}.h"].values), layer
    for name in ("stimulus_id", "condition", "audio_snr", "removed"):
        assert np.array_equal(recorded[name].values, now[name].values), name
    assert recorded.attrs["model_sha256"] == now.attrs["model_sha256"]
