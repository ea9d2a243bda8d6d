"""The study report's figures, one panel row per dataset x protocol (x fusion operator, in a
study of several: the row is labelled ``<protocol>, <operator>``).

a. ``accuracy_vs_snr``: test accuracy against SNR for audio, visual and both noise, one line
   per fusion layer (mean over seeds, 95 % t interval);
b. ``by_fusion_layer``: clean accuracy, normalised AUC for each noise kind, and accuracy with
   each modality removed, against the fusion layer;
c. ``representation``: the readout's reliance index, and the decodability of the heard and
   the seen digit on incongruent stimuli, against the fusion layer;
d. ``mechanism`` (runs with mechanism measures): the noise entry (1 - CKA, clean vs audio
   noise at -10 dB, last step) along the path the seen digit takes (visual-branch layers,
   then fused layers) against depth, and the seen digit decoded on incongruent stimuli
   clean and with audio noise by a probe trained on clean ones, against the audio SNR; one
   line per fusion layer and operator, one panel row per dataset x protocol.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.artist import Artist
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, ScalarFormatter

from repsim import plotting
from repsim.conditions import CLEAN, MODALITIES, NOISE_KINDS, PROBE_SNRS
from repsim.study.comparisons import NOISE_ENTRY, OPERATOR, SURVIVAL, mechanism_name

# Line labels: a noise measure and a removal measure of one modality share its name (and its
# colour and marker), so that the figure's one legend names the modality for both panels.
LABELS = {**{f"auc_{kind}": kind for kind in NOISE_KINDS},
          **{f"removed_{m}": m for m in MODALITIES},
          "probe_heard": "heard digit", "probe_seen": "seen digit"}
# Inches per panel: three panels span the documentation's page width (about 700 pixels) with
# their text at about the size of the page's own.
PANEL = (2.5, 2.1)


def _summary(values: pd.Series) -> tuple[float, float, float]:
    """Mean over seeds and its 95 % t interval (NaN for one seed)."""
    return plotting.mean_interval(values.to_numpy())


def _cells(table: pd.DataFrame) -> list[tuple[str, str]]:
    return list(dict.fromkeys(zip(table["dataset"], table["protocol"], strict=True)))


def _operator_rows(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with the operator folded into the protocol (``<protocol>, <operator>``), so
    that each operator gets its own panel row; unchanged without an operator column."""
    if OPERATOR not in table:
        return table
    table = table.copy()
    table["protocol"] = table["protocol"] + ", " + table[OPERATOR]
    return table


def _band(ax, x, rows: list[tuple[float, float, float]], label: str, index: int) -> None:
    mean, low, high = (np.array(column) for column in zip(*rows, strict=True))
    plotting.line_with_band(ax, x, mean, low, high, label=label,
                            color=plotting.PALETTE[index % len(plotting.PALETTE)],
                            marker=plotting.MARKERS[index % len(plotting.MARKERS)])


def _grid(cells: list[tuple[str, str]], cols: int, notes: Sequence[str] = ()
          ) -> tuple[Figure, np.ndarray]:
    """One row of panels per cell, each row a subfigure headed by its cell's name
    (``dataset, protocol`` and a note such as the seeds), so that no label runs into the
    next row's."""
    fig = Figure(figsize=(PANEL[0] * cols, (PANEL[1] + 0.35) * len(cells)),
                 layout="constrained")
    rows = fig.subfigures(len(cells), 1, squeeze=False)[:, 0]
    axes = np.array([row.subplots(1, cols, squeeze=False)[0] for row in rows])
    notes = notes or [""] * len(cells)
    for row, (dataset, protocol), note in zip(rows, cells, notes, strict=True):
        row.suptitle(f"{dataset}, {protocol}{f' ({note})' if note else ''}",
                     fontweight="bold")
    return fig, axes


def _fraction_axis(ax, *, zoom: bool = False) -> None:
    """A y axis for a fraction (an accuracy, an index): up to 1.0 exactly, from 0 or, with
    ``zoom``, from where the data start; the markers at 1.0 are drawn whole."""
    if zoom:
        ax.set_ylim(max(ax.get_ylim()[0], 0.0), 1.0)
        ax.yaxis.set_major_locator(MaxNLocator(4, steps=[1, 2, 2.5, 5, 10]))  # 1.0 a tick
        ax.yaxis.set_major_formatter(ScalarFormatter(useOffset=False))
    else:
        ax.set_ylim(0.0, 1.0)
        ax.set_yticks(np.linspace(0.0, 1.0, 6))
    for line in ax.get_lines():
        line.set_clip_on(False)


