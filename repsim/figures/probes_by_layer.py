"""Linear decoding per layer and time step: any stimulus column, or heard vs seen digit.

(a) Cross-validated linear-probe accuracy per layer x time step, one heatmap per model and
target; (b) the accuracy at each layer's last step, by layer depth (and stream), with 95 %
Wilson intervals and the chance level. What is decoded is any column of the files' stimulus
table (``--target``, several draw several panels) on the stimuli of one condition
(``--condition``; default ``clean``). repsim's own files default to today's figure: (a) the
digit on clean stimuli, (b) the audio and the visual digit of incongruent stimuli (audio digit
!= visual digit), which tells which sense a layer follows. Layer order and depth come from
the files. Probes: ``repsim.analysis`` multinomial logistic regression on standardized
features, stratified K-fold, C = 1 by default (``--Cs`` with several values chooses C by
nested cross-validation, at a much higher cost).

Writes ``probes_by_layer.png``/``.pdf`` and ``probes_by_layer.csv``: model, condition, target
(the decoded column), layer, time_step (1 = first step), accuracy, ci_low, ci_high, chance
(accuracies as fractions).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from repsim.analysis.choices import DEFAULT_CS as NESTED_CS
from repsim.conditions import CLEAN, INCONGRUENT
from repsim.figures.base import (
    FIGURES_DIR,
    MODELS_HELP,
    check_out_dir,
    figure_parser,
    models_title,
    run_cli,
    table_per_model,
)
from repsim.figures.questions import (
    check_targets,
    pick_condition,
    repsim_defaults,
    require_targets,
)
from repsim.rundir import RUNS_DIR
from repsim.runs import ModelInput

if TYPE_CHECKING:  # heavy libraries load where they are used: --help needs none
    import pandas as pd
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
  python analyses/probes_by_layer.py --files mine.h5 --target label speaker --condition clean
"""


def probe_table(model: ModelInput, data: xr.Dataset, *, target: Sequence[str] | None = None,
                condition: str | None = None, folds: int = 5, seed: int = 0,
                groups: str | None = None, Cs: Sequence[float] = DEFAULT_CS) -> pd.DataFrame:
    """Decoding of each ``target`` column on the stimuli of ``condition``, every layer x time
    step. With neither given, a repsim probe-set file gets its defaults (module docstring);
    any other file needs ``target``.

    Parameters
    ----------
    model, data
        One model and its activation file, as ``repsim.figures.base.open_model`` returns
        them.
    target
        The stimulus columns to decode; None: repsim's files: the digit.
    condition
        The stimuli; None: ``clean`` if the file has it, else its only condition.
    folds
        The outer cross-validation folds.
    seed
        Shuffles the folds.
    groups
        A stimulus coordinate (e.g. ``speaker``) whose values never span training and test
        folds; None: stratified folds.
    Cs
        The inverse regularization strengths; several are chosen from by nested
        cross-validation.

    Returns
    -------
    pandas.DataFrame
        Rows in ``COLUMNS``: every layer x time step of each target (repsim's defaults: the
        digit on clean stimuli at every step, and the heard and the seen digit of the
        incongruent stimuli at each layer's last step).

    Raises
    ------
    ValueError
        For a column or condition the file lacks, no ``target`` for a file that is not one of
        repsim's probe-set files, or as [repsim.labelled.probe_all][].
    """
    import pandas as pd

    options: dict[str, Any] = {"folds": folds, "seed": seed, "groups": groups, "Cs": tuple(Cs)}
    labels = repsim_defaults(data)
    if labels is not None and not target and condition is None:
        return pd.concat([_grid_rows(model, data, labels[0], CLEAN, options),
                          _last_step_rows(model, data, labels, INCONGRUENT, options)],
                         ignore_index=True)
    targets = (check_targets(data, target, model.path) if target
               else list(labels[:1]) if labels is not None
               else require_targets(data, None, model.path))
    chosen = pick_condition(data, condition, model.path)
    return pd.concat([_grid_rows(model, data, name, chosen, options) for name in targets],
                     ignore_index=True)


