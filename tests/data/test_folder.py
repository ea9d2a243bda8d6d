"""The folder dataset: layout, class names, splits, pairs, ids, metadata, and what it refuses.

References are independent of repsim's readers: clips are read back with scipy and resampled
with ``scipy.signal.resample_poly`` in the test, images with Pillow, and split and pair rules
are checked against the files the test wrote.
"""

from __future__ import annotations

import csv
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from folder_files import CLASSES, write_folder_dataset
from PIL import Image
from scipy.io import wavfile
from scipy.signal import resample_poly

from repsim.data import build_dataset
from repsim.data.__main__ import describe
from repsim.data.config import DataConfig
from repsim.data.folder import natural_key

GRID = {"timesteps": 3, "height": 8, "width": 8}


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return write_folder_dataset(tmp_path_factory.mktemp("data") / "mine")


@pytest.fixture(scope="module")
def built(folder):
    return build_dataset("folder", data_dir=folder, **GRID)


def write_metadata(root: Path, rows: list[dict]) -> None:
    with open(root / "metadata.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_classes_are_the_folder_names_and_every_file_is_in_one_split(folder, built):
    assert built.name == "folder" and built.class_names == ["cat", "dog", "owl"]
    assert built.n_classes == 3
    clips = Counter(s for split in built.splits.values() for s in split.clip_source)
    images = Counter(s for split in built.splits.values() for s in split.image_source)
    on_disk_audio = {p.relative_to(folder).as_posix() for p in folder.glob("audio/*/*.wav")}
    on_disk_images = {p.relative_to(folder).as_posix() for p in folder.glob("images/*/*.png")}
    assert set(clips) == on_disk_audio and set(clips.values()) == {1}
    assert set(images) == on_disk_images and set(images.values()) == {1}
    for split in built.splits.values():
        for sources, labels in ((split.clip_source, split.clip_digit),
                                (split.image_source, split.image_digit)):
            # the label is the class folder's position among the sorted class names
            assert [built.class_names[int(c)] for c in labels] == [s.split("/")[1]
                                                                   for s in sources]


def test_drawn_splits_put_every_class_in_every_split_by_the_fractions(built):
    for label, (name, (n_clips, n_images)) in enumerate(CLASSES.items()):
        for kind, n in (("clip", n_clips), ("image", n_images)):
            counts = {split: int((getattr(built.splits[split], f"{kind}_digit") == label).sum())
                      for split in ("train", "val", "test")}
            assert counts["test"] == max(1, round(0.2 * n)), (name, kind)
            assert counts["val"] == max(1, round(0.1 * n)), (name, kind)
            assert sum(counts.values()) == n


def test_pairs_are_congruent_and_one_per_image_in_every_split(built):
    for split in built.splits.values():
        assert len(split) == len(split.image_source)
        assert torch.equal(split.clip_digit[split.pair_audio], split.image_digit[split.pair_visual])
        uses = torch.bincount(split.pair_audio, minlength=len(split.clip_source))
        assert int(uses.max()) - int(uses.min()) <= 1  # every clip used about equally often


def test_clips_are_mono_resampled_and_cut_or_padded_like_scipy_says(folder, built):
    for split in built.splits.values():
        for row, source in enumerate(split.clip_source):
            rate, samples = wavfile.read(folder / source)
            if samples.dtype == np.uint8:
                wave = (samples.astype(np.float64) - 128) / 128
            elif samples.dtype.kind == "i":
                wave = samples.astype(np.float64) / 2.0 ** (8 * samples.dtype.itemsize - 1)
            else:
                wave = samples.astype(np.float64)
            if wave.ndim == 2:
                wave = wave.mean(axis=1)
            g = math.gcd(rate, 8000)
            wave = np.clip(resample_poly(wave, 8000 // g, rate // g), -1, 1)
            expected = np.zeros(8000)
            expected[:min(8000, len(wave))] = wave[:8000]
            np.testing.assert_allclose(split.waveforms[row].numpy(), expected, atol=2e-5)
            power = np.mean(np.square(wave[:8000]))
            assert split.clip_power[row].item() == pytest.approx(power, rel=1e-4)


def test_images_of_any_mode_become_grey_on_the_grid(tmp_path):
    root = write_folder_dataset(tmp_path / "d", classes={"a": (3, 3), "b": (3, 3)})
    # one image already on the grid in each class: no resizing, so the value is exact
    rng = np.random.default_rng(5)
    exact = {}
    for name in ("a", "b"):
        rgb = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
        Image.fromarray(rgb, mode="RGB").save(root / "images" / name / f"{name}_9.png")
        luma = rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
        exact[f"images/{name}/{name}_9.png"] = luma / 255
        np.save(root / "images" / name / f"{name}_10.npy", rgb.astype(np.float32) / 255)
        exact[f"images/{name}/{name}_10.npy"] = luma / 255
    write_metadata(root, [{"file": p.relative_to(root).as_posix(), "split": "test"
                           if p.stem.endswith(("_9", "_10", "_0")) else "val"
                           if p.stem.endswith("_1") else "train"}
                          for p in sorted(root.glob("*/*/*"))])
    dataset = build_dataset("folder", data_dir=root, **GRID)
    test = dataset.splits["test"]
    for source, expected in exact.items():
        row = test.image_source.index(source)
        np.testing.assert_allclose(test.images[row].numpy(), expected, atol=1 / 255 + 1e-6)
    assert float(dataset.splits["train"].images.min()) >= 0
    assert float(dataset.splits["train"].images.max()) <= 1


def test_ids_are_stable_and_the_order_is_natural(folder, built):
    again = build_dataset("folder", data_dir=str(folder), **GRID)
    assert again.fingerprint() == built.fingerprint()
    for split in built.splits.values():
        for sources in (split.clip_source, split.image_source):
            assert sources == sorted(sources, key=lambda s: (s.split("/")[1],
                                                             natural_key(s)))
    assert natural_key("cat_2.wav") < natural_key("cat_10.wav")
    other_seed = build_dataset("folder", data_dir=folder, seed=1, **GRID)
    assert other_seed.splits["train"].clip_source == built.splits["train"].clip_source
    other_split = build_dataset("folder", data_dir=folder, split_seed=1, **GRID)
    assert other_split.splits["test"].clip_source != built.splits["test"].clip_source


def test_metadata_splits_groups_and_explicit_pairs(tmp_path):
    root = write_folder_dataset(tmp_path / "d", classes={"a": (6, 3), "b": (6, 3)})
    rows = []
    for path in sorted(root.glob("audio/*/*.wav")):
        index = int(path.stem.split("_")[1])
        split = ("test", "val", "train")[min(index // 2, 2)]
        image = f"images/{path.parent.name}/{path.parent.name}_{min(index // 2, 2)}.png"
        rows.append({"file": path.relative_to(root).as_posix(), "split": split,
                     "speaker": f"spk{index // 2}", "pair": image})
    for path in sorted(root.glob("images/*/*.png")):
        index = int(path.stem.split("_")[1])
        rows.append({"file": path.relative_to(root).as_posix(),
                     "split": ("test", "val", "train")[index], "speaker": "", "pair": ""})
    write_metadata(root, rows)
    dataset = build_dataset("folder", data_dir=root, **GRID)
    for name, split in dataset.splits.items():
        expected = {(r["file"], r["pair"]) for r in rows if r["split"] == name and r["pair"]}
        got = {(split.clip_source[a], split.image_source[v])
               for a, v in zip(split.pair_audio.tolist(), split.pair_visual.tolist(),
                               strict=True)}
        assert got == expected
        assert len(split) == len(expected)
    test = dataset.splits["test"]
    assert dataset.splits["test"].speakers == ["spk0", "spk1", "spk2"]
    assert {test.speakers[s] for s in test.clip_speaker.tolist()} == {"spk0"}


def test_without_a_split_column_groups_are_kept_whole(tmp_path):
    root = write_folder_dataset(tmp_path / "d", classes={"a": (10, 10), "b": (10, 10)})
    rows = [{"file": p.relative_to(root).as_posix(), "group": f"g{int(p.stem.split('_')[1])}"}
            for p in sorted(root.glob("*/*/*"))]
    write_metadata(root, rows)
    dataset = build_dataset("folder", data_dir=root, **GRID)
    split_of = {}
    for name, split in dataset.splits.items():
        for source in split.clip_source + split.image_source:
            split_of.setdefault(source.split("_")[-1].split(".")[0], set()).add(name)
    assert all(len(splits) == 1 for splits in split_of.values())  # no group in two splits
    assert Counter(next(iter(s)) for s in split_of.values()) == {"train": 7, "test": 2,
                                                                 "val": 1}


def test_the_config_needs_a_data_dir_and_checks_fractions_before_reading():
    with pytest.raises(ValueError, match="needs a data_dir"):
        DataConfig(dataset="folder")
    with pytest.raises(ValueError, match="val_fraction \\+ test_fraction must be below 1"):
        DataConfig(dataset="folder", data_dir="/nowhere",
                   options={"val_fraction": 0.5, "test_fraction": 0.5})


def test_the_summary_names_the_classes_and_counts_per_class(built):
    text = describe(built)
    assert "3 classes: cat, dog, owl" in text
    rows = {tuple(line.split()[:2]): line.split()[2:] for line in text.splitlines()
            if line.strip().startswith(("train", "val", "test"))}
    for split in ("train", "val", "test"):
        clips = built.splits[split].clip_source
        expected = [sum(s.split("/")[1] == name for s in clips) for name in CLASSES]
        assert rows[(split, "clips")] == [str(len(clips))] + [str(n) for n in expected]
