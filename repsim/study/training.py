"""Did each run train? The failed-run rule and the plateau check, run by run.

A run *failed to train* when its final validation accuracy is below its threshold: the
study's ``[analysis] min_val_accuracy`` when given, else chance plus :data:`FAILED_SHARE`
of the distance from chance to its cell's median (the cell: dataset x protocol x operator x
fusion layer, every usable run of it). With chance 0.10 and a cell median of 0.97 the
threshold is 0.535: a run that learned less than half of what its seeds usually learn.
Failed runs stay in every statistic (they are what training gave); the report names them
and flags each verdict that changes without them.

A run is at a plateau when its validation accuracy gained at most :data:`PLATEAU_GAIN` over
its last :data:`PLATEAU_EPOCHS` epochs: checked per run, so that one run still rising is not
hidden by a cell mean, and a failed run stays "failed" however flat it is.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import pandas as pd

from repsim.study.comparisons import run_keys

PLATEAU_EPOCHS = 2
PLATEAU_GAIN = 0.01  # a run whose validation gain over the last epochs is above this rises
FAILED_SHARE = 0.5  # of the distance from chance to the cell median: the default threshold
NOT_MEASURED = f"not measured (at most {PLATEAU_EPOCHS} epochs)"


def training_rows(key: dict, log: list[dict]) -> list[dict]:
    """The results rows of a run's training: the last validation accuracy and its gain over
    the last PLATEAU_EPOCHS epochs (NaN when the run trained for fewer epochs than that)."""
    values = [row["val_accuracy"] for row in log]
    gain = values[-1] - values[-1 - PLATEAU_EPOCHS] if len(values) > PLATEAU_EPOCHS else math.nan
    common = {"noise": "none", "snr_db": math.inf, "removed": "none", "n_items": math.nan}
    return [{**key, "measure": "val_accuracy", "value": values[-1], **common},
            {**key, "measure": "val_gain", "value": gain, **common}]


def run_training(results: pd.DataFrame, chance: Mapping[str, float],
                 min_val_accuracy: float | None = None) -> pd.DataFrame:
    """One row per run: its keys, ``val_accuracy`` (last epoch), ``gain`` (over the last
    epochs), its cell's ``median`` and ``chance``, its ``threshold`` and whether it
    ``failed`` (module docstring), and ``rising`` (its gain above PLATEAU_GAIN)."""
    keys = run_keys(results)
    final = results[results["measure"] == "val_accuracy"].set_index(keys)["value"]
    gain = results[results["measure"] == "val_gain"].set_index(keys)["value"]
    table = pd.DataFrame({"val_accuracy": final, "gain": gain.reindex(final.index)}
                         ).reset_index()
    table["median"] = table.groupby(keys[:-1], sort=False)["val_accuracy"].transform("median")
    table["chance"] = [chance.get(dataset, math.nan) for dataset in table["dataset"]]
    table["threshold"] = (table["chance"] + FAILED_SHARE * (table["median"] - table["chance"])
                          if min_val_accuracy is None else min_val_accuracy)
    table["failed"] = table["val_accuracy"] < table["threshold"]
    table["rising"] = table["gain"] > PLATEAU_GAIN
    return table


def convergence(training: pd.DataFrame) -> pd.DataFrame:
    """Per dataset x protocol (x operator) x fusion layer, from :func:`run_training`: seeds,
    mean last validation accuracy, mean and largest gain, how many runs still rose and how
    many failed, and the cell's ``state``: ``plateau`` (every run), ``still rising (r of n
    runs)``, or ``not measured`` (runs too short to tell), with ``; f failed to train``."""
    keys = run_keys(training)[:-1]
    cells = training.groupby(keys, sort=False)
    table = pd.DataFrame({"seeds": cells["val_accuracy"].count(),
                          "val_accuracy": cells["val_accuracy"].mean(),
                          "mean_gain": cells["gain"].mean(), "max_gain": cells["gain"].max(),
                          "rising": cells["rising"].sum(), "failed": cells["failed"].sum(),
                          "measured": cells["gain"].count()}).reset_index()
    table["state"] = [_state(int(row["seeds"]), int(row["rising"]), int(row["failed"]),
                             int(row["measured"])) for row in table.to_dict("records")]
    return table.drop(columns="measured")


def _state(seeds: int, rising: int, failed: int, measured: int) -> str:
    state = NOT_MEASURED if not measured else "plateau" if not rising else \
        f"still rising ({rising} of {seeds} runs)"
    return state + (f"; {failed} failed to train" if failed else "")
