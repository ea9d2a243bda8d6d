"""CKA between every layer of the early-fusion and every layer of the late-fusion model.

(a) A heatmap of CKA between each early-fusion layer (rows) and each late-fusion layer
(columns) at the last time step; (b) CKA at every time step between layers of matched depth
(``fused.d`` vs ``audio.d`` and ``visual.d``); (c) as a reference, the CKA between two seeds
of the same (early) architecture, layer by layer, when a second seed exists; (d) linear and
RBF kernels side by side with ``--kernel both``. Stimuli are aligned by stimulus id. Layers
are read one time step at a time; ``--minibatch N`` computes linear CKA from random batches
of N stimuli (:func:`repsim.analysis.cka.minibatch_cka`), so that memory grows with N rather
than with the number of stimuli squared.

Writes ``cka_by_layer.png``/``.pdf`` and ``cka_by_layer.csv`` with one row per pair of layers
and time step: comparison (``models`` or ``seed reference``), x_model, y_model, kernel, x_layer,
y_layer, time_step (1 = first step), cka.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from repsim.activations import layer_names, select, stimulus_ids
from repsim.analysis.choices import KERNELS as CKA_KERNELS
from repsim.analysis.choices import MIN_DEBIASED_STIMULI
from repsim.conditions import CLEAN
from repsim.figures.base import (
    FIGURES_DIR,
    check_out_dir,
    default_models,
    figure_parser,
    layer_depth,
    layer_stream,
    open_model,
    run_cli,
)
from repsim.rundir import RUNS_DIR
from repsim.runs import ModelInput, model_input_of_run, resolve_model_input

if TYPE_CHECKING:  # heavy libraries load where they are used: --help needs none
    import xarray as xr
    from matplotlib.figure import Figure

NAME = "cka_by_layer"
COLUMNS = ["comparison", "x_model", "y_model", "kernel", "x_layer", "y_layer", "time_step",
           "cka"]
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
"""


def cka_table(x: tuple[ModelInput, xr.Dataset], y: tuple[ModelInput, xr.Dataset], *,
              kernels: Sequence[str], condition: str, comparison: str,
              debiased: bool = False, minibatch: int | None = None,
              seed: int = 0) -> pd.DataFrame:
    """CKA between every layer of ``x`` and every layer of ``y`` at every (shared) time step.

    ``x`` and ``y`` are ``(ModelInput, Dataset)`` pairs as :func:`repsim.figures.base.open_model`
    returns them; ``y``'s stimuli are put in ``x``'s order by stimulus id. Each layer is read
    one time step at a time. ``minibatch`` (linear kernel): CKA from :func:`layer_similarity`'s
    random batches of that many stimuli, shuffled with ``seed``.
    """
    (x_model, x_data), (y_model, y_data) = x, y
    steps = {data.sizes["time"] for data in (x_data, y_data)}
    if len(steps) != 1:
        raise ValueError(f"{x_model.path} and {y_model.path} have different numbers of time "
                         f"steps ({sorted(steps)}); CKA per time step needs the same")
    timesteps = steps.pop()
    order = stimulus_ids(x_data, condition)
    x_layers, y_layers = layer_names(x_data), layer_names(y_data)
    rows = []
    for kernel in kernels:
        for t in range(timesteps):
            values = layer_similarity(
                [select(x_data, layer, time=t, condition=condition) for layer in x_layers],
                [select(y_data, layer, time=t, condition=condition, order=order)
                 for layer in y_layers],
                kernel=kernel, debiased=debiased, minibatch=minibatch, seed=seed)
            for i, x_layer in enumerate(x_layers):
                for j, y_layer in enumerate(y_layers):
                    rows.append({"comparison": comparison, "x_model": x_model.label,
                                 "y_model": y_model.label, "kernel": kernel,
                                 "x_layer": x_layer, "y_layer": y_layer, "time_step": t + 1,
                                 "cka": float(values[i, j])})
    return pd.DataFrame(rows, columns=COLUMNS)


