"""The examples in examples/ run as a reader would run them, and say what they claim."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pandas as pd
from paths import REPO_ROOT

from repsim import activations


def _linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Kornblith et al.'s linear CKA, written out in float64."""
    x = x.astype(np.float64) - x.mean(0)
    y = y.astype(np.float64) - y.mean(0)
    return float(np.linalg.norm(y.T @ x) ** 2
                 / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)))


def test_record_your_model_writes_its_file_figure_and_cka(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1",
           "MPLBACKEND": "Agg"}
    done = subprocess.run([sys.executable, str(REPO_ROOT / "examples" / "record_your_model.py"),
                           str(tmp_path)], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    for name in ("avnet.h5", "record_your_model.png", "record_your_model.pdf",
                 "probes_by_layer.png", "probes_by_layer.csv"):
        assert (tmp_path / name).stat().st_size > 0, name
    printed = float(re.search(r"last step: ([0-9.]+)", done.stdout).group(1))
    ds = activations.open(tmp_path / "avnet.h5")
    assert activations.layer_names(ds) == ["audio", "visual.3", "fusion"]
    clean, noisy = (ds["fusion.h"].values[ds["condition"].values == c][:, -1]
                    for c in ("clean", "audio_snr0"))
    assert abs(printed - _linear_cka(clean, noisy)) < 6e-4
    decoded = re.search(r"fusion layer: ([0-9.]+) to ([0-9.]+)", done.stdout)
    table = pd.read_csv(tmp_path / "probes_by_layer.csv", comment="#")
    fusion = table.loc[(table["layer"] == "fusion") & (table["target"] == "label"), "accuracy"]
    assert len(fusion) == ds.sizes["time"]
    assert float(decoded.group(1)) == round(fusion.min(), 2)
    assert float(decoded.group(2)) == round(fusion.max(), 2)
