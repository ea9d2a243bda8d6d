"""Which dataset to build and how: :class:`DataConfig`, saved with every run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from repsim.config import Config, check_int, check_positive_int
from repsim.data.registry import build_dataset, check_dataset_options

if TYPE_CHECKING:
    from repsim.data.base import AVDataset

# the fields build() passes to every builder itself; options may not repeat them
_OWN_FIELDS = ("data_dir", "seed", "timesteps", "height", "width")
# The frame grid of the avmnist and folder datasets when a config leaves it unset; a study
# estimates a batch's memory with it (the synthetic dataset's own default is smaller).
DEFAULT_TIMESTEPS = 10
DEFAULT_SIZE = 28


@dataclass
class DataConfig(Config):
    """Which dataset to build and how; :meth:`build` passes these to its registry builder.

    ``seed`` is the dataset's seed (pairs, speakers, jitter), separate from the training
    seed, so models trained with different seeds see the same stimuli. ``options`` holds
    builder-specific keyword arguments. ``None`` sizes mean the dataset's defaults.
    """

    dataset: str = "synthetic"
    data_dir: str | None = None
    seed: int = 0
    timesteps: int | None = None
    height: int | None = None
    width: int | None = None
    options: dict = field(default_factory=dict)

    KIND = "data"

    def __post_init__(self) -> None:
        own = [name for name in self.options if name in _OWN_FIELDS]
        if own:
            raise ValueError(f"data option {own[0]!r} is a field of the data config itself: "
                             f"set {own[0]} directly, not inside options")
        for name in ("timesteps", "height", "width"):
            check_positive_int(f"data {name}", getattr(self, name), allow_none=True)
        check_int("data seed", self.seed)
        check_dataset_options(self.dataset, self.builder_options())

    def builder_options(self) -> dict:
        """The keyword arguments of the registry builder: the own fields, then ``options``."""
        return {**{name: getattr(self, name) for name in _OWN_FIELDS}, **self.options}

    def build(self) -> AVDataset:
        """Build the dataset through the registry."""
        return build_dataset(self.dataset, **self.builder_options())
