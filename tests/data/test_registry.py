"""The dataset registry: names, dispatch with options, option checks, unknown names, lazy
imports."""

from __future__ import annotations

import importlib

import pytest

from repsim.data import build_dataset, dataset_names, registry
from repsim.data.config import DataConfig
from repsim.data.download import ENV_DATA_DIR, ENV_OFFLINE
from repsim.data.registry import check_dataset_options


def test_repsims_datasets_are_registered():
    assert {"avmnist", "folder", "synthetic"} <= set(dataset_names())


def test_unknown_dataset_name_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown dataset 'mnist'; choose one of: avmnist, "
                                         r"folder, synthetic \(or give MODULE:FUNCTION\)"):
        build_dataset("mnist")


def test_options_reach_the_avmnist_builder(monkeypatch, tmp_path):
    monkeypatch.delenv(ENV_DATA_DIR, raising=False)
    monkeypatch.delenv(ENV_OFFLINE, raising=False)
    with pytest.raises(FileNotFoundError, match=f"avmnist data not found: .* in {tmp_path} "
                                                r".*Downloads are off \(download=False\)"):
        build_dataset("avmnist", data_dir=tmp_path, download=False)


def test_unknown_builder_option_is_refused():
    with pytest.raises(ValueError, match="has no option.*no_such_option"):
        build_dataset("avmnist", no_such_option=1)


def test_building_imports_only_the_named_builder(monkeypatch, tmp_path):
    imported = []
    real_import = importlib.import_module

    def recording_import(name, *args):
        imported.append(name)
        return real_import(name, *args)

    monkeypatch.setattr(registry.importlib, "import_module", recording_import)
    with pytest.raises(FileNotFoundError):
        build_dataset("avmnist", data_dir=tmp_path, download=False)
    assert imported == ["repsim.data.avmnist"]


@pytest.mark.parametrize(("name", "options", "message"), [
    ("synthetic", {"distractor_snr": 100}, "distractor_snr must be None or a number of dB"),
    ("synthetic", {"train_pairs": 0}, "train_pairs must be a positive"),
    ("avmnist", {"val_fraction": 1.5}, "val_fraction must be between 0 and 1"),
    ("avmnist", {"pairs_per_image": 0}, "pairs_per_image must be positive"),
])
def test_bad_option_values_fail_in_the_config_before_anything_is_read(tmp_path, name, options,
                                                                      message):
    with pytest.raises(ValueError, match=message):
        DataConfig(dataset=name, data_dir=str(tmp_path / "missing"), options=options)


def test_good_options_pass_the_check_without_building(tmp_path):
    config = DataConfig(dataset="avmnist", data_dir=str(tmp_path / "missing"),
                        options={"val_fraction": 0.2, "download": False})
    assert config.builder_options() == {"data_dir": str(tmp_path / "missing"), "seed": 0,
                                        "timesteps": None, "height": None, "width": None,
                                        "val_fraction": 0.2, "download": False}
    check_dataset_options("synthetic", {"distractor_snr": 0, "height": 8})
