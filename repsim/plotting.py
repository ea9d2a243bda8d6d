"""One figure style for every analysis script: theme, colours, panels, and how figures are saved.

Every figure is drawn inside :func:`theme` (a seaborn "whitegrid" look with the colour-blind-safe
``colorblind`` palette) on a :class:`matplotlib.figure.Figure` made by :func:`new_figure`, so
nothing here touches pyplot's global state. :func:`save_figure` writes PNG and PDF, and
:func:`write_table` writes the numbers behind a figure as a tidy CSV whose ``#`` header names
the SHA-256 of every input file; all three files are written atomically, and
:func:`save_outputs` puts them in place together.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
import seaborn as sns
from cycler import cycler
from matplotlib.axes import Axes
from matplotlib.colors import Colormap
from matplotlib.figure import Figure
from numpy.typing import ArrayLike
from scipy import stats

from repsim.provenance import (
    WRITE_ERRNOS,
    atomic_path,
    library_versions,
    output_error,
    sha256_file,
)

# What a table's header names as its inputs: paths, or paths with the label each had.
TableInputs = Mapping[Path, str] | Mapping[str, str] | Sequence[str | os.PathLike]

PALETTE = sns.color_palette("colorblind").as_hex()
# Fixed colours for the two streams (and their mixture), the same in every figure.
MODALITY_COLORS = {"audio": PALETTE[1], "visual": PALETTE[0], "both": PALETTE[2],
                   "fused": PALETTE[2]}
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
LINESTYLES = ("-", "--", ":", "-.")
# Sequential colour map for similarities/accuracies in [0, 1] (perceptually uniform, CVD-safe).
SEQUENTIAL_CMAP = "viridis"
# Diverging map for a reliance index: 0 = visual (blue), 0.5 = balanced (white), 1 = audio.
RELIANCE_CMAP: Colormap = sns.blend_palette(
    [MODALITY_COLORS["visual"], "#f7f7f7", MODALITY_COLORS["audio"]], as_cmap=True)

_THEME = {**sns.axes_style("whitegrid"), **sns.plotting_context("paper", font_scale=1.25),
          "axes.prop_cycle": cycler(color=PALETTE), "axes.titleweight": "bold",
          "figure.titleweight": "bold", "figure.dpi": 100, "savefig.dpi": 150,
          "pdf.fonttype": 42, "legend.frameon": False}


@contextlib.contextmanager
def theme() -> Iterator[None]:
    """Draw everything inside this block in repsim's figure style (rc settings restored after)."""
    with matplotlib.rc_context(_THEME):
        yield


