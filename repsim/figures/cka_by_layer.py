"""CKA between every layer of one model and every layer of another (or of the same) model.

(a) A heatmap of CKA between each layer of the first model (rows) and each layer of the other
(columns) at their last time steps; (b) CKA at every time step between layers of matched depth
(repsim's early fusion: ``fused.d`` vs the late model's ``audio.d`` and ``visual.d``; any
other model: depth is the layer's place in its file's order); (c) as a reference, the CKA
between two seeds of the same (early) architecture, layer by layer, when a second seed
exists; (d) linear and RBF kernels side by side with ``--kernel both``. One file: CKA between
its own layers; several: the first against each of the others. Stimuli are aligned by
stimulus id; ``--condition`` picks which (default ``clean``). Layers with the same number of
time steps are compared at every step, layers with different numbers (a head called once)
at their last steps only. Layers are read one time step at a time; ``--minibatch N``
computes linear CKA from random batches of N stimuli (``repsim.analysis.cka.minibatch_cka``),
so that memory grows with N rather than with the number of stimuli squared.

Writes ``cka_by_layer.png``/``.pdf`` and ``cka_by_layer.csv`` with one row per pair of layers
and time step: comparison (``models`` or ``seed reference``), x_model, y_model, kernel, x_layer,
y_layer, time_step (1 = first step, of x_layer), y_time_step (of y_layer), cka.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from repsim.analysis.choices import KERNELS as CKA_KERNELS
from repsim.analysis.choices import MIN_DEBIASED_STIMULI
from repsim.conditions import CLEAN
from repsim.figures.base import (
    FIGURES_DIR,
    check_out_dir,
    default_models,
    distinct_labels,
    figure_parser,
    open_model,
    run_cli,
)
from repsim.figures.questions import pick_condition
from repsim.rundir import RUNS_DIR
from repsim.runs import ModelInput, model_input_of_run, resolve_model_input

if TYPE_CHECKING:  # heavy libraries load where they are used: --help needs none
    import pandas as pd
    import xarray as xr
    from matplotlib.figure import Figure

NAME = "cka_by_layer"
COLUMNS = ["comparison", "x_model", "y_model", "kernel", "x_layer", "y_layer", "time_step",
           "y_time_step", "cka"]
KERNELS = {**{kernel: (kernel,) for kernel in CKA_KERNELS}, "both": CKA_KERNELS}
KERNEL_NAMES = {"linear": "Linear", "rbf": "RBF"}
EXAMPLES = """examples:
  python analyses/cka_by_layer.py                    # early and late runs under runs/
  python analyses/cka_by_layer.py --kernel both      # linear and RBF CKA side by side
  python analyses/cka_by_layer.py runs/synthetic-f1-s0 runs/synthetic-f3-s0 \\
      --reference runs/synthetic-f1-s1
  python analyses/cka_by_layer.py early.h5 late.h5 --condition incongruent --out-dir out
  python analyses/cka_by_layer.py early.h5 late.h5 --minibatch 1000   # many stimuli
  python analyses/cka_by_layer.py --files my_model.h5 runs/synthetic-f1-s0/activations.h5
  python analyses/cka_by_layer.py --files my_model.h5            # its layers with each other
