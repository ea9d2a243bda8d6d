"""A study's report: ``results.csv``, the comparisons, the figures, ``answer.md`` and
``report.md``.

:mod:`repsim.study.results` gathers the runs' numbers, :mod:`repsim.study.training` judges
each run's training (failed to train, at a plateau), :mod:`repsim.study.comparisons` turns
the numbers into paired comparisons with their verdicts, :mod:`repsim.study.tables` lays out
the answer tables and :mod:`repsim.study.figures` draws the figures; :func:`write_report`
writes everything, with a ``report.md`` whose every sentence is generated from those numbers.
It opens with the runs it could not use and the runs that failed to train, and why; the
answer's verdicts use every usable run and flag each that changes without the failed ones.
"""

from __future__ import annotations

import datetime
import functools
import os
import platform
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path

import pandas as pd

from repsim import plotting
from repsim.conditions import PROBE_SNRS
from repsim.provenance import atomic_path
from repsim.rundir import SUMMARY_FILE
from repsim.study import figures
from repsim.study.comparisons import (
    EQUIVALENT,
    OPERATOR,
    PRIMARY,
    comparisons,
    operator_comparisons,
    per_seed_measures,
    verdicts_without,
)
from repsim.study.records import finished_runs
from repsim.study.results import (
    RESULTS_FILE,
    chance_levels,
    chance_text,
    dataset_classes,
    label_word,
    write_results,
)
from repsim.study.settings import Analysis
from repsim.study.spec import Study
from repsim.study.tables import (
    BY_CONSTRUCTION,
    MEASURE_NAMES,
    WITHOUT_FAILED,
    answer_text,
    fmt,
    fused_table,
    has_fused,
    has_mechanism,
    headline_table,
    mechanism_table,
    operator_table,
    representation_table,
    verdict_words,
)
from repsim.study.timecourse import time_section
from repsim.study.timing import RUN_STAGES, study_seconds, time_line
from repsim.study.training import (
    FAILED_SHARE,
    PLATEAU_EPOCHS,
    PLATEAU_GAIN,
    convergence,
    run_training,
)

COMPARISONS_FILE = "comparisons.csv"
OPERATOR_COMPARISONS_FILE = "operator_comparisons.csv"
REPORT_FILE = "report.md"
ANSWER_FILE = "answer.md"  # the answer tables alone, as the README quotes them
FIGURES_DIR = "figures"
FIGURE_NAMES = ("accuracy_vs_snr", "by_fusion_layer", "representation")
# What write_report writes, in order; it announces each to its ``on_stage`` as it begins.
STAGES = (RESULTS_FILE, COMPARISONS_FILE, *(f"{FIGURES_DIR}/{name}" for name in FIGURE_NAMES),
          REPORT_FILE)


def write_report(study: Study, on_stage: Callable[[str], None] | None = None) -> Path:
    """Write the whole report into the study folder; returns the path of ``report.md``.

    ``on_stage(what)`` is called as each of :data:`STAGES` begins (a command's progress)."""
    announce = on_stage or (lambda what: None)
    announce(RESULTS_FILE)
    results_path = write_results(study)
    results = pd.read_csv(results_path)
    measures = per_seed_measures(results)
    classes = dataset_classes(study)
    training = run_training(results, chance_levels(classes), study.analysis.min_val_accuracy)
    failed = training[training["failed"]]
    announce(COMPARISONS_FILE)
    table = _judged(comparisons, measures, failed, study.analysis)
    with atomic_path(study.folder / COMPARISONS_FILE) as tmp:
        table.to_csv(tmp, index=False)
    out = study.folder / FIGURES_DIR
    out.mkdir(exist_ok=True)
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
        operators = _judged(operator_comparisons, measures, failed, study.analysis)
        with atomic_path(study.folder / OPERATOR_COMPARISONS_FILE) as tmp:
            operators.to_csv(tmp, index=False)
    if has_mechanism(measures):
        plotting.save_outputs(lambda: figures.mechanism(measures), measures, out,
                              "mechanism", [results_path])
    with atomic_path(study.folder / ANSWER_FILE) as tmp:
        tmp.write_text(answer_text(table, measures, operators, word, late_layer(study)))
    path = study.folder / REPORT_FILE
    with atomic_path(path) as tmp:
        tmp.write_text(report_text(study, measures, table, training, operators))
    return path