def new_figure(nrows: int = 1, ncols: int = 1, *, panel_size: tuple[float, float] = (4.0, 3.2),
               squeeze: bool = False, **subplot_kw: Any) -> tuple[Figure, np.ndarray]:
    """A constrained-layout figure with an ``nrows x ncols`` grid of axes (always 2-D)."""
    fig = Figure(figsize=(panel_size[0] * ncols, panel_size[1] * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=squeeze, **subplot_kw)
    return fig, axes


def fusion_label(fusion_layer: int, layers: int | None) -> str:
    """``"k=1 (early)"``, ``"k=2"``, ``"k=3 (late)"`` for a network with ``layers`` ConvLSTMs."""
    if fusion_layer == 1:
        return "k=1 (early)"
    if layers is not None and fusion_layer == layers + 1:
        return f"k={fusion_layer} (late)"
    return f"k={fusion_layer}"


def heatmap(ax: Axes, values: np.ndarray, *, row_labels: Sequence[str],
            col_labels: Sequence[str], cbar_label: str, vmin: float = 0.0, vmax: float = 1.0,
            cmap: str | Colormap = SEQUENTIAL_CMAP, annotate: bool | None = None,
            fmt: str = ".2f") -> None:
    """A labelled heatmap with a colour bar; cells are annotated when there are few of them."""
    values = np.asarray(values, dtype=float)
    if annotate is None:
        annotate = values.size <= 80
    labels = np.vectorize(lambda v: _cell_text(v, fmt))(values) if annotate else False
    sns.heatmap(values, ax=ax, vmin=vmin, vmax=vmax, cmap=cmap, square=False,
                annot=labels, fmt="", annot_kws={"fontsize": "small"},
                xticklabels=list(col_labels), yticklabels=list(row_labels), linewidths=0.5,
                linecolor="white", cbar_kws={"label": cbar_label, "shrink": 0.9})
    crowded = len(col_labels) * max(map(len, map(str, col_labels)), default=0) > 48
    ax.tick_params(axis="x", labelrotation=45 if crowded else 0)
    ax.tick_params(axis="y", labelrotation=0)
    ax.grid(False)


def _cell_text(value: float, fmt: str) -> str:
    """A heatmap annotation: blank for NaN, and never "-0.00" for a tiny negative residue."""
    if np.isnan(value):
        return ""
    text = format(value, fmt)
    return text.lstrip("-") if float(text) == 0 else text


def line_with_band(ax: Axes, x: ArrayLike, y: ArrayLike, low: ArrayLike | None,
                   high: ArrayLike | None, *, color: str, label: str,
                   marker: str = "o", linestyle: str = "-") -> None:
    """A line with markers and, when bounds are given (and finite), a shaded interval."""
    ax.plot(x, y, color=color, marker=marker, linestyle=linestyle, label=label)
    if low is not None and high is not None:
        lows, highs = np.asarray(low, dtype=float), np.asarray(high, dtype=float)
        if np.isfinite(lows).any():
            ax.fill_between(x, lows, highs, color=color, alpha=0.2, linewidth=0)


def chance_line(ax: Axes, level: float, *, label: str = "chance") -> None:
    """A dashed grey horizontal line at chance level."""
    ax.axhline(level, color="0.45", linestyle="--", linewidth=1.0, label=label, zorder=0)


def mean_interval(values: ArrayLike, confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean and Student-t confidence interval of the mean (e.g. over seeds).

    With a single value the interval is undefined and returned as ``(nan, nan)``; the plot
    then shows the value without a band.
    """
    array = np.asarray(values, dtype=float)
    if array.size == 0:
        raise ValueError("mean_interval needs at least one value")
    mean = float(array.mean())
    if array.size < 2:
        return mean, math.nan, math.nan
    half = stats.t.ppf(0.5 + confidence / 2, array.size - 1) * stats.sem(array)
    return mean, mean - float(half), mean + float(half)


# Each figure format with the metadata saved in it: none that changes from run to run (the
# PDF carries no creation date), so an unchanged figure gives an unchanged file.
FIGURE_FORMATS = (("png", {"Software": "repsim"}),
                  ("pdf", {"Creator": "repsim", "CreationDate": None}))


def save_figure(fig: Figure, out_dir: str | os.PathLike, name: str) -> list[Path]:
    """Write ``out_dir/name.png`` and ``out_dir/name.pdf`` atomically; return both paths."""
    with contextlib.ExitStack() as renames:
        return _write_figure(fig, Path(out_dir), name, renames)


def save_outputs(draw: Callable[[], Figure], table: pd.DataFrame, out_dir: str | os.PathLike,
                 name: str, inputs: TableInputs
                 ) -> list[Path]:
    """What every analysis script ends with: ``draw()`` the figure in the house theme, save it
    as ``name.png``/``name.pdf``, and the numbers behind it as ``name.csv``; return the paths.

    All or nothing: the three files are renamed into place only once all are written, so a
    failure (a full disk: :class:`repsim.provenance.OutputError`) leaves the files of an
    earlier run as they were, never a new figure beside old numbers."""
    out_dir = Path(out_dir)
    csv = out_dir / f"{name}.csv"
    text = _table_text(table, csv, inputs)
    with theme(), contextlib.ExitStack() as renames:
        written = _write_figure(draw(), out_dir, name, renames)
        renames.enter_context(atomic_path(csv)).write_text(text)
    return [*written, csv]


def _write_figure(fig: Figure, out_dir: Path, name: str, renames: contextlib.ExitStack
                  ) -> list[Path]:
    """Save ``fig`` in every format to temporaries that ``renames`` puts in place on closing
    (or removes, after an error); the paths it will have."""
    _make_directory(out_dir)
    written = []
    for fmt, metadata in FIGURE_FORMATS:
        final = out_dir / f"{name}.{fmt}"
        fig.savefig(renames.enter_context(atomic_path(final)), format=fmt, metadata=metadata)
        written.append(final)
    return written


def _make_directory(directory: Path) -> None:
    """``mkdir -p``; a refusal of the disk (full, read-only) is an OutputError naming it."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        if error.errno not in WRITE_ERRNOS:
            raise
        raise output_error(directory, error.strerror or str(error), error.errno) from error


def write_table(table: pd.DataFrame, path: str | os.PathLike,
                inputs: TableInputs) -> Path:
    """Write ``table`` as a tidy CSV, atomically, after a ``#`` header naming its inputs.

    The header has one line of library versions and one ``# input: <path> sha256=<hex>``
    line per input file; read it back with ``pandas.read_csv(path, comment="#")`` or
    :func:`read_table`. ``inputs`` may map each path to a label (written after the digest).
    """
    path = Path(path)
    text = _table_text(table, path, inputs)
    _make_directory(path.parent)
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return path


def _table_text(table: pd.DataFrame, path: Path,
                inputs: TableInputs) -> str:
    """The CSV :func:`write_table` writes to ``path``: header, then the table."""
    items = inputs.items() if isinstance(inputs, Mapping) else ((p, None) for p in inputs)
    header = [f"# repsim figure data: {path.stem}"]
    versions = library_versions()
    header.append("# versions: " + " ".join(f"{k}={v}" for k, v in versions.items()))
    for input_path, label in items:
        input_path = Path(input_path)
        if not input_path.is_file():
            raise FileNotFoundError(f"input file {input_path} does not exist")
        named = f" ({label})" if label else ""
        header.append(f"# input: {input_path} sha256={sha256_file(input_path)}{named}")
    buffer = io.StringIO()
    table.to_csv(buffer, index=False, float_format="%.6g")
    return "\n".join(header) + "\n" + buffer.getvalue()


def read_table(path: str | os.PathLike) -> tuple[pd.DataFrame, dict[str, str]]:
    """Read a CSV written by :func:`write_table`: the table and ``{input path: sha256}``."""
    path = Path(path)
    inputs = {}
    with open(path) as handle:
        for line in handle:
            if not line.startswith("#"):
                break
            if line.startswith("# input: "):
                location, digest = line[len("# input: "):].split(" sha256=", 1)
                inputs[location] = digest.split()[0]
    return pd.read_csv(path, comment="#"), inputs
