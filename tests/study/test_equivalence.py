"""Equivalence as a verdict: the two one-sided tests against scipy and the 90 % interval
written out, Holm on the TOST p-values within each family, the four verdicts, the margins a
study file sets, and a verdict that changes without the failed runs."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from repsim.analysis.stats import equivalence_test, holm
from repsim.study.comparisons import comparisons, verdicts_without
from repsim.study.settings import DEFAULT_MARGINS, PRIMARY, Analysis, parse_analysis
from repsim.study.tables import verdict_cell

DIFFERENCES = [np.array([0.004, -0.006, 0.011, 0.002, -0.001]),  # small: inside 0.02
               np.array([0.03, -0.04, 0.05, 0.01, -0.02]),  # wide: neither
               np.array([0.08, 0.11, 0.09, 0.12, 0.10])]  # far outside


@pytest.mark.parametrize("d", DIFFERENCES)
@pytest.mark.parametrize("margin", [0.02, 0.05])
def test_tost_is_two_one_sided_t_tests_and_the_90_percent_interval(d, margin):
    result = equivalence_test(d, margin)
    lower = stats.ttest_1samp(d + margin, 0.0, alternative="greater").pvalue  # mean > -m
    upper = stats.ttest_1samp(d - margin, 0.0, alternative="less").pvalue  # mean < +m
    assert result.p_lower == pytest.approx(lower, rel=1e-10)
    assert result.p_upper == pytest.approx(upper, rel=1e-10)
    assert result.p_value == pytest.approx(max(lower, upper), rel=1e-10)
    n, mean, sd = d.size, d.mean(), d.std(ddof=1)
    half = stats.t.ppf(0.95, n - 1) * sd / math.sqrt(n)  # the 90 % t interval, written out
    assert result.interval == pytest.approx((mean - half, mean + half), rel=1e-12)
    inside = -margin < mean - half and mean + half < margin
    assert (result.p_value < 0.05) == inside


def test_tost_refuses_a_margin_that_is_not_positive():
    with pytest.raises(ValueError, match="margin must be a positive number"):
        equivalence_test(DIFFERENCES[0], 0.0)


def measures_of(shifts: dict[int, float], noise: float, seeds: int = 5) -> pd.DataFrame:
    """k=1 at 0.8 on every primary measure, k = 2, 3 shifted by ``shifts[k]``, with noise."""
    rng = np.random.default_rng(1)
    rows = []
    for seed in range(seeds):
        base = 0.8 + 0.02 * rng.normal()
        for measure in PRIMARY:
            for k in (1, 2, 3):
                rows.append({"dataset": "d", "protocol": "p", "fusion_layer": k, "seed": seed,
                             "measure": measure,
                             "value": base + shifts.get(k, 0.0) + noise * rng.normal()})
    return pd.DataFrame(rows)


def test_verdicts_better_equivalent_and_inconclusive_with_holm_on_tost():
    measures = measures_of({2: -0.2, 3: 0.0}, noise=0.002)  # k=1 better than 2, same as 3
    table = comparisons(measures, n_boot=200)
    for _, row in table.iterrows():
        values = measures[measures["measure"] == row["measure"]].pivot(
            index="seed", columns="fusion_layer", values="value")
        d = (values[1] - values[row["fusion_layer"]]).to_numpy()
        margin = DEFAULT_MARGINS[row["measure"]] / 100
        assert row["margin"] == pytest.approx(margin)
        assert row["tost_p"] == pytest.approx(equivalence_test(d, margin).p_value)
    np.testing.assert_allclose(table["holm_tost_p"], holm(table["tost_p"].to_numpy()))
    assert set(table.loc[table["fusion_layer"] == 2, "verdict"]) == {"k=1 better"}
    assert set(table.loc[table["fusion_layer"] == 3, "verdict"]) == {"equivalent"}
    noisy = comparisons(measures_of({3: 0.0}, noise=0.05), n_boot=200)
    assert set(noisy["verdict"]) == {"inconclusive"}  # not "no difference": too few seeds


def test_a_study_margin_changes_the_verdict():
    measures = measures_of({3: 0.02}, noise=0.002)  # 2 points apart, tightly
    default = comparisons(measures, n_boot=200).set_index(["fusion_layer", "measure"])
    wide = comparisons(measures, n_boot=200, analysis=parse_analysis(
        {"equivalence_margin": {"clean_accuracy": 4.0}})).set_index(["fusion_layer", "measure"])
    assert default.loc[(3, "clean_accuracy"), "verdict"] == "k=1 worse"  # 2 points > 1
    assert wide.loc[(3, "clean_accuracy"), "verdict"] == "k=1 worse"  # still significant
    assert verdict_cell(wide.loc[(3, "clean_accuracy")]).endswith("worse (inside ±4)")
    assert verdict_cell(default.loc[(3, "clean_accuracy")]).endswith("worse")


def test_a_verdict_that_changes_without_the_failed_runs_is_flagged():
    measures = measures_of({3: -0.1}, noise=0.002)
    failed = measures[(measures["fusion_layer"] == 3) & (measures["seed"] == 4)]
    measures.loc[failed.index, "value"] = 0.1  # seed 4 of k = 3 failed to train
    table = comparisons(measures, n_boot=200)
    table["verdict_without_failed"] = verdicts_without(
        table, measures, failed.drop_duplicates(["fusion_layer", "seed"]), comparisons)
    row = table[(table["fusion_layer"] == 3) & (table["measure"] == "clean_accuracy")].iloc[0]
    assert row["verdict"] == "inconclusive"
    assert row["verdict_without_failed"] == "k=1 better"
    assert verdict_cell(row).endswith("inconclusive; better without the failed runs")
    same = table[table["fusion_layer"] == 2].iloc[0]
    assert "without" not in verdict_cell(same)  # k = 2 had no failed run: no flag


@pytest.mark.parametrize(("table", "message"), [
    ({"equivalence_margin": 0}, "analysis.equivalence_margin must be a number of points"),
    ({"equivalence_margin": {"auc": 2}}, "unknown measure 'auc'"),
    ({"equivalence_margin": {"auc_audio": "5"}}, "analysis.equivalence_margin.auc_audio"),
    ({"min_val_accuracy": 1.5}, "analysis.min_val_accuracy must be a number in (0, 1]"),
    ({"margin": 2}, "unknown key analysis.margin"),
])
def test_bad_analysis_tables_are_one_line(table, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")
                       .replace("[", r"\[").replace("]", r"\]")):
        parse_analysis(table)


def test_one_margin_for_all_and_the_defaults():
    assert Analysis().margins == DEFAULT_MARGINS == {
        "clean_accuracy": 1.0, "auc_audio": 5.0, "auc_visual": 5.0, "auc_both": 5.0}
    assert parse_analysis({"equivalence_margin": 2}).margins == dict.fromkeys(PRIMARY, 2.0)
    assert parse_analysis({"min_val_accuracy": 0.5}).min_val_accuracy == 0.5
