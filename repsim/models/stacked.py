"""A cell's seeds as one network: S networks of one configuration, side by side.

A study's networks are small (about 29,000 parameters): on a GPU one of them leaves almost
all of the card idle, and training the S seeds of a cell as one stacked network is the
answer. ``FusionConvLSTM(config, seeds=S)`` is that network: every convolution is grouped
(one group per seed, :class:`repsim.models.convlstm.ConvLSTM`'s ``groups``), the fusion
operator joins the streams seed by seed, and the readout is a :class:`GroupedLinear`. Seed
``s`` reads input channels ``s * Cin`` to ``(s + 1) * Cin`` and writes logits ``s * classes``
to ``(s + 1) * classes``; no operation mixes seeds, so each seed's loss, gradients and
AdamW step are its own network's, to float rounding.

Every parameter of the stacked network (and every AdamW moment) is its seeds' parameters
concatenated along the first axis: :func:`stack_state` and :func:`seed_state` convert, for
models and for optimisers (:func:`stack_optimizer_state`, :func:`seed_optimizer_state`).
:func:`clip_seed_grad_norms` clips each seed's gradient norm on its own, as
``torch.nn.utils.clip_grad_norm_`` does for one network.

On the CPU a stacked network is not faster: the step is bound by memory traffic, and a
bigger one is slower per sample (``benchmarks/bench_study.py --stacked`` measures it).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import torch
from torch import nn


class GroupedLinear(nn.Module):
    """``groups`` linear layers side by side: ``(..., groups * in)`` -> ``(..., groups * out)``,
    group ``g``'s outputs from group ``g``'s inputs. ``weight`` is ``(groups * out, in)``
    and ``bias`` ``(groups * out,)``: group ``g``'s rows are its ``nn.Linear``'s."""

    def __init__(self, in_features: int, out_features: int, groups: int) -> None:
        super().__init__()
        self.in_features, self.out_features, self.groups = in_features, out_features, groups
        self.weight = nn.Parameter(torch.empty(groups * out_features, in_features))
        self.bias = nn.Parameter(torch.empty(groups * out_features))
        for group in range(groups):  # each group initialised as nn.Linear initialises
            linear = nn.Linear(in_features, out_features)
            rows = slice(group * out_features, (group + 1) * out_features)
            with torch.no_grad():
                self.weight[rows] = linear.weight
                self.bias[rows] = linear.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead, groups = x.shape[:-1], self.groups
        inputs = x.reshape(-1, groups, self.in_features).transpose(0, 1)  # (G, N, in)
        weight = self.weight.view(groups, self.out_features, self.in_features)
        out = torch.baddbmm(self.bias.view(groups, 1, self.out_features), inputs,
                            weight.transpose(1, 2))  # (G, N, out)
        return out.transpose(0, 1).reshape(*lead, groups * self.out_features)


def stack_state(states: Sequence[Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The state dict of a stacked network from its seeds' state dicts (in seed order)."""
    return {name: torch.cat([state[name] for state in states]) for name in states[0]}


def seed_state(state: Mapping[str, torch.Tensor], seeds: int, seed: int
               ) -> dict[str, torch.Tensor]:
    """Seed ``seed``'s state dict (of its own network) from a stacked network's."""
    return {name: value.chunk(seeds)[seed] for name, value in state.items()}


def stack_optimizer_state(states: Sequence[dict]) -> dict:
    """An AdamW state dict of a stacked network from its seeds' (same parameter order, the
    same step count: one step per stacked step)."""
    first = states[0]
    stacked: dict = {}
    for index, entry in first["state"].items():
        stacked[index] = {}
        for key, value in entry.items():
            if key == "step":
                steps = {float(state["state"][index][key]) for state in states}
                if len(steps) != 1:
                    raise ValueError(f"seeds at different optimiser steps ({sorted(steps)}) "
                                     f"cannot be stacked")
                stacked[index][key] = value.clone()
            else:
                stacked[index][key] = torch.cat([state["state"][index][key]
                                                 for state in states])
    return {"state": stacked, "param_groups": first["param_groups"]}


def seed_optimizer_state(state: dict, seeds: int, seed: int) -> dict:
    """Seed ``seed``'s AdamW state dict from a stacked network's."""
    return {"state": {index: {key: value.clone() if key == "step" else
                              value.chunk(seeds)[seed].clone()
                              for key, value in entry.items()}
                      for index, entry in state["state"].items()},
            "param_groups": state["param_groups"]}


def clip_seed_grad_norms(parameters: Iterable[torch.Tensor], seeds: int,
                         max_norm: float) -> torch.Tensor:
    """Clip each seed's gradient to norm ``max_norm`` (``clip_grad_norm_``'s rule per seed:
    scale by ``min(1, max_norm / (norm + 1e-6))``); returns the seeds' norms before."""
    grads = [p.grad for p in parameters if p.grad is not None]
    norms = torch.stack([torch.linalg.vector_norm(g.reshape(seeds, -1), dim=1)
                         for g in grads]).norm(dim=0)
    scale = (max_norm / (norms + 1e-6)).clamp(max=1.0)
    for grad in grads:
        grad.view(seeds, -1).mul_(scale[:, None].to(grad.dtype))
    return norms
