"""Accuracy under white noise for every fusion layer (the paper's main figure), or any model.

Run directories: reads the ``metrics.json`` of every run and draws test accuracy against the
signal-to-noise ratio for audio noise, visual noise and noise on both, one line per fusion
layer (mean over seeds with a 95 % Student-t interval when there are several seeds), and clean
accuracy against the fusion layer. Writes ``noise_robustness.png``/``.pdf`` and
``noise_robustness.csv`` (columns: dataset, layers, fusion_layer, noise, snr_db, n_seeds,
accuracy_mean, ci_low, ci_high; accuracy as a fraction; ``noise`` is ``none`` with ``snr_db``
= inf for clean input).

Activation files (``--files``, any recorded model with its ``logits``): the accuracy of the
recorded predictions against the ``--target`` column under each condition that adds noise to
one input (``<input>_snr<X>``, read from the file), one line per model and a panel per input,
with 95 % Wilson intervals over the stimuli, and the accuracy on the intact ``--condition``
(default ``clean``). Its CSV's columns: model, input (``none`` for the intact stimuli),
snr_db, n_stimuli, accuracy, ci_low, ci_high.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from repsim.conditions import CLEAN, NOISE_KINDS
from repsim.figures.base import (
    FIGURES_DIR,
    check_out_dir,
    figure_parser,
    run_cli,
    table_per_model,
)
from repsim.figures.questions import (
    check_targets,
    noise_conditions,
    pick_condition,
    repsim_defaults,
    require_targets,
)
from repsim.rundir import METRICS_FILE, RUNS_DIR
from repsim.runs import ModelInput, Run, find_runs, load_run, one_experiment

if TYPE_CHECKING:  # heavy libraries load where they are used: --help needs none
    import pandas as pd
    import xarray as xr
    from matplotlib.figure import Figure

NAME = "noise_robustness"
COLUMNS = ["dataset", "layers", "fusion_layer", "noise", "snr_db", "n_seeds", "accuracy_mean",
           "ci_low", "ci_high"]
FILE_COLUMNS = ["model", "input", "snr_db", "n_stimuli", "accuracy", "ci_low", "ci_high"]
EXAMPLES = """examples:
  python analyses/noise_robustness.py                      # every run under runs/
  python analyses/noise_robustness.py --dataset avmnist --out-dir figures/avmnist
  python analyses/noise_robustness.py runs/synthetic-f1-s0 runs/synthetic-f3-s0
  python analyses/noise_robustness.py --files mine.h5 theirs.h5 --target label