def _grid_rows(model: ModelInput, data: xr.Dataset, target: str, condition: str,
               options: dict[str, Any]) -> pd.DataFrame:
    """Rows of ``target``'s decoding on ``condition`` at every layer x time step."""
    import pandas as pd

    from repsim.analysis import probe_all

    grid = probe_all(data, target, condition=condition, **options)
    rows = [{"model": model.label, "condition": condition, "target": target, "layer": layer,
             "time_step": t + 1, **{key: float(grid[key].sel(layer=layer, time=t)) for key in
                                    ("accuracy", "ci_low", "ci_high", "chance")}}
            for layer, steps in zip(grid["layer"].values, grid["steps"].values, strict=True)
            for t in range(int(steps))]
    return pd.DataFrame(rows, columns=COLUMNS)


def _last_step_rows(model: ModelInput, data: xr.Dataset, targets: Sequence[str],
                    condition: str, options: dict[str, Any]) -> pd.DataFrame:
    """Rows of each target's decoding on ``condition`` at each layer's last step only."""
    import pandas as pd

    from repsim.activations import layer_names, select, time_steps
    from repsim.analysis import probe_cells

    layers = layer_names(data)
    last = [select(data, layer, time=-1, condition=condition) for layer in layers]
    rows = []
    for target in targets:
        results = probe_cells(last, target, **options)
        rows += [{"model": model.label, "condition": condition, "target": target,
                  "layer": layer, "time_step": time_steps(data, layer),
                  "accuracy": result.accuracy, "ci_low": result.ci[0], "ci_high": result.ci[1],
                  "chance": result.chance}
                 for layer, result in zip(layers, results, strict=True)]
    return pd.DataFrame(rows, columns=COLUMNS)


