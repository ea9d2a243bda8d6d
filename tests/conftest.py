"""Shared fixtures: where the real data lives, and whether its absence is allowed; a folder
nothing can be written to. One thread per pytest-xdist worker (below)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from paths import SHARED_DATA
from threadpoolctl import threadpool_info, threadpool_limits

# pytest -n N runs N workers side by side. A worker whose torch, OpenMP and BLAS pools each
# take every core waits on the other's threads (a test took 73 s beside another worker, 6.5 s
# alone), so each worker, and every process it starts, runs on one thread. Set before any
# test module imports numpy or torch, which read these once when loaded.
ONE_THREAD_PER_WORKER = bool(os.environ.get("PYTEST_XDIST_WORKER"))
if ONE_THREAD_PER_WORKER:
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[variable] = "1"


@pytest.fixture(autouse=True)
def _one_thread_after_each_test():
    """Back to one thread after a test that ran a command with ``--threads N`` in this process
    (``limit_threads`` sets torch's pool and the BLAS/OpenMP pools for the process's life):
    a later test on a wider pool beside the other worker ran 10x slower."""
    yield
    if not ONE_THREAD_PER_WORKER:
        return
    if any(pool["num_threads"] != 1 for pool in threadpool_info()):
        threadpool_limits(limits=1)
    if "torch" in sys.modules and sys.modules["torch"].get_num_threads() != 1:
        sys.modules["torch"].set_num_threads(1)


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
