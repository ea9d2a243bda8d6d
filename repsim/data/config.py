"""Which dataset to build and how: [DataConfig][repsim.data.config.DataConfig], saved with every
run."""

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
    """Which dataset to build and how; [build][repsim.data.config.DataConfig.build] passes these to
    its registry builder.

    The config is checked when it is made: the dataset's name and option names are resolved
    through the registry and its option values go through the dataset's ``check_options``, so a
    bad config fails before anything is built.

    Parameters
    ----------
    dataset
        A name of [dataset_names][repsim.data.registry.dataset_names] (``synthetic``,
        ``avmnist``, ``folder`` or a plugin's) or ``MODULE:FUNCTION``.
    data_dir
        Where the dataset's files are (``avmnist``, ``folder``); ``None``: the dataset's rule
        (``$REPSIM_DATA_DIR``, then ``data/``).
    seed
        The dataset's seed (pairs, speakers, jitter), separate from the training seed, so that
        models trained with different seeds see the same stimuli.
    timesteps
        Time steps of a sample; ``None``: the dataset's default.
    height, width
        The frame grid; ``None``: the dataset's default.
    options
        Builder-specific keyword arguments (e.g. ``train_pairs``), passed on as they are.

    Raises
    ------
    ValueError
        For an unknown dataset or option, an option that is one of the fields above, or a
        value out of range.

    Examples
    --------
    >>> from repsim.data.config import DataConfig
    >>> config = DataConfig(timesteps=4, height=8, width=8, options={"train_pairs": 200})
    >>> DataConfig.from_json(config.to_json()) == config
    True
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
        """The keyword arguments of the registry builder.

        Returns
        -------
        dict
            The own fields (but ``dataset``), then ``options``.
        """
        return {**{name: getattr(self, name) for name in _OWN_FIELDS}, **self.options}

    def build(self) -> AVDataset:
        """Build the dataset through the registry
        ([build_dataset][repsim.data.registry.build_dataset]).

        Returns
        -------
        AVDataset
            The checked dataset.
        """
        return build_dataset(self.dataset, **self.builder_options())
