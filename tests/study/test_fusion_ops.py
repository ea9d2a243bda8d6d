"""The fusion-operator axis of a study: a tiny study of two operators end to end (run names,
results, operator comparisons, mechanism measures, report and figure), bad axis values, and
a finished study grown by a seed without retraining its runs."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats
from test_study import TINY, tiny_study

from repsim.conditions import MECHANISM_CONDITIONS, PROBE_CONDITIONS
from repsim.rundir import ACTIVATIONS_FILE, CHECKPOINT_FILE, SUMMARY_FILE, run_state
from repsim.study.cli import main
from repsim.study.comparisons import operator_comparisons
from repsim.study.spec import load_study

CONDITIONS = json.dumps([*PROBE_CONDITIONS, *MECHANISM_CONDITIONS])
TWO_OPERATORS = TINY.replace(
    "fusion_layers = [1, 2]", 'fusion_layers = [1, 2]\nfusion_ops = ["concat", "gated"]'
).replace("probe_stimuli = 20", f"probe_stimuli = 20\nprobe_conditions = {CONDITIONS}")


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """The tiny two-operator study, run with two one-thread workers by the command's
    ``main`` in this process (the stopping tests run the command itself)."""
    folder = tmp_path_factory.mktemp("ops")
    path = tiny_study(folder, text=TWO_OPERATORS.format(epochs=1))
    assert main([str(path), "--jobs", "2", "--no-progress"]) == 0
    return load_study(path)


def test_runs_are_named_by_operator_only_when_not_concat(finished):
    keys = [run.key for run in finished.runs]
    assert keys[:4] == ["synthetic/clean/f1-s0", "synthetic/clean/f1-s1",
                        "synthetic/clean/f2-s0", "synthetic/clean/f2-s1"]
    assert keys[4:] == ["synthetic/clean/gated-f1-s0", "synthetic/clean/gated-f1-s1",
                        "synthetic/clean/gated-f2-s0", "synthetic/clean/gated-f2-s1"]
    assert all(run_state(run.run_dir) == "done" for run in finished.runs)
    assert [run.config.model.fusion_op for run in finished.runs] == ["concat"] * 4 + ["gated"] * 4


def test_results_carry_the_operator_and_the_mechanism_rows(finished):
    results = pd.read_csv(finished.folder / "results.csv")
    assert list(results.columns[:4]) == ["dataset", "protocol", "fusion_op", "fusion_layer"]
    assert set(results["fusion_op"]) == {"concat", "gated"}
    gate = results[results["measure"] == "gate_audio"]
    assert set(gate["fusion_op"]) == {"gated"} and len(gate) == 4 * 3  # clean, 0, -10 dB
    assert ((gate["value"] > 0) & (gate["value"] < 1)).all()
    survival = results[results["measure"] == "survival_seen"]
    assert sorted(set(survival["snr_db"])) == [-10.0, 0.0] and len(survival) == 8 * 2


def test_audio_noise_never_enters_the_visual_branch(finished):
    """At k = 2 the visual branch sees no audio: its noise entry is exactly 0, the audio
    branch's is not."""
    for run in finished.runs:
        entry = json.loads((run.run_dir / SUMMARY_FILE).read_text())["mechanism"][
            "noise_entry"]
        assert set(entry) == {"audio_snr0", "audio_snr-10"}
        if run.fusion_layer == 2:
            for condition in entry.values():
                assert condition["cka"]["visual.1"] == pytest.approx([0.0] * 3, abs=1e-6)
                assert condition["change"]["visual.1"] == [0.0] * 3
                assert min(condition["cka"]["audio.1"]) > 0
                assert min(condition["change"]["audio.1"]) > 0