def _label_grid(axes: np.ndarray, titles: Sequence[str], xlabels: Sequence[str],
                ylabel: str) -> None:
    """Column titles on the top row, x labels on the bottom row, ``ylabel`` on the left."""
    for col, (title, xlabel) in enumerate(zip(titles, xlabels, strict=True)):
        axes[0, col].set_title(title, fontweight="normal")
        axes[-1, col].set_xlabel(xlabel)
    for ax in axes[:, 0]:
        ax.set_ylabel(ylabel)


def _legend(fig: Figure, axes: np.ndarray, title: str | None = None,
            ncol: int | None = None) -> None:
    """One legend for the figure, above the panels, of the lines of every panel that draws
    several (each label once; a panel of one line is named by its title)."""
    entries: dict[str, Artist] = {}
    for ax in axes.flat:
        handles, labels = ax.get_legend_handles_labels()
        if len(handles) > 1:
            for handle, label in zip(handles, labels, strict=True):
                entries.setdefault(label, handle)
    if entries:
        fig.legend(list(entries.values()), list(entries), loc="outside upper center",
                   ncol=ncol or min(len(entries), 4), title=title)


def _seeds(runs: pd.DataFrame) -> str:
    counts = runs.groupby("fusion_layer")["seed"].nunique()
    low, high = int(counts.min()), int(counts.max())
    return f"{low} seeds" if low == high else f"{low}-{high} seeds"


def accuracy_vs_snr(results: pd.DataFrame) -> Figure:
    """Figure a (module docstring).

    Parameters
    ----------
    results
        The study's results table (``results.csv``).

    Returns
    -------
    matplotlib.figure.Figure
    """
    results = _operator_rows(results)
    accuracy = results[(results["measure"] == "accuracy") & (results["removed"] == "none")]
    cells = _cells(accuracy)
    per_cell = [accuracy[(accuracy["dataset"] == dataset) & (accuracy["protocol"] == protocol)]
                for dataset, protocol in cells]
    fig, axes = _grid(cells, len(NOISE_KINDS), [_seeds(cell) for cell in per_cell])
    for row, cell in enumerate(per_cell):
        for col, kind in enumerate(NOISE_KINDS):
            ax = axes[row, col]
            for i, (k, runs) in enumerate(cell.groupby("fusion_layer")):
                curve = runs[runs["noise"] == kind]
                snrs = sorted(curve["snr_db"].unique())
                points = [_summary(curve.loc[curve["snr_db"] == s, "value"]) for s in snrs]
                _band(ax, snrs, points, f"k={k}", i)
            _fraction_axis(ax)
    _label_grid(axes, [f"{kind} noise" for kind in NOISE_KINDS], ["SNR (dB)"] * len(NOISE_KINDS),
                "test accuracy")
    _legend(fig, axes)
    return fig


def _by_layer(measures: pd.DataFrame, panels: tuple[tuple[str, ...], ...],
              titles: tuple[str, ...], ylabel: str, labels: dict[str, str] = LABELS,
              zoom: tuple[bool, ...] = (), legend: str | None = None) -> Figure:
    measures = _operator_rows(measures)
    cells = _cells(measures)
    fig, axes = _grid(cells, len(panels))
    for row, (dataset, protocol) in enumerate(cells):
        cell = measures[(measures["dataset"] == dataset) & (measures["protocol"] == protocol)]
        layers = sorted(cell["fusion_layer"].unique())
        for col, names in enumerate(panels):
            ax = axes[row, col]
            for i, name in enumerate(names):
                values = cell[cell["measure"] == name]
                points = [_summary(values.loc[values["fusion_layer"] == k, "value"])
                          for k in layers]
                _band(ax, layers, points, labels.get(name, name), i)
            _fraction_axis(ax, zoom=bool(zoom) and zoom[col])
            ax.set_xticks(layers)
    _label_grid(axes, titles, ["fusion layer k"] * len(panels), ylabel)
    _legend(fig, axes, legend)
    return fig


def by_fusion_layer(measures: pd.DataFrame) -> Figure:
    """Figure b (module docstring); the clean-accuracy axis starts where its data do (every
    network is near 1.0 there), the others at 0.

    Parameters
    ----------
    measures
        Per-seed measures ([per_seed_measures][repsim.study.comparisons.per_seed_measures]).

    Returns
    -------
    matplotlib.figure.Figure
    """
    return _by_layer(measures, (("clean_accuracy",), tuple(f"auc_{k}" for k in NOISE_KINDS),
                                tuple(f"removed_{m}" for m in MODALITIES)),
                     ("clean accuracy", "AUC over SNR", "modality removed"),
                     "accuracy", zoom=(True, False, False), legend="noisy or removed")


def representation(measures: pd.DataFrame, word: str = "digit") -> Figure:
    """Figure c (module docstring).

    Parameters
    ----------
    measures
        Per-seed measures ([per_seed_measures][repsim.study.comparisons.per_seed_measures]).
    word
        What the labels are called (``"class"`` for a dataset with named classes).

    Returns
    -------
    matplotlib.figure.Figure
    """
    labels = {**LABELS, "probe_heard": f"heard {word}", "probe_seen": f"seen {word}"}
    return _by_layer(measures, (("reliance_index",), ("probe_heard", "probe_seen")),
                     ("reliance on audio", "decoded, incongruent"), "value", labels)


