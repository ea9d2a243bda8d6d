"""The ``folder`` dataset: a user's own audio clips and images, one sub-folder per class.

Layout of ``data_dir`` (documented for users in ``docs/datasets.md``)::

    DIR/audio/<class>/*.wav                  any rate, channels, int or float PCM
    DIR/images/<class>/*.png|*.jpg|*.npy     any size and mode
    DIR/metadata.csv                         optional: file, split, group (or speaker), pair

Classes are the sub-folder names, sorted naturally (``2`` before ``10``); every class needs
both audio and images. Clips are read mono, resampled to ``sample_rate`` and cut or
zero-padded to ``clip_seconds``; images are made grey and resized to the frame grid.

``metadata.csv`` has one row per file (``file``: the path relative to DIR, e.g.
``audio/dog/bark_1.wav``) and any of these columns:

- ``split`` (train, val or test): then every file needs one; without it splits are drawn
  with ``split_seed``, whole groups at a time (``test_fraction``, ``val_fraction`` of them);
- ``group`` (or ``speaker``): files that must stay in one split (a speaker, a recording
  session); a clip's group is also its speaker in the activation files. Without a group a
  file is its own group, and drawn splits are then stratified by modality and class;
- ``pair``: on an audio row, the image (path relative to DIR) it is paired with. With any
  pair given, the pairs are exactly those; without, each split gets
  ``round(pairs_per_image * images)`` congruent pairs drawn with ``seed`` as avmnist does.

Stable source ids are the paths relative to DIR (``audio/dog/bark_1.wav``), so stimulus ids
stay the same across models and machines. Every problem with the folder raises one
ValueError (or FileNotFoundError) that names the file or folder.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from repsim.data.base import SPLITS, AVDataset, AVSplit
from repsim.data.config import DEFAULT_SIZE, DEFAULT_TIMESTEPS
from repsim.data.features import LogMelFrames, clip_arrays, resize_images
from repsim.data.io import (
    IMAGE_SUFFIXES,
    MAX_WAV_RATE,
    MAX_WAV_SECONDS,
    read_image,
    read_wav,
)
from repsim.data.pairing import check_pairs_per_image, congruent_pairs

AUDIO_FOLDER = "audio"
IMAGE_FOLDER = "images"
METADATA_FILE = "metadata.csv"
AUDIO_SUFFIXES = (".wav",)
GROUP_COLUMNS = ("group", "speaker")  # two names for one column: use one of them
METADATA_COLUMNS = ("file", "split", *GROUP_COLUMNS, "pair")
NO_SPEAKER = "none"  # the speaker of a clip without a group


@dataclass
class _File:
    """One data file: its id (path relative to the root), modality, class index and path."""

    source: str
    modality: str  # AUDIO_FOLDER or IMAGE_FOLDER
    label: int
    path: Path


@dataclass
class _Metadata:
    """What ``metadata.csv`` says per file id (empty dicts when a column is absent)."""

    split: dict[str, str]
    group: dict[str, str]
    pair: dict[str, str]
    has_split: bool


def natural_key(text: str) -> list:
    """Sort key that orders digit runs by value: ``clip_2`` before ``clip_10``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def check_options(*, data_dir: str | Path | None = None, val_fraction: float = 0.1,
                  test_fraction: float = 0.2, pairs_per_image: float = 1.0,
                  clip_seconds: float = 1.0, sample_rate: int = 8000, **_: Any) -> None:
    """ValueError for options :func:`build` would refuse, before any file is read."""
    if data_dir is None:
        raise ValueError("the folder dataset needs a data_dir (--data-dir DIR): the folder "
                         "holding audio/<class>/*.wav and images/<class>/*.png")
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0 < value < 1:
            raise ValueError(f"{name} must be between 0 and 1, got {value}")
    if val_fraction + test_fraction >= 1:
        raise ValueError(f"val_fraction + test_fraction must be below 1, got "
                         f"{val_fraction + test_fraction}")
    check_pairs_per_image(pairs_per_image)
    if not 0 < clip_seconds <= MAX_WAV_SECONDS or not 0 < sample_rate <= MAX_WAV_RATE:
        raise ValueError(f"clip_seconds and sample_rate must be positive and at most "
                         f"{MAX_WAV_SECONDS:g} s and {MAX_WAV_RATE} Hz, got {clip_seconds} "
                         f"and {sample_rate}")