def _judged(compare, measures: pd.DataFrame, failed: pd.DataFrame,
            analysis: Analysis) -> pd.DataFrame:
    """``compare(measures)`` with the study's margins, and where runs failed to train the
    verdict of every row without them (:data:`repsim.study.tables.WITHOUT_FAILED`)."""
    compare = functools.partial(compare, analysis=analysis)
    table = compare(measures)
    if not failed.empty and not table.empty:
        table[WITHOUT_FAILED] = verdicts_without(table, measures, failed, compare)
    return table


def late_layer(study: Study) -> int:
    """The study's late fusion layer, L + 1 (joined in the readout only)."""
    return study.model.layers + 1


def _missing(study: Study) -> list[str]:
    return [run.key for run in study.runs if not (run.run_dir / SUMMARY_FILE).is_file()]


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'s' if count != 1 else ''}"


def opening(study: Study, unusable: Mapping[str, str], training: pd.DataFrame) -> list[str]:
    """The report's first paragraphs: the runs it cannot use and the runs that failed to
    train, each with why (or one line saying there are none)."""
    lines = []
    if unusable:
        lines += [f"**Unusable: {_plural(len(unusable), 'finished run')} cannot be used and "
                  f"{'are' if len(unusable) > 1 else 'is'} left out of everything below** ("
                  + "; ".join(f"{key}: {reason}" for key, reason in unusable.items())
                  + "). Rerun them (remove their run directories first) to count them.", ""]
    failed = training[training["failed"]]
    rule = (f"final validation accuracy below {study.analysis.min_val_accuracy:g}, the study's "
            "min_val_accuracy" if study.analysis.min_val_accuracy is not None else
            f"final validation accuracy below chance plus {FAILED_SHARE:g} of the distance "
            "from chance to its cell's median")
    if failed.empty:
        lines += [f"No run failed to train ({rule})"
                  + (" and every finished run is usable." if not unusable else "."), ""]
        return lines
    keys = {(run.dataset, run.protocol, run.fusion_op, run.fusion_layer, run.seed): run.key
            for run in study.runs}
    names = []
    for row in failed.to_dict("records"):
        key = keys[(row["dataset"], row["protocol"], row.get(OPERATOR, study.fusion_ops[0]),
                    row["fusion_layer"], row["seed"])]
        names.append(f"{key}: final validation accuracy {row['val_accuracy']:.3f}, below "
                     f"{row['threshold']:.3f} (chance {row['chance']:.2f}, cell median "
                     f"{row['median']:.3f})")
    lines += [f"**Failed to train: {_plural(len(failed), 'run')}** ({rule}): "
              + "; ".join(names) + ". Failed runs stay in every statistic below; each "
              "verdict that changes without them says so ('... without the failed runs').",
              ""]
    return lines


def _margins_text(analysis: Analysis) -> str:
    """The margins by the names a study file's ``[analysis]`` table gives them."""
    return ", ".join(f"{measure} ±{analysis.margins[measure]:g}" for measure in PRIMARY)


def points(value: float) -> str:
    """``±<value> point(s)``: a margin in words."""
    return f"±{value:g} point{'s' if value != 1 else ''}"


def verdict_caption(reference: str, analysis: Analysis) -> str:
    """What the verdicts of an answer table mean (``reference``: ``k=1`` or ``concat``)."""
    return (f"better/worse: {reference} significantly so (paired t-test, Holm's correction "
            f"within the family); equivalent: the two one-sided tests (TOST, Holm-corrected "
            f"within the same family) put the difference inside the margin, i.e. its 90 % "
            f"interval lies inside ±margin ({_margins_text(analysis)} points); inconclusive: "
            "neither, the data rule out neither a difference nor its absence. '(inside ±m)': "
            "a significant difference smaller than the margin; '... without the failed "
            "runs': the verdict when the runs that failed to train are left out.")


