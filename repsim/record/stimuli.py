"""What a recorded model sees and what each stimulus is: batches, the stimulus table, conditions.

The contract:

- **Batches** give the model's inputs: a tuple or list (positional arguments), a dict (keyword
  arguments), a single tensor, or a :class:`RecordBatch` that adds per-stimulus columns.
  ``stimuli`` is an iterable of batches, a function returning one (called again for each
  condition), or a map-style ``torch.utils.data.Dataset`` of single stimuli (batched here, in
  order). Tensors are moved to the model's device; other values are passed as they are.
- **Dataset items with metadata**: a Dataset whose items are dicts may carry per-stimulus
  values beside the inputs (``{"audio": ..., "visual": ..., "stimulus_id": ..., "label":
  ...}``). The keys the model's ``forward`` takes (by its signature) are its inputs; the others
  are stimulus-table columns, read in one pass over the items before recording (so no table
  is needed when ``stimulus_id`` is among them). A ``forward(**kwargs)`` takes every key but
  ``stimulus_id``, and that is logged.
- **The stimulus table** holds one row per stimulus, in the order the batches give them, with
  a unique ``stimulus_id`` (the key that aligns models): a pandas DataFrame, a CSV or Parquet
  path, a mapping of columns, or the columns of each :class:`RecordBatch` (then ``stimuli``
  must be a list of batches, so that the table is known before the file is laid out). Ids are
  kept as written: a CSV's ``stimulus_id`` is read as text (``007`` stays ``007``), and ids
  that are distinct values but the same text (``1`` and ``"1"``) are refused.
- **Conditions** (:func:`resolve_conditions`): name -> function of a batch's inputs, applied
  before the forward; built-ins ``<input>_removed`` (that keyword input all zeros) and
  ``<input>_snr<X>`` (white Gaussian noise at X dB, signal power = the stimulus's mean square,
  as repsim defines SNR; seeded per stimulus row). Every condition runs over all stimuli;
  conditions are stacked along ``stimulus`` with a ``condition`` coordinate (``clean`` when
  none is given).
"""

from __future__ import annotations

import inspect
import logging
import math
import os
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence, Sized
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, default_collate

from repsim.conditions import CLEAN, input_condition
from repsim.data.noise import add_white_noise, item_generators

log = logging.getLogger("repsim.record")
Inputs = tuple[Any, ...] | dict[str, Any]
ConditionFunction = Callable[[Inputs], Inputs]
TABLE_SUFFIXES = (".csv", ".parquet", ".pq")


@dataclass
class RecordBatch:
    """One batch of stimuli for [repsim.record][repsim.record.api.record].

    Parameters
    ----------
    inputs
        The model's inputs: a tuple of positional inputs or a dict of keyword inputs.
    columns
        Per-stimulus values for the stimulus table (one sequence per column, one entry per
        stimulus of the batch).
    """

    inputs: Inputs
    columns: Mapping[str, Sequence[Any]] = field(default_factory=dict)


def as_batch(item: Any) -> RecordBatch:
    """A batch in any accepted form as a :class:`RecordBatch`."""
    if isinstance(item, RecordBatch):
        return item
    if isinstance(item, torch.Tensor):
        return RecordBatch((item,))
    if isinstance(item, tuple | list):
        return RecordBatch(tuple(item))
    if isinstance(item, Mapping):
        return RecordBatch(dict(item))
    raise ValueError(f"a batch is a tuple (positional inputs), a dict (keyword inputs), a "
                     f"tensor or a RecordBatch, got {type(item).__name__}")


def batch_rows(batch: RecordBatch) -> int:
    """Stimuli in ``batch``: the length of axis 0 of its first tensor input."""
    values = batch.inputs.values() if isinstance(batch.inputs, dict) else batch.inputs
    for value in values:
        if isinstance(value, torch.Tensor) and value.dim() > 0:
            return int(value.shape[0])
    raise ValueError("a batch needs at least one tensor input with a batch axis")


