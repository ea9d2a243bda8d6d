"""RSA per layer: label RDMs, and how well each layer fits categorical model RDMs over time.

(a) Condition-averaged RDMs per layer at its last time step: one pattern per value of the
first target (the mean over its stimuli), distance between the patterns, values in order.
(b) At every time step, the layer's RDM compared with one categorical model RDM per target
("same <target>": 0 between patterns of one value, 1 otherwise; Spearman correlation by
default), with 95 % bootstrap bands that resample the patterns. With several targets the
patterns are the means over the stimuli of each combination of the targets' values (cells);
with one target each stimulus is its own pattern (averaging by the only hypothesis would leave
nothing to test). Targets are any columns of the files' stimulus table (``--target``) on the
stimuli of one condition (``--condition``). repsim's own files default to (a) the digit on
clean stimuli and (b) "same audio digit" vs "same visual digit" on the incongruent stimuli
(audio digit != visual digit): where a layer turns from one hypothesis to both, the streams
have met.

Writes ``rsa_by_layer.png``/``.pdf`` and ``rsa_by_layer.csv``, one row per number: model,
layer, time_step (1 = first step), quantity (``rdm``: an entry between label_a and label_b,
two values of the first target; ``model_correlation``: the comparison with the model RDM of
``hypothesis``, a target column), label_a, label_b, hypothesis, value, ci_low, ci_high.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

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
from repsim.figures.questions import check_targets, pick_condition, repsim_defaults, require_targets
from repsim.rundir import RUNS_DIR
from repsim.runs import ModelInput

if TYPE_CHECKING:  # heavy libraries load where they are used: --help needs none
    import pandas as pd
    import xarray as xr
    from matplotlib.figure import Figure

NAME = "rsa_by_layer"
COLUMNS = ["model", "layer", "time_step", "quantity", "label_a", "label_b", "hypothesis",
           "value", "ci_low", "ci_high"]
EXAMPLES = """examples:
  python analyses/rsa_by_layer.py                       # early and late runs under runs/
  python analyses/rsa_by_layer.py --method kendall_tau_a --n-boot 1000
  python analyses/rsa_by_layer.py runs/synthetic-f1-s0 runs/synthetic-f2-s0 runs/synthetic-f3-s0
  python analyses/rsa_by_layer.py --files mine.h5 --target label speaker --condition clean
