"""Recorded files downstream: the figure scripts take them with --files, and CKA compares a
user's model with a repsim FusionConvLSTM on the same stimulus ids (aligned by id)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import torch
from paths import REPO_ROOT
from torch import nn

import repsim
from repsim import activations
from repsim.models.fusion import FusionConvLSTM, ModelConfig
from repsim.plotting import read_table

N, T, SIDE = 12, 3, 4


class TwoStreamGRU(nn.Module):
    """A user's audio-visual model: each modality flattened per step, summed, into a GRU."""

    def __init__(self) -> None:
        super().__init__()
        self.audio_embed = nn.Linear(SIDE * SIDE, 6)
        self.visual_embed = nn.Linear(SIDE * SIDE, 6)
        self.fusion = nn.GRU(6, 5, batch_first=True)

    def forward(self, audio: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
        joined = self.audio_embed(audio.flatten(2)) + self.visual_embed(visual.flatten(2))
        return self.fusion(joined)[0]


def _linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Kornblith et al.'s linear CKA, written out in float64."""
    x = x.astype(np.float64) - x.mean(0)
    y = y.astype(np.float64) - y.mean(0)
    return float(np.linalg.norm(y.T @ x) ** 2
                 / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)))


def test_cka_between_a_users_model_and_a_fusion_convlstm_by_stimulus_id(tmp_path):
    generator = torch.Generator().manual_seed(0)
    audio = torch.randn(N, T, 1, SIDE, SIDE, generator=generator)
    visual = torch.rand(N, T, 1, SIDE, SIDE, generator=generator)
    ids = [f"pair{i}" for i in range(N)]
    torch.manual_seed(0)
    ours = FusionConvLSTM(ModelConfig(layers=2, hidden=3, fusion_layer=2))
    repsim.record(ours, [{"audio": audio[:6], "visual": visual[:6]},
                         {"audio": audio[6:], "visual": visual[6:]}],
                  ours.recorded_layers(), tmp_path / "fusion.h5",
                  table=pd.DataFrame({"stimulus_id": ids}))
    order = np.random.default_rng(1).permutation(N)  # the user's file in another order
    theirs = TwoStreamGRU()
    repsim.record(theirs, [{"audio": audio[order], "visual": visual[order]}],
                  ["audio_embed", "fusion"], tmp_path / "mine.h5", time_dim=1,
                  table=pd.DataFrame({"stimulus_id": np.array(ids)[order]}))

    done = subprocess.run([sys.executable, str(REPO_ROOT / "analyses" / "cka_by_layer.py"),
                           "--files", str(tmp_path / "mine.h5"), str(tmp_path / "fusion.h5"),
                           "--out-dir", str(tmp_path / "figures")],
                          capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin",
                               "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"})
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "figures" / "cka_by_layer.png").stat().st_size > 0
    table, inputs = read_table(tmp_path / "figures" / "cka_by_layer.csv")
    assert len(inputs) == 2  # the CSV names both files by SHA-256
    assert set(table["x_layer"]) == {"audio_embed", "fusion"}
    assert set(table["y_layer"]) == {"audio.1", "visual.1", "fused.2"}
    assert len(table) == 2 * 3 * T

    mine, fusion = (activations.open(tmp_path / name) for name in ("mine.h5", "fusion.h5"))
    back = np.argsort(order)  # the user's rows put in the fusion file's order, by hand
    for t in range(T):
        x = mine["fusion.h"].values[back, t].reshape(N, -1)
        y = fusion["fused.2.h"].values[:, t].reshape(N, -1)
        row = table[(table["x_layer"] == "fusion") & (table["y_layer"] == "fused.2")
                    & (table["time_step"] == t + 1)]
        assert np.isclose(float(row["cka"].iloc[0]), _linear_cka(x, y), rtol=1e-5, atol=1e-7)
