"""Datasets on a common audio-visual frame grid, noise, and pairing."""

from repsim.data.base import AVDataset, AVSplit, Batch, make_batch
from repsim.data.noise import add_white_noise
from repsim.data.registry import build_dataset, dataset_names

__all__ = ["AVDataset", "AVSplit", "Batch", "add_white_noise", "build_dataset", "dataset_names",
           "make_batch"]
