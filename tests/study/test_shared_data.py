"""The data a study's runs share: built once, kept beside the runs with its digest,
memory-mapped by the workers, rebuilt when the data differ from the digest; and the time each
run records by stage."""

import dataclasses
import json
import logging
import sys
from pathlib import Path

import pytest
import torch

from repsim.data.base import AVSplit
from repsim.data.config import DataConfig
from repsim.rundir import METRICS_FILE, SUMMARY_FILE
from repsim.study.records import finished_runs
from repsim.study.report import _time_section
from repsim.study.shared import (
    DESCRIPTION_FILE,
    TENSORS_FILE,
    load_shared,
    shared_dataset,
    shared_path,
)
from repsim.study.spec import load_study
from repsim.study.steps import complete_run
from repsim.study.timing import RUN_STAGES, study_seconds, time_line

sys.path.insert(0, str(Path(__file__).parent))
from test_study import tiny_study  # noqa: E402

TINY_DATA = DataConfig(dataset="synthetic", timesteps=3, height=8, width=8, options={
    "repetitions": 1, "train_pairs": 24, "val_pairs": 8, "test_pairs": 12,
    "train_speakers": 4, "val_speakers": 2, "test_speakers": 2})


def _assert_same_data(got, expected):
    assert (got.name, got.class_names, got.sample_rate, got.config) == (
        expected.name, expected.class_names, expected.sample_rate, expected.config)
    assert got.features == expected.features
    for name, split in expected.splits.items():
        for field in dataclasses.fields(AVSplit):
            mine, theirs = getattr(got.splits[name], field.name), getattr(split, field.name)
            if isinstance(theirs, torch.Tensor):
                assert mine.dtype == theirs.dtype and torch.equal(mine, theirs), field.name
            else:
                assert mine == theirs, field.name


def _mapped(path: Path) -> bool:
    return str(path) in Path("/proc/self/maps").read_text()


def test_a_dataset_is_built_once_kept_with_its_digest_and_memory_mapped(tmp_path):
    built = TINY_DATA.build()
    first = shared_dataset(tmp_path, TINY_DATA)
    path = shared_path(tmp_path, TINY_DATA)
    assert (path / TENSORS_FILE).is_file() and (path / DESCRIPTION_FILE).is_file()
    assert json.loads((path / DESCRIPTION_FILE).read_text())["fingerprint"] == \
        built.fingerprint()
    stamp = (path / TENSORS_FILE).stat().st_mtime_ns
    again = shared_dataset(tmp_path, TINY_DATA)  # loaded, not built: the file is untouched
    assert (path / TENSORS_FILE).stat().st_mtime_ns == stamp
    for dataset in (first, again):
        _assert_same_data(dataset, built)
        assert dataset.fingerprint() == built.fingerprint()
    if sys.platform.startswith("linux"):
        assert _mapped(path / TENSORS_FILE)
    other = dataclasses.replace(TINY_DATA, seed=1)
    assert shared_path(tmp_path, other) != path


def test_shared_data_that_differ_from_their_digest_are_rebuilt(tmp_path, caplog):
    built = TINY_DATA.build()
    shared_dataset(tmp_path, TINY_DATA)
    path = shared_path(tmp_path, TINY_DATA)
    tensors = torch.load(path / TENSORS_FILE, weights_only=True)
    tensors["test"]["images"][0, 0, 0] += 0.5  # one pixel changed on disk
    torch.save(tensors, path / TENSORS_FILE)
    with caplog.at_level(logging.WARNING, logger="repsim.study"):
        assert load_shared(path) is None
    assert "differ from the digest they record" in caplog.text
    rebuilt = shared_dataset(tmp_path, TINY_DATA)
    _assert_same_data(rebuilt, built)
    assert load_shared(path) is not None
    (path / DESCRIPTION_FILE).write_text('{"format": 1, "name"')  # cut short
    with caplog.at_level(logging.WARNING, logger="repsim.study"):
        assert load_shared(path) is None
    assert "cannot be read (JSONDecodeError" in caplog.text
    _assert_same_data(shared_dataset(tmp_path, TINY_DATA), built)


