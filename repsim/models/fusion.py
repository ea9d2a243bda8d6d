"""The fusion ConvLSTM: an audio and a visual stream joined at a chosen layer.

With ``L`` layers and fusion layer ``k`` (1..L+1): layers ``1..k-1`` exist twice, an audio
branch and a visual branch that each see one modality; layer ``k`` reads the channel
concatenation of both streams (the raw inputs when ``k = 1``) and layers ``k..L`` are shared.
``k = L+1`` ("late") joins the two final states only in the readout. The readout is the
spatial mean of the last hidden state -> linear -> class logits, at the last step (or at
every step with ``readout="per_step"``).
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


class FusionConvLSTM(nn.Module):
    """Audio and visual ConvLSTM streams fused at layer ``config.fusion_layer``.

    ``model(audio, visual)`` with inputs ``(B, T, Cin, H, W)`` returns logits ``(B, classes)``
    (``(B, T, classes)`` for the per-step readout). ``record=True`` also returns every layer's
    hidden and cell states ``(B, T, C, H, W)`` in an ordered dict keyed by
    :attr:`layer_names`; without it the cell states are not returned (the CPU recurrence
    computes them anyway, as the next step needs them; the autograd loop keeps none).
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
        channels = 2 * channels
        self.fused = nn.ModuleList()
        for _ in range(k, config.layers + 1):
            self.fused.append(ConvLSTM(channels, config.hidden, kernel))
            channels = config.hidden
        self.readout = nn.Linear(channels, config.classes)

    @property
    def layer_names(self) -> list[str]:
        """Recorded layer names in forward order: ``audio.d``, ``visual.d``, ``fused.d``."""
        names = []
        for depth in range(1, len(self.audio) + 1):
            names += [f"audio.{depth}", f"visual.{depth}"]
        first_fused = len(self.audio) + 1
        names += [f"fused.{first_fused + i}" for i in range(len(self.fused))]
        return names

    def parameter_count(self) -> int:
        """Trainable parameters (equals :func:`parameter_count` of the config)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def forward(self, audio: torch.Tensor, visual: torch.Tensor, record: bool = False):
        """Logits, or ``(logits, states)`` when ``record``; see the class docstring."""
        if audio.shape != visual.shape:
            raise ValueError(f"audio {tuple(audio.shape)} and visual {tuple(visual.shape)} "
                             f"inputs must have the same shape")
        states: OrderedDict[str, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()
        a, v = audio, visual
        for depth, (audio_layer, visual_layer) in enumerate(zip(self.audio, self.visual,
                                                                strict=True), start=1):
            a, a_cell = audio_layer(a, return_cells=record)
            v, v_cell = visual_layer(v, return_cells=record)
            if record:
                states[f"audio.{depth}"] = (a, a_cell)
                states[f"visual.{depth}"] = (v, v_cell)
        h = torch.cat([a, v], dim=2)  # without fused layers (late) the readout sees both
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
