"""Which modules of a model are recorded, which of their outputs, and how time is read.

A recorded variable is a [Layer][repsim.record.hooks.Layer]: the output ``output`` of module
``module`` (a name in ``model.named_modules()``), stored as state ``state`` of layer ``name``.
Layers are chosen by glob patterns over module names
([select_layers][repsim.record.hooks.select_layers]) or given as
[Layer][repsim.record.hooks.Layer] objects (what a model's own ``recorded_layers()``
returns).

Time, per layer, after one forward of a batch:

(a) a module called T > 1 times in the forward (a cell in a Python loop: ``nn.GRUCell``,
    ``nn.LSTMCell``) gives T steps, one per call, in call order;
(b) a module called once with ``time_dim`` set gives the steps along that axis of its output
    (``1`` for ``nn.LSTM(batch_first=True)`` or a transformer's ``(B, T, D)``; ``0`` for a
    time-major ``(T, B, ...)`` output, whose batch axis is then 1);
(c) a module called once with ``fold_time`` set sees time folded into its batch, ``(B*T, ...)``
    (a per-frame CNN fed ``frames.flatten(0, 1)``): ``True`` or ``"BT"`` for batch-major rows
    (stimulus 0's steps first), ``"TB"`` for time-major rows; its output is unfolded to
    ``(B, T, ...)``;
(d) otherwise one step.

The batch axis is 0 (1 when ``time_dim`` is 0), or ``batch_dim`` when given (``nn.LSTM``'s
``h_n`` is ``(layers, B, H)``: ``batch_dim=1``). A module called several times with a
``time_dim`` or ``fold_time`` is refused: its time would be ambiguous. So is a module called
at more than one place in the forward (a ResNet block's one ``relu`` after each convolution):
its calls are not time steps, and interleaving them would be silently wrong.

Options per layer (``time_dim``, ``output``, ``batch_dim``, ``fold_time``) are one value for
every chosen layer, or ``{pattern: value}``: each pattern is a glob over the chosen layers'
names and must match at least one of them; where several match a layer, the most specific
wins (the exact name, else the pattern with the most literal characters), and two equally
specific patterns with different values are refused.

Outputs: ``output=None`` takes the first tensor met walking the output depth first (through
tuples, lists and dict values), e.g. ``out`` of ``nn.LSTM``'s ``(out, (h_n, c_n))`` and
``h`` of a cell returning ``(h, c)``. An integer or a key picks that element; a tuple of them
walks nested outputs: ``output=1`` is the ``c`` of an ``nn.LSTMCell``'s ``(h, c)``.
"""

from __future__ import annotations

import difflib
import logging
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

log = logging.getLogger("repsim.record")
OutputKey = int | str
Output = OutputKey | tuple[OutputKey, ...] | None
# A per-layer option: one value for every pattern, or {pattern: value}.
PerPattern = Any
FOLDS = ("BT", "TB")  # fold_time: rows (stimulus, step) batch-major or time-major
# The file in which torch calls a module (its forward hooks run from there): skipped when
# looking for the line of the model's code that called a module.
_MODULE_CALL_FILE = nn.Module.__call__.__code__.co_filename


class RecordError(ValueError):
    """A recorded output does not fit: raised from inside the forward by a hook, and told
    apart from the model's own errors."""