"""
Opened = tuple[ModelInput, "xr.Dataset"]


def cka_table(x: Opened, y: Opened, *, kernels: Sequence[str], condition: str,
              comparison: str, debiased: bool = False, minibatch: int | None = None,
              seed: int = 0) -> pd.DataFrame:
    """CKA between every layer of ``x`` and every layer of ``y``: at every step for layers
    with the same number of steps, at the last steps for layers whose numbers differ.

    ``y``'s stimuli are put in ``x``'s order by stimulus id. Each layer is read one time step
    at a time.

    Parameters
    ----------
    x, y
        ``(ModelInput, Dataset)`` pairs as ``repsim.figures.base.open_model`` returns them
        (``y`` may be ``x``).
    kernels
        The CKA kernels, ``"linear"`` and/or ``"rbf"``.
    condition
        The stimuli compared.
    comparison
        The ``comparison`` column of the rows (``models`` or ``seed reference``).
    debiased
        Use the unbiased HSIC estimator.
    minibatch
        (Linear kernel) CKA from
        [layer_similarity][repsim.figures.cka_by_layer.layer_similarity]'s random batches of
        that many stimuli; None: all stimuli at once.
    seed
        Shuffles the stimuli into ``minibatch`` batches.

    Returns
    -------
    pandas.DataFrame
        One row per pair of layers, kernel and time step, in ``COLUMNS``.

    Raises
    ------
    ValueError
        For a condition a file lacks, stimuli of ``y`` that are not ``x``'s, or a layer that
        CKA refuses (constant across stimuli).
    """
    import pandas as pd

    from repsim.activations import layer_names, select, stimulus_ids, time_steps

    (x_model, x_data), (y_model, y_data) = x, y
    order = stimulus_ids(x_data, condition)
    x_steps = {layer: time_steps(x_data, layer) for layer in layer_names(x_data)}
    y_steps = {layer: time_steps(y_data, layer) for layer in layer_names(y_data)}
    # (x layers, y layers, x step, y step) to compare: equal lengths at every step, the
    # others at their last steps
    blocks = [([a for a, n in x_steps.items() if n == length],
               [b for b, n in y_steps.items() if n == length], t, t)
              for length in sorted(set(x_steps.values()) & set(y_steps.values()))
              for t in range(length)]
    uneven = [(a, b) for a in x_steps for b in y_steps if x_steps[a] != y_steps[b]]
    blocks += [([a], [b], x_steps[a] - 1, y_steps[b] - 1) for a, b in uneven]
    rows = []
    for kernel in kernels:
        for x_layers, y_layers, t, u in blocks:
            values = layer_similarity(
                [select(x_data, layer, time=t, condition=condition) for layer in x_layers],
                [select(y_data, layer, time=u, condition=condition, order=order)
                 for layer in y_layers],
                kernel=kernel, debiased=debiased, minibatch=minibatch, seed=seed)
            for i, x_layer in enumerate(x_layers):
                for j, y_layer in enumerate(y_layers):
                    rows.append({"comparison": comparison, "x_model": x_model.label,
                                 "y_model": y_model.label, "kernel": kernel,
                                 "x_layer": x_layer, "y_layer": y_layer, "time_step": t + 1,
                                 "y_time_step": u + 1, "cka": float(values[i, j])})
    return pd.DataFrame(rows, columns=COLUMNS)


def layer_similarity(xs: Sequence, ys: Sequence, *, kernel: str = "linear",
                     debiased: bool = False, minibatch: int | None = None,
                     seed: int = 0) -> np.ndarray:
    """CKA between each of ``xs`` and each of ``ys``.

    Without ``minibatch``: [repsim.analysis.cka_matrix][repsim.analysis.cka.cka_matrix], whose
    n x n Gram matrices cost memory quadratic in the stimuli. With it:
    [repsim.analysis.cka.minibatch_cka][] over random batches of ``minibatch`` stimuli (all
    stimuli at once when there are no more), linear kernel, unbiased HSIC; with one batch this
    is exactly the debiased CKA.

    Parameters
    ----------
    xs, ys
        Lazy selections (DataArrays) of the same stimuli, read one at a time.
    kernel
        ``"linear"`` or ``"rbf"`` (without ``minibatch``).
    debiased
        Use the unbiased HSIC estimator (without ``minibatch``).
    minibatch
        The stimuli per batch; None: no batches.
    seed
        Shuffles the stimuli into batches.

    Returns
    -------
    numpy.ndarray
        ``(len(xs), len(ys))``.

    Raises
    ------
    ValueError
        As [repsim.analysis.cka_matrix][repsim.analysis.cka.cka_matrix] and
        [repsim.analysis.cka.minibatch_cka][] (a representation constant across stimuli).
    """
    from repsim.analysis import cka_matrix
    from repsim.analysis.cka import minibatch_cka, minibatches

    if minibatch is None:
        return np.asarray(cka_matrix(xs, ys, kernel=kernel, debiased=debiased))
    size = min(minibatch, xs[0].sizes["stimulus"])
    full = np.asarray(minibatch_cka(minibatches([*xs, *ys], size, seed=seed)))
    return full[:len(xs), len(xs):]


def plot(table: pd.DataFrame, condition: str, estimator: str,
         places: dict[str, tuple[dict[str, int], dict[str, str]]]) -> Figure:
    """(a) last-step heatmaps per compared pair and kernel; (b, c) CKA over time for layers of
    matched depth.

    Parameters
    ----------
    table
        The rows of [cka_table][repsim.figures.cka_by_layer.cka_table] (every comparison).
    condition
        The compared stimuli, for the title.
    estimator
        Ends the colour bar's label (e.g. ``" (debiased)"``).
    places
        Each model's ``(layer depths, layer streams)`` from its file, by label.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure

    from repsim import plotting

    models = table[table["comparison"] == "models"]
    reference = table[table["comparison"] == "seed reference"]
    kernels = list(dict.fromkeys(models["kernel"]))
    pairs = list(dict.fromkeys(zip(models["x_model"], models["y_model"], strict=True)))
    x_label = pairs[0][0]
    x_layers = [layer for layer in places[x_label][0] if layer in set(models["x_layer"])]
    within = len(pairs) == 1 and pairs[0][0] == pairs[0][1]
    x_depth = places[x_label][0]
    shared = set(x_depth.values()) & {d for _, y in pairs for d in places[y][0].values()}
    depths: list[int | None] = [] if within else [*sorted(shared)] or [None]

    top_height = (2.3 + 0.45 * len(x_layers)) * len(pairs)
    width = max(11.0, 5.4 * len(kernels) + 1.0, 3.6 * len(depths) + 1.0)
    entries = len(reference["x_layer"].unique()) + 2 * len(kernels) * len(pairs)
    bottom_height = 3.6 + 0.25 * math.ceil(entries / 2) if depths else 0.0
    fig = Figure(figsize=(width, top_height + bottom_height), layout="constrained")
    if depths:
        top, bottom = fig.subfigures(2, 1, height_ratios=[top_height, bottom_height],
                                     squeeze=False)[:, 0]
    else:
        top = fig
    heat_axes = top.subplots(len(pairs), len(kernels), squeeze=False)
    for row, (x_model, y_model) in zip(heat_axes, pairs, strict=True):
        pair = models[(models["x_model"] == x_model) & (models["y_model"] == y_model)]
        y_layers = [layer for layer in places[y_model][0] if layer in set(pair["y_layer"])]
        last = _last_steps(pair)
        for ax, kernel in zip(row, kernels, strict=True):
            at_last = last[last["kernel"] == kernel]
            matrix = at_last.pivot(index="x_layer", columns="y_layer", values="cka")
            plotting.heatmap(ax, matrix.loc[x_layers, y_layers].to_numpy(),
                             row_labels=x_layers, col_labels=y_layers,
                             cbar_label=f"{KERNEL_NAMES[kernel]} CKA{estimator}")
            ax.set_xlabel(f"{y_model} layer")
            ax.set_ylabel(f"{x_model}\nlayer")
            ax.set_title(f"{KERNEL_NAMES[kernel]} CKA, last time step ({_steps_text(pair)})")
    others = " vs ".join(dict.fromkeys(y for _, y in pairs))
    fig.suptitle(f"Layer similarity within {x_label}, {condition} stimuli" if within else
                 f"Layer similarity: {x_label} vs {others}, {condition} stimuli")
    if depths:
        _depth_panels(bottom, models, reference, depths, kernels, pairs, places)
    return fig


