"""repsim.record against torchlens (an independent recorder of every operation), on a CNN run
frame by frame: the same module outputs at every time step, to 0."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from record_models import B, FrameCNN, T, seeded

import repsim
from repsim import activations

tl = pytest.importorskip("torchlens")


def test_recorded_steps_equal_torchlens_module_outputs_per_pass(tmp_path):
    model = seeded(FrameCNN)
    frames = torch.randn(B, T, 1, 6, 6, generator=torch.Generator().manual_seed(2))
    ds = activations.open(repsim.record(
        model, [(frames,)], ["body.0", "body.2"], tmp_path / "cnn.h5",
        table=pd.DataFrame({"stimulus_id": [f"s{i}" for i in range(B)]})).path)
    trace = tl.trace(model, frames, save=tl.module("body.0") | tl.module("body.2"))
    for layer in ("body.0", "body.2"):
        for t in range(T):  # torchlens names the t-th call of a module "<module>:<t+1>"
            theirs = trace[f"{layer}:{t + 1}"].out.detach().numpy()
            assert np.array_equal(ds[f"{layer}.h"].values[:, t], theirs), (layer, t)
