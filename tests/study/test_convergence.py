"""Training convergence in the study report: log.csv read back, gains and plateau states."""

import math

import numpy as np
import pandas as pd
import pytest

from repsim.rundir import LOG_FIELDS, read_log, write_log
from repsim.study.report import PLATEAU_GAIN, _training_rows, convergence


def history(val_accuracies):
    return [{"epoch": i + 1, "train_loss": 1.0 / (i + 1), "val_accuracy": v, "lr": 0.01,
             "epoch_seconds": 2.0, "elapsed_seconds": 2.0 * (i + 1)}
            for i, v in enumerate(val_accuracies)]


def test_the_log_reads_back_what_was_written(tmp_path):
    rows = history([0.3, 0.55, 0.7125])
    write_log(tmp_path, rows)
    assert read_log(tmp_path) == rows


def test_a_log_missing_a_column_or_holding_text_is_refused(tmp_path):
    (tmp_path / "log.csv").write_text("epoch,train_loss\n1,0.5\n")
    with pytest.raises(ValueError, match="missing column"):
        read_log(tmp_path)
    (tmp_path / "log.csv").write_text(",".join(LOG_FIELDS) + "\n1,0.5,high,0.1,1,1\n")
    with pytest.raises(ValueError, match="not a number"):
        read_log(tmp_path)


def test_training_rows_give_the_last_accuracy_and_its_gain_over_two_epochs():
    key = {"dataset": "d", "protocol": "p", "fusion_layer": 1, "seed": 0}
    final, gain = _training_rows(key, history([0.2, 0.5, 0.8, 0.85]))
    assert final["measure"] == "val_accuracy" and final["value"] == 0.85
    assert gain["measure"] == "val_gain" and gain["value"] == pytest.approx(0.85 - 0.5)
    _, short = _training_rows(key, history([0.2, 0.5]))
    assert math.isnan(short["value"])


def test_convergence_states_per_cell_from_the_seeds_gains():
    rng = np.random.default_rng(0)
    rows, expected = [], {}
    for k, gains in {1: [0.0, 0.005, 0.01], 2: [0.0, 0.04, 0.01], 3: [math.nan] * 3}.items():
        finals = rng.uniform(0.8, 1.0, size=3)
        expected[k] = (finals.mean(), np.mean(gains), np.max(gains))
        for seed, (final, gain) in enumerate(zip(finals, gains, strict=True)):
            key = {"dataset": "d", "protocol": "p", "fusion_layer": k, "seed": seed}
            rows += [{**key, "measure": "val_accuracy", "value": final},
                     {**key, "measure": "val_gain", "value": gain}]
    table = convergence(pd.DataFrame(rows)).set_index("fusion_layer")
    for k in (1, 2):
        assert table.loc[k, "seeds"] == 3
        assert table.loc[k, ["val_accuracy", "mean_gain", "max_gain"]].tolist() == \
            pytest.approx(expected[k])
    assert expected[1][1] <= PLATEAU_GAIN < expected[2][1]
    assert table.loc[1, "state"] == "plateau"
    assert table.loc[2, "state"] == "still rising"
    assert table.loc[3, "state"].startswith("not measured")