"""
_NOISE_NAMES = {"audio": "audio", "visual": "visual", "both": "audio + visual"}


def per_seed_accuracy(runs: Sequence[Run]) -> pd.DataFrame:
    """The test accuracies of every run, from its ``metrics.json``.

    Parameters
    ----------
    runs
        Finished training runs.

    Returns
    -------
    pandas.DataFrame
        One row per run, noise kind and SNR: fusion_layer, seed, noise, snr_db, accuracy
        (``noise`` is ``none`` with ``snr_db`` = inf for clean input).
    """
    import pandas as pd

    rows = []
    for run in runs:
        rows.append({"fusion_layer": run.fusion_layer, "seed": run.seed, "noise": "none",
                     "snr_db": math.inf, "accuracy": float(run.metrics.clean_accuracy)})
        rows += [{"fusion_layer": run.fusion_layer, "seed": run.seed, "noise": entry["noise"],
                  "snr_db": float(entry["snr_db"]), "accuracy": float(entry["accuracy"])}
                 for entry in run.metrics.noise]
    return pd.DataFrame(rows)


def summarize(per_seed: pd.DataFrame, dataset: str, layers: int) -> pd.DataFrame:
    """Mean accuracy and its 95 % interval over seeds, per fusion layer, noise kind and SNR.

    Parameters
    ----------
    per_seed
        The rows of [per_seed_accuracy][repsim.figures.noise_robustness.per_seed_accuracy].
    dataset, layers
        The runs' dataset and number of ConvLSTM layers, written into every row.

    Returns
    -------
    pandas.DataFrame
        Rows in ``COLUMNS`` (a Student-t interval; NaN with one seed).
    """
    import pandas as pd

    from repsim import plotting

    rows = []
    for (_, noise, snr), group in per_seed.groupby(["fusion_layer", "noise", "snr_db"]):
        mean, low, high = plotting.mean_interval(group["accuracy"])
        rows.append({"dataset": dataset, "layers": layers,
                     "fusion_layer": int(group["fusion_layer"].iloc[0]),
                     "noise": noise, "snr_db": snr, "n_seeds": len(group),
                     "accuracy_mean": mean, "ci_low": low, "ci_high": high})
    return pd.DataFrame(rows, columns=COLUMNS)


def plot(summary: pd.DataFrame, dataset: str, layers: int, n_seeds: int) -> Figure:
    """Accuracy vs SNR per noise kind (one line per fusion layer) and clean accuracy vs k.

    Parameters
    ----------
    summary
        The rows of [summarize][repsim.figures.noise_robustness.summarize].
    dataset, layers, n_seeds
        The runs' dataset, depth and most seeds per cell, for the title.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import pandas as pd

    from repsim import plotting

    fig, axes = plotting.new_figure(1, len(NOISE_KINDS) + 1, panel_size=(3.9, 3.6))
    fusion_layers = sorted(summary["fusion_layer"].unique())
    colors = {k: plotting.PALETTE[i % len(plotting.PALETTE)] for i, k in enumerate(fusion_layers)}
    clean = summary[summary["noise"] == "none"].set_index("fusion_layer")
    snrs = np.sort(summary.loc[summary["noise"] != "none", "snr_db"].unique())
    step = float(np.median(np.diff(snrs))) if len(snrs) > 1 else 10.0
    clean_x = (snrs.max() if len(snrs) else 0.0) + step  # where "clean" sits on the SNR axis
    for ax, noise in zip(axes[0], NOISE_KINDS, strict=False):
        for i, k in enumerate(fusion_layers):
            rows = summary[(summary["noise"] == noise) & (summary["fusion_layer"] == k)]
            rows = pd.concat([rows.sort_values("snr_db"), clean.loc[[k]].reset_index()])
            x = np.where(np.isinf(rows["snr_db"]), clean_x, rows["snr_db"])
            plotting.line_with_band(ax, x, 100 * rows["accuracy_mean"], 100 * rows["ci_low"],
                                    100 * rows["ci_high"], color=colors[k],
                                    marker=plotting.MARKERS[i % len(plotting.MARKERS)],
                                    label=plotting.fusion_label(k, layers))
        if len(snrs):  # a dotted rule separates the SNR scale from the clean point
            ax.axvline((snrs.max() + clean_x) / 2, color="0.6", linestyle=":", linewidth=1.0)
        ax.set_xticks([*snrs, clean_x], [f"{s:g}" for s in snrs] + [CLEAN])
        ax.set_xlabel(f"{_NOISE_NAMES[noise]} SNR (dB)")
        ax.set_ylabel("test accuracy (%)")
        ax.set_ylim(0, 102)
        ax.set_title(f"{_NOISE_NAMES[noise].capitalize()} noise")
    ax = axes[0, -1]
    x = np.arange(len(fusion_layers))
    ax.errorbar(x, 100 * clean["accuracy_mean"].to_numpy(),
                yerr=_error_bars(clean), fmt="none", ecolor="0.3", capsize=4)
    ax.scatter(x, 100 * clean["accuracy_mean"], c=[colors[k] for k in fusion_layers], s=60,
               zorder=3, edgecolors="0.2")
    ax.set_xlim(-0.5, len(x) - 0.5)
    ax.set_xticks(x, [plotting.fusion_label(k, layers).replace(" ", "\n") for k in fusion_layers])
    ax.set_xlabel("fusion layer")
    ax.set_ylabel("clean test accuracy (%)")
    low = 100 * np.nanmin(np.r_[clean["accuracy_mean"], clean["ci_low"]])
    ax.set_ylim(max(0.0, low - 5), 101)
    ax.set_title("Clean accuracy by fusion layer")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=len(labels),
               title="fusion layer")
    seeds = f"mean of {n_seeds} seeds, 95 % CI" if n_seeds > 1 else "1 seed"
    fig.suptitle(f"Early vs late fusion under white noise ({dataset}, {layers} ConvLSTM "
                 f"layers; {seeds})")
    return fig


def _error_bars(rows: pd.DataFrame) -> np.ndarray:
    """Asymmetric error bars in percent (zero where the interval is undefined)."""
    below = 100 * (rows["accuracy_mean"] - rows["ci_low"])
    above = 100 * (rows["ci_high"] - rows["accuracy_mean"])
    return np.nan_to_num(np.vstack([below, above]))


