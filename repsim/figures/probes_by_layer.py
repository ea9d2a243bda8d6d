"""Linear decoding of the digit per layer and time step, and of the heard vs the seen digit.

(a) Cross-validated linear-probe accuracy for the digit on clean (congruent) stimuli, per layer
x time step, one heatmap per model; (b) on incongruent stimuli (audio digit != visual digit) at
the last time step, the accuracy of decoding the audio digit and the visual digit per layer,
by layer depth and stream, with 95 % Wilson intervals and the chance level.
Probes: ``repsim.analysis`` multinomial logistic regression on standardized features,
stratified K-fold, C = 1 by default (``--Cs`` with several values chooses C by nested
cross-validation, at a much higher cost).

Writes ``probes_by_layer.png``/``.pdf`` and ``probes_by_layer.csv``: model, condition, target
(``audio_digit``/``visual_digit``; on clean stimuli the two are the same digit), layer,
time_step (1 = first step), accuracy, ci_low, ci_high, chance (accuracies as fractions).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from repsim.activations import layer_names, select
from repsim.activations.labels import label_coords
from repsim.analysis.choices import DEFAULT_CS as NESTED_CS
from repsim.conditions import CLEAN, INCONGRUENT
from repsim.figures.base import (
    FIGURES_DIR,
    MODELS_HELP,
    check_out_dir,
    figure_parser,
    layer_depth,
    layer_stream,
    run_cli,
    table_per_model,
)
from repsim.rundir import RUNS_DIR
from repsim.runs import ModelInput

if TYPE_CHECKING:  # heavy libraries load where they are used: --help needs none
    import xarray as xr
    from matplotlib.figure import Figure

NAME = "probes_by_layer"
COLUMNS = ["model", "condition", "target", "layer", "time_step", "accuracy", "ci_low",
           "ci_high", "chance"]
# One C (scikit-learn's default) unless asked for more: nested selection over the library's
# six-value grid costs ~40x more per cell (minutes per layer x time step on the demo's files).
DEFAULT_CS = (1.0,)
EXAMPLES = """examples:
  python analyses/probes_by_layer.py                     # early and late runs under runs/
  python analyses/probes_by_layer.py --groups speaker    # no speaker in train and test folds
  python analyses/probes_by_layer.py --Cs 1e-4 1e-3 1e-2 1e-1 1 10   # nested choice of C (slow)
  python analyses/probes_by_layer.py runs/synthetic-f1-s0 runs/synthetic-f3-s0 --folds 10
