"""Modality-ablation sensitivity per layer and time step, and accuracy with a modality removed.

For every layer x time step of each model: the sensitivity to removing audio and to removing
vision, ``S = 1 - CKA(h_clean, h_removed)`` on the same stimuli (matched by stimulus id), and
the reliance index ``S_audio / (S_audio + S_visual)`` (1 = only audio matters, 0 = only
vision, 0.5 = both equally); and the model's accuracy on the probe set with each modality
removed (from the predictions stored in the activation file). Definitions:
:mod:`repsim.analysis.ablation`.

Writes ``ablation_sensitivity.png``/``.pdf`` and ``ablation_sensitivity.csv``: model, measure
(``cka_sensitivity``, ``relative_change`` (``||h - h_removed|| / ||h||``), ``reliance_cka``,
``reliance_change``, ``accuracy``), removed (``audio``/``visual``; ``none`` for the intact
accuracy; empty for reliance), layer and time_step (1 = first step; empty for accuracy),
value (fractions).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from repsim.activations import stimulus_table
from repsim.activations.labels import chance_level, label_coords
from repsim.analysis.choices import KERNELS
from repsim.conditions import CLEAN, MODALITIES, removed_condition
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
    from matplotlib.colors import Colormap
    from matplotlib.figure import Figure

NAME = "ablation_sensitivity"
COLUMNS = ["model", "measure", "removed", "layer", "time_step", "value"]
CONDITIONS = {"none": CLEAN, **{m: removed_condition(m) for m in MODALITIES}}
EXAMPLES = """examples:
  python analyses/ablation_sensitivity.py               # early and late runs under runs/
  python analyses/ablation_sensitivity.py --kernel rbf
  python analyses/ablation_sensitivity.py runs/synthetic-f2-s0/activations.h5 --out-dir out
"""


def sensitivity_table(model: ModelInput, data: xr.Dataset, *, kernel: str = "linear"
                      ) -> pd.DataFrame:
    """Sensitivity, relative change and reliance per layer x time step, and the accuracy of
    the model's own predictions with nothing, audio or vision removed."""
    from repsim.analysis import ablation_sensitivity

    result = ablation_sensitivity(data, kernel=kernel)
    rows = []
    for measure in ("cka_sensitivity", "relative_change"):
        for removed in result["removed"].values:
            rows += _grid_rows(model, measure, str(removed), result[measure].sel(removed=removed))
    for measure in ("reliance_cka", "reliance_change"):
        rows += _grid_rows(model, measure, None, result[measure])
    if "prediction" not in data.coords and "prediction" not in data:
        raise ValueError(f"{model.path} holds no model predictions; re-extract it")
    for removed, condition in CONDITIONS.items():
        table = stimulus_table(data, condition)
        correct = table["prediction"].to_numpy() == table[label_coords(data)[0]].to_numpy()
        rows.append({"model": model.label, "measure": "accuracy", "removed": removed,
                     "value": float(correct.mean())})

    return pd.DataFrame(rows, columns=COLUMNS)


def _grid_rows(model: ModelInput, measure: str, removed: str | None, grid) -> list[dict]:
    return [{"model": model.label, "measure": measure, "removed": removed, "layer": str(layer),
             "time_step": int(t) + 1, "value": float(grid.sel(layer=layer, time=t))}
            for layer in grid["layer"].values for t in grid["time"].values]


