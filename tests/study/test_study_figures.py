"""The study report's figures read at the documentation's page width: accuracy axes end at
1.0, no two pieces of text touch, and the smallest text is legible. Drawn from the committed
records of the fusion-operator study, which has every figure and the most panel rows."""

from __future__ import annotations

import functools
import itertools

import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from paths import REPO_ROOT

from repsim import plotting
from repsim.study import figures
from repsim.study.comparisons import per_seed_measures

PAGE_PIXELS = 700  # the width of the documentation's text column at a 1280-pixel window
SMALLEST_PIXELS = 11  # the smallest legible text there, in pixels
GAP = 3  # pixels of the figure (150 dpi) that keep two pieces of text from touching


@functools.cache
def drawings(study: str) -> dict:
    """The figure functions of ``study``'s report on its committed records (read once)."""
    results = pd.read_csv(REPO_ROOT / "studies" / study / "results.csv")
    measures = per_seed_measures(results)
    found = {"accuracy_vs_snr": lambda: figures.accuracy_vs_snr(results),
             "by_fusion_layer": lambda: figures.by_fusion_layer(measures),
             "representation": lambda: figures.representation(measures)}
    if study == "fusion_ops":
        found["mechanism"] = lambda: figures.mechanism(measures)
    return found


CASES = [("fusion_ops", name) for name in drawings("fusion_ops")]  # every figure, most rows


@functools.cache
def draw(study: str, name: str):
    """The figure, drawn once for every test of it."""
    with plotting.theme():
        fig = drawings(study)[name]()
        FigureCanvasAgg(fig).draw()
    return fig


@pytest.fixture(params=CASES, ids=[f"{study}-{name}" for study, name in CASES])
def drawn(request):
    study, name = request.param
    return name, draw(study, name)


def texts(fig):
    """Every visible, non-empty piece of text of the figure, with its place."""
    renderer = fig.canvas.get_renderer()
    found = []
    for sub in fig.subfigs:
        found.append(sub._suptitle)
    for ax in fig.get_axes():
        (x0, x1), (y0, y1) = sorted(ax.get_xlim()), sorted(ax.get_ylim())
        found += [ax.title, ax.xaxis.label, ax.yaxis.label]
        found += [label for label in ax.get_xticklabels() if x0 <= label.get_position()[0] <= x1]
        found += [label for label in ax.get_yticklabels() if y0 <= label.get_position()[1] <= y1]
    found += [text for legend in fig.legends for text in legend.get_texts()]
    return [(text.get_text(), text.get_fontsize(), text.get_window_extent(renderer))
            for text in found if text is not None and text.get_visible() and text.get_text()]


def test_accuracy_axes_end_at_one(drawn):
    _, fig = drawn
    for ax in fig.get_axes():
        assert ax.get_ylim()[1] == 1.0, ax.get_title() or ax.get_ylabel()
        assert any(abs(tick - 1.0) < 1e-9 for tick in ax.get_yticks()), "1.0 has no tick"
        tops = [max(line.get_ydata()) for line in ax.get_lines()]
        assert max(tops) <= 1.0


def test_no_text_touches_other_text(drawn):
    name, fig = drawn
    placed = texts(fig)
    for (a, _, box_a), (b, _, box_b) in itertools.combinations(placed, 2):
        assert not box_a.padded(GAP).overlaps(box_b), f"{name}: {a!r} touches {b!r}"


def test_the_smallest_text_is_legible_at_the_page_width(drawn):
    name, fig = drawn
    scale = PAGE_PIXELS / (fig.get_figwidth() * 72)  # screen pixels per point
    smallest = min(size for _, size, _ in texts(fig))
    assert smallest * scale >= SMALLEST_PIXELS, (
        f"{name}: {smallest:.1f} pt text is {smallest * scale:.1f} px on the page")
    legend_sizes = [text.get_fontsize() for legend in fig.legends for text in legend.get_texts()]
    assert legend_sizes and min(legend_sizes) * scale >= SMALLEST_PIXELS
