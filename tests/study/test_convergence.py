"""Training in the study report: log.csv read back, gains, the plateau judged run by run, and
the rule that names a run that failed to train."""

import math

import numpy as np
import pandas as pd
import pytest

from repsim.rundir import LOG_FIELDS, read_log, write_log
from repsim.study.training import (
    PLATEAU_GAIN,
    convergence,
    run_training,
    training_rows,
)


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
    final, gain = training_rows(key, history([0.2, 0.5, 0.8, 0.85]))
    assert final["measure"] == "val_accuracy" and final["value"] == 0.85
    assert gain["measure"] == "val_gain" and gain["value"] == pytest.approx(0.85 - 0.5)
    _, short = training_rows(key, history([0.2, 0.5]))
    assert math.isnan(short["value"])


def results_rows(cells: dict) -> pd.DataFrame:
    """Training rows of the results table: {fusion layer: [(final accuracy, gain), ...]}."""
    rows = []
    for k, runs in cells.items():
        for seed, (final, gain) in enumerate(runs):
            key = {"dataset": "d", "protocol": "p", "fusion_layer": k, "seed": seed}
            rows += [{**key, "measure": "val_accuracy", "value": final},
                     {**key, "measure": "val_gain", "value": gain}]
    return pd.DataFrame(rows)


def test_convergence_states_per_cell_from_each_runs_gain():
    rng = np.random.default_rng(0)
    gains = {1: [0.0, 0.005, 0.01], 2: [0.0, 0.04, 0.01], 3: [math.nan] * 3,
             4: [-0.012, 0.0, 0.025]}  # mean gain 0.004 <= 0.01, yet one run still rises
    finals = {k: rng.uniform(0.8, 1.0, size=3) for k in gains}
    training = run_training(results_rows({k: list(zip(finals[k], gains[k], strict=True))
                                          for k in gains}), {"d": 0.1})
    table = convergence(training).set_index("fusion_layer")
    for k in (1, 2, 4):
        assert table.loc[k, "seeds"] == 3
        assert table.loc[k, ["val_accuracy", "mean_gain", "max_gain"]].tolist() == \
            pytest.approx((finals[k].mean(), np.mean(gains[k]), np.max(gains[k])))
    assert np.mean(gains[4]) <= PLATEAU_GAIN < max(gains[4])
    assert table.loc[1, "state"] == "plateau"
    assert table.loc[2, "state"] == "still rising (1 of 3 runs)"
    assert table.loc[3, "state"].startswith("not measured")
    assert table.loc[4, "state"] == "still rising (1 of 3 runs)"  # a cell mean said plateau


def test_a_run_far_below_its_cells_median_failed_to_train_however_flat():
    """The default threshold: chance + (cell median - chance) / 2, per cell; the run flat at
    0.40 beside seeds at 0.955-0.98 (the committed fusion_ops gated k=3 case) fails."""
    runs = {3: [(0.975, 0.0), (0.955, 0.0), (0.405, 0.0), (0.98, 0.0), (0.96, 0.0)],
            1: [(0.5, 0.0), (0.52, 0.0), (0.49, 0.0)]}  # a cell that is low throughout
    training = run_training(results_rows(runs), {"d": 0.1}).set_index(["fusion_layer", "seed"])
    median = float(np.median([0.975, 0.955, 0.405, 0.98, 0.96]))
    assert training.loc[(3, 2), "threshold"] == pytest.approx(0.1 + (median - 0.1) / 2)
    assert training["failed"].to_dict() == {(3, s): s == 2 for s in range(5)} | {
        (1, s): False for s in range(3)}
    table = convergence(training.reset_index()).set_index("fusion_layer")
    assert table.loc[3, "state"] == "plateau; 1 failed to train"
    fixed = run_training(results_rows(runs), {"d": 0.1}, min_val_accuracy=0.51)
    assert fixed.loc[fixed["failed"], "val_accuracy"].tolist() == [0.405, 0.5, 0.49]


def test_the_time_section_tables_the_epochs_that_stopping_at_the_plateau_trained():
    from types import SimpleNamespace

    from repsim.study.report import _plateau_rows

    def run(dataset, k, seed, stopped, best, epochs=8, op="concat"):
        return (SimpleNamespace(dataset=dataset, protocol="clean", fusion_layer=k, seed=seed,
                                fusion_op=op),
                SimpleNamespace(stopped_epoch=stopped, best_epoch=best, epochs=epochs))

    plateau = [run("synthetic", 1, 0, 4, 3), run("synthetic", 1, 1, None, 8),
               run("synthetic", 3, 0, 6, 6), run("distractor", 1, 0, 11, 9, epochs=20)]
    assert _plateau_rows(plateau) == [
        "| distractor | clean | 1 | 1 | 1 | 11 of 20 | 11 | 9 |",
        "| synthetic | clean | 1 | 2 | 1 | 12 of 16 | 4-8 | 3-8 |",
        "| synthetic | clean | 3 | 1 | 1 | 6 of 8 | 6 | 6 |"]
    # with several operators the protocol names its operator
    both = plateau[:1] + [run("synthetic", 1, 0, 5, 5, op="film")]
    assert [row.split(" | ")[1] for row in _plateau_rows(both)] == ["clean, concat",
                                                                   "clean, film"]
