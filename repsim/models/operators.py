"""Fusion operators: how the audio and the visual stream are joined at the fusion layer.

Each operator takes the two streams ``a`` and ``v``, both ``(B, T, C, H, W)``, and returns the
joined sequence ``(B, T, 2C, H, W)``: every operator gives the layer after it (or the readout,
for late fusion) the same width as concatenation does, so that operators differ in how they
join, not in what follows. Transforms are 1 x 1 convolutions applied at every position and
time step (the feature vector at one position is what a dense layer sees in the papers).

- ``concat``: ``[a; v]``. Concatenation followed by a convolution is a sum of one convolution
  per modality, so nothing in it can turn a noisy modality down. No parameters.
- ``gated``: a gated multimodal unit (Arevalo et al. 2017, "Gated Multimodal Units for
  Information Fusion", ICLR workshop), see :class:`Gated`.
- ``film``: feature-wise linear modulation in both directions (Perez et al. 2018, "FiLM:
  Visual Reasoning with a General Conditioning Layer", AAAI), see :class:`FiLM`.
"""

from __future__ import annotations

import torch
from torch import nn

# Re-exported (``X as X``): the operators' names and counts live, without torch, in
# repsim.models.config.
from repsim.models.config import DEFAULT_FUSION_OP as DEFAULT_FUSION_OP
from repsim.models.config import FUSION_OPS as FUSION_OPS
from repsim.models.config import check_fusion_op as check_fusion_op
from repsim.models.config import operator_parameters as operator_parameters
from repsim.models.config import operator_tag as operator_tag


def _pointwise(in_channels: int, out_channels: int, groups: int = 1) -> nn.Conv2d:
    """A 1 x 1 convolution; with ``groups``, that many of these side by side."""
    return nn.Conv2d(groups * in_channels, groups * out_channels, kernel_size=1, groups=groups)