def to_device(inputs: Inputs, device: torch.device) -> Inputs:
    """``inputs`` with its tensors on ``device``."""
    def move(value: Any) -> Any:
        return value.to(device) if isinstance(value, torch.Tensor) else value
    if isinstance(inputs, dict):
        return {name: move(value) for name, value in inputs.items()}
    return tuple(move(value) for value in inputs)


def forward_inputs(model: nn.Module) -> set[str] | None:
    """The keyword inputs ``model.forward`` takes by its signature; None when it takes any
    (``**kwargs``) or its signature cannot be read."""
    try:
        parameters = inspect.signature(model.forward).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return {p.name for p in parameters
            if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)}


def metadata_keys(stimuli: Any, inputs: set[str] | None) -> list[str]:
    """The keys of a Dataset's dict items that are not model inputs (module docstring); empty
    for anything else."""
    if not (isinstance(stimuli, Dataset) and isinstance(stimuli, Sized) and len(stimuli)):
        return []
    first = stimuli[0]
    if not isinstance(first, Mapping):
        return []
    if inputs is None:
        if "stimulus_id" in first:
            log.info("the model's forward takes any keyword: every key of the Dataset's items "
                     "but stimulus_id is passed to it")
        return ["stimulus_id"] if "stimulus_id" in first else []
    keys = [str(key) for key in first if key not in inputs]
    if keys:
        log.info("the Dataset's items carry %s, which the model's forward does not take: "
                 "stimulus-table columns", ", ".join(keys))
    return keys


def table_from_dataset(stimuli: Dataset, keys: Sequence[str]) -> dict[str, np.ndarray]:
    """The stimulus table made of the metadata ``keys`` of every item of ``stimuli`` (one
    pass over the items); ValueError when they lack ``stimulus_id``."""
    if "stimulus_id" not in keys:
        raise ValueError("give a stimulus table (table=..., with a stimulus_id column), or a "
                         "Dataset whose dict items carry a stimulus_id")
    assert isinstance(stimuli, Sized)
    rows = []
    for index in range(len(stimuli)):
        item = stimuli[index]
        missing = [key for key in keys if key not in item]
        if missing:
            raise ValueError(f"item {index} of the Dataset lacks {', '.join(missing)}, which "
                             f"item 0 has")
        rows.append({key: _plain(item[key]) for key in keys})
    return _checked_columns(pd.DataFrame(rows, columns=list(keys)))


def _plain(value: Any) -> Any:
    """A 0-d tensor or array as a Python number; anything else as it is."""
    if isinstance(value, torch.Tensor | np.ndarray) and value.ndim == 0:
        return value.item()
    return value


def batch_source(stimuli: Any, batch_size: int, metadata: Sequence[str] = ()
                 ) -> Callable[[], Iterator[RecordBatch]]:
    """A function that gives ``stimuli``'s batches afresh on each call (see the module
    docstring); a one-shot iterator gives them only once (a second call raises).
    ``metadata``: keys of a Dataset's dict items that are left out of the model's inputs."""
    if isinstance(stimuli, Dataset) and hasattr(stimuli, "__len__"):
        def inputs_only(items: list[Any]) -> Any:
            if metadata and isinstance(items[0], Mapping):
                items = [{key: value for key, value in item.items() if key not in metadata}
                         for item in items]
            return default_collate(items)

        def from_dataset() -> Iterator[RecordBatch]:
            loader = DataLoader(stimuli, batch_size=batch_size, shuffle=False,
                                collate_fn=inputs_only)
            return (as_batch(item) for item in loader)
        return from_dataset
    if callable(stimuli) and not isinstance(stimuli, Iterable):
        return lambda: (as_batch(item) for item in stimuli())
    if not isinstance(stimuli, Iterable):
        raise ValueError(f"stimuli must be an iterable of batches, a function returning one, or "
                         f"a map-style Dataset, got {type(stimuli).__name__}")
    used: list[bool] = []

    def from_iterable() -> Iterator[RecordBatch]:
        if iter(stimuli) is stimuli and used:
            raise ValueError("the stimuli are a one-shot iterator, but each condition needs "
                             "them again: pass a list, a Dataset or a function returning "
                             "the batches")
        used.append(True)
        return (as_batch(item) for item in stimuli)
    return from_iterable


