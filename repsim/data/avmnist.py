"""The ``avmnist`` dataset: MNIST handwritten digits paired with spoken digits from FSDD.

Splits (all counts come from the files):

- audio: FSDD's official split, clip index 0-4 is test; of the official training clips,
  index 5 .. 4 + ``val_clip_indices`` (5-9 by default) are val, the rest train. Speakers
  appear in every split, as in the official split.
- images: MNIST ``t10k`` is test; the last ``val_fraction`` of the MNIST ``train`` file
  (in file order) is val, the rest train.
- pairs: within each split, ``round(pairs_per_image * n_images)`` congruent pairs (same
  digit) from :func:`repsim.data.pairing.congruent_pairs`: every clip is used about equally
  often, each with a random image of its digit. Default: one pair per image.

Clips are cut or zero-padded to ``clip_seconds`` at ``sample_rate``; their features are
computed once at build time with a :class:`LogMelFrames` fitted on the train clips. Stable
source ids: ``"fsdd/3_theo_2"`` (file stem) and ``"mnist/train/123"`` / ``"mnist/test/45"``
(file and position in it). Where the files are found or downloaded to:
:mod:`repsim.data.download`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from repsim.data.base import SPLITS, AVDataset, AVSplit
from repsim.data.config import DEFAULT_SIZE, DEFAULT_TIMESTEPS
from repsim.data.download import locate_avmnist, mnist_file
from repsim.data.features import LogMelFrames, clip_arrays, resize_images
from repsim.data.io import read_idx, read_wav
from repsim.data.pairing import check_pairs_per_image, congruent_pairs

FSDD_TEST_INDICES = 5  # the official split: clips with index 0-4 are test
_CLIP_NAME = re.compile(r"(?P<digit>\d)_(?P<speaker>[A-Za-z0-9]+)_(?P<index>\d+)\.wav")


@dataclass
class FsddClips:
    """Spoken-digit clips read from a recordings folder, sorted by (digit, speaker, index)."""

    waveforms: list[np.ndarray]  # float32 mono at the requested sample rate, natural length
    digit: np.ndarray  # (n,) int64
    speaker: list[str]
    index: np.ndarray  # (n,) int64, the clip's number within its digit and speaker
    stem: list[str]  # file name without .wav, e.g. "3_theo_2"


@dataclass
class MnistSet:
    """One MNIST file pair: images (n, h, w) uint8 and their digit labels."""

    images: np.ndarray
    labels: np.ndarray  # (n,) int64


def read_fsdd(recordings_dir: str | Path, sample_rate: int) -> FsddClips:
    """Read every ``<digit>_<speaker>_<index>.wav`` in the folder (other files are ignored).

    A ``.wav`` whose name does not follow that pattern, or that is not readable audio,
    raises ValueError naming it.
    """
    entries = []
    for path in Path(recordings_dir).glob("*.wav"):
        match = _CLIP_NAME.fullmatch(path.name)
        if match is None:
            raise ValueError(f"{path} does not follow FSDD's <digit>_<speaker>_<index>.wav "
                             f"naming, so its digit is unknown")
        entries.append((int(match["digit"]), match["speaker"], int(match["index"]), path))
    if not entries:
        raise FileNotFoundError(f"no FSDD clips (*.wav) in {recordings_dir}")
    entries.sort(key=lambda entry: entry[:3])
    return FsddClips(
        waveforms=[read_wav(path, sample_rate) for *_, path in entries],
        digit=np.array([entry[0] for entry in entries], dtype=np.int64),
        speaker=[entry[1] for entry in entries],
        index=np.array([entry[2] for entry in entries], dtype=np.int64),
        stem=[entry[3].stem for entry in entries],
    )


def read_mnist(mnist_dir: str | Path, prefix: str) -> MnistSet:
    """Read ``<prefix>-images-idx3-ubyte[.gz]`` and its labels (``prefix``: train or t10k)."""
    mnist_dir = Path(mnist_dir)
    paths = {}
    for kind, ndim in (("images", 3), ("labels", 1)):
        name = f"{prefix}-{kind}-idx{ndim}-ubyte.gz"
        path = mnist_file(mnist_dir, name)
        if path is None:
            raise FileNotFoundError(f"MNIST file {name} (or without .gz) not found in "
                                    f"{mnist_dir}")
        paths[kind] = path
    images, labels = read_idx(paths["images"]), read_idx(paths["labels"])
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(f"{paths['images']} holds {images.dtype} data of shape {images.shape}, "
                         f"not uint8 images (n, height, width)")
    if labels.ndim != 1 or len(labels) != len(images):
        raise ValueError(f"{paths['labels']} holds {labels.shape} labels for the "
                         f"{len(images)} images of {paths['images']}")
    if labels.size and not 0 <= labels.min() <= labels.max() <= 9:
        raise ValueError(f"{paths['labels']} has labels outside 0-9")
    return MnistSet(images=images, labels=labels.astype(np.int64))


def _clip_split(index: np.ndarray, val_clip_indices: int) -> np.ndarray:
    """Split name per clip from its FSDD index."""
    names = np.full(len(index), "train")
    names[index < FSDD_TEST_INDICES + val_clip_indices] = "val"
    names[index < FSDD_TEST_INDICES] = "test"
    return names


def check_options(*, val_clip_indices: int = 5, val_fraction: float = 0.1,
                  pairs_per_image: float = 1.0, **_: Any) -> None:
    """ValueError for a split or pairing option :func:`build` would refuse, before any file
    is read (the option names themselves are checked by the registry)."""
    if val_clip_indices < 1:
        raise ValueError(f"val_clip_indices must be at least 1, got {val_clip_indices}")
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    check_pairs_per_image(pairs_per_image)


def build(
    *,
    data_dir: str | Path | None = None,
    seed: int = 0,
    timesteps: int | None = None,
    height: int | None = None,
    width: int | None = None,
    download: bool = True,
    sample_rate: int = 8000,
    clip_seconds: float = 1.0,
    n_fft: int = 256,
    val_clip_indices: int = 5,
    val_fraction: float = 0.1,
    pairs_per_image: float = 1.0,
) -> AVDataset:
    """Build avmnist (see the module docstring for splits, pairs and ids).

    ``timesteps``/``height``/``width`` default to 10 x 28 x 28; ``data_dir``/``download``
    decide where the files come from (:func:`repsim.data.download.locate_avmnist`). The
    result is deterministic for a ``seed`` (which only draws the pairs).
    """
    timesteps = DEFAULT_TIMESTEPS if timesteps is None else int(timesteps)
    height = DEFAULT_SIZE if height is None else int(height)
    width = DEFAULT_SIZE if width is None else int(width)
    check_options(val_clip_indices=val_clip_indices, val_fraction=val_fraction,
                  pairs_per_image=pairs_per_image)
    n_samples = round(clip_seconds * sample_rate)
    features = LogMelFrames(sample_rate=sample_rate, n_samples=n_samples, timesteps=timesteps,
                            height=height, width=width, n_fft=n_fft)

    files = locate_avmnist(data_dir, download=download)
    clips = read_fsdd(files.recordings_dir, sample_rate)
    mnist_train = read_mnist(files.mnist_dir, "train")
    mnist_test = read_mnist(files.mnist_dir, "t10k")

    waveforms, power = clip_arrays(clips.waveforms, n_samples)
    speakers = sorted(set(clips.speaker))
    speaker_id = np.array([speakers.index(s) for s in clips.speaker], dtype=np.int64)
    clip_split = _clip_split(clips.index, val_clip_indices)

    n_val = round(val_fraction * len(mnist_train.images))
    n_fit = len(mnist_train.images) - n_val
    image_sets = {
        "train": (mnist_train, np.arange(n_fit), "mnist/train"),
        "val": (mnist_train, np.arange(n_fit, len(mnist_train.images)), "mnist/train"),
        "test": (mnist_test, np.arange(len(mnist_test.images)), "mnist/test"),
    }
    for name in SPLITS:
        if not (clip_split == name).any() or not len(image_sets[name][1]):
            raise ValueError(f"the {name} split of avmnist would be empty: "
                             f"{int((clip_split == name).sum())} clips from "
                             f"{files.recordings_dir}, {len(image_sets[name][1])} images from "
                             f"{files.mnist_dir}")

    features, audio_clean = features.fit_transform(waveforms,
                                                   torch.from_numpy(clip_split == "train"))
    rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(len(SPLITS))]
    splits = {}
    for name, rng in zip(SPLITS, rngs, strict=True):
        keep = np.flatnonzero(clip_split == name)
        mnist, rows, prefix = image_sets[name]
        image_digit = mnist.labels[rows]
        n_pairs = max(1, round(pairs_per_image * len(rows)))
        pair_audio, pair_visual = congruent_pairs(clips.digit[keep], image_digit, n_pairs, rng)
        splits[name] = AVSplit(
            name=name,
            waveforms=waveforms[torch.from_numpy(keep)],
            clip_power=power[torch.from_numpy(keep)],
            clip_digit=torch.from_numpy(clips.digit[keep]),
            clip_speaker=torch.from_numpy(speaker_id[keep]),
            clip_source=[f"fsdd/{clips.stem[i]}" for i in keep],
            audio_clean=audio_clean[torch.from_numpy(keep)],
            images=resize_images(mnist.images[rows].astype(np.float32) / 255.0, height, width),
            image_digit=torch.from_numpy(image_digit),
            image_source=[f"{prefix}/{i}" for i in rows],
            pair_audio=torch.from_numpy(pair_audio),
            pair_visual=torch.from_numpy(pair_visual),
            speakers=speakers,
        )
    config = {
        "data_dir": None if data_dir is None else str(data_dir), "seed": seed,
        "timesteps": timesteps, "height": height, "width": width, "download": download,
        "sample_rate": sample_rate, "clip_seconds": clip_seconds, "n_fft": n_fft,
        "val_clip_indices": val_clip_indices, "val_fraction": val_fraction,
        "pairs_per_image": pairs_per_image,
    }
    return AVDataset(name="avmnist", splits=splits, features=features,
                     sample_rate=sample_rate, config=config)