def _visual_path_depth(layer: str) -> int | None:
    """The depth of a layer on the seen digit's path (``visual.d`` or ``fused.d``), else
    None (audio-branch layers and gates)."""
    stream, depth = layer.rsplit(".", 1)
    return int(depth) if stream in ("visual", "fused") else None


def mechanism(measures: pd.DataFrame) -> Figure:
    """Figure d (module docstring)."""
    worst = min(PROBE_SNRS)
    prefix, suffix = f"{NOISE_ENTRY}.", mechanism_name("", "audio", worst)
    entry = measures[measures["measure"].str.startswith(prefix)
                     & measures["measure"].str.endswith(suffix)].copy()
    entry["depth"] = [_visual_path_depth(name[len(prefix):-len(suffix)])
                      for name in entry["measure"]]
    entry = entry.dropna(subset=["depth"])
    seen = {"probe_seen": np.inf,
            **{mechanism_name(f"{SURVIVAL}_seen", "audio", snr): snr for snr in PROBE_SNRS}}
    clean_x = max(PROBE_SNRS) + 10  # where "clean" sits on the SNR axis
    ticks = sorted(PROBE_SNRS) + [clean_x]
    labels = [f"{snr:g}" for snr in sorted(PROBE_SNRS)] + [CLEAN]
    cells = _cells(measures)
    fig, axes = _grid(cells, 2)
    lines = [key for key in (OPERATOR, "fusion_layer") if key in measures]
    style = _LineStyles(measures, lines)
    for row, (dataset, protocol) in enumerate(cells):
        here = (measures["dataset"] == dataset) & (measures["protocol"] == protocol)
        cell_entry = entry[(entry["dataset"] == dataset) & (entry["protocol"] == protocol)]
        cell_seen = measures[here & measures["measure"].isin(list(seen))]
        for key, runs in cell_entry.groupby(lines, sort=False):
            depths = sorted(runs["depth"].unique())
            points = [_summary(runs.loc[runs["depth"] == d, "value"]) for d in depths]
            style.draw(axes[row, 0], depths, points, key)
        for key, runs in cell_seen.groupby(lines, sort=False):
            names = [name for name in seen if name in set(runs["measure"])]
            x = [clean_x if np.isinf(seen[name]) else seen[name] for name in names]
            points = [_summary(runs.loc[runs["measure"] == name, "value"]) for name in names]
            style.draw(axes[row, 1], x, points, key)
        for ax in axes[row]:
            _fraction_axis(ax)
    for ax in axes[:, 0]:
        ax.set_xticks(sorted(entry["depth"].unique()))
    for ax in axes[:, 1]:
        ax.set_xticks(ticks, labels)
    _label_grid(axes, (f"noise entry, {worst:g} dB", "seen digit decoded"),
                ("depth on the seen digit's path", "audio SNR (dB)"), "1 - CKA")
    for ax in axes[:, 1]:
        ax.set_ylabel("accuracy")
    _legend(fig, axes, ncol=len(style.layers))
    return fig


class _LineStyles:
    """One look per line of the mechanism figure: the colour names the operator and the
    marker and dash the fusion layer, so nine lines stay readable (and the same in every
    panel)."""

    DASHES = ("-", "--", ":", "-.")

    def __init__(self, measures: pd.DataFrame, lines: list[str]) -> None:
        self.lines = lines
        self.operators = list(dict.fromkeys(measures[OPERATOR])) if OPERATOR in lines else []
        self.layers = sorted(measures["fusion_layer"].unique())

    def draw(self, ax, x, rows: list[tuple[float, float, float]], key) -> None:
        parts = dict(zip(self.lines, key if isinstance(key, tuple) else (key,), strict=True))
        colour = self.operators.index(parts[OPERATOR]) if self.operators else 0
        depth = self.layers.index(parts["fusion_layer"])
        mean, low, high = (np.array(column) for column in zip(*rows, strict=True))
        plotting.line_with_band(ax, x, mean, low, high, label=_line_label(key, self.lines),
                                color=plotting.PALETTE[colour % len(plotting.PALETTE)],
                                marker=plotting.MARKERS[depth % len(plotting.MARKERS)],
                                linestyle=self.DASHES[depth % len(self.DASHES)])


def _line_label(key, names: list[str]) -> str:
    values = key if isinstance(key, tuple) else (key,)
    parts = dict(zip(names, values, strict=True))
    label = f"k={parts['fusion_layer']}"
    return f"{parts[OPERATOR]} {label}" if OPERATOR in parts else label