def read_table(table: Any) -> dict[str, np.ndarray]:
    """The stimulus table as columns (see the module docstring); ValueError naming what is
    wrong with it (unreadable, no ``stimulus_id``, missing or duplicate ids)."""
    if isinstance(table, str | os.PathLike):
        path = Path(table)
        if not path.is_file():
            raise ValueError(f"stimulus table {path} does not exist")
        if path.suffix.lower() not in TABLE_SUFFIXES:
            raise ValueError(f"stimulus table {path} must be a {' or '.join(TABLE_SUFFIXES)} "
                             f"file")
        try:  # ids as text: a CSV's 007 is not the number 7
            frame = (pd.read_csv(path, dtype={"stimulus_id": str})
                     if path.suffix.lower() == ".csv" else pd.read_parquet(path))
        except (ValueError, ImportError, OSError) as error:
            raise ValueError(f"cannot read stimulus table {path}: "
                             f"{str(error).splitlines()[0]}") from None
    elif isinstance(table, pd.DataFrame):
        frame = table
    elif isinstance(table, Mapping):
        frame = pd.DataFrame({name: list(values) for name, values in table.items()})
    else:
        raise ValueError(f"a stimulus table is a DataFrame, a CSV/Parquet path or a mapping of "
                         f"columns, got {type(table).__name__}")
    return _checked_columns(frame)


def _checked_columns(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """The table's columns as arrays, after checking its stimulus ids."""
    if "stimulus_id" not in frame.columns:
        raise ValueError(f"the stimulus table has no 'stimulus_id' column (it has: "
                         f"{', '.join(map(str, frame.columns)) or 'none'})")
    if len(frame) == 0:
        raise ValueError("the stimulus table has no rows")
    ids = frame["stimulus_id"]
    missing = ids.isna() | (ids.astype(str).str.strip() == "")
    if missing.any():
        raise ValueError(f"the stimulus table lacks a stimulus_id in {int(missing.sum())} "
                         f"row(s), the first at row {int(np.flatnonzero(missing)[0])}")
    keys = ["stimulus_id"] + (["condition"] if "condition" in frame.columns else [])
    within = " within a condition" if len(keys) == 2 else ""
    repeated = frame.duplicated(keys, keep=False)
    if repeated.any():
        first = frame.loc[repeated, "stimulus_id"].iloc[0]
        raise ValueError(f"the stimulus table repeats stimulus_id {first!r} "
                         f"({int(repeated.sum())} rows share an id{within})")
    as_text = frame[keys].assign(stimulus_id=ids.map(str))
    collide = as_text.duplicated(keys, keep=False)
    if collide.any():  # e.g. 1 and "1": one id once stored, and stored ids are text
        first = as_text.loc[collide, "stimulus_id"].iloc[0]
        raise ValueError(f"the stimulus table has stimulus_id {first!r} twice{within} once "
                         f"its ids are read as text ({int(collide.sum())} rows, e.g. 1 and "
                         f"'1'); stimulus ids are compared and stored as text")
    columns = {}
    for name in frame.columns:
        values = frame[name].to_numpy()
        if values.dtype.kind == "O":
            values = values.astype(str)
        columns[str(name)] = values
    columns["stimulus_id"] = np.array([str(value) for value in ids], dtype=str)
    return columns


def table_from_batches(stimuli: Any) -> dict[str, np.ndarray]:
    """The stimulus table made of the columns of a list of :class:`RecordBatch` (ValueError
    when the batches carry none, or are not a list)."""
    if not isinstance(stimuli, Sequence) or not stimuli or not all(
            isinstance(item, RecordBatch) and item.columns for item in stimuli):
        raise ValueError("give a stimulus table (table=..., with a stimulus_id column), or "
                         "stimuli as a list of RecordBatch whose columns hold stimulus_id")
    parts = []
    for index, batch in enumerate(stimuli):
        rows = batch_rows(batch)
        lengths = {name: len(values) for name, values in batch.columns.items()}
        if set(lengths.values()) != {rows}:
            raise ValueError(f"the columns of batch {index} have lengths {lengths}, but the "
                             f"batch holds {rows} stimuli")
        parts.append(pd.DataFrame({name: list(values) for name, values in
                                   batch.columns.items()}))
    return _checked_columns(pd.concat(parts, ignore_index=True))


def resolve_conditions(conditions: Sequence[str] | Mapping[str, ConditionFunction | None]
                       | None, seed: int = 0) -> dict[str, Callable[[Inputs, range], Inputs]]:
    """``{name: apply(inputs, rows)}`` in order: ``clean`` alone when ``conditions`` is None;
    a name (or a mapping entry whose function is None) must be ``clean``, ``<input>_removed``
    or ``<input>_snr<X>``; a function is called with the batch's inputs and returns new ones.
    ``rows`` are the stimulus rows of the batch (they seed the noise)."""
    if conditions is None:
        return {CLEAN: lambda inputs, rows: inputs}
    if isinstance(conditions, str):
        conditions = [conditions]
    entries = (dict(conditions) if isinstance(conditions, Mapping)
               else dict.fromkeys(conditions))
    if not entries:
        raise ValueError("conditions must name at least one condition (or be None for clean)")
    resolved: dict[str, Callable[[Inputs, range], Inputs]] = {}
    for name, function in entries.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"a condition name must be a non-empty string, got {name!r}")
        if function is not None:
            if not callable(function):
                raise ValueError(f"condition {name!r} must map to a function of a batch's "
                                 f"inputs, got {type(function).__name__}")
            resolved[name] = _custom(name, function)
        else:
            resolved[name] = _built_in(name, seed)
    return resolved