def test_summary_gate_share_is_the_recorded_gate_mean(finished):
    run = next(run for run in finished.runs if run.fusion_op == "gated")
    gate = json.loads((run.run_dir / SUMMARY_FILE).read_text())["mechanism"]["gate"]
    assert gate["layer"] == f"gate.{run.fusion_layer}"
    with h5py.File(run.run_dir / ACTIVATIONS_FILE) as file:
        values = np.asarray(file[f"{gate['layer']}.h"], dtype=np.float64)
        conditions = np.asarray(file["condition"]).astype(str)
    for condition, share in gate["audio_share"].items():
        assert share == pytest.approx(values[conditions == condition].mean(), rel=1e-5)


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA written out in float64 (Kornblith et al. 2019)."""
    x, y = x - x.mean(0), y - y.mean(0)
    return float(np.linalg.norm(x.T @ y) ** 2
                 / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)))


def test_the_operator_output_is_recorded_and_probed_as_the_readout_reads_it(finished):
    """Summary version 2: ``join.<k>`` is recorded (the operator applied to the recorded
    branch states), its noise entry is 1 - CKA of its clean and noisy states, the late
    networks' readout reads it, and its probes read the spatial mean and the full map."""
    from repsim.analysis import linear_probe
    from repsim.checkpoint import load_checkpoint, model_from_checkpoint

    for run in finished.runs:
        summary = json.loads((run.run_dir / SUMMARY_FILE).read_text())
        join = f"join.{run.fusion_layer}"
        fused = summary["mechanism"]["fused"]
        assert summary["version"] >= 2 and fused["layer"] == join and join in summary["layers"]
        assert fused["readout"] == (run.fusion_layer == 2)  # late fusion in a 1-layer model
        assert summary["readout"]["layers"] == ([join] if run.fusion_layer == 2
                                                else ["fused.1"])
        probes = fused["probes"]
        assert set(probes) == {"clean", "audio_snr0", "audio_snr-10"}
        assert set(probes["audio_snr-10"]) == {"present", "transfer"}
        assert set(probes["audio_snr-10"]["present"]) == {"mean", "map"}
        with h5py.File(run.run_dir / ACTIVATIONS_FILE) as file:
            states = np.asarray(file[f"{join}.h"][:, -1], dtype=np.float64)
            conditions = np.asarray(file["condition"]).astype(str)
            seen = np.asarray(file["visual_digit"])
            if run.fusion_layer == 2:
                audio = np.asarray(file["audio.1.h"], dtype=np.float32)
                visual = np.asarray(file["visual.1.h"], dtype=np.float32)
                model = model_from_checkpoint(load_checkpoint(run.run_dir / CHECKPOINT_FILE))
                with torch.no_grad():
                    expected = model.join(torch.from_numpy(audio), torch.from_numpy(visual))
                np.testing.assert_allclose(file[f"{join}.h"], expected.numpy(), rtol=1e-4,
                                           atol=1e-5)
        clean, noisy = states[conditions == "clean"], states[conditions == "audio_snr-10"]
        entry = summary["mechanism"]["noise_entry"]["audio_snr-10"]["cka"][join][-1]
        assert entry == pytest.approx(1 - linear_cka(clean.reshape(len(clean), -1),
                                                     noisy.reshape(len(noisy), -1)), abs=1e-5)
        rows = conditions == "incongruent_audio_snr-10"
        mean = states[rows].mean(axis=(2, 3))  # (stimulus, channel): what a readout sees
        labels = seen[rows]
        folds = min(5, int(np.unique(labels, return_counts=True)[1].min()))
        assert probes["audio_snr-10"]["present"]["mean"]["seen"] == pytest.approx(
            linear_probe(mean, labels, folds=folds, seed=0, Cs=(1.0,)).accuracy)


