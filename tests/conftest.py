"""Shared fixtures: where the real data lives, and whether its absence is allowed; a folder
nothing can be written to."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from paths import SHARED_DATA


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real FSDD/MNIST copies in ../shared/data: mandatory under CI=true, else optional."""
    if not SHARED_DATA.is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but the real data folder {SHARED_DATA} is missing")
        pytest.skip(f"real data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture
def unwritable_dir(tmp_path) -> Path:
    """A directory this process cannot create files in (root ignores mode bits: use /sys)."""
    directory = tmp_path / "read-only"
    directory.mkdir(mode=0o555)
    if os.access(directory, os.W_OK):
        directory = Path("/sys")
        if not directory.is_dir() or os.access(directory, os.W_OK) and _can_create(directory):
            pytest.fail("found no unwritable directory to test with")
    return directory


def _can_create(directory: Path) -> bool:
    try:
        (directory / ".repsim-probe").open("xb").close()
    except OSError:
        return False
    (directory / ".repsim-probe").unlink()
    return True
