"""``repsim.record(model, stimuli, layers, out)``: any PyTorch model's chosen layers, per time
step, into an activation file (:mod:`repsim.activations.format`, version 3).

One mechanism: forward hooks (:mod:`repsim.record.hooks`) keep the chosen outputs of each
forward, the time rules make them ``(stimulus, time, <features>)``, and the streaming writer
(:class:`repsim.activations.ActivationWriter`) appends them batch by batch: memory stays flat
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
from repsim.device import resolve_device
from repsim.models.fusion import final_logits
from repsim.provenance import library_versions
from repsim.record.hooks import Hooks, Layer, PerPattern, RecordError, select_layers
from repsim.record.pooling import POOLINGS, pool_states
from repsim.record.result import RecordResult
from repsim.record.stimuli import (
    ConditionFunction,
    batch_rows,
    batch_source,
    read_table,
    resolve_conditions,
    table_from_batches,
    to_device,
)

log = logging.getLogger("repsim.record")


class RecordingStopped(Exception):
    """The caller's ``should_stop`` asked the recording to stop; nothing was kept."""


def state_dict_sha256(model: nn.Module) -> str:
    """SHA-256 of ``model``'s state dict: every entry's name, dtype, shape and bytes, in order."""
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
           conditions: Sequence[str] | Mapping[str, ConditionFunction | None] | None = None,
           batch_size: int = 32, pool: str = "none", pool_factor: int = 2,
           dtype: str = "float32", compression: str = "none", compression_level: int = 4,
           device: str | None = None,
           logits: Callable[[Any], torch.Tensor] | None = None, seed: int = 0,
           attrs: Mapping[str, Any] | None = None, overwrite: bool = False,
           claimed: bool = False, progress: bool = False,
           should_stop: Callable[[], bool] | None = None) -> RecordResult:
    """Record ``layers`` of ``model`` on ``stimuli`` into the activation file ``out``.

    ``layers``: glob patterns over ``model.named_modules()`` names (``"encoder.layers.*"``),
    or :class:`~repsim.record.hooks.Layer` objects. ``time_dim`` and ``output`` (one value, or
    ``{pattern: value}``) say where a layer's time axis is and which tensor of a tuple output
    is recorded; the rules: (a) a module called T times in one forward gives T steps; (b) one
    called once gives the steps along axis ``time_dim`` of its output; (c) else one step.
    ``output`` None takes the first tensor (see :mod:`repsim.record.hooks`).

    ``stimuli``, ``table`` and ``conditions``: see :mod:`repsim.record.stimuli` (batches of
    inputs; a table with a unique ``stimulus_id`` per row; ``clean`` when no conditions).
    ``batch_size`` batches a map-style Dataset. ``pool`` ("none", "avg" in ``pool_factor``
    blocks, "global") shrinks maps; ``dtype`` is the stored type (float32 or float16).
    ``compression`` ("none", "gzip" at ``compression_level``, "lzf") as in
    :class:`~repsim.activations.ActivationWriter`. ``device`` None runs the model where it
    is, else moves it there. ``logits``, a function of the model's return value giving
    ``(B, classes)`` or ``(B, T, classes)``, adds ``logits`` and ``prediction`` to the file.
    ``seed`` seeds the built-in noise conditions. ``attrs`` are added to the file's
    attributes. ``claimed``: the caller already holds the claim on ``out``. ``progress``
    shows a tqdm bar; ``should_stop`` is asked between batches (True:
    :class:`RecordingStopped`, nothing kept).

    Every mistake is a ValueError of one line, and nothing is left at ``out``: a pattern that
    matches no module, a module never called, an output whose shape changes between batches,
    missing or repeated stimulus ids, a table whose rows are not the stimuli's, a forward that
    raises (batch and condition named), a time axis out of range.
    """
    started = time.perf_counter()
    out = Path(out)
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if pool not in POOLINGS:
        raise ValueError(f"pool must be one of {', '.join(POOLINGS)}, not {pool!r}")
    if dtype not in activations.DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(activations.DTYPES)}, not {dtype!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    activations.check_output_path(out, overwrite)
    chosen = select_layers(model, layers, time_dim=time_dim, output=output)
    log.info("recording %d layer(s): %s", len(chosen),
             ", ".join(f"{layer.name}.{layer.state}" if layer.state != "h" else layer.name
                       for layer in chosen))
    columns = table_from_batches(stimuli) if table is None else read_table(table)
    applied = resolve_conditions(conditions, seed)
    n_table = len(columns["stimulus_id"])
    if isinstance(stimuli, torch.utils.data.Dataset) and isinstance(stimuli, Sized) \
            and len(stimuli) != n_table:
        raise ValueError(f"the stimulus table has {n_table} rows but the dataset holds "
                         f"{len(stimuli)} stimuli")
    coordinates = _stacked(columns, list(applied), conditions is not None)
    condition_list = list(dict.fromkeys(coordinates["condition"].tolist()))
    target = resolve_device(device) if device is not None else _model_device(model)
    file_attrs = {**_provenance(model, layers, chosen), "conditions": json.dumps(condition_list),
                  "pooling": json.dumps({"pool": pool, "factor": pool_factor}), **(attrs or {})}
    run = _Run(model, chosen, batch_source(stimuli, batch_size), applied, n_table, target,
               pool, pool_factor, getattr(torch, dtype), logits, should_stop, out)
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
    return RecordResult(path=out, size_bytes=out.stat().st_size,
                        layers=list(dict.fromkeys(layer.name for layer in chosen)),
                        states=list(dict.fromkeys(layer.state for layer in chosen)),
                        n_stimuli=len(coordinates["stimulus_id"]), timesteps=run.timesteps,
                        conditions=condition_list, seconds=time.perf_counter() - started)


def _provenance(model: nn.Module, layers: Sequence[str | Layer], chosen: list[Layer]
                ) -> dict[str, str]:
    """What made the file: the model's class and weights, the patterns asked for, the module
    and output behind each variable, the library versions."""
    asked = [layers] if isinstance(layers, str | Layer) else layers
    return {
        "model_class": f"{type(model).__module__}.{type(model).__qualname__}",
        "model_sha256": state_dict_sha256(model),
        "layer_patterns": json.dumps([entry.module if isinstance(entry, Layer) else entry
                                      for entry in asked]),
        "recorded_modules": json.dumps({f"{layer.name}.{layer.state}": layer.describe()
                                        for layer in chosen}),
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
        self.timesteps = 0

    def condition(self, name: str, hooks: Hooks
                  ) -> Iterator[tuple[int, dict[str, dict[str, np.ndarray]], dict[str, Any]]]:
        """``(stimuli, arrays, extra)`` per batch of condition ``name``, for the writer."""
        rows = 0
        for index, batch in enumerate(self.batches()):
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
            self.timesteps = shape[0]
            arrays.setdefault(layer.name, {})[layer.state] = (
                value.to(self.dtype).cpu().numpy())
        return arrays

    def _outputs(self, result: Any) -> dict[str, np.ndarray]:
        if self.logits is None:
            return {}
        logits = self.logits(result)
        return {"logits": logits.float().cpu().numpy(),
                "prediction": final_logits(logits).argmax(dim=-1).cpu().numpy()}
