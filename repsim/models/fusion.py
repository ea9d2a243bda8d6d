"""The fusion ConvLSTM: an audio and a visual stream joined at a chosen layer.

With ``L`` layers and fusion layer ``k`` (1..L+1): layers ``1..k-1`` exist twice, an audio
branch and a visual branch that each see one modality; layer ``k`` reads the channel
concatenation of both streams (the raw inputs when ``k = 1``) and layers ``k..L`` are shared.
``k = L+1`` ("late") joins the two final states only in the readout. The readout is the
spatial mean of the last hidden state -> linear -> class logits, at the last step (or at
every step with ``readout="per_step"``). How the streams are joined is the fusion operator
(:mod:`repsim.models.operators`; concatenation by default): it joins the inputs of layer
``k``, or the two final states before the readout when ``k = L+1``.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch import nn

from repsim.config import Config, check_positive_int
from repsim.models.convlstm import ConvLSTM
from repsim.models.operators import (
    DEFAULT_FUSION_OP,
    Gated,
    check_fusion_op,
    make_operator,
    operator_parameters,
)
from repsim.record.hooks import Layer

READOUTS = ("last", "per_step")
# What forward(record=True) gives per layer: its hidden and its cell states (a gate: its
# output and None).
LayerStates = tuple[torch.Tensor, torch.Tensor | None]
# Which output of a ConvLSTM module makes each recorded state: its forward returns
# (h_seq, c_seq), time on axis 1; c_seq is None unless the forward has record=True.
CONVLSTM_STATES = {"h": 0, "c": 1}
CONVLSTM_TIME_DIM = 1
GATE = "gate"  # the stream name of a recorded gate


def gate_name(fusion_layer: int) -> str:
    """The recorded name of the gate at fusion layer ``k``: ``gate.<k>``."""
    return f"{GATE}.{fusion_layer}"


def fusion_role(fusion_layer: int, layers: int) -> str:
    """The one rule that names fusion depths: ``"early"`` for k = 1, ``"late"`` for
    k = layers + 1 (joined in the readout only), else ``"k=<k>"``."""
    if fusion_layer == 1:
        return "early"
    if fusion_layer == layers + 1:
        return "late"
    return f"k={fusion_layer}"


@dataclass
class ModelConfig(Config):
    """Architecture of a :class:`FusionConvLSTM`; round-trips through :meth:`to_dict`.

    ``fusion_layer`` is 1..layers+1; the string ``"late"`` is accepted for ``layers + 1`` and
    stored as that number. ``fusion_op`` is how the streams are joined there (one of
    :data:`repsim.models.operators.FUSION_OPS`; a config saved before operators existed has
    none and means ``concat``). ``branch_hidden`` is the width of the branch (pre-fusion)
    layers, ``None`` for ``hidden``; ``match_params=True`` instead picks the branch width
    that brings the parameter count closest to the early-fusion (k = 1) concatenation model
    of the same layers and hidden, so that models differing in k or operator differ in where
    and how they fuse, not in size.
    """

    layers: int = 2
    hidden: int = 16
    kernel: int = 3
    fusion_layer: int = 1
    readout: str = "last"
    match_params: bool = False
    branch_hidden: int | None = None
    in_channels: int = 1
    classes: int = 10
    fusion_op: str = DEFAULT_FUSION_OP

    KIND = "model"

    def __post_init__(self) -> None:
        check_fusion_op(self.fusion_op)
        for name in ("layers", "hidden", "kernel", "in_channels", "classes"):
            check_positive_int(f"model {name}", getattr(self, name))
        if self.kernel % 2 == 0:
            raise ValueError(f"model kernel must be odd (it keeps the frame size), "
                             f"got {self.kernel}")
        if self.fusion_layer == "late":
            self.fusion_layer = self.layers + 1
        if (isinstance(self.fusion_layer, bool) or not isinstance(self.fusion_layer, int)
                or not 1 <= self.fusion_layer <= self.layers + 1):
            raise ValueError(f"fusion layer must be 1..{self.layers + 1} (or 'late') for a "
                             f"{self.layers}-layer model with the {self.fusion_op!r} operator "
                             f"(every operator takes every one of these), got "
                             f"{self.fusion_layer!r}")
        if self.readout not in READOUTS:
            raise ValueError(f"readout must be one of {READOUTS}, got {self.readout!r}")
        if self.branch_hidden is not None:
            if self.match_params:
                raise ValueError("give either branch_hidden or match_params, not both")
            check_positive_int("model branch_hidden", self.branch_hidden)

    @property
    def late(self) -> bool:
        """True when the streams meet only in the readout."""
        return self.role == "late"

    @property
    def role(self) -> str:
        """``"early"``, ``"late"`` or ``"k=<k>"`` (see :func:`fusion_role`)."""
        return fusion_role(self.fusion_layer, self.layers)

    def branch_width(self) -> int:
        """Channels of the branch layers (before the fusion layer)."""
        if self.branch_hidden is not None:
            return self.branch_hidden
        if self.match_params and self.fusion_layer > 1:
            return matched_branch_width(self)
        return self.hidden


def _convlstm_params(in_channels: int, hidden: int, kernel: int) -> int:
    """Parameters of one ConvLSTM layer: input conv with bias + recurrent conv without."""
    return 4 * hidden * (in_channels + hidden) * kernel * kernel + 4 * hidden


def parameter_count(config: ModelConfig, branch_width: int | None = None) -> int:
    """Number of trainable parameters of ``FusionConvLSTM(config)``, computed from shapes.

    ``branch_width`` overrides the width of the branch layers (used to search for a match).
    """
    width = config.branch_width() if branch_width is None else branch_width
    k, kernel = config.fusion_layer, config.kernel
    total = 0
    channels = config.in_channels
    for _ in range(1, k):  # two branches of depth k-1
        total += 2 * _convlstm_params(channels, width, kernel)
        channels = width
    total += operator_parameters(config.fusion_op, channels)
    channels = 2 * channels  # the fusion layer reads both streams
    for _ in range(k, config.layers + 1):
        total += _convlstm_params(channels, config.hidden, kernel)
        channels = config.hidden
    return total + channels * config.classes + config.classes


def matched_branch_width(config: ModelConfig) -> int:
    """Branch width whose model has the parameter count closest to the k = 1 concatenation
    model's."""
    target = parameter_count(dataclasses.replace(config, fusion_layer=1, match_params=False,
                                                 branch_hidden=None,
                                                 fusion_op=DEFAULT_FUSION_OP))
    candidates = range(1, 2 * config.hidden + 1)
    return min(candidates, key=lambda w: (abs(parameter_count(config, w) - target), w))


