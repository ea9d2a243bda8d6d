"""A study's answer tables, and the README quoting the committed studies' tables verbatim."""

import pandas as pd
import pytest
from paths import REPO_ROOT

from repsim.rundir import STUDY_FILE
from repsim.study.comparisons import per_seed_measures
from repsim.study.report import (
    ANSWER_FILE,
    COMPARISONS_FILE,
    OPERATOR_COMPARISONS_FILE,
    RESULTS_FILE,
    late_layer,
)
from repsim.study.spec import load_study
from repsim.study.tables import answer_text, headline_table, representation_table

ANSWERS = sorted((REPO_ROOT / "studies").glob(f"*/{ANSWER_FILE}"))


def comparison(measure, k, **values):
    return {"dataset": "synthetic", "protocol": "clean", "measure": measure, "reference": 1,
            "fusion_layer": k, **values}


def test_headline_rows_give_seeds_mean_difference_interval_and_verdict():
    table = pd.DataFrame([
        comparison("clean_accuracy", 2, n_seeds=5, reference_mean=0.9875, other_mean=0.95,
                   difference=0.0375, t_low=0.01, t_high=0.065, margin=0.01,
                   holm_tost_p=0.9, verdict="k=1 better"),
        comparison("clean_accuracy", 3, n_seeds=5, reference_mean=0.9875, other_mean=0.99,
                   difference=-0.0025, t_low=-0.02, t_high=0.015, margin=0.01,
                   holm_tost_p=0.2, verdict="inconclusive"),
        comparison("auc_audio", 2, n_seeds=2, reference_mean=0.5, other_mean=0.6,
                   verdict="not tested (2 paired seeds)"),
        comparison("auc_audio", 3, n_seeds=5, reference_mean=0.5, other_mean=0.49,
                   difference=0.004, t_low=0.001, t_high=0.007, margin=0.05,
                   holm_tost_p=0.001, verdict="k=1 better",
                   verdict_without_failed="equivalent"),
    ])
    lines = headline_table(table).splitlines()
    assert lines[0].endswith("| k=1 − k=2 (points) | k=1 − k=3 (points) |")
    assert lines[2] == ("| synthetic | clean | clean accuracy | 5 | 98.8 % | "
                        "+3.8 [+1.0, +6.5] better | -0.2 [-2.0, +1.5] inconclusive |")
    assert lines[3] == ("| synthetic | clean | AUC, audio noise | 2 | 50.0 % | not tested | "
                        "+0.4 [+0.1, +0.7] better (inside ±5); equivalent without the failed "
                        "runs |")


def test_headline_without_k1_runs_or_without_other_layers():
    only_other = pd.DataFrame([comparison("clean_accuracy", 2, n_seeds=0,
                                          verdict="not tested (0 paired seeds)")])
    assert headline_table(only_other).splitlines()[2] == (
        "| synthetic | clean | clean accuracy | 0 | - | not tested |")
    assert headline_table(pd.DataFrame()).startswith("No comparison")


def test_representation_rows_give_mean_and_spread_over_seeds():
    rows = [{"dataset": "d", "protocol": "p", "fusion_layer": k, "seed": seed,
             "measure": measure, "value": value + offset}
            for k, offset in ((1, 0.0), (3, 0.5))
            for seed, value in enumerate([0.1, 0.2, 0.3])
            for measure in ("reliance_index", "probe_heard", "probe_seen")]
    lines = representation_table(pd.DataFrame(rows)).splitlines()
    assert lines[0] == ("| dataset | training | k | seeds | reliance on audio | "
                        "heard digit decoded | seen digit decoded |")
    assert lines[2] == "| d | p | 1 | 3 | 0.20 (0.10) | 0.20 (0.10) | 0.20 (0.10) |"
    assert lines[3] == "| d | p | 3 | 3 | 0.70 (0.10) | 0.70 (0.10) | 0.70 (0.10) |"


@pytest.mark.parametrize("answer", ANSWERS, ids=[path.parent.name for path in ANSWERS])
def test_committed_answers_come_from_their_comparisons_and_the_docs_quote_them(answer):
    """Each committed answer is what its CSVs give, and its tables stand verbatim in the
    README (the studies its opening answers with) or on the results page."""
    text = answer.read_text()
    measures = per_seed_measures(pd.read_csv(answer.parent / RESULTS_FILE))
    operators = answer.parent / OPERATOR_COMPARISONS_FILE
    late = late_layer(load_study(answer.parent / STUDY_FILE))
    assert text == answer_text(pd.read_csv(answer.parent / COMPARISONS_FILE), measures,
                               pd.read_csv(operators) if operators.is_file() else None,
                               late=late)
    quoted = ((REPO_ROOT / "README.md").read_text()
              + (REPO_ROOT / "docs" / "results.md").read_text())
    for table in text.split("\n\n"):
        assert table.strip() + "\n" in quoted, (
            f"neither README.md nor docs/results.md quotes a table of "
            f"{answer.relative_to(REPO_ROOT)} verbatim")
