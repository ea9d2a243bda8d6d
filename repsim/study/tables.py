"""The answer tables of a study, as ``answer.md`` holds them and the README quotes them.

Every table is made from the comparisons and the per-seed measures alone (so that a test can
remake a committed ``answer.md`` from its CSVs). A comparison's cell is ``difference
[95 % t interval] verdict`` in percentage points, the verdict one of
:data:`repsim.study.comparisons.VERDICTS`; a better/worse verdict whose 90 % interval also
lies inside the margin adds ``(inside ±m)``, and a verdict that changes when the runs that
failed to train are left out adds ``; <verdict> without the failed runs``. In the mechanism
tables a value that holds by construction (late concatenation: half of the readout's input
is the visual branch, which audio noise cannot reach) is marked :data:`BY_CONSTRUCTION`.
"""

from __future__ import annotations

import math
from collections.abc import Set

import pandas as pd

from repsim.conditions import PROBE_SNRS
from repsim.models.config import DEFAULT_FUSION_OP
from repsim.study.comparisons import (
    BETTER,
    FUSED,
    GATE_AUDIO,
    NOISE_ENTRY,
    NOISE_ENTRY_FUSED,
    OPERATOR,
    SURVIVAL,
    WORSE,
    is_equivalent,
    mechanism_name,
    run_keys,
    short_verdict,
)

MEASURE_NAMES = {"clean_accuracy": "clean accuracy", "auc_audio": "AUC, audio noise",
                 "auc_visual": "AUC, visual noise", "auc_both": "AUC, both noisy"}
BY_CONSTRUCTION = "†"
NOT_TESTED = "not tested"
WITHOUT_FAILED = "verdict_without_failed"  # the comparisons column, when runs failed
WORST = min(PROBE_SNRS)


def answer_text(table: pd.DataFrame, measures: pd.DataFrame,
                operators: pd.DataFrame | None = None, word: str = "digit",
                late: int | None = None) -> str:
    """``answer.md``: :func:`headline_table` and :func:`representation_table`, then (studies
    of several operators, runs with mechanism measures) :func:`operator_table`,
    :func:`mechanism_table` and :func:`fused_table`. ``late`` is the study's late fusion
    layer (L + 1), where :data:`BY_CONSTRUCTION` marks apply."""
    text = headline_table(table) + "\n" + representation_table(measures, word)
    if operators is not None:
        text += "\n" + operator_table(operators)
    if has_mechanism(measures):
        text += "\n" + mechanism_table(measures, late)
    if has_fused(measures):
        text += "\n" + fused_table(measures, late, word)
    return text


def has_mechanism(measures: pd.DataFrame) -> bool:
    """True when some run has mechanism measures."""
    return bool(measures["measure"].str.startswith(NOISE_ENTRY).any())


def has_fused(measures: pd.DataFrame) -> bool:
    """True when some run recorded the operator's output (summary version 2)."""
    return bool((measures["measure"].str.startswith(NOISE_ENTRY_FUSED)).any())


def verdict_cell(row: pd.Series) -> str:
    """A comparison's cell (module docstring); ``not tested`` without a test."""
    if pd.isna(row.get("difference")):
        return NOT_TESTED
    return (f"{100 * row['difference']:+.1f} [{100 * row['t_low']:+.1f}, "
            f"{100 * row['t_high']:+.1f}] {verdict_words(row)}")


def verdict_words(row: pd.Series) -> str:
    """The verdict of a tested row with its margin and failed-run notes (module docstring)."""
    words = short_verdict(row)
    if words in (BETTER, WORSE) and is_equivalent(row):
        words += f" (inside ±{100 * row['margin']:g})"
    without = row.get(WITHOUT_FAILED)
    if isinstance(without, str) and without != row["verdict"]:
        other = NOT_TESTED if without.startswith(NOT_TESTED) else without.rsplit(" ", 1)[-1]
        words += f"; {other} without the failed runs"
    return words


