"""RSA per layer: digit RDMs, and whether each layer follows the heard or the seen digit.

(a) Condition-averaged RDMs per layer at the last time step: on clean (congruent) stimuli, one
pattern per digit (the mean over its stimuli), correlation distance between the ten patterns,
digits in order. (b) On the incongruent stimuli (audio digit != visual digit), one pattern per
audio-digit x visual-digit cell; the RDM of these patterns at every time step is compared
with two categorical model RDMs, "same audio digit" and "same visual digit" (Spearman
correlation by default), with 95 % bootstrap bands that resample the cells. Where a layer
turns from one hypothesis to both, the streams have met.

Writes ``rsa_by_layer.png``/``.pdf`` and ``rsa_by_layer.csv``, one row per number: model,
layer, time_step (1 = first step), quantity (``rdm``: an entry between digit_a and digit_b;
``model_correlation``: the comparison with ``hypothesis`` audio_digit or visual_digit), digit_a,
digit_b, hypothesis, value, ci_low, ci_high. For a dataset with named classes the hypotheses
are audio_class and visual_class, and digit_a/digit_b hold class indices.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from repsim.activations import layer_names, layer_states, stimulus_table
from repsim.activations.labels import label_coords
from repsim.analysis.choices import METHODS, METRICS
from repsim.conditions import CLEAN, INCONGRUENT
from repsim.figures.base import (
    FIGURES_DIR,
    MODELS_HELP,
    check_out_dir,
    figure_parser,
    run_cli,
    table_per_model,
)
from repsim.rundir import RUNS_DIR
from repsim.runs import ModelInput

if TYPE_CHECKING:  # heavy libraries load where they are used: --help needs none
    import xarray as xr
    from matplotlib.figure import Figure

NAME = "rsa_by_layer"
COLUMNS = ["model", "layer", "time_step", "quantity", "digit_a", "digit_b", "hypothesis",
           "value", "ci_low", "ci_high"]
EXAMPLES = """examples:
  python analyses/rsa_by_layer.py                       # early and late runs under runs/
  python analyses/rsa_by_layer.py --method kendall_tau_a --n-boot 1000
  python analyses/rsa_by_layer.py runs/synthetic-f1-s0 runs/synthetic-f2-s0 runs/synthetic-f3-s0