def layer_similarity(xs: Sequence, ys: Sequence, *, kernel: str = "linear",
                     debiased: bool = False, minibatch: int | None = None,
                     seed: int = 0) -> np.ndarray:
    """CKA between each of ``xs`` and each of ``ys`` (lazy selections of the same stimuli,
    read one at a time): ``(len(xs), len(ys))``.

    Without ``minibatch``: :func:`repsim.analysis.cka_matrix`, whose n x n Gram matrices
    cost memory quadratic in the stimuli. With it: :func:`repsim.analysis.cka.minibatch_cka`
    over random batches of ``minibatch`` stimuli (all stimuli at once when there are no
    more), linear kernel, unbiased HSIC; with one batch this is exactly the debiased CKA.
    """
    from repsim.analysis import cka_matrix
    from repsim.analysis.cka import minibatch_cka, minibatches

    if minibatch is None:
        return np.asarray(cka_matrix(xs, ys, kernel=kernel, debiased=debiased))
    size = min(minibatch, xs[0].sizes["stimulus"])
    full = np.asarray(minibatch_cka(minibatches([*xs, *ys], size, seed=seed)))
    return full[:len(xs), len(xs):]


def plot(table: pd.DataFrame, condition: str, estimator: str) -> Figure:
    """(a) last-step heatmaps per kernel; (b, c) CKA over time for matched depths.
    ``estimator`` ends the colour bar's label (e.g. " (debiased)")."""
    from matplotlib.figure import Figure

    from repsim import plotting

    models = table[table["comparison"] == "models"]
    reference = table[table["comparison"] == "seed reference"]
    kernels = list(dict.fromkeys(models["kernel"]))
    x_layers = list(dict.fromkeys(models["x_layer"]))
    y_layers = list(dict.fromkeys(models["y_layer"]))
    x_depth = {layer: layer_depth(layer, x_layers) for layer in x_layers}
    y_depth = {layer: layer_depth(layer, y_layers) for layer in y_layers}
    # (b) compares layers of matched depth; a user's model may share none with the other
    shared = set(x_depth.values()) & set(y_depth.values())
    depths = sorted(set(x_depth.values()) | set(y_depth.values())) if shared else [None]
    x_label, y_label = models["x_model"].iloc[0], models["y_model"].iloc[0]
    last = int(models["time_step"].max())

    top_height = 2.3 + 0.45 * len(x_layers)
    width = max(11.0, 5.4 * len(kernels) + 1.0, 3.6 * len(depths) + 1.0)
    entries = len(reference["x_layer"].unique()) + 2 * len(kernels)  # per panel, at most
    bottom_height = 3.6 + 0.25 * math.ceil(entries / 2)  # room for the legend rows below
    fig = Figure(figsize=(width, top_height + bottom_height), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[top_height, bottom_height],
                                  squeeze=False)[:, 0]
    heat_axes = top.subplots(1, len(kernels), squeeze=False)[0]
    for ax, kernel in zip(heat_axes, kernels, strict=True):
        at_last = models[(models["kernel"] == kernel) & (models["time_step"] == last)]
        matrix = at_last.pivot(index="x_layer", columns="y_layer", values="cka")
        plotting.heatmap(ax, matrix.loc[x_layers, y_layers].to_numpy(),
                         row_labels=x_layers, col_labels=y_layers,
                         cbar_label=f"{KERNEL_NAMES[kernel]} CKA{estimator}")
        ax.set_xlabel(f"{y_label} layer")
        ax.set_ylabel(f"{x_label}\nlayer")
        ax.set_title(f"{KERNEL_NAMES[kernel]} CKA, last time step (t={last})")
    fig.suptitle(f"Layer similarity: {x_label} vs {y_label}, {condition} stimuli")

    line_axes = bottom.subplots(1, len(depths), squeeze=False, sharey=True)[0]
    styles = dict(zip(kernels, plotting.LINESTYLES, strict=False))
    for ax, depth in zip(line_axes, depths, strict=True):
        if depth is None:
            ax.text(0.5, 0.5, "no layers of matched depth", ha="center", va="center",
                    transform=ax.transAxes)
            ax.set_axis_off()
            continue
        pairs = models[np.array([x_depth[a] == depth == y_depth[b] for a, b in
                                 zip(models["x_layer"], models["y_layer"], strict=True)],
                                dtype=bool)]
        for (kernel, x_layer, y_layer), rows in pairs.groupby(["kernel", "x_layer", "y_layer"],
                                                              sort=False):
            stream = layer_stream(str(y_layer))
            label = f"{x_layer} vs {y_layer}" + (
                f" ({KERNEL_NAMES[str(kernel)]})" if len(kernels) > 1 else "")
            ax.plot(rows["time_step"], rows["cka"], marker="o", linestyle=styles[str(kernel)],
                    color=plotting.MODALITY_COLORS.get(stream, "0.2"), label=label)
        same = reference[np.array([a == b and x_depth.get(a) == depth for a, b in
                                   zip(reference["x_layer"], reference["y_layer"], strict=True)],
                                  dtype=bool)]
        for (kernel, layer), rows in same.groupby(["kernel", "x_layer"], sort=False):
            label = f"{layer} vs {layer}, other seed" + (
                f" ({KERNEL_NAMES[str(kernel)]})" if len(kernels) > 1 else "")
            ax.plot(rows["time_step"], rows["cka"], color="0.45", linestyle=styles[str(kernel)],
                    marker="x", label=label)
        ax.set_xticks(sorted(pairs["time_step"].unique()))
        ax.set_ylim(0, 1.05)
        ax.set_xlabel("time step")
        ax.set_ylabel("CKA")
        ax.set_title(f"Depth {depth}, by time step")
        # below the panel, where it cannot hide a curve (inside, some corner always does)
        ax.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.2), ncols=2)
    return fig


