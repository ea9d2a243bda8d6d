"""The report's records checked before use: broken ones are one line naming the file and the
field, runs with numbers that are not finite are named as unusable and left out (issue 25,
items 5 and 6). The fixture is a part of the committed quick study's runs."""

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from paths import REPO_ROOT

from repsim.rundir import METRICS_FILE, SUMMARY_FILE
from repsim.study.cli import main
from repsim.study.report import RESULTS_FILE

QUICK = REPO_ROOT / "studies" / "quick"
PART = """[study]
seeds = [0, 1, 2]
fusion_layers = [1, 3]

[model]
layers = 2
hidden = 16
match_params = true

[train]
epochs = 8

[evaluation]
test_snrs = [20, 10, 0, -10]
probe_conditions = ["clean", "incongruent", "audio_removed", "visual_removed"]
probe_stimuli = 200

[datasets.synthetic]
height = 8
width = 8

[protocols.clean]
"""


@pytest.fixture
def quick_part(tmp_path) -> Path:
    """Six finished runs of the quick study (synthetic, clean, k = 1 and 3, seeds 0-2)."""
    for k in (1, 3):
        for seed in range(3):
            name = f"runs/synthetic/clean/f{k}-s{seed}"
            shutil.copytree(QUICK / name, tmp_path / "quick" / name)
    path = tmp_path / "quick.toml"
    path.write_text(PART)
    return path


def edit_json(path: Path, edit) -> None:
    values = json.loads(path.read_text())
    edit(values)
    path.write_text(json.dumps(values))  # NaN and inf as JSON's NaN/Infinity words


def run_dir(study: Path, key: str) -> Path:
    return study.parent / "quick" / "runs" / key


def test_runs_with_numbers_that_are_not_finite_are_named_left_out_and_unusable_in_status(
        quick_part, capsys):
    nan_metrics = run_dir(quick_part, "synthetic/clean/f1-s0")
    edit_json(nan_metrics / METRICS_FILE, lambda m: m.update(clean_accuracy=float("nan")))
    nan_probe = run_dir(quick_part, "synthetic/clean/f3-s1")
    edit_json(nan_probe / SUMMARY_FILE,
              lambda s: s["readout"]["probe"]["seen"].update(accuracy=float("inf")))
    assert main([str(quick_part), "--report"]) == 0
    capsys.readouterr()
    folder = quick_part.parent / "quick"
    report = (folder / "report.md").read_text().splitlines()
    assert report[2] == (
        "**Unusable: 2 finished runs cannot be used and are left out of everything below** "
        "(synthetic/clean/f1-s0: metrics.json clean_accuracy is nan; "
        "synthetic/clean/f3-s1: summary.json readout.probe.seen.accuracy is inf). Rerun them "
        "(remove their run directories first) to count them.")
    results = pd.read_csv(folder / RESULTS_FILE)
    used = set(zip(results["fusion_layer"], results["seed"], strict=True))
    assert used == {(1, 1), (1, 2), (3, 0), (3, 2)}
    answer = (folder / "answer.md").read_text()
    assert "| synthetic | clean | clean accuracy | 1 |" in answer  # one paired seed: 2
    representation = [line for line in answer.splitlines() if line.startswith("| synthetic |")
                      and line.count("|") == 8]
    assert [line.split(" | ")[2:4] for line in representation] == [["1", "2"], ["3", "2"]]
    assert main([str(quick_part), "--status"]) == 0
    status = {line.split()[3] + line.split()[2]: line for line in
              capsys.readouterr().out.splitlines()[1:]}
    assert " unusable " in status["01"] and "clean_accuracy is nan" in status["01"]
    assert " unusable " in status["13"] and "probe.seen.accuracy is inf" in status["13"]
    assert sum(" done " in line for line in status.values()) == 4


def test_seed_counts_agree_with_the_seeds_every_column_averages():
    from repsim.study.tables import representation_table

    rows = [{"dataset": "d", "protocol": "p", "fusion_layer": 1, "seed": seed,
             "measure": measure, "value": value}
            for seed, value in enumerate([0.1, 0.2, 0.6])
            for measure in ("reliance_index", "probe_heard", "probe_seen")]
    rows[-1]["value"] = float("nan")  # seed 2's seen-digit probe
    line = representation_table(pd.DataFrame(rows)).splitlines()[2]
    assert line == "| d | p | 1 | 2 | 0.15 (0.07) | 0.15 (0.07) | 0.15 (0.07) |"


BROKEN_RECORDS = [
    (SUMMARY_FILE, lambda s: s["readout"]["probe"]["heard"].update(accuracy="high"),
     "summary.json: readout.probe.heard.accuracy must be a number, got 'high'"),
    (SUMMARY_FILE, lambda s: s["readout"].update(reliance_cka=5),
     "summary.json: readout.reliance_cka must be a non-empty list of numbers, got 5"),
    (SUMMARY_FILE, lambda s: s["readout"].update(probe_stimuli="200"),
     "summary.json: readout.probe_stimuli must be a positive integer, got '200'"),
    (SUMMARY_FILE, lambda s: s.pop("readout"), "summary.json: readout must be an object"),
    (METRICS_FILE, lambda m: m.update(clean_accuracy="0.9"),
     "metrics.json: clean_accuracy must be a number, got '0.9'"),
    (METRICS_FILE, lambda m: m["removed"].update(audio=[1]),
     "metrics.json: removed.audio must be a number, got [1]"),
    (METRICS_FILE, lambda m: m.update(noise=3), "metrics.json: noise must be a list, got 3"),
]