class FusionConvLSTM(nn.Module):
    """Audio and visual ConvLSTM streams fused at layer ``config.fusion_layer``.

    ``model(audio, visual)`` with inputs ``(B, T, Cin, H, W)`` returns logits ``(B, classes)``
    (``(B, T, classes)`` for the per-step readout). ``record=True`` also returns every layer's
    hidden and cell states ``(B, T, C, H, W)`` in an ordered dict keyed by
    :attr:`layer_names`; without it the cell states are not returned (the CPU recurrence
    computes them anyway, as the next step needs them; the autograd loop keeps none). The
    operator that joins the streams is :attr:`join`; a gated one's gate (the output of
    ``join.gate``) is recorded as ``gate.<k>``, its state pair ``(z, None)`` (no cell).
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        k, kernel = config.fusion_layer, config.kernel
        width = config.branch_width()
        self.audio = nn.ModuleList()
        self.visual = nn.ModuleList()
        channels = config.in_channels
        for _ in range(1, k):
            self.audio.append(ConvLSTM(channels, width, kernel))
            self.visual.append(ConvLSTM(channels, width, kernel))
            channels = width
        self.join = make_operator(config.fusion_op, channels)
        channels = 2 * channels
        self.fused = nn.ModuleList()
        for _ in range(k, config.layers + 1):
            self.fused.append(ConvLSTM(channels, config.hidden, kernel))
            channels = config.hidden
        self.readout = nn.Linear(channels, config.classes)

    def recorded_modules(self) -> dict[str, str]:
        """Recorded layer name -> module name, in forward order: layer ``audio.d`` is module
        ``audio.{d-1}`` (depth is 1-based), the gate ``gate.k`` (where the operator has one)
        is ``join.gate``, ``fused.d`` is ``fused.{d-k}`` for fusion layer k. The one place
        that says which module makes which recorded layer."""
        modules = {}
        for index in range(len(self.audio)):
            modules[f"audio.{index + 1}"] = f"audio.{index}"
            modules[f"visual.{index + 1}"] = f"visual.{index}"
        first_fused = len(self.audio) + 1
        if self.has_gate:
            modules[gate_name(first_fused)] = "join.gate"
        modules.update({f"fused.{first_fused + i}": f"fused.{i}" for i in range(len(self.fused))})
        return modules

    def recorded_layers(self, states: tuple[str, ...] = ("h",),
                        layers: list[str] | None = None) -> list[Layer]:
        """What :func:`repsim.record` records for ``layers`` (None: all) and ``states`` ("h",
        "c"): each ConvLSTM layer's output :data:`CONVLSTM_STATES` ``[state]``, time on axis
        1; a gate's output ``z`` as its "h" (it has no cell state). Recording "c" needs the
        forward called with ``record=True``."""
        chosen = []
        for name, module in self.recorded_modules().items():
            if layers is not None and name not in layers:
                continue
            if module == "join.gate":
                chosen += [Layer(name, module, state="h", time_dim=CONVLSTM_TIME_DIM)
                           for state in states if state == "h"]
            else:
                chosen += [Layer(name, module, output=CONVLSTM_STATES[state], state=state,
                                 time_dim=CONVLSTM_TIME_DIM) for state in states]
        return chosen

    @property
    def layer_names(self) -> list[str]:
        """Recorded layer names in forward order: ``audio.d``, ``visual.d``, ``fused.d``."""
        return list(self.recorded_modules())

    @property
    def has_gate(self) -> bool:
        """True when the operator has a gate to record (``gated``)."""
        return isinstance(self.join, Gated)

    def parameter_count(self) -> int:
        """Trainable parameters (equals :func:`parameter_count` of the config)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def forward(self, audio: torch.Tensor, visual: torch.Tensor, record: bool = False
                ) -> torch.Tensor | tuple[torch.Tensor, dict[str, LayerStates]]:
        """Logits, or ``(logits, states)`` when ``record``; see the class docstring."""
        if audio.shape != visual.shape:
            raise ValueError(f"audio {tuple(audio.shape)} and visual {tuple(visual.shape)} "
                             f"inputs must have the same shape")
        states: OrderedDict[str, tuple[torch.Tensor, torch.Tensor | None]] = OrderedDict()
        a, v = audio, visual
        for depth, (audio_layer, visual_layer) in enumerate(zip(self.audio, self.visual,
                                                                strict=True), start=1):
            a, a_cell = audio_layer(a, return_cells=record)
            v, v_cell = visual_layer(v, return_cells=record)
            if record:
                states[f"audio.{depth}"] = (a, a_cell)
                states[f"visual.{depth}"] = (v, v_cell)
        # without fused layers (late) the readout sees the joined final states
        if record and isinstance(self.join, Gated):
            h, gate = self.join.with_gate(a, v)
            states[gate_name(len(self.audio) + 1)] = (gate, None)
        else:
            h = self.join(a, v)
        for depth, layer in enumerate(self.fused, start=len(self.audio) + 1):
            h, cell = layer(h, return_cells=record)
            if record:
                states[f"fused.{depth}"] = (h, cell)
        logits = self._read_out(h)
        return (logits, states) if record else logits

    def _read_out(self, h: torch.Tensor) -> torch.Tensor:
        """Spatial mean -> linear, at the last step or every step."""
        if self.config.readout == "last":
            return self.readout(h[:, -1].mean(dim=(-2, -1)))
        return self.readout(h.mean(dim=(-2, -1)))


def final_logits(logits: torch.Tensor) -> torch.Tensor:
    """The logits a prediction is made from: ``(B, classes)``, the last step of a per-step
    readout ``(B, T, classes)``."""
    return logits[:, -1] if logits.dim() == 3 else logits
