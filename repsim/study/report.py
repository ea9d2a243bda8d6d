"""A study's report: ``results.csv``, the comparisons, three figures and ``report.md``.

``results.csv`` has one row per run and test condition (clean, each noise kind at each SNR,
each modality removed) with the test accuracy and the number of test items, one row per run and
summary measure (the readout's reliance index at the last step, and the decodability of the
heard and the seen digit on incongruent stimuli), and two rows per run on training: the last
epoch's validation accuracy and its gain over the last :data:`PLATEAU_EPOCHS` epochs. Runs
whose summary has mechanism measures add rows for them (:func:`mechanism_rows`), and a study
of several fusion operators a ``fusion_op`` column, an ``operator_comparisons.csv``, the
operator and mechanism tables and a fourth figure; a study without either writes exactly what
it wrote before operators existed. Numbers come from the runs' own ``metrics.json``,
``summary.json`` and ``log.csv``; runs that have not finished are left out (and the report
says which cells miss runs).
:mod:`repsim.study.comparisons` turns them into the paired comparisons,
:mod:`repsim.study.figures` draws them, and :func:`write_report` writes everything with a
``report.md`` whose every sentence is generated from those numbers.
"""

from __future__ import annotations

import datetime
import math
import os
import platform
from collections.abc import Callable, Mapping
from pathlib import Path

import pandas as pd

from repsim import plotting
from repsim.activations.format import CLASS_NAMES
from repsim.activations.labels import DIGIT_NAMES
from repsim.conditions import MODALITIES, PROBE_SNRS, parse_condition
from repsim.models.config import DEFAULT_FUSION_OP
from repsim.provenance import atomic_path
from repsim.rundir import SUMMARY_FILE
from repsim.study import figures
from repsim.study.comparisons import (
    GATE_AUDIO,
    NOISE_ENTRY,
    OPERATOR,
    PRIMARY,
    SURVIVAL,
    comparisons,
    mechanism_name,
    operator_comparisons,
    per_seed_measures,
    run_keys,
)
from repsim.study.records import finished_runs, read_summary
from repsim.study.spec import Study
from repsim.train.config import config_differences

RESULTS_FILE = "results.csv"
COMPARISONS_FILE = "comparisons.csv"
OPERATOR_COMPARISONS_FILE = "operator_comparisons.csv"
REPORT_FILE = "report.md"
ANSWER_FILE = "answer.md"  # the two answer tables alone, as the README quotes them
FIGURES_DIR = "figures"
FIGURE_NAMES = ("accuracy_vs_snr", "by_fusion_layer", "representation")
# What write_report writes, in order; it announces each to its ``on_stage`` as it begins.
STAGES = (RESULTS_FILE, COMPARISONS_FILE, *(f"{FIGURES_DIR}/{name}" for name in FIGURE_NAMES),
          REPORT_FILE)
MEASURE_NAMES = {"clean_accuracy": "clean accuracy", "auc_audio": "AUC, audio noise",
                 "auc_visual": "AUC, visual noise", "auc_both": "AUC, both noisy"}
PLATEAU_EPOCHS = 2
PLATEAU_GAIN = 0.01  # a cell whose mean validation gain over the last epochs is above this
COLUMNS = ("dataset", "protocol", "fusion_layer", "seed", "measure", "noise", "snr_db",
           "removed", "value", "n_items")


def has_operators(study: Study) -> bool:
    """True when the study's fusion operators are more than the default one alone."""
    return study.fusion_ops != (DEFAULT_FUSION_OP,)


def results_table(study: Study) -> pd.DataFrame:
    """The tidy table of every finished run of ``study`` (see the module docstring); a run
    trained with another configuration than the study file gives (edited after the fact) is
    refused, naming the run and the differing fields."""
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
        rows += _training_rows(key, records.log)
    columns = list(COLUMNS)
    if operators:
        columns.insert(columns.index("fusion_layer"), OPERATOR)
    return pd.DataFrame(rows, columns=columns)


