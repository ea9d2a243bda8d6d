"""The time-resolved figures on files whose answer is known by construction (layers where the
heard digit appears at step 3 and the seen digit at step 1), read by
``analyses/temporal_generalization.py`` (onsets and matrices against the library and the
construction) and ``analyses/rsa_over_time.py`` (cross-temporal RSA against scipy)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from activation_files import write_activations
from paths import REPO_ROOT
from scipy.spatial.distance import pdist
from scipy.stats import spearmanr

from repsim import activations
from repsim.analysis import temporal_generalization
from repsim.figures import figure
from repsim.plotting import read_table

N, T, DIGITS, FEATURES = 80, 6, 4, 12


def _known(path, *, heard_from: int, seen_from: int, seed: int = 0):
    """Congruent (clean) and incongruent stimuli; layer ``fused.1`` carries the heard digit
    from step ``heard_from``, ``fused.2`` the seen digit from step ``seen_from`` (0-based);
    a user's ``label`` column equals the heard digit."""
    rng = np.random.default_rng(seed)
    codes = rng.normal(size=(2, DIGITS, FEATURES))
    heard = np.arange(N) % DIGITS
    seen = (heard + 1 + (np.arange(N) // DIGITS) % (DIGITS - 1)) % DIGITS  # never the heard
    congruent = np.arange(N) % DIGITS
    rows = {"stimulus_id": np.array([f"s{i}" for i in range(N)] * 2),
            "condition": np.array(["clean"] * N + ["incongruent"] * N),
            "audio_digit": np.r_[congruent, heard], "visual_digit": np.r_[congruent, seen],
            "label": np.r_[congruent, heard]}
    steps = np.arange(T)
    layers = {}
    for name, (sense, start) in {"fused.1": (0, heard_from), "fused.2": (1, seen_from)}.items():
        digits = rows["audio_digit" if sense == 0 else "visual_digit"]
        code = codes[sense][digits][:, None] * (steps >= start)[None, :, None]
        states = 2.0 * code + rng.normal(size=(2 * N, T, FEATURES))
        layers[name] = {"h": states.astype(np.float32)}
    return write_activations(path, layers, rows)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("time")
    return (_known(folder / "one.h5", heard_from=2, seen_from=0),
            _known(folder / "two.h5", heard_from=1, seen_from=3, seed=1))


def _table(name: str, argv: list[str], out) -> pd.DataFrame:
    assert figure(name).main([*argv, "--out-dir", str(out)]) == 0
    assert (out / f"{name}.png").stat().st_size > 0 and (out / f"{name}.pdf").exists()
    return read_table(out / f"{name}.csv")[0]


def test_temporal_generalization_finds_when_each_sense_enters(files, tmp_path):
    table = _table("temporal_generalization", ["--files", *map(str, files),
                                               "--permutations", "30"], tmp_path)
    assert set(table["condition"]) == {"incongruent"}  # repsim's defaults: heard vs seen
    onsets = table.groupby(["model", "layer", "target"])["onset"].first()
    assert onsets[("one", "fused.1", "audio_digit")] == 3
    assert onsets[("one", "fused.2", "visual_digit")] == 1
    assert onsets[("two", "fused.1", "audio_digit")] == 2
    assert onsets[("two", "fused.2", "visual_digit")] == 4
    # every number the library's, on the file's incongruent stimuli
    data = activations.open(files[0])
    layer = activations.select(data, "fused.1", condition="incongruent")
    expected = temporal_generalization(layer, "audio_digit").scores
    cells = table[(table["model"] == "one") & (table["layer"] == "fused.1")
                  & (table["target"] == "audio_digit")]
    grid = cells.pivot(index="train_step", columns="test_step", values="accuracy").to_numpy()
    np.testing.assert_allclose(grid, expected, rtol=0, atol=1e-12)
    assert np.all(grid[:2, :2] < 0.6) and np.all(grid[2:, 2:] > 0.9)  # a square from step 3


def test_temporal_generalization_of_a_users_column(files, tmp_path):
    table = _table("temporal_generalization", ["--files", str(files[1]), "--target", "label",
                                               "--condition", "incongruent",
                                               "--permutations", "0"], tmp_path)
    assert set(table["target"]) == {"label"} and table["onset"].isna().all()
    stability = table.groupby("layer")["stability"].first()
    assert stability["fused.1"] > 0.6  # the code holds from step 2 on


def test_rsa_over_time_of_one_layer_with_itself_and_of_two_files(files, tmp_path):
    one = _table("rsa_over_time", ["--files", str(files[0])], tmp_path / "one")
    assert set(zip(one["x_layer"], one["y_layer"], strict=True)) == {
        ("fused.1", "fused.1"), ("fused.2", "fused.2")}
    same_step = one[one["x_step"] == one["y_step"]]
    np.testing.assert_allclose(same_step["value"], 1.0, atol=1e-12)

    two = _table("rsa_over_time", ["--files", *map(str, files), "--condition", "incongruent"],
                 tmp_path / "two")
    assert set(zip(two["x_layer"], two["y_layer"], strict=True)) == {
        ("fused.1", "fused.1"), ("fused.2", "fused.2")}
    x = activations.open(files[0])["fused.1.h"].values[N:, 4]
    y = activations.open(files[1])["fused.1.h"].values[N:, 1]
    expected = spearmanr(pdist(x, "correlation"), pdist(y, "correlation"))[0]
    row = two[(two["x_layer"] == "fused.1") & (two["x_step"] == 5) & (two["y_step"] == 2)]
    assert row["value"].item() == pytest.approx(expected, abs=1e-6)


def test_the_scripts_run_from_a_checkout(files, tmp_path):
    import subprocess
    import sys

    done = subprocess.run([sys.executable, str(REPO_ROOT / "analyses" / "rsa_over_time.py"),
                           str(files[0]), "--measure", "cka", "--out-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin",
                               "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"})
    assert done.returncode == 0, done.stderr
    table = read_table(tmp_path / "rsa_over_time.csv")[0]
    assert set(table["measure"]) == {"cka"}