def file_accuracy(model: ModelInput, data: xr.Dataset, *, target: str | None = None,
                  condition: str | None = None) -> pd.DataFrame:
    """Accuracy of ``model``'s recorded predictions against ``target`` on the intact
    ``condition`` and under each noise condition on one of its inputs.

    Parameters
    ----------
    model, data
        One model and its activation file, as ``repsim.figures.base.open_model`` returns
        them.
    target
        The stimulus column the predictions are scored against; None: repsim's files: the
        digit; other files: required.
    condition
        The intact stimuli; None: ``clean`` if the file has it, else its only condition.

    Returns
    -------
    pandas.DataFrame
        Rows in ``FILE_COLUMNS``, with 95 % Wilson intervals over the stimuli: the intact
        stimuli (``input`` ``none``, ``snr_db`` inf) and each noise condition.

    Raises
    ------
    ValueError
        For a column or condition the file lacks, no ``target`` for a file that is not one of
        repsim's probe-set files, a file without predictions, or no condition that adds noise
        to an input of the intact stimuli.
    """
    import pandas as pd

    from repsim.activations import stimulus_table
    from repsim.analysis.probes import wilson_interval

    labels = repsim_defaults(data)
    column = (check_targets(data, [target], model.path)[0] if target
              else labels[0] if labels is not None
              else require_targets(data, None, model.path)[0])
    if "prediction" not in data.coords and "prediction" not in data:
        raise ValueError(f"{model.path} holds no model predictions: record it with logits=... "
                         f"(--logits) to score it under noise")
    intact = pick_condition(data, condition, model.path)
    grid = [("none", math.inf, intact)] + [
        (name, snr, noisy) for name, levels in noise_conditions(data, intact, model.path).items()
        for snr, noisy in levels]
    rows = []
    for name, snr, chosen in grid:
        table = stimulus_table(data, chosen)
        correct = int((table["prediction"].to_numpy() == table[column].to_numpy()).sum())
        low, high = wilson_interval(correct, len(table))
        rows.append({"model": model.label, "input": name, "snr_db": snr,
                     "n_stimuli": len(table), "accuracy": correct / len(table),
                     "ci_low": low, "ci_high": high})
    return pd.DataFrame(rows, columns=FILE_COLUMNS)