def _cat(a: torch.Tensor, v: torch.Tensor, groups: int) -> torch.Tensor:
    """``[a; v]`` along channels, group by group: ``(B, T, G C, H, W)`` twice ->
    ``(B, T, G 2C, H, W)`` with each group's ``[a_g; v_g]`` together (one group: plain
    concatenation)."""
    shape = a.shape
    grouped = (*shape[:2], groups, shape[2] // groups, *shape[3:])
    joined = torch.cat([a.reshape(grouped), v.reshape(grouped)], dim=3)
    return joined.view(*shape[:2], 2 * shape[2], *shape[3:])


def _halves(x: torch.Tensor, groups: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each group's first and second half of its channels, as ``(B, T, G C, H, W)`` each."""
    shape = x.shape
    first, second = x.view(*shape[:2], groups, 2, shape[2] // (2 * groups),
                           *shape[3:]).unbind(3)
    out = (*shape[:2], shape[2] // 2, *shape[3:])
    return first.reshape(out), second.reshape(out)


def _per_frame(conv: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Apply a 2-d module to every time step of ``(B, T, C, H, W)`` at once."""
    batch, steps = x.shape[:2]
    out = conv(x.flatten(0, 1))
    return out.view(batch, steps, *out.shape[1:])


class Concat(nn.Module):
    """``[a; v]`` along channels: today's (and the default) operator, without parameters."""

    def __init__(self, channels: int, groups: int = 1) -> None:
        super().__init__()
        self.channels, self.groups = channels, groups

    def forward(self, a: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        if self.groups == 1:
            return torch.cat([a, v], dim=2)
        return _cat(a, v, self.groups)


class Gate(nn.Module):
    """The GMU's gate ``z = sigmoid(W_z [a; v] + b_z)``, ``(B, T, 2C, H, W)`` in (0, 1).

    A module of its own so that its output, the gate, can be recorded like a layer.
    """

    def __init__(self, channels: int, groups: int = 1) -> None:
        super().__init__()
        self.groups = groups
        self.conv = _pointwise(2 * channels, 2 * channels, groups)

    def forward(self, a: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        joined = torch.cat([a, v], dim=2) if self.groups == 1 else _cat(a, v, self.groups)
        return torch.sigmoid(_per_frame(self.conv, joined))


class Gated(nn.Module):
    """Gated multimodal unit (GMU; Arevalo et al. 2017), per channel and per position::

        h_a = tanh(W_a a + b_a)        h_v = tanh(W_v v + b_v)      (each stream on its own)
        z   = sigmoid(W_z [a; v] + b_z)                             (from both streams)
        out = z * h_a + (1 - z) * h_v

    ``W_a``, ``W_v``: C -> 2C, ``W_z``: 2C -> 2C, all 1 x 1 convolutions. ``z`` is the share
    of the audio stream in each fused channel at each position and time step, ``1 - z`` the
    visual stream's: a gate that closes on noisy audio drives ``z`` towards 0. The gate is
    the output of the submodule :attr:`gate`, so it can be recorded (see :class:`Gate`).
    """

    def __init__(self, channels: int, groups: int = 1) -> None:
        super().__init__()
        self.audio_transform = _pointwise(channels, 2 * channels, groups)
        self.visual_transform = _pointwise(channels, 2 * channels, groups)
        self.gate = Gate(channels, groups)

    def forward(self, a: torch.Tensor, v: torch.Tensor, return_gate: bool = False
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """The fused sequence, or ``(out, z)`` with ``return_gate`` (a module call, so that a
        hook on this module records ``out`` while the network also keeps ``z``)."""
        out, gate = self.with_gate(a, v)
        return (out, gate) if return_gate else out

    def with_gate(self, a: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(out, z)``: the fused sequence and the gate."""
        h_a = torch.tanh(_per_frame(self.audio_transform, a))
        h_v = torch.tanh(_per_frame(self.visual_transform, v))
        z = self.gate(a, v)
        return h_v + z * (h_a - h_v), z


class FiLM(nn.Module):
    """Feature-wise linear modulation in both directions (after Perez et al. 2018)::

        a' = (1 + G_v v) * a + B_v v     (the visual stream scales and shifts the audio)
        v' = (1 + G_a a) * v + B_a a     (and the audio stream the visual)
        out = [a'; v']

    ``G``, ``B``: C -> C 1 x 1 convolutions (with biases), so the modulation is per channel,
    computed from the other stream's features at the same position and time step; ``1 + G``
    (Perez et al.'s residual form) starts the scale near 1. Either stream can silence a
    channel of the other (scale 0) but not its own.
    """

    def __init__(self, channels: int, groups: int = 1) -> None:
        super().__init__()
        self.channels, self.groups = channels, groups
        self.from_visual = _pointwise(channels, 2 * channels, groups)  # scale and shift for a
        self.from_audio = _pointwise(channels, 2 * channels, groups)  # scale and shift for v

    def forward(self, a: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        if self.groups == 1:
            scale_a, shift_a = _per_frame(self.from_visual, v).chunk(2, dim=2)
            scale_v, shift_v = _per_frame(self.from_audio, a).chunk(2, dim=2)
            return torch.cat([a + scale_a * a + shift_a, v + scale_v * v + shift_v], dim=2)
        scale_a, shift_a = _halves(_per_frame(self.from_visual, v), self.groups)
        scale_v, shift_v = _halves(_per_frame(self.from_audio, a), self.groups)
        return _cat(a + scale_a * a + shift_a, v + scale_v * v + shift_v, self.groups)


OPERATORS: dict[str, type[nn.Module]] = {"concat": Concat, "gated": Gated, "film": FiLM}


def make_operator(name: str, channels: int, groups: int = 1) -> nn.Module:
    """The operator ``name`` for two streams of ``channels`` channels each; with ``groups``,
    that many side by side (a stacked network's seeds, group by group along channels)."""
    return OPERATORS[check_fusion_op(name)](channels, groups)
