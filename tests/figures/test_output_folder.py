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


def test_every_image_the_readme_shows_is_committed_under_docs():
    readme = (REPO_ROOT / "README.md").read_text()
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", readme)
    assert images
    for image in images:
        assert image.startswith("docs/") and (REPO_ROOT / image).is_file(), image