def _class_folders(root: Path, modality: str, suffixes: tuple[str, ...]) -> dict[str, list[Path]]:
    """``{class: files}`` of ``root/modality`` (hidden files ignored, natural order)."""
    folder = root / modality
    if not folder.is_dir():
        return {}
    classes: dict[str, list[Path]] = {}
    for entry in sorted(folder.iterdir(), key=lambda p: natural_key(p.name)):
        if entry.name.startswith("."):
            continue
        if not entry.is_dir():
            raise ValueError(f"{entry} is not in a class folder: put it in "
                             f"{folder}/<class>/")
        files = sorted((p for p in entry.iterdir() if not p.name.startswith(".")),
                       key=lambda p: natural_key(p.name))
        for path in files:
            if not path.is_file() or path.suffix.lower() not in suffixes:
                raise ValueError(f"{path} is not a {' or '.join(suffixes)} file, the kinds "
                                 f"{folder} may hold")
        if not files:
            raise ValueError(f"{entry} is an empty class folder")
        classes[entry.name] = files
    return classes


def _scan(root: Path) -> tuple[list[str], list[_File]]:
    """The class names and every data file under ``root``, clips first, each by class."""
    if not root.is_dir():
        raise FileNotFoundError(f"no such folder: {root} (the folder dataset's data_dir)")
    audio = _class_folders(root, AUDIO_FOLDER, AUDIO_SUFFIXES)
    images = _class_folders(root, IMAGE_FOLDER, IMAGE_SUFFIXES)
    if not audio and not images:
        raise ValueError(f"{root} holds no dataset: expected {AUDIO_FOLDER}/<class>/*.wav and "
                         f"{IMAGE_FOLDER}/<class>/*.png|*.jpg|*.npy")
    for have, lack in ((audio, images), (images, audio)):
        for name in have:
            if name not in lack:
                kind, other = ((AUDIO_FOLDER, IMAGE_FOLDER) if have is audio
                               else (IMAGE_FOLDER, AUDIO_FOLDER))
                raise ValueError(f"{root / kind / name} has files but {root / other / name} "
                                 f"is missing: every class needs audio and images")
    names = sorted(audio, key=natural_key)
    if len(names) < 2:
        raise ValueError(f"{root} has {len(names)} class ({', '.join(names)}); a dataset needs "
                         f"at least two")
    files = [_File(path.relative_to(root).as_posix(), modality, label, path)
             for modality, by_class in ((AUDIO_FOLDER, audio), (IMAGE_FOLDER, images))
             for label, name in enumerate(names) for path in by_class[name]]
    return names, files


def _read_metadata(root: Path, files: list[_File]) -> _Metadata:
    """Parse and check ``root/metadata.csv`` (an empty record when there is none)."""
    path = root / METADATA_FILE
    if not path.exists():
        return _Metadata({}, {}, {}, has_split=False)
    try:
        return _parse_metadata(root, path, files)
    except (UnicodeDecodeError, csv.Error) as error:
        raise ValueError(f"{path} is not a readable UTF-8 CSV file ({error})") from error


def _parse_metadata(root: Path, path: Path, files: list[_File]) -> _Metadata:
    """The body of :func:`_read_metadata`: every column and row checked."""
    known = {item.source: item for item in files}
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = [name.strip() for name in reader.fieldnames or []]
        unknown = [name for name in columns if name not in METADATA_COLUMNS]
        if unknown:
            raise ValueError(f"{path} has unknown column(s) {', '.join(unknown)}; its columns "
                             f"may be: {', '.join(METADATA_COLUMNS)}")
        if "file" not in columns:
            raise ValueError(f"{path} has no 'file' column (paths relative to {root})")
        if all(name in columns for name in GROUP_COLUMNS):
            raise ValueError(f"{path} has both a 'group' and a 'speaker' column: they are "
                             f"one column under two names, keep one")
        group_column = next((name for name in GROUP_COLUMNS if name in columns), None)
        meta = _Metadata({}, {}, {}, has_split="split" in columns)
        seen: set[str] = set()
        for line, raw in enumerate(reader, start=2):
            row = {key.strip(): (value or "").strip() for key, value in raw.items() if key}
            source = row["file"].replace("\\", "/")
            where = f"{path} line {line}"
            if source not in known:
                raise ValueError(f"{where}: no data file {source!r} under {root / AUDIO_FOLDER}"
                                 f" or {root / IMAGE_FOLDER}")
            if source in seen:
                raise ValueError(f"{where}: {source} is listed twice")
            seen.add(source)
            split = row.get("split", "")
            if split:
                if split not in SPLITS:
                    raise ValueError(f"{where}: split {split!r} is not one of "
                                     f"{', '.join(SPLITS)}")
                meta.split[source] = split
            if group_column and row[group_column]:
                meta.group[source] = row[group_column]
            if row.get("pair"):
                if known[source].modality != AUDIO_FOLDER:
                    raise ValueError(f"{where}: a pair is named on the audio file's row, not "
                                     f"on an image's ({source})")
                meta.pair[source] = row["pair"].replace("\\", "/")
    if meta.has_split:
        missing = [item.source for item in files if item.source not in meta.split]
        if missing:
            raise ValueError(f"{path} gives splits but not for {root / missing[0]} "
                             f"({len(missing)} file(s) without one)")
    return meta


