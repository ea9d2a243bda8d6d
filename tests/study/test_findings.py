"""The README's findings and the results page say of each comparison what its report says:
every ``difference [interval] verdict`` they give is a row of a committed comparison table
with that verdict, and neither calls a comparison "no difference" (the reports never do: a
comparison is better, worse, equivalent or inconclusive)."""

import re

import pandas as pd
import pytest
from paths import REPO_ROOT

from repsim.study.comparisons import VERDICTS, short_verdict
from repsim.study.report import COMPARISONS_FILE, OPERATOR_COMPARISONS_FILE

CITED = re.compile(r"(?<![\d.])([+-]\d+\.\d) \[([+-]\d+\.\d), ([+-]\d+\.\d)\] ("
                   + "|".join(VERDICTS) + r")\b")
# Phrases that read a test's silence as an absence of difference.
ABSENCE = ("n.d.", "not distinguishable", "indistinguishable", "no difference", "did not differ",
           "no operator differed")
PAGES = {"README": REPO_ROOT / "README.md", "results": REPO_ROOT / "docs" / "results.md"}


def findings(page: str) -> str:
    """The README's "What it found" section, or the whole results page."""
    text = PAGES[page].read_text()
    if page != "README":
        return text
    return text.split("## What it found\n", 1)[1].split("\n## ", 1)[0]


def committed_verdicts() -> dict[tuple[str, str, str], set[str]]:
    """``(difference, low, high)`` in points as the tables print them -> the verdicts of the
    committed comparisons with those numbers."""
    table = pd.concat([pd.read_csv(path) for name in (COMPARISONS_FILE,
                                                       OPERATOR_COMPARISONS_FILE)
                       for path in sorted((REPO_ROOT / "studies").glob(f"*/{name}"))])
    table = table.dropna(subset=["difference"])
    verdicts: dict[tuple[str, str, str], set[str]] = {}
    for _, row in table.iterrows():
        key = tuple(f"{100 * row[column]:+.1f}" for column in ("difference", "t_low", "t_high"))
        verdicts.setdefault(key, set()).add(short_verdict(row))
    return verdicts


def check_cited(page: str) -> int:
    """Assert that every comparison ``page`` cites has its report's numbers and verdict;
    returns how many it cites."""
    cited = CITED.findall(findings(page))
    verdicts = committed_verdicts()
    for difference, low, high, verdict in cited:
        assert (difference, low, high) in verdicts, (
            f"{page} cites {difference} [{low}, {high}], which no committed comparison has")
        assert verdict in verdicts[(difference, low, high)], (
            f"{page} calls {difference} [{low}, {high}] {verdict}; its report says "
            f"{' or '.join(sorted(verdicts[(difference, low, high)]))}")
    return len(cited)


def check_wording(page: str) -> None:
    """Assert that ``page`` reads no test's silence as an absence of difference."""
    text = " ".join(findings(page).lower().split())  # phrases broken over lines joined
    for phrase in ABSENCE:
        assert phrase not in text, f"{page} says {phrase!r}; say equivalent or inconclusive"


@pytest.mark.parametrize("page", list(PAGES))
def test_every_cited_comparison_has_its_reports_verdict(page):
    assert check_cited(page) >= 10  # the findings cite comparisons as "d [low, high] verdict"


@pytest.mark.parametrize("page", list(PAGES))
def test_no_comparison_is_called_no_difference(page):
    check_wording(page)


def test_a_page_calling_an_inconclusive_comparison_equivalent_fails(monkeypatch, tmp_path):
    """The checks can fail: fusion_ops' gated k = 1 minus k = 3 under audio noise on the
    synthetic data (inconclusive) called equivalent, and operators "showing no difference"."""
    page = tmp_path / "README.md"
    monkeypatch.setitem(PAGES, "README", page)
    page.write_text("## What it found\n\ngated: -0.1 [-10.4, +10.3] equivalent.\n\n## Next\n")
    with pytest.raises(AssertionError, match="its report says inconclusive"):
        check_cited("README")
    page.write_text("## What it found\n\nThe operators showed no\ndifference.\n\n## Next\n")
    with pytest.raises(AssertionError, match="no difference"):
        check_wording("README")