def _last_steps(pair: pd.DataFrame) -> pd.DataFrame:
    """Each layer pair's row at the x layer's last step (for uneven pairs, their only one)."""
    last = pair.groupby(["kernel", "x_layer", "y_layer"], sort=False)["time_step"].transform(
        "max")
    return pair[pair["time_step"] == last]


def _steps_text(pair: pd.DataFrame) -> str:
    steps = sorted(_last_steps(pair)["time_step"].unique())
    return f"t={steps[0]}" if len(steps) == 1 else "each layer's own"


def _depth_panels(bottom, models: pd.DataFrame, reference: pd.DataFrame,
                  depths: list[int | None],
                  kernels: list[str], pairs: list[tuple[str, str]],
                  places: dict[str, tuple[dict[str, int], dict[str, str]]]) -> None:
    """(b, c): one panel per depth that the compared models share, CKA over time steps."""
    from repsim import plotting

    line_axes = bottom.subplots(1, len(depths), squeeze=False, sharey=True)[0]
    styles = dict(zip(kernels, plotting.LINESTYLES, strict=False))
    x_depth = places[pairs[0][0]][0]
    for ax, depth in zip(line_axes, depths, strict=True):
        if depth is None:
            ax.text(0.5, 0.5, "no layers of matched depth", ha="center", va="center",
                    transform=ax.transAxes)
            ax.set_axis_off()
            continue
        steps: set[int] = set()
        for x_model, y_model in pairs:
            y_depth, y_stream = places[y_model]
            pair = models[(models["x_model"] == x_model) & (models["y_model"] == y_model)
                          & (models["time_step"] == models["y_time_step"])]
            matched = pair[np.array([x_depth[a] == depth == y_depth[b] for a, b in
                                     zip(pair["x_layer"], pair["y_layer"], strict=True)],
                                    dtype=bool)]
            steps |= set(matched["time_step"])
            for (kernel, x_layer, y_layer), rows in matched.groupby(
                    ["kernel", "x_layer", "y_layer"], sort=False):
                label = f"{x_layer} vs {y_layer}" + (f" ({y_model})" if len(pairs) > 1 else "")
                label += f" ({KERNEL_NAMES[str(kernel)]})" if len(kernels) > 1 else ""
                color = plotting.MODALITY_COLORS.get(
                    y_stream[str(y_layer)], plotting.PALETTE[list(y_depth).index(str(y_layer))
                                                             % len(plotting.PALETTE)])
                ax.plot(rows["time_step"], rows["cka"], marker="o", color=color,
                        linestyle=styles[str(kernel)], label=label)
        same = reference[np.array([a == b and x_depth.get(a) == depth for a, b in
                                   zip(reference["x_layer"], reference["y_layer"], strict=True)],
                                  dtype=bool)]
        for (kernel, layer), rows in same.groupby(["kernel", "x_layer"], sort=False):
            label = f"{layer} vs {layer}, other seed" + (
                f" ({KERNEL_NAMES[str(kernel)]})" if len(kernels) > 1 else "")
            ax.plot(rows["time_step"], rows["cka"], color="0.45", linestyle=styles[str(kernel)],
                    marker="x", label=label)
        if not ax.get_lines():
            ax.text(0.5, 0.5, f"the depth-{depth} layers differ in time steps:\ncompared at "
                    f"their last steps (above)", ha="center", va="center",
                    transform=ax.transAxes, fontsize="small")
            ax.set_axis_off()
            continue
        ax.set_xticks(sorted(steps))
        ax.set_ylim(0, 1.05)
        ax.set_xlabel("time step")
        ax.set_ylabel("CKA")
        ax.set_title(f"Depth {depth}, by time step")
        # below the panel, where it cannot hide a curve (inside, some corner always does)
        ax.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.2), ncols=2)