def plot(table: pd.DataFrame, places: dict[str, tuple[dict[str, int], dict[str, str]]],
         title: str, folds: int, groups: str | None, Cs: Sequence[float]) -> Figure:
    """One column per model: a decoding heatmap per grid target, and at the bottom each
    target's accuracy at each layer's last step, by depth and stream.

    Parameters
    ----------
    table
        The rows of [probe_table][repsim.figures.probes_by_layer.probe_table] of every model.
    places
        Each model's ``(layer depths, layer streams)`` as its file gives them, by label.
    title
        What the title calls the models (e.g. "early vs late fusion").
    folds, groups, Cs
        The probes' settings, for the title.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from repsim import plotting

    models = list(dict.fromkeys(table["model"]))
    grids = _grid_panels(table)
    targets = list(dict.fromkeys(target for _, target, _ in grids))
    fig, axes = plotting.new_figure(len(targets) + 1, len(models), panel_size=(5.6, 3.9))
    for ax in axes[:-1].flat:
        ax.set_visible(False)
    for model, target, condition in grids:
        ax = axes[targets.index(target), models.index(model)]
        ax.set_visible(True)
        rows = table[(table["model"] == model) & (table["target"] == target)
                     & (table["condition"] == condition)]
        grid = rows.pivot(index="layer", columns="time_step", values="accuracy")
        grid = grid.loc[list(dict.fromkeys(rows["layer"]))]
        plotting.heatmap(ax, 100 * grid.to_numpy(), row_labels=list(grid.index),
                         col_labels=[str(t) for t in grid.columns], vmin=0, vmax=100,
                         cbar_label="probe accuracy (%)", fmt=".0f")
        ax.set_xlabel("time step")
        ax.set_ylabel("layer")
        ax.set_title(f"{model}\n{target} decoding, {condition} stimuli")
    for ax, model in zip(axes[-1], models, strict=True):
        _last_step_panel(ax, table[table["model"] == model], *places[model])
        ax.set_title(f"{model}\n{_last_step_title(table[table['model'] == model])}")
    held_out = f", {groups} held out of training folds" if groups else ""
    regularization = (f"C = {Cs[0]:g}" if len(Cs) == 1 else
                      f"C chosen by nested CV from {len(Cs)} values")
    fig.suptitle(f"Linear decoding per layer: {title} ({folds}-fold cross-validation, "
                 f"{regularization}, 95 % Wilson CI{held_out})")
    return fig


def _grid_panels(table: pd.DataFrame) -> list[tuple[str, str, str]]:
    """``(model, target, condition)`` of each heatmap: the targets decoded at every step
    (repsim's incongruent rows are at the last step only)."""
    keys = table[["model", "target", "condition"]].drop_duplicates()
    steps = table.groupby(["model", "target", "condition"], sort=False)["time_step"].nunique()
    return [(model, target, condition) for model, target, condition
            in keys.itertuples(index=False, name=None)
            if steps[(model, target, condition)] > 1 or condition != INCONGRUENT]


def _last_step_panel(ax, rows: pd.DataFrame, depths: dict[str, int], streams: dict[str, str]
                     ) -> None:
    """One line per target and stream: accuracy at each layer's last step, by depth."""
    from repsim import plotting

    incongruent = rows[rows["condition"] == INCONGRUENT]
    rows = incongruent if len(incongruent) else rows
    last = rows[rows["time_step"] == rows.groupby("layer")["time_step"].transform("max")]
    layers = list(dict.fromkeys(last["layer"]))
    targets = list(dict.fromkeys(last["target"]))
    stream_names = list(dict.fromkeys(streams[layer] for layer in layers))
    series = [(target, stream) for target in targets for stream in stream_names]
    for n, (target, stream) in enumerate(series):
        hits = last[(last["target"] == target) & (last["layer"].map(streams) == stream)]
        x = np.array([depths[layer] for layer in hits["layer"]], dtype=float)
        x = x + 0.06 * (n - (len(series) - 1) / 2)  # keep error bars apart
        errors = 100 * np.abs(hits[["ci_low", "ci_high"]].to_numpy().T
                              - hits["accuracy"].to_numpy())
        color = _target_color(target, targets)
        ax.errorbar(x, 100 * hits["accuracy"], yerr=errors, capsize=3, color=color,
                    marker=plotting.MARKERS[stream_names.index(stream) % len(plotting.MARKERS)],
                    linestyle=plotting.LINESTYLES[
                        stream_names.index(stream) % len(plotting.LINESTYLES)],
                    label=_series_label(target, stream))
    chances = last.groupby("target", sort=False)["chance"].mean()
    if chances.nunique() == 1:
        plotting.chance_line(ax, 100 * float(chances.iloc[0]))
    else:  # each target's own chance, in its colour
        for target, level in chances.items():
            ax.axhline(100 * level, color=_target_color(str(target), targets), linestyle="--",
                       linewidth=1.0, zorder=0, label=f"chance, {target}")
    ticks = sorted({depths[layer] for layer in layers})
    names = {depths[layer]: layer for layer in layers}
    one_each = len(ticks) == len(layers)  # one layer per depth: name it on the axis
    ax.set_xticks(ticks, [names[d] if one_each else str(d) for d in ticks])
    if one_each and max(map(len, names.values())) > 6:
        ax.tick_params(axis="x", labelrotation=30)
    ax.set_xlim(min(ticks) - 0.5, max(ticks) + 0.5)
    ax.set_ylim(0, 102)
    ax.set_xlabel("layer" if one_each else "layer depth")
    ax.set_ylabel("probe accuracy (%)")
    ax.legend(loc="best", fontsize="small")


def _target_color(target: str, targets: list[str]) -> str:
    """repsim's heard and seen labels in their senses' colours, a user's columns in turn."""
    from repsim import plotting

    return plotting.MODALITY_COLORS.get(target.split("_")[0], plotting.PALETTE[
        targets.index(target) % len(plotting.PALETTE)])


def _series_label(target: str, stream: str) -> str:
    """A legend entry: repsim's ``audio_digit`` as "audio digit", a user's column as it is."""
    name = target.replace("_", " ", 1) if target.split("_")[0] in ("audio", "visual") \
        else target
    return f"{name} from {stream} layers" if stream else name


def _last_step_title(rows: pd.DataFrame) -> str:
    incongruent = rows[rows["condition"] == INCONGRUENT]
    if len(incongruent):
        word = str(incongruent["target"].iloc[0]).split("_", 1)[-1]  # "digit" or "class"
        step = int(incongruent["time_step"].max())
        return f"heard vs seen {word}, incongruent stimuli (t={step})"
    return f"each layer's last step, {rows['condition'].iloc[0]} stimuli"


def run(inputs: Sequence[str | Path] = (), *, runs_dir: str | Path = RUNS_DIR,
        dataset: str | None = None, out_dir: str | Path = FIGURES_DIR,
        target: Sequence[str] | None = None, condition: str | None = None, folds: int = 5,
        seed: int = 0, groups: str | None = None,
        Cs: Sequence[float] = DEFAULT_CS) -> list[Path]:
    """Make the figure from activation files / run dirs (or the early and late runs):
    decoding of each ``target`` column on the ``condition`` stimuli (repsim's files: the
    heard and the seen digit by default).

    Parameters
    ----------
    inputs
        Activation files or run directories; none: the first-seed early and late runs under
        ``runs_dir``.
    runs_dir
        Where the runs are when no inputs are named.
    dataset
        Only runs of this dataset (needed when ``runs_dir`` holds several).
    out_dir
        Where the figure (``.png``, ``.pdf``) and its numbers (``.csv``) go.
    target
        Stimulus-table columns to decode, e.g. ``["label", "speaker"]``; None: repsim's
        files: the digit, and heard vs seen on incongruent stimuli; other files: required.
    condition
        Which stimuli to decode on; None: ``clean``.
    folds
        The outer cross-validation folds.
    seed
        Shuffles the folds.
    groups
        A stimulus coordinate (e.g. ``speaker``) whose values never span training and test
        folds; None: stratified folds.
    Cs
        Inverse regularization strengths: one (default C = 1), or several chosen from by
        nested cross-validation (slow).

    Returns
    -------
    list of pathlib.Path
        ``probes_by_layer.png``, ``.pdf`` and ``.csv`` in ``out_dir``.

    Raises
    ------
    FileNotFoundError
        For an input that is neither an activation file nor a run directory with one, or,
        with no inputs, no early and late runs with activation files under ``runs_dir``.
    ValueError
        For an output directory that cannot be written, runs under ``runs_dir`` that mix
        experiments, a column or condition a file lacks, no ``target`` for a file that is not
        one of repsim's probe-set files, or a class or group count too small for the folds.
    """
    from repsim import activations, plotting

    check_out_dir(out_dir)
    places, models = {}, []

    def table(model: ModelInput, data: xr.Dataset) -> pd.DataFrame:
        places[model.label] = (activations.layer_depths(data), activations.layer_streams(data))
        models.append(model)
        return probe_table(model, data, target=target, condition=condition, folds=folds,
                           seed=seed, groups=groups, Cs=Cs)

    rows, used = table_per_model(table, inputs, runs_dir, dataset)
    return plotting.save_outputs(
        lambda: plot(rows, places, models_title(models), folds, groups, Cs), rows, out_dir,
        NAME, used)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m repsim.figures probes_by_layer [ACTIVATIONS_OR_RUN_DIR ...]``.

    Parameters
    ----------
    argv
        The arguments after the command; None: ``sys.argv[1:]``.

    Returns
    -------
    int
        The exit status: 0, or 2 after one ``error:`` line for a user error.
    """
    parser = figure_parser(NAME, __doc__, EXAMPLES, MODELS_HELP)
    parser.add_argument("--target", nargs="+", default=None, metavar="COLUMN",
                        help="stimulus-table columns to decode, e.g. label speaker (default: "
                             "repsim's files: the digit, and heard vs seen on incongruent "
                             "stimuli; other files: required)")
    parser.add_argument("--condition", default=None,
                        help=f"which stimuli to decode on (default: {CLEAN})")
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
