"""Where ``fcntl`` does not exist (Windows): repsim imports, the analysis library computes,
activation files are written and read, and writing warns that nothing locks the output."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from paths import REPO_ROOT

# Runs with ``import fcntl`` failing as on Windows (a None entry in sys.modules makes the
# import raise ImportError); prints what the parent test checks.
WITHOUT_FCNTL = r"""
import json
import sys
sys.modules["fcntl"] = None
import warnings

import numpy as np

import repsim
import repsim.activations
import repsim.analysis
from activation_files import write_activations

rng = np.random.default_rng(0)
x, y = rng.normal(size=(12, 5)), rng.normal(size=(12, 4))
print("cka", repr(repsim.analysis.cka(x, y)))

states = {"fused.1": {"h": rng.normal(size=(6, 2, 3, 2, 2)).astype("float32")}}
stimuli = {"stimulus_id": [f"s{i}" for i in range(6)], "audio_digit": list(range(6))}
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    path = write_activations(sys.argv[1], states, stimuli)
print("warnings", json.dumps([f"{w.category.__name__}: {w.message}" for w in caught]))
data = repsim.activations.open(path)
read = np.asarray(repsim.activations.select(data, "fused.1", state="h"))
print("same", bool(np.array_equal(read, states["fused.1"]["h"])))
"""


def linear_cka(x, y) -> float:
    """Linear CKA in float64: centred Gram matrices, HSIC ratio (Kornblith et al., 2019)."""
    import numpy as np

    x = np.asarray(x, dtype=np.float64) - np.mean(x, axis=0)
    y = np.asarray(y, dtype=np.float64) - np.mean(y, axis=0)
    cross = np.linalg.norm(y.T @ x) ** 2
    return float(cross / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)))


def test_import_analysis_and_activation_files_work_without_fcntl(tmp_path):
    import numpy as np

    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), str(REPO_ROOT / "tests")])}
    done = subprocess.run([sys.executable, "-c", WITHOUT_FCNTL, str(tmp_path / "a.h5")],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = dict(line.split(" ", 1) for line in done.stdout.splitlines())
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(12, 5)), rng.normal(size=(12, 4))
    assert np.isclose(float(lines["cka"]), linear_cka(x, y), rtol=1e-10)
    assert lines["same"] == "True"
    warned = json.loads(lines["warnings"])
    assert len(warned) == 1 and warned[0].startswith("RuntimeWarning: ")
    assert "not locked" in warned[0] and "a.h5" in warned[0]
