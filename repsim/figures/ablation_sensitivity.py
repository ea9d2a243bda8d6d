"""Input-ablation sensitivity per layer and time step, and accuracy with an input removed.

For every layer x time step of each model: the sensitivity to removing each input, ``S = 1 -
CKA(h_intact, h_removed)`` on the same stimuli (matched by stimulus id); with two inputs, the
reliance index ``S_first / (S_first + S_second)`` (repsim's files: ``S_audio / (S_audio +
S_visual)``, 1 = only audio matters, 0 = only vision, 0.5 = both equally); and the model's
accuracy with each input removed, from the predictions stored in the activation file, against
the ``--target`` column (repsim's files: the digit; a file without predictions or target gets
no accuracy panel, and says so). Which conditions remove which input is read from the file
(``<input>_removed``, as ``repsim.record`` and ``repsim.extract`` write them) or named with
``--removal INPUT=CONDITION`` for conditions of a user's own making; the intact stimuli are
``--condition`` (default ``clean``). Definitions: ``repsim.analysis.ablation``.

Writes ``ablation_sensitivity.png``/``.pdf`` and ``ablation_sensitivity.csv``: model, measure
(``cka_sensitivity``, ``relative_change`` (``||h - h_removed|| / ||h||``), ``reliance_cka``,
``reliance_change``, ``accuracy``), removed (the input; ``none`` for the intact accuracy; empty
for reliance), layer and time_step (1 = first step; empty for accuracy), value (fractions).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

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
from repsim.figures.questions import (
    check_targets,
    parse_pairs,
    pick_condition,
    removals,
    repsim_defaults,
)
from repsim.rundir import RUNS_DIR
from repsim.runs import ModelInput

if TYPE_CHECKING:  # heavy libraries load where they are used: --help needs none
    import pandas as pd
    import xarray as xr
    from matplotlib.axes import Axes
    from matplotlib.colors import Colormap
    from matplotlib.figure import Figure

log = logging.getLogger("repsim")
NAME = "ablation_sensitivity"
COLUMNS = ["model", "measure", "removed", "layer", "time_step", "value"]
EXAMPLES = """examples:
  python analyses/ablation_sensitivity.py               # early and late runs under runs/
  python analyses/ablation_sensitivity.py --kernel rbf
  python analyses/ablation_sensitivity.py runs/synthetic-f2-s0/activations.h5 --out-dir out
  python analyses/ablation_sensitivity.py --files mine.h5 --removal audio=mute_a --target label
