"""Accuracy under white noise for every fusion layer: the paper's main figure.

Reads the ``metrics.json`` of every run and draws test accuracy against the signal-to-noise
ratio for audio noise, visual noise and noise on both, one line per fusion layer (mean over
seeds with a 95 % Student-t interval when there are several seeds), and clean accuracy
against the fusion layer. Writes ``noise_robustness.png``/``.pdf`` and ``noise_robustness.csv``
(columns: dataset, layers, fusion_layer, noise, snr_db, n_seeds, accuracy_mean, ci_low,
ci_high; accuracy as a fraction; ``noise`` is ``none`` with ``snr_db`` = inf for clean input).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from repsim.conditions import CLEAN, NOISE_KINDS
from repsim.figures.base import FIGURES_DIR, check_out_dir, figure_parser, run_cli
from repsim.rundir import METRICS_FILE, RUNS_DIR
from repsim.runs import Run, find_runs, load_run, one_experiment

if TYPE_CHECKING:  # matplotlib loads where a figure is drawn: --help needs none
    from matplotlib.figure import Figure

NAME = "noise_robustness"
COLUMNS = ["dataset", "layers", "fusion_layer", "noise", "snr_db", "n_seeds", "accuracy_mean",
           "ci_low", "ci_high"]
EXAMPLES = """examples:
  python analyses/noise_robustness.py                      # every run under runs/
  python analyses/noise_robustness.py --dataset avmnist --out-dir figures/avmnist
  python analyses/noise_robustness.py runs/synthetic-f1-s0 runs/synthetic-f3-s0
"""
_NOISE_NAMES = {"audio": "audio", "visual": "visual", "both": "audio + visual"}


def per_seed_accuracy(runs: Sequence[Run]) -> pd.DataFrame:
    """One row per run, noise kind and SNR: fusion_layer, seed, noise, snr_db, accuracy."""
    rows = []
    for run in runs:
        rows.append({"fusion_layer": run.fusion_layer, "seed": run.seed, "noise": "none",
                     "snr_db": math.inf, "accuracy": float(run.metrics.clean_accuracy)})
        rows += [{"fusion_layer": run.fusion_layer, "seed": run.seed, "noise": entry["noise"],
                  "snr_db": float(entry["snr_db"]), "accuracy": float(entry["accuracy"])}
                 for entry in run.metrics.noise]
    return pd.DataFrame(rows)


def summarize(per_seed: pd.DataFrame, dataset: str, layers: int) -> pd.DataFrame:
    """Mean accuracy and its 95 % interval over seeds, per fusion layer, noise kind and SNR."""
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
    """Accuracy vs SNR per noise kind (one line per fusion layer) and clean accuracy vs k."""
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


def run(inputs: Sequence[str | Path] = (), *, runs_dir: str | Path = RUNS_DIR,
        dataset: str | None = None, out_dir: str | Path = FIGURES_DIR) -> list[Path]:
    """Make the figure from named run directories (or every run under ``runs_dir``)."""
    from repsim import plotting

    check_out_dir(out_dir)
    runs = [load_run(p) for p in inputs] if inputs else find_runs(runs_dir, dataset)
    runs = one_experiment(runs)
    dataset_name, layers = runs[0].dataset, runs[0].layers
    summary = summarize(per_seed_accuracy(runs), dataset_name, layers)
    n_seeds = int(summary["n_seeds"].max())
    return plotting.save_outputs(lambda: plot(summary, dataset_name, layers, n_seeds), summary,
                                 out_dir, NAME, {run.metrics_path: run.name for run in runs})


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m repsim.figures noise_robustness [RUN_DIR ...]``."""
    parser = figure_parser(NAME, __doc__, EXAMPLES,
                           f"run directories (or their {METRICS_FILE}); default: all under "
                           "--runs-dir", files=False)
    return run_cli(parser, run, argv)
