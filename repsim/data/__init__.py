"""Datasets on a common audio-visual frame grid, noise, and pairing.

The names below are imported on first use (:mod:`repsim.lazy`), so that the light modules
(:mod:`~repsim.data.config`, :mod:`~repsim.data.registry`) load without torch."""

from typing import TYPE_CHECKING

from repsim.lazy import lazy_package

if TYPE_CHECKING:
    from repsim.data.base import AVDataset, AVSplit, Batch, make_batch
    from repsim.data.noise import add_white_noise
    from repsim.data.registry import build_dataset, dataset_names

__all__ = ["AVDataset", "AVSplit", "Batch", "add_white_noise", "build_dataset", "dataset_names",
           "make_batch"]

lazy_package(__name__)
