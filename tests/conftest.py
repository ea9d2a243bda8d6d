"""Shared fixtures: where the real data lives, and whether its absence is allowed."""

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
