"""repsim.runs: finding runs (early, late, seeds), reading metrics, resolving activations."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from activation_files import write_activations
from run_files import metrics_dict

from repsim import activations, runs
from repsim.rundir import read_metrics


def _metrics(fusion_layer=1, seed=0, dataset="synthetic", layers=2, **extra) -> dict:
    return metrics_dict(fusion_layer=fusion_layer, seed=seed, dataset=dataset, layers=layers,
                        **extra)


def _run(root: Path, name: str | None = None, **kwargs) -> Path:
    metrics = _metrics(**kwargs)
    run_dir = root / (name or metrics["run"])
    run_dir.mkdir(parents=True)
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    return run_dir


def _activations(path: Path, ids: list[str], values: np.ndarray, config: dict | None = None,
                 condition: str = "clean") -> Path:
    """A one-layer activation file: values (n, T, C, H, W) for stimulus ids ``ids``."""
    stimuli = {"stimulus_id": np.array(ids), "condition": np.array([condition] * len(ids))}
    attrs = {"config": config} if config is not None else {}
    return write_activations(path, {"fused.1": {"h": values}}, stimuli, attrs)


def test_read_metrics_checks_the_file(tmp_path):
    path = tmp_path / "metrics.json"
    with pytest.raises(FileNotFoundError, match="no metrics file"):
        read_metrics(path)
    path.write_text('{"dataset": "synthetic", ')
    with pytest.raises(ValueError, match="incomplete or corrupt"):
        read_metrics(path)
    metrics = _metrics()
    del metrics["removed"], metrics["seed"]
    path.write_text(json.dumps(metrics))
    with pytest.raises(ValueError, match="missing seed, removed"):
        read_metrics(path)
    path.write_text(json.dumps(_metrics(noise=[{"noise": "smell", "snr_db": 0, "accuracy": 1}])))
    with pytest.raises(ValueError, match="malformed noise entry"):
        read_metrics(path)
    path.write_text(json.dumps(_metrics()))
    assert read_metrics(path).fusion_layer == 1


def test_find_runs_sorts_filters_and_skips_unfinished(tmp_path):
    _run(tmp_path, fusion_layer=3, seed=1)
    _run(tmp_path, fusion_layer=1, seed=1)
    _run(tmp_path, fusion_layer=1, seed=0)
    _run(tmp_path, fusion_layer=1, seed=0, dataset="avmnist")
    (tmp_path / "still-training").mkdir()
    found = runs.find_runs(tmp_path)
    assert [(r.dataset, r.fusion_layer, r.seed) for r in found] == [
        ("avmnist", 1, 0), ("synthetic", 1, 0), ("synthetic", 1, 1), ("synthetic", 3, 1)]
    assert [r.name for r in runs.find_runs(tmp_path, dataset="avmnist")] == ["avmnist-f1-s0"]
    assert found[1].metrics.config["model"]["fusion_layer"] == 1
    assert found[1].activations_path == tmp_path / "synthetic-f1-s0" / "activations.h5"


def test_find_runs_errors_name_the_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        runs.find_runs(tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match="no finished runs"):
        runs.find_runs(tmp_path)
    _run(tmp_path)
    with pytest.raises(FileNotFoundError, match="of dataset 'avmnist'"):
        runs.find_runs(tmp_path, dataset="avmnist")


def test_one_experiment_refuses_mixtures_and_duplicates(tmp_path):
    _run(tmp_path, fusion_layer=1)
    _run(tmp_path, fusion_layer=1, dataset="avmnist")
    with pytest.raises(ValueError, match="mix experiments.*--dataset"):
        runs.one_experiment(runs.find_runs(tmp_path))
    _run(tmp_path, name="copy-of-f1-s0", fusion_layer=1)
    with pytest.raises(ValueError, match="fusion layer 1, seed 0"):
        runs.one_experiment(runs.find_runs(tmp_path, dataset="synthetic"))


def test_early_and_late_with_seeds(tmp_path):
    for k, seed in [(3, 1), (1, 1), (2, 0), (3, 0), (1, 0)]:
        _run(tmp_path, fusion_layer=k, seed=seed)
    split = runs.early_and_late(runs.find_runs(tmp_path))
    assert [(r.fusion_layer, r.seed) for r in split.early] == [(1, 0), (1, 1)]
    assert [(r.fusion_layer, r.seed) for r in split.late] == [(3, 0), (3, 1)]
    with pytest.raises(FileNotFoundError, match=r"repsim.extract .*synthetic-f1-s0"):
        runs.early_and_late(runs.find_runs(tmp_path), need_activations=True)
    for name in ("synthetic-f1-s1", "synthetic-f3-s0"):
        (tmp_path / name / "activations.h5").write_bytes(b"")
    split = runs.early_and_late(runs.find_runs(tmp_path), need_activations=True)
    assert [r.name for r in split.early] == ["synthetic-f1-s1"]
    assert [r.name for r in split.late] == ["synthetic-f3-s0"]


def test_early_and_late_need_both(tmp_path):
    _run(tmp_path, fusion_layer=1)
    with pytest.raises(FileNotFoundError, match="no late-fusion run"):
        runs.early_and_late(runs.find_runs(tmp_path))
    other = tmp_path / "other"
    _run(other, fusion_layer=2)
    with pytest.raises(FileNotFoundError, match="no early-fusion run"):
        runs.early_and_late(runs.find_runs(other))


def test_load_run_accepts_directory_or_metrics_file(tmp_path):
    run_dir = _run(tmp_path, fusion_layer=3, seed=2)
    assert runs.load_run(run_dir).seed == 2
    assert runs.load_run(run_dir / "metrics.json").path == run_dir
    with pytest.raises(FileNotFoundError, match="does not exist"):
        runs.load_run(tmp_path / "missing")


def test_model_labels():
    early = runs.ModelInput(Path("a/activations.h5"), 1, 2, 0)
    assert (early.role, early.label) == ("early", "early (k=1, seed 0)")
    late = runs.ModelInput(Path("a/activations.h5"), 3, 2, 1)
    assert (late.role, late.label) == ("late", "late (k=3, seed 1)")
    middle = runs.ModelInput(Path("a/activations.h5"), 2, 3, 4)
    assert (middle.role, middle.label) == ("k=2", "k=2 (seed 4)")
    unknown = runs.ModelInput(Path("somewhere/model-x.h5"))
    assert (unknown.role, unknown.label) == ("model-x", "model-x")
    assert runs.ModelInput(Path("run-7/activations.h5")).label == "run-7"


def test_resolve_model_input(tmp_path):
    run_dir = _run(tmp_path, fusion_layer=3, seed=1)
    with pytest.raises(FileNotFoundError, match=r"activations.h5 does not exist.*repsim.extract"):
        runs.resolve_model_input(run_dir)
    values = np.zeros((4, 2, 1, 1, 1), np.float32)
    _activations(run_dir / "activations.h5", ["a", "b", "c", "d"], values)
    from_dir = runs.resolve_model_input(run_dir)
    assert from_dir == runs.ModelInput(run_dir / "activations.h5", 3, 2, 1)
    assert runs.resolve_model_input(run_dir / "activations.h5") == from_dir
    loose = _activations(tmp_path / "loose.h5", ["a", "b", "c", "d"], values)
    assert runs.resolve_model_input(loose) == runs.ModelInput(loose)
    with pytest.raises(FileNotFoundError, match="neither"):
        runs.resolve_model_input(tmp_path / "nothing.h5")


def test_layer_states_aligns_stimuli_by_id(tmp_path):
    rng = np.random.default_rng(0)
    ids = [f"s{i}" for i in range(6)]
    values = rng.normal(size=(6, 3, 2, 2, 2)).astype(np.float32)
    data = activations.open(_activations(tmp_path / "x.h5", ids, values))
    assert activations.stimulus_ids(data, "clean").tolist() == ids
    flat = activations.layer_states(data, "fused.1", "clean")
    np.testing.assert_array_equal(flat, values.reshape(6, 3, 8))
    np.testing.assert_array_equal(activations.layer_states(data, "fused.1", "clean", time=-1),
                                  values[:, -1].reshape(6, 8))
    order = np.array(["s3", "s0", "s5", "s1", "s4", "s2"])
    aligned = activations.layer_states(data, "fused.1", "clean", order=order)
    np.testing.assert_array_equal(aligned, values[[3, 0, 5, 1, 4, 2]].reshape(6, 3, 8))
    with pytest.raises(ValueError, match="different stimuli"):
        activations.layer_states(data, "fused.1", "clean", order=np.array(ids[:5] + ["other"]))
    with pytest.raises(ValueError, match="different stimuli"):
        activations.layer_states(data, "fused.1", "clean", order=np.array(ids[:5]))
    with pytest.raises(ValueError, match="no stimuli of condition 'incongruent'"):
        activations.stimulus_ids(data, "incongruent")


def test_stimulus_ids_refuses_repeats(tmp_path):
    path = _activations(tmp_path / "x.h5", ["a", "a", "b", "c"],
                        np.zeros((4, 2, 1, 1, 1), np.float32))
    data = activations.open(path)
    with pytest.raises(ValueError, match="repeats stimulus ids"):
        activations.stimulus_ids(data, "clean")


def test_stimulus_table_holds_the_coordinates_of_one_condition(tmp_path):
    stimuli = {"stimulus_id": np.array(["a", "b", "a", "b"]),
               "condition": np.array(["clean", "clean", "audio_removed", "audio_removed"]),
               "audio_digit": np.array([3, 4, 3, 4])}
    path = write_activations(tmp_path / "x.h5", {"fused.1": {"h": np.zeros((4, 2, 1, 1, 1),
                                                                         np.float32)}},
                             stimuli, {}, prediction=np.array([3, 4, 0, 0]))
    data = activations.open(path)
    table = activations.stimulus_table(data, "audio_removed")
    assert table["stimulus_id"].tolist() == ["a", "b"]
    assert table["audio_digit"].tolist() == [3, 4]
    assert table["prediction"].tolist() == [0, 0]
    with pytest.raises(ValueError, match="no stimuli of condition 'visual_removed'"):
        activations.stimulus_table(data, "visual_removed")