@dataclass(frozen=True)
class Layer:
    """One recorded variable: output ``output`` of module ``module`` as state ``state`` of
    layer ``name``, with time along ``time_dim`` of that output, its batch along ``batch_dim``
    and, with ``fold_time``, time folded into the batch (see the module docstring).

    ``depth`` and ``stream`` say where the layer sits, for figures that draw layers by depth
    and stream; a model that knows them (repsim's FusionConvLSTM) sets them, else the depth is
    the layer's position in the recording's order and every layer is in one stream.

    Parameters
    ----------
    name
        The layer's name in the activation file.
    module
        The module recorded, a name in ``model.named_modules()``.
    output
        Which tensor of the module's output: None, the first tensor met depth first; an
        integer or a key, that element; a tuple of them, a nested one (module docstring).
    state
        The state it is stored as (``"h"``, ``"c"``).
    time_dim
        The axis of the output that is time, for a module called once; None: calls, or one
        step.
    batch_dim
        The axis of the output that is the batch; None: 0 (1 when ``time_dim`` is 0).
    fold_time
        Time folded into the batch, ``(B*T, ...)`` rows: ``True`` or ``"BT"`` batch-major,
        ``"TB"`` time-major; ``False``: not folded.
    depth
        1 = nearest the input; None: the layer's position in the recording's order.
    stream
        E.g. ``"audio"``; None: one stream for every layer.

    Raises
    ------
    ValueError
        For an axis that is not an integer, a ``fold_time`` that is none of the above, both
        ``time_dim`` and ``fold_time``, or a depth that is not a positive integer.
    """

    name: str
    module: str
    output: Output = None
    state: str = "h"
    time_dim: int | None = None
    batch_dim: int | None = None
    fold_time: bool | str = False
    depth: int | None = None
    stream: str | None = None

    def __post_init__(self) -> None:
        for option in ("time_dim", "batch_dim"):
            check_axis(option, getattr(self, option))
        fold_mode(self.fold_time)
        if self.fold_time and self.time_dim is not None:
            raise ValueError(f"layer {self.name!r}: give time_dim or fold_time, not both")
        if self.depth is not None and (isinstance(self.depth, bool)
                                       or not isinstance(self.depth, int) or self.depth < 1):
            raise ValueError(f"layer {self.name!r}: depth must be a positive integer, got "
                             f"{self.depth!r}")

    def describe(self) -> dict[str, Any]:
        """What made this variable, JSON-able (stored in the activation file).

        Returns
        -------
        dict
            ``module``, ``output`` (``"first tensor"`` for None), ``time`` (how its time is
            read) and, with a ``batch_dim``, ``batch``.
        """
        if self.fold_time:
            time = f"folded into the batch ({fold_mode(self.fold_time)})"
        elif self.time_dim is not None:
            time = f"axis {self.time_dim}"
        else:
            time = "calls, or one step"
        described = {"module": self.module, "output": "first tensor" if self.output is None
                     else self.output, "time": time}
        if self.batch_dim is not None:
            described["batch"] = f"axis {self.batch_dim}"
        return described


def check_axis(option: str, value: Any) -> None:
    """Check a per-layer axis option.

    Parameters
    ----------
    option
        The option's name, for the message.
    value
        An integer axis (negative counts from the end) or None.

    Raises
    ------
    ValueError
        Unless ``value`` is an integer axis or None.
    """
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise ValueError(f"{option} must be an integer axis or None, got {value!r}")


def fold_mode(value: Any) -> str | None:
    """``fold_time`` as ``"BT"`` or ``"TB"``.

    Parameters
    ----------
    value
        ``False`` or None (off), ``True`` (= ``"BT"``), ``"BT"`` or ``"TB"`` (any case).

    Returns
    -------
    str or None
        ``"BT"`` (batch-major rows) or ``"TB"`` (time-major rows); None when off.

    Raises
    ------
    ValueError
        For anything else.
    """
    if value is False or value is None:
        return None
    if value is True:
        return "BT"
    if isinstance(value, str) and value.upper() in FOLDS:
        return value.upper()
    raise ValueError(f"fold_time must be False, True (= 'BT', batch-major rows) or 'TB' "
                     f"(time-major rows), got {value!r}")


def module_names(model: nn.Module) -> list[str]:
    """Names of ``model``'s submodules in ``named_modules()`` order.

    Parameters
    ----------
    model
        Any ``torch.nn.Module``.

    Returns
    -------
    list of str
        The names; the model itself, named ``""``, is left out.
    """
    return [name for name, _ in model.named_modules() if name]


def _closest(name: str, names: Sequence[str]) -> str:
    """A few module names close to ``name``, for an error message."""
    close = difflib.get_close_matches(name, names, n=4, cutoff=0.3) or list(names[:4])
    return ", ".join(close) if close else "(the model has no submodules)"


def pattern_regex(pattern: str) -> re.Pattern[str]:
    """A glob over dotted module names as a regular expression.

    Parameters
    ----------
    pattern
        ``*`` matches within one name part (``"encoder.*"`` is the encoder's children, not
        their children), ``**`` across parts (any depth), ``?`` one character; ``[...]`` as
        in fnmatch.

    Returns
    -------
    re.Pattern
        Matches a whole name.

    Examples
    --------
    >>> from repsim.record.hooks import pattern_regex
    >>> children = pattern_regex("encoder.*")
    >>> bool(children.match("encoder.layers")), bool(children.match("encoder.layers.0"))
    (True, False)
    >>> bool(pattern_regex("encoder.**").match("encoder.layers.0"))
    True
    """
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


_LAYER_OPTIONS = ("time_dim", "output", "batch_dim", "fold_time")