def test_shared_data_whose_sketch_moved_in_the_last_bits_are_kept(tmp_path, caplog):
    """The fingerprint's sketch is float sums, which another number of threads computes a
    few ulps apart: the same bytes are the same data, and are not built again."""
    shared_dataset(tmp_path, TINY_DATA)
    path = shared_path(tmp_path, TINY_DATA)
    description = json.loads((path / DESCRIPTION_FILE).read_text())
    digest, labels, sketch = description["fingerprint"].split(" ")
    numbers = [float(value) for value in sketch.removeprefix("sketch:").split(",")]
    moved = ",".join(repr(value * (1 + 4e-16)) for value in numbers)
    assert moved != sketch.removeprefix("sketch:")
    description["fingerprint"] = f"{digest} {labels} sketch:{moved}"
    (path / DESCRIPTION_FILE).write_text(json.dumps(description))
    stamp = (path / TENSORS_FILE).stat().st_mtime_ns
    with caplog.at_level(logging.WARNING, logger="repsim.study"):
        kept = shared_dataset(tmp_path, TINY_DATA)
    assert "differ from the digest" not in caplog.text
    assert (path / TENSORS_FILE).stat().st_mtime_ns == stamp
    assert kept.fingerprint() == description["fingerprint"]  # what every run records


def test_a_study_run_records_its_seconds_by_stage_and_the_records_of_a_run_made_the_old_way(
        tmp_path):
    """The same run once with the study's shared data and once with the data built in the
    worker, as before shared data: every number of metrics.json and summary.json is equal
    (exactly: the same data, the same operations); each records its seconds by stage."""
    text = tiny_study(tmp_path).read_text().replace("seeds = [0, 1]", "seeds = [0]").replace(
        "fusion_layers = [1, 2]", "fusion_layers = [2]")
    records = []
    for name, old_way in (("shared", False), ("built", True)):
        (tmp_path / name).mkdir()
        study = load_study(tiny_study(tmp_path / name, text=text))
        run = study.runs[0]
        datasets = {run.config.data.to_json(): run.config.data.build()} if old_way else {}
        assert complete_run(study, run, datasets) == "done"
        assert (shared_path(study.folder, run.config.data) / TENSORS_FILE).is_file() != old_way
        metrics = json.loads((run.run_dir / METRICS_FILE).read_text())
        summary = json.loads((run.run_dir / SUMMARY_FILE).read_text())
        seconds = summary.pop("seconds")
        assert list(seconds) == list(RUN_STAGES) and all(value >= 0 for value in seconds.values())
        assert seconds["training"] > 0 and seconds["evaluation"] > 0
        records.append((metrics.pop("versions"), metrics, summary))
        totals, counted = study_seconds(study.runs)
        assert counted == 1 and totals == pytest.approx(seconds, abs=1e-9)
        line = time_line(totals, counted, 1)
        assert line.startswith("time by stage over 1 runs: ") and "not training: " in line
        section = _time_section(finished_runs(study)[0])
        assert section[:3] == ["", "## Time", ""] and "| training |" in "\n".join(section)
        summary_path = run.run_dir / SUMMARY_FILE  # a run from before: no section at all
        recorded = summary_path.read_text()
        summary_path.write_text(json.dumps({k: v for k, v in json.loads(recorded).items()
                                            if k != "seconds"}))
        assert _time_section(finished_runs(study)[0]) == []
        summary_path.write_text(recorded)
    (_, shared_metrics, shared_summary), (_, built_metrics, built_summary) = records
    for metrics in (shared_metrics, built_metrics):
        metrics.pop("train_seconds")
        metrics["config"].pop("out_dir")
    assert shared_metrics == built_metrics
    assert shared_summary == built_summary