"""


def digit_rdms(model: ModelInput, data: xr.Dataset, *, condition: str = CLEAN,
               metric: str = "correlation") -> pd.DataFrame:
    """Rows of the per-digit RDM of every layer at the last time step."""
    from repsim.analysis import average_by_condition, rdm

    digits = stimulus_table(data, condition)[label_coords(data)[0]].to_numpy()
    rows = []
    for layer in layer_names(data):
        states = layer_states(data, layer, condition, time=-1)
        patterns, labels = average_by_condition(states, digits)
        matrix = rdm(patterns, metric=metric)
        step = data.sizes["time"]
        rows += [{"model": model.label, "layer": layer, "time_step": step, "quantity": "rdm",
                  "digit_a": int(a), "digit_b": int(b), "value": matrix[i, j]}
                 for i, a in enumerate(labels) for j, b in enumerate(labels)]
    return pd.DataFrame(rows)


def hypothesis_correlations(model: ModelInput, data: xr.Dataset, *, condition: str = INCONGRUENT,
                            metric: str = "correlation", method: str = "spearman",
                            n_boot: int = 100, seed: int = 0) -> pd.DataFrame:
    """Correlation of each layer's cell-averaged RDM with the audio- and visual-digit model
    RDMs at every time step, with percentile bootstrap intervals over cells."""
    from repsim.analysis import (
        average_by_condition,
        bootstrap_compare_rdms,
        categorical_rdm,
        compare_rdms,
        rdm,
    )

    table = stimulus_table(data, condition)
    targets = label_coords(data)  # audio_digit/visual_digit, or audio_class/visual_class
    digits = [table[d].to_numpy() for d in targets]
    steps = data.sizes["time"]
    rows = []
    for layer in layer_names(data):  # one layer at one step in memory at a time
        averaged = [average_by_condition(layer_states(data, layer, condition, time=t), *digits)
                    for t in range(steps)]
        cells = averaged[0][1]
        models = [categorical_rdm(cells[:, i]) for i in range(len(targets))]
        rdms = rdm([patterns for patterns, _ in averaged], metric=metric)
        values = np.atleast_2d(compare_rdms(rdms, models, method=method))
        for t in range(steps):
            for h, hypothesis in enumerate(targets):
                low = high = np.nan
                if n_boot:
                    result = bootstrap_compare_rdms(rdms[t], models[h], method=method,
                                                    n_boot=n_boot, seed=seed)
                    low, high = result.ci_low, result.ci_high
                rows.append({"model": model.label, "layer": layer, "time_step": t + 1,
                             "quantity": "model_correlation", "hypothesis": hypothesis,
                             "value": values[t, h], "ci_low": low, "ci_high": high})
    return pd.DataFrame(rows)


def plot(table: pd.DataFrame, method: str, metric: str) -> Figure:
    """Per model: a row of digit RDMs (one per layer) over a row of hypothesis time courses."""
    from repsim import plotting

    models = list(dict.fromkeys(table["model"]))
    layers = {m: list(dict.fromkeys(table.loc[table["model"] == m, "layer"])) for m in models}
    ncols = max(map(len, layers.values()))
    fig, axes = plotting.new_figure(2 * len(models), ncols, panel_size=(3.7, 3.3))
    rdm_rows = table[table["quantity"] == "rdm"]
    correlations = table[table["quantity"] == "model_correlation"]
    vmax = float(rdm_rows["value"].max())
    hypotheses = list(dict.fromkeys(correlations["hypothesis"]))
    word = hypotheses[0].split("_", 1)[1] if hypotheses else "digit"  # "digit" or "class"
    low = min(0.0, float(np.nanmin(correlations[["value", "ci_low"]].to_numpy())))
    high = max(float(np.nanmax(correlations[["value", "ci_high"]].to_numpy())), 0.1)
    for m, model in enumerate(models):
        for c in range(ncols):
            heat_ax, line_ax = axes[2 * m, c], axes[2 * m + 1, c]
            if c >= len(layers[model]):
                heat_ax.set_visible(False)
                line_ax.set_visible(False)
                continue
            layer = layers[model][c]
            rows = rdm_rows[(rdm_rows["model"] == model) & (rdm_rows["layer"] == layer)]
            matrix = rows.pivot(index="digit_a", columns="digit_b", values="value")
            plotting.heatmap(heat_ax, matrix.to_numpy(),
                             row_labels=[str(int(d)) for d in matrix.index],
                             col_labels=[str(int(d)) for d in matrix.columns], vmax=vmax,
                             cbar_label=f"{metric} distance", cmap="rocket_r")
            heat_ax.set_xlabel(word)
            heat_ax.set_ylabel(word)
            heat_ax.set_title(f"{model}: {layer}\n{word} RDM, last step", fontsize="medium")
            for h, hypothesis in enumerate(hypotheses):
                stream = hypothesis.split("_")[0]
                fits = correlations[(correlations["model"] == model)
                                    & (correlations["layer"] == layer)
                                    & (correlations["hypothesis"] == hypothesis)]
                plotting.line_with_band(line_ax, fits["time_step"], fits["value"],
                                        fits["ci_low"], fits["ci_high"],
                                        color=plotting.MODALITY_COLORS[stream],
                                        marker=plotting.MARKERS[h],
                                        label=f"same {stream} {word}")
            line_ax.axhline(0.0, color="0.45", linewidth=0.8, zorder=0)
            line_ax.set_ylim(low - 0.05, high + 0.05)
            line_ax.set_xticks(sorted(fits["time_step"].unique()))
            line_ax.set_xlabel("time step")
            line_ax.set_ylabel(f"RDM fit ({method.replace('_', ' ')})")
            line_ax.set_title(f"{model}: {layer}\nincongruent stimuli", fontsize="medium")
            if c == 0:
                line_ax.legend(loc="best", fontsize="small", title="model RDM",
                               title_fontsize="small")
    fig.suptitle(f"Which {word} does each layer represent? {word.capitalize()} RDMs (clean "
                 f"stimuli) and\neach layer's fit to the heard vs the seen {word} (incongruent "
                 f"stimuli, 95 % bootstrap CI)")
    return fig


def run(inputs: Sequence[str | Path] = (), *, runs_dir: str | Path = RUNS_DIR,
        dataset: str | None = None, out_dir: str | Path = FIGURES_DIR,
        method: str = "spearman", metric: str = "correlation", n_boot: int = 100,
        seed: int = 0) -> list[Path]:
    """Make the figure from activation files / run dirs (or the early and late runs)."""
    from repsim import plotting

    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if n_boot < 0:
        raise ValueError(f"--n-boot must be >= 0, got {n_boot}")
    check_out_dir(out_dir)

    def tables(model: ModelInput, data) -> pd.DataFrame:
        return pd.concat([digit_rdms(model, data, metric=metric),
                          hypothesis_correlations(model, data, metric=metric, method=method,
                                                  n_boot=n_boot, seed=seed)])

    table, used = table_per_model(tables, inputs, runs_dir, dataset)
    table = table.reindex(columns=COLUMNS)
    return plotting.save_outputs(lambda: plot(table, method, metric), table, out_dir, NAME,
                                 used)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m repsim.figures rsa_by_layer [ACTIVATIONS_OR_RUN_DIR ...]``."""
    parser = figure_parser(NAME, __doc__, EXAMPLES, MODELS_HELP)
    parser.add_argument("--method", choices=METHODS, default="spearman",
                        help="how RDMs are compared (default: spearman)")
    parser.add_argument("--metric", choices=METRICS, default="correlation",
                        help="pattern dissimilarity (default: correlation)")
    parser.add_argument("--n-boot", type=int, default=100,
                        help="bootstrap resamples for the bands; 0 = none (default: 100)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: 0)")
    return run_cli(parser, run, argv)
