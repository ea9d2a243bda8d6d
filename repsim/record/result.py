"""What a recording wrote: the result of [repsim.record][repsim.record.api.record] and of
``repsim.extract`` (torch-free, so that command lines load it quickly).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class RecordResult:
    """What a recording wrote.

    Parameters
    ----------
    path
        The activation file.
    size_bytes
        Its size.
    layers
        The recorded layers, in forward order.
    states
        The recorded states (``"h"``, ``"c"``).
    n_stimuli
        Rows of the file (stimuli x conditions).
    timesteps
        The length of the file's ``time`` dim, the one most layers share.
    conditions
        The conditions, in file order.
    seconds
        How long the recording took.
    time_axes
        Every recorded layer's number of steps.
    """

    path: Path
    size_bytes: int
    layers: list[str]
    states: list[str]
    n_stimuli: int
    timesteps: int
    conditions: list[str]
    seconds: float
    time_axes: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        """The one line a command ends with.

        Returns
        -------
        str
        """
        others = ", ".join(f"{layer}: {steps}" for layer, steps in self.time_axes.items()
                           if steps != self.timesteps)
        return (f"wrote {self.path} ({self.size_bytes / 2**20:.1f} MiB): {len(self.layers)} "
                f"layers ({', '.join(self.layers)}), states {'/'.join(self.states)}, "
                f"{self.n_stimuli} stimuli ({len(self.conditions)} conditions), "
                f"{self.timesteps} time steps{f' ({others})' if others else ''}, in "
                f"{self.seconds:.1f} s")
