"""A study's results as one tidy table: ``results.csv`` in the study folder.

One row per run and test condition (clean, each noise kind at each SNR, each modality
removed) with the test accuracy and the number of test items, and one row per run and
summary measure (the readout's reliance index at the last step, and the decodability of the
heard and the seen digit on incongruent stimuli). Numbers come from the runs' own
``metrics.json`` and ``summary.json``; runs that have not finished are left out.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from repsim.conditions import MODALITIES
from repsim.provenance import atomic_path
from repsim.rundir import SUMMARY_FILE, read_metrics
from repsim.study.spec import Study
from repsim.study.steps import read_summary

RESULTS_FILE = "results.csv"
COLUMNS = ("dataset", "protocol", "fusion_layer", "seed", "measure", "noise", "snr_db",
           "removed", "value", "n_items")


def results_table(study: Study) -> pd.DataFrame:
    """The tidy table of every finished run of ``study`` (see the module docstring)."""
    rows = []
    for run in study.runs:
        if not (run.run_dir / SUMMARY_FILE).is_file():
            continue
        metrics, summary = read_metrics(run.run_dir), read_summary(run.run_dir)
        key = {"dataset": run.dataset, "protocol": run.protocol,
               "fusion_layer": run.fusion_layer, "seed": run.seed}
        n_test = metrics.test_items
        rows.append({**key, "measure": "accuracy", "noise": "none", "snr_db": math.inf,
                     "removed": "none", "value": metrics.clean_accuracy, "n_items": n_test})
        rows += [{**key, "measure": "accuracy", "noise": kind, "snr_db": snr,
                  "removed": "none", "value": value, "n_items": n_test}
                 for (kind, snr), value in metrics.noise_accuracy.items()]
        rows += [{**key, "measure": "accuracy", "noise": "none", "snr_db": math.inf,
                  "removed": modality, "value": metrics.removed[modality], "n_items": n_test}
                 for modality in MODALITIES]
        readout = summary["readout"]
        rows.append({**key, "measure": "reliance_index", "noise": "none", "snr_db": math.inf,
                     "removed": "none", "value": _last(readout["reliance_cka"]),
                     "n_items": readout["probe_stimuli"]})
        rows += [{**key, "measure": f"probe_{name}", "noise": "none", "snr_db": math.inf,
                  "removed": "none", "value": probe["accuracy"],
                  "n_items": readout["probe_stimuli"]}
                 for name, probe in readout["probe"].items()]
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _last(values: list) -> float:
    value = values[-1]
    return math.nan if value is None else float(value)


def write_results(study: Study) -> Path:
    """Write ``results.csv`` into the study folder (atomically); returns its path."""
    table = results_table(study)
    if table.empty:
        raise ValueError(f"no run of study {study.name!r} has finished yet; nothing to report "
                         f"(see python -m repsim.study {study.path} --status)")
    path = study.folder / RESULTS_FILE
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)
    return path