def run(inputs: Sequence[str | Path] = (), *, reference: str | Path | None = None,
        runs_dir: str | Path = RUNS_DIR, dataset: str | None = None,
        out_dir: str | Path = FIGURES_DIR, kernel: str = "linear", condition: str = CLEAN,
        debiased: bool = False, minibatch: int | None = None, seed: int = 0) -> list[Path]:
    """Make the figure from two activation files / run dirs (or the early and late runs)."""
    from repsim import plotting

    if kernel not in KERNELS:
        raise ValueError(f"unknown kernel {kernel!r}; choose one of {', '.join(KERNELS)}")
    if minibatch is not None and minibatch < MIN_DEBIASED_STIMULI:
        raise ValueError(f"--minibatch must be at least {MIN_DEBIASED_STIMULI} stimuli (the "
                         f"unbiased HSIC needs them), got {minibatch}")
    if minibatch is not None and kernel != "linear":
        raise ValueError(f"--minibatch computes linear CKA only, not --kernel {kernel}")
    if inputs and len(inputs) != 2:
        raise ValueError(f"give two inputs (early and late), got {len(inputs)}")
    check_out_dir(out_dir)
    if inputs:
        x_model, y_model = (resolve_model_input(p) for p in inputs)
        ref_model = resolve_model_input(reference) if reference is not None else None
    else:
        found = default_models(runs_dir, dataset)
        x_model, y_model = model_input_of_run(found.early[0]), model_input_of_run(found.late[0])
        ref_model = (model_input_of_run(found.early[1]) if len(found.early) > 1 else None)
    options: dict[str, Any] = {"kernels": KERNELS[kernel], "condition": condition,
                               "debiased": debiased, "minibatch": minibatch, "seed": seed}
    x, y = open_model(x_model), open_model(y_model)
    tables = [cka_table(x, y, comparison="models", **options)]
    inputs_used = {x_model.path: x[0].label, y_model.path: y[0].label}
    if ref_model is not None:
        ref = open_model(ref_model)
        tables.append(cka_table(x, ref, comparison="seed reference", **options))
        inputs_used[ref_model.path] = ref[0].label
    table = pd.concat(tables, ignore_index=True)
    estimator = (f" (minibatches of {minibatch})" if minibatch is not None else
                 " (debiased)" if debiased else "")
    return plotting.save_outputs(lambda: plot(table, condition, estimator), table, out_dir,
                                 NAME, inputs_used)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m repsim.figures cka_by_layer [EARLY LATE] [--reference ...]``."""
    parser = figure_parser(NAME, __doc__, EXAMPLES,
                           "two activation files or run directories: early then late "
                           "(default: fusion layer 1 and the largest under --runs-dir)")
    parser.add_argument("--reference", type=Path, default=None,
                        help="another seed of the first model, drawn as a reference "
                             "(default: the second early seed under --runs-dir, if any)")
    parser.add_argument("--kernel", choices=sorted(KERNELS), default="linear",
                        help="CKA kernel; 'both' draws linear and RBF side by side "
                             "(default: linear)")
    parser.add_argument("--condition", default=CLEAN,
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