"""
# How a removed input is drawn: its colour map, and its name after "without".
_INPUT_STYLE = {"audio": ("Oranges", "audio"), "visual": ("Blues", "vision")}


def sensitivity_table(model: ModelInput, data: xr.Dataset, *, kernel: str = "linear",
                      condition: str | None = None, removal: Mapping[str, str] | None = None,
                      target: str | None = None) -> pd.DataFrame:
    """Sensitivity, relative change (and, with two inputs, reliance) per layer x time step,
    for each input removed from the ``condition`` stimuli; and the accuracy of the model's
    own predictions against ``target`` intact and with each input removed.

    Parameters
    ----------
    model, data
        One model and its activation file, as ``repsim.figures.base.open_model`` returns
        them.
    kernel
        The CKA kernel of the sensitivity.
    condition
        The intact stimuli; None: ``clean`` if the file has it, else its only condition.
    removal
        ``{input: condition}`` of the conditions that remove each input; None: those the
        file's ``condition_changes`` describe (repsim's files: both senses, always).
    target
        The stimulus column the predictions are scored against; None: repsim's files: the
        heard label; any other file gets no accuracy rows (logged).

    Returns
    -------
    pandas.DataFrame
        Rows in ``COLUMNS``: ``cka_sensitivity`` and ``relative_change`` per removed input,
        ``reliance_cka`` and ``reliance_change`` with two inputs, and ``accuracy`` (none
        without predictions in the file, logged).

    Raises
    ------
    ValueError
        For a condition or ``target`` column the file lacks, no removal condition, a
        repsim probe-set file without predictions, or as
        [repsim.labelled.ablation_sensitivity][].
    """
    import pandas as pd

    from repsim.analysis import ablation_sensitivity

    intact = pick_condition(data, condition, model.path)
    if removal is None and repsim_defaults(data) is not None:  # both senses, always
        removal = {modality: removed_condition(modality) for modality in MODALITIES}
    removed = removals(data, intact, removal, model.path)
    result = ablation_sensitivity(data, kernel=kernel, intact_condition=intact,
                                  removed_conditions=removed)
    rows = []
    for measure in ("cka_sensitivity", "relative_change"):
        for name in result["removed"].values:
            rows += _grid_rows(model, measure, str(name), result[measure].sel(removed=name),
                               result["steps"])
    for measure in ("reliance_cka", "reliance_change"):
        if measure in result:
            rows += _grid_rows(model, measure, None, result[measure], result["steps"])
    rows += _accuracy_rows(model, data, intact, removed, target)
    return pd.DataFrame(rows, columns=COLUMNS)


def _accuracy_rows(model: ModelInput, data: xr.Dataset, intact: str,
                   removed: Mapping[str, str], target: str | None) -> list[dict]:
    """Accuracy intact and with each input removed; none (logged) without predictions or a
    target to score them against."""
    from repsim.activations import stimulus_table

    labels = repsim_defaults(data)
    column = check_targets(data, [target], model.path)[0] if target else (
        labels[0] if labels is not None else None)
    if "prediction" not in data.coords and "prediction" not in data:
        if labels is not None:
            raise ValueError(f"{model.path} holds no model predictions; re-extract it")
        log.info("%s holds no predictions (record it with logits=...): no accuracy panel",
                 model.path)
        return []
    if column is None:
        log.info("no --target to score %s's predictions against: no accuracy panel",
                 model.path)
        return []
    rows = []
    for name, condition in {"none": intact, **removed}.items():
        table = stimulus_table(data, condition)
        correct = table["prediction"].to_numpy() == table[column].to_numpy()
        rows.append({"model": model.label, "measure": "accuracy", "removed": name,
                     "value": float(correct.mean())})
    return rows


def _grid_rows(model: ModelInput, measure: str, removed: str | None, grid, steps) -> list[dict]:
    return [{"model": model.label, "measure": measure, "removed": removed, "layer": str(layer),
             "time_step": t + 1, "value": float(grid.sel(layer=layer, time=t))}
            for layer, count in zip(grid["layer"].values, steps.values, strict=True)
            for t in range(int(count))]


def plot(table: pd.DataFrame, kernel: str, chance: float | None = 0.1) -> Figure:
    """Per model: a sensitivity heatmap per removed input (and the reliance with two); beside
    them accuracy bars.

    Parameters
    ----------
    table
        The rows of [sensitivity_table][repsim.figures.ablation_sensitivity.sensitivity_table]
        of every model.
    kernel
        The CKA kernel, for the title.
    chance
        Where the accuracy panel draws its chance line (1 / the number of classes); None:
        none.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure

    from repsim import plotting

    models = list(dict.fromkeys(table["model"]))
    inputs = list(dict.fromkeys(table.loc[table["measure"] == "cka_sensitivity", "removed"]))
    reliance = bool((table["measure"] == "reliance_cka").any())
    panels: list[tuple[str, str | None]] = [("cka_sensitivity", name) for name in inputs]
    panels += [("reliance_cka", None)] if reliance else []
    steps = int(table["time_step"].max())
    panel_width = 2.2 + 0.45 * steps  # room for a two-decimal label in every cell
    accuracy = table[table["measure"] == "accuracy"]
    side = 4.0 if len(accuracy) else 0.0
    fig = Figure(figsize=(len(panels) * panel_width + side, 0.6 + 3.4 * len(models)),
                 layout="constrained")
    if side:
        left, right = fig.subfigures(1, 2, width_ratios=[len(panels) * panel_width, side],
                                     squeeze=False)[0]
    else:
        left = fig
    axes = left.subplots(len(models), len(panels), squeeze=False)
    sensitivity = table[table["measure"] == "cka_sensitivity"]
    vmax = max(float(sensitivity["value"].max()), 0.05)
    for row, model in zip(axes, models, strict=True):
        for ax, (measure, removed) in zip(row, panels, strict=True):
            rows = table[(table["model"] == model) & (table["measure"] == measure)]
            if removed is not None:
                rows = rows[rows["removed"] == removed]
            layers = list(dict.fromkeys(rows["layer"]))
            grid = rows.pivot(index="layer", columns="time_step", values="value").loc[layers]
            cmap: str | Colormap
            cmap, word = _INPUT_STYLE.get(str(removed), (plotting.SEQUENTIAL_CMAP, removed))
            if removed is None:
                cmap = plotting.RELIANCE_CMAP
                label = (f"reliance on {inputs[0]}" if inputs[0] != "audio"
                         else "reliance on audio")
            else:
                label = f"1 - CKA, {word} removed"
            plotting.heatmap(ax, grid.to_numpy(), row_labels=layers,
                             col_labels=[str(int(t)) for t in grid.columns], cmap=cmap,
                             vmax=1.0 if removed is None else vmax, cbar_label=label)
            ax.set_xlabel("time step")
            ax.set_ylabel("layer")
            what = (f"sensitivity without {word}" if removed is not None else
                    f"reliance, {inputs[0]} / ({' + '.join(inputs)})")
            ax.set_title(f"{model}\n{what}", fontsize="medium")
    left.suptitle(f"Which input does each layer need? Sensitivity = 1 - {kernel} CKA "
                  f"(intact vs input removed)")
    if side:
        _accuracy_bars(right.subplots(), accuracy, models, inputs, chance)
    return fig


