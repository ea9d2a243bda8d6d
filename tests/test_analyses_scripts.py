"""The figure scripts in analyses/ on small activation and metrics fixtures made here.

Each script must write a non-empty PNG and PDF and a CSV with its documented columns whose
header names the SHA-256 of every input; known structure planted in the fixtures must come
out (CKA 1 between a network and itself, reliance index 1 for an audio-only layer); a missing
or incomplete input must give one ``error:`` line and exit status 2.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest

from repsim.activations import write_activations
from repsim.plotting import read_table
from repsim.provenance import sha256_file

ANALYSES = Path(__file__).resolve().parents[1] / "analyses"
SNRS = (10.0, 0.0, -10.0)


def load_script(name: str):
    """Import ``analyses/<name>.py`` as a module (the folder is not a package)."""
    spec = importlib.util.spec_from_file_location(f"analyses_{name}", ANALYSES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ----------------------------------------------------------------------------- fixtures


def _layers(fusion_layer: int, depth: int) -> list[str]:
    """Layer names of a fusion network, as FusionConvLSTM.layer_names gives them."""
    names = []
    for d in range(1, fusion_layer):
        names += [f"audio.{d}", f"visual.{d}"]
    return names + [f"fused.{d}" for d in range(fusion_layer, depth + 1)]


def _stimuli(per_digit: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Clean, modality-removed and incongruent conditions over the same clips and images."""
    n = 10 * per_digit
    digit = np.repeat(np.arange(10), per_digit)
    other = (digit + rng.integers(1, 10, n)) % 10  # a different digit for the image
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
    metrics = {"run": run_dir.name, "dataset": "synthetic", "fusion_layer": fusion_layer,
               "layers": depth, "seed": seed, "parameters": 1000, "clean_accuracy": clean,
               "noise": noise, "removed": {"audio": 0.3, "visual": 0.6}, "val_accuracy": clean,
               "epochs": 1, "train_seconds": 1.0,
               "config": {"model": {"fusion_layer": fusion_layer, "layers": depth},
                          "seed": seed}, "versions": {}}
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
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
    script = load_script("noise_robustness")
    assert script.main(["--runs-dir", str(runs_dir), "--out-dir", str(tmp_path)]) == 0
    metrics = sorted(runs_dir.glob("*/metrics.json"))
    table = check_outputs(tmp_path, "noise_robustness", script.COLUMNS, metrics)
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
    script = load_script("noise_robustness")
    chosen = [runs_dir / "synthetic-f1-s0", runs_dir / "synthetic-f3-s0" / "metrics.json"]
    assert script.main([*map(str, chosen), "--out-dir", str(tmp_path)]) == 0
    table = check_outputs(tmp_path, "noise_robustness", script.COLUMNS,
                          [chosen[0] / "metrics.json", chosen[1]])
    assert sorted(table["fusion_layer"].unique()) == [1, 3]
    assert (table["n_seeds"] == 1).all()


def test_noise_robustness_bad_inputs_exit_2(tmp_path, capsys):
    script = load_script("noise_robustness")
    out = tmp_path / "figures"
    status = script.main(["--runs-dir", str(tmp_path / "nowhere"), "--out-dir", str(out)])
    assert_user_error(capsys, status, "nowhere", "does not exist")
    run_dir = make_run(tmp_path / "runs", fusion_layer=1, seed=0, activations=False)
    metrics = run_dir / "metrics.json"
    metrics.write_text(metrics.read_text()[:100])
    status = script.main(["--runs-dir", str(tmp_path / "runs"), "--out-dir", str(out)])
    assert_user_error(capsys, status, str(metrics), "incomplete")
    assert not out.exists()
