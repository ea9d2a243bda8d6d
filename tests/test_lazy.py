"""Lazy package namespaces (repsim.lazy) and config defaults read without making a config:
what lets a command's parser load without torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from paths import REPO_ROOT

from repsim.config import config_defaults
from repsim.data.config import DataConfig
from repsim.extract import ExtractConfig
from repsim.models.config import ModelConfig
from repsim.rundir import CHECKPOINT_FILE
from repsim.train.config import TrainConfig

# Run in a fresh interpreter: what a light import loads, and what the lazy names resolve to.
PROBE = r"""
import json, sys
import repsim.models.config, repsim.data.config, repsim.train.config, repsim.analysis.choices
light = sorted(m for m in ("torch", "sklearn", "matplotlib") if m in sys.modules)
import repsim.analysis
import repsim.analysis.cka  # binds the submodule on its package, where the function must win
from repsim.analysis import *  # noqa: F403
import repsim.models
print(json.dumps({
    "light": light,
    "cka_is_function": callable(repsim.analysis.cka) and repsim.analysis.cka.__module__
                       == "repsim.analysis.cka",
    "star": sorted(name for name in repsim.analysis.__all__ if name in globals()),
    "all": sorted(repsim.analysis.__all__),
    "dir": all(name in dir(repsim.models) for name in repsim.models.__all__),
    "same": repsim.models.FusionConvLSTM is sys.modules["repsim.models.fusion"].FusionConvLSTM,
}))
"""


def test_light_modules_load_without_torch_and_lazy_names_resolve():
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found["light"] == []
    assert found["cka_is_function"]
    assert found["star"] == found["all"] and "cka_matrix" in found["all"]
    assert found["dir"] and found["same"]


def test_an_unknown_name_is_an_attribute_error():
    import repsim.analysis

    with pytest.raises(AttributeError, match="has no attribute 'no_such_measure'"):
        repsim.analysis.no_such_measure  # noqa: B018


@pytest.mark.parametrize("made", [TrainConfig(), DataConfig(), ModelConfig(),
                                  ExtractConfig(checkpoint=CHECKPOINT_FILE)],
                         ids=lambda config: type(config).__name__)
def test_config_defaults_are_the_defaults_of_a_made_config(made):
    cls = type(made)
    defaults = config_defaults(cls)
    if cls is ExtractConfig:  # no default: the one field a caller must give
        defaults["checkpoint"] = CHECKPOINT_FILE
    assert json.loads(json.dumps(defaults)) == made.to_dict()
