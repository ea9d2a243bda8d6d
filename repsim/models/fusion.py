"""The fusion ConvLSTM: an audio and a visual stream joined at a chosen layer.

With ``L`` layers and fusion layer ``k`` (1..L+1): layers ``1..k-1`` exist twice, an audio
branch and a visual branch that each see one modality; layer ``k`` reads the channel
concatenation of both streams (the raw inputs when ``k = 1``) and layers ``k..L`` are shared.
``k = L+1`` ("late") joins the two final states only in the readout. The readout is the
spatial mean of the last hidden state -> linear -> class logits, at the last step (or at
every step with ``readout="per_step"``). How the streams are joined is the fusion operator
(``repsim.models.operators``; concatenation by default): it joins the inputs of layer
``k``, or the two final states before the readout when ``k = L+1``.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

# Re-exported (``X as X``): their home before repsim.models.config, where callers find them.
from repsim.models.config import READOUTS as READOUTS
from repsim.models.config import ModelConfig as ModelConfig
from repsim.models.config import fusion_role as fusion_role
from repsim.models.config import matched_branch_width as matched_branch_width
from repsim.models.config import parameter_count as parameter_count
from repsim.models.convlstm import ConvLSTM
from repsim.models.operators import Gated, make_operator
from repsim.models.stacked import GroupedLinear
from repsim.record.hooks import Layer

# What forward(record=True) gives per layer: its hidden and its cell states (a gate: its
# output and None).
LayerStates = tuple[torch.Tensor, torch.Tensor | None]
# Which output of a ConvLSTM module makes each recorded state: its forward returns
# (h_seq, c_seq), time on axis 1; c_seq is None unless the forward has record=True.
CONVLSTM_STATES = {"h": 0, "c": 1}
CONVLSTM_TIME_DIM = 1
GATE = "gate"  # the stream name of a recorded gate
JOIN = "join"  # the stream name of the recorded operator output (recorded on request)


def gate_name(fusion_layer: int) -> str:
    """The recorded name of the gate at a fusion layer.

    Parameters
    ----------
    fusion_layer
        k, the fusion layer.

    Returns
    -------
    str
        ``gate.<k>``.
    """
    return f"{GATE}.{fusion_layer}"


def join_name(fusion_layer: int) -> str:
    """The recorded name of the fusion operator's output at a fusion layer: what enters the
    first fused layer (the readout's input when k = L+1).

    Parameters
    ----------
    fusion_layer
        k, the fusion layer.

    Returns
    -------
    str
        ``join.<k>``.
    """
    return f"{JOIN}.{fusion_layer}"


class FusionConvLSTM(nn.Module):
    """Audio and visual ConvLSTM streams fused at layer ``config.fusion_layer``.

    ``model(audio, visual)`` with inputs ``(B, T, Cin, H, W)`` returns logits ``(B, classes)``
    (``(B, T, classes)`` for the per-step readout). ``record=True`` also returns every layer's
    hidden and cell states ``(B, T, C, H, W)`` in an ordered dict keyed by
    [layer_names][repsim.models.fusion.FusionConvLSTM.layer_names]; without it the cell
    states are not returned (the CPU recurrence computes them anyway, as the next step needs
    them; the autograd loop keeps none). The operator that joins the streams is the module
    ``join``; a gated one's gate (the output of ``join.gate``) is recorded as ``gate.<k>``,
    its state pair ``(z, None)`` (no cell). The operator's output ``join.<k>`` is recordable
    on request
    ([recordable_layer_names][repsim.models.FusionConvLSTM.recordable_layer_names]) but not
    among [layer_names][repsim.models.fusion.FusionConvLSTM.layer_names], so default
    recordings and ``record=True`` states stay as they were.

    Parameters
    ----------
    config
        The architecture ([ModelConfig][repsim.models.config.ModelConfig]).
    seeds
        How many networks of ``config`` to build side by side, as one; more than one is a
        stacked network (``repsim.models.stacked``): inputs ``(B, T, seeds * Cin, H, W)``,
        seed ``s``'s channels ``s * Cin`` to ``(s + 1) * Cin``, logits
        ``(B, seeds * classes)``.

    Raises
    ------
    ValueError
        For ``seeds`` not a positive integer.
    """

    def __init__(self, config: ModelConfig, seeds: int = 1) -> None:
        super().__init__()
        if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
            raise ValueError(f"seeds must be a positive integer, got {seeds!r}")
        self.config, self.seeds = config, seeds
        k, kernel = config.fusion_layer, config.kernel
        width = config.branch_width()
        self.audio = nn.ModuleList()
        self.visual = nn.ModuleList()
        channels = config.in_channels
        for _ in range(1, k):
            self.audio.append(ConvLSTM(channels, width, kernel, groups=seeds))
            self.visual.append(ConvLSTM(channels, width, kernel, groups=seeds))
            channels = width
        self.join = make_operator(config.fusion_op, channels, seeds)
        channels = 2 * channels
        self.fused = nn.ModuleList()
        for _ in range(k, config.layers + 1):
            self.fused.append(ConvLSTM(channels, config.hidden, kernel, groups=seeds))
            channels = config.hidden
        self.readout = nn.Linear(channels, config.classes) if seeds == 1 else \
            GroupedLinear(channels, config.classes, seeds)

    def recorded_modules(self, operator_output: bool = False) -> dict[str, str]:
        """Which module makes which recorded layer: the one place that says it.

        Parameters
        ----------
        operator_output
            Include the operator's output ``join.k`` (module ``join``).

        Returns
        -------
        dict of str to str
            Recorded layer name -> module name, in forward order: layer ``audio.d`` is
            module ``audio.{d-1}`` (depth is 1-based), the gate ``gate.k`` (where the
            operator has one) is ``join.gate``, ``fused.d`` is ``fused.{d-k}`` for fusion
            layer k.
        """
        modules = {}
        for index in range(len(self.audio)):
            modules[f"audio.{index + 1}"] = f"audio.{index}"
            modules[f"visual.{index + 1}"] = f"visual.{index}"
        first_fused = len(self.audio) + 1
        if self.has_gate:
            modules[gate_name(first_fused)] = "join.gate"
        if operator_output:
            modules[join_name(first_fused)] = JOIN
        modules.update({f"fused.{first_fused + i}": f"fused.{i}" for i in range(len(self.fused))})
        return modules

    def recorded_layers(self, states: tuple[str, ...] = ("h",),
                        layers: list[str] | None = None) -> list[Layer]:
        """What [repsim.record][repsim.record.api.record] records for ``layers`` and
        ``states``.

        Parameters
        ----------
        states
            ``"h"``, ``"c"`` or both. Recording ``"c"`` needs the forward called with
            ``record=True``.
        layers
            Recorded layer names, of
            [recordable_layer_names][repsim.models.FusionConvLSTM.recordable_layer_names];
            None: all of [layer_names][repsim.models.fusion.FusionConvLSTM.layer_names].

        Returns
        -------
        list of Layer
            In forward order: each ConvLSTM layer's output ``CONVLSTM_STATES[state]``, time
            on axis 1; a gate's output ``z`` and the operator's output ``join.k`` (only when
            ``layers`` names it) as their ``"h"`` (they have no cell state).
        """
        chosen = []
        for name, module in self.recorded_modules(operator_output=True).items():
            wanted = name in layers if layers is not None else module != JOIN
            if not wanted:
                continue
            stream, depth = name.rsplit(".", 1)  # the names say it: <stream>.<depth>
            if module in ("join.gate", JOIN):  # one tensor (a gated join: out of (out, z))
                chosen += [Layer(name, module, state="h", time_dim=CONVLSTM_TIME_DIM,
                                 depth=int(depth), stream=stream)
                           for state in states if state == "h"]
            else:
                chosen += [Layer(name, module, output=CONVLSTM_STATES[state], state=state,
                                 time_dim=CONVLSTM_TIME_DIM, depth=int(depth), stream=stream)
                           for state in states]
        return chosen

    @property
    def layer_names(self) -> list[str]:
        """Recorded layer names in forward order: ``audio.d``, ``visual.d``, ``fused.d``."""
        return list(self.recorded_modules())

    @property
    def recordable_layer_names(self) -> list[str]:
        """[layer_names][repsim.models.fusion.FusionConvLSTM.layer_names] and the operator's
        output ``join.k``, in forward order."""
        return list(self.recorded_modules(operator_output=True))

    @property
    def has_gate(self) -> bool:
        """True when the operator has a gate to record (``gated``)."""
        return isinstance(self.join, Gated)

    def parameter_count(self) -> int:
        """Trainable parameters.

        Returns
        -------
        int
            Equal to [parameter_count][repsim.models.config.parameter_count] of the config.
        """
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def forward(self, audio: torch.Tensor, visual: torch.Tensor, record: bool = False
                ) -> torch.Tensor | tuple[torch.Tensor, dict[str, LayerStates]]:
        """Run both streams and the readout (see the class docstring).

        Parameters
        ----------
        audio, visual
            The inputs ``(B, T, seeds * Cin, H, W)``, of one shape.
        record
            Also return every recorded layer's states.

        Returns
        -------
        torch.Tensor or tuple
            The logits ``(B, seeds * classes)`` (``(B, T, seeds * classes)`` for the
            per-step readout), or ``(logits, states)`` when ``record``: ``states`` maps each
            of [layer_names][repsim.models.fusion.FusionConvLSTM.layer_names] to its
            ``(hidden, cell)`` states (a gate's to ``(z, None)``).

        Raises
        ------
        ValueError
            For inputs of different shapes.
        """
        if audio.shape != visual.shape:
            raise ValueError(f"audio {tuple(audio.shape)} and visual {tuple(visual.shape)} "
                             f"inputs must have the same shape")
        states: OrderedDict[str, tuple[torch.Tensor, torch.Tensor | None]] = OrderedDict()
        a, v = self._branches(audio, visual, states if record else None)
        return self._joined(a, v, states if record else None)

    def branches(self, audio: torch.Tensor, visual: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """The audio and the visual stream's outputs before the fusion layer.

        Parameters
        ----------
        audio, visual
            The inputs, as for ``model(audio, visual)``.

        Returns
        -------
        tuple of torch.Tensor
            The two streams' hidden states entering the fusion layer (the inputs themselves
            at k = 1).
        """
        return self._branches(audio, visual, None)

    def branch(self, modality: str, x: torch.Tensor) -> torch.Tensor:
        """One stream's output before the fusion layer: it depends on that modality's input
        only, so conditions that change the other input can share it
        ([repsim.evaluate][repsim.evaluate]).

        Parameters
        ----------
        modality
            ``"audio"`` or ``"visual"``.
        x
            That modality's input.

        Returns
        -------
        torch.Tensor
            Equal to that part of [branches][repsim.models.fusion.FusionConvLSTM.branches].
        """
        streams = {"audio": self.audio, "visual": self.visual}
        if modality not in streams:
            raise ValueError(f"modality must be audio or visual, got {modality!r}")
        layers = streams[modality]
        for layer in layers:
            x, _ = layer(x, return_cells=False)
        return x

    def from_branches(self, a: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """The logits from the streams' outputs before the fusion layer.

        ``model(audio, visual)`` equals ``model.from_branches(*model.branches(audio, visual))``
        exactly (the same operations on the same values).

        Parameters
        ----------
        a, v
            The audio and the visual outputs of
            [branches][repsim.models.fusion.FusionConvLSTM.branches] (or of
            [branch][repsim.models.fusion.FusionConvLSTM.branch]).

        Returns
        -------
        torch.Tensor
            The logits, as ``model(audio, visual)`` returns them.
        """
        logits = self._joined(a, v, None)
        assert isinstance(logits, torch.Tensor)  # no states without record
        return logits

    def _branches(self, a: torch.Tensor, v: torch.Tensor,
                  states: OrderedDict[str, LayerStates] | None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        """The branch layers, depth by depth; their states go into ``states`` when given."""
        record = states is not None
        for depth, (audio_layer, visual_layer) in enumerate(zip(self.audio, self.visual,
                                                                strict=True), start=1):
            a, a_cell = audio_layer(a, return_cells=record)
            v, v_cell = visual_layer(v, return_cells=record)
            if states is not None:
                states[f"audio.{depth}"] = (a, a_cell)
                states[f"visual.{depth}"] = (v, v_cell)
        return a, v

    def _joined(self, a: torch.Tensor, v: torch.Tensor,
                states: OrderedDict[str, LayerStates] | None
                ) -> torch.Tensor | tuple[torch.Tensor, dict[str, LayerStates]]:
        """The operator, the fused layers and the readout; ``(logits, states)`` when
        ``states`` is given (recording), else the logits."""
        record = states is not None
        # without fused layers (late) the readout sees the joined final states
        if states is not None and isinstance(self.join, Gated):
            h, gate = self.join(a, v, return_gate=True)
            states[gate_name(len(self.audio) + 1)] = (gate, None)
        else:
            h = self.join(a, v)
        for depth, layer in enumerate(self.fused, start=len(self.audio) + 1):
            h, cell = layer(h, return_cells=record)
            if states is not None:
                states[f"fused.{depth}"] = (h, cell)
        logits = self._read_out(h)
        return (logits, states) if states is not None else logits

    def _read_out(self, h: torch.Tensor) -> torch.Tensor:
        """Spatial mean -> linear, at the last step or every step."""
        if self.config.readout == "last":
            return self.readout(h[:, -1].mean(dim=(-2, -1)))
        return self.readout(h.mean(dim=(-2, -1)))


def final_logits(logits: torch.Tensor) -> torch.Tensor:
    """The logits a prediction is made from.

    Parameters
    ----------
    logits
        A model's logits: ``(B, classes)``, or ``(B, T, classes)`` from a per-step readout.

    Returns
    -------
    torch.Tensor
        ``(B, classes)``: ``logits`` itself, or the last step of a per-step readout.
    """
    return logits[:, -1] if logits.dim() == 3 else logits
