"""The figures (repsim.figures, run as analyses/<name>.py or python -m repsim.figures) on small
activation and metrics fixtures made here.

Each figure must write a non-empty PNG and PDF and a CSV with its documented columns whose
header names the SHA-256 of every input; known structure planted in the fixtures must come
out (CKA 1 between a network and itself, reliance index 1 for an audio-only layer); a missing
or incomplete input must give one ``error:`` line and exit status 2.
"""

from __future__ import annotations

import argparse
import ast
import errno
import json
import math
import os
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from activation_files import write_activations
from paths import REPO_ROOT
from run_files import write_metrics_file
from scipy.spatial.distance import pdist, squareform
from scipy.stats import spearmanr

from repsim import activations
from repsim.analysis.cka import minibatches
from repsim.figures import FIGURES, figure
from repsim.figures.__main__ import main as figures_main
from repsim.figures.base import open_model
from repsim.plotting import read_table
from repsim.provenance import sha256_file
from repsim.runs import resolve_model_input

ANALYSES = REPO_ROOT / "analyses"
SNRS = (10.0, 0.0, -10.0)


# ----------------------------------------------------------------------------- fixtures


def _layers(fusion_layer: int, depth: int) -> list[str]:
    """Layer names of a fusion network, as FusionConvLSTM.layer_names gives them."""
    names = []
    for d in range(1, fusion_layer):
        names += [f"audio.{d}", f"visual.{d}"]
    return names + [f"fused.{d}" for d in range(fusion_layer, depth + 1)]