def mechanism_rows(key: dict, summary: dict) -> list[dict]:
    """Rows of a summary's mechanism measures (none when it has none), all at the last time
    step: ``noise_entry`` (1 - CKA at the readout's input) and ``noise_entry.<layer>``,
    ``survival_heard``/``survival_seen`` (transfer-probe accuracy) at each audio SNR, and
    ``gate_audio`` (the gate's mean audio share) clean and at each audio SNR."""
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

    for condition, entry in mechanism.get("noise_entry", {}).items():
        add(NOISE_ENTRY, condition, entry["readout"]["cka"][-1])
        for layer, values in entry["cka"].items():
            add(f"{NOISE_ENTRY}.{layer}", condition, values[-1])
    for condition, decoded in mechanism.get("survival", {}).items():
        for name, accuracy in decoded.items():
            add(f"{SURVIVAL}_{name}", condition, accuracy)
    for condition, share in mechanism.get("gate", {}).get("audio_share", {}).items():
        add(GATE_AUDIO, condition, share)
    return rows


def _training_rows(key: dict, log: list[dict]) -> list[dict]:
    """The last validation accuracy and its gain over the last PLATEAU_EPOCHS epochs (NaN
    when the run trained for fewer epochs than that)."""
    values = [row["val_accuracy"] for row in log]
    gain = values[-1] - values[-1 - PLATEAU_EPOCHS] if len(values) > PLATEAU_EPOCHS else math.nan
    common = {"noise": "none", "snr_db": math.inf, "removed": "none", "n_items": math.nan}
    return [{**key, "measure": "val_accuracy", "value": values[-1], **common},
            {**key, "measure": "val_gain", "value": gain, **common}]


def convergence(results: pd.DataFrame) -> pd.DataFrame:
    """Per dataset x protocol x fusion layer: seeds, mean last validation accuracy, mean and
    largest gain over the last PLATEAU_EPOCHS epochs, and whether the mean gain is within
    PLATEAU_GAIN (``plateau``) or above it (``still rising``); runs too short to tell are
    ``not measured``."""
    keys = run_keys(results)[:-1]
    final = results[results["measure"] == "val_accuracy"].groupby(keys, sort=False)["value"]
    gain = results[results["measure"] == "val_gain"].groupby(keys, sort=False)["value"]
    table = pd.DataFrame({"seeds": final.count(), "val_accuracy": final.mean(),
                          "mean_gain": gain.mean(), "max_gain": gain.max()}).reset_index()
    table["state"] = ["plateau" if g <= PLATEAU_GAIN else "still rising" if g > PLATEAU_GAIN
                      else f"not measured (at most {PLATEAU_EPOCHS} epochs)"
                      for g in table["mean_gain"]]
    return table


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


def write_report(study: Study, on_stage: Callable[[str], None] | None = None) -> Path:
    """Write the whole report into the study folder; returns the path of ``report.md``.

    ``on_stage(what)`` is called as each of :data:`STAGES` begins (a command's progress)."""
    announce = on_stage or (lambda what: None)
    announce(RESULTS_FILE)
    results_path = write_results(study)
    results = pd.read_csv(results_path)
    measures = per_seed_measures(results)
    announce(COMPARISONS_FILE)
    table = comparisons(measures)
    with atomic_path(study.folder / COMPARISONS_FILE) as tmp:
        table.to_csv(tmp, index=False)
    out = study.folder / FIGURES_DIR
    out.mkdir(exist_ok=True)
    classes = dataset_classes(study)
    word = label_word(classes)
    drawings = {"accuracy_vs_snr": (lambda: figures.accuracy_vs_snr(results), results),
                "by_fusion_layer": (lambda: figures.by_fusion_layer(measures), measures),
                "representation": (lambda: figures.representation(measures, word), measures)}
    for name in FIGURE_NAMES:
        announce(f"{FIGURES_DIR}/{name}")
        draw, numbers = drawings[name]
        plotting.save_outputs(draw, numbers, out, name, [results_path])
    announce(REPORT_FILE)
    operators = None
    if OPERATOR in results:
        operators = operator_comparisons(measures)
        with atomic_path(study.folder / OPERATOR_COMPARISONS_FILE) as tmp:
            operators.to_csv(tmp, index=False)
    if has_mechanism(measures):
        plotting.save_outputs(lambda: figures.mechanism(measures), measures, out,
                              "mechanism", [results_path])
    with atomic_path(study.folder / ANSWER_FILE) as tmp:
        tmp.write_text(answer_text(table, measures, operators, word))
    path = study.folder / REPORT_FILE
    with atomic_path(path) as tmp:
        tmp.write_text(report_text(study, measures, table, convergence(results), operators))
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


