"""Figure layout: legends never hide the curves they explain."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from repsim.figures import cka_by_layer

STEPS = 8
# The demo's CKA of fused.1 with visual.1 at each step (figures of the README).
VISUAL = (0.07, 0.09, 0.18, 0.25, 0.24, 0.24, 0.23, 0.22)


def cka_table(reference: bool) -> pd.DataFrame:
    """A cka_by_layer table shaped like the demo's: audio layers near 1, visual ones low and
    rising towards the lower right corner, where a legend would sit."""
    rows = []
    early, late = ["fused.1", "fused.2"], ["audio.1", "visual.1", "audio.2", "visual.2"]
    for x_layer in early:
        for y_layer in late:
            for t in range(1, STEPS + 1):
                value = 0.98 - 0.02 * t if y_layer.startswith("audio") else VISUAL[t - 1]
                rows.append(("models", "early", "late", "linear", x_layer, y_layer, t, t,
                             value))
    if reference:
        for layer in early:
            for t in range(1, STEPS + 1):
                rows.append(("seed reference", "early", "early seed 1", "linear", layer, layer,
                             t, t, 0.5))
    return pd.DataFrame(rows, columns=cka_by_layer.COLUMNS)


@pytest.mark.parametrize("reference", [False, True])
def test_cka_by_layer_legends_cover_no_point_of_any_curve(reference):
    places = {model: ({layer: int(layer[-1]) for layer in layers},
                      {layer: layer.split(".")[0] for layer in layers})
              for model, layers in (("early", ["fused.1", "fused.2"]),
                                    ("late", ["audio.1", "visual.1", "audio.2", "visual.2"]),
                                    ("early seed 1", ["fused.1", "fused.2"]))}
    fig = cka_by_layer.plot(cka_table(reference), "clean", "", places)
    FigureCanvasAgg(fig).draw()
    renderer = fig.canvas.get_renderer()
    line_axes = [ax for ax in fig.get_axes() if ax.get_lines()]
    assert len(line_axes) == 2
    for ax in line_axes:
        legend = ax.get_legend().get_window_extent(renderer)
        for line in ax.get_lines():
            x, y = (np.asarray(values, dtype=float) for values in line.get_data())
            along = np.linspace(0, len(x) - 1, 20 * len(x))  # markers and the segments between
            points = ax.transData.transform(np.column_stack(
                [np.interp(along, np.arange(len(x)), x), np.interp(along, np.arange(len(y)), y)]))
            inside = [(x, y) for x, y in points if legend.x0 <= x <= legend.x1
                      and legend.y0 <= y <= legend.y1]
            assert not inside, f"{ax.get_title()}: the legend covers {line.get_label()}"