def report_text(study: Study, measures: pd.DataFrame, table: pd.DataFrame,
                training: pd.DataFrame, operators: pd.DataFrame | None = None) -> str:
    """``report.md``: generated from the measures, comparisons (of fusion layers, and of
    operators when given) and the runs' training (:func:`run_training`), never typed."""
    missing = _missing(study)
    classes = dataset_classes(study)
    word = label_word(classes)
    usable, unusable = finished_runs(study)
    seconds = sum(records.metrics.train_seconds for _, records in usable)
    lines = [f"# Study `{study.name}`", "", *opening(study, unusable, training)]
    if missing:
        lines += [f"**Incomplete: {len(missing)} of {len(study.runs)} runs have not finished** "
                  f"({', '.join(missing[:8])}{', ...' if len(missing) > 8 else ''}). Every "
                  "number below comes from the finished runs only, and every cell says how "
                  "many seeds it rests on.", ""]
    lines += [f"Generated {datetime.date.today().isoformat()} by repsim on "
              f"{platform.machine()} with {os.cpu_count()} CPUs; "
              f"{_plural(len(usable), 'finished run')}, {seconds / 3600:.1f} h of "
              "training in total.", "", "## Answer", "",
              headline_table(table), "k=1 minus k in percentage points, mean over paired "
              "seeds with its 95 % t interval; " + verdict_caption("k=1", study.analysis)
              + " 'not tested': fewer than 3 paired seeds.", "",
              representation_table(measures, word), "The last layer at the last step (mean "
              "and, in brackets, standard deviation over seeds): the reliance index S_audio / "
              "(S_audio + S_visual) of ablation sensitivity, and the accuracy of linear "
              f"probes decoding the heard and the seen {word} on incongruent stimuli "
              f"({chance_text(classes)}; a network that follows one modality decodes the "
              f"other's {word} below chance, since the two never agree).", ""]
    cells = convergence(training)
    rising = cells[cells["rising"] > 0]
    if not rising.empty:
        names = sorted({f"{r.dataset}/{r.protocol}" for r in rising.itertuples()})
        lines += [f"**Not trained to a plateau: {int(rising['rising'].sum())} runs in "
                  f"{', '.join(names)}** (validation accuracy still rose by more than "
                  f"{PLATEAU_GAIN:.2f} over the last {PLATEAU_EPOCHS} epochs; see 'Training'). "
                  "Answers about those cells compare networks after this many epochs, not "
                  "converged networks.", ""]
    within = ["dataset", "protocol"] + ([OPERATOR] if OPERATOR in table else [])
    for group, cell in (table.groupby(within, sort=False) if not table.empty else []):
        here = measures
        for key, value in zip(within, group, strict=True):
            here = here[here[key] == value]
        lines.append(f"- **{', '.join(str(v) for v in group)}**: " + _sentence(here, cell))
    lines += _comparison_section(table, "k=1", "dataset x protocol"
                                 + (" x operator" if OPERATOR in table else ""))
    lines += _training_section(cells)
    lines += _time_section(usable)
    if operators is not None:
        lines += ["", "## Operators (concat minus each operator; Holm-corrected across each "
                  "dataset x protocol x fusion layer family)", "", operator_table(operators),
                  "concat minus the operator in percentage points, mean over paired seeds "
                  "with its 95 % t interval; " + verdict_caption("concat", study.analysis)]
        lines += _comparison_section(operators, "concat", "dataset x protocol x fusion "
                                     "layer", heading=False)
    if has_mechanism(measures):
        lines += _mechanism_section(study, measures, usable, word)
    lines += time_section(usable, OPERATOR in table, study.folder, word)
    lines += ["", "## Figures", "",
              f"![accuracy against SNR]({FIGURES_DIR}/accuracy_vs_snr.png)", "",
              f"![measures against fusion layer]({FIGURES_DIR}/by_fusion_layer.png)", "",
              f"![representation against fusion layer]({FIGURES_DIR}/representation.png)",
              "", "## Study file", "", "```toml", study.path.read_text().rstrip(), "```", ""]
    return "\n".join(lines)


