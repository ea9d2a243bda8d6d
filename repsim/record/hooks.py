"""Which modules of a model are recorded, which of their outputs, and how time is read.

A recorded variable is a :class:`Layer`: the output ``output`` of module ``module`` (a name in
``model.named_modules()``), stored as state ``state`` of layer ``name``. Layers are chosen by
glob patterns over module names (:func:`select_layers`) or given as :class:`Layer` objects
(what a model's own ``recorded_layers()`` returns).

Time, per layer, after one forward of a batch:

(a) a module called T > 1 times in the forward (a cell in a Python loop: ``nn.GRUCell``,
    ``nn.LSTMCell``) gives T steps, one per call, in call order;
(b) a module called once with ``time_dim`` set gives the steps along that axis of its output
    (``1`` for ``nn.LSTM(batch_first=True)`` or a transformer's ``(B, T, D)``; ``0`` for a
    time-major ``(T, B, ...)`` output, whose batch axis is then 1);
(c) otherwise one step.

The batch axis is 0 (1 when ``time_dim`` is 0). A module called several times with a
``time_dim`` is refused: its time would be ambiguous.

Outputs: ``output=None`` takes the first tensor met walking the output depth first (through
tuples, lists and dict values), e.g. ``out`` of ``nn.LSTM``'s ``(out, (h_n, c_n))`` and
``h`` of a cell returning ``(h, c)``. An integer or a key picks that element; a tuple of them
walks nested outputs: ``output=1`` is the ``c`` of an ``nn.LSTMCell``'s ``(h, c)``.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

OutputKey = int | str
Output = OutputKey | tuple[OutputKey, ...] | None
# A per-layer option: one value for every pattern, or {pattern: value}.
PerPattern = Any


class RecordError(ValueError):
    """A recorded output does not fit: raised from inside the forward by a hook, and told
    apart from the model's own errors."""


@dataclass(frozen=True)
class Layer:
    """One recorded variable: output ``output`` of module ``module`` as state ``state`` of
    layer ``name``, with time along ``time_dim`` of that output (see the module docstring)."""

    name: str
    module: str
    output: Output = None
    state: str = "h"
    time_dim: int | None = None

    def describe(self) -> dict[str, Any]:
        """What made this variable, JSON-able (stored in the activation file)."""
        return {"module": self.module, "output": "first tensor" if self.output is None else
                self.output, "time": "calls, or one step" if self.time_dim is None else
                f"axis {self.time_dim}"}


def module_names(model: nn.Module) -> list[str]:
    """Names of ``model``'s submodules in ``named_modules()`` order (the model itself,
    named ``""``, is left out)."""
    return [name for name, _ in model.named_modules() if name]


def _closest(name: str, names: Sequence[str]) -> str:
    """A few module names close to ``name``, for an error message."""
    close = difflib.get_close_matches(name, names, n=4, cutoff=0.3) or list(names[:4])
    return ", ".join(close) if close else "(the model has no submodules)"


def pattern_regex(pattern: str) -> re.Pattern[str]:
    """A glob over dotted module names: ``*`` matches within one name part (``"encoder.*"``
    is the encoder's children, not their children), ``**`` across parts (any depth), ``?`` one
    character; ``[...]`` as in fnmatch."""
    parts, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            parts.append(".*")
            i += 2
        elif pattern[i] == "*":
            parts.append(r"[^.]*")
            i += 1
        elif pattern[i] == "?":
            parts.append(r"[^.]")
            i += 1
        elif pattern[i] == "[" and "]" in pattern[i + 1:]:
            end = pattern.index("]", i + 1)
            inside = pattern[i + 1:end]
            parts.append("[" + ("^" + inside[1:] if inside.startswith("!") else inside) + "]")
            i = end + 1
        else:
            parts.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(parts) + r"\Z")


def _option(value: PerPattern, pattern: str) -> Any:
    """``value`` for ``pattern``: its own entry when ``value`` is a mapping, else ``value``."""
    if isinstance(value, Mapping):
        return value.get(pattern)
    return value


