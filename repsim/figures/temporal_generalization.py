"""When information appears in each layer, and whether its code holds over time.

For every layer of each model and each target: a decoder is trained on the states at one time
step and tested on held-out stimuli at every step (temporal generalization, King & Dehaene
2014): the matrix of cross-validated accuracies, training step by test step. Its diagonal is
the sliding decoder; a square of high accuracies means a code that holds over time, a
diagonal band one that changes, a below-chance band one that reverses. The onset, the first
step at which the sliding decoder exceeds chance by a cluster-based permutation test over
time (labels permuted within folds and the decoders refitted, ``--permutations`` of them), is
marked on the diagonal; ``stability`` is (mean off-diagonal - chance) / (mean diagonal -
chance), shown where there is an onset (without one it divides by noise). Targets are any
stimulus-table columns (``--target``) on one condition's stimuli
(``--condition``); repsim's own files default to the heard and the seen digit of the
incongruent stimuli (audio digit != visual digit), which tells when each sense's digit
enters each layer. Files side by side, e.g. early vs late fusion. Definitions:
``repsim.analysis.temporal``.

Writes ``temporal_generalization.png``/``.pdf`` and ``temporal_generalization.csv``: model,
condition, target, layer, train_step, test_step (1 = first step), accuracy, chance, and per
layer and target onset (a step, empty when none), onset_p and stability.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

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

NAME = "temporal_generalization"
COLUMNS = ["model", "condition", "target", "layer", "train_step", "test_step", "accuracy",
           "chance", "onset", "onset_p", "stability"]
PERMUTATIONS = 50
EXAMPLES = """examples:
  python analyses/temporal_generalization.py             # early and late runs under runs/
  python analyses/temporal_generalization.py --permutations 200 --groups speaker
  python analyses/temporal_generalization.py --files mine.h5 --target label --condition clean
