"""How a study's report judges its runs: the ``[analysis]`` table of a study file.

```toml
[analysis]
equivalence_margin = 2.0                              # points, every primary measure
equivalence_margin = { clean_accuracy = 0.5 }         # or per measure (others: default)
min_val_accuracy = 0.5                                # a run below it failed to train
```

``equivalence_margin`` is the smallest difference that matters, in percentage points of the
measure, per primary measure (``PRIMARY``); a comparison whose
90 % interval lies inside it is *equivalent* (``repsim.study.comparisons``). The defaults,
``DEFAULT_MARGINS``, are 1 point of clean accuracy and 5 points of each noise AUC (why:
``docs/studies.md``). ``min_val_accuracy`` is the final validation accuracy below which a run
*failed to train*; by default each cell's own threshold, chance plus half the distance from
chance to the cell's median (``repsim.study.training``).

Nothing here changes what a run trains or records: a study file may change its
``[analysis]`` table and keep its finished runs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from repsim.conditions import NOISE_KINDS

ANALYSIS_OPTIONS = ("equivalence_margin", "min_val_accuracy")
# The primary measures, compared between fusion layers and operators (repsim.study.comparisons)
PRIMARY = ("clean_accuracy", *(f"auc_{kind}" for kind in NOISE_KINDS))
# and their default equivalence margins in percentage points.
DEFAULT_MARGINS: dict[str, float] = {measure: 1.0 if measure == "clean_accuracy" else 5.0
                                     for measure in PRIMARY}
MAX_MARGIN = 100.0  # points: a margin as wide as the measure's whole range says nothing


@dataclass(frozen=True)
class Analysis:
    """The report's judgement settings (see the module docstring).

    Parameters
    ----------
    margins
        The equivalence margin of each primary measure, in percentage points.
    min_val_accuracy
        The final validation accuracy below which a run failed to train; ``None``: each cell's
        default threshold.
    """

    margins: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_MARGINS))
    min_val_accuracy: float | None = None

    def margin(self, measure: str) -> float:
        """The equivalence margin of a measure as a fraction (the measures' own unit).

        Parameters
        ----------
        measure
            A primary measure.

        Returns
        -------
        float
        """
        return self.margins[measure] / 100


def _margin(value: object, where: str) -> float:
    if (isinstance(value, bool) or not isinstance(value, int | float)
            or not math.isfinite(value) or not 0 < value <= MAX_MARGIN):
        raise ValueError(f"{where} must be a number of points in (0, {MAX_MARGIN:g}], "
                         f"got {value!r}")
    return float(value)


def parse_analysis(table: object) -> Analysis:
    """The ``[analysis]`` table of a study file, checked.

    Parameters
    ----------
    table
        The table as read from TOML.

    Returns
    -------
    Analysis

    Raises
    ------
    ValueError
        Naming the field: not a table, unknown keys or measures, margins outside (0, 100]
        points, ``min_val_accuracy`` outside (0, 1].
    """
    if not isinstance(table, dict):
        raise ValueError(f"analysis must be a table, got {type(table).__name__}")
    unknown = [key for key in table if key not in ANALYSIS_OPTIONS]
    if unknown:
        raise ValueError(f"unknown key analysis.{unknown[0]} (allowed here: "
                         f"{', '.join(ANALYSIS_OPTIONS)})")
    margins = dict(DEFAULT_MARGINS)
    given = table.get("equivalence_margin")
    if isinstance(given, dict):
        for measure, value in given.items():
            if measure not in DEFAULT_MARGINS:
                raise ValueError(f"analysis.equivalence_margin: unknown measure {measure!r} "
                                 f"(one of {', '.join(DEFAULT_MARGINS)})")
            margins[measure] = _margin(value, f"analysis.equivalence_margin.{measure}")
    elif given is not None:
        margins = dict.fromkeys(DEFAULT_MARGINS, _margin(given, "analysis.equivalence_margin"))
    floor = table.get("min_val_accuracy")
    if floor is not None and (isinstance(floor, bool) or not isinstance(floor, int | float)
                              or not 0 < floor <= 1):
        raise ValueError(f"analysis.min_val_accuracy must be a number in (0, 1], got {floor!r}")
    return Analysis(margins, None if floor is None else float(floor))
