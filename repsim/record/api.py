"""``repsim.record(model, stimuli, layers, out)``: any PyTorch model's chosen layers, per time
step, into an activation file (``repsim.activations.format``, version 4).

One mechanism: forward hooks (``repsim.record.hooks``) keep the chosen outputs of each
forward, the time rules make them ``(stimulus, time, <features>)``, and the streaming writer
([repsim.activations.ActivationWriter][]) appends them batch by batch: memory stays flat
in the number of stimuli, the file appears at ``out`` only once complete, and a second writer
of the same path fails at once. ``repsim.extract`` records repsim's own checkpoints this way.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence, Sized
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from repsim import activations
from repsim.conditions import CLEAN, input_condition
from repsim.device import resolve_device
from repsim.provenance import library_versions
from repsim.record.hooks import Hooks, Layer, PerPattern, RecordError, select_layers
from repsim.record.pooling import POOLINGS, pool_states
from repsim.record.result import RecordResult
from repsim.record.stimuli import (
    ConditionFunction,
    batch_rows,
    batch_source,
    forward_inputs,
    metadata_keys,
    read_table,
    resolve_conditions,
    table_from_batches,
    table_from_dataset,
    to_device,
)

log = logging.getLogger("repsim.record")
FLOAT16_MAX = float(np.finfo(np.float16).max)


class RecordingStopped(Exception):
    """The caller's ``should_stop`` asked the recording to stop; nothing was kept.

    Raised by [record][repsim.record.api.record]; the message names the file that was not
    written.
    """


def state_dict_sha256(model: nn.Module) -> str:
    """SHA-256 of ``model``'s state dict: every entry's name, dtype, shape and bytes, in order.

    What an activation file's ``model_sha256`` attribute holds, so that a file can be traced
    to the weights that made it.

    Parameters
    ----------
    model
        Any ``torch.nn.Module`` (its tensors are read on the CPU; the model is not moved).

    Returns
    -------
    str
        The hex digest.
    """
    digest = hashlib.sha256()
    for name, value in model.state_dict().items():
        tensor = value.detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _model_device(model: nn.Module) -> torch.device:
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def record(model: nn.Module, stimuli: Any, layers: Sequence[str | Layer], out: str | os.PathLike,
           *, table: Any = None, time_dim: PerPattern = None, output: PerPattern = None,
           batch_dim: PerPattern = None, fold_time: PerPattern = False,
           conditions: Sequence[str] | Mapping[str, ConditionFunction | None] | None = None,
           batch_size: int = 32, pool: str = "none", pool_factor: int = 2,
           dtype: str = "float32", compression: str = "none", compression_level: int = 4,
           device: str | None = None,
           logits: Callable[[Any], torch.Tensor] | None = None, seed: int = 0,
           model_name: str | None = None, attrs: Mapping[str, Any] | None = None,
           overwrite: bool = False, claimed: bool = False, progress: bool = False,
           should_stop: Callable[[], bool] | None = None) -> RecordResult:
    """Record ``layers`` of ``model`` on ``stimuli`` into the activation file ``out``.

    The time rules, per layer: (a) a module called T times at one place in one forward gives
    T steps; (b) one called once gives the steps along axis ``time_dim`` of its output, or
    (c) with ``fold_time`` its ``(B*T, ...)`` rows unfolded; (d) else one step. Layers may
    differ in their number of steps. The per-layer options ``time_dim``, ``output``,
    ``batch_dim`` and ``fold_time`` are one value, or ``{pattern: value}`` over the chosen
    layers' names, the most specific pattern winning (details in ``repsim.record.hooks``).
    The model runs in eval mode under ``torch.no_grad()`` (its mode is restored after). NaN
    or inf in a recorded output is logged once per layer and condition.

    Parameters
    ----------
    model
        Any ``torch.nn.Module``.
    stimuli
        Batches of inputs, or a Dataset whose dict items may carry the table's columns (see
        ``repsim.record.stimuli`` and [RecordBatch][repsim.record.stimuli.RecordBatch]).
    layers
        Glob patterns over ``model.named_modules()`` names (``"encoder.layers.*"``), or
        [Layer][repsim.record.hooks.Layer] objects; the file keeps them in this order, which
        figures use as depth.
    out
        The activation file to write.
    table
        The stimulus table: a unique ``stimulus_id`` per row, kept as text; None: the
        columns the batches or the Dataset's items carry.
    time_dim
        Where a layer's time axis is (rule b).
    output
        Which tensor of a tuple output is recorded; None takes the first tensor (see
        ``repsim.record.hooks``).
    batch_dim
        Where a layer's batch axis is.
    fold_time
        Whether time is folded into the batch (rule c).
    conditions
        Condition names, or ``{name: function}`` (see ``repsim.record.stimuli``); None:
        ``clean`` alone.
    batch_size
        Batches a map-style Dataset.
    pool
        Shrinks maps: ``"none"``, ``"avg"`` in ``pool_factor`` blocks, or ``"global"``.
    pool_factor
        The block size of ``"avg"`` pooling.
    dtype
        The stored type, ``"float32"`` or ``"float16"`` (values beyond float16's range are
        refused).
    compression
        ``"none"``, ``"gzip"`` at ``compression_level``, or ``"lzf"``, as in
        [repsim.activations.ActivationWriter][].
    compression_level
        The gzip level.
    device
        None runs the model where it is, else moves it there.
    logits
        A function of the model's return value giving ``(B, classes)`` or
        ``(B, T, classes)``; adds ``logits`` and ``prediction`` to the file.
    seed
        Seeds the built-in noise conditions.
    model_name
        Names the model in figures and tables; None: the file's stem.
    attrs
        Added to the file's attributes.
    overwrite
        Replace an existing file at ``out`` (a regular file only).
    claimed
        The caller already holds the claim on ``out``.
    progress
        Show a tqdm bar (on stderr).
    should_stop
        Asked between batches; True stops the recording and nothing is kept.

    Returns
    -------
    RecordResult
        What was written where ([RecordResult][repsim.record.result.RecordResult]).

    Raises
    ------
    ValueError
        Every mistake in the model, layers, options, stimuli or table is a ValueError of one
        line, and nothing is left at ``out``: a pattern that matches no module (or an option
        pattern no chosen layer), two layers of one name, a module never called or called at
        several places, an output whose shape changes between batches, missing or repeated
        stimulus ids, a table whose rows are not the stimuli's, a column the file cannot
        hold, a forward that raises (batch and condition named), a time axis out of range, an
        unknown option value; so is another recording writing ``out``.
    FileExistsError
        For an existing ``out`` without ``overwrite``.
    FileNotFoundError
        For an output directory that does not exist.
    RecordingStopped
        When ``should_stop`` answered True.

    Examples
    --------
    ```python
    import torch
    import repsim

    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh())  # on (B, T, 8)
    batches = [torch.randn(10, 5, 8) for _ in range(3)]  # 30 stimuli, 5 steps each
    table = {"stimulus_id": [f"s{i}" for i in range(30)], "label": [i % 3 for i in range(30)]}
    result = repsim.record(model, batches, ["*"], "out.h5", table=table, time_dim=1)
    result.layers, result.timesteps  # (['0', '1'], 5)
    ```
    """
    started = time.perf_counter()
    out = Path(out)
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if pool not in POOLINGS:
        raise ValueError(f"pool must be one of {', '.join(POOLINGS)}, not {pool!r}")
    if dtype not in activations.DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(activations.DTYPES)}, not {dtype!r}")
    for name, value in (("batch_size", batch_size), ("pool_factor", pool_factor)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    activations.check_output_path(out, overwrite)
    chosen = select_layers(model, layers, time_dim=time_dim, output=output,
                           batch_dim=batch_dim, fold_time=fold_time)
    log.info("recording %d layer(s): %s", len(chosen),
             ", ".join(f"{layer.name}.{layer.state}" if layer.state != "h" else layer.name
                       for layer in chosen))
    metadata = metadata_keys(stimuli, forward_inputs(model))
    if table is not None:
        columns = read_table(table)
    elif metadata:
        columns = table_from_dataset(stimuli, metadata)
    else:
        columns = table_from_batches(stimuli)
    activations.check_column_names(columns, [activations.variable_name(layer.name, layer.state)
                                             for layer in chosen])
    applied = resolve_conditions(conditions, seed)
    n_table = len(columns["stimulus_id"])
    if isinstance(stimuli, torch.utils.data.Dataset) and isinstance(stimuli, Sized) \
            and len(stimuli) != n_table:
        raise ValueError(f"the stimulus table has {n_table} rows but the dataset holds "
                         f"{len(stimuli)} stimuli")
    coordinates = _stacked(columns, list(applied), conditions is not None)
    condition_list = list(dict.fromkeys(coordinates["condition"].tolist()))
    target = resolve_device(device) if device is not None else _model_device(model)
    file_attrs = {**_provenance(model, layers, chosen),
                  "model_name": out.stem if model_name is None else str(model_name),
                  "conditions": json.dumps(condition_list),
                  "condition_changes": json.dumps(_condition_changes(applied)),
                  "pooling": json.dumps({"pool": pool, "factor": pool_factor}), **(attrs or {})}
    run = _Run(model, chosen, batch_source(stimuli, batch_size, metadata), applied, n_table,
               target, pool, pool_factor, getattr(torch, dtype), logits, should_stop, out)
    training = model.training
    with ExitStack() as stack:
        writer = stack.enter_context(activations.ActivationWriter(
            out, coordinates, attrs=file_attrs, dtype=dtype, compression=compression,
            compression_level=compression_level, overwrite=overwrite, claimed=claimed))
        bar = stack.enter_context(tqdm(total=len(coordinates["stimulus_id"]), unit="stimulus",
                                       desc="recording", disable=not progress,
                                       file=sys.stderr))
        hooks = stack.enter_context(Hooks(model, chosen))
        stack.enter_context(torch.no_grad())
        stack.callback(model.train, training)
        model.to(target).eval()
        for name in applied:
            for size, arrays, extra in run.condition(name, hooks):
                writer.write(arrays, **extra)
                bar.update(size)
    names = list(dict.fromkeys(layer.name for layer in chosen))
    main = activations.time_dims(run.timesteps)
    return RecordResult(path=out, size_bytes=out.stat().st_size, layers=names,
                        states=list(dict.fromkeys(layer.state for layer in chosen)),
                        n_stimuli=len(coordinates["stimulus_id"]),
                        timesteps=next(run.timesteps[layer] for layer in names
                                       if main[layer] == activations.TIME_DIM),
                        conditions=condition_list, seconds=time.perf_counter() - started,
                        time_axes=dict(run.timesteps))


def _condition_changes(applied: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """What each built-in condition does to which input (the file's ``condition_changes``);
    a user's function conditions are not described (figures take ``--removal`` for them)."""
    changes: dict[str, dict[str, Any]] = {}
    for name in applied:
        parsed = input_condition(name)
        if parsed is not None:
            target, snr = parsed
            changes[name] = {"of": CLEAN, "input": target,
                             **({"change": "removed"} if snr is None
                                else {"change": "noise", "snr_db": snr})}
    return changes


def _provenance(model: nn.Module, layers: Sequence[str | Layer], chosen: list[Layer]
                ) -> dict[str, str]:
    """What made the file: the model's class and weights, the patterns asked for, the module
    and output behind each variable, the library versions."""
    asked = [layers] if isinstance(layers, str | Layer) else layers
    names = list(dict.fromkeys(layer.name for layer in chosen))
    first = {layer.name: layer for layer in reversed(chosen)}
    return {
        "model_class": f"{type(model).__module__}.{type(model).__qualname__}",
        "model_sha256": state_dict_sha256(model),
        "layer_patterns": json.dumps([entry.module if isinstance(entry, Layer) else entry
                                      for entry in asked]),
        "recorded_modules": json.dumps({f"{layer.name}.{layer.state}": layer.describe()
                                        for layer in chosen}),
        "layer_depths": json.dumps({name: first[name].depth or position
                                    for position, name in enumerate(names, start=1)}),
        "layer_streams": json.dumps({name: first[name].stream or "" for name in names}),
        "versions": json.dumps(library_versions()),
    }


def _stacked(columns: dict[str, np.ndarray], conditions: list[str], named: bool
             ) -> dict[str, np.ndarray]:
    """The file's per-stimulus coordinates: the table once per condition, with a
    ``condition`` column (``clean`` unless the table has its own and none were named)."""
    if "condition" in columns and named:
        raise ValueError("the stimulus table has a 'condition' column and conditions were "
                         "given: use one or the other")
    if "condition" in columns:
        return columns
    repeat = len(conditions)
    stacked = {name: np.concatenate([values] * repeat) for name, values in columns.items()}
    n = len(columns["stimulus_id"])
    return {"stimulus_id": stacked.pop("stimulus_id"),
            "condition": np.repeat(np.array(conditions, dtype=str), n), **stacked}


def _given(batches: Callable[[], Any], condition: str) -> Iterator[Any]:
    """The batches of ``batches()``, with what the user's code raises while giving them
    (``sys.exit`` included) as one ValueError naming the batch and condition."""
    index = 0
    try:
        for batch in batches():
            yield batch
            index += 1
    except ValueError:
        raise
    except (Exception, SystemExit) as error:
        what = (f"called sys.exit({error.code!r})" if isinstance(error, SystemExit) else
                f"raised {type(error).__name__}" + (
                    f": {str(error).strip().splitlines()[0]}" if str(error).strip() else ""))
        raise ValueError(f"the stimuli {what} while giving batch {index} of condition "
                         f"{condition!r}") from error


class _Run:
    """The forward passes of one recording: per condition, batch by batch, the arrays to
    write, with every check on shapes and row counts."""

    def __init__(self, model: nn.Module, layers: list[Layer],
                 batches: Callable[[], Any], conditions: Mapping[str, Any], n_table: int,
                 device: torch.device, pool: str, pool_factor: int, dtype: torch.dtype,
                 logits: Callable[[Any], torch.Tensor] | None,
                 should_stop: Callable[[], bool] | None, out: Path) -> None:
        self.model, self.layers, self.batches = model, layers, batches
        self.should_stop, self.out = should_stop, out
        self.conditions, self.n_table, self.device = conditions, n_table, device
        self.pool, self.pool_factor, self.dtype, self.logits = pool, pool_factor, dtype, logits
        self.shapes: dict[Layer, tuple[int, ...]] = {}
        self.timesteps: dict[str, int] = {}  # steps per layer
        self.warned: set[tuple[str, str]] = set()  # (layer, condition) with NaN/inf logged

    def condition(self, name: str, hooks: Hooks
                  ) -> Iterator[tuple[int, dict[str, dict[str, np.ndarray]], dict[str, Any]]]:
        """``(stimuli, arrays, extra)`` per batch of condition ``name``, for the writer."""
        rows = 0
        for index, batch in enumerate(_given(self.batches, name)):
            if self.should_stop is not None and self.should_stop():
                raise RecordingStopped(f"recording stopped before {self.out} was complete; "
                                       f"nothing was written")
            size = batch_rows(batch)
            if rows + size > self.n_table:
                raise ValueError(f"the stimuli give more than the {self.n_table} rows of the "
                                 f"stimulus table (condition {name!r}, batch {index})")
            inputs = self.conditions[name](batch.inputs, range(rows, rows + size))
            inputs = to_device(inputs, self.device)
            hooks.clear()
            try:
                result = (self.model(**inputs) if isinstance(inputs, dict)
                          else self.model(*inputs))
            except RecordError:
                raise
            except Exception as error:
                first = str(error).strip().splitlines()[0] if str(error).strip() else ""
                raise ValueError(f"the model's forward raised {type(error).__name__}"
                                 f"{': ' + first if first else ''} on batch {index} (stimuli "
                                 f"{rows}-{rows + size - 1}) of condition {name!r}") from error
            yield size, self._arrays(hooks.take(size), index, name), self._outputs(result)
            rows += size
        if rows != self.n_table:
            raise ValueError(f"the stimulus table has {self.n_table} rows but the stimuli gave "
                             f"{rows} (condition {name!r})")

    def _arrays(self, taken: dict[Layer, torch.Tensor], index: int, name: str
                ) -> dict[str, dict[str, np.ndarray]]:
        arrays: dict[str, dict[str, np.ndarray]] = {}
        for layer, value in taken.items():
            value = pool_states(value, self.pool, self.pool_factor)
            if value.dim() not in (3, 5):  # neither a map nor a vector: flattened features
                value = value.reshape(*value.shape[:2], -1)
            shape = tuple(value.shape[1:])
            expected = self.shapes.setdefault(layer, shape)
            if shape != expected:
                raise ValueError(f"layer {layer.name!r} gave (time, features) {shape} on batch "
                                 f"{index} of condition {name!r}, but {expected} before; a "
                                 f"layer's output shape must not change between batches")
            self.timesteps[layer.name] = shape[0]
            self._check_values(layer, value, index, name)
            arrays.setdefault(layer.name, {})[layer.state] = (
                value.to(self.dtype).cpu().numpy())
        return arrays

    def _check_values(self, layer: Layer, value: torch.Tensor, index: int, name: str) -> None:
        """Log NaN/inf once per layer and condition; refuse what float16 cannot hold."""
        if not value.is_floating_point():
            return
        finite = torch.isfinite(value.sum())  # one pass; an overflowing sum is checked below
        if not finite and not bool(torch.isfinite(value).all()) \
                and (layer.name, name) not in self.warned:
            self.warned.add((layer.name, name))
            log.warning("layer %r gave NaN or inf values under condition %r (from batch %d): "
                        "they are recorded as they are", layer.name, name, index)
        if self.dtype == torch.float16:
            values = value if finite else value[torch.isfinite(value)]
            peak = float(values.abs().max()) if values.numel() else 0.0
            if peak > FLOAT16_MAX:
                raise ValueError(f"layer {layer.name!r} gave {peak:.4g} on batch {index} of "
                                 f"condition {name!r}, beyond float16's range (+-"
                                 f"{FLOAT16_MAX:g}); record it as float32")

    def _outputs(self, result: Any) -> dict[str, np.ndarray]:
        if self.logits is None:
            return {}
        logits = self.logits(result)
        last = logits[:, -1] if logits.dim() == 3 else logits  # per-step logits: the last
        return {"logits": logits.float().cpu().numpy(),
                "prediction": last.argmax(dim=-1).cpu().numpy()}
