"""repsim.plotting: the shared figure style, interval summaries, and atomic figure/table writing."""

from __future__ import annotations

import hashlib
import math

import matplotlib
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from repsim import plotting


def _figure():
    with plotting.theme():
        fig, axes = plotting.new_figure(1, 2)
        axes[0, 0].plot([0, 1], [1, 0], label="a line")
        plotting.heatmap(axes[0, 1], np.array([[0.1, 0.9], [0.5, 1.0]]),
                         row_labels=["fused.1", "fused.2"], col_labels=["audio.1", "visual.1"],
                         cbar_label="CKA")
    return fig


def test_mean_interval_matches_scipy_t_interval():
    values = np.array([0.81, 0.86, 0.79, 0.90, 0.84])
    mean, low, high = plotting.mean_interval(values)
    ref_low, ref_high = stats.t.interval(0.95, len(values) - 1, loc=values.mean(),
                                         scale=values.std(ddof=1) / math.sqrt(len(values)))
    assert mean == pytest.approx(values.mean(), abs=1e-12)
    assert (low, high) == pytest.approx((ref_low, ref_high), abs=1e-12)


def test_mean_interval_of_one_value_has_no_interval_and_of_none_is_an_error():
    mean, low, high = plotting.mean_interval([0.7])
    assert mean == 0.7 and math.isnan(low) and math.isnan(high)
    with pytest.raises(ValueError, match="at least one"):
        plotting.mean_interval([])


def test_theme_applies_inside_the_block_only():
    before = matplotlib.rcParams["axes.prop_cycle"]
    with plotting.theme():
        colors = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
        assert colors[:3] == plotting.PALETTE[:3]
    assert matplotlib.rcParams["axes.prop_cycle"] == before


def test_modality_colours_are_distinct():
    audio, visual, both = (plotting.MODALITY_COLORS[k] for k in ("audio", "visual", "both"))
    assert len({audio, visual, both}) == 3


def test_fusion_label_names_early_and_late():
    assert plotting.fusion_label(1, 2) == "k=1 (early)"
    assert plotting.fusion_label(2, 2) == "k=2"
    assert plotting.fusion_label(3, 2) == "k=3 (late)"
    assert plotting.fusion_label(3, None) == "k=3"


def test_heatmap_labels_and_annotates_cells():
    fig = _figure()
    ax = fig.axes[1]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["fused.1", "fused.2"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["audio.1", "visual.1"]
    assert sorted(t.get_text() for t in ax.texts) == ["0.10", "0.50", "0.90", "1.00"]


def test_save_figure_writes_png_and_pdf(tmp_path):
    written = plotting.save_figure(_figure(), tmp_path / "out", "demo")
    assert written == [tmp_path / "out" / "demo.png", tmp_path / "out" / "demo.pdf"]
    assert written[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert written[1].read_bytes()[:5] == b"%PDF-"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["demo.pdf", "demo.png"]


def test_save_figure_is_reproducible(tmp_path):
    first = plotting.save_figure(_figure(), tmp_path / "a", "demo")
    second = plotting.save_figure(_figure(), tmp_path / "b", "demo")
    for one, two in zip(first, second, strict=True):
        assert one.read_bytes() == two.read_bytes()


def test_save_figure_leaves_nothing_when_writing_fails(tmp_path, monkeypatch):
    fig = _figure()

    def broken(path, **kwargs):
        with open(path, "wb") as handle:
            handle.write(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(fig, "savefig", broken)
    with pytest.raises(OSError, match="disk full"):
        plotting.save_figure(fig, tmp_path, "demo")
    assert list(tmp_path.iterdir()) == []


def test_write_table_round_trips_with_input_digests(tmp_path):
    source = tmp_path / "metrics.json"
    source.write_bytes(b'{"clean_accuracy": 0.9}')
    table = pd.DataFrame({"layer": ["audio.1", "fused.2"], "time_step": [1, 2],
                          "cka": [0.123456789, 1.0]})
    path = plotting.write_table(table, tmp_path / "figs" / "demo.csv", {source: "run a"})
    read, inputs = plotting.read_table(path)
    assert inputs == {str(source): hashlib.sha256(source.read_bytes()).hexdigest()}
    assert list(read.columns) == ["layer", "time_step", "cka"]
    assert read["layer"].tolist() == ["audio.1", "fused.2"]
    np.testing.assert_allclose(read["cka"], [0.123457, 1.0], rtol=1e-6)
    header = path.read_text().splitlines()
    assert header[0] == "# repsim figure data: demo"
    assert header[1].startswith("# versions: repsim=")
    assert "(run a)" in header[2]
    assert pd.read_csv(path, comment="#").shape == (2, 3)


def test_write_table_refuses_a_missing_input_and_leaves_no_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.h5"):
        plotting.write_table(pd.DataFrame({"a": [1]}), tmp_path / "t.csv", [tmp_path / "nope.h5"])
    assert list(tmp_path.iterdir()) == []
