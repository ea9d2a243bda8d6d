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

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from repsim import plotting
from repsim.conditions import CLEAN, MODALITIES, NOISE_KINDS, PROBE_SNRS
from repsim.study.comparisons import NOISE_ENTRY, OPERATOR, SURVIVAL, mechanism_name

LABELS = {**{f"auc_{kind}": f"{kind} noise" for kind in NOISE_KINDS},
          **{f"removed_{m}": f"{m} removed" for m in MODALITIES},
          "probe_heard": "heard digit", "probe_seen": "seen digit"}


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


def accuracy_vs_snr(results: pd.DataFrame) -> Figure:
    """Figure a (module docstring); ``results`` is the study's results table."""
    results = _operator_rows(results)
    accuracy = results[(results["measure"] == "accuracy") & (results["removed"] == "none")]
    cells = _cells(accuracy)
    fig, axes = plotting.new_figure(len(cells), len(NOISE_KINDS), panel_size=(3.8, 3.0))
    for row, (dataset, protocol) in enumerate(cells):
        cell = accuracy[(accuracy["dataset"] == dataset) & (accuracy["protocol"] == protocol)]
        for col, kind in enumerate(NOISE_KINDS):
            ax = axes[row, col]
            for i, (k, runs) in enumerate(cell.groupby("fusion_layer")):
                curve = runs[runs["noise"] == kind]
                snrs = sorted(curve["snr_db"].unique())
                points = [_summary(curve.loc[curve["snr_db"] == s, "value"]) for s in snrs]
                _band(ax, snrs, points, f"k={k} (n={runs['seed'].nunique()})", i)
            ax.set_title(f"{kind} noise", fontsize="medium")
            ax.set_xlabel("SNR (dB)")
            ax.set_ylabel(f"{dataset}, {protocol}\ntest accuracy" if col == 0 else "")
            ax.set_ylim(0, 1.02)
        axes[row, NOISE_KINDS.index("visual")].legend(fontsize="small", loc="lower right")
    return fig


def _by_layer(measures: pd.DataFrame, panels: tuple[tuple[str, ...], ...],
              titles: tuple[str, ...], ylabel: str, labels: dict[str, str] = LABELS) -> Figure:
    measures = _operator_rows(measures)
    cells = _cells(measures)
    fig, axes = plotting.new_figure(len(cells), len(panels), panel_size=(3.6, 3.0))
    for row, (dataset, protocol) in enumerate(cells):
        cell = measures[(measures["dataset"] == dataset) & (measures["protocol"] == protocol)]
        layers = sorted(cell["fusion_layer"].unique())
        for col, (names, title) in enumerate(zip(panels, titles, strict=True)):
            ax = axes[row, col]
            for i, name in enumerate(names):
                values = cell[cell["measure"] == name]
                points = [_summary(values.loc[values["fusion_layer"] == k, "value"])
                          for k in layers]
                _band(ax, layers, points, labels.get(name, name), i)
            low, high = ax.get_ylim()  # every measure is a fraction: bands stop at 0 and 1
            ax.set_ylim(max(low, 0.0), min(high, 1.02))
            ax.set_xticks(layers)
            ax.set_xlabel("fusion layer k")
            ax.set_ylabel(f"{dataset}, {protocol}\n{ylabel}" if col == 0 else "")
            ax.set_title(title, fontsize="medium")
            if len(names) > 1 and row == len(cells) - 1:  # below the panels, off the bands
                ax.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.22),
                          ncol=1)
    return fig


def by_fusion_layer(measures: pd.DataFrame) -> Figure:
    """Figure b (module docstring); ``measures`` from
    :func:`repsim.study.comparisons.per_seed_measures`."""
    return _by_layer(measures, (("clean_accuracy",), tuple(f"auc_{k}" for k in NOISE_KINDS),
                                tuple(f"removed_{m}" for m in MODALITIES)),
                     ("clean accuracy", "normalised AUC over SNR", "accuracy, modality removed"),
                     "accuracy")


def representation(measures: pd.DataFrame, word: str = "digit") -> Figure:
    """Figure c (module docstring); ``word`` names the labels (``"class"`` for a dataset with
    named classes)."""
    labels = {**LABELS, "probe_heard": f"heard {word}", "probe_seen": f"seen {word}"}
    return _by_layer(measures, (("reliance_index",), ("probe_heard", "probe_seen")),
                     ("readout reliance on audio", "probe accuracy, incongruent"), "value",
                     labels)



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
    fig, axes = plotting.new_figure(len(cells), 2, panel_size=(3.8, 3.0))
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
        axes[row, 0].set_xticks(sorted(entry["depth"].unique()))
        axes[row, 0].set_ylim(0, 1.02)
        axes[row, 0].set_xlabel("depth on the seen digit's path")
        axes[row, 0].set_ylabel(f"{dataset}, {protocol}\nnoise entry, {worst:g} dB")
        axes[row, 0].set_title("1 - CKA, clean vs audio-noisy", fontsize="medium")
        axes[row, 1].set_xticks(ticks, labels)
        axes[row, 1].set_xlabel("audio SNR (dB)")
        axes[row, 1].set_ylabel("seen digit decoded")
        axes[row, 1].set_title("seen digit, audio-noisy", fontsize="medium")
        axes[row, 1].set_ylim(0, 1.02)
    handles, labels = axes[0, 1].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", fontsize="small")
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