def _comparison_section(table: pd.DataFrame, reference: str, family: str,
                        heading: bool = True) -> list[str]:
    """Every comparison of ``table`` as a row, after the explanation of its columns."""
    layers = reference == "k=1"  # else operators, at each fusion layer
    factor = "k" if layers else "operator"
    head = ["dataset", "protocol", "measure", factor] if layers else \
        ["dataset", "protocol", "k", "measure", factor]
    lines = []
    if heading:
        lines += ["", f"## Comparisons ({reference} minus {factor}; Holm-corrected across each "
                  f"{family} family)", ""]
    else:
        lines += [""]
    lines += [f"Seeds are the unit of replication. The difference test is the paired t-test "
              f"after Holm's correction over the family ({family}: the clean accuracy and the "
              f"normalised AUC for audio, visual and both noise, {reference} against every "
              f"other {factor}); beside it the exact sign-flip p-value and, in brackets, the "
              "smallest p that test can reach with that many seeds. The equivalence test is "
              "TOST against the margin: its p is the larger of the two one-sided p-values, "
              "Holm-corrected within the same family, and it rejects at 5 % exactly when the "
              "90 % t interval lies inside ±margin. 'Detectable' is the smallest difference "
              "the t-test detects with 80 % power at the observed spread and at the family's "
              "Bonferroni level (0.05 over the number of tests: Holm's strictest step). "
              f"P({reference} better) is the probability of improvement over all pairs of "
              "seeds, with a bootstrap interval.", "",
              "| " + " | ".join(head) + f" | seeds | {reference} | {factor} | "
              f"difference [95 % t] | 90 % t | margin | P({reference} better) | t p | Holm p "
              "| TOST p | Holm TOST p | sign-flip p (min) | detectable | verdict |",
              "|" + "---|" * (len(head) + 14)]
    for _, row in table.iterrows():
        measure = MEASURE_NAMES[row["measure"]]
        if layers:
            protocol = f"{row['protocol']}, {row[OPERATOR]}" if OPERATOR in row \
                else row["protocol"]
            label = [row["dataset"], protocol, measure, row["fusion_layer"]]
        else:
            label = [row["dataset"], row["protocol"], row["fusion_layer"], measure,
                     row[OPERATOR]]
        lines.append("| " + " | ".join(map(str, label)) + f" | {_row_cells(row)} |")
    return lines


def _row_cells(row) -> str:
    """A comparison's cells from the seeds to the verdict."""
    if "difference" not in row or pd.isna(row.get("difference")):
        return (f"{int(row['n_seeds'])} | {fmt(row.get('reference_mean'))} | "
                f"{fmt(row.get('other_mean'))} | - | - | - | - | - | - | - | - | - | - | "
                f"{row['verdict']}")
    return (f"{int(row['n_seeds'])} | {fmt(row['reference_mean'])} | "
            f"{fmt(row['other_mean'])} | {row['difference']:+.3f} [{row['t_low']:+.3f}, "
            f"{row['t_high']:+.3f}] | [{row['eq_low']:+.3f}, {row['eq_high']:+.3f}] | "
            f"±{row['margin']:.3f} | {row['p_improvement']:.2f} "
            f"[{row['p_improvement_low']:.2f}, {row['p_improvement_high']:.2f}] | "
            f"{row['t_p']:.3g} | {row['holm_p']:.3g} | {row['tost_p']:.3g} | "
            f"{row['holm_tost_p']:.3g} | {row['sign_flip_p']:.3g} ({row['smallest_p']:.3g}) | "
            f"{row['detectable']:.3f} | {verdict_words(row)}")