def plot(table: pd.DataFrame, kernel: str, chance: float = 0.1) -> Figure:
    """Per model: S_audio, S_visual and reliance heatmaps; beside them accuracy bars, with a
    line at ``chance`` (1 / the number of classes)."""
    from matplotlib.figure import Figure

    from repsim import plotting

    models = list(dict.fromkeys(table["model"]))
    steps = int(table["time_step"].max())
    panel_width = 2.2 + 0.45 * steps  # room for a two-decimal label in every cell
    fig = Figure(figsize=(3 * panel_width + 4.0, 0.6 + 3.4 * len(models)), layout="constrained")
    left, right = fig.subfigures(1, 2, width_ratios=[3 * panel_width, 4.0], squeeze=False)[0]
    axes = left.subplots(len(models), 3, squeeze=False)
    sensitivity = table[table["measure"] == "cka_sensitivity"]
    vmax = max(float(sensitivity["value"].max()), 0.05)
    panels: list[tuple[str, str | None, str | Colormap, str]] = [
              ("cka_sensitivity", "audio", "Oranges", "1 - CKA, audio removed"),
              ("cka_sensitivity", "visual", "Blues", "1 - CKA, vision removed"),
              ("reliance_cka", None, plotting.RELIANCE_CMAP, "reliance on audio")]
    for row, model in zip(axes, models, strict=True):
        for ax, (measure, removed, cmap, label) in zip(row, panels, strict=True):
            rows = table[(table["model"] == model) & (table["measure"] == measure)]
            if removed is not None:
                rows = rows[rows["removed"] == removed]
            layers = list(dict.fromkeys(rows["layer"]))
            grid = rows.pivot(index="layer", columns="time_step", values="value").loc[layers]
            plotting.heatmap(ax, grid.to_numpy(), row_labels=layers,
                             col_labels=[str(int(t)) for t in grid.columns], cmap=cmap,
                             vmax=1.0 if removed is None else vmax, cbar_label=label)
            ax.set_xlabel("time step")
            ax.set_ylabel("layer")
            what = (f"without {'vision' if removed == 'visual' else removed}" if removed
                    else "audio / (audio + visual)")
            ax.set_title(f"{model}\n{'sensitivity ' if removed else 'reliance, '}{what}",
                         fontsize="medium")
    left.suptitle(f"Which modality does each layer need? Sensitivity = 1 - {kernel} CKA "
                  "(clean vs modality removed)")
    _accuracy_bars(right.subplots(), table[table["measure"] == "accuracy"], models, chance)
    return fig


def _accuracy_bars(ax, accuracy: pd.DataFrame, models: list[str], chance: float) -> None:
    """Grouped bars: each model's accuracy intact, without audio and without vision."""
    from repsim import plotting

    bars = [("none", "intact", "0.55"), ("audio", "audio removed", plotting.MODALITY_COLORS[
        "audio"]), ("visual", "vision removed", plotting.MODALITY_COLORS["visual"])]
    width = 0.8 / len(bars)
    x = np.arange(len(models))
    for i, (removed, label, color) in enumerate(bars):
        values = [accuracy.loc[(accuracy["model"] == m) & (accuracy["removed"] == removed),
                               "value"].item() for m in models]
        ax.bar(x + (i - 1) * width, 100 * np.asarray(values), width, color=color, label=label)
    plotting.chance_line(ax, 100 * chance)
    ax.set_xticks(x, [m.replace(" (", "\n(") for m in models])
    ax.set_ylim(0, 105)
    ax.set_ylabel("accuracy on the probe set (%)")
    ax.set_title("Accuracy with a\nmodality removed")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), fontsize="small", ncols=2)


def run(inputs: Sequence[str | Path] = (), *, runs_dir: str | Path = RUNS_DIR,
        dataset: str | None = None, out_dir: str | Path = FIGURES_DIR,
        kernel: str = "linear") -> list[Path]:
    """Make the figure from activation files / run dirs (or the early and late runs)."""
    from repsim import plotting

    check_out_dir(out_dir)
    chances = []

    def table(model: ModelInput, data) -> pd.DataFrame:
        chances.append(chance_level(data))
        return sensitivity_table(model, data, kernel=kernel)

    rows, used = table_per_model(table, inputs, runs_dir, dataset)
    if len(set(chances)) > 1:
        raise ValueError("the models were tested on datasets with different numbers of "
                         "classes; draw them in separate figures")
    return plotting.save_outputs(lambda: plot(rows, kernel, chances[0]), rows, out_dir, NAME,
                                 used)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m repsim.figures ablation_sensitivity [INPUT ...]``."""
    parser = figure_parser(NAME, __doc__, EXAMPLES, MODELS_HELP)
    parser.add_argument("--kernel", choices=KERNELS, default="linear",
                        help="CKA kernel of the sensitivity (default: linear)")
    return run_cli(parser, run, argv)
