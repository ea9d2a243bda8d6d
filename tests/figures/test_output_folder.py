"""Figures are written where git does not track them: running a figure command in a checkout
changes no committed file, and the figures the README shows live under docs/."""

from __future__ import annotations

import re
import subprocess

import pytest
from paths import REPO_ROOT

from repsim.figures import FIGURES
from repsim.figures.base import FIGURES_DIR


def git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=60)


@pytest.mark.skipif(not (REPO_ROOT / ".git").exists(), reason="needs a git checkout")
def test_the_default_output_folder_is_ignored_and_holds_no_tracked_file():
    assert git("ls-files", "--", FIGURES_DIR).stdout == ""
    for name in (*FIGURES, "stimuli"):
        for suffix in (".png", ".pdf", ".csv"):
            path = f"{FIGURES_DIR}/{name}{suffix}"
            assert git("check-ignore", "-q", path).returncode == 0, path


def test_every_image_the_readme_and_the_docs_show_is_committed_outside_the_output_folder():
    """A page's image is the page's folder's file, or (added by the site's hook) the
    repository's; either way committed, and never in the ignored output folder."""
    pages = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").rglob("*.md"))]
    shown = [(page, link) for page in pages
             for link in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", page.read_text())]
    assert shown
    for page, link in shown:
        path = page.parent / link if (page.parent / link).is_file() else REPO_ROOT / link
        assert path.is_file(), (page.name, link)
        relative = path.resolve().relative_to(REPO_ROOT.resolve())
        assert relative.parts[0] != FIGURES_DIR, (page.name, link)
        if (REPO_ROOT / ".git").exists():
            assert git("ls-files", "--error-unmatch", str(relative)).returncode == 0, relative