"""


def label_rdms(model: ModelInput, data: xr.Dataset, *, target: str, condition: str = CLEAN,
               metric: str = "correlation") -> pd.DataFrame:
    """Rows of the RDM of ``target``'s value means, every layer at its last time step.

    Parameters
    ----------
    model, data
        One model and its activation file, as ``repsim.figures.base.open_model`` returns
        them.
    target
        The stimulus column whose values' mean patterns are compared.
    condition
        The stimuli.
    metric
        The patterns' dissimilarity (as [repsim.analysis.rdm][]).

    Returns
    -------
    pandas.DataFrame
        One row per RDM entry (``quantity`` ``rdm``) between ``label_a`` and ``label_b``,
        values in order.
    """
    import pandas as pd

    from repsim.activations import layer_names, layer_states, stimulus_table, time_steps
    from repsim.analysis import average_by_condition, rdm

    labels = stimulus_table(data, condition)[target].to_numpy()
    rows = []
    for layer in layer_names(data):
        states = layer_states(data, layer, condition, time=-1)
        patterns, values = average_by_condition(states, labels)
        matrix = rdm(patterns, metric=metric)
        step = time_steps(data, layer)
        rows += [{"model": model.label, "layer": layer, "time_step": step, "quantity": "rdm",
                  "label_a": _plain(a), "label_b": _plain(b), "value": matrix[i, j]}
                 for i, a in enumerate(values) for j, b in enumerate(values)]
    return pd.DataFrame(rows)


def _plain(value) -> object:
    """A label value as a Python number or string (for the CSV)."""
    return value.item() if isinstance(value, np.generic) else value


def hypothesis_correlations(model: ModelInput, data: xr.Dataset, *, targets: Sequence[str],
                            condition: str = INCONGRUENT, metric: str = "correlation",
                            method: str = "spearman", n_boot: int = 100, seed: int = 0
                            ) -> pd.DataFrame:
    """Correlation of each layer's RDM with each target's categorical model RDM at every time
    step, with percentile bootstrap intervals over patterns (module docstring: cells for
    several targets, stimuli for one).

    Parameters
    ----------
    model, data
        One model and its activation file, as ``repsim.figures.base.open_model`` returns
        them.
    targets
        The stimulus columns, one categorical model RDM each.
    condition
        The stimuli.
    metric
        The patterns' dissimilarity.
    method
        How RDMs are compared (as [repsim.analysis.compare_rdms][]).
    n_boot
        Bootstrap resamples of the patterns for the intervals; 0: none (NaN intervals).
    seed
        Seeds the bootstrap.

    Returns
    -------
    pandas.DataFrame
        One row per layer, time step and target (``quantity`` ``model_correlation``,
        ``hypothesis`` the target): the correlation and its interval.
    """
    import pandas as pd

    from repsim.activations import layer_names, layer_states, stimulus_table, time_steps
    from repsim.analysis import (
        average_by_condition,
        bootstrap_compare_rdms,
        categorical_rdm,
        compare_rdms,
        rdm,
    )

    table = stimulus_table(data, condition)
    labels = [table[target].to_numpy() for target in targets]
    rows = []
    for layer in layer_names(data):  # one layer in memory at a time, read at once
        steps = time_steps(data, layer)
        whole = layer_states(data, layer, condition)  # (stimuli, time, features)
        states = [whole[:, t] for t in range(steps)]
        if len(targets) > 1:
            averaged = [average_by_condition(x, *labels) for x in states]
            patterns, cells = [p for p, _ in averaged], averaged[0][1]
            models = [categorical_rdm(cells[:, i]) for i in range(len(targets))]
        else:
            patterns, models = states, [categorical_rdm(labels[0])]
        rdms = rdm(patterns, metric=metric)
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


def questions(model: ModelInput, data: xr.Dataset, target: Sequence[str] | None,
              condition: str | None) -> tuple[str, str, list[str], str]:
    """What is asked of one file: the ``target`` columns on the ``condition`` stimuli, or
    repsim's defaults when neither is given (module docstring).

    Parameters
    ----------
    model, data
        One model and its activation file, as ``repsim.figures.base.open_model`` returns
        them.
    target
        The stimulus columns asked for; None: repsim's files: the heard and the seen label.
    condition
        The stimuli asked for; None: ``clean`` if the file has it, else its only condition.

    Returns
    -------
    tuple
        ``(RDM target, RDM condition, fitted targets, fit condition)``.

    Raises
    ------
    ValueError
        For a column or condition the file lacks, or no ``target`` for a file that is not one
        of repsim's probe-set files.
    """
    labels = repsim_defaults(data)
    if labels is not None and not target and condition is None:
        return labels[0], CLEAN, list(labels), INCONGRUENT
    targets = (check_targets(data, target, model.path) if target
               else list(labels) if labels is not None
               else require_targets(data, None, model.path))
    chosen = pick_condition(data, condition, model.path)
    return targets[0], chosen, targets, chosen


def plot(table: pd.DataFrame, method: str, metric: str,
         asked: dict[str, tuple[str, str, list[str], str]]) -> Figure:
    """Per model: a row of label RDMs (one per layer) over a row of hypothesis time courses.

    Parameters
    ----------
    table
        The rows of [label_rdms][repsim.figures.rsa_by_layer.label_rdms] and
        [hypothesis_correlations][repsim.figures.rsa_by_layer.hypothesis_correlations] of
        every model.
    method, metric
        How the RDMs were compared and made, for the labels.
    asked
        Each model's [questions][repsim.figures.rsa_by_layer.questions], by label.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from repsim import plotting

    models = list(dict.fromkeys(table["model"]))
    layers = {m: list(dict.fromkeys(table.loc[table["model"] == m, "layer"])) for m in models}
    ncols = max(map(len, layers.values()))
    fig, axes = plotting.new_figure(2 * len(models), ncols, panel_size=(3.7, 3.3))
    rdm_rows = table[table["quantity"] == "rdm"]
    correlations = table[table["quantity"] == "model_correlation"]
    vmax = float(rdm_rows["value"].max())
    hypotheses = list(dict.fromkeys(correlations["hypothesis"]))
    rdm_target, rdm_condition, _, fit_condition = asked[models[0]]
    word = _label_word(rdm_target)
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
            order = list(dict.fromkeys(rows["label_a"]))
            matrix = rows.pivot(index="label_a", columns="label_b", values="value")
            matrix = matrix.loc[order, order]
            names = [_label_text(value) for value in order]
            plotting.heatmap(heat_ax, matrix.to_numpy(), row_labels=names, col_labels=names,
                             vmax=vmax, cbar_label=f"{metric} distance", cmap="rocket_r")
            heat_ax.set_xlabel(word)
            heat_ax.set_ylabel(word)
            heat_ax.set_title(f"{model}: {layer}\n{word} RDM, last step", fontsize="medium")
            fit_condition = asked[model][3]
            for h, hypothesis in enumerate(hypotheses):
                fits = correlations[(correlations["model"] == model)
                                    & (correlations["layer"] == layer)
                                    & (correlations["hypothesis"] == hypothesis)]
                stream = hypothesis.split("_")[0]
                color = plotting.MODALITY_COLORS.get(stream, plotting.PALETTE[
                    h % len(plotting.PALETTE)])
                plotting.line_with_band(line_ax, fits["time_step"], fits["value"],
                                        fits["ci_low"], fits["ci_high"], color=color,
                                        marker=plotting.MARKERS[h % len(plotting.MARKERS)],
                                        label=f"same {_label_word(hypothesis)}")
            line_ax.axhline(0.0, color="0.45", linewidth=0.8, zorder=0)
            line_ax.set_ylim(low - 0.05, high + 0.05)
            line_ax.set_xticks(sorted(correlations.loc[
                (correlations["model"] == model) & (correlations["layer"] == layer),
                "time_step"].unique()))
            line_ax.set_xlabel("time step")
            line_ax.set_ylabel(f"RDM fit ({method.replace('_', ' ')})")
            line_ax.set_title(f"{model}: {layer}\n{fit_condition} stimuli", fontsize="medium")
            if c == 0:
                line_ax.legend(loc="best", fontsize="small", title="model RDM",
                               title_fontsize="small")
    if len(hypotheses) == 2 and all(h.split("_")[0] in ("audio", "visual") for h in hypotheses):
        kind = hypotheses[0].split("_", 1)[1]  # "digit" or "class"
        fig.suptitle(f"Which {kind} does each layer represent? {kind.capitalize()} RDMs "
                     f"({rdm_condition} stimuli) and\neach layer's fit to the heard vs the seen "
                     f"{kind} ({fit_condition} stimuli, 95 % bootstrap CI)")
    else:
        fig.suptitle(f"What does each layer represent? {word.capitalize()} RDMs and each "
                     f"layer's fit to\n{' and '.join(map(_label_word, hypotheses))} "
                     f"({fit_condition} stimuli, 95 % bootstrap CI)")
    return fig


