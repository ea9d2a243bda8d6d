"""What a figure asks of an activation file, in the file's own terms.

Which stimulus-table column to decode or compare (``--target``: any column, e.g. repsim's
``audio_digit`` or a user's ``label`` or ``speaker``), which stimuli (``--condition``), and
which conditions remove or add noise to which input: the file's ``condition_changes`` (what
``repsim.record`` and ``repsim.extract`` write), or a user's ``--removal INPUT=CONDITION``
for conditions made by their own functions. repsim's own probe-set files keep their defaults
(the heard and the seen digit, clean and incongruent stimuli): :func:`repsim_defaults`.

Nothing here guesses: a column or condition the file lacks is a ValueError naming what the
file has, and a default is taken only where it is the file's only choice or ``clean``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from repsim.conditions import CLEAN

if TYPE_CHECKING:
    import xarray as xr

# Per-stimulus coordinates that are no question to ask: the row, the id, the condition.
_NOT_TARGETS = ("stimulus", "stimulus_id", "condition")


def table_columns(data: xr.Dataset) -> list[str]:
    """The file's stimulus-table columns that can be asked about (labels, ids of speakers...)."""
    return [str(name) for name, coord in data.coords.items()
            if coord.dims == ("stimulus",) and name not in _NOT_TARGETS]


def check_targets(data: xr.Dataset, targets: Sequence[str], source: object) -> list[str]:
    """``targets`` when every one is a column of ``data``; ValueError naming the missing one
    and the columns ``source`` (a file) has."""
    if isinstance(targets, str):
        targets = [targets]
    if not targets:
        raise ValueError("name at least one target column")
    columns = table_columns(data)
    for target in targets:
        if target not in columns:
            raise ValueError(f"{source} has no stimulus column {target!r}; its columns are: "
                             f"{', '.join(columns) or 'none'}")
    return list(targets)


def require_targets(data: xr.Dataset, targets: Sequence[str] | None, source: object
                    ) -> list[str]:
    """The targets asked for; when none were, ValueError asking for ``--target`` (a file
    that is not repsim's own has no label repsim could know to decode)."""
    if not targets:
        raise ValueError(f"name what to decode in {source}: --target COLUMN (target=...); "
                         f"its columns are: {', '.join(table_columns(data)) or 'none'}")
    return check_targets(data, targets, source)


def pick_condition(data: xr.Dataset, condition: str | None, source: object) -> str:
    """``condition`` if the file has it; when None, ``clean`` if present, else the file's
    only condition; ValueError naming the file's conditions otherwise."""
    from repsim.activations import condition_names

    present = condition_names(data)
    if condition is not None:
        if condition not in present:
            raise ValueError(f"{source} has no condition {condition!r}; its conditions are: "
                             f"{', '.join(present)}")
        return condition
    if CLEAN in present:
        return CLEAN
    if len(present) == 1:
        return present[0]
    raise ValueError(f"{source} has several conditions and none is {CLEAN!r}: name one with "
                     f"--condition ({', '.join(present)})")


def repsim_defaults(data: xr.Dataset) -> tuple[str, str] | None:
    """The heard and the seen label columns when ``data`` is one of repsim's probe-set files
    (labelled with the class of both senses: every figure's defaults, clean and incongruent
    stimuli, apply); None for any other file."""
    from repsim.activations.labels import label_coords

    try:
        return label_coords(data)
    except ValueError:
        return None


def parse_pairs(words: Sequence[str], option: str) -> dict[str, str]:
    """``INPUT=CONDITION`` words as a dict; ValueError naming a malformed word."""
    pairs = {}
    for word in words:
        key, sep, value = word.partition("=")
        if not sep or not key or not value:
            raise ValueError(f"{option} takes INPUT=CONDITION pairs (e.g. audio=mute_a), got "
                             f"{word!r}")
        pairs[key] = value
    return pairs


def removals(data: xr.Dataset, intact: str, removal: Mapping[str, str] | None,
             source: object) -> dict[str, str]:
    """``{input: condition}`` of the conditions that remove one input from the ``intact``
    stimuli: ``removal`` when given (each condition must be in the file), else those the
    file's ``condition_changes`` describe. ValueError when there are none."""
    from repsim.activations import condition_changes, condition_names

    present = condition_names(data)
    if removal:
        for target, condition in removal.items():
            if condition not in present:
                raise ValueError(f"{source} has no condition {condition!r} (removing "
                                 f"{target}); its conditions are: {', '.join(present)}")
        return dict(removal)
    found = {str(change["input"]): name for name, change in condition_changes(data).items()
             if change.get("of") == intact and change.get("change") == "removed"}
    if not found:
        raise ValueError(f"{source} has no condition that removes an input from the "
                         f"{intact!r} stimuli (e.g. audio_removed); record one, or name your "
                         f"own with --removal INPUT=CONDITION (its conditions are: "
                         f"{', '.join(present)})")
    return found


def noise_conditions(data: xr.Dataset, intact: str, source: object
                     ) -> dict[str, list[tuple[float, str]]]:
    """``{input: [(dB, condition), ...]}`` (highest SNR first) of the conditions that add
    white noise to one input of the ``intact`` stimuli, from the file's
    ``condition_changes``; ValueError when there are none."""
    from repsim.activations import condition_changes, condition_names

    grid: dict[str, list[tuple[float, str]]] = {}
    for name, change in condition_changes(data).items():
        if change.get("of") == intact and change.get("change") == "noise":
            grid.setdefault(str(change["input"]), []).append((float(change["snr_db"]), name))
    if not grid:
        raise ValueError(f"{source} has no condition adding noise to an input of the "
                         f"{intact!r} stimuli (<input>_snr<X>); its conditions are: "
                         f"{', '.join(condition_names(data))}")
    return {target: sorted(levels, reverse=True) for target, levels in grid.items()}