def _custom(name: str, function: ConditionFunction) -> Callable[[Inputs, range], Inputs]:
    def apply(inputs: Inputs, rows: range) -> Inputs:
        changed = function(inputs)
        if not isinstance(changed, tuple | dict):
            raise ValueError(f"condition {name!r} returned {type(changed).__name__}; it must "
                             f"return the inputs (a tuple or a dict)")
        return changed
    return apply


def _built_in(name: str, seed: int) -> Callable[[Inputs, range], Inputs]:
    if name == CLEAN:
        return lambda inputs, rows: inputs
    parsed = input_condition(name)
    if parsed is None:
        raise ValueError(f"unknown condition {name!r}; built-in conditions are {CLEAN}, "
                         f"<input>_removed and <input>_snr<X> (X in dB) on a keyword input, "
                         f"or give a function")
    target, snr = parsed
    if snr is not None and not math.isfinite(snr):
        raise ValueError(f"condition {name!r} needs a finite SNR")
    key = zlib.crc32(name.encode())

    def apply(inputs: Inputs, rows: range) -> Inputs:
        if not isinstance(inputs, dict) or target not in inputs:
            given = ", ".join(inputs) if isinstance(inputs, dict) else "positional only"
            raise ValueError(f"condition {name!r} acts on the keyword input {target!r}, but the "
                             f"batches give inputs: {given}")
        value = inputs[target]
        if snr is not None and not (isinstance(value, torch.Tensor)
                                    and value.is_floating_point()):
            kind = value.dtype if isinstance(value, torch.Tensor) else type(value).__name__
            raise ValueError(f"condition {name!r} adds noise to the integer input {target!r} "
                             f"({kind}); noise needs a floating-point input")
        if snr is None:
            changed = torch.zeros_like(value)
        else:
            generators = item_generators(rows, seed, key, device=value.device)
            changed = add_white_noise(value, snr, generator=generators)
        return {**inputs, target: changed}
    return apply
