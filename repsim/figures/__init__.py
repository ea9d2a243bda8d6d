"""repsim.figures: one module per figure family, each importable, runnable and tested.

``repsim.figures.<name>.run(...)`` makes a figure from Python and returns the files it wrote;
``python -m repsim.figures NAME [options]`` (or ``python analyses/NAME.py``) from the command
line. :data:`FIGURES` names them all; :mod:`repsim.figures.base` holds what they share.
"""

from __future__ import annotations

import importlib
from types import ModuleType

FIGURES = ("cka_by_layer", "rsa_by_layer", "probes_by_layer", "ablation_sensitivity",
           "noise_robustness", "temporal_generalization", "rsa_over_time")


def figure(name: str) -> ModuleType:
    """The module of figure ``name`` (its ``run``, ``main``, ``plot``); ValueError listing
    the figures for any other name."""
    if name not in FIGURES:
        raise ValueError(f"unknown figure {name!r}; choose one of {', '.join(FIGURES)}")
    return importlib.import_module(f"{__name__}.{name}")
