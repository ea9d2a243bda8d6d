"""The dataset registry: names, dispatch with options, unknown names, lazy imports."""

from __future__ import annotations

import importlib

import pytest

from repsim.data import build_dataset, dataset_names, registry
from repsim.data.download import ENV_DATA_DIR, ENV_OFFLINE


def test_both_datasets_are_registered():
    assert dataset_names() == ["avmnist", "synthetic"]


def test_unknown_dataset_name_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown dataset 'mnist'; choose one of: avmnist, "
                                         r"synthetic"):
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
