"""The report's time-resolved section from run summaries whose time courses are known: the
onset over seeds as the cluster test finds it, the stability's mean and interval, the paired
comparisons of the readout layer's stability (against scipy's paired t-test and Holm's
correction written out), and runs summarised before time courses left out and counted."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import pytest
from scipy import stats

from repsim.study.timecourse import onset_table, stability_comparisons, time_rows, time_section

STEPS, SEEDS = 6, 6


@dataclass
class Records:
    summary: dict


def _run(k: int, seed: int, appear: int, stability: float, rng) -> tuple:
    """A run of fusion layer ``k`` whose readout layer's heard label appears at ``appear``
    (0-based) and whose seen label never does."""
    heard = 0.1 + np.where(np.arange(STEPS) >= appear, 0.6, 0.0) + 0.02 * rng.normal(size=STEPS)
    seen = 0.1 + 0.02 * rng.normal(size=STEPS)
    layer = "fused.2"
    summary = {"readout": {"layers": [layer]},
               "time": {"layers": {layer: {
                   "heard": {"diagonal": heard.tolist(), "stability": stability, "chance": 0.1},
                   "seen": {"diagonal": seen.tolist(), "stability": 0.0, "chance": 0.1}}}}}
    run = SimpleNamespace(dataset="synthetic", protocol="clean", fusion_op="concat",
                          fusion_layer=k, seed=seed)
    return run, Records(summary)


@pytest.fixture
def usable():
    rng = np.random.default_rng(0)
    runs = [_run(1, s, 1, 0.8 + 0.01 * s, rng) for s in range(SEEDS)]
    runs += [_run(3, s, 3, 0.5 + 0.03 * s * (s % 2), rng) for s in range(SEEDS)]
    return runs


def test_onsets_over_seeds_are_where_the_time_courses_rise(usable):
    onsets = onset_table(time_rows(usable, operators=False)).set_index(
        ["fusion_layer", "label"])
    assert onsets.loc[(1, "heard"), "onset"] == 2 and onsets.loc[(3, "heard"), "onset"] == 4
    assert np.isnan(onsets.loc[(1, "seen"), "onset"])
    assert onsets.loc[(1, "heard"), "onset_p"] == pytest.approx(1 / 2 ** SEEDS)
    stability = np.array([0.8 + 0.01 * s for s in range(SEEDS)])
    half = stats.t.ppf(0.975, SEEDS - 1) * stability.std(ddof=1) / np.sqrt(SEEDS)
    assert onsets.loc[(1, "heard"), "stability"] == pytest.approx(stability.mean())
    assert onsets.loc[(1, "heard"), "stability_high"] == pytest.approx(stability.mean() + half)


def test_the_readout_layers_stability_is_compared_paired_by_seed_with_holm(usable):
    table = stability_comparisons(time_rows(usable, operators=False)).set_index("label")
    early = np.array([0.8 + 0.01 * s for s in range(SEEDS)])
    late = np.array([0.5 + 0.03 * s * (s % 2) for s in range(SEEDS)])
    result = stats.ttest_rel(early, late)
    heard = table.loc["heard"]
    assert heard["difference"] == pytest.approx((early - late).mean())
    assert heard["p"] == pytest.approx(result.pvalue)
    assert heard["holm_p"] == pytest.approx(result.pvalue)  # one test in its family
    assert heard["verdict"] == "higher"
    seen = table.loc["seen"]  # the same stability everywhere: no difference to find
    assert seen["difference"] == 0 and seen["verdict"] == "inconclusive"


def test_the_section_says_which_runs_lack_time_courses(usable, tmp_path):
    old = SimpleNamespace(dataset="synthetic", protocol="clean", fusion_op="concat",
                          fusion_layer=1, seed=9)
    lines = time_section([*usable, (old, Records({"readout": {"layers": ["fused.2"]}}))],
                         operators=False, folder=tmp_path)
    text = "\n".join(lines)
    assert "1 finished runs were summarised before time courses" in text
    assert "| synthetic | clean | 1 | fused.2 | heard | 6 | t=2 |" in text
    assert (tmp_path / "timecourse.csv").is_file()
