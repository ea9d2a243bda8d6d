"""A fresh data set per seed (``[study] data_seeds``), and studies that grow by a protocol or
change how their report judges without retraining: the committed fusion_ops runs are reused
by the study file with its noisy protocol."""

import numpy as np
import pytest
from paths import REPO_ROOT
from test_study import TINY, tiny_study

from repsim.study.cli import main
from repsim.study.spec import load_study

STUDIES = REPO_ROOT / "studies"


def test_per_seed_data_gives_each_seed_its_own_data_set_shared_across_its_runs():
    study = load_study(STUDIES / "quick_per_seed_data.toml")
    assert len(study.runs) == 60 and study.data_seeds == "per_seed"
    assert all(run.config.data.seed == run.seed for run in study.runs)
    quick = {run.key: run for run in load_study(STUDIES / "quick.toml").runs}
    for run in study.runs:  # the quick study's runs but for the data seed
        other = quick[run.key].config
        assert run.config.data.to_dict() == {**other.data.to_dict(), "seed": run.seed}
        assert run.config.model == other.model and run.config.epochs == other.epochs


def test_a_list_of_data_seeds_and_what_the_data_sets_hold(tmp_path):
    path = tiny_study(tmp_path, text=TINY.format(epochs=1).replace(
        "seeds = [0, 1]", "seeds = [0, 1]\ndata_seeds = [7, 7]"))
    assert [run.config.data.seed for run in load_study(path).runs] == [7] * 4
    path.write_text(TINY.format(epochs=1).replace(
        "seeds = [0, 1]", 'seeds = [0, 1]\ndata_seeds = "per_seed"'))
    runs = load_study(path).runs
    first, second = (next(run for run in runs if run.seed == s).config.data.build()
                     for s in (0, 1))
    for split in ("train", "test"):  # other stimuli, other pairs, another test set
        a, b = first.splits[split], second.splits[split]
        assert not np.array_equal(a.images, b.images)
        assert not np.array_equal(a.audio_clean, b.audio_clean)


@pytest.mark.parametrize(("line", "message"), [
    ('data_seeds = "each"', "study.data_seeds must be 'shared', 'per_seed' or a list"),
    ("data_seeds = [1]", "study.data_seeds lists 1 data seeds for 2 seeds"),
    ("data_seeds = [0, -1]", "study.data_seeds must be in 0..4294967295, got -1"),
    ('data_seeds = [0, "1"]', "study.data_seeds must be an integer"),
])
def test_bad_data_seeds_are_one_line_exit_2(tmp_path, capsys, line, message):
    path = tiny_study(tmp_path, text=TINY.format(epochs=1).replace(
        "seeds = [0, 1]", f"seeds = [0, 1]\n{line}"))
    assert main([str(path), "--status"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err


def test_a_data_seed_given_twice_is_refused(tmp_path, capsys):
    path = tiny_study(tmp_path, text=TINY.format(epochs=1).replace(
        "seeds = [0, 1]", 'seeds = [0, 1]\ndata_seeds = "per_seed"').replace(
        "timesteps = 3", "timesteps = 3\nseed = 2"))
    assert main([str(path), "--status"]) == 2
    assert "datasets.synthetic.seed and study.data_seeds both set" in capsys.readouterr().err


def test_fusion_ops_with_its_noisy_protocol_keeps_the_90_finished_clean_runs(capsys):
    """The study file now has a noisy protocol its folder's copy lacks: the same study grown
    (a new protocol only adds runs), its clean runs done, the noisy ones to do."""
    study = load_study(STUDIES / "fusion_ops.toml")
    assert set(study.values["protocols"]) == {"clean", "noisy"}
    assert main([str(STUDIES / "fusion_ops.toml"), "--status"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "/runs/" in line]
    clean = [line for line in lines if line.split()[1] == "clean"]
    assert len(clean) == 90 and all(line.split()[5] == "done" for line in clean)
    assert len(lines) == 180  # the noisy runs planned beside them, whatever their state


def test_changing_the_analysis_table_or_an_existing_protocol(tmp_path, capsys):
    path = tiny_study(tmp_path)
    assert main([str(path), "--status"]) == 0
    copy = tmp_path / "tiny" / "study.toml"
    copy.parent.mkdir()
    copy.write_text(path.read_text())
    path.write_text(path.read_text() + "\n[analysis]\nequivalence_margin = 2\n")
    assert main([str(path), "--status"]) == 0  # how the report judges: the same study
    assert load_study(path).analysis.margins["auc_audio"] == 2.0
    path.write_text(path.read_text().replace("[protocols.clean]", "[protocols.clean]\nlr = 0.1"))
    assert main([str(path), "--status"]) == 2
    assert "differing keys: analysis, protocols.clean.lr" in capsys.readouterr().err
