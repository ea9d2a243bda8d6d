"""CPU threads: ``limit_threads`` reaches torch and the BLAS/OpenMP pools already loaded."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from paths import REPO_ROOT

from repsim.device import available_cores, limit_threads

POOLS = """
import json, os, numpy, torch
from threadpoolctl import threadpool_info
from repsim.device import limit_threads

def pools():
    return {i["internal_api"]: i["num_threads"] for i in threadpool_info()}

before = pools()
limit_threads(1)
print(json.dumps({"before": before, "after": pools(), "torch": torch.get_num_threads(),
                  "env": os.environ["OPENBLAS_NUM_THREADS"]}))
"""


@pytest.mark.skipif(available_cores() < 2, reason="needs two cores to start with two threads")
def test_limit_threads_reaches_pools_loaded_before_it():
    # numpy's OpenBLAS reads its thread count once, when it loads: a process that loaded it
    # on two threads and then set the environment variable alone would stay on two.
    env = {**os.environ, "OMP_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "2"}
    done = subprocess.run([sys.executable, "-c", POOLS], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["before"]["openblas"] == 2
    assert set(result["after"].values()) == {1} and "openblas" in result["after"]
    assert result["torch"] == 1 and result["env"] == "1"


def test_limit_threads_refuses_less_than_one():
    with pytest.raises(ValueError, match="threads must be at least 1, got 0"):
        limit_threads(0)