def run(inputs: Sequence[str | Path] = (), *, reference: str | Path | None = None,
        runs_dir: str | Path = RUNS_DIR, dataset: str | None = None,
        out_dir: str | Path = FIGURES_DIR, kernel: str = "linear", condition: str | None = None,
        debiased: bool = False, minibatch: int | None = None, seed: int = 0) -> list[Path]:
    """Make the figure from activation files / run dirs: one (its layers with each other),
    two, or more (the first against each other); none: the early and late runs.

    Parameters
    ----------
    inputs
        Activation files or run directories; none: the first-seed early and late runs under
        ``runs_dir``.
    reference
        Another seed of the first input, drawn as a reference (with inputs; with none, the
        second early seed under ``runs_dir`` is, if there is one).
    runs_dir
        Where the runs are when no inputs are named.
    dataset
        Only runs of this dataset (needed when ``runs_dir`` holds several).
    out_dir
        Where the figure (``.png``, ``.pdf``) and its numbers (``.csv``) go.
    kernel
        ``"linear"``, ``"rbf"``, or ``"both"`` (side by side).
    condition
        Which stimuli are compared; None: ``clean`` if the first file has it, else its only
        condition.
    debiased
        Use the unbiased HSIC estimator (Song et al. 2012).
    minibatch
        Linear CKA averaged over random batches of that many stimuli (at least 4): memory
        grows with it, not with the stimuli squared. None: all stimuli at once.
    seed
        Shuffles the stimuli into ``minibatch`` batches.

    Returns
    -------
    list of pathlib.Path
        ``cka_by_layer.png``, ``.pdf`` and ``.csv`` in ``out_dir``.

    Raises
    ------
    FileNotFoundError
        For an input that is neither an activation file nor a run directory with one, or,
        with no inputs, no early and late runs with activation files under ``runs_dir``.
    ValueError
        For an unknown kernel, ``minibatch`` under 4 or with a kernel other than linear, an
        output directory that cannot be written, runs under ``runs_dir`` that mix
        experiments, a condition the first file lacks (or none named where it has several and
        no ``clean``), or files that hold different stimuli.
    """
    import pandas as pd

    from repsim import plotting
    from repsim.activations import layer_depths, layer_streams

    if kernel not in KERNELS:
        raise ValueError(f"unknown kernel {kernel!r}; choose one of {', '.join(KERNELS)}")
    if minibatch is not None and minibatch < MIN_DEBIASED_STIMULI:
        raise ValueError(f"--minibatch must be at least {MIN_DEBIASED_STIMULI} stimuli (the "
                         f"unbiased HSIC needs them), got {minibatch}")
    if minibatch is not None and kernel != "linear":
        raise ValueError(f"--minibatch computes linear CKA only, not --kernel {kernel}")
    check_out_dir(out_dir)
    if inputs:
        chosen = [resolve_model_input(p) for p in inputs]
        ref_model = resolve_model_input(reference) if reference is not None else None
    else:
        found = default_models(runs_dir, dataset)
        chosen = [model_input_of_run(found.early[0]), model_input_of_run(found.late[0])]
        ref_model = (model_input_of_run(found.early[1]) if len(found.early) > 1 else None)
    opened = distinct_labels([open_model(model) for model in
                              [*chosen, *([ref_model] if ref_model is not None else [])]])
    compared, ref = (opened[:-1], opened[-1]) if ref_model is not None else (opened, None)
    x, others = compared[0], compared[1:] or compared[:1]
    chosen_condition = pick_condition(x[1], condition, x[0].path)
    options: dict[str, Any] = {"kernels": KERNELS[kernel], "condition": chosen_condition,
                               "debiased": debiased, "minibatch": minibatch, "seed": seed}
    tables = [cka_table(x, y, comparison="models", **options) for y in others]
    if ref is not None:
        tables.append(cka_table(x, ref, comparison="seed reference", **options))
    table = pd.concat(tables, ignore_index=True)
    places = {model.label: (layer_depths(data), layer_streams(data)) for model, data in opened}
    used = {model.path: model.label for model, _ in opened}
    estimator = (f" (minibatches of {minibatch})" if minibatch is not None else
                 " (debiased)" if debiased else "")
    return plotting.save_outputs(lambda: plot(table, chosen_condition, estimator, places),
                                 table, out_dir, NAME, used)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m repsim.figures cka_by_layer [FILE ...] [--reference ...]``.

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
                           "activation files or run directories: one (its layers with each "
                           "other), or the first against each other (default: fusion layer 1 "
                           "and the largest under --runs-dir)")
    parser.add_argument("--reference", type=Path, default=None,
                        help="another seed of the first model, drawn as a reference "
                             "(default: the second early seed under --runs-dir, if any)")
    parser.add_argument("--kernel", choices=sorted(KERNELS), default="linear",
                        help="CKA kernel; 'both' draws linear and RBF side by side "
                             "(default: linear)")
    parser.add_argument("--condition", default=None,
                        help=f"which stimuli to compare on (default: {CLEAN})")
    parser.add_argument("--debiased", action="store_true",
                        help="use the unbiased HSIC estimator (Song et al. 2012)")
    parser.add_argument("--minibatch", type=int, default=None, metavar="N",
                        help="linear CKA averaged over random batches of N stimuli (unbiased "
                             "HSIC, Nguyen et al. 2021): memory grows with N, not with the "
                             "stimuli squared; N >= the stimuli gives the debiased CKA "
                             "(default: all stimuli at once, no batches)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed that shuffles stimuli into --minibatch batches (default: 0)")
    return run_cli(parser, run, argv)
