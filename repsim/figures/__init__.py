"""repsim.figures: one module per figure family, each importable, runnable and tested.

``repsim.figures.<name>.run(...)`` makes a figure from Python and returns the files it wrote;
``python -m repsim.figures NAME [options]`` (or ``python analyses/NAME.py``) from the command
line. ``FIGURES`` names them all; ``repsim.figures.base`` holds what they share.
"""

from __future__ import annotations

import importlib
from types import ModuleType

FIGURES = ("cka_by_layer", "rsa_by_layer", "probes_by_layer", "ablation_sensitivity",
           "noise_robustness", "temporal_generalization", "rsa_over_time")


def figure(name: str) -> ModuleType:
    """The module of figure ``name``, as the command line names it.

    Parameters
    ----------
    name
        One of ``FIGURES``, e.g. ``"cka_by_layer"``.

    Returns
    -------
    types.ModuleType
        The figure's module: its ``run``, ``main``, ``plot``.

    Raises
    ------
    ValueError
        For any other name, listing the figures.

    Examples
    --------
    ```python
    from repsim.figures import figure

    figure("rsa_over_time").run(["runs/synthetic-f1-s0"], out_dir="out")  # png, pdf, csv
    ```
    """
    if name not in FIGURES:
        raise ValueError(f"unknown figure {name!r}; choose one of {', '.join(FIGURES)}")
    return importlib.import_module(f"{__name__}.{name}")
