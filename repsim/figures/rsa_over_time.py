"""How a layer's representational geometry evolves, and when two networks' geometries agree.

Cross-temporal similarity: RSA (the Spearman correlation of two RDMs, by default) or CKA
between every time step of one layer and every time step of another, on the same stimuli
(aligned by stimulus id): a matrix, first layer's step up the side, second's along the
bottom. One file: each layer with itself (does its geometry hold from step to step?); two
files: the layers of matched depth (repsim's early fusion ``fused.d`` with the late model's
``audio.d`` and ``visual.d``; any other model: its layers in file order), or the pairs named
with ``--pairs``. RDMs are of single stimuli, or with ``--target`` of the mean pattern of each
value of that stimulus column (condition-averaged, as rsatoolbox's ``descriptor``). Stimuli
of one condition (``--condition``, default ``clean``). Definitions:
``repsim.analysis.cross_temporal_similarity``.

Writes ``rsa_over_time.png``/``.pdf`` and ``rsa_over_time.csv``: x_model, y_model, measure
(``rsa`` or ``cka``), x_layer, y_layer, x_step, y_step (1 = first step), value.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from repsim.analysis.choices import KERNELS, METHODS, METRICS
from repsim.conditions import CLEAN
from repsim.figures.base import (
    FIGURES_DIR,
    check_out_dir,
    distinct_labels,
    figure_parser,
    models_to_compare,
    open_model,
    run_cli,
)
from repsim.figures.questions import check_targets, pick_condition
from repsim.rundir import RUNS_DIR
from repsim.runs import ModelInput

if TYPE_CHECKING:  # heavy libraries load where they are used: --help needs none
    import pandas as pd
    import xarray as xr
    from matplotlib.figure import Figure

NAME = "rsa_over_time"
COLUMNS = ["x_model", "y_model", "measure", "x_layer", "y_layer", "x_step", "y_step", "value"]
MEASURES = ("rsa", "cka")
EXAMPLES = """examples:
  python analyses/rsa_over_time.py                         # early vs late runs under runs/
  python analyses/rsa_over_time.py runs/synthetic-f1-s0    # each layer with itself
  python analyses/rsa_over_time.py --files mine.h5 theirs.h5 --measure cka
  python analyses/rsa_over_time.py --files mine.h5 theirs.h5 --pairs encoder:fused.2
"""


def layer_pairs(x: tuple[ModelInput, xr.Dataset], y: tuple[ModelInput, xr.Dataset] | None,
                pairs: Sequence[str] = ()) -> list[tuple[str, str]]:
    """Which layers to compare: ``pairs``, else each layer with itself (one file), else the
    layers of matched depth, else (no depth shared) every pair.

    Parameters
    ----------
    x, y
        ``(ModelInput, Dataset)`` pairs as ``repsim.figures.base.open_model`` returns them;
        ``y`` None: one file.
    pairs
        ``X_LAYER:Y_LAYER`` words naming layers of the two files.

    Returns
    -------
    list of tuple of str
        ``(x layer, y layer)`` pairs.

    Raises
    ------
    ValueError
        For a word that is not ``X_LAYER:Y_LAYER`` of the two files' layers.
    """
    from repsim.activations import layer_depths, layer_names

    x_layers = layer_names(x[1])
    y_layers = x_layers if y is None else layer_names(y[1])
    if pairs:
        chosen = []
        for word in pairs:
            a, sep, b = word.partition(":")
            if not sep or a not in x_layers or b not in y_layers:
                raise ValueError(f"--pairs takes X_LAYER:Y_LAYER of the two files' layers, got "
                                 f"{word!r} (layers: {', '.join(x_layers)} and "
                                 f"{', '.join(y_layers)})")
            chosen.append((a, b))
        return chosen
    if y is None:
        return [(layer, layer) for layer in x_layers]
    x_depth, y_depth = layer_depths(x[1]), layer_depths(y[1])
    matched = [(a, b) for a in x_layers for b in y_layers if x_depth[a] == y_depth[b]]
    return matched or [(a, b) for a in x_layers for b in y_layers]


def similarity_table(x: tuple[ModelInput, xr.Dataset], y: tuple[ModelInput, xr.Dataset],
                     pairs: Sequence[tuple[str, str]], *, condition: str, measure: str = "rsa",
                     target: str | None = None, metric: str = "correlation",
                     method: str = "spearman", kernel: str = "linear") -> pd.DataFrame:
    """Rows of the cross-temporal similarity of each pair of layers.

    ``y``'s stimuli are put in ``x``'s order by stimulus id.

    Parameters
    ----------
    x, y
        ``(ModelInput, Dataset)`` pairs as ``repsim.figures.base.open_model`` returns them
        (``y`` may be ``x``).
    pairs
        ``(x layer, y layer)`` pairs to compare.
    condition
        The stimuli.
    measure
        ``"rsa"`` or ``"cka"``.
    target
        (RSA) RDMs of the mean pattern of each value of this stimulus column; None: of
        single stimuli.
    metric
        (RSA) The RDMs' dissimilarity.
    method
        (RSA) How RDMs are compared.
    kernel
        (CKA) The kernel.

    Returns
    -------
    pandas.DataFrame
        Rows in ``COLUMNS``: every step of each x layer against every step of its y layer.

    Raises
    ------
    ValueError
        For a condition a file lacks, files that hold different stimuli, and as
        [cross_temporal_similarity][repsim.analysis.temporal.cross_temporal_similarity].
    """
    import pandas as pd

    from repsim.activations import select, stimulus_ids
    from repsim.analysis.temporal import cross_temporal_similarity, rdm_movie

    (x_model, x_data), (y_model, y_data) = x, y
    order = stimulus_ids(x_data, condition)
    rows = []
    for a, b in pairs:
        first = select(x_data, a, condition=condition)
        second = select(y_data, b, condition=condition, order=order)
        if measure == "rsa" and target is not None:  # RDMs of each label value's mean
            labels = first[target].values
            values = _compare_movies(rdm_movie(_steps(first), metric, labels=labels),
                                     rdm_movie(_steps(second), metric, labels=labels), method)
        else:
            values = cross_temporal_similarity(first, second, measure, metric=metric,
                                               method=method, kernel=kernel)
        rows += [{"x_model": x_model.label, "y_model": y_model.label, "measure": measure,
                  "x_layer": a, "y_layer": b, "x_step": t + 1, "y_step": u + 1,
                  "value": float(values[t, u])}
                 for t in range(values.shape[0]) for u in range(values.shape[1])]
    return pd.DataFrame(rows, columns=COLUMNS)


def _steps(da: xr.DataArray) -> np.ndarray:
    """A layer's ``(stimulus, time, features)`` values."""
    values = np.asarray(da.values, dtype=np.float64)
    return values.reshape(*values.shape[:2], -1)


