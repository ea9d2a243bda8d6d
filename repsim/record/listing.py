"""``repsim.record.layers(model, example_batch)``: every module of a model with its type, calls
per forward, the places they come from and its output shapes, from one forward of one batch,
so that a user can choose layers (and see which need ``time_dim`` or ``fold_time``) before
recording."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd
import torch
from torch import nn

from repsim.record.hooks import call_site
from repsim.record.stimuli import as_batch, to_device

COLUMNS = ["name", "type", "calls", "places", "output"]


def layers(model: nn.Module, example_batch: Any) -> pd.DataFrame:
    """Every module of a model with its type, calls per forward, call places and output shapes, from
    one forward of one batch: what to choose layers from, and which need ``time_dim`` or
    ``fold_time``.

    The model runs once, in eval mode and without gradients, where it is; its mode is restored.

    Parameters
    ----------
    model
        Any ``torch.nn.Module``.
    example_batch
        One batch in any form [repsim.record][repsim.record.api.record] accepts (a tuple of
        positional inputs, a dict of keyword inputs, a tensor).

    Returns
    -------
    pandas.DataFrame
        One row per module (``named_modules()`` order, the model itself left out): ``name``,
        ``type``, ``calls`` (per forward of ``example_batch``), ``places`` (the lines of code the
        calls come from: more than one cannot be recorded as time) and ``output`` (the first
        call's output shape, e.g. ``"(32, 16, 8, 8)"``; nested for tuples).

    Raises
    ------
    ValueError
        When the forward raises.

    Examples
    --------
    ```python
    import torch
    import repsim

    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    repsim.record.layers(model, torch.randn(5, 4))    # rows "0", "1", "2": Linear, ReLU, Linear
    ```
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    named = [(name, module) for name, module in model.named_modules() if name]
    seen: dict[str, dict[str, Any]] = {name: {"calls": 0, "places": {}, "output": ""}
                                       for name, _ in named}

    def hook(name: str):
        def note(module: nn.Module, args: Any, output: Any) -> None:
            entry = seen[name]
            entry["calls"] += 1
            entry["places"][call_site()] = None
            if entry["calls"] == 1:
                entry["output"] = describe_output(output)
        return note

    inputs = as_batch(example_batch).inputs
    device = next((t.device for t in (*model.parameters(), *model.buffers())),
                  torch.device("cpu"))
    handles = [module.register_forward_hook(hook(name)) for name, module in named]
    training = model.training
    try:
        model.eval()
        with torch.no_grad():
            moved = to_device(inputs, device)
            try:
                model(**moved) if isinstance(moved, dict) else model(*moved)
            except Exception as error:
                first = str(error).strip().splitlines()[0] if str(error).strip() else ""
                raise ValueError(f"the model's forward raised {type(error).__name__}"
                                 f"{': ' + first if first else ''} on the example batch"
                                 ) from error
    finally:
        for handle in handles:
            handle.remove()
        model.train(training)
    return pd.DataFrame([{"name": name, "type": type(module).__name__,
                          "calls": seen[name]["calls"], "places": len(seen[name]["places"]),
                          "output": seen[name]["output"]} for name, module in named],
                        columns=COLUMNS)


def describe_output(value: Any) -> str:
    """A module output's shape(s), as text.

    Parameters
    ----------
    value
        What the module returned.

    Returns
    -------
    str
        ``(5, 3)`` for a tensor, nested in brackets for tuples and lists, ``{key: shape}`` for
        dicts, the type's name for anything else.
    """
    if isinstance(value, torch.Tensor):
        return "(" + ", ".join(map(str, value.shape)) + ("," if value.dim() == 1 else "") + ")"
    if isinstance(value, tuple | list):
        return "(" + ", ".join(describe_output(item) for item in value) + ")"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{key}: {describe_output(item)}"
                               for key, item in value.items()) + "}"
    return "None" if value is None else type(value).__name__