"""


def questions(model: ModelInput, data: xr.Dataset, target: Sequence[str] | None,
              condition: str | None) -> tuple[list[str], str]:
    """The targets and the condition asked of one file: ``target`` on ``condition``, or
    repsim's defaults (the heard and the seen label, incongruent stimuli).

    Parameters
    ----------
    model, data
        One model and its activation file, as ``repsim.figures.base.open_model`` returns
        them.
    target
        The stimulus columns asked for; None: repsim's files: the heard and the seen label.
    condition
        The stimuli asked for; None: ``clean`` if the file has it, else its only condition
        (repsim's files with no ``target`` either: ``incongruent``).

    Returns
    -------
    tuple
        ``(targets, condition)``.

    Raises
    ------
    ValueError
        For a column or condition the file lacks, or no ``target`` for a file that is not one
        of repsim's probe-set files.
    """
    labels = repsim_defaults(data)
    if labels is not None and not target and condition is None:
        return list(labels), pick_condition(data, INCONGRUENT, model.path)
    targets = (check_targets(data, target, model.path) if target
               else list(labels) if labels is not None
               else require_targets(data, None, model.path))
    return targets, pick_condition(data, condition, model.path)


def generalization_table(model: ModelInput, data: xr.Dataset, *, targets: Sequence[str],
                         condition: str, groups: str | None = None, folds: int = 5,
                         seed: int = 0, C: float = 1.0, permutations: int = PERMUTATIONS,
                         alpha: float = 0.05, progress: Any = None) -> pd.DataFrame:
    """Rows of every layer x target x training step x test step, from
    [repsim.labelled.temporal_generalization_all][].

    Parameters
    ----------
    model, data
        One model and its activation file, as ``repsim.figures.base.open_model`` returns
        them.
    targets
        The stimulus columns to decode.
    condition
        The stimuli.
    groups
        A stimulus coordinate whose values never span training and test folds; None:
        stratified folds.
    folds
        The cross-validation folds.
    seed
        Seeds the folds and the permutations.
    C
        The inverse regularization strength of the decoders.
    permutations
        Label permutations (decoders refitted) for the onset test; 0: no onset.
    alpha
        The level of the onset test, over all steps.
    progress
        Called after each layer and target (e.g. a progress bar's ``update``).

    Returns
    -------
    pandas.DataFrame
        Rows in ``COLUMNS``; ``onset`` and ``onset_p`` NaN where there is none (or no
        permutations).

    Raises
    ------
    ValueError
        As [repsim.labelled.temporal_generalization_all][].
    """
    import pandas as pd

    from repsim.labelled import temporal_generalization_all

    result = temporal_generalization_all(
        data, targets, condition=condition, groups=groups, folds=folds, seed=seed, C=C,
        n_permutations=permutations, alpha=alpha, progress=progress)
    rows = []
    for layer, steps in zip(result["layer"].values, result["steps"].values, strict=True):
        for target in result["target"].values:
            cell = result.sel(layer=layer, target=target)
            summary = {"chance": float(cell["chance"]), "stability": float(cell["stability"]),
                       "onset": float(cell["onset"]) if "onset" in cell else math.nan,
                       "onset_p": float(cell["onset_p"]) if "onset_p" in cell else math.nan}
            rows += [{"model": model.label, "condition": condition, "target": str(target),
                      "layer": str(layer), "train_step": t + 1, "test_step": u + 1,
                      "accuracy": float(cell["accuracy"][t, u]), **summary}
                     for t in range(int(steps)) for u in range(int(steps))]
    return pd.DataFrame(rows, columns=COLUMNS)


def plot(table: pd.DataFrame, title: str) -> Figure:
    """A matrix per layer (rows) and model x target (columns), training step up the side
    and test step along the bottom, coloured around chance; the onset marked on the
    diagonal.

    Parameters
    ----------
    table
        The rows of
        [generalization_table][repsim.figures.temporal_generalization.generalization_table] of
        every model.
    title
        What the title calls the models (e.g. "early vs late fusion").

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.colors import TwoSlopeNorm
    from matplotlib.figure import Figure


    columns = list(dict.fromkeys(zip(table["model"], table["target"], strict=True)))
    layers = {model: list(dict.fromkeys(table.loc[table["model"] == model, "layer"]))
              for model, _ in columns}
    rows = max(map(len, layers.values()))
    steps = int(table["train_step"].max())
    side = 1.2 + 0.28 * steps
    fig = Figure(figsize=(side * len(columns) + 1.2, side * rows + 1.0), layout="constrained")
    axes = fig.subplots(rows, len(columns), squeeze=False)
    chances = table["chance"].unique()
    image = None
    for c, (model, target) in enumerate(columns):
        for r in range(rows):
            ax = axes[r, c]
            if r >= len(layers[model]):
                ax.set_visible(False)
                continue
            layer = layers[model][r]
            cell = table[(table["model"] == model) & (table["target"] == target)
                         & (table["layer"] == layer)]
            grid = cell.pivot(index="train_step", columns="test_step", values="accuracy")
            chance = float(cell["chance"].iloc[0])
            norm = TwoSlopeNorm(vcenter=chance, vmin=0.0, vmax=1.0)
            n = len(grid)
            image = ax.imshow(grid.to_numpy(), origin="lower", cmap="RdBu_r", norm=norm,
                              extent=(0.5, n + 0.5, 0.5, n + 0.5))
            onset, stability = cell["onset"].iloc[0], cell["stability"].iloc[0]
            if not math.isnan(onset):
                ax.plot([onset], [onset], marker="^", markersize=9, color="white",
                        markeredgecolor="black", linestyle="none")
            ticks = range(1, n + 1) if n <= 10 else range(1, n + 1, max(1, n // 8))
            ax.set_xticks(list(ticks))
            ax.set_yticks(list(ticks))
            ax.tick_params(labelsize="small")
            ax.grid(False)
            onset_text = "no onset" if math.isnan(onset) else f"onset t={int(onset)}"
            # a ratio over the diagonal's excess over chance: meaningless without an onset
            stability_text = ("" if math.isnan(stability) or math.isnan(onset)
                              else f", stability {stability:.2f}")
            ax.set_title(f"{layer}: {onset_text}{stability_text}", fontsize="small")
            if r == 0:
                ax.set_title(f"{model}\n{_target_word(target)}\n{layer}: {onset_text}"
                             f"{stability_text}", fontsize="small")
            if c == 0:
                ax.set_ylabel("trained at step")
            if r == len(layers[model]) - 1:
                ax.set_xlabel("tested at step")
            if len(chances) > 1:  # each panel its own chance: its own colour bar
                fig.colorbar(image, ax=ax, shrink=0.8, label="accuracy")
    if image is not None and len(chances) == 1:
        fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.6,
                     label=f"decoding accuracy (white = chance, {float(chances[0]):.2f})")
    condition = ", ".join(dict.fromkeys(table["condition"]))
    fig.suptitle(f"Temporal generalization: {title} ({condition} stimuli; triangle: onset, "
                 f"cluster permutation test)", fontsize="medium")
    return fig


def _target_word(target: str) -> str:
    """repsim's ``audio_digit`` as "heard digit", ``visual_digit`` as "seen digit"."""
    sense, _, kind = target.partition("_")
    return {"audio": f"heard {kind}", "visual": f"seen {kind}"}.get(sense, target) \
        if kind in ("digit", "class") else target


def run(inputs: Sequence[str | Path] = (), *, runs_dir: str | Path = RUNS_DIR,
        dataset: str | None = None, out_dir: str | Path = FIGURES_DIR,
        target: Sequence[str] | None = None, condition: str | None = None,
        groups: str | None = None, folds: int = 5, seed: int = 0, C: float = 1.0,
        permutations: int = PERMUTATIONS, alpha: float = 0.05,
        progress: bool = False) -> list[Path]:
    """Make the figure from activation files / run dirs (or the early and late runs):
    temporal generalization of each ``target`` on the ``condition`` stimuli (repsim's files:
    the heard and the seen digit of the incongruent stimuli).

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
        Stimulus-table columns to decode; None: repsim's files: the audio and the visual
        digit; other files: required.
    condition
        Which stimuli; None: ``clean`` (repsim's files: ``incongruent``).
    groups
        A stimulus coordinate (e.g. ``speaker``) whose values never span training and test
        folds; None: stratified folds.
    folds
        The cross-validation folds.
    seed
        Seeds the folds and the permutations.
    C
        The inverse regularization strength of the decoders.
    permutations
        Label permutations (decoders refitted) for the onset test; 0: no onset.
    alpha
        The level of the onset test, over all steps.
    progress
        Show a progress bar per model (layers x targets).

    Returns
    -------
    list of pathlib.Path
        ``temporal_generalization.png``, ``.pdf`` and ``.csv`` in ``out_dir``.

    Raises
    ------
    FileNotFoundError
        For an input that is neither an activation file nor a run directory with one, or,
        with no inputs, no early and late runs with activation files under ``runs_dir``.
    ValueError
        For a negative ``permutations``, ``alpha`` outside (0, 1), an output directory that
        cannot be written, runs under ``runs_dir`` that mix experiments, a column or condition
        a file lacks, no ``target`` for a file that is not one of repsim's probe-set files, or
        a class or group count too small for the folds.
    """
    from tqdm import tqdm

    from repsim import plotting

    if permutations < 0:
        raise ValueError(f"--permutations must be >= 0, got {permutations}")
    if not 0 < alpha < 1:
        raise ValueError(f"--alpha must be between 0 and 1, got {alpha}")
    check_out_dir(out_dir)
    models: list[ModelInput] = []

    def table(model: ModelInput, data: xr.Dataset) -> pd.DataFrame:
        from repsim.activations import layer_names

        models.append(model)
        targets, chosen = questions(model, data, target, condition)
        with tqdm(total=len(layer_names(data)) * len(targets), unit="layer x target",
                  desc=model.label, disable=not progress) as bar:
            return generalization_table(model, data, targets=targets, condition=chosen,
                                        groups=groups, folds=folds, seed=seed, C=C,
                                        permutations=permutations, alpha=alpha,
                                        progress=bar.update)

    rows, used = table_per_model(table, inputs, runs_dir, dataset)
    return plotting.save_outputs(lambda: plot(rows, models_title(models)), rows, out_dir,
                                 NAME, used)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m repsim.figures temporal_generalization [INPUT ...]``.

    Parameters
    ----------
    argv
        The arguments after the command; None: ``sys.argv[1:]``.

    Returns
    -------
    int
        The exit status: 0, or 2 after one ``error:`` line for a user error.
    """
    from repsim.cli import add_progress

    parser = figure_parser(NAME, __doc__, EXAMPLES, MODELS_HELP)
    parser.add_argument("--target", nargs="+", default=None, metavar="COLUMN",
                        help="stimulus-table columns to decode (default: repsim's files: the "
                             "audio and the visual digit; other files: required)")
    parser.add_argument("--condition", default=None,
                        help=f"which stimuli (default: {CLEAN}; repsim's files: "
                             f"{INCONGRUENT})")
    parser.add_argument("--groups", default=None,
                        help="a stimulus coordinate (e.g. speaker) whose values never span "
                             "training and test folds (default: none, stratified folds)")
    parser.add_argument("--folds", type=int, default=5,
                        help="cross-validation folds (default: 5)")
    parser.add_argument("--C", type=float, default=1.0,
                        help="inverse regularization strength of the decoders (default: 1)")
    parser.add_argument("--permutations", type=int, default=PERMUTATIONS,
                        help="label permutations (decoders refitted) for the onset test; 0 = "
                             f"no onset (default: {PERMUTATIONS})")
    parser.add_argument("--alpha", type=float, default=0.05,
                        help="level of the onset test, over all steps (default: 0.05)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the folds and the permutations (default: 0)")
    add_progress(parser)
    return run_cli(parser, _run_with_progress, argv)


def _run_with_progress(*, progress: bool | None = None, **options: Any) -> list[Path]:
    """``run`` with ``--progress/--no-progress`` as the commands read it."""
    from repsim.cli import show_progress

    return run(progress=show_progress(progress), **options)
