"""What a recording wrote: the result of :func:`repsim.record` and of ``repsim.extract``
(torch-free, so that command lines load it quickly)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class RecordResult:
    """What a recording wrote."""

    path: Path
    size_bytes: int
    layers: list[str]
    states: list[str]
    n_stimuli: int
    timesteps: int
    conditions: list[str]
    seconds: float

    def summary(self) -> str:
        """The one line a CLI ends with."""
        return (f"wrote {self.path} ({self.size_bytes / 2**20:.1f} MiB): {len(self.layers)} "
                f"layers ({', '.join(self.layers)}), states {'/'.join(self.states)}, "
                f"{self.n_stimuli} stimuli ({len(self.conditions)} conditions), "
                f"{self.timesteps} time steps, in {self.seconds:.1f} s")