def _training_section(cells: pd.DataFrame) -> list[str]:
    """The per-cell training table (the plateau and the failed runs are judged per run)."""
    lines = ["", "## Training", "",
             f"Validation accuracy (clean) after the last epoch, and its gain over the last "
             f"{PLATEAU_EPOCHS} epochs (mean over seeds, and the largest). Each run is judged "
             f"on its own: it is at a plateau when its gain is at most {PLATEAU_GAIN:.2f}, and "
             f"it failed to train by the rule at the top of this report.", "",
             "| dataset | protocol | k | seeds | validation accuracy | mean gain | largest "
             "gain | runs still rising | failed to train | state |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in cells.to_dict("records"):
        operator = r.get(OPERATOR)
        protocol = r["protocol"] if operator is None else f"{r['protocol']}, {operator}"
        lines.append(f"| {r['dataset']} | {protocol} | {r['fusion_layer']} | {r['seeds']} | "
                     f"{fmt(r['val_accuracy'])} | {fmt(r['mean_gain'])} | "
                     f"{fmt(r['max_gain'])} | {r['rising']} | {r['failed']} | {r['state']} |")
    return lines


def _time_section(usable: list) -> list[str]:
    """Where the finished runs' time went, by stage (:mod:`repsim.study.timing`), and the
    epochs that runs stopping at their plateau trained; nothing for runs that recorded
    neither (studies run before either existed), so that their reports stay as they were."""
    totals, counted = study_seconds(run for run, _ in usable)
    plateau = [(run, records.metrics) for run, records in usable
               if records.metrics.best_epoch is not None]
    if not counted and not plateau:
        return []
    lines = ["", "## Time", ""]
    if counted:
        whole = sum(totals.values())
        lines += [time_line(totals, counted, len(usable)) + ".", "",
                  "| stage | minutes | share |", "|---|---|---|",
                  *(f"| {stage} | {totals[stage] / 60:.1f} | "
                    f"{100 * totals[stage] / whole if whole else 0:.1f} % |"
                    for stage in RUN_STAGES), ""]
    if plateau:
        trained = sum(m.stopped_epoch or m.epochs for _, m in plateau)
        planned = sum(m.epochs for _, m in plateau)
        stopped = sum(m.stopped_epoch is not None for _, m in plateau)
        lines += [f"{len(plateau)} runs trained with stop_at_plateau: {stopped} stopped "
                  f"before their last epoch, {trained} of {planned} epochs trained "
                  f"({planned - trained} saved); each kept its best epoch's model. By cell "
                  f"(epochs: the range over its seeds):", "",
                  "| dataset | protocol | k | runs | stopped early | epochs trained | "
                  "stopped at epoch | kept epoch |", "|---|---|---|---|---|---|---|---|",
                  *_plateau_rows(plateau), ""]
    return lines


def _plateau_rows(plateau: list) -> list[str]:
    """One table row per cell (dataset, protocol, the operator where the runs have several,
    fusion layer) of the runs that trained with stop_at_plateau."""
    operators = len({run.fusion_op for run, _ in plateau}) > 1
    cells: dict[tuple, list] = {}
    for run, metrics in plateau:
        protocol = f"{run.protocol}, {run.fusion_op}" if operators else run.protocol
        cells.setdefault((run.dataset, protocol, run.fusion_layer), []).append(metrics)

    def span(values: list[int]) -> str:
        return f"{min(values)}" if min(values) == max(values) else \
            f"{min(values)}-{max(values)}"

    rows = []
    for (dataset, protocol, k), runs in sorted(cells.items()):
        ends = [m.stopped_epoch or m.epochs for m in runs]
        rows.append(f"| {dataset} | {protocol} | {k} | {len(runs)} | "
                    f"{sum(m.stopped_epoch is not None for m in runs)} | "
                    f"{sum(ends)} of {sum(m.epochs for m in runs)} | {span(ends)} | "
                    f"{span([m.best_epoch for m in runs])} |")
    return rows


def _mechanism_section(study: Study, measures: pd.DataFrame, usable: list,
                       word: str) -> list[str]:
    """The mechanism tables with what they measure, and which runs lack the newer one."""
    late = late_layer(study)
    lines = ["", "## Mechanism", "", mechanism_table(measures, late),
             "Mean (standard deviation over seeds) at the last step. Noise entry: 1 - linear "
             "CKA between the clean and the audio-noisy states of the same stimuli at the "
             f"readout's input (0: the noise leaves the representation as it was). Seen and "
             f"heard {word}: accuracy on audio-noisy incongruent stimuli of probes trained on "
             "clean incongruent ones, at the readout's input, on every position (chance 0.10 "
             "for digits). Gate on audio: the gated operator's mean audio share z (the visual "
             f"stream's is 1 - z). {BY_CONSTRUCTION}: holds by construction: at late fusion "
             "by concatenation half of the readout's input is the visual branch, which audio "
             "noise cannot reach. The readout's input at late fusion is the operator's output "
             "for runs that recorded it; runs summarised before (summary version 1) measured "
             "the branch states before the operator there, which is what the readout reads "
             "only for concatenation.", "",
             f"![mechanism]({FIGURES_DIR}/mechanism.png)", ""]
    old = [run.key for run, records in usable if records.summary.get("version", 1) < 2
           and records.summary.get("mechanism")]
    if has_fused(measures):
        lines += ["### What the operator's output carries under audio noise", "",
                  fused_table(measures, late, word),
                  f"At {min(PROBE_SNRS):g} dB audio noise, at the fusion operator's output "
                  "(what enters the first fused layer; at late fusion what the readout reads), "
                  "last step: its noise entry, and on audio-noisy incongruent stimuli the "
                  f"accuracy of probes trained and tested (cross-validated) within the noisy "
                  f"condition ('present': is the {word} there?) and of probes trained on clean "
                  f"ones ('transfers': does the clean reading still work?), on the spatial "
                  f"mean of each channel ('mean': what a readout sees) and on every position "
                  f"('map'). {BY_CONSTRUCTION}: holds by construction (as above; at early fusion "
                  "by concatenation the operator's output is the raw inputs themselves, the "
                  "same for every network)."]
    else:
        lines += ["No run recorded the fusion operator's output, so the report has no "
                  "'present under noise' measures (they need summary version 2)."]
    if old and has_fused(measures):
        were, have = ("were", "have") if len(old) > 1 else ("was", "has")
        lines += ["", f"{_plural(len(old), 'run')} of this study {were} summarised before "
                  f"the operator's output was recorded (summary version 1) and {have} no row "
                  "in that table: " + ", ".join(
                      f"{_plural(count, 'run')} of {group}" for group, count in sorted(
                          Counter(key.rsplit("/", 1)[0] for key in old).items())) + "."]
    return lines


def _sentence(here: pd.DataFrame, cell: pd.DataFrame) -> str:
    """Which fusion layer is best on each primary measure (of the measures ``here``), and
    how k=1 compares (the comparisons ``cell``), in the verdicts' words."""
    parts = []
    for measure in PRIMARY:
        means = here[here["measure"] == measure].groupby("fusion_layer")["value"]
        mean_of, seeds = means.mean(), means.count()
        best = mean_of.idxmax()
        rows = cell[cell["measure"] == measure]
        verdicts = "; ".join(f"vs k={int(r['fusion_layer'])}: {_said(r)}"
                             for _, r in rows.iterrows())
        parts.append(f"{MEASURE_NAMES[measure]}: best k={best} ({mean_of.to_dict()[best]:.3f}, "
                     f"{seeds.to_dict()[best]} seeds); k=1 {verdicts}")
    return ". ".join(parts) + "."


def _said(row) -> str:
    """A comparison in a sentence: its verdict, and for an inconclusive one the smallest
    difference the test could have detected."""
    if pd.isna(row.get("difference")):
        return str(row["verdict"])
    words = verdict_words(row)
    if words == EQUIVALENT:
        return f"{words} (inside {points(100 * row['margin'])})"
    if words.startswith("inconclusive"):
        return f"{words} (no difference above {row['detectable']:.3f} detectable)"
    return words