def test_report_compares_operators_and_shows_the_mechanism(finished):
    folder = finished.folder
    operators = pd.read_csv(folder / "operator_comparisons.csv")
    assert set(operators["fusion_op"]) == {"gated"}
    assert sorted(set(operators["fusion_layer"])) == [1, 2]
    assert (operators["verdict"] == "not tested (2 paired seeds)").all()
    comparisons = pd.read_csv(folder / "comparisons.csv")
    assert set(comparisons["fusion_op"]) == {"concat", "gated"}  # k=1 vs k within each
    report = (folder / "report.md").read_text()
    for heading in ("## Operators", "## Mechanism", "mechanism.png"):
        assert heading in report
    assert "| synthetic | clean | gated | 1 | 2 |" in report  # mechanism row of gated k=1
    assert (folder / "figures" / "mechanism.png").stat().st_size > 0
    answer = (folder / "answer.md").read_text()
    assert "concat − gated (points)" in answer and "| operator |" in answer
    assert "### What the operator's output carries under audio noise" in report
    assert "| seen digit present, mean | seen digit present, map |" in answer
    late_concat = [line for line in answer.splitlines()  # the two mechanism tables' rows
                   if line.startswith("| synthetic | clean | concat | 2 | 2 | ")
                   and line.count("|") > 10]
    assert len(late_concat) == 2 and all("†" in line for line in late_concat)  # construction
    early_concat = [line for line in answer.splitlines()
                    if line.startswith("| synthetic | clean | concat | 1 | 2 | ")
                    and line.count("|") > 10]
    # the readout's input is learned; the operator's output at k = 1 is the raw inputs
    assert len(early_concat) == 2 and "†" not in early_concat[0]
    assert early_concat[1].count("†") == 7  # every column of the operator-output table
    assert not any("†" in line for line in answer.splitlines() if "| gated |" in line)


def test_operator_comparisons_are_paired_t_tests_with_holm_per_fusion_layer():
    rng = np.random.default_rng(0)
    rows = []
    for op, shift in (("concat", 0.0), ("gated", 0.05), ("film", -0.01)):
        for k in (1, 2):
            for seed in range(5):
                for measure in ("clean_accuracy", "auc_audio", "auc_visual", "auc_both"):
                    rows.append({"dataset": "d", "protocol": "p", "fusion_op": op,
                                 "fusion_layer": k, "seed": seed, "measure": measure,
                                 "value": 0.7 + shift * k + 0.01 * rng.normal()
                                 + 0.02 * seed})
    measures = pd.DataFrame(rows)
    table = operator_comparisons(measures, n_boot=200)
    assert len(table) == 2 * 4 * 2  # fusion layers x measures x operators besides concat
    for k in (1, 2):
        family = table[table["fusion_layer"] == k]
        expected = []
        for _, row in family.iterrows():
            pivot = measures[(measures["fusion_layer"] == k)
                             & (measures["measure"] == row["measure"])].pivot(
                index="seed", columns="fusion_op", values="value")
            test = stats.ttest_rel(pivot["concat"], pivot[row["fusion_op"]])
            assert row["t_p"] == pytest.approx(test.pvalue, rel=1e-9)
            assert row["difference"] == pytest.approx(
                (pivot["concat"] - pivot[row["fusion_op"]]).mean(), rel=1e-12)
            expected.append(test.pvalue)
        # Holm written out: the i-th smallest p times (m - i), running maximum, capped at 1
        p = np.array(expected)
        order = np.argsort(p)
        adjusted = np.maximum.accumulate((len(p) - np.arange(len(p))) * p[order])
        holm = np.empty_like(p)
        holm[order] = np.minimum(adjusted, 1.0)
        np.testing.assert_allclose(family["holm_p"].to_numpy(), holm, rtol=1e-9)
    gated = table[(table["fusion_op"] == "gated") & (table["fusion_layer"] == 2)]
    assert (gated["verdict"] == "concat worse").all()


BAD_AXES = [
    ('fusion_ops = "gated"', "study.fusion_ops must be a non-empty list of operator names from "
                             "concat, gated, film, got 'gated'"),
    ('fusion_ops = ["sum"]', "from concat, gated, film, got ['sum']"),
    ("fusion_ops = [1]", "from concat, gated, film, got [1]"),
    ("fusion_ops = []", "study.fusion_ops must be a non-empty list"),
    ('fusion_ops = ["gated", "gated"]', "study.fusion_ops repeats a value"),
    ('fusion_layers = ["1"]', "study.fusion_layers must be an integer, got '1'"),
]


