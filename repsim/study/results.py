"""A study's ``results.csv``: one tidy table of every usable finished run's numbers.

One row per run and test condition (clean, each noise kind at each SNR, each modality
removed) with the test accuracy and the number of test items, one row per run and summary
measure (the readout's reliance index at the last step, and the decodability of the heard and
the seen digit on incongruent stimuli), and two rows per run on training (the last epoch's
validation accuracy and its gain over the last epochs, :mod:`repsim.study.training`). Runs
whose summary has mechanism measures add rows for them (:func:`mechanism_rows`), and a study
of several fusion operators a ``fusion_op`` column; a study without either writes exactly
what it wrote before operators existed. Numbers come from the runs' own ``metrics.json``,
``summary.json`` and ``log.csv`` (checked by :mod:`repsim.study.records`); runs that have not
finished or cannot be used are left out.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from repsim.activations.format import CLASS_NAMES
from repsim.activations.labels import DIGIT_NAMES
from repsim.conditions import MODALITIES, parse_condition
from repsim.models.config import DEFAULT_FUSION_OP
from repsim.provenance import atomic_path
from repsim.rundir import SUMMARY_FILE
from repsim.study.comparisons import (
    FUSED,
    GATE_AUDIO,
    NOISE_ENTRY,
    NOISE_ENTRY_FUSED,
    OPERATOR,
    SURVIVAL,
)
from repsim.study.records import finished_runs, read_summary
from repsim.study.spec import Study
from repsim.study.training import training_rows
from repsim.train.config import config_differences

RESULTS_FILE = "results.csv"
COLUMNS = ("dataset", "protocol", "fusion_layer", "seed", "measure", "noise", "snr_db",
           "removed", "value", "n_items")


def has_operators(study: Study) -> bool:
    """True when the study's fusion operators are more than the default one alone."""
    return study.fusion_ops != (DEFAULT_FUSION_OP,)


def results_table(study: Study) -> pd.DataFrame:
    """The tidy table of every usable finished run of ``study`` (see the module docstring);
    a run trained with another configuration than the study file gives (edited after the
    fact) is refused, naming the run and the differing fields."""
    rows = []
    operators = has_operators(study)
    for run, records in finished_runs(study)[0]:
        metrics, summary = records.metrics, records.summary
        differences = config_differences(metrics.config, run.config.to_dict())
        if differences:
            raise ValueError(f"run {run.key} ({run.run_dir}) was trained with another "
                             f"configuration than the study file says: "
                             f"{'; '.join(differences)}")
        key = {"dataset": run.dataset, "protocol": run.protocol,
               **({OPERATOR: run.fusion_op} if operators else {}),
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
        rows += mechanism_rows(key, summary)
        rows += training_rows(key, records.log)
    columns = list(COLUMNS)
    if operators:
        columns.insert(columns.index("fusion_layer"), OPERATOR)
    return pd.DataFrame(rows, columns=columns)


def mechanism_rows(key: dict, summary: dict) -> list[dict]:
    """Rows of a summary's mechanism measures (none when it has none), all at the last time
    step: ``noise_entry`` (1 - CKA at the readout's input) and ``noise_entry.<layer>``,
    ``survival_heard``/``survival_seen`` (transfer-probe accuracy) at each audio SNR,
    ``gate_audio`` (the gate's mean audio share) clean and at each audio SNR, and (summaries
    that recorded the operator's output) ``noise_entry_fused`` and
    ``fused_<present|transfer>_<target>_<view>``."""
    mechanism = summary.get("mechanism")
    if not mechanism:
        return []
    n_items = summary["readout"]["probe_stimuli"]
    rows = []

    def add(measure: str, condition: str, value) -> None:
        snr = parse_condition(condition).inputs.audio_snr
        rows.append({**key, "measure": measure, "noise": "none" if math.isinf(snr) else "audio",
                     "snr_db": snr, "removed": "none",
                     "value": math.nan if value is None else value, "n_items": n_items})

    fused = mechanism.get(FUSED, {})
    for condition, entry in mechanism.get("noise_entry", {}).items():
        add(NOISE_ENTRY, condition, entry["readout"]["cka"][-1])
        for layer, values in entry["cka"].items():
            add(f"{NOISE_ENTRY}.{layer}", condition, values[-1])
        if fused:
            add(NOISE_ENTRY_FUSED, condition, entry["cka"][fused["layer"]][-1])
    for condition, decoded in mechanism.get("survival", {}).items():
        for name, accuracy in decoded.items():
            add(f"{SURVIVAL}_{name}", condition, accuracy)
    for condition, share in mechanism.get("gate", {}).get("audio_share", {}).items():
        add(GATE_AUDIO, condition, share)
    for condition, kinds in fused.get("probes", {}).items():
        for kind, views in kinds.items():
            for view, decoded in views.items():
                for name, accuracy in decoded.items():
                    add(f"{FUSED}_{kind}_{name}_{view}", condition, accuracy)
    return rows


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


def dataset_classes(study: Study) -> dict[str, list[str] | None]:
    """Per dataset of the study with a finished run: its class names, or None for a digit
    dataset (whose summaries name no classes)."""
    classes: dict[str, list[str] | None] = {}
    for run in study.runs:
        if run.dataset not in classes and (run.run_dir / SUMMARY_FILE).is_file():
            classes[run.dataset] = read_summary(run.run_dir).get(CLASS_NAMES)
    return classes


def label_word(classes: dict[str, list[str] | None]) -> str:
    """``"digit"`` when every dataset is a digit dataset, ``"class"`` otherwise."""
    return "digit" if all(names is None for names in classes.values()) else "class"


def chance_levels(classes: dict[str, list[str] | None]) -> dict[str, float]:
    """Per dataset, chance accuracy: 0.10 for digits, 1 / the class count otherwise."""
    return {dataset: 1 / len(DIGIT_NAMES if names is None else names)
            for dataset, names in classes.items()}


def chance_text(classes: dict[str, list[str] | None]) -> str:
    """The chance level of the probes, as the report says it."""
    levels = chance_levels(classes)
    if set(levels.values()) <= {0.1}:
        return "chance 0.10"
    return "chance " + ", ".join(f"{level:.2f} for {dataset}" for dataset, level in
                                 levels.items())