def _compare_movies(a: np.ndarray, b: np.ndarray, method: str) -> np.ndarray:
    """Every RDM of one movie compared with every RDM of another: ``(len(a), len(b))``."""
    from repsim.analysis import compare_rdms

    return np.asarray(compare_rdms(a, b, method=method)).reshape(len(a), len(b))


def plot(table: pd.DataFrame, condition: str, what: str) -> Figure:
    """One matrix per pair of layers, with one colour bar.

    Parameters
    ----------
    table
        The rows of [similarity_table][repsim.figures.rsa_over_time.similarity_table].
    condition
        The stimuli, for the title.
    what
        The colour bar's label.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure

    from repsim import plotting

    pairs = list(dict.fromkeys(zip(table["x_model"], table["y_model"], table["x_layer"],
                                   table["y_layer"], strict=True)))
    columns = min(4, len(pairs))
    rows = -(-len(pairs) // columns)
    steps = int(max(table["x_step"].max(), table["y_step"].max()))
    side = 1.6 + 0.25 * steps
    fig = Figure(figsize=(side * columns + 1.4, side * rows + 1.0), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False)
    measure = table["measure"].iloc[0]
    low = -1.0 if measure == "rsa" and (table["value"] < 0).any() else 0.0
    image = None
    for ax, (x_model, y_model, a, b) in zip(axes.flat, pairs, strict=False):
        cell = table[(table["x_model"] == x_model) & (table["y_model"] == y_model)
                     & (table["x_layer"] == a) & (table["y_layer"] == b)]
        grid = cell.pivot(index="x_step", columns="y_step", values="value")
        image = ax.imshow(grid.to_numpy(), origin="lower", cmap=plotting.SEQUENTIAL_CMAP,
                          vmin=low, vmax=1.0, aspect="auto",
                          extent=(0.5, grid.shape[1] + 0.5, 0.5, grid.shape[0] + 0.5))
        ax.grid(False)
        ax.tick_params(labelsize="small")
        same = x_model == y_model
        ax.set_title(f"{a} over time" if same and a == b else
                     f"{a} vs {b}" if same else f"{x_model}: {a}\nvs {y_model}: {b}",
                     fontsize="small")
        ax.set_ylabel("step" if same and a == b else f"{a}, step")  # the title names models
        ax.set_xlabel("step" if same and a == b else f"{b}, step")
    for ax in list(axes.flat)[len(pairs):]:
        ax.set_visible(False)
    if image is not None:
        fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.7, label=what)
    models = list(dict.fromkeys([*table["x_model"], *table["y_model"]]))
    fig.suptitle(f"Cross-temporal similarity: {' vs '.join(models)} ({condition} stimuli)",
                 fontsize="medium")
    return fig


def run(inputs: Sequence[str | Path] = (), *, runs_dir: str | Path = RUNS_DIR,
        dataset: str | None = None, out_dir: str | Path = FIGURES_DIR,
        condition: str | None = None, measure: str = "rsa", target: str | None = None,
        pairs: Sequence[str] = (), metric: str = "correlation", method: str = "spearman",
        kernel: str = "linear") -> list[Path]:
    """Make the figure from one activation file / run dir (each layer with itself) or two
    (layers of matched depth, or ``pairs``); none: the early and late runs.

    Parameters
    ----------
    inputs
        One or two activation files or run directories; none: the first-seed early and late
        runs under ``runs_dir``.
    runs_dir
        Where the runs are when no inputs are named.
    dataset
        Only runs of this dataset (needed when ``runs_dir`` holds several).
    out_dir
        Where the figure (``.png``, ``.pdf``) and its numbers (``.csv``) go.
    condition
        Which stimuli; None: ``clean`` if the first file has it, else its only condition.
    measure
        ``"rsa"`` (RDM correlation) or ``"cka"``.
    target
        RSA of the mean pattern of each value of this stimulus column; None: single stimuli.
    pairs
        ``X_LAYER:Y_LAYER`` words naming the layers to compare; none: each layer with itself,
        or the layers of matched depth.
    metric
        The RDMs' dissimilarity.
    method
        How RDMs are compared.
    kernel
        The CKA kernel with ``measure="cka"``.

    Returns
    -------
    list of pathlib.Path
        ``rsa_over_time.png``, ``.pdf`` and ``.csv`` in ``out_dir``.

    Raises
    ------
    FileNotFoundError
        For an input that is neither an activation file nor a run directory with one, or,
        with no inputs, no early and late runs with activation files under ``runs_dir``.
    ValueError
        For an unknown measure, ``target`` with CKA, more than two inputs, an output
        directory that cannot be written, runs under ``runs_dir`` that mix experiments, a
        condition or ``target`` column the first file lacks, a ``pairs`` word that is not
        ``X_LAYER:Y_LAYER`` of the two files' layers, or files that hold different stimuli.
    """
    from repsim import plotting

    if measure not in MEASURES:
        raise ValueError(f"unknown measure {measure!r}; choose one of {', '.join(MEASURES)}")
    if target is not None and measure != "rsa":
        raise ValueError("--target averages patterns for RSA's RDMs; CKA compares stimuli")
    if len(inputs) > 2:
        raise ValueError(f"give one or two inputs, got {len(inputs)}")
    check_out_dir(out_dir)
    opened = distinct_labels([open_model(model) for model in
                              models_to_compare(inputs, runs_dir, dataset)])
    x, y = opened[0], opened[1] if len(opened) > 1 else None
    chosen = pick_condition(x[1], condition, x[0].path)
    if target is not None:
        check_targets(x[1], [target], x[0].path)
    table = similarity_table(x, y or x, layer_pairs(x, y, pairs), condition=chosen,
                             measure=measure, target=target, metric=metric, method=method,
                             kernel=kernel)
    what = (f"RDM correlation ({method.replace('_', ' ')}, {metric} RDMs"
            f"{f', means per {target}' if target else ''})" if measure == "rsa"
            else f"{kernel} CKA")
    used = {model.path: model.label for model, _ in opened}
    return plotting.save_outputs(lambda: plot(table, chosen, what), table, out_dir, NAME, used)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m repsim.figures rsa_over_time [FILE [FILE]]``.

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
                           "one activation file or run directory (each layer with itself) or "
                           "two (layers of matched depth); default: the early and late runs "
                           "under --runs-dir")
    parser.add_argument("--measure", choices=MEASURES, default="rsa",
                        help="RSA (RDM correlation) or CKA (default: rsa)")
    parser.add_argument("--condition", default=None,
                        help=f"which stimuli (default: {CLEAN})")
    parser.add_argument("--target", default=None, metavar="COLUMN",
                        help="RSA of the mean pattern of each value of this stimulus column "
                             "(default: none, single stimuli)")
    parser.add_argument("--pairs", nargs="+", default=[], metavar="X_LAYER:Y_LAYER",
                        help="the layers to compare (default: each layer with itself, or the "
                             "layers of matched depth)")
    parser.add_argument("--metric", choices=METRICS, default="correlation",
                        help="RDM dissimilarity (default: correlation)")
    parser.add_argument("--method", choices=METHODS, default="spearman",
                        help="how RDMs are compared (default: spearman)")
    parser.add_argument("--kernel", choices=KERNELS, default="linear",
                        help="CKA kernel with --measure cka (default: linear)")
    return run_cli(parser, run, argv)