def chance_text(classes: dict[str, list[str] | None]) -> str:
    """The chance level of the probes: 0.10 for digits, 1 / the class count otherwise."""
    levels = {dataset: 1 / len(DIGIT_NAMES if names is None else names)
              for dataset, names in classes.items()}
    if set(levels.values()) <= {0.1}:
        return "chance 0.10"
    return "chance " + ", ".join(f"{level:.2f} for {dataset}" for dataset, level in
                                 levels.items())


def has_mechanism(measures: pd.DataFrame) -> bool:
    """True when some run has mechanism measures."""
    return bool(measures["measure"].str.startswith(NOISE_ENTRY).any())


def answer_text(table: pd.DataFrame, measures: pd.DataFrame,
                operators: pd.DataFrame | None = None, word: str = "digit") -> str:
    """``answer.md``: :func:`headline_table` and :func:`representation_table`, then (studies
    of several operators, runs with mechanism measures) :func:`operator_table` and
    :func:`mechanism_table`."""
    text = headline_table(table) + "\n" + representation_table(measures, word)
    if operators is not None:
        text += "\n" + operator_table(operators)
    if has_mechanism(measures):
        text += "\n" + mechanism_table(measures)
    return text


def operator_table(table: pd.DataFrame) -> str:
    """Every operator against concatenation at a glance: per dataset, protocol, fusion layer
    and primary measure, the seeds, concat's mean, and for every other operator the paired
    difference concat minus it in percentage points with its 95 % t interval and the verdict
    after Holm's correction within the dataset x protocol x fusion layer family."""
    if table.empty:
        return "No operator comparison: the study has no operator besides concat.\n"
    ops = list(dict.fromkeys(table[OPERATOR]))
    lines = ["| dataset | training | k | measure | seeds | concat | "
             + " | ".join(f"concat − {op} (points)" for op in ops) + " |",
             "|---|---|---|---|---|---|" + "---|" * len(ops)]
    for (dataset, protocol, k, measure), rows in table.groupby(
            ["dataset", "protocol", "fusion_layer", "measure"], sort=False):
        by_op = {row[OPERATOR]: row for _, row in rows.iterrows()}
        seeds = min(int(row["n_seeds"]) for row in by_op.values())
        reference = rows.get("reference_mean", pd.Series(dtype=float)).dropna()
        mean = f"{100 * reference.iloc[0]:.1f} %" if len(reference) else "-"
        cells = [_headline_cell(by_op[op], "concat ") if op in by_op else "-" for op in ops]
        lines.append(f"| {dataset} | {protocol} | {k} | {MEASURE_NAMES[str(measure)]} | "
                     f"{seeds} | {mean} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# The mechanism table's columns: per-seed measure -> heading, at each probe-set audio SNR.
MECHANISM_COLUMNS = {
    **{mechanism_name(measure, "audio", snr): f"{title}, {snr:g} dB"
       for measure, title in ((NOISE_ENTRY, "noise entry"), (f"{SURVIVAL}_seen", "seen digit"),
                              (f"{SURVIVAL}_heard", "heard digit")) for snr in PROBE_SNRS},
    mechanism_name(GATE_AUDIO, "none", math.inf): "gate on audio, clean",
    mechanism_name(GATE_AUDIO, "audio", min(PROBE_SNRS)): f"gate on audio, "
                                                          f"{min(PROBE_SNRS):g} dB"}


def mechanism_table(measures: pd.DataFrame) -> str:
    """The mechanism at a glance: per dataset, protocol, (operator) and fusion layer, the
    seeds and the mean (standard deviation over seeds) of the noise entry at the readout's
    input (1 - CKA, clean vs audio-noisy, last step), of the seen and the heard digit decoded
    on audio-noisy incongruent stimuli by probes trained on clean ones, and of the gate's
    audio share ("-" where a run has no such measure)."""
    keys = [key for key in run_keys(measures) if key != "seed"]
    here = measures[measures["measure"].isin(list(MECHANISM_COLUMNS))]
    stats = here.groupby([*keys, "measure"], sort=False)["value"].agg(["mean", "std", "count"])
    head = ["dataset", "training", *(["operator"] if OPERATOR in keys else []), "k", "seeds"]
    lines = ["| " + " | ".join(head + list(MECHANISM_COLUMNS.values())) + " |",
             "|" + "---|" * (len(head) + len(MECHANISM_COLUMNS))]
    for cell_key, cell in stats.groupby(level=list(range(len(keys))), sort=False):
        cell = cell.droplevel(list(range(len(keys))))
        means, spreads = cell["mean"].to_dict(), cell["std"].to_dict()
        values = [f"{means[name]:.2f} ({_fmt(spreads[name], 2)})" if name in means else "-"
                  for name in MECHANISM_COLUMNS]
        lines.append("| " + " | ".join(str(v) for v in cell_key) + f" | "
                     f"{int(cell['count'].min())} | " + " | ".join(values) + " |")
    return "\n".join(lines) + "\n"


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
        values = [f"{cell['mean'].to_dict()[name]:.2f} ({_fmt(cell.at[name, 'std'], 2)})"
                  for name in names]
        lines.append("| " + " | ".join(map(str, cell_key))
                     + f" | {int(cell['count'].min())} | " + " | ".join(values) + " |")
    return "\n".join(lines) + "\n"


def headline_table(table: pd.DataFrame) -> str:
    """The answer at a glance, from the comparisons alone: per dataset, protocol and primary
    measure, the seeds, k=1's mean, and for every other fusion layer k the paired difference
    k=1 minus k in percentage points with its 95 % t interval and the verdict after Holm's
    correction (``better``/``worse``: k=1 significantly so; ``n.d.``: not distinguishable;
    ``not tested``: fewer than 3 paired seeds)."""
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
        reference = rows.get("reference_mean", pd.Series(dtype=float)).dropna()
        mean = f"{100 * reference.iloc[0]:.1f} %" if len(reference) else "-"
        cells = [_headline_cell(by_layer[k]) if k in by_layer else "-" for k in layers]
        lines.append("| " + " | ".join(str(value) for value in group[:-1])
                     + f" | {MEASURE_NAMES[str(group[-1])]} | {seeds} | {mean} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _headline_cell(row, reference: str = "k=1 ") -> str:
    if pd.isna(row.get("difference")):
        return "not tested"
    verdict = row["verdict"]
    short = verdict.removeprefix(reference) if verdict.startswith(reference) else "n.d."
    return (f"{100 * row['difference']:+.1f} [{100 * row['t_low']:+.1f}, "
            f"{100 * row['t_high']:+.1f}] {short}")


def _missing(study: Study) -> list[str]:
    return [run.key for run in study.runs if not (run.run_dir / SUMMARY_FILE).is_file()]


def report_text(study: Study, measures: pd.DataFrame, table: pd.DataFrame,
                training: pd.DataFrame, operators: pd.DataFrame | None = None) -> str:
    """``report.md``: generated from the measures, comparisons (of fusion layers, and of
    operators when given) and training convergence, never typed."""
    missing = _missing(study)
    classes = dataset_classes(study)
    word = label_word(classes)
    usable, unusable = finished_runs(study)
    seconds = sum(records.metrics.train_seconds for _, records in usable)
    lines = [f"# Study `{study.name}`", ""]
    if unusable:
        lines += [f"**Unusable: {len(unusable)} finished run{'s' if len(unusable) > 1 else ''} "
                  f"hold numbers that are not finite and are left out of everything below** ("
                  + "; ".join(f"{key}: {reason}" for key, reason in unusable.items())
                  + "). Rerun them (remove their run directories first) to count them.", ""]
    if missing:
        lines += [f"**Incomplete: {len(missing)} of {len(study.runs)} runs have not finished** "
                  f"({', '.join(missing[:8])}{', ...' if len(missing) > 8 else ''}). Every "
                  "number below comes from the finished runs only, and every cell says how "
                  "many seeds it rests on.", ""]
    lines += [f"Generated {datetime.date.today().isoformat()} by repsim on "
              f"{platform.machine()} with {os.cpu_count()} CPUs; "
              f"{len(usable)} finished runs, {seconds / 3600:.1f} h of "
              "training in total.", "", "## Answer", "",
              headline_table(table), "k=1 minus k in percentage points, mean over paired "
              "seeds with its 95 % t interval; better/worse: k=1 significantly so after "
              "Holm's correction; n.d.: not distinguishable (see the comparisons for the "
              "smallest difference each test could detect).", "",
              representation_table(measures, word), "The last layer at the last step (mean "
              "and, in brackets, standard deviation over seeds): the reliance index S_audio / "
              "(S_audio + S_visual) of ablation sensitivity, and the accuracy of linear "
              f"probes decoding the heard and the seen {word} on incongruent stimuli "
              f"({chance_text(classes)}; a network that follows one modality decodes the "
              f"other's {word} below chance, since the two never agree).", ""]
    rising = training[training["state"] == "still rising"]
    if not rising.empty:
        cells = sorted({f"{r.dataset}/{r.protocol}" for r in rising.itertuples()})
        lines += [f"**Not trained to a plateau: {', '.join(cells)}** (validation accuracy "
                  f"still rose by more than {PLATEAU_GAIN:.2f} over the last "
                  f"{PLATEAU_EPOCHS} epochs; see 'Training'). Answers about those cells "
                  "compare networks after this many epochs, not converged networks.", ""]
    within = ["dataset", "protocol"] + ([OPERATOR] if OPERATOR in table else [])
    for group, cell in (table.groupby(within, sort=False) if not table.empty else []):
        here = measures
        for key, value in zip(within, group, strict=True):
            here = here[here[key] == value]
        lines.append(f"- **{', '.join(str(v) for v in group)}**: " + _sentence(here, cell))
    lines += ["", "## Comparisons (k=1 minus k; Holm-corrected across each dataset x "
              "protocol family)", "",
              "Seeds are the unit of replication. The verdict is the paired t-test after "
              "Holm's correction over the family (clean accuracy and the normalised AUC for "
              "audio, visual and both noise, k=1 against every other k); beside it the exact "
              "sign-flip p-value and, in brackets, the smallest p that test can reach with "
              "that many seeds. 'Not distinguishable' gives the smallest difference the "
              "t-test detects with 80 % power at the observed spread and at the family's "
              "Bonferroni level (0.05 over the number of tests: Holm's strictest step). "
              "P(k=1 better) is the probability of improvement over all pairs of seeds, with "
              "a bootstrap interval.",
              "",
              "| dataset | protocol | measure | k | seeds | k=1 | k | difference [95 % t] "
              "| P(k=1 better) | t p | Holm p | sign-flip p (min) | verdict |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for _, row in table.iterrows():
        lines.append(_table_row(row))
    lines += ["", "## Training", "",
              f"Validation accuracy (clean) after the last epoch, and its gain over the last "
              f"{PLATEAU_EPOCHS} epochs (mean over seeds, and the largest); a cell is at a "
              f"plateau when the mean gain is at most {PLATEAU_GAIN:.2f}.", "",
              "| dataset | protocol | k | seeds | validation accuracy | mean gain | largest "
              "gain | state |", "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['dataset']} | {_protocol(r)} | {r['fusion_layer']} | {r['seeds']} | "
              f"{_fmt(r['val_accuracy'])} | {_fmt(r['mean_gain'])} | {_fmt(r['max_gain'])} | "
              f"{r['state']} |" for r in training.to_dict("records")]
    if operators is not None:
        lines += _operator_section(operators)
    if has_mechanism(measures):
        lines += ["", "## Mechanism", "", mechanism_table(measures),
                  "Mean (standard deviation over seeds) at the last step. Noise entry: 1 - "
                  "linear CKA between the clean and the audio-noisy states of the same "
                  "stimuli at the readout's input (0: the noise leaves the representation as "
                  "it was). Seen and heard digit: accuracy on audio-noisy incongruent stimuli "
                  "of probes trained on clean incongruent ones, at the readout's input (chance "
                  "0.10). Gate on audio: the gated operator's mean audio share z (the visual "
                  "stream's is 1 - z).", "",
                  f"![mechanism]({FIGURES_DIR}/mechanism.png)"]
    lines += ["", "## Figures", "",
              f"![accuracy against SNR]({FIGURES_DIR}/accuracy_vs_snr.png)", "",
              f"![measures against fusion layer]({FIGURES_DIR}/by_fusion_layer.png)", "",
              f"![representation against fusion layer]({FIGURES_DIR}/representation.png)",
              "", "## Study file", "", "```toml", study.path.read_text().rstrip(), "```", ""]
    return "\n".join(lines)


def _operator_section(operators: pd.DataFrame) -> list[str]:
    """The report's operator comparisons: the glance table and every row."""
    lines = ["", "## Operators (concat minus each operator; Holm-corrected across each "
             "dataset x protocol x fusion layer family)", "", operator_table(operators),
             "concat minus the operator in percentage points, mean over paired seeds with "
             "its 95 % t interval; better/worse: concat significantly so after Holm's "
             "correction over the operators and primary measures at that fusion layer; "
             "n.d.: not distinguishable.", "",
             "| dataset | protocol | k | measure | operator | seeds | concat | operator | "
             "difference [95 % t] | P(concat better) | t p | Holm p | sign-flip p (min) | "
             "verdict |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for _, row in operators.iterrows():
        cells = _row_cells(row)
        lines.append(f"| {row['dataset']} | {row['protocol']} | {row['fusion_layer']} | "
                     f"{MEASURE_NAMES[row['measure']]} | {row[OPERATOR]} | {cells} |")
    return lines


def _protocol(row: Mapping) -> str:
    """The protocol cell of a table row: ``<protocol>`` or ``<protocol>, <operator>``."""
    operator = row.get(OPERATOR)
    return row["protocol"] if operator is None or pd.isna(operator) \
        else f"{row['protocol']}, {operator}"


def _fmt(value, digits: int = 3) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) \
        else f"{value:.{digits}f}"


def _table_row(row) -> str:
    return (f"| {row['dataset']} | {_protocol(row)} | {MEASURE_NAMES[row['measure']]} | "
            f"{row['fusion_layer']} | {_row_cells(row)} |")


def _row_cells(row) -> str:
    """A comparison's cells from the seeds to the verdict."""
    if "difference" not in row or pd.isna(row.get("difference")):
        return (f"{int(row['n_seeds'])} | {_fmt(row.get('reference_mean'))} | "
                f"{_fmt(row.get('other_mean'))} | - | - | - | - | - | {row['verdict']}")
    return (f"{int(row['n_seeds'])} | {_fmt(row['reference_mean'])} | "
            f"{_fmt(row['other_mean'])} | {row['difference']:+.3f} [{row['t_low']:+.3f}, "
            f"{row['t_high']:+.3f}] | {row['p_improvement']:.2f} "
            f"[{row['p_improvement_low']:.2f}, {row['p_improvement_high']:.2f}] | "
            f"{row['t_p']:.3g} | {row['holm_p']:.3g} | {row['sign_flip_p']:.3g} "
            f"({row['smallest_p']:.3g}) | {row['verdict']}")


def _sentence(here: pd.DataFrame, cell: pd.DataFrame) -> str:
    """Which fusion layer is best on each primary measure (of the measures ``here``), and
    how k=1 compares (the comparisons ``cell``)."""
    parts = []
    for measure in PRIMARY:
        means = here[here["measure"] == measure].groupby("fusion_layer")["value"]
        mean_of, seeds = means.mean(), means.count()
        best = mean_of.idxmax()
        rows = cell[cell["measure"] == measure]
        verdicts = "; ".join(f"vs k={int(r['fusion_layer'])}: {r['verdict']}"
                             for _, r in rows.iterrows())
        parts.append(f"{MEASURE_NAMES[measure]}: best k={best} ({mean_of.to_dict()[best]:.3f}, "
                     f"{seeds.to_dict()[best]} seeds); k=1 {verdicts}")
    return ". ".join(parts) + "."
