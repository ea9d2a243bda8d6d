"""A user's folder of WAVs and PNGs (3 classes, uneven counts) through the whole pipeline:
train one tiny epoch, extract, the figures, and a tiny study, from the command lines the
docs give. Labels in every artifact are checked against the class folders the files sit in.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr
from folder_files import write_folder_dataset

from repsim.activations.labels import chance_level, class_names, label_coords
from repsim.extract import main as extract_main
from repsim.figures import ablation_sensitivity, probes_by_layer, rsa_by_layer
from repsim.study.cli import main as study_main
from repsim.train.cli import main as train_main

CLASSES = {"cat": (12, 10), "dog": (9, 14), "owl": (15, 8)}  # (clips, images), uneven
GRID = ["--timesteps", "2", "--height", "8", "--width", "8"]
OPTIONS = ["--data-option", "test_fraction=0.4"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_folder_dataset(tmp_path_factory.mktemp("user") / "mine", classes=CLASSES)


@pytest.fixture(scope="module")
def run_dir(folder, tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "mine-f1"
    assert train_main(["--dataset", "folder", "--data-dir", str(folder), *GRID, *OPTIONS,
                       "--layers", "1", "--hidden", "3", "--fusion-layer", "1",
                       "--epochs", "1", "--batch-size", "8", "--snrs", "0",
                       "--device", "cpu", "--out-dir", str(run)]) == 0
    return run


@pytest.fixture(scope="module")
def activations_file(run_dir):
    assert extract_main([str(run_dir / "ckpt.pt"), "--stimuli", "12", "--device", "cpu"]) == 0
    return run_dir / "activations.h5"


def test_training_sizes_the_readout_by_the_class_count(run_dir):
    ckpt = torch.load(run_dir / "ckpt.pt", weights_only=True)
    assert ckpt["config"]["model"]["classes"] == 3
    assert ckpt["model_state"]["readout.weight"].shape[0] == 3
    assert json.loads((run_dir / "config.json").read_text())["data"]["dataset"] == "folder"


def test_the_activation_file_labels_stimuli_with_named_classes(activations_file):
    data = xr.open_dataset(activations_file, engine="h5netcdf")
    try:
        assert label_coords(data) == ("audio_class", "visual_class")
        assert "audio_digit" not in data.coords
        names = class_names(data)
        assert names == ["cat", "dog", "owl"] and chance_level(data) == pytest.approx(1 / 3)
        for modality in ("audio", "visual"):
            folders = [s.split("/")[1] for s in data[f"{modality}_source"].values]
            assert [names[c] for c in data[f"{modality}_class"].values] == folders
        incongruent = data["condition"].values == "incongruent"
        assert np.all(data["audio_class"].values[incongruent]
                      != data["visual_class"].values[incongruent])
        assert data["logits"].shape == (data.sizes["stimulus"], 3)
        ids = data["stimulus_id"].values[data["condition"].values == "clean"]
        assert all(i.startswith("audio/") and "|images/" in i for i in ids)
    finally:
        data.close()


def test_the_figures_decode_classes_with_chance_from_the_class_count(activations_file,
                                                                     tmp_path):
    probes_by_layer.run([activations_file], out_dir=tmp_path, folds=2)
    table = pd.read_csv(tmp_path / "probes_by_layer.csv", comment="#")
    assert set(table["target"]) == {"audio_class", "visual_class"}
    # a probe's chance is the share of the most common class among the stimuli it decodes
    data = xr.open_dataset(activations_file, engine="h5netcdf")
    clean = data["audio_class"].values[data["condition"].values == "clean"]
    data.close()
    expected = np.bincount(clean).max() / clean.size
    assert table.loc[table["condition"] == "clean", "chance"].unique() == pytest.approx(
        [expected])
    ablation_sensitivity.run([activations_file], out_dir=tmp_path)
    rsa_by_layer.run([activations_file], out_dir=tmp_path, n_boot=0)
    rsa = pd.read_csv(tmp_path / "rsa_by_layer.csv", comment="#")
    assert set(rsa["hypothesis"].dropna()) == {"audio_class", "visual_class"}
    assert sorted(rsa["label_a"].dropna().unique()) == [0, 1, 2]
    assert {p.suffix for p in tmp_path.iterdir()} >= {".png", ".pdf", ".csv"}


def test_a_tiny_study_on_the_folder_reports_classes_and_their_chance(folder, tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text(f"""
[study]
seeds = [0]
fusion_layers = [1, 2]

[model]
layers = 1
hidden = 3

[train]
epochs = 1
batch_size = 8

[evaluation]
test_snrs = [0]
probe_stimuli = 12

[datasets.mine]
dataset = "folder"
data_dir = "{folder}"
timesteps = 2
height = 8
width = 8
options = {{ test_fraction = 0.4 }}

[protocols.clean]
""")
    assert study_main([str(path), "--jobs", "1", "--no-progress"]) == 0
    folder_out = tmp_path / "mine"
    summary = json.loads((folder_out / "runs" / "mine" / "clean" / "f1-s0" /
                          "summary.json").read_text())
    assert summary["class_names"] == ["cat", "dog", "owl"]
    report = (folder_out / "report.md").read_text()
    assert "heard class decoded" in report and "chance 0.33 for mine" in report
    assert "digit" not in report
    answer = (folder_out / "answer.md").read_text()
    assert "seen class decoded" in answer


def test_extract_records_every_test_pair_of_a_small_dataset_and_says_so(run_dir, tmp_path,
                                                                        caplog):
    output = tmp_path / "all.h5"
    with caplog.at_level("INFO", logger="repsim"):
        assert extract_main([str(run_dir / "ckpt.pt"), "-o", str(output), "--conditions",
                             "clean", "--snrs", "--device", "cpu"]) == 0
    data = xr.open_dataset(output, engine="h5netcdf")
    try:
        pairs = data.sizes["stimulus"]
    finally:
        data.close()
    assert 0 < pairs < 200
    assert f"the test split has {pairs} pairs, fewer than the default 200: recording all " \
           f"of them" in caplog.text
