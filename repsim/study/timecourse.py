"""When the heard and the seen label appear in each layer, over a study's seeds: the
report's time-resolved section.

Each run's summary (version 3, :mod:`repsim.study.summary`) holds, per layer and label, the
sliding decoder's accuracy at every step on the incongruent stimuli and the stability of its
temporal generalization. Per dataset x protocol (x operator) x fusion layer x layer x label:

- the **onset** over seeds: :func:`repsim.analysis.decoding_onset` on the seeds' time courses
  minus chance, a cluster-based permutation test over time by sign flips of whole time
  courses (all ``2^n`` of them: with five seeds the smallest p is 1/32), the first step of
  the first cluster with p < 0.05 ("none" when no cluster is significant);
- the **stability** ((mean off-diagonal - chance) / (mean diagonal - chance)): its mean over
  seeds with the 95 % t interval, given where the onset exists (without one it divides by
  noise);
- paired comparisons of the stability of the layer the readout reads, k=1 minus each other
  fusion layer (paired by seed; t-test, Holm within each dataset x protocol (x operator) x
  label family), said as higher, lower or inconclusive: no margin of equivalence is defined
  for this ratio.

Runs summarised before version 3 have no time course: they are left out of this section,
which says how many.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from repsim.analysis.stats import holm, paired_t
from repsim.analysis.temporal import decoding_onset
from repsim.provenance import atomic_path
from repsim.study.records import RunRecords
from repsim.study.spec import StudyRun

TIMECOURSE_FILE = "timecourse.csv"
ALPHA = 0.05
_PLACE = re.compile(r"^(?P<stream>.+)\.(?P<depth>\d+)$")
_STREAM_ORDER = ("audio", "visual", "gate", "join", "fused")


def time_rows(usable: Sequence[tuple[StudyRun, RunRecords]], operators: bool) -> pd.DataFrame:
    """One row per run, layer, label and step: its keys, ``layer``, ``label`` (heard, seen),
    ``step`` (1 = first), ``accuracy``, ``chance``, ``stability`` and whether the readout
    reads the layer (``readout``). Runs without a time course give none."""
    rows = []
    for run, records in usable:
        time = records.summary.get("time")
        if not isinstance(time, dict):
            continue
        key = {"dataset": run.dataset, "protocol": run.protocol,
               **({"operator": run.fusion_op} if operators else {}),
               "fusion_layer": run.fusion_layer, "seed": run.seed}
        readout = records.summary["readout"].get("layers", [])
        for layer, labels in time["layers"].items():
            for label, values in labels.items():
                stability = values["stability"]
                rows += [{**key, "layer": layer, "label": label, "step": t + 1,
                          "accuracy": math.nan if accuracy is None else accuracy,
                          "chance": values["chance"],
                          "stability": math.nan if stability is None else stability,
                          "readout": readout == [layer]}
                         for t, accuracy in enumerate(values["diagonal"])]
    return pd.DataFrame(rows)


def _cells(rows: pd.DataFrame) -> list[str]:
    keys = ["dataset", "protocol", "operator", "fusion_layer"]
    return [key for key in keys if key in rows]


def _layer_order(layer: str) -> tuple[int, int, str]:
    """Layers by depth, then stream (audio, visual, gate, join, fused)."""
    found = _PLACE.match(layer)
    if found is None:
        return (10**6, 0, layer)
    stream = found.group("stream")
    rank = _STREAM_ORDER.index(stream) if stream in _STREAM_ORDER else len(_STREAM_ORDER)
    return (int(found.group("depth")), rank, layer)


def onset_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Per cell, layer and label: ``seeds``, ``onset`` (a step, NaN when none), its cluster's
    ``onset_p`` (or the smallest cluster p when none is significant), the mean ``accuracy``
    at the last step, and the mean ``stability`` with its 95 % t interval (module
    docstring)."""
    out = []
    keys = _cells(rows)
    for group, cell in rows.groupby([*keys, "layer", "label"], sort=False):
        courses = cell.pivot(index="seed", columns="step", values="accuracy").dropna()
        stability = cell.groupby("seed")["stability"].first().dropna().to_numpy()
        onset, p = math.nan, math.nan
        if len(courses) >= 2:
            found = decoding_onset(scores=courses.to_numpy(), chance=float(cell["chance"].mean()),
                                   n_permutations=2 ** len(courses))
            onset = math.nan if found.onset is None else float(found.onset)
            significant = found.p_values[found.p_values < ALPHA]
            p = (float(significant[0]) if len(significant) else
                 float(found.p_values.min()) if len(found.p_values) else math.nan)
        mean, low, high = _interval(stability)
        out.append({**dict(zip([*keys, "layer", "label"], group, strict=True)),
                    "seeds": len(courses), "onset": onset, "onset_p": p,
                    "last_accuracy": float(courses.iloc[:, -1].mean()) if len(courses) else
                    math.nan, "stability": mean, "stability_low": low, "stability_high": high})
    table = pd.DataFrame(out)
    if table.empty:
        return table
    table["order"] = table["layer"].map(_layer_order)
    return table.sort_values([*keys, "label", "order"], kind="stable").drop(columns="order")


def _interval(values: np.ndarray) -> tuple[float, float, float]:
    """Mean and 95 % t interval (NaN bounds with fewer than 2 values)."""
    from scipy import stats

    if len(values) == 0:
        return math.nan, math.nan, math.nan
    mean = float(values.mean())
    if len(values) < 2:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1)
                 / math.sqrt(len(values)))
    return mean, mean - half, mean + half