def select_layers(model: nn.Module, layers: Sequence[str | Layer], *,
                  time_dim: PerPattern = None, output: PerPattern = None) -> list[Layer]:
    """The recorded variables of ``layers``: each glob pattern (:func:`pattern_regex`, e.g.
    ``"encoder.layers.*"``) gives every module whose name it matches, in ``named_modules()``
    order, named after the module; :class:`Layer` objects are kept as they are. ``time_dim``
    and ``output`` apply to every pattern, or per pattern as ``{pattern: value}``.

    ValueError when a pattern matches no module or a Layer names a module the model lacks
    (naming the closest module names), or when two entries make the same variable.
    """
    if isinstance(layers, str | Layer):
        layers = [layers]
    if not layers:
        raise ValueError("layers must name at least one module pattern")
    names = module_names(model)
    chosen: list[Layer] = []
    for entry in layers:
        if isinstance(entry, Layer):
            if entry.module not in names:
                raise ValueError(f"layer {entry.name!r} names module {entry.module!r}, which "
                                 f"the model lacks; closest: {_closest(entry.module, names)}")
            chosen.append(entry)
            continue
        if not isinstance(entry, str):
            raise ValueError(f"layers are glob patterns over module names or Layer objects, "
                             f"got {entry!r}")
        regex = pattern_regex(entry)
        matched = [name for name in names if regex.match(name)]
        if not matched:
            raise ValueError(f"layer pattern {entry!r} matches no module of "
                             f"{type(model).__name__}; closest module names: "
                             f"{_closest(entry, names)}")
        chosen += [Layer(name, name, output=_option(output, entry),
                         time_dim=_option(time_dim, entry)) for name in matched]
    seen: dict[tuple[str, str], Layer] = {}
    for layer in chosen:  # a module matched by two patterns is recorded once
        seen.setdefault((layer.name, layer.state), layer)
    return list(seen.values())


def pick_output(output: Any, key: Output, module: str) -> torch.Tensor:
    """The tensor ``key`` selects from a module's ``output`` (see the module docstring)."""
    if key is None:
        found = next(_tensors(output), None)
        if found is None:
            raise ValueError(f"module {module!r} returned no tensor ({type(output).__name__})")
        return found
    value = output
    for part in key if isinstance(key, tuple) else (key,):
        try:
            value = value[part]
        except (IndexError, KeyError, TypeError):
            raise ValueError(f"output {key!r} of module {module!r} does not exist (it returned "
                             f"{_describe(output)})") from None
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"output {key!r} of module {module!r} is {_describe(value)}, not a "
                         f"tensor")
    return value


def _tensors(value: Any) -> Iterator[torch.Tensor]:
    """The tensors in ``value``, depth first."""
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, tuple | list):
        for item in value:
            yield from _tensors(item)
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _tensors(item)


def _describe(value: Any) -> str:
    """A short description of a module output, for error messages."""
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    if isinstance(value, tuple | list):
        return f"a {type(value).__name__} of {len(value)}"
    return "None" if value is None else type(value).__name__


