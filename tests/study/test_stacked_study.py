"""A study with ``[train] stack_seeds = true``: each cell's seeds train as one stacked network
in one task; every run finishes as a run of its own, says it was stacked and records its
time; ``--status`` shows the time by stage."""

import json
import sys
from pathlib import Path

from repsim.rundir import METRICS_FILE, SUMMARY_FILE
from repsim.study.cli import main, prepare_folder
from repsim.study.execute import run_local
from repsim.study.spec import load_study
from repsim.study.steps import cell_runs
from repsim.study.timing import RUN_STAGES

sys.path.insert(0, str(Path(__file__).parent))
from test_study import TINY, tiny_study  # noqa: E402


def test_a_stacked_study_trains_each_cell_as_one_task(tmp_path, capsys):
    text = TINY.format(epochs=1).replace("batch_size = 16", "batch_size = 16\nstack_seeds = true")
    (tmp_path / "plain").mkdir()
    plain = load_study(tiny_study(tmp_path / "plain", text=text.replace(
        "stack_seeds = true", "")))
    assert [len(cell) for cell in cell_runs(plain.runs)] == [1, 1, 1, 1]
    assert [[run.key for run in cell] for cell in cell_runs(load_study(
        tiny_study(tmp_path / "plain", text=text)).runs)] == [
        ["synthetic/clean/f1-s0", "synthetic/clean/f1-s1"],
        ["synthetic/clean/f2-s0", "synthetic/clean/f2-s1"]]
    path = tiny_study(tmp_path, text=text.replace("fusion_layers = [1, 2]",
                                                  "fusion_layers = [2]"))
    study = load_study(path)
    outcomes = run_local(study, prepare_folder(study, create=True), study.runs, jobs=1)
    assert sorted((o.run.key, o.state) for o in outcomes) == [
        ("synthetic/clean/f2-s0", "done"), ("synthetic/clean/f2-s1", "done")]
    for run in study.runs:
        metrics = json.loads((run.run_dir / METRICS_FILE).read_text())
        assert metrics["stacked"] == 2 and metrics["config"]["stack_seeds"] is True
        seconds = json.loads((run.run_dir / SUMMARY_FILE).read_text())["seconds"]
        assert list(seconds) == list(RUN_STAGES) and seconds["training"] > 0
    assert main([str(path), "--status"]) == 0
    assert "time by stage over 2 runs: " in capsys.readouterr().out
