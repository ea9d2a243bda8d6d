"""From per-seed measures to paired comparisons: numbers against scipy, Holm, untested cells."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from repsim.analysis.stats import detectable_difference, holm
from repsim.study.comparisons import PRIMARY, comparisons, per_seed_measures


def measures_table(seeds: int, shift: float) -> pd.DataFrame:
    rng = np.random.default_rng(seeds)
    rows = []
    for k in (1, 2, 3):
        for seed in range(seeds):
            for i, measure in enumerate(PRIMARY):
                value = 0.5 + 0.1 * i + (shift if k == 1 else 0) + rng.normal(0, 0.02)
                rows.append({"dataset": "d", "protocol": "p", "fusion_layer": k, "seed": seed,
                             "measure": measure, "value": value})
    return pd.DataFrame(rows)


def test_comparisons_match_scipy_and_holm_over_the_family():
    measures = measures_table(5, 0.2)
    table = comparisons(measures, n_boot=500)
    assert len(table) == len(PRIMARY) * 2
    p_values = []
    for _, row in table.iterrows():
        values = measures[measures["measure"] == row["measure"]].pivot(
            index="seed", columns="fusion_layer", values="value")
        reference = stats.ttest_rel(values[1], values[row["fusion_layer"]])
        assert row["t_p"] == pytest.approx(reference.pvalue)
        assert row["difference"] == pytest.approx((values[1] - values[row["fusion_layer"]])
                                                  .mean())
        p_values.append(reference.pvalue)
    np.testing.assert_allclose(table["holm_p"], holm(p_values))
    assert set(table["verdict"]) == {"k=1 better"}


def test_detectable_difference_is_at_the_familys_corrected_level():
    # a family of 8 tests (4 measures x 2 layers): a difference the study could not pass
    # through Holm's correction must not be reported as detectable
    measures = measures_table(5, 0.0)
    table = comparisons(measures, n_boot=500)
    row = table.iloc[0]
    values = measures[measures["measure"] == row["measure"]].pivot(
        index="seed", columns="fusion_layer", values="value")
    sd = float(np.std(values[1] - values[row["fusion_layer"]], ddof=1))
    assert row["detectable"] == pytest.approx(detectable_difference(sd, 5, alpha=0.05 / 8))
    assert row["detectable"] > detectable_difference(sd, 5, alpha=0.05)


def test_cells_with_fewer_than_three_seeds_are_not_tested():
    table = comparisons(measures_table(2, 0.05), n_boot=500)
    assert set(table["verdict"]) == {"not tested (2 paired seeds)"}
    assert table["holm_p"].isna().all()


def test_per_seed_measures_compute_the_normalised_auc():
    rows = [{"dataset": "d", "protocol": "p", "fusion_layer": 1, "seed": 0,
             "measure": "accuracy", "noise": noise, "snr_db": snr, "removed": removed,
             "value": value}
            for noise, snr, removed, value in [
                ("none", np.inf, "none", 0.9), ("audio", 0.0, "none", 0.2),
                ("audio", 10.0, "none", 0.6), ("visual", 0.0, "none", 0.8),
                ("visual", 10.0, "none", 0.8), ("both", 0.0, "none", 0.1),
                ("both", 10.0, "none", 0.3), ("none", np.inf, "audio", 0.1),
                ("none", np.inf, "visual", 0.7)]]
    rows += [{"dataset": "d", "protocol": "p", "fusion_layer": 1, "seed": 0, "measure": name,
              "noise": "none", "snr_db": np.inf, "removed": "none", "value": 0.5}
             for name in ("reliance_index", "probe_heard", "probe_seen")]
    measures = per_seed_measures(pd.DataFrame(rows)).set_index("measure")["value"]
    assert measures["auc_audio"] == pytest.approx(0.4)
    assert measures["auc_both"] == pytest.approx(0.2)
    assert measures["removed_visual"] == 0.7 and measures["clean_accuracy"] == 0.9