"""


def probe_table(model: ModelInput, data: xr.Dataset, *, folds: int = 5, seed: int = 0,
                groups: str | None = None, Cs: Sequence[float] = DEFAULT_CS) -> pd.DataFrame:
    """Digit decoding on clean stimuli (every layer x time step) and audio- vs visual-digit
    decoding on incongruent stimuli (every layer, last time step)."""
    from repsim.analysis import probe_all, probe_cells

    options: dict[str, Any] = {"folds": folds, "seed": seed, "groups": groups, "Cs": tuple(Cs)}
    targets = label_coords(data)  # audio_digit/visual_digit, or audio_class/visual_class
    clean = probe_all(data, targets[0], condition=CLEAN, **options)
    rows = [{"model": model.label, "condition": CLEAN, "target": targets[0],
             "layer": layer, "time_step": int(t) + 1,
             **{key: float(clean[key].sel(layer=layer, time=t)) for key in
                ("accuracy", "ci_low", "ci_high", "chance")}}
            for layer in clean["layer"].values for t in clean["time"].values]
    layers = layer_names(data)
    last = [select(data, layer, time=-1, condition=INCONGRUENT) for layer in layers]
    for target in targets:
        results = probe_cells(last, target, **options)
        rows += [{"model": model.label, "condition": INCONGRUENT, "target": target,
                  "layer": layer, "time_step": data.sizes["time"], "accuracy": result.accuracy,
                  "ci_low": result.ci[0], "ci_high": result.ci[1], "chance": result.chance}
                 for layer, result in zip(layers, results, strict=True)]
    return pd.DataFrame(rows, columns=COLUMNS)


def plot(table: pd.DataFrame, folds: int, groups: str | None, Cs: Sequence[float]) -> Figure:
    """Top: clean digit decoding heatmaps; bottom: heard vs seen digit per layer."""
    from repsim import plotting

    models = list(dict.fromkeys(table["model"]))
    targets = list(dict.fromkeys(table.loc[table["condition"] == INCONGRUENT, "target"]))
    word = targets[0].split("_", 1)[1] if targets else "digit"  # "digit" or "class"
    fig, axes = plotting.new_figure(2, len(models), panel_size=(5.6, 3.9))
    for ax, model in zip(axes[0], models, strict=True):
        clean = table[(table["model"] == model) & (table["condition"] == CLEAN)]
        grid = clean.pivot(index="layer", columns="time_step", values="accuracy")
        grid = grid.loc[list(dict.fromkeys(clean["layer"]))]
        plotting.heatmap(ax, 100 * grid.to_numpy(), row_labels=list(grid.index),
                         col_labels=[str(t) for t in grid.columns], vmin=0, vmax=100,
                         cbar_label="probe accuracy (%)", fmt=".0f")
        ax.set_xlabel("time step")
        ax.set_ylabel("layer")
        ax.set_title(f"{model}\n{word} decoding, clean stimuli")
    for ax, model in zip(axes[1], models, strict=True):
        rows = table[(table["model"] == model) & (table["condition"] == INCONGRUENT)]
        layers = list(dict.fromkeys(rows["layer"]))
        streams = list(dict.fromkeys(layer_stream(layer) for layer in layers))
        series = [(target, stream) for target in targets for stream in streams]
        for n, (target, stream) in enumerate(series):  # one line per decoded label and stream
            modality = target.split("_")[0]
            hits = rows[(rows["target"] == target)
                        & (rows["layer"].map(layer_stream) == stream)]
            x = np.array([layer_depth(layer, layers) for layer in hits["layer"]])
            x = x + 0.06 * (n - (len(series) - 1) / 2)  # keep error bars apart
            errors = 100 * np.abs(hits[["ci_low", "ci_high"]].to_numpy().T
                                  - hits["accuracy"].to_numpy())
            ax.errorbar(x, 100 * hits["accuracy"], yerr=errors, capsize=3,
                        color=plotting.MODALITY_COLORS[modality],
                        marker=plotting.MARKERS[streams.index(stream) % len(plotting.MARKERS)],
                        linestyle=plotting.LINESTYLES[
                            streams.index(stream) % len(plotting.LINESTYLES)],
                        label=f"{modality} {word} from {stream} layers")
        plotting.chance_line(ax, 100 * float(rows["chance"].mean()))
        depths = sorted({layer_depth(layer, layers) for layer in layers})
        ax.set_xticks(depths, [str(d) for d in depths])
        ax.set_xlim(min(depths) - 0.5, max(depths) + 0.5)
        ax.set_ylim(0, 102)
        ax.set_xlabel("layer depth")
        ax.set_ylabel("probe accuracy (%)")
        step = int(rows["time_step"].max())
        ax.set_title(f"{model}\nheard vs seen {word}, incongruent stimuli (t={step})")
        ax.legend(loc="best", fontsize="small")
    held_out = f", {groups} held out of training folds" if groups else ""
    regularization = (f"C = {Cs[0]:g}" if len(Cs) == 1 else
                      f"C chosen by nested CV from {len(Cs)} values")
    fig.suptitle(f"Linear decoding per layer: early vs late fusion ({folds}-fold "
                 f"cross-validation, {regularization}, 95 % Wilson CI{held_out})")
    return fig


def run(inputs: Sequence[str | Path] = (), *, runs_dir: str | Path = RUNS_DIR,
        dataset: str | None = None, out_dir: str | Path = FIGURES_DIR, folds: int = 5,
        seed: int = 0, groups: str | None = None,
        Cs: Sequence[float] = DEFAULT_CS) -> list[Path]:
    """Make the figure from activation files / run dirs (or the early and late runs)."""
    from repsim import plotting

    check_out_dir(out_dir)
    table, used = table_per_model(
        lambda model, data: probe_table(model, data, folds=folds, seed=seed, groups=groups,
                                        Cs=Cs),
        inputs, runs_dir, dataset)
    return plotting.save_outputs(lambda: plot(table, folds, groups, Cs), table, out_dir, NAME,
                                 used)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m repsim.figures probes_by_layer [ACTIVATIONS_OR_RUN_DIR ...]``."""
    parser = figure_parser(NAME, __doc__, EXAMPLES, MODELS_HELP)
    parser.add_argument("--folds", type=int, default=5,
                        help="outer cross-validation folds (default: 5)")
    parser.add_argument("--groups", default=None,
                        help="a stimulus coordinate (e.g. speaker) whose values never span "
                             "training and test folds (default: none, stratified folds)")
    parser.add_argument("--Cs", type=float, nargs="+", default=list(DEFAULT_CS), metavar="C",
                        help="inverse regularization strengths; several are chosen from by "
                             "nested cross-validation (slow, e.g. "
                             f"{' '.join(f'{c:g}' for c in NESTED_CS)}); default: one, C=1")
    parser.add_argument("--seed", type=int, default=0, help="fold shuffling seed (default: 0)")
    return run_cli(parser, run, argv)