def plot_files(table: pd.DataFrame, condition: str) -> Figure:
    """Accuracy vs SNR per noisy input (one line per model) and intact accuracy per model.

    Parameters
    ----------
    table
        The rows of [file_accuracy][repsim.figures.noise_robustness.file_accuracy] of every
        model.
    condition
        What the intact stimuli are called on the axes.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import pandas as pd

    from repsim import plotting

    inputs = [name for name in dict.fromkeys(table["input"]) if name != "none"]
    models = list(dict.fromkeys(table["model"]))
    fig, axes = plotting.new_figure(1, len(inputs) + 1, panel_size=(3.9, 3.6))
    colors = {m: plotting.PALETTE[i % len(plotting.PALETTE)] for i, m in enumerate(models)}
    intact = table[table["input"] == "none"].set_index("model")
    for ax, name in zip(axes[0], inputs, strict=False):
        snrs = np.sort(table.loc[table["input"] == name, "snr_db"].unique())
        step = float(np.median(np.diff(snrs))) if len(snrs) > 1 else 10.0
        intact_x = snrs.max() + step
        for i, model in enumerate(models):
            rows = table[(table["input"] == name) & (table["model"] == model)]
            rows = pd.concat([rows.sort_values("snr_db"), intact.loc[[model]].reset_index()])
            x = np.where(np.isinf(rows["snr_db"]), intact_x, rows["snr_db"])
            plotting.line_with_band(ax, x, 100 * rows["accuracy"], 100 * rows["ci_low"],
                                    100 * rows["ci_high"], color=colors[model],
                                    marker=plotting.MARKERS[i % len(plotting.MARKERS)],
                                    label=model)
        ax.axvline((snrs.max() + intact_x) / 2, color="0.6", linestyle=":", linewidth=1.0)
        ax.set_xticks([*snrs, intact_x], [f"{s:g}" for s in snrs] + [condition])
        ax.set_xlabel(f"{name} SNR (dB)")
        ax.set_ylabel("accuracy (%)")
        ax.set_ylim(0, 102)
        ax.set_title(f"Noise on {name}")
    ax = axes[0, -1]
    x = np.arange(len(models))
    errors = 100 * np.abs(intact.loc[models, ["ci_low", "ci_high"]].to_numpy().T
                          - intact.loc[models, "accuracy"].to_numpy())
    ax.errorbar(x, 100 * intact.loc[models, "accuracy"], yerr=errors, fmt="none", ecolor="0.3",
                capsize=4)
    ax.scatter(x, 100 * intact.loc[models, "accuracy"], c=[colors[m] for m in models], s=60,
               zorder=3, edgecolors="0.2")
    ax.set_xlim(-0.5, len(x) - 0.5)
    ax.set_xticks(x, [m.replace(" (", "\n(") for m in models])
    ax.set_ylim(0, 102)
    ax.set_ylabel(f"accuracy, {condition} (%)")
    ax.set_title(f"Accuracy on {condition} stimuli")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 4),
               title="model")
    n = int(table["n_stimuli"].min())
    fig.suptitle(f"Accuracy under white noise: {' vs '.join(models)} ({n}+ stimuli per "
                 f"condition, 95 % Wilson CI)")
    return fig


def run(inputs: Sequence[str | Path] = (), *, files: Sequence[str | Path] = (),
        runs_dir: str | Path = RUNS_DIR, dataset: str | None = None,
        out_dir: str | Path = FIGURES_DIR, target: str | None = None,
        condition: str | None = None) -> list[Path]:
    """Make the figure from named run directories (or every run under ``runs_dir``), or from
    activation ``files`` (their predictions against ``target`` under each noise condition).

    Parameters
    ----------
    inputs
        Run directories (or their ``metrics.json``); none: every run under ``runs_dir``.
    files
        Activation files with recorded predictions, instead of run directories.
    runs_dir
        Where the runs are when neither inputs nor files are named.
    dataset
        Only runs of this dataset (needed when ``runs_dir`` holds several).
    out_dir
        Where the figure (``.png``, ``.pdf``) and its numbers (``.csv``) go.
    target
        With ``files``: the stimulus column the predictions are scored against; None:
        repsim's files: the digit; other files: required.
    condition
        With ``files``: the intact stimuli; None: ``clean``.

    Returns
    -------
    list of pathlib.Path
        ``noise_robustness.png``, ``.pdf`` and ``.csv`` in ``out_dir``.

    Raises
    ------
    FileNotFoundError
        For a run directory or file that does not exist, or no finished runs under
        ``runs_dir``.
    ValueError
        For both run directories and ``files``, ``target`` or ``condition`` without
        ``files``, an output directory that cannot be written, an input that is neither a run
        directory nor a ``metrics.json``, runs that mix experiments or repeat a fusion layer
        and seed; with ``files``, a column or condition a file lacks, no ``target`` for a file
        that is not one of repsim's probe-set files, a file without predictions, or a file
        with no condition that adds noise to an input of the intact stimuli.
    """
    from repsim import plotting

    if files and inputs:
        raise ValueError("give run directories or --files (activation files), not both")
    if not files and (target is not None or condition is not None):
        raise ValueError("--target and --condition score activation files: give them with "
                         "--files (run directories carry their own test accuracies)")
    check_out_dir(out_dir)
    if files:
        conditions: list[str] = []

        def table(model: ModelInput, data) -> pd.DataFrame:
            conditions.append(pick_condition(data, condition, model.path))
            return file_accuracy(model, data, target=target, condition=condition)

        rows, used = table_per_model(table, files)
        shown = conditions[0] if len(set(conditions)) == 1 else "intact"
        return plotting.save_outputs(lambda: plot_files(rows, shown), rows, out_dir, NAME, used)
    runs = [load_run(p) for p in inputs] if inputs else find_runs(runs_dir, dataset)
    runs = one_experiment(runs)
    dataset_name, layers = runs[0].dataset, runs[0].layers
    summary = summarize(per_seed_accuracy(runs), dataset_name, layers)
    n_seeds = int(summary["n_seeds"].max())
    return plotting.save_outputs(lambda: plot(summary, dataset_name, layers, n_seeds), summary,
                                 out_dir, NAME, {run.metrics_path: run.name for run in runs})


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m repsim.figures noise_robustness [RUN_DIR ...]``.

    Parameters
    ----------
    argv
        The arguments after the command; None: ``sys.argv[1:]``.

    Returns
    -------
    int
        The exit status: 0, or 2 after one ``error:`` line for a user error.
    """
    parser = figure_parser(NAME, __doc__, EXAMPLES,
                           f"run directories (or their {METRICS_FILE}); default: all under "
                           "--runs-dir", files=False)
    parser.add_argument("--files", nargs="+", type=Path, default=[], metavar="FILE",
                        help="activation files with recorded predictions (repsim.record with "
                             "logits, or repsim.extract) instead of run directories (default: "
                             "none)")
    parser.add_argument("--target", default=None, metavar="COLUMN",
                        help="with --files: the stimulus column the predictions are scored "
                             "against (default: repsim's files: the digit; other files: "
                             "required)")
    parser.add_argument("--condition", default=None,
                        help=f"with --files: the intact stimuli (default: {CLEAN})")
    return run_cli(parser, run, argv)
