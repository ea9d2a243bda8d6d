"""repsim.figures.base: choosing and opening the models a figure reads, the output check,
and the shared command line."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import pytest
from activation_files import write_activations
from run_files import write_metrics_file

from repsim.figures import base
from repsim.runs import ModelInput, resolve_model_input


def _activations(path: Path, config: dict | None = None) -> Path:
    """A one-layer activation file of four clean stimuli."""
    stimuli = {"stimulus_id": np.array(list("abcd")), "condition": np.array(["clean"] * 4)}
    attrs = {"config": config} if config is not None else {}
    return write_activations(path, {"fused.1": {"h": np.zeros((4, 2, 1, 1, 1), np.float32)}},
                             stimuli, attrs)


def test_open_model_fills_metadata_from_the_file_config(tmp_path):
    config = {"model": {"fusion_layer": 3, "layers": 2}, "seed": 5}
    path = _activations(tmp_path / "late.h5", config)
    model, data = base.open_model(resolve_model_input(path))
    assert model == ModelInput(path, 3, 2, 5)
    assert model.label == "late (k=3, seed 5)"
    assert data.sizes["stimulus"] == 4


def test_open_model_refuses_incomplete_files(tmp_path):
    path = _activations(tmp_path / "x.h5")
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(path.read_bytes()[:500])
    with pytest.raises(ValueError, match="truncated"):
        base.open_model(ModelInput(truncated))


def test_models_to_compare_defaults_to_first_seed_early_and_late(tmp_path):
    for k, seed in [(1, 1), (1, 0), (2, 0), (3, 0)]:
        run_dir = tmp_path / f"synthetic-f{k}-s{seed}"
        write_metrics_file(run_dir, fusion_layer=k, seed=seed)
        _activations(run_dir / "activations.h5")
    chosen = base.models_to_compare((), tmp_path)
    assert [(m.role, m.seed) for m in chosen] == [("early", 0), ("late", 0)]
    named = base.models_to_compare([tmp_path / "synthetic-f2-s0"])
    assert [(m.fusion_layer, m.role) for m in named] == [(2, "k=2")]


def test_check_out_dir_creates_nothing(tmp_path):
    base.check_out_dir(tmp_path)
    base.check_out_dir(tmp_path / "new" / "deeper")
    assert list(tmp_path.iterdir()) == []


def test_check_out_dir_names_what_is_in_the_way(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    for out_dir in (blocker, blocker / "figures"):
        with pytest.raises(ValueError, match=f"output directory {out_dir}: {blocker} is not a "
                                             "directory"):
            base.check_out_dir(out_dir)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                    reason="needs file permissions that apply (POSIX, not root)")
def test_check_out_dir_refuses_a_read_only_directory(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        with pytest.raises(ValueError, match=f"cannot write to output directory {locked}"):
            base.check_out_dir(locked / "figures")
    finally:
        locked.chmod(0o700)


def test_figure_parser_has_the_shared_options():
    parser = base.figure_parser("some_figure", "What it draws.\n\nMore.", "examples: none",
                                "inputs")
    assert parser.prog == "python -m repsim.figures some_figure"
    assert parser.description == "What it draws."
    args = parser.parse_args([])
    assert vars(args) == {"inputs": [], "runs_dir": Path("runs"), "dataset": None,
                          "out_dir": Path("figures"), "files": [], "verbose": False,
                          "threads": None}
    args = parser.parse_args(["x.h5", "--runs-dir", "r", "--dataset", "d", "--out-dir", "o",
                              "-v", "--threads", "2", "--files", "a.h5", "b.h5"])
    assert vars(args) == {"inputs": [Path("x.h5")], "runs_dir": Path("r"), "dataset": "d",
                          "out_dir": Path("o"), "files": [Path("a.h5"), Path("b.h5")],
                          "verbose": True, "threads": 2}
    without = base.figure_parser("some_figure", "What it draws.", "", "inputs", files=False)
    assert "files" not in vars(without.parse_args([]))


def test_models_title_says_early_vs_late_only_for_repsims_fusion_runs(tmp_path):
    early, late = ModelInput(tmp_path / "a.h5", 1, 2, 0), ModelInput(tmp_path / "b.h5", 3, 2, 0)
    assert base.models_title([early, late]) == "early vs late fusion"
    mine = ModelInput(tmp_path / "mine.h5", name="my_transformer")
    assert base.models_title([mine, late]) == "my_transformer vs late (k=3, seed 0)"


def test_open_model_names_a_recorded_model_by_its_files_model_name(tmp_path):
    path = _activations(tmp_path / "x.h5")
    with h5py.File(path, "r+") as handle:
        handle.attrs["model_name"] = "my_cnn"
    model, _ = base.open_model(resolve_model_input(path))
    assert model.label == "my_cnn" and not model.is_fusion_run
    twins = base.distinct_labels([(model, None), (model, None)])
    assert [m.label for m, _ in twins] == [str(path), str(path)]


def test_run_cli_passes_options_as_keywords_and_turns_user_errors_into_exit_2(capsys):
    parser = base.figure_parser("some_figure", "What it draws.", "", "inputs")
    parser.add_argument("--size", type=int, default=3)
    seen = {}

    def run(**options):
        seen.update(options)
        if options["size"] < 0:
            raise ValueError("size must be >= 0")
        return [Path("out.png")]

    assert base.run_cli(parser, run, ["a", "--size", "4"]) == 0
    assert seen == {"inputs": [Path("a")], "runs_dir": Path("runs"), "dataset": None,
                    "out_dir": Path("figures"), "size": 4}
    assert base.run_cli(parser, run, ["--size", "-1"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == ["error: size must be >= 0"]


def test_check_out_dir_says_why_it_cannot_write(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(base.tempfile, "NamedTemporaryFile", refuse)
    with pytest.raises(ValueError, match=f"output directory {tmp_path / 'out'}: Permission "
                                         "denied"):
        base.check_out_dir(tmp_path / "out")