def _label_text(value: object) -> str:
    """A label value on an axis: ``3`` for a class index the CSV table holds as ``3.0``."""
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _label_word(target: str) -> str:
    """How a column reads in a title: repsim's ``audio_digit`` as "audio digit"."""
    return target.replace("_", " ", 1) if target.split("_")[0] in ("audio", "visual") \
        else target


def run(inputs: Sequence[str | Path] = (), *, runs_dir: str | Path = RUNS_DIR,
        dataset: str | None = None, out_dir: str | Path = FIGURES_DIR,
        target: Sequence[str] | None = None, condition: str | None = None,
        method: str = "spearman", metric: str = "correlation", n_boot: int = 100,
        seed: int = 0) -> list[Path]:
    """Make the figure from activation files / run dirs (or the early and late runs): RDMs of
    the first ``target`` and the fits of each target's model RDM on the ``condition``
    stimuli (repsim's files: the heard and the seen digit by default).

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
        Stimulus-table columns whose categorical model RDMs are fitted; None: repsim's files:
        the audio and the visual digit; other files: required.
    condition
        Which stimuli; None: ``clean`` (repsim's files: ``clean`` for the RDMs,
        ``incongruent`` for the fits).
    method
        How RDMs are compared.
    metric
        The patterns' dissimilarity.
    n_boot
        Bootstrap resamples for the bands; 0: none.
    seed
        Seeds the bootstrap.

    Returns
    -------
    list of pathlib.Path
        ``rsa_by_layer.png``, ``.pdf`` and ``.csv`` in ``out_dir``.

    Raises
    ------
    FileNotFoundError
        For an input that is neither an activation file nor a run directory with one, or,
        with no inputs, no early and late runs with activation files under ``runs_dir``.
    ValueError
        For an unknown method, a negative ``n_boot``, an output directory that cannot be
        written, runs under ``runs_dir`` that mix experiments, a column or condition a file
        lacks, or no ``target`` for a file that is not one of repsim's probe-set files.
    """
    import pandas as pd

    from repsim import plotting

    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if n_boot < 0:
        raise ValueError(f"--n-boot must be >= 0, got {n_boot}")
    check_out_dir(out_dir)

    asked: dict[str, tuple[str, str, list[str], str]] = {}

    def tables(model: ModelInput, data) -> pd.DataFrame:
        rdm_target, rdm_condition, targets, fit_condition = asked.setdefault(
            model.label, questions(model, data, target, condition))
        return pd.concat([
            label_rdms(model, data, target=rdm_target, condition=rdm_condition, metric=metric),
            hypothesis_correlations(model, data, targets=targets, condition=fit_condition,
                                    metric=metric, method=method, n_boot=n_boot, seed=seed)])

    table, used = table_per_model(tables, inputs, runs_dir, dataset)
    table = table.reindex(columns=COLUMNS)
    return plotting.save_outputs(lambda: plot(table, method, metric, asked), table, out_dir,
                                 NAME, used)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m repsim.figures rsa_by_layer [ACTIVATIONS_OR_RUN_DIR ...]``.

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
                        help="stimulus-table columns whose categorical model RDMs are fitted "
                             "(default: repsim's files: the audio and the visual digit; other "
                             "files: required)")
    parser.add_argument("--condition", default=None,
                        help=f"which stimuli (default: {CLEAN}; repsim's files: {CLEAN} for "
                             f"the RDMs, {INCONGRUENT} for the fits)")
    parser.add_argument("--method", choices=METHODS, default="spearman",
                        help="how RDMs are compared (default: spearman)")
    parser.add_argument("--metric", choices=METRICS, default="correlation",
                        help="pattern dissimilarity (default: correlation)")
    parser.add_argument("--n-boot", type=int, default=100,
                        help="bootstrap resamples for the bands; 0 = none (default: 100)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: 0)")
    return run_cli(parser, run, argv)
