"""Spatial pooling of recorded maps, to keep activation files small. (torch is imported on
first use, so that a command line can list the poolings quickly.)"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

POOLINGS = ("none", "avg", "global")


def pool_states(states: torch.Tensor, pool: str, factor: int = 2) -> torch.Tensor:
    """Spatially pool ``(B, T, C, H, W)`` maps: "none", "avg" (``factor`` blocks; edge blocks
    average only the cells they cover) or "global" (mean; H = W = 1). Vectors ``(B, T, F)``
    have no space and are returned as they are."""
    if pool not in POOLINGS:
        raise ValueError(f"pool must be one of {', '.join(POOLINGS)}, not {pool!r}")
    if pool == "none" or states.dim() != 5:
        return states
    if pool == "global":
        return states.mean(dim=(-2, -1), keepdim=True)
    import torch.nn.functional as F

    batch, steps = states.shape[:2]
    pooled = F.avg_pool2d(states.flatten(0, 1), factor, stride=factor, ceil_mode=True)
    return pooled.reshape(batch, steps, *pooled.shape[1:])
