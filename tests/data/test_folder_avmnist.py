"""Real data laid out as a folder gives what avmnist gives.

A subset of the real FSDD clips (two speakers, clip index 0-14) and of the real MNIST images
(mnist-mini) is written twice: as an avmnist data folder (IDX files, FSDD-named clips) and as
a folder dataset (clips linked under ``audio/<digit>/``, images written as PNG under
``images/<digit>/``, FSDD's official split and avmnist's validation rule as
``metadata.csv``). Both builds must hold the same clips, images, features and pairs for the
same seed. The IDX files are read here with gzip and numpy, not with repsim's reader.
"""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import numpy as np
import pytest
import torch
from avdata_files import write_idx
from PIL import Image

from repsim.data import build_dataset

SPEAKERS = ("george", "theo")
CLIP_INDICES = range(15)  # 0-4 test, 5-9 val, 10-14 train: FSDD's official split + avmnist's
N_TRAIN, N_TEST = 400, 60  # MNIST images taken from mnist-mini's train and t10k files
VAL_FRACTION = 0.1  # avmnist's default: the last tenth of the train file is val


def _idx(path: Path, offset: int) -> np.ndarray:
    return np.frombuffer(gzip.decompress(path.read_bytes()), dtype=np.uint8, offset=offset)


def _mnist(folder: Path, prefix: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    images = _idx(folder / f"{prefix}-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28)[:n]
    labels = _idx(folder / f"{prefix}-labels-idx1-ubyte.gz", 8)[:n]
    return images, labels


@pytest.fixture(scope="module")
def both(shared_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("real")
    av, mine = root / "avmnist", root / "folder"
    recordings = av / "fsdd" / "recordings"
    recordings.mkdir(parents=True)
    (av / "mnist").mkdir()
    rows = []
    for digit in range(10):
        (mine / "audio" / str(digit)).mkdir(parents=True)
        (mine / "images" / str(digit)).mkdir(parents=True)
        for speaker in SPEAKERS:
            for index in CLIP_INDICES:
                name = f"{digit}_{speaker}_{index}.wav"
                source = shared_data / "fsdd" / "recordings" / name
                (recordings / name).symlink_to(source)
                (mine / "audio" / str(digit) / name).symlink_to(source)
                split = "test" if index < 5 else "val" if index < 10 else "train"
                rows.append({"file": f"audio/{digit}/{name}", "split": split})
    n_fit = N_TRAIN - round(VAL_FRACTION * N_TRAIN)
    for prefix, kind, n in (("train", "train", N_TRAIN), ("t10k", "test", N_TEST)):
        images, labels = _mnist(shared_data / "mnist-mini", prefix, n)
        write_idx(av / "mnist" / f"{prefix}-images-idx3-ubyte.gz", images, gzipped=True)
        write_idx(av / "mnist" / f"{prefix}-labels-idx1-ubyte.gz", labels, gzipped=True)
        for i, (image, label) in enumerate(zip(images, labels, strict=True)):
            file = f"images/{label}/{kind}_{i}.png"
            Image.fromarray(image, mode="L").save(mine / file)
            split = "test" if kind == "test" else "train" if i < n_fit else "val"
            rows.append({"file": file, "split": split})
    with open(mine / "metadata.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["file", "split"])
        writer.writeheader()
        writer.writerows(rows)
    return (build_dataset("avmnist", data_dir=av, seed=7, download=False),
            build_dataset("folder", data_dir=mine, seed=7))


def _folder_clip_id(avmnist_id: str) -> str:
    stem = avmnist_id.removeprefix("fsdd/")
    return f"audio/{stem.split('_')[0]}/{stem}.wav"


def _folder_image_id(avmnist_id: str, label: int) -> str:
    _, kind, index = avmnist_id.split("/")
    return f"images/{label}/{kind}_{index}.png"


def test_same_clips_and_features_in_every_split(both):
    av, mine = both
    assert mine.class_names == [str(d) for d in range(10)]
    assert (mine.features.mean, mine.features.std) == (av.features.mean, av.features.std)
    for name, expected in av.splits.items():
        got = mine.splits[name]
        assert got.clip_source == [_folder_clip_id(s) for s in expected.clip_source]
        assert torch.equal(got.clip_digit, expected.clip_digit)
        assert torch.equal(got.waveforms, expected.waveforms)
        assert torch.equal(got.clip_power, expected.clip_power)
        assert torch.equal(got.audio_clean, expected.audio_clean)


def test_same_images_in_the_same_order_within_each_digit(both):
    av, mine = both
    for name, expected in av.splits.items():
        got = mine.splits[name]
        for digit in range(10):
            want = (expected.image_digit == digit).nonzero().flatten()
            have = (got.image_digit == digit).nonzero().flatten()
            assert got.image_source and [got.image_source[i] for i in have.tolist()] == [
                _folder_image_id(expected.image_source[i], digit) for i in want.tolist()]
            assert torch.equal(got.images[have], expected.images[want])


def test_same_pairs_for_the_same_seed(both):
    av, mine = both
    for name, expected in av.splits.items():
        got = mine.splits[name]
        want = [(_folder_clip_id(expected.clip_source[a]),
                 _folder_image_id(expected.image_source[v], int(expected.image_digit[v])))
                for a, v in zip(expected.pair_audio.tolist(), expected.pair_visual.tolist(),
                                strict=True)]
        have = [(got.clip_source[a], got.image_source[v])
                for a, v in zip(got.pair_audio.tolist(), got.pair_visual.tolist(), strict=True)]
        assert len(have) == len(expected.image_source)  # one pair per image, as avmnist
        assert have == want