def _accuracy_bars(ax: Axes, accuracy: pd.DataFrame, models: list[str], inputs: list[str],
                   chance: float | None) -> None:
    """Grouped bars: each model's accuracy intact and with each input removed."""
    from repsim import plotting

    bars = [("none", "intact", "0.55")] + [
        (name, f"{_INPUT_STYLE.get(name, ('', name))[1]} removed",
         plotting.MODALITY_COLORS.get(name, plotting.PALETTE[i % len(plotting.PALETTE)]))
        for i, name in enumerate(inputs)]
    width = 0.8 / len(bars)
    x = np.arange(len(models))
    for i, (removed, label, color) in enumerate(bars):
        values = [accuracy.loc[(accuracy["model"] == m) & (accuracy["removed"] == removed),
                               "value"] for m in models]
        heights = [float(v.item()) if len(v) else np.nan for v in values]
        ax.bar(x + (i - (len(bars) - 1) / 2) * width, 100 * np.asarray(heights), width,
               color=color, label=label)
    if chance is not None:
        plotting.chance_line(ax, 100 * chance)
    ax.set_xticks(x, [m.replace(" (", "\n(") for m in models])
    ax.set_ylim(0, 105)
    ax.set_ylabel("accuracy (%)")
    ax.set_title("Accuracy with an\ninput removed")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), fontsize="small", ncols=2)


def run(inputs: Sequence[str | Path] = (), *, runs_dir: str | Path = RUNS_DIR,
        dataset: str | None = None, out_dir: str | Path = FIGURES_DIR,
        kernel: str = "linear", condition: str | None = None,
        removal: Mapping[str, str] | Sequence[str] | None = None,
        target: str | None = None) -> list[Path]:
    """Make the figure from activation files / run dirs (or the early and late runs).

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
    kernel
        The CKA kernel of the sensitivity.
    condition
        The intact stimuli; None: ``clean`` (or a file's only condition).
    removal
        ``{input: condition}`` (or ``INPUT=CONDITION`` words) for removal conditions the file
        does not describe; None: the file's ``<input>_removed`` conditions.
    target
        The column the predictions are scored against; None: repsim's files: the digit; other
        files: no accuracy panel.

    Returns
    -------
    list of pathlib.Path
        ``ablation_sensitivity.png``, ``.pdf`` and ``.csv`` in ``out_dir``.

    Raises
    ------
    FileNotFoundError
        For an input that is neither an activation file nor a run directory with one, or,
        with no inputs, no early and late runs with activation files under ``runs_dir``.
    ValueError
        For a malformed ``INPUT=CONDITION`` word, an output directory that cannot be written,
        runs under ``runs_dir`` that mix experiments, a condition or ``target`` column a file
        lacks, a file with no condition that removes an input (and no ``removal``), one of
        repsim's probe-set files without predictions, intact states constant across stimuli
        (no CKA), or models tested on datasets with different numbers of classes.
    """
    from repsim import plotting
    from repsim.activations.labels import chance_level

    if removal is not None and not isinstance(removal, Mapping):
        removal = parse_pairs(removal, "--removal")
    check_out_dir(out_dir)
    chances = []

    def table(model: ModelInput, data) -> pd.DataFrame:
        if repsim_defaults(data) is not None and not target:
            chances.append(chance_level(data))
        elif target and target in data.coords:  # guessing among the column's values
            chances.append(1.0 / len(np.unique(data[target].values)))
        return sensitivity_table(model, data, kernel=kernel, condition=condition,
                                 removal=removal, target=target)

    rows, used = table_per_model(table, inputs, runs_dir, dataset)
    if len(set(chances)) > 1:
        raise ValueError("the models were tested on datasets with different numbers of "
                         "classes; draw them in separate figures")
    chance = chances[0] if chances else None
    return plotting.save_outputs(lambda: plot(rows, kernel, chance), rows, out_dir, NAME, used)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m repsim.figures ablation_sensitivity [INPUT ...]``.

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
    parser.add_argument("--kernel", choices=KERNELS, default="linear",
                        help="CKA kernel of the sensitivity (default: linear)")
    parser.add_argument("--condition", default=None,
                        help=f"the intact stimuli (default: {CLEAN})")
    parser.add_argument("--removal", nargs="+", default=None, metavar="INPUT=CONDITION",
                        help="the condition that removes each input, e.g. audio=mute_a "
                             "(default: the file's <input>_removed conditions)")
    parser.add_argument("--target", default=None, metavar="COLUMN",
                        help="stimulus column the model's predictions are scored against "
                             "(default: repsim's files: the digit; other files: no accuracy "
                             "panel)")
    return run_cli(parser, run, argv)