@pytest.mark.parametrize(("name", "edit", "message"), BROKEN_RECORDS,
                         ids=[message.split(": ")[1][:30] for *_, message in BROKEN_RECORDS])
def test_a_record_of_the_wrong_type_is_one_line_naming_the_file_and_field(
        quick_part, capsys, name, edit, message):
    path = run_dir(quick_part, "synthetic/clean/f3-s2") / name
    edit_json(path, edit)
    assert main([str(quick_part), "--report"]) == 2
    error = one_error_line(capsys.readouterr().err)
    assert error.startswith(f"error: {path.parent}/") and message in error, error
    assert not (quick_part.parent / "quick" / "report.md").exists()


def one_error_line(err: str) -> str:
    """The one ``error:`` line a refused report ends with (after the stage lines it logged
    before it met the bad record), with no traceback."""
    lines = err.splitlines()
    assert [line for line in lines if line.startswith("error:")] == lines[-1:], err
    assert "Traceback" not in err
    return lines[-1]


@pytest.mark.parametrize("name", [SUMMARY_FILE, METRICS_FILE])
@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_garbage_or_truncated_json_names_the_file(quick_part, capsys, name, damage):
    path = run_dir(quick_part, "synthetic/clean/f1-s1") / name
    text = path.read_text()
    path.write_text(text[: len(text) // 2] if damage == "truncated" else "\x00garbage")
    assert main([str(quick_part), "--report"]) == 2
    error = one_error_line(capsys.readouterr().err)
    assert error.startswith(f"error: {path} is not valid JSON"), error


# Range and identity (issue 32, item 3): a number outside its range, or a record that names
# another run than its folder, makes the run unusable with one line naming file and field.
OUT_OF_PLACE = [
    (METRICS_FILE, lambda m: m.update(clean_accuracy=7.5),
     "metrics.json clean_accuracy is 7.5, outside [0, 1]"),
    (METRICS_FILE, lambda m: m["noise"][0].update(accuracy=-0.2),
     "metrics.json noise (audio at 20 dB) is -0.2, outside [0, 1]"),
    (METRICS_FILE, lambda m: m.update(test_items=0), "metrics.json test_items is 0, below 1"),
    (SUMMARY_FILE, lambda s: s["readout"]["probe"]["heard"].update(accuracy=1.2),
     "summary.json readout.probe.heard.accuracy is 1.2, outside [0, 1]"),
    (METRICS_FILE, lambda m: m.update(seed=3), "metrics.json seed is 3, not the run folder's 0"),
    (METRICS_FILE, lambda m: m.update(fusion_layer=2),
     "metrics.json fusion_layer is 2, not the run folder's 1"),
    (METRICS_FILE, lambda m: m["config"]["model"].update(fusion_op="gated"),
     "metrics.json config.model.fusion_op is 'gated', not the run folder's 'concat'"),
    (METRICS_FILE, lambda m: m["config"]["data"].update(seed=4),
     "metrics.json config.data.seed is 4, not the run folder's 0"),
    (SUMMARY_FILE, lambda s: s.update(dataset="distractor"),
     "summary.json dataset is 'distractor', not the run folder's 'synthetic'"),
    (SUMMARY_FILE, lambda s: s.update(protocol="noisy"),
     "summary.json protocol is 'noisy', not the run folder's 'clean'"),
]


@pytest.mark.parametrize(("name", "edit", "reason"), OUT_OF_PLACE,
                         ids=[reason.split(" is ")[0] for *_, reason in OUT_OF_PLACE])
def test_a_record_out_of_range_or_of_another_run_makes_the_run_unusable(
        quick_part, name, edit, reason):
    from repsim.study.records import problem, read_records
    from repsim.study.spec import load_study

    run = load_study(quick_part).run("synthetic/clean/f1-s0")
    assert problem(read_records(run.run_dir), run) is None
    edit_json(run.run_dir / name, edit)
    assert problem(read_records(run.run_dir), run) == reason


def test_the_report_names_a_run_out_of_range_and_leaves_it_out(quick_part, capsys):
    edit_json(run_dir(quick_part, "synthetic/clean/f3-s2") / METRICS_FILE,
              lambda m: m.update(clean_accuracy=7.5))  # once "380.0 %" in the answer table
    assert main([str(quick_part), "--report"]) == 0
    folder = quick_part.parent / "quick"
    report = (folder / "report.md").read_text()
    assert report.splitlines()[2].startswith(
        "**Unusable: 1 finished run cannot be used and is left out of everything below** "
        "(synthetic/clean/f3-s2: metrics.json clean_accuracy is 7.5, outside [0, 1])")
    assert "380" not in (folder / "answer.md").read_text()
    results = pd.read_csv(folder / RESULTS_FILE)
    assert (3, 2) not in set(zip(results["fusion_layer"], results["seed"], strict=True))
    assert main([str(quick_part), "--status"]) == 0
    assert "unusable" in capsys.readouterr().out