def headline_table(table: pd.DataFrame) -> str:
    """The answer at a glance, from the comparisons alone: per dataset, protocol (operator)
    and primary measure, the seeds, k=1's mean, and for every other fusion layer k the paired
    difference k=1 minus k (:func:`verdict_cell`; ``not tested``: fewer than 3 paired
    seeds)."""
    if table.empty:
        return "No comparison: the study has no fusion layer besides k=1 to compare with.\n"
    layers = sorted(int(k) for k in table["fusion_layer"].unique())
    within = ["dataset", "protocol"] + ([OPERATOR] if OPERATOR in table else [])
    operator = "operator | " if OPERATOR in table else ""
    lines = [f"| dataset | training | {operator}measure | seeds | k=1 | "
             + " | ".join(f"k=1 − k={k} (points)" for k in layers) + " |",
             "|---|---|---|---|---|" + "---|" * (len(layers) + bool(operator))]
    for group, rows in table.groupby([*within, "measure"], sort=False):
        by_layer = {int(row["fusion_layer"]): row for _, row in rows.iterrows()}
        seeds = min(int(row["n_seeds"]) for row in by_layer.values())
        cells = [verdict_cell(by_layer[k]) if k in by_layer else "-" for k in layers]
        lines.append("| " + " | ".join(str(value) for value in group[:-1])
                     + f" | {MEASURE_NAMES[str(group[-1])]} | {seeds} | {_reference(rows)} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def operator_table(table: pd.DataFrame) -> str:
    """Every operator against concatenation at a glance: per dataset, protocol, fusion layer
    and primary measure, the seeds, concat's mean, and for every other operator the paired
    difference concat minus it (:func:`verdict_cell`), Holm within the dataset x protocol x
    fusion layer family."""
    if table.empty:
        return "No operator comparison: the study has no operator besides concat.\n"
    ops = list(dict.fromkeys(table[OPERATOR]))
    lines = [f"| dataset | training | k | measure | seeds | {DEFAULT_FUSION_OP} | "
             + " | ".join(f"{DEFAULT_FUSION_OP} − {op} (points)" for op in ops) + " |",
             "|---|---|---|---|---|---|" + "---|" * len(ops)]
    for (dataset, protocol, k, measure), rows in table.groupby(
            ["dataset", "protocol", "fusion_layer", "measure"], sort=False):
        by_op = {row[OPERATOR]: row for _, row in rows.iterrows()}
        seeds = min(int(row["n_seeds"]) for row in by_op.values())
        cells = [verdict_cell(by_op[op]) if op in by_op else "-" for op in ops]
        lines.append(f"| {dataset} | {protocol} | {k} | {MEASURE_NAMES[str(measure)]} | "
                     f"{seeds} | {_reference(rows)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _reference(rows: pd.DataFrame) -> str:
    """The reference's mean in percent, or ``-``."""
    reference = rows.get("reference_mean", pd.Series(dtype=float)).dropna()
    return f"{100 * reference.iloc[0]:.1f} %" if len(reference) else "-"


def representation_table(measures: pd.DataFrame, word: str = "digit") -> str:
    """Why, at a glance: per dataset, protocol and fusion layer, the seeds and the mean (and
    standard deviation over seeds, only of the seeds with all three) of the last layer's
    reliance index at the last step and of the decodability of the heard and of the seen digit
    (``word``) on incongruent stimuli."""
    names = {"reliance_index": "reliance on audio", "probe_heard": f"heard {word} decoded",
             "probe_seen": f"seen {word} decoded"}
    here = measures[measures["measure"].isin(list(names))].dropna(subset=["value"])
    keys = [key for key in run_keys(measures) if key != "seed"]
    complete = here.groupby([*keys, "seed"], sort=False)["measure"].transform("nunique") \
        == len(names)
    here = here[complete]  # a seed counts only where it has every column
    stats = here.groupby([*keys, "measure"], sort=False)["value"].agg(["mean", "std", "count"])
    operator = "operator | " if OPERATOR in keys else ""
    lines = [f"| dataset | training | {operator}k | seeds | " + " | ".join(names.values())
             + " |", "|---|---|---|---|" + "---|" * (len(names) + bool(operator))]
    for cell_key, cell in stats.groupby(level=list(range(len(keys))), sort=False):
        cell = cell.droplevel(list(range(len(keys))))
        values = [f"{cell['mean'].to_dict()[name]:.2f} ({fmt(cell.at[name, 'std'], 2)})"
                  for name in names]
        lines.append("| " + " | ".join(map(str, cell_key))
                     + f" | {int(cell['count'].min())} | " + " | ".join(values) + " |")
    return "\n".join(lines) + "\n"


# The mechanism table's columns: per-seed measure -> heading, at each probe-set audio SNR;
# and those that hold by construction at late concatenation.
MECHANISM_COLUMNS = {
    **{mechanism_name(measure, "audio", snr): f"{title}, {snr:g} dB"
       for measure, title in ((NOISE_ENTRY, "noise entry"), (f"{SURVIVAL}_seen", "seen digit"),
                              (f"{SURVIVAL}_heard", "heard digit")) for snr in PROBE_SNRS},
    mechanism_name(GATE_AUDIO, "none", math.inf): "gate on audio, clean",
    mechanism_name(GATE_AUDIO, "audio", WORST): f"gate on audio, {WORST:g} dB"}
MECHANISM_BY_CONSTRUCTION = {mechanism_name(measure, "audio", snr)
                             for measure in (NOISE_ENTRY, f"{SURVIVAL}_seen")
                             for snr in PROBE_SNRS}


def mechanism_table(measures: pd.DataFrame, late: int | None = None) -> str:
    """The mechanism at a glance: per dataset, protocol, (operator) and fusion layer, the
    seeds and the mean (standard deviation over seeds) of the noise entry at the readout's
    input (1 - CKA, clean vs audio-noisy, last step), of the seen and the heard digit decoded
    on audio-noisy incongruent stimuli by probes trained on clean ones, and of the gate's
    audio share ("-" where a run has no such measure)."""
    return _cell_table(measures, MECHANISM_COLUMNS, MECHANISM_BY_CONSTRUCTION, late)


def fused_columns(word: str = "digit") -> dict[str, str]:
    """The operator-output table's columns at the worst probe SNR (:func:`fused_table`)."""
    columns = {mechanism_name(NOISE_ENTRY_FUSED, "audio", WORST): f"noise entry, {WORST:g} dB"}
    for target, kind, title in (("seen", "present", "present"),
                                ("seen", "transfer", "transfers"),
                                ("heard", "present", "present")):
        for view in ("mean", "map"):
            name = mechanism_name(f"{FUSED}_{kind}_{target}_{view}", "audio", WORST)
            columns[name] = f"{target} {word} {title}, {view}"
    return columns


def fused_table(measures: pd.DataFrame, late: int | None = None, word: str = "digit") -> str:
    """What the fusion operator's output carries under audio noise (runs that recorded it):
    per cell, the seeds and mean (standard deviation) at the worst probe SNR of its noise
    entry and, on audio-noisy incongruent stimuli, the accuracy of probes trained and tested
    within the noisy condition (``present``) and trained on clean stimuli (``transfers``),
    on the spatial mean per channel (``mean``, what a readout sees) and on the full map."""
    columns = fused_columns(word)
    present = mechanism_name(f"{FUSED}_present_seen_mean", "audio", WORST)
    marked = {next(iter(columns)), present,
              mechanism_name(f"{FUSED}_present_seen_map", "audio", WORST)}
    # at early fusion by concatenation the operator's output is the raw inputs: every
    # column is the same for every network
    return _cell_table(measures, columns, marked, late, early=set(columns))


def _cell_table(measures: pd.DataFrame, columns: dict[str, str], marked: Set[str],
                late: int | None, early: Set[str] = frozenset()) -> str:
    """Per cell of the runs that have any of ``columns``: seeds and ``mean (sd)`` of each
    ("-" where none has it), :data:`BY_CONSTRUCTION` after the ``marked`` columns of late
    concatenation's cells and the ``early`` columns of early (k = 1) concatenation's."""
    keys = [key for key in run_keys(measures) if key != "seed"]
    here = measures[measures["measure"].isin(list(columns))]
    stats = here.groupby([*keys, "measure"], sort=False)["value"].agg(["mean", "std", "count"])
    head = ["dataset", "training", *(["operator"] if OPERATOR in keys else []), "k", "seeds"]
    lines = ["| " + " | ".join(head + list(columns.values())) + " |",
             "|" + "---|" * (len(head) + len(columns))]
    for cell_key, cell in stats.groupby(level=list(range(len(keys))), sort=False):
        cell = cell.droplevel(list(range(len(keys))))
        parts = dict(zip(keys, cell_key, strict=True))
        concatenated = parts.get(OPERATOR, DEFAULT_FUSION_OP) == DEFAULT_FUSION_OP
        construction: Set[str] = set()
        if concatenated and late is not None and parts["fusion_layer"] == late:
            construction = marked
        elif concatenated and parts["fusion_layer"] == 1:
            construction = early
        means, spreads = cell["mean"].to_dict(), cell["std"].to_dict()
        values = [f"{means[name]:.2f} ({fmt(spreads[name], 2)})"
                  + (BY_CONSTRUCTION if name in construction else "")
                  if name in means else "-" for name in columns]
        lines.append("| " + " | ".join(str(v) for v in cell_key) + f" | "
                     f"{int(cell['count'].min())} | " + " | ".join(values) + " |")
    return "\n".join(lines) + "\n"


def fmt(value: object, digits: int = 3) -> str:
    """``value`` with ``digits`` decimals, ``-`` for None or NaN."""
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) \
        else f"{value:.{digits}f}"
