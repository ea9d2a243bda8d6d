"""A study's report: ``results.csv``, the comparisons, three figures and ``report.md``.

``results.csv`` has one row per run and test condition (clean, each noise kind at each SNR,
each modality removed) with the test accuracy and the number of test items, one row per run and
summary measure (the readout's reliance index at the last step, and the decodability of the
heard and the seen digit on incongruent stimuli), and two rows per run on training: the last
epoch's validation accuracy and its gain over the last :data:`PLATEAU_EPOCHS` epochs. Numbers
come from the runs' own ``metrics.json``, ``summary.json`` and ``log.csv``; runs that have
not finished are left out (and the report says which cells miss runs).
:mod:`repsim.study.comparisons` turns them into the paired comparisons,
:mod:`repsim.study.figures` draws them, and :func:`write_report` writes everything with a
``report.md`` whose every sentence is generated from those numbers.
"""

from __future__ import annotations

import datetime
import math
import os
import platform
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from repsim import plotting
from repsim.conditions import MODALITIES
from repsim.provenance import atomic_path
from repsim.rundir import SUMMARY_FILE, read_log, read_metrics
from repsim.study import figures
from repsim.study.comparisons import PRIMARY, comparisons, per_seed_measures
from repsim.study.spec import Study
from repsim.study.steps import read_summary
from repsim.train.config import config_differences

RESULTS_FILE = "results.csv"
COMPARISONS_FILE = "comparisons.csv"
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


def results_table(study: Study) -> pd.DataFrame:
    """The tidy table of every finished run of ``study`` (see the module docstring); a run
    trained with another configuration than the study file gives (edited after the fact) is
    refused, naming the run and the differing fields."""
    rows = []
    for run in study.runs:
        if not (run.run_dir / SUMMARY_FILE).is_file():
            continue
        metrics, summary = read_metrics(run.run_dir), read_summary(run.run_dir)
        differences = config_differences(metrics.config, run.config.to_dict())
        if differences:
            raise ValueError(f"run {run.key} ({run.run_dir}) was trained with another "
                             f"configuration than the study file says: "
                             f"{'; '.join(differences)}")
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
        rows += _training_rows(key, read_log(run.run_dir))
    return pd.DataFrame(rows, columns=list(COLUMNS))


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
    keys = ["dataset", "protocol", "fusion_layer"]
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
    drawings = {"accuracy_vs_snr": (lambda: figures.accuracy_vs_snr(results), results),
                "by_fusion_layer": (lambda: figures.by_fusion_layer(measures), measures),
                "representation": (lambda: figures.representation(measures), measures)}
    for name in FIGURE_NAMES:
        announce(f"{FIGURES_DIR}/{name}")
        draw, numbers = drawings[name]
        plotting.save_outputs(draw, numbers, out, name, [results_path])
    announce(REPORT_FILE)
    with atomic_path(study.folder / ANSWER_FILE) as tmp:
        tmp.write_text(answer_text(table, measures))
    path = study.folder / REPORT_FILE
    with atomic_path(path) as tmp:
        tmp.write_text(report_text(study, measures, table, convergence(results)))
    return path


def answer_text(table: pd.DataFrame, measures: pd.DataFrame) -> str:
    """``answer.md``: :func:`headline_table` and :func:`representation_table`."""
    return headline_table(table) + "\n" + representation_table(measures)