def stability_comparisons(rows: pd.DataFrame) -> pd.DataFrame:
    """k=1 minus each other fusion layer in the stability of the layer the readout reads,
    paired by seed, per dataset x protocol (x operator) x label, Holm within each such
    family (module docstring)."""
    readout = rows[rows["readout"]].drop_duplicates(
        [*_cells(rows), "seed", "label"])[[*_cells(rows), "seed", "label", "stability"]]
    family_keys = [key for key in _cells(rows) if key != "fusion_layer"] + ["label"]
    out = []
    for family, group in readout.groupby(family_keys, sort=False):
        base = group[group["fusion_layer"] == 1].set_index("seed")["stability"]
        tested = []
        for _, other in group[group["fusion_layer"] != 1].groupby("fusion_layer"):
            paired = pd.concat([base, other.set_index("seed")["stability"]], axis=1,
                               join="inner").dropna()
            row: dict[str, Any] = {
                **{str(key): value for key, value in zip(family_keys, family, strict=True)},
                "fusion_layer": int(other["fusion_layer"].iloc[0]),
                   "seeds": len(paired), "difference": math.nan, "low": math.nan,
                   "high": math.nan, "p": math.nan}
            if len(paired) >= 3:
                mean, (low, high), p = paired_t(paired.iloc[:, 0].to_numpy()
                                                - paired.iloc[:, 1].to_numpy())
                row.update(difference=mean, low=low, high=high, p=p)
            tested.append(row)
        p_values = [row["p"] for row in tested if not math.isnan(row["p"])]
        adjusted = iter(holm(p_values)) if p_values else iter(())
        for row in tested:
            row["holm_p"] = next(adjusted) if not math.isnan(row["p"]) else math.nan
            row["verdict"] = ("not tested" if math.isnan(row["p"]) else
                              "inconclusive" if row["holm_p"] >= ALPHA else
                              "higher" if row["difference"] > 0 else "lower")
            out.append(row)
    return pd.DataFrame(out)


def write_timecourse(folder: Path, onsets: pd.DataFrame) -> Path:
    """``timecourse.csv``: every number of the section's onset table."""
    path = folder / TIMECOURSE_FILE
    with atomic_path(path) as tmp:
        onsets.to_csv(tmp, index=False)
    return path


def time_section(usable: Sequence[tuple[StudyRun, RunRecords]], operators: bool,
                 folder: Path, word: str = "digit") -> list[str]:
    """The report's lines on when the heard and the seen label appear (module docstring);
    none when no run has a time course."""
    rows = time_rows(usable, operators)
    lacking = sum(1 for _, records in usable if "time" not in records.summary)
    if rows.empty:
        return ([] if not lacking else
                ["", "## When the heard and the seen " + word + " appear", "",
                 f"None of the {lacking} finished runs was summarised with time courses "
                 "(summaries before version 3): re-summarise them (delete their "
                 "summary.json and activations.h5 and run the study again) to get them."])
    onsets = onset_table(rows)
    write_timecourse(folder, onsets)
    keys = _cells(rows)
    lines = ["", f"## When the heard and the seen {word} appear", "",
             f"Sliding decoders on the incongruent stimuli, per layer and step; the onset is the "
             f"first step of the first cluster of steps where the seeds' accuracies exceed "
             f"chance (cluster permutation test over time, sign flips of the seeds' time "
             f"courses, p < {ALPHA}); stability is (mean off-diagonal - chance) / (mean "
             f"diagonal - chance) of the temporal generalization, mean over seeds with its "
             f"95 % t interval, where there is an onset (every number: "
             f"[{TIMECOURSE_FILE}]({TIMECOURSE_FILE})).", ""]
    if lacking:
        lines += [f"{lacking} finished runs were summarised before time courses (version 3) "
                  "and are left out here.", ""]
    header = [*keys, "layer", "label", "seeds", "onset", "p", "last-step accuracy",
              "stability"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in onsets.to_dict("records"):
        onset = "none" if math.isnan(row["onset"]) else f"t={int(row['onset'])}"
        stability = ("" if math.isnan(row["onset"]) or math.isnan(row["stability"]) else
                     f"{row['stability']:.2f} [{row['stability_low']:.2f}, "
                     f"{row['stability_high']:.2f}]")
        cells = [str(row[key]) for key in keys]
        lines.append("| " + " | ".join([*cells, row["layer"], row["label"], str(row["seeds"]),
                                       onset, _p(row["onset_p"]),
                                       f"{row['last_accuracy']:.2f}", stability]) + " |")
    comparisons = stability_comparisons(rows)
    if not comparisons.empty:
        family = [key for key in keys if key != "fusion_layer"]
        lines += ["", f"Stability of the layer the readout reads, k=1 minus k (paired by seed, "
                  f"95 % t interval; Holm within each {' x '.join(family)} x label family):",
                  "", "| " + " | ".join([*family, "label", "k", "seeds", "difference",
                                         "Holm p", "verdict"]) + " |",
                  "|" + "---|" * (len(family) + 6)]
        for row in comparisons.to_dict("records"):
            difference = ("" if math.isnan(row["difference"]) else
                          f"{row['difference']:+.2f} [{row['low']:+.2f}, {row['high']:+.2f}]")
            lines.append("| " + " | ".join([*(str(row[key]) for key in family), row["label"],
                                           str(row["fusion_layer"]), str(row["seeds"]),
                                           difference, _p(row["holm_p"]), row["verdict"]])
                         + " |")
    return lines


def _p(value: float) -> str:
    return "" if math.isnan(value) else f"{value:.3g}"