class Hooks:
    """Forward hooks that keep the chosen outputs of one forward; a context manager.

    Inside ``with Hooks(model, layers) as hooks:``, every forward copies each chosen output at
    its hook (so that later in-place operations cannot change it) and :meth:`take` then
    assembles them per the time rules and starts afresh. The copies go into memory kept from
    the previous forward (a time-major ``(T, batch, *features)`` block per layer) whenever the
    shapes agree: the model's own outputs are freed at once and their memory reused, and the
    block needs no stacking. What :meth:`take` returns is overwritten by the next forward.
    """

    def __init__(self, model: nn.Module, layers: Sequence[Layer]) -> None:
        self.model, self.layers = model, list(layers)
        self._steps: dict[Layer, list[torch.Tensor]] = {layer: [] for layer in self.layers}
        self._blocks: dict[Layer, torch.Tensor] = {}  # the last forward's (T, B, ...) copies
        self._rows: dict[Layer, list[torch.Tensor]] = {}  # each block's steps, as views
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def __enter__(self) -> Hooks:
        modules = dict(self.model.named_modules())
        by_module: dict[str, list[Layer]] = {}
        for layer in self.layers:
            by_module.setdefault(layer.module, []).append(layer)
        for name, layers in by_module.items():
            self._handles.append(modules[name].register_forward_hook(self._hook(name, layers)))
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _hook(self, name: str, layers: list[Layer]):
        def keep(module: nn.Module, args: Any, output: Any) -> None:
            for layer in layers:
                try:
                    value = pick_output(output, layer.output, name).detach()
                except ValueError as error:
                    raise RecordError(str(error)) from None
                steps, rows = self._steps[layer], self._rows.get(layer, [])
                if len(steps) < len(rows) and _fits(rows[0], value):
                    steps.append(rows[len(steps)].copy_(value))
                else:
                    steps.append(value.clone())
        return keep

    def clear(self) -> None:
        """Forget what the last forward left."""
        for steps in self._steps.values():
            steps.clear()

    def take(self, batch_size: int) -> dict[Layer, torch.Tensor]:
        """Each layer's ``(batch, time, *features)`` from the forward just run (then clears);
        valid until the next forward, which reuses its memory.

        ValueError when a module was not called, or its outputs do not fit the time rules.
        """
        try:
            return {layer: _assemble(layer, self._stacked(layer), batch_size)
                    for layer in self.layers}
        finally:
            self.clear()

    def _stacked(self, layer: Layer) -> list[torch.Tensor] | torch.Tensor:
        """One layer's outputs of the forward: its block when they filled it, else the list
        (stacked into the block the next forward fills, when their shapes agree)."""
        steps, rows = self._steps[layer], self._rows.get(layer, [])
        if rows and len(steps) == len(rows) and all(
                step is row for step, row in zip(steps, rows, strict=True)):
            return self._blocks[layer]
        if steps and len({(tuple(step.shape), step.dtype, step.device) for step in steps}) == 1:
            self._blocks[layer] = torch.stack(steps)
            self._rows[layer] = list(self._blocks[layer].unbind(0))
            return self._blocks[layer]
        return steps


def _fits(row: torch.Tensor, value: torch.Tensor) -> bool:
    """Whether ``value`` can be copied into ``row`` of a block unchanged."""
    return row.shape == value.shape and row.dtype == value.dtype and row.device == value.device


def _assemble(layer: Layer, steps: list[torch.Tensor] | torch.Tensor, batch_size: int
              ) -> torch.Tensor:
    """One layer's ``(batch, time, *features)`` from its outputs of one forward: a list, or a
    time-major block of outputs that agree in shape."""
    where = f"layer {layer.name!r} (module {layer.module!r})"
    if len(steps) == 0:
        raise ValueError(f"{where} was never called during the forward; record a module the "
                         f"forward uses")
    if len(steps) > 1:
        if layer.time_dim is not None:
            raise ValueError(f"{where} was called {len(steps)} times in one forward and has "
                             f"time_dim={layer.time_dim}: its time comes from calls or from an "
                             f"axis, not both (give time_dim per pattern)")
        if isinstance(steps, list):
            kinds = sorted({f"{tuple(step.shape)} {step.dtype}" for step in steps})
            raise ValueError(f"{where} gave outputs of {', '.join(kinds)} in one forward; "
                             f"calls that make time steps must agree in shape and type")
        # time-major storage, as the writer buffers it: its copy is then contiguous
        return _check_batch(steps.movedim(0, 1), batch_size, where, 0)
    value = steps[0]
    if layer.time_dim is None:
        return _check_batch(value, batch_size, where, 0).unsqueeze(1)
    if not -value.dim() <= layer.time_dim < value.dim():
        raise ValueError(f"time_dim {layer.time_dim} is out of range for {where}, whose output "
                         f"has shape {tuple(value.shape)} ({value.dim()} axes)")
    time_dim = layer.time_dim % value.dim()
    batch_dim = 1 if time_dim == 0 else 0
    if time_dim == batch_dim or value.dim() < 2:
        raise ValueError(f"time_dim {layer.time_dim} of {where} is its batch axis (output "
                         f"shape {tuple(value.shape)})")
    _check_batch(value, batch_size, where, batch_dim)
    return value.movedim((batch_dim, time_dim), (0, 1))


def _check_batch(value: torch.Tensor, batch_size: int, where: str, axis: int) -> torch.Tensor:
    if value.dim() <= axis or value.shape[axis] != batch_size:
        raise ValueError(f"{where} gave an output of shape {tuple(value.shape)}, whose axis "
                         f"{axis} should be the batch of {batch_size} stimuli")
    return value