@pytest.mark.parametrize(("line", "message"), BAD_AXES)
def test_bad_operator_axis_is_one_line_exit_2_before_anything(tmp_path, capsys, line, message):
    text = TINY.format(epochs=1).replace("seeds = [0, 1]", f"seeds = [0, 1]\n{line}")
    if line.startswith("fusion_layers"):
        text = text.replace("fusion_layers = [1, 2]\n", "")
    path = tiny_study(tmp_path, text=text)
    assert main([str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_operator_in_the_model_table_is_refused(tmp_path, capsys):
    path = tiny_study(tmp_path, text=TINY.format(epochs=1).replace(
        "hidden = 4", 'hidden = 4\nfusion_op = "gated"'))
    assert main([str(path)]) == 2
    assert "unknown key model.fusion_op" in capsys.readouterr().err


def test_adding_seeds_and_an_operator_keeps_finished_runs(tmp_path, capsys):
    one = TINY.replace("seeds = [0, 1]", "seeds = [0]").replace("fusion_layers = [1, 2]",
                                                                  "fusion_layers = [2]")
    path = tiny_study(tmp_path, text=one.format(epochs=1))
    assert main([str(path), "--no-progress"]) == 0  # in this process: no interpreter start-up
    first = load_study(path).runs[0]
    stamp = (first.run_dir / CHECKPOINT_FILE).stat().st_mtime_ns
    grown = one.replace("seeds = [0]", "seeds = [0, 1]")
    path.write_text(grown.format(epochs=1))
    capsys.readouterr()
    assert main([str(path), "--no-progress"]) == 0
    assert "1 of 1 runs finished, 0 failed, 1 were already done" in capsys.readouterr().out
    study = load_study(path)
    assert [run_state(run.run_dir) for run in study.runs] == ["done"] * 2
    assert (first.run_dir / CHECKPOINT_FILE).stat().st_mtime_ns == stamp
    assert (study.folder / "study.toml").read_text() == path.read_text()
    assert len(pd.read_csv(study.folder / "results.csv").groupby("seed")) == 2
    # an operator added: the same study, its finished runs done, the new ones to do
    path.write_text(grown.replace("seeds = [0, 1]", 'seeds = [0, 1]\nfusion_ops = '
                                  '["concat", "film"]').format(epochs=1))
    assert main([str(path), "--status"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "/runs/" in line]
    assert [line.split()[2:6] for line in lines] == [
        ["concat", "2", "0", "done"], ["concat", "2", "1", "done"],
        ["film", "2", "0", "not"], ["film", "2", "1", "not"]]
    # dropping a seed, or changing anything else, is another study
    path.write_text(grown.replace("seeds = [0, 1]", "seeds = [1]").format(epochs=1))
    assert main([str(path)]) == 2
    assert "differing keys: study.seeds" in capsys.readouterr().err
    path.write_text(grown.format(epochs=2))
    assert main([str(path)]) == 2
    assert "train.epochs" in capsys.readouterr().err


def test_runs_summarised_before_the_operator_output_keep_working(finished, tmp_path):
    """A study whose runs mix summary versions 1 and 2 (the committed fusion_ops runs and
    its noisy half): the version-1 runs have no row in the operator-output table, and the
    report says which they are."""
    import shutil

    from repsim.study.report import write_report
    from repsim.study.spec import load_study as load

    shutil.copytree(finished.folder, tmp_path / "tiny")
    path = tmp_path / "tiny.toml"
    shutil.copy(finished.path, path)
    study = load(path)
    old = study.run("synthetic/clean/gated-f2-s1")
    summary = json.loads((old.run_dir / SUMMARY_FILE).read_text())
    summary["version"] = 1
    del summary["mechanism"]["fused"]
    (old.run_dir / SUMMARY_FILE).write_text(json.dumps(summary))
    report = write_report(study).read_text()
    assert ("1 run of this study was summarised before the operator's output was recorded "
            "(summary version 1) and has no row in that table: 1 run of synthetic/clean.") \
        in report
    answer = (study.folder / "answer.md").read_text()
    fused = answer.split("| seen digit present, mean |")[1]
    assert "| synthetic | clean | gated | 2 | 1 |" in fused  # one seed of two left there