def _draw_splits(files: list[_File], groups: dict[str, str], meta: _Metadata,
                 val_fraction: float, test_fraction: float, split_seed: int) -> dict[str, str]:
    """Split per file: from the metadata, or drawn a group at a time with ``split_seed``."""
    if meta.has_split:
        return dict(meta.split)
    # Grouped files move with their group; an ungrouped file is its own group, drawn among
    # the files of its modality and class so that every class lands in every split.
    buckets: dict[tuple, set[str]] = {}
    for item in files:
        key = ("group",) if item.source in meta.group else (item.modality, item.label)
        buckets.setdefault(key, set()).add(groups[item.source])
    rng = np.random.default_rng(split_seed)
    split_of_group: dict[str, str] = {}
    for key in sorted(buckets, key=str):
        units = sorted(buckets[key], key=natural_key)
        order = [units[i] for i in rng.permutation(len(units))]
        n = len(order)
        n_test = max(1, round(test_fraction * n)) if n >= 3 else 0
        n_val = max(1, round(val_fraction * n)) if n >= 3 else 0
        for i, unit in enumerate(order):
            split_of_group[unit] = ("test" if i < n_test else "val" if i < n_test + n_val
                                    else "train")
    return {item.source: split_of_group[groups[item.source]] for item in files}


def _check_groups(root: Path, splits: dict[str, str], meta: _Metadata) -> None:
    """ValueError if a named group has files in two splits."""
    where: dict[str, dict[str, str]] = {}
    for source, group in meta.group.items():
        where.setdefault(group, {}).setdefault(splits[source], source)
    for group, by_split in where.items():
        if len(by_split) > 1:
            examples = ", ".join(f"{source} in {split}" for split, source in by_split.items())
            raise ValueError(f"{root / METADATA_FILE}: group {group!r} is in more than one "
                             f"split ({examples}); a group must stay in one split")