def representation_table(measures: pd.DataFrame) -> str:
    """Why, at a glance: per dataset, protocol and fusion layer, the seeds and the mean (and
    standard deviation over seeds) of the last layer's reliance index at the last step and of
    the decodability of the heard and of the seen digit on incongruent stimuli."""
    names = {"reliance_index": "reliance on audio", "probe_heard": "heard digit decoded",
             "probe_seen": "seen digit decoded"}
    here = measures[measures["measure"].isin(list(names))]
    stats = here.groupby(["dataset", "protocol", "fusion_layer", "measure"],
                         sort=False)["value"].agg(["mean", "std", "count"])
    lines = ["| dataset | training | k | seeds | " + " | ".join(names.values()) + " |",
             "|---|---|---|---|" + "---|" * len(names)]
    for (dataset, protocol, k), cell in stats.groupby(level=[0, 1, 2], sort=False):
        cell = cell.droplevel([0, 1, 2])
        values = [f"{cell.at[name, 'mean']:.2f} ({_fmt(cell.at[name, 'std'], 2)})"
                  for name in names]
        lines.append(f"| {dataset} | {protocol} | {k} | {int(cell['count'].min())} | "
                     + " | ".join(values) + " |")
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
    lines = ["| dataset | training | measure | seeds | k=1 | "
             + " | ".join(f"k=1 − k={k} (points)" for k in layers) + " |",
             "|---|---|---|---|---|" + "---|" * len(layers)]
    for (dataset, protocol, measure), rows in table.groupby(
            ["dataset", "protocol", "measure"], sort=False):
        by_layer = {int(row["fusion_layer"]): row for _, row in rows.iterrows()}
        seeds = min(int(row["n_seeds"]) for row in by_layer.values())
        reference = rows.get("reference_mean", pd.Series(dtype=float)).dropna()
        mean = f"{100 * reference.iloc[0]:.1f} %" if len(reference) else "-"
        cells = [_headline_cell(by_layer[k]) if k in by_layer else "-" for k in layers]
        lines.append(f"| {dataset} | {protocol} | {MEASURE_NAMES[measure]} | {seeds} | "
                     f"{mean} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _headline_cell(row) -> str:
    if pd.isna(row.get("difference")):
        return "not tested"
    verdict = row["verdict"]
    short = verdict.removeprefix("k=1 ") if verdict.startswith("k=1 ") else "n.d."
    return (f"{100 * row['difference']:+.1f} [{100 * row['t_low']:+.1f}, "
            f"{100 * row['t_high']:+.1f}] {short}")


def _missing(study: Study) -> list[str]:
    return [run.key for run in study.runs if not (run.run_dir / SUMMARY_FILE).is_file()]


def report_text(study: Study, measures: pd.DataFrame, table: pd.DataFrame,
                training: pd.DataFrame) -> str:
    """``report.md``: generated from the measures, comparisons and training convergence,
    never typed."""
    missing = _missing(study)
    seconds = sum(read_metrics(run.run_dir).train_seconds for run in study.runs
                  if (run.run_dir / SUMMARY_FILE).is_file())
    lines = [f"# Study `{study.name}`", ""]
    if missing:
        lines += [f"**Incomplete: {len(missing)} of {len(study.runs)} runs have not finished** "
                  f"({', '.join(missing[:8])}{', ...' if len(missing) > 8 else ''}). Every "
                  "number below comes from the finished runs only, and every cell says how "
                  "many seeds it rests on.", ""]
    lines += [f"Generated {datetime.date.today().isoformat()} by repsim on "
              f"{platform.machine()} with {os.cpu_count()} CPUs; "
              f"{len(study.runs) - len(missing)} finished runs, {seconds / 3600:.1f} h of "
              "training in total.", "", "## Answer", "",
              headline_table(table), "k=1 minus k in percentage points, mean over paired "
              "seeds with its 95 % t interval; better/worse: k=1 significantly so after "
              "Holm's correction; n.d.: not distinguishable (see the comparisons for the "
              "smallest difference each test could detect).", "",
              representation_table(measures), "The last layer at the last step (mean and, "
              "in brackets, standard deviation over seeds): the reliance index S_audio / "
              "(S_audio + S_visual) of ablation sensitivity, and the accuracy of linear "
              "probes decoding the heard and the seen digit on incongruent stimuli (chance "
              "0.10; a network that follows one modality decodes the other's digit below "
              "chance, since the two never agree).", ""]
    rising = training[training["state"] == "still rising"]
    if not rising.empty:
        cells = sorted({f"{r.dataset}/{r.protocol}" for r in rising.itertuples()})
        lines += [f"**Not trained to a plateau: {', '.join(cells)}** (validation accuracy "
                  f"still rose by more than {PLATEAU_GAIN:.2f} over the last "
                  f"{PLATEAU_EPOCHS} epochs; see 'Training'). Answers about those cells "
                  "compare networks after this many epochs, not converged networks.", ""]
    cells = table.groupby(["dataset", "protocol"], sort=False) if not table.empty else ()
    for (dataset, protocol), cell in cells:
        lines.append(f"- **{dataset}, {protocol}**: " + _sentence(measures, dataset, protocol,
                                                                   cell))
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
    lines += [f"| {r.dataset} | {r.protocol} | {r.fusion_layer} | {r.seeds} | "
              f"{_fmt(r.val_accuracy)} | {_fmt(r.mean_gain)} | {_fmt(r.max_gain)} | {r.state} |"
              for r in training.itertuples()]
    lines += ["", "## Figures", "",
              f"![accuracy against SNR]({FIGURES_DIR}/accuracy_vs_snr.png)", "",
              f"![measures against fusion layer]({FIGURES_DIR}/by_fusion_layer.png)", "",
              f"![representation against fusion layer]({FIGURES_DIR}/representation.png)",
              "", "## Study file", "", "```toml", study.path.read_text().rstrip(), "```", ""]
    return "\n".join(lines)


def _fmt(value, digits: int = 3) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) \
        else f"{value:.{digits}f}"


def _table_row(row) -> str:
    if "difference" not in row or pd.isna(row.get("difference")):
        return (f"| {row['dataset']} | {row['protocol']} | {MEASURE_NAMES[row['measure']]} | "
                f"{row['fusion_layer']} | {int(row['n_seeds'])} | "
                f"{_fmt(row.get('reference_mean'))} | {_fmt(row.get('other_mean'))} | - | - "
                f"| - | - | - | {row['verdict']} |")
    return (f"| {row['dataset']} | {row['protocol']} | {MEASURE_NAMES[row['measure']]} | "
            f"{row['fusion_layer']} | {int(row['n_seeds'])} | {_fmt(row['reference_mean'])} | "
            f"{_fmt(row['other_mean'])} | {row['difference']:+.3f} [{row['t_low']:+.3f}, "
            f"{row['t_high']:+.3f}] | {row['p_improvement']:.2f} "
            f"[{row['p_improvement_low']:.2f}, {row['p_improvement_high']:.2f}] | "
            f"{row['t_p']:.3g} | {row['holm_p']:.3g} | {row['sign_flip_p']:.3g} "
            f"({row['smallest_p']:.3g}) | {row['verdict']} |")


def _sentence(measures: pd.DataFrame, dataset: str, protocol: str, cell: pd.DataFrame) -> str:
    """Which fusion layer is best on each primary measure, and how k=1 compares."""
    here = measures[(measures["dataset"] == dataset) & (measures["protocol"] == protocol)]
    parts = []
    for measure in PRIMARY:
        means = here[here["measure"] == measure].groupby("fusion_layer")["value"]
        best = means.mean().idxmax()
        seeds = means.count()
        rows = cell[cell["measure"] == measure]
        verdicts = "; ".join(f"vs k={int(r['fusion_layer'])}: {r['verdict']}"
                             for _, r in rows.iterrows())
        parts.append(f"{MEASURE_NAMES[measure]}: best k={best} ({means.mean()[best]:.3f}, "
                     f"{seeds[best]} seeds); k=1 {verdicts}")
    return ". ".join(parts) + "."