def _stimuli(per_digit: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Clean, modality-removed and incongruent conditions over the same clips and images;
    in the incongruent pairs every audio digit and every visual digit occurs equally often."""
    n = 10 * per_digit
    digit = np.repeat(np.arange(10), per_digit)
    shift = np.tile(1 + np.arange(per_digit) % 9, 10)
    other = (digit + shift) % 10  # another digit for the image, each as often as the others
    image_of = {d: np.flatnonzero(digit == d) for d in range(10)}
    incongruent_image = np.array([rng.choice(image_of[d]) for d in other])
    clip = np.arange(n)
    rows = {"clean": (clip, clip, "none"), "audio_removed": (clip, clip, "audio"),
            "visual_removed": (clip, clip, "visual"),
            "incongruent": (clip, incongruent_image, "none")}
    columns: dict[str, list] = {key: [] for key in (
        "stimulus_id", "condition", "audio_digit", "visual_digit", "congruent", "speaker",
        "audio_snr", "visual_snr", "removed", "audio_index", "visual_index")}
    for condition, (clips, images, removed) in rows.items():
        columns["stimulus_id"] += [f"clip{c}|img{i}" for c, i in zip(clips, images, strict=True)]
        columns["condition"] += [condition] * n
        columns["audio_digit"] += list(digit[clips])
        columns["visual_digit"] += list(digit[images])
        columns["congruent"] += list(digit[clips] == digit[images])
        columns["speaker"] += [f"speaker{c % 3}" for c in clips]
        columns["audio_snr"] += [math.inf] * n
        columns["visual_snr"] += [math.inf] * n
        columns["removed"] += [removed] * n
        columns["audio_index"] += list(clips)
        columns["visual_index"] += list(images)
    return {key: np.asarray(values) for key, values in columns.items()}


def make_activations(path: Path, *, fusion_layer: int, depth: int = 2, seed: int = 0,
                     per_digit: int = 6, timesteps: int = 4, shape=(4, 3, 3),
                     audio_only: str | None = None) -> Path:
    """A small activation file whose layers mix digit-coded audio and visual signals.

    Stimulus structure (ids, digits, conditions) depends only on the data seed 0, so files of
    different models align; the weights depend on ``seed`` and the architecture. Branch
    layers see one modality; fused layers both; ``audio_only`` names a layer that reads the
    audio signal only (so removing vision leaves it unchanged). Evidence grows over time.
    """
    data_rng = np.random.default_rng(0)
    stimuli = _stimuli(per_digit, data_rng)
    n, features = len(stimuli["stimulus_id"]), int(np.prod(shape))
    prototypes = data_rng.normal(size=(2, 10, 16))
    clip_noise = data_rng.normal(scale=0.6, size=(10 * per_digit, 16))
    image_noise = data_rng.normal(scale=0.6, size=(10 * per_digit, 16))
    audio = prototypes[0, stimuli["audio_digit"]] + clip_noise[stimuli["audio_index"]]
    visual = prototypes[1, stimuli["visual_digit"]] + image_noise[stimuli["visual_index"]]
    audio[stimuli["removed"] == "audio"] = 0.0
    visual[stimuli["removed"] == "visual"] = 0.0
    rng = np.random.default_rng(1000 + seed)
    ramp = np.linspace(0.4, 1.0, timesteps)[None, :, None]
    states = {}
    for layer in _layers(fusion_layer, depth):
        stream = layer.split(".")[0]
        w_audio, w_visual = rng.normal(size=(2, 16, features)) / 4
        drive = np.zeros((n, features))
        if stream in ("audio", "fused"):
            drive += audio @ w_audio
        if stream in ("visual", "fused") and layer != audio_only:
            drive += visual @ w_visual
        h = np.tanh(drive[:, None, :] * ramp)
        states[layer] = {"h": h.reshape(n, timesteps, *shape).astype(np.float32)}
    prediction = np.where(stimuli["removed"] == "audio", stimuli["visual_digit"],
                          stimuli["audio_digit"])
    config = {"model": {"fusion_layer": fusion_layer, "layers": depth}, "seed": seed}
    return write_activations(path, states, stimuli, {"config": config},
                             prediction=prediction)


def make_run(runs_dir: Path, *, fusion_layer: int, seed: int, depth: int = 2,
             activations: bool = True, audio_only: str | None = None) -> Path:
    """A run directory with metrics.json (accuracies falling with the fusion layer and SNR)
    and, if asked, an activation file."""
    run_dir = runs_dir / f"synthetic-f{fusion_layer}-s{seed}"
    run_dir.mkdir(parents=True)
    clean = 0.95 - 0.05 * fusion_layer + 0.01 * seed
    noise = [{"noise": kind, "snr_db": snr, "accuracy": clean - 0.02 * (10 - snr) * (i + 1) / 3}
             for i, kind in enumerate(("audio", "visual", "both")) for snr in SNRS]
    write_metrics_file(run_dir, run=run_dir.name, fusion_layer=fusion_layer, layers=depth,
                       seed=seed, clean_accuracy=clean, noise=noise,
                       removed={"audio": 0.3, "visual": 0.6}, val_accuracy=clean)
    if activations:
        make_activations(run_dir / "activations.h5", fusion_layer=fusion_layer, depth=depth,
                         seed=seed, audio_only=audio_only)
    return run_dir


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory) -> Path:
    """Early (k=1) and late (k=3) runs, two seeds each, with activations; a k=2 run without."""
    root = tmp_path_factory.mktemp("runs")
    for seed in (0, 1):
        make_run(root, fusion_layer=1, seed=seed)
        make_run(root, fusion_layer=3, seed=seed)
    make_run(root, fusion_layer=2, seed=0, activations=False)
    return root


def check_outputs(out_dir: Path, name: str, columns: list[str], inputs: list[Path]):
    """PNG, PDF and CSV exist and are non-empty; the CSV has ``columns`` and the inputs'
    digests; returns the table."""
    for suffix in ("png", "pdf"):
        figure = out_dir / f"{name}.{suffix}"
        assert figure.is_file() and figure.stat().st_size > 1000, figure
    assert (out_dir / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out_dir / f"{name}.pdf").read_bytes()[:5] == b"%PDF-"
    table, digests = read_table(out_dir / f"{name}.csv")
    assert list(table.columns) == columns
    assert len(table) > 0
    assert {Path(p).resolve(): d for p, d in digests.items()} == {
        Path(p).resolve(): sha256_file(p) for p in inputs}
    leftovers = [p.name for p in out_dir.iterdir() if ".tmp-" in p.name]
    assert leftovers == []
    return table


def assert_user_error(capsys, status: int, *fragments: str) -> None:
    """Exit status 2 and exactly one ``error:`` line on stderr mentioning ``fragments``."""
    lines = capsys.readouterr().err.strip().splitlines()
    assert status == 2
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


# ----------------------------------------------------------------------------- noise


def test_noise_robustness_summarizes_seeds(runs_dir, tmp_path):
    module = figure("noise_robustness")
    assert module.main(["--runs-dir", str(runs_dir), "--out-dir", str(tmp_path)]) == 0
    metrics = sorted(runs_dir.glob("*/metrics.json"))
    table = check_outputs(tmp_path, "noise_robustness", module.COLUMNS, metrics)
    assert sorted(table["fusion_layer"].unique()) == [1, 2, 3]
    assert set(table["noise"]) == {"none", "audio", "visual", "both"}
    # early fusion, clean: two seeds; the interval is Student's t over them
    accuracies = [json.loads(p.read_text())["clean_accuracy"] for p in metrics
                  if json.loads(p.read_text())["fusion_layer"] == 1]
    row = table[(table["fusion_layer"] == 1) & (table["noise"] == "none")].iloc[0]
    half = 12.706204736174707 * np.std(accuracies, ddof=1) / math.sqrt(2)  # t(0.975, 1 df)
    assert row["snr_db"] == math.inf and row["n_seeds"] == 2
    assert row["accuracy_mean"] == pytest.approx(np.mean(accuracies), abs=1e-6)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(
        (np.mean(accuracies) - half, np.mean(accuracies) + half), abs=1e-5)
    one_seed = table[(table["fusion_layer"] == 2) & (table["noise"] == "audio")]
    assert len(one_seed) == len(SNRS) and one_seed["ci_low"].isna().all()


def test_noise_robustness_takes_run_directories(runs_dir, tmp_path):
    module = figure("noise_robustness")
    chosen = [runs_dir / "synthetic-f1-s0", runs_dir / "synthetic-f3-s0" / "metrics.json"]
    assert module.main([*map(str, chosen), "--out-dir", str(tmp_path)]) == 0
    table = check_outputs(tmp_path, "noise_robustness", module.COLUMNS,
                          [chosen[0] / "metrics.json", chosen[1]])
    assert sorted(table["fusion_layer"].unique()) == [1, 3]
    assert (table["n_seeds"] == 1).all()


def test_noise_robustness_bad_inputs_exit_2(tmp_path, capsys):
    module = figure("noise_robustness")
    out = tmp_path / "figures"
    status = module.main(["--runs-dir", str(tmp_path / "nowhere"), "--out-dir", str(out)])
    assert_user_error(capsys, status, "nowhere", "does not exist")
    run_dir = make_run(tmp_path / "runs", fusion_layer=1, seed=0, activations=False)
    metrics = run_dir / "metrics.json"
    metrics.write_text(metrics.read_text()[:100])
    status = module.main(["--runs-dir", str(tmp_path / "runs"), "--out-dir", str(out)])
    assert_user_error(capsys, status, str(metrics), "incomplete")
    assert not out.exists()


def stimulus_columns(data, rows) -> dict[str, np.ndarray]:
    """The per-stimulus coordinates of ``rows`` as the writer takes them (without the row
    number and the predictions, which it writes itself)."""
    return {name: coord.values[rows] for name, coord in data.coords.items()
            if coord.dims == ("stimulus",) and name not in ("stimulus", "prediction")}


def copy_shuffled(source: Path, target: Path, seed: int = 0) -> Path:
    """The same network's activations with the stimuli stored in another order."""
    data = activations.open(source)
    order = np.random.default_rng(seed).permutation(data.sizes["stimulus"])
    states = {layer: {"h": data[f"{layer}.h"].values[order]}
              for layer in activations.layer_names(data)}
    stimuli = stimulus_columns(data, order)
    prediction = data["prediction"].values[order]
    return write_activations(target, states, stimuli, {"config": data.attrs["config"]},
                             prediction=prediction)


def truncated_copy(source: Path, target: Path) -> Path:
    """The first half of a file's bytes: what a crashed copy leaves behind."""
    target.write_bytes(source.read_bytes()[: source.stat().st_size // 2])
    return target


def centered_linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA written out in float64 (Kornblith et al. 2019, feature-space form)."""
    x = x.reshape(len(x), -1).astype(np.float64)
    y = y.reshape(len(y), -1).astype(np.float64)
    x, y = x - x.mean(0), y - y.mean(0)
    return float(np.linalg.norm(y.T @ x) ** 2
                 / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)))


def states_by_id(path: Path, layer: str, condition: str, time: int) -> dict[str, np.ndarray]:
    data = activations.open(path)
    keep = data["condition"].values == condition
    values = data[f"{layer}.h"].values[keep][:, time]
    return dict(zip(data["stimulus_id"].values[keep], values, strict=True))


# ----------------------------------------------------------------------------- CKA


def test_cka_by_layer_default_runs(runs_dir, tmp_path):
    module = figure("cka_by_layer")
    assert module.main(["--runs-dir", str(runs_dir), "--out-dir", str(tmp_path)]) == 0
    early, late, other = (runs_dir / name / "activations.h5" for name in
                          ("synthetic-f1-s0", "synthetic-f3-s0", "synthetic-f1-s1"))
    table = check_outputs(tmp_path, "cka_by_layer", module.COLUMNS, [early, late, other])
    models = table[table["comparison"] == "models"]
    assert set(models["x_layer"]) == {"fused.1", "fused.2"}
    assert set(models["y_layer"]) == {"audio.1", "visual.1", "audio.2", "visual.2"}
    assert sorted(models["time_step"].unique()) == [1, 2, 3, 4]
    assert set(table["comparison"]) == {"models", "seed reference"}
    assert (table["kernel"] == "linear").all()
    # one value against CKA written out here, stimuli matched by id
    x, y = (states_by_id(p, layer, "clean", 3) for p, layer in
            ((early, "fused.2"), (late, "visual.1")))
    ids = sorted(x)
    expected = centered_linear_cka(np.stack([x[i] for i in ids]), np.stack([y[i] for i in ids]))
    row = models[(models["x_layer"] == "fused.2") & (models["y_layer"] == "visual.1")
                 & (models["time_step"] == 4)]
    assert row["cka"].item() == pytest.approx(expected, abs=1e-5)
    assert ((table["cka"] > 0) & (table["cka"] <= 1 + 1e-6)).all()


def test_cka_of_a_network_with_itself_has_a_unit_diagonal(runs_dir, tmp_path):
    module = figure("cka_by_layer")
    early = runs_dir / "synthetic-f1-s0" / "activations.h5"
    same = copy_shuffled(early, tmp_path / "same-network.h5")
    out = tmp_path / "figures"
    assert module.main([str(early), str(same), "--kernel", "both", "--out-dir", str(out)]) == 0
    table = check_outputs(out, "cka_by_layer", module.COLUMNS, [early, same])
    assert set(table["kernel"]) == {"linear", "rbf"}
    assert set(table["comparison"]) == {"models"}
    diagonal = table[table["x_layer"] == table["y_layer"]]
    assert len(diagonal) == 2 * 2 * 4  # kernels x layers x time steps
    np.testing.assert_allclose(diagonal["cka"], 1.0, atol=1e-6)
    off_diagonal = table[table["x_layer"] != table["y_layer"]]
    assert (off_diagonal["cka"] < 0.99).all()


def test_cka_by_layer_bad_inputs_exit_2(runs_dir, tmp_path, capsys):
    module = figure("cka_by_layer")
    early = runs_dir / "synthetic-f1-s0" / "activations.h5"
    out = tmp_path / "figures"
    status = module.main([str(early), str(tmp_path / "missing.h5"), "--out-dir", str(out)])
    assert_user_error(capsys, status, "missing.h5")
    broken = truncated_copy(early, tmp_path / "broken.h5")
    status = module.main([str(early), str(broken), "--out-dir", str(out)])
    assert_user_error(capsys, status, "broken.h5", "truncated")
    other = make_activations(tmp_path / "fewer.h5", fusion_layer=3, per_digit=5)
    status = module.main([str(early), str(other), "--out-dir", str(out)])
    assert_user_error(capsys, status, "different stimuli")
    empty_runs = tmp_path / "runs"
    make_run(empty_runs, fusion_layer=1, seed=0, activations=False)
    make_run(empty_runs, fusion_layer=3, seed=0, activations=False)
    status = module.main(["--runs-dir", str(empty_runs), "--out-dir", str(out)])
    assert_user_error(capsys, status, "activations.h5 does not exist", "repsim.extract")
    assert not out.exists()


def _models(runs_dir: Path) -> tuple:
    """The early and late model of ``runs_dir``, opened as cka_table takes them."""
    return tuple(open_model(resolve_model_input(runs_dir / name)) for name in
                 ("synthetic-f1-s0", "synthetic-f3-s0"))


def unbiased_hsic(x: np.ndarray, y: np.ndarray) -> float:
    """Song et al. (2012)'s unbiased HSIC of linear kernels, their equation written out."""
    n = len(x)
    k, m = x @ x.T, y @ y.T
    np.fill_diagonal(k, 0)
    np.fill_diagonal(m, 0)
    return float((np.trace(k @ m) + k.sum() * m.sum() / ((n - 1) * (n - 2))
                  - 2 / (n - 2) * (k.sum(0) @ m.sum(0))) / (n * (n - 3)))


def test_minibatch_cka_with_one_batch_is_the_debiased_cka(runs_dir):
    module = figure("cka_by_layer")
    x, y = _models(runs_dir)
    options = {"kernels": ("linear",), "condition": "clean", "comparison": "models"}
    debiased = module.cka_table(x, y, debiased=True, **options)
    n = int((x[1]["condition"].values == "clean").sum())
    for size in (n, 10 * n):  # every stimulus in one batch
        one_batch = module.cka_table(x, y, minibatch=size, **options)
        np.testing.assert_allclose(one_batch["cka"], debiased["cka"], rtol=0, atol=1e-12)


def test_minibatch_cka_averages_unbiased_hsic_over_batches(runs_dir):
    """What minibatch_cka promises: the ratio of batch-averaged unbiased HSICs (each an
    unbiased estimate of the full data's), so close to the debiased CKA of all stimuli."""
    module = figure("cka_by_layer")
    x, y = _models(runs_dir)
    options = {"kernels": ("linear",), "condition": "clean", "comparison": "models"}
    table = module.cka_table(x, y, minibatch=30, seed=3, **options)
    debiased = module.cka_table(x, y, debiased=True, **options)
    assert np.abs(table["cka"] - debiased["cka"]).max() < 0.1  # 2 batches of 30: 0.03 here
    cells = [activations.select(data, layer, time=1, condition="clean")
             for data, layer in ((x[1], "fused.2"), (y[1], "visual.1"))]
    sums = np.zeros(3)
    for a, b in minibatches(cells, 30, seed=3):  # the batches the figure draws
        sums += [unbiased_hsic(a, b), unbiased_hsic(a, a), unbiased_hsic(b, b)]
    row = table[(table["x_layer"] == "fused.2") & (table["y_layer"] == "visual.1")
                & (table["time_step"] == 2)]
    assert row["cka"].item() == pytest.approx(sums[0] / np.sqrt(sums[1] * sums[2]), abs=1e-12)


def test_cka_by_layer_minibatch_from_the_command_line(runs_dir, tmp_path, capsys):
    module = figure("cka_by_layer")
    early, late = (runs_dir / name / "activations.h5" for name in
                   ("synthetic-f1-s0", "synthetic-f3-s0"))
    out = tmp_path / "figures"
    assert module.main([str(early), str(late), "--minibatch", "1000", "--out-dir",
                        str(out)]) == 0
    table = check_outputs(out, "cka_by_layer", module.COLUMNS, [early, late])
    expected = module.cka_table(*_models(runs_dir), kernels=("linear",), condition="clean",
                                comparison="models", debiased=True)
    np.testing.assert_allclose(table["cka"], expected["cka"], rtol=2e-6)  # CSV: 6 digits
    status = module.main([str(early), str(late), "--minibatch", "3", "--out-dir", str(out)])
    assert_user_error(capsys, status, "--minibatch must be at least 4")
    status = module.main([str(early), str(late), "--minibatch", "30", "--kernel", "both"])
    assert_user_error(capsys, status, "--minibatch computes linear CKA only")


# ----------------------------------------------------------------------------- RSA


def test_rsa_by_layer_finds_the_stream_each_layer_follows(runs_dir, tmp_path):
    module = figure("rsa_by_layer")
    status = module.main(["--runs-dir", str(runs_dir), "--out-dir", str(tmp_path),
                          "--n-boot", "20"])
    assert status == 0
    early, late = (runs_dir / name / "activations.h5" for name in
                   ("synthetic-f1-s0", "synthetic-f3-s0"))
    table = check_outputs(tmp_path, "rsa_by_layer", module.COLUMNS, [early, late])
    fits = table[table["quantity"] == "model_correlation"].pivot_table(
        index=["model", "layer", "time_step"], columns="hypothesis", values="value")
    late_fits = fits.loc["late (k=3, seed 0)"]
    for layer in ("audio.1", "audio.2"):
        assert (late_fits.loc[layer, "audio_digit"] > late_fits.loc[layer, "visual_digit"]
                + 0.2).all()
    for layer in ("visual.1", "visual.2"):
        assert (late_fits.loc[layer, "visual_digit"] > late_fits.loc[layer, "audio_digit"]
                + 0.2).all()
    bands = table[table["quantity"] == "model_correlation"]
    assert (bands["ci_low"] <= bands["ci_high"]).all()
    assert bands[["ci_low", "ci_high"]].notna().all().all()


def test_rsa_by_layer_numbers_match_scipy(runs_dir, tmp_path):
    module = figure("rsa_by_layer")
    late = runs_dir / "synthetic-f3-s0" / "activations.h5"
    assert module.main([str(late), "--out-dir", str(tmp_path), "--n-boot", "0"]) == 0
    table = check_outputs(tmp_path, "rsa_by_layer", module.COLUMNS, [late])
    data = activations.open(late)
    # digit RDM of visual.2 at the last step: correlation distance between digit means
    clean = data["condition"].values == "clean"
    values = data["visual.2.h"].values[clean][:, -1].reshape(clean.sum(), -1)
    digits = data["audio_digit"].values[clean]
    means = np.stack([values[digits == d].mean(0) for d in range(10)])
    expected = squareform(pdist(means, "correlation"))
    rdm_rows = table[(table["quantity"] == "rdm") & (table["layer"] == "visual.2")]
    got = rdm_rows.pivot(index="label_a", columns="label_b", values="value").to_numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)
    # fit of audio.1 at step 2 to "same audio digit": Spearman over digit cells
    incongruent = data["condition"].values == "incongruent"
    values = data["audio.1.h"].values[incongruent][:, 1].reshape(incongruent.sum(), -1)
    cells = pd.DataFrame({"a": data["audio_digit"].values[incongruent],
                          "v": data["visual_digit"].values[incongruent]})
    groups = cells.groupby(["a", "v"]).indices
    keys = sorted(groups)
    means = np.stack([values[groups[key]].mean(0) for key in keys])
    same_audio = np.array([[a1 != a2 for a2, _ in keys] for a1, _ in keys], dtype=float)
    expected = spearmanr(pdist(means, "correlation"), squareform(same_audio, checks=False))[0]
    row = table[(table["layer"] == "audio.1") & (table["time_step"] == 2)
                & (table["hypothesis"] == "audio_digit")]
    assert row["value"].item() == pytest.approx(expected, abs=1e-5)
    assert row["ci_low"].isna().all()


def test_rsa_by_layer_needs_incongruent_stimuli(tmp_path, capsys):
    module = figure("rsa_by_layer")
    source = make_activations(tmp_path / "full.h5", fusion_layer=1)
    data = activations.open(source)
    keep = data["condition"].values != "incongruent"
    states = {layer: {"h": data[f"{layer}.h"].values[keep]}
              for layer in activations.layer_names(data)}
    stimuli = stimulus_columns(data, keep)
    congruent_only = write_activations(tmp_path / "congruent.h5", states, stimuli, {})
    status = module.main([str(congruent_only), "--out-dir", str(tmp_path / "out")])
    assert_user_error(capsys, status, "incongruent")


# ----------------------------------------------------------------------------- probes


def test_probes_by_layer_decode_the_stream_each_layer_sees(runs_dir, tmp_path):
    module = figure("probes_by_layer")
    status = module.main(["--runs-dir", str(runs_dir), "--out-dir", str(tmp_path),
                          "--Cs", "1", "--folds", "3"])
    assert status == 0
    early, late = (runs_dir / name / "activations.h5" for name in
                   ("synthetic-f1-s0", "synthetic-f3-s0"))
    table = check_outputs(tmp_path, "probes_by_layer", module.COLUMNS, [early, late])
    clean = table[table["condition"] == "clean"]
    assert len(clean) == (2 + 4) * 4  # layers x time steps
    assert (clean["accuracy"] > 0.8).all()
    incongruent = table[(table["condition"] == "incongruent")
                        & (table["model"] == "late (k=3, seed 0)")]
    accuracy = incongruent.pivot(index="layer", columns="target", values="accuracy")
    for layer in ("audio.1", "audio.2"):
        assert accuracy.loc[layer, "audio_digit"] > 0.8 > 0.3 > accuracy.loc[layer,
                                                                             "visual_digit"]
    for layer in ("visual.1", "visual.2"):
        assert accuracy.loc[layer, "visual_digit"] > 0.8 > 0.3 > accuracy.loc[layer,
                                                                              "audio_digit"]
    np.testing.assert_allclose(table["chance"], 0.1)
    assert ((table["ci_low"] <= table["accuracy"]) & (table["accuracy"] <= table["ci_high"])).all()


def test_probe_accuracy_agrees_with_scikit_learn(runs_dir, tmp_path):
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    module = figure("probes_by_layer")
    early = runs_dir / "synthetic-f1-s0" / "activations.h5"
    assert module.main([str(early), "--out-dir", str(tmp_path), "--Cs", "0.01"]) == 0
    table = check_outputs(tmp_path, "probes_by_layer", module.COLUMNS, [early])
    data = activations.open(early)
    keep = data["condition"].values == "incongruent"
    x = data["fused.2.h"].values[keep][:, -1].reshape(keep.sum(), -1)
    y = data["visual_digit"].values[keep]
    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    reference = cross_val_score(make_pipeline(StandardScaler(), LogisticRegression(C=0.01)),
                                x, y, cv=folds).mean()
    row = table[(table["condition"] == "incongruent") & (table["layer"] == "fused.2")
                & (table["target"] == "visual_digit")]
    assert row["accuracy"].item() == pytest.approx(reference, abs=0.05)


def test_probes_by_layer_bad_inputs_exit_2(runs_dir, tmp_path, capsys):
    module = figure("probes_by_layer")
    out = tmp_path / "figures"
    early = runs_dir / "synthetic-f1-s0" / "activations.h5"
    broken = truncated_copy(early, tmp_path / "broken.h5")
    status = module.main([str(broken), "--out-dir", str(out), "--Cs", "1"])
    assert_user_error(capsys, status, "broken.h5", "truncated")
    status = module.main([str(tmp_path / "nothing")])
    assert_user_error(capsys, status, "nothing")
    status = module.main([str(early), "--groups", "no_such_coordinate", "--out-dir", str(out)])
    assert_user_error(capsys, status, "no_such_coordinate")
    assert not out.exists()


# ----------------------------------------------------------------------------- ablation


def test_ablation_sensitivity_default_runs(runs_dir, tmp_path):
    module = figure("ablation_sensitivity")
    assert module.main(["--runs-dir", str(runs_dir), "--out-dir", str(tmp_path)]) == 0
    early, late = (runs_dir / name / "activations.h5" for name in
                   ("synthetic-f1-s0", "synthetic-f3-s0"))
    table = check_outputs(tmp_path, "ablation_sensitivity", module.COLUMNS, [early, late])
    late_rows = table[table["model"] == "late (k=3, seed 0)"]
    reliance = late_rows[late_rows["measure"] == "reliance_cka"].groupby("layer")["value"]
    np.testing.assert_allclose(reliance.min()[["audio.1", "audio.2"]], 1.0, atol=1e-6)
    np.testing.assert_allclose(reliance.max()[["visual.1", "visual.2"]], 0.0, atol=1e-6)
    # one sensitivity against 1 - CKA written out here, stimuli matched by id
    intact, removed = (states_by_id(early, "fused.1", condition, 2)
                       for condition in ("clean", "visual_removed"))
    ids = sorted(intact)
    expected = 1 - centered_linear_cka(np.stack([intact[i] for i in ids]),
                                       np.stack([removed[i] for i in ids]))
    row = table[(table["model"] == "early (k=1, seed 0)") & (table["layer"] == "fused.1")
                & (table["measure"] == "cka_sensitivity") & (table["removed"] == "visual")
                & (table["time_step"] == 3)]
    assert row["value"].item() == pytest.approx(expected, abs=1e-5)
    # accuracies: the stored predictions against the digit
    data = activations.open(early)
    for removed, condition in (("none", "clean"), ("audio", "audio_removed")):
        keep = data["condition"].values == condition
        expected = np.mean(data["prediction"].values[keep] == data["audio_digit"].values[keep])
        row = table[(table["model"] == "early (k=1, seed 0)") & (table["measure"] == "accuracy")
                    & (table["removed"] == removed)]
        assert row["value"].item() == pytest.approx(expected)


def test_a_planted_audio_only_layer_relies_on_audio(tmp_path):
    module = figure("ablation_sensitivity")
    planted = make_activations(tmp_path / "planted.h5", fusion_layer=1, audio_only="fused.2")
    out = tmp_path / "figures"
    assert module.main([str(planted), "--out-dir", str(out)]) == 0
    table = check_outputs(out, "ablation_sensitivity", module.COLUMNS, [planted])
    reliance = table[table["measure"] == "reliance_cka"]
    planted_layer = reliance[reliance["layer"] == "fused.2"]["value"]
    assert len(planted_layer) == 4 and (planted_layer > 0.99).all()
    mixed_layer = reliance[reliance["layer"] == "fused.1"]["value"]
    assert ((mixed_layer > 0.1) & (mixed_layer < 0.9)).all()


def test_ablation_sensitivity_bad_inputs_exit_2(tmp_path, capsys):
    module = figure("ablation_sensitivity")
    source = make_activations(tmp_path / "full.h5", fusion_layer=1)
    data = activations.open(source)
    keep = data["condition"].values != "audio_removed"
    states = {layer: {"h": data[f"{layer}.h"].values[keep]}
              for layer in activations.layer_names(data)}
    stimuli = stimulus_columns(data, keep)
    partial = write_activations(tmp_path / "no-audio-removed.h5", states, stimuli, {})
    out = tmp_path / "figures"
    status = module.main([str(partial), "--out-dir", str(out)])
    assert_user_error(capsys, status, "audio_removed")
    status = module.main(["--runs-dir", str(tmp_path / "no-runs"), "--out-dir", str(out)])
    assert_user_error(capsys, status, "no-runs")
    assert not out.exists()


# ----------------------------------------------------------------------------- by name


def test_the_registry_names_every_figure_module_script_and_make_target():
    for name in FIGURES:
        assert figure(name).NAME == name
        tree = ast.parse((ANALYSES / f"{name}.py").read_text())
        assert [type(node).__name__ for node in tree.body] == ["Expr", "Import", "ImportFrom",
                                                               "If"]
        assert tree.body[2].module == f"repsim.figures.{name}"
    assert sorted(path.stem for path in ANALYSES.glob("*.py")) == sorted(FIGURES)
    modules = {path.stem for path in (REPO_ROOT / "repsim" / "figures").glob("*.py")}
    assert modules - {"__init__", "__main__", "base", "questions"} == set(FIGURES)
    assert f"FIGURES := {' '.join(FIGURES)}\n" in (REPO_ROOT / "Makefile").read_text()


def test_figures_by_name_refuse_an_unknown_or_missing_name(capsys):
    assert_user_error(capsys, figures_main(["no_such_figure"]), "no_such_figure", *FIGURES)
    assert_user_error(capsys, figures_main([]), *FIGURES)
    with pytest.raises(ValueError, match="unknown figure 'no_such_figure'"):
        figure("no_such_figure")
    assert figures_main(["--help"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in FIGURES)


def test_a_figure_by_name(runs_dir, tmp_path):
    status = figures_main(["cka_by_layer", "--runs-dir", str(runs_dir), "--out-dir",
                           str(tmp_path), "--condition", "incongruent"])
    assert status == 0
    inputs = [runs_dir / name / "activations.h5" for name in
              ("synthetic-f1-s0", "synthetic-f3-s0", "synthetic-f1-s1")]
    table = check_outputs(tmp_path, "cka_by_layer", figure("cka_by_layer").COLUMNS, inputs)
    assert set(table["comparison"]) == {"models", "seed reference"}


def run_from_checkout(*args: str, **options) -> subprocess.CompletedProcess:
    """``python ARGS`` in the checkout, repsim importable from it (not installed);
    ``options`` go to :func:`subprocess.run`."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=300, **options)


def test_the_command_lines_run_from_a_checkout(runs_dir, tmp_path):
    done = run_from_checkout("analyses/noise_robustness.py", "--runs-dir", str(runs_dir),
                             "--out-dir", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("wrote ")
    check_outputs(tmp_path, "noise_robustness", figure("noise_robustness").COLUMNS,
                  sorted(runs_dir.glob("*/metrics.json")))
    done = run_from_checkout("-m", "repsim.figures", "no_such_figure")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"error: unknown figure 'no_such_figure'; choose one of {', '.join(FIGURES)}"]


# What each figure computes; none of it may run when the output cannot be written.
TABLE_FUNCTIONS = {"cka_by_layer": ("cka_table",),
                   "rsa_by_layer": ("label_rdms", "hypothesis_correlations"),
                   "probes_by_layer": ("probe_table",),
                   "ablation_sensitivity": ("sensitivity_table",),
                   "noise_robustness": ("per_seed_accuracy", "file_accuracy"),
                   "temporal_generalization": ("generalization_table",),
                   "rsa_over_time": ("similarity_table",)}


@pytest.mark.parametrize("name", FIGURES)
def test_an_unwritable_out_dir_fails_before_any_work(name, runs_dir, tmp_path, capsys,
                                                     monkeypatch):
    def must_not_run(*args, **kwargs):
        raise AssertionError("work was done before the output directory was checked")

    module = figure(name)
    for function in TABLE_FUNCTIONS[name]:
        monkeypatch.setattr(module, function, must_not_run)
    monkeypatch.setattr(activations, "open", must_not_run)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    out = blocker / "figures"
    status = module.main(["--runs-dir", str(runs_dir), "--out-dir", str(out)])
    assert_user_error(capsys, status, f"cannot write to output directory {out}",
                      "not a directory")


@pytest.mark.parametrize("name", FIGURES)
def test_a_read_only_out_dir_fails_before_any_work(name, runs_dir, unwritable_dir, capsys,
                                                   monkeypatch):
    module = figure(name)
    monkeypatch.setattr(activations, "open", lambda *args, **kwargs: pytest.fail("read"))
    out = unwritable_dir / "figures"
    status = module.main(["--runs-dir", str(runs_dir), "--out-dir", str(out)])
    assert_user_error(capsys, status, f"cannot write to output directory {out}")
    assert not out.exists()


def _old_outputs(out: Path, name: str) -> dict[Path, bytes]:
    """Files of an earlier run of figure ``name`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    old = {out / f"{name}.{suffix}": f"old {suffix}".encode() for suffix in ("png", "pdf", "csv")}
    for path, content in old.items():
        path.write_bytes(content)
    return old


def test_a_folder_turned_read_only_while_drawing_is_one_line_and_exit_2(
        runs_dir, unwritable_dir, capsys, monkeypatch):
    module = figure("noise_robustness")
    monkeypatch.setattr(module, "check_out_dir", lambda out_dir: None)  # it was writable then
    for out in (unwritable_dir, unwritable_dir / "figures"):
        status = module.main(["--runs-dir", str(runs_dir), "--out-dir", str(out)])
        assert_user_error(capsys, status, f"cannot write {out}", "nothing was written there")
    assert not (unwritable_dir / "figures").exists()
    assert not list(unwritable_dir.glob("noise_robustness*"))


def test_a_full_disk_keeps_the_earlier_figure_and_numbers_together(runs_dir, tmp_path, capsys,
                                                                   monkeypatch):
    """The CSV is written last; when it fails, the new PNG and PDF are not put in place
    either: the three files stay those of the earlier run, and no temporary is left."""
    module = figure("noise_robustness")
    out = tmp_path / "figures"
    old = _old_outputs(out, "noise_robustness")

    def disk_full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", disk_full)
    status = module.main(["--runs-dir", str(runs_dir), "--out-dir", str(out)])
    assert_user_error(capsys, status, f"cannot write {out / 'noise_robustness.csv'}: No space "
                                      "left on device; nothing was written there")
    assert {path: path.read_bytes() for path in out.iterdir()} == old


def test_a_file_size_limit_is_one_line_and_exit_2_and_leaves_the_old_files(runs_dir, tmp_path):
    """RLIMIT_FSIZE on the script's process stands in for a full disk: the PNG (the largest
    output, > 100 kB) cannot be written; Python ignores SIGXFSZ, so write() fails with EFBIG."""
    out = tmp_path / "figures"
    old = _old_outputs(out, "cka_by_layer")
    early, late = (runs_dir / name / "activations.h5" for name in
                   ("synthetic-f1-s0", "synthetic-f3-s0"))
    limit = 20_000
    done = run_from_checkout(
        "analyses/cka_by_layer.py", str(early), str(late), "--minibatch", "30", "--out-dir",
        str(out), preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)))
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        f"error: cannot write {out / 'cka_by_layer.png'}: File too large; nothing was written "
        "there (a file already at that path is unchanged)")
    assert {path: path.read_bytes() for path in out.iterdir()} == old


def _parser(module, monkeypatch) -> argparse.ArgumentParser:
    """The parser ``module.main`` builds."""
    parsers = []
    monkeypatch.setattr(module, "run_cli", lambda parser, run, argv: parsers.append(parser))
    module.main([])
    return parsers[0]


@pytest.mark.parametrize("name", FIGURES)
def test_every_option_has_help_with_a_readable_default(name, monkeypatch):
    parser = _parser(figure(name), monkeypatch)
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction | argparse._VersionAction):
            continue
        assert action.help, action.dest
        if action.nargs != 0:  # takes a value (flags are off unless given)
            assert "default" in action.help, action.dest
    text = parser.format_help()
    assert "None" not in text and "PosixPath" not in text


@pytest.mark.parametrize("name", ["cka_by_layer", "rsa_by_layer", "probes_by_layer",
                                  "ablation_sensitivity"])
def test_the_figures_of_activation_files_take_them_with_files(name, runs_dir, tmp_path):
    inputs = [runs_dir / run / "activations.h5" for run in ("synthetic-f1-s0", "synthetic-f3-s0")]
    status = figure(name).main(["--files", *map(str, inputs), "--out-dir", str(tmp_path)])
    assert status == 0
    check_outputs(tmp_path, name, figure(name).COLUMNS, inputs)