def _specificity(pattern: str, name: str) -> tuple[int, int]:
    """How specifically ``pattern`` names layer ``name``: the exact name first, then the
    pattern with the most literal (non-wildcard) characters."""
    literal = len(re.sub(r"\[[^\]]*\]|[*?]", "", pattern))
    return (int(pattern == name), literal)


def _options_for(name: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """The value of each option for layer ``name``: the option's one value, or the value of
    its most specific pattern matching ``name`` (absent when none matches)."""
    chosen: dict[str, Any] = {}
    for option, value in values.items():
        if not isinstance(value, Mapping):
            chosen[option] = value
            continue
        matching = [(pattern, _specificity(pattern, name)) for pattern in value
                    if pattern_regex(pattern).match(name)]
        if not matching:
            continue
        best = max(rank for _, rank in matching)
        top = [pattern for pattern, rank in matching if rank == best]
        if len({repr(value[pattern]) for pattern in top}) > 1:
            raise ValueError(f"{option} patterns {top[0]!r} and {top[1]!r} both match layer "
                             f"{name!r} with different values; give its exact name")
        chosen[option] = value[top[0]]
    return chosen


def _check_patterns(values: Mapping[str, Any], names: Sequence[str]) -> None:
    """ValueError naming an option pattern that matches none of the chosen layers (a typo
    would otherwise be ignored)."""
    for option, value in values.items():
        if not isinstance(value, Mapping):
            continue
        for pattern in value:
            if not isinstance(pattern, str) or not any(pattern_regex(pattern).match(name)
                                                       for name in names):
                raise ValueError(f"{option} pattern {pattern!r} matches none of the chosen "
                                 f"layers ({', '.join(names)})")


def select_layers(model: nn.Module, layers: Sequence[str | Layer], *,
                  time_dim: PerPattern = None, output: PerPattern = None,
                  batch_dim: PerPattern = None, fold_time: PerPattern = False) -> list[Layer]:
    """The recorded variables of ``layers``, in the order given.

    Each glob pattern (``pattern_regex``: ``*`` within one part of a dotted name, ``**``
    across parts, ``?`` one character, ``[...]`` a set; e.g. ``"encoder.layers.*"``) gives
    every module whose name it matches, in ``named_modules()`` order, named after the module
    (a module matched by two patterns is recorded once, where first matched);
    [Layer][repsim.record.hooks.Layer] objects are kept as they are.

    Parameters
    ----------
    model
        Any ``torch.nn.Module``.
    layers
        Glob patterns over module names and [Layer][repsim.record.hooks.Layer] objects (or one
        of either).
    time_dim, output, batch_dim, fold_time
        Apply to the layers the patterns chose: one value for all, or ``{pattern: value}``
        (module docstring); as the fields of [Layer][repsim.record.hooks.Layer].

    Returns
    -------
    list of Layer
        One per recorded variable, in order.

    Raises
    ------
    ValueError
        When ``layers`` is empty, a pattern matches no module or a Layer names a module the
        model lacks (naming the closest module names), an entry is neither a pattern nor a
        Layer, an option pattern matches no chosen layer or two match one equally with
        different values, two layers share a name, or an option value is not one a
        [Layer][repsim.record.hooks.Layer] takes.
    """
    if isinstance(layers, str | Layer):
        layers = [layers]
    if not layers:
        raise ValueError("layers must name at least one module pattern")
    names = module_names(model)
    matched: list[str | Layer] = []
    for entry in layers:
        if isinstance(entry, Layer):
            if entry.module not in names:
                raise ValueError(f"layer {entry.name!r} names module {entry.module!r}, which "
                                 f"the model lacks; closest: {_closest(entry.module, names)}")
            matched.append(entry)
            continue
        if not isinstance(entry, str):
            raise ValueError(f"layers are glob patterns over module names or Layer objects, "
                             f"got {entry!r}")
        regex = pattern_regex(entry)
        found = [name for name in names if regex.match(name)]
        if not found:
            raise ValueError(f"layer pattern {entry!r} matches no module of "
                             f"{type(model).__name__}; closest module names: "
                             f"{_closest(entry, names)}")
        matched += [name for name in found if name not in matched]
    options = {"time_dim": time_dim, "output": output, "batch_dim": batch_dim,
               "fold_time": fold_time}
    _check_patterns(options, [entry for entry in matched if isinstance(entry, str)])
    chosen = [entry if isinstance(entry, Layer) else Layer(entry, entry, **{
        option: value for option, value in _options_for(entry, options).items()
        if value is not None or option != "fold_time"}) for entry in matched]
    seen: dict[tuple[str, str], Layer] = {}
    for layer in chosen:
        other = seen.setdefault((layer.name, layer.state), layer)
        if other != layer:
            raise ValueError(f"two layers are named {layer.name!r} (state {layer.state!r}): "
                             f"modules {other.module!r} and {layer.module!r}; give each its "
                             f"own name")
    return list(seen.values())


def pick_output(output: Any, key: Output, module: str) -> torch.Tensor:
    """The tensor ``key`` selects from a module's ``output`` (see the module docstring).

    Parameters
    ----------
    output
        What the module returned.
    key
        None: the first tensor met depth first; an integer or a key: that element; a tuple of
        them: a nested element.
    module
        The module's name, for messages.

    Returns
    -------
    torch.Tensor

    Raises
    ------
    ValueError
        When the output holds no tensor, or ``key`` selects nothing or something that is not
        a tensor.
    """
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


def call_site() -> tuple[str, int]:
    """Where the model's code called the module whose forward hook calls this: the first
    frame above the hook outside torch's module-call machinery.

    Returns
    -------
    tuple
        ``(file, line)``.
    """
    frame = sys._getframe(2)  # 0: here, 1: the hook
    while frame.f_back is not None and frame.f_code.co_filename == _MODULE_CALL_FILE:
        frame = frame.f_back
    return frame.f_code.co_filename, frame.f_lineno


class Hooks:
    """Forward hooks that keep the chosen outputs of one forward; a context manager.

    Inside ``with Hooks(model, layers) as hooks:``, every forward copies each chosen output at
    its hook (so that later in-place operations cannot change it) and ``take`` then
    assembles them per the time rules and starts afresh. The copies go into memory kept from
    the previous forward (a time-major ``(T, batch, *features)`` block per layer) whenever the
    shapes agree: the model's own outputs are freed at once and their memory reused, and the
    block needs no stacking. What ``take`` returns is overwritten by the next forward.

    The first forward is also checked for what cannot be read as time: a module called at
    more than one place (``call_site``) is refused, and a one-step output with three or more
    axes is logged once, naming its shape and ``time_dim``.

    Parameters
    ----------
    model
        The model whose modules are hooked.
    layers
        The recorded variables ([select_layers][repsim.record.hooks.select_layers]).
    """

    def __init__(self, model: nn.Module, layers: Sequence[Layer]) -> None:
        self.model, self.layers = model, list(layers)
        self._steps: dict[Layer, list[torch.Tensor]] = {layer: [] for layer in self.layers}
        self._blocks: dict[Layer, torch.Tensor] = {}  # the last forward's (T, B, ...) copies
        self._rows: dict[Layer, list[torch.Tensor]] = {}  # each block's steps, as views
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        # where each module was called from, during the first forward only
        self._sites: dict[str, dict[tuple[str, int], None]] | None = {
            layer.module: {} for layer in self.layers}

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
            if self._sites is not None:
                self._sites[name][call_site()] = None
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

        Parameters
        ----------
        batch_size
            The stimuli of the batch the forward ran on.

        Returns
        -------
        dict
            ``{Layer: tensor}``, every hooked layer.

        Raises
        ------
        ValueError
            When a module was not called, was called at several places, or its outputs do not
            fit the time rules.
        """
        try:
            if self._sites is not None:
                self._check_first_forward()
            return {layer: _assemble(layer, self._stacked(layer), batch_size)
                    for layer in self.layers}
        finally:
            self.clear()

    def _check_first_forward(self) -> None:
        sites, self._sites = self._sites, None
        assert sites is not None
        for module, places in sites.items():
            if len(places) > 1:
                calls = len(next(self._steps[layer] for layer in self.layers
                                 if layer.module == module))
                where = ", ".join(f"{file.rsplit('/', 1)[-1]}:{line}" for file, line in places)
                raise ValueError(f"module {module!r} is called at {len(places)} places in one "
                                 f"forward ({calls} calls; {where}): its calls are not time "
                                 f"steps. Record the modules around it, or give each call "
                                 f"its own module")
        for layer in self.layers:
            steps = self._steps[layer]
            if len(steps) == 1 and layer.time_dim is None and not layer.fold_time \
                    and steps[0].dim() >= 3:
                shape = tuple(steps[0].shape)
                flattened = steps[0].dim() != 4
                (log.warning if flattened else log.info)(
                    "layer %r: its module is called once and gave shape %s, recorded as one "
                    "time step%s; if one of its axes is time, give time_dim={%r: AXIS}",
                    layer.name, shape, " with the other axes flattened into features"
                    if flattened else "", layer.name)

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


def _axis(axis: int, rank: int, option: str, where: str, shape: tuple[int, ...]) -> int:
    """``axis`` of a ``rank``-axis output as a non-negative index; ValueError if out of range."""
    if not -rank <= axis < rank:
        raise ValueError(f"{option} {axis} is out of range for {where}, whose output has shape "
                         f"{shape} ({rank} axes)")
    return axis % rank


def _assemble(layer: Layer, steps: list[torch.Tensor] | torch.Tensor, batch_size: int
              ) -> torch.Tensor:
    """One layer's ``(batch, time, *features)`` from its outputs of one forward: a list, or a
    time-major block of outputs that agree in shape."""
    where = f"layer {layer.name!r} (module {layer.module!r})"
    fold = fold_mode(layer.fold_time)
    if len(steps) == 0:
        raise ValueError(f"{where} was never called during the forward; record a module the "
                         f"forward uses")
    if len(steps) > 1:
        if layer.time_dim is not None or fold:
            option = f"time_dim={layer.time_dim}" if layer.time_dim is not None else \
                f"fold_time={layer.fold_time!r}"
            raise ValueError(f"{where} was called {len(steps)} times in one forward and has "
                             f"{option}: its time comes from calls or from its output, not "
                             f"both (give the option per pattern)")
        if isinstance(steps, list):
            kinds = sorted({f"{tuple(step.shape)} {step.dtype}" for step in steps})
            raise ValueError(f"{where} gave outputs of {', '.join(kinds)} in one forward; "
                             f"calls that make time steps must agree in shape and type")
        shape = tuple(steps.shape[1:])
        batch = _axis(layer.batch_dim or 0, len(shape), "batch_dim", where, shape)
        # time-major storage, as the writer buffers it: its copy is then contiguous
        moved = steps.movedim(0, 1) if batch == 0 else steps.movedim((batch + 1, 0), (0, 1))
        return _check_batch(moved, batch_size, where, 0, shape)
    value = steps[0]
    shape = tuple(value.shape)
    if fold:
        return _unfold(value, fold, layer, batch_size, where)
    if layer.time_dim is None:
        batch = _axis(layer.batch_dim or 0, value.dim(), "batch_dim", where, shape)
        return _check_batch(value, batch_size, where, batch, shape).movedim(batch, 0)[:, None]
    time_dim = _axis(layer.time_dim, value.dim(), "time_dim", where, shape)
    default_batch = 1 if time_dim == 0 else 0
    batch = _axis(default_batch if layer.batch_dim is None else layer.batch_dim, value.dim(),
                  "batch_dim", where, shape)
    if time_dim == batch or value.dim() < 2:
        raise ValueError(f"time_dim {layer.time_dim} of {where} is its batch axis (output "
                         f"shape {shape})")
    _check_batch(value, batch_size, where, batch, shape)
    return value.movedim((batch, time_dim), (0, 1))


def _unfold(value: torch.Tensor, fold: str, layer: Layer, batch_size: int, where: str
            ) -> torch.Tensor:
    """``(B * T, ...)`` rows (on the batch axis) as ``(B, T, ...)``: batch-major (``"BT"``)
    or time-major (``"TB"``) rows."""
    shape = tuple(value.shape)
    batch = _axis(layer.batch_dim or 0, value.dim(), "batch_dim", where, shape)
    rows = shape[batch]
    if rows % batch_size:
        raise ValueError(f"fold_time: {where} gave {rows} rows on axis {batch} (shape "
                         f"{shape}), not a whole number of steps for the batch of "
                         f"{batch_size} stimuli")
    steps = rows // batch_size
    value = value.movedim(batch, 0)
    if fold == "BT":
        return value.reshape(batch_size, steps, *value.shape[1:])
    return value.reshape(steps, batch_size, *value.shape[1:]).transpose(0, 1)


def _check_batch(value: torch.Tensor, batch_size: int, where: str, axis: int,
                 shape: tuple[int, ...]) -> torch.Tensor:
    if value.dim() <= axis or value.shape[axis] != batch_size:
        raise ValueError(f"{where} gave an output of shape {shape}, whose axis {axis} should "
                         f"be the batch of {batch_size} stimuli")
    return value