def _pairs(root: Path, split: str, clips: list[_File], images: list[_File], meta: _Metadata,
           names: list[str], pairs_per_image: float,
           rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The split's pairs as (clip index, image index) arrays."""
    if meta.pair:
        image_index = {item.source: i for i, item in enumerate(images)}
        audio, visual = [], []
        for a, clip in enumerate(clips):
            partner = meta.pair.get(clip.source)
            if partner is None:
                continue
            if partner not in image_index:
                raise ValueError(f"{root / METADATA_FILE}: {clip.source} is paired with "
                                 f"{partner!r}, which is not an image of its {split} split")
            v = image_index[partner]
            if images[v].label != clip.label:
                raise ValueError(f"{root / METADATA_FILE}: {clip.source} ({names[clip.label]}) "
                                 f"is paired with {partner} ({names[images[v].label]}); "
                                 f"pairs must be of one class")
            audio.append(a)
            visual.append(v)
        if not audio:
            raise ValueError(f"{root / METADATA_FILE} names pairs, but none in the {split} "
                             f"split")
        return np.array(audio, dtype=np.int64), np.array(visual, dtype=np.int64)
    clip_label = np.array([item.label for item in clips], dtype=np.int64)
    image_label = np.array([item.label for item in images], dtype=np.int64)
    lacking = sorted(set(clip_label.tolist()) - set(image_label.tolist()))
    if lacking:
        raise ValueError(f"the {split} split of {root} has audio of class "
                         f"{names[lacking[0]]!r} but no image of it: move files or give "
                         f"splits in {METADATA_FILE}")
    n_pairs = max(1, round(pairs_per_image * len(images)))
    return congruent_pairs(clip_label, image_label, n_pairs, rng)


def build(
    *,
    data_dir: str | Path | None = None,
    seed: int = 0,
    timesteps: int | None = None,
    height: int | None = None,
    width: int | None = None,
    sample_rate: int = 8000,
    clip_seconds: float = 1.0,
    n_fft: int = 256,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    split_seed: int = 0,
    pairs_per_image: float = 1.0,
) -> AVDataset:
    """Build the folder dataset of ``data_dir`` (layout and rules: the module docstring).

    ``timesteps``/``height``/``width`` default to 10 x 28 x 28. ``seed`` draws the pairs,
    ``split_seed`` the splits when ``metadata.csv`` gives none. Every file is read and
    checked before anything is returned.
    """
    check_options(data_dir=data_dir, val_fraction=val_fraction, test_fraction=test_fraction,
                  pairs_per_image=pairs_per_image, clip_seconds=clip_seconds,
                  sample_rate=sample_rate)
    timesteps = DEFAULT_TIMESTEPS if timesteps is None else int(timesteps)
    height = DEFAULT_SIZE if height is None else int(height)
    width = DEFAULT_SIZE if width is None else int(width)
    root = Path(data_dir)  # type: ignore[arg-type]  # check_options refused None
    names, files = _scan(root)
    meta = _read_metadata(root, files)
    groups = {item.source: meta.group.get(item.source, item.source) for item in files}
    splits = _draw_splits(files, groups, meta, val_fraction, test_fraction, split_seed)
    _check_groups(root, splits, meta)
    members = {name: ([f for f in files if f.modality == AUDIO_FOLDER and splits[f.source]
                       == name],
                      [f for f in files if f.modality == IMAGE_FOLDER and splits[f.source]
                       == name]) for name in SPLITS}
    for name, (clips, images) in members.items():
        if not clips or not images:
            raise ValueError(f"the {name} split of {root} would be empty: {len(clips)} clips, "
                             f"{len(images)} images (give splits in {METADATA_FILE} or add "
                             f"files)")

    n_samples = round(clip_seconds * sample_rate)
    features = LogMelFrames(sample_rate=sample_rate, n_samples=n_samples, timesteps=timesteps,
                            height=height, width=width, n_fft=n_fft)
    # Clips in file order (by class, then name), as avmnist orders FSDD: the same clips give
    # the same features to the last bit.
    all_clips = [item for item in files if item.modality == AUDIO_FOLDER]
    waveforms, power = clip_arrays([read_wav(item.path, sample_rate) for item in all_clips],
                                   n_samples)
    clip_split = np.array([splits[item.source] for item in all_clips])
    features, audio_clean = features.fit_transform(waveforms,
                                                   torch.from_numpy(clip_split == "train"))
    speakers = sorted({meta.group.get(item.source, NO_SPEAKER) for item in all_clips},
                      key=natural_key)

    rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(len(SPLITS))]
    built = {}
    for name, rng in zip(SPLITS, rngs, strict=True):
        clips, images = members[name]
        rows = torch.from_numpy(np.flatnonzero(clip_split == name))
        pair_audio, pair_visual = _pairs(root, name, clips, images, meta, names,
                                         pairs_per_image, rng)
        grey = [resize_images(read_image(item.path)[None], height, width)[0] for item in images]
        built[name] = AVSplit(
            name=name,
            waveforms=waveforms[rows],
            clip_power=power[rows],
            clip_digit=torch.tensor([item.label for item in clips], dtype=torch.int64),
            clip_speaker=torch.tensor([speakers.index(meta.group.get(item.source, NO_SPEAKER))
                                       for item in clips], dtype=torch.int64),
            clip_source=[item.source for item in clips],
            audio_clean=audio_clean[rows],
            images=torch.stack(grey),
            image_digit=torch.tensor([item.label for item in images], dtype=torch.int64),
            image_source=[item.source for item in images],
            pair_audio=torch.from_numpy(pair_audio),
            pair_visual=torch.from_numpy(pair_visual),
            speakers=speakers,
        )
    config = {
        "data_dir": str(data_dir), "seed": seed, "timesteps": timesteps, "height": height,
        "width": width, "sample_rate": sample_rate, "clip_seconds": clip_seconds,
        "n_fft": n_fft, "val_fraction": val_fraction, "test_fraction": test_fraction,
        "split_seed": split_seed, "pairs_per_image": pairs_per_image,
    }
    return AVDataset(name="folder", splits=built, features=features, sample_rate=sample_rate,
                     config=config, class_names=names)
