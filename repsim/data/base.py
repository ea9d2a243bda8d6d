"""The container every dataset builder returns, and the step that turns it into model inputs.

A dataset is held as clean sources (padded waveforms, images on the frame grid, cached
clean audio features) plus index pairs. Noise and modality removal are applied per batch
by [make_batch][repsim.data.base.make_batch], so features are computed once per clip and
noise is drawn on the fly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Protocol

import torch

from repsim.conditions import MODALITIES
from repsim.data.noise import Generators, add_white_noise

SPLITS = ("train", "val", "test")  # every dataset's splits, in this order


class AudioFeatures(Protocol):
    """Turns waveforms ``(B, n_samples)`` into audio frames ``(B, T, 1, H, W)`` (float32): the
    audio transform a dataset carries (e.g. [LogMelFrames][repsim.data.features.LogMelFrames]).
    """

    @property
    def timesteps(self) -> int:
        """T, the time steps of the frames it makes."""

    @property
    def height(self) -> int:
        """H, the frames' height (e.g. mel bands)."""

    @property
    def width(self) -> int:
        """W, the frames' width (e.g. spectrogram frames per step)."""

    def __call__(self, waveforms: torch.Tensor) -> torch.Tensor: ...


@dataclass
class AVSplit:
    """One split (train, val or test): clean sources and the congruent pairs drawn from them.

    Clips and images are indexed separately; a pair is ``(pair_audio[i], pair_visual[i])``.

    Parameters
    ----------
    name
        ``"train"``, ``"val"`` or ``"test"``.
    waveforms
        ``(n_clips, n_samples)`` float32, clean, padded or cropped.
    clip_power
        ``(n_clips,)`` float32: the mean square of each clip before padding (the signal power
        that audio SNRs refer to).
    clip_digit
        ``(n_clips,)`` int64: the digit, or the class index.
    clip_speaker
        ``(n_clips,)`` int64: an index into ``speakers``.
    clip_source
        A stable id per clip (e.g. ``"fsdd/3_theo_2"``); with ``image_source`` it makes the
        stimulus ids, so that two models see the same stimulus under the same id.
    audio_clean
        ``(n_clips, T, 1, H, W)`` float32: the features of the clean clips.
    images
        ``(n_images, H, W)`` float32 in [0, 1], on the frame grid.
    image_digit
        ``(n_images,)`` int64: the digit, or the class index.
    image_source
        A stable id per image.
    pair_audio
        ``(n_pairs,)`` int64: each pair's clip.
    pair_visual
        ``(n_pairs,)`` int64: each pair's image.
    speakers
        The speakers' names.

    Raises
    ------
    ValueError
        Naming the split, when the per-clip or per-image fields disagree in length, or the two
        pair indices do.
    """

    name: str
    waveforms: torch.Tensor  # (n_clips, n_samples) float32, clean, padded/cropped
    clip_power: torch.Tensor  # (n_clips,) float32, mean square of the clip before padding
    clip_digit: torch.Tensor  # (n_clips,) int64: the digit, or the class index
    clip_speaker: torch.Tensor  # (n_clips,) int64, index into `speakers`
    clip_source: list[str]
    audio_clean: torch.Tensor  # (n_clips, T, 1, H, W) float32, features of the clean clips
    images: torch.Tensor  # (n_images, H, W) float32 in [0, 1], on the frame grid
    image_digit: torch.Tensor  # (n_images,) int64: the digit, or the class index
    image_source: list[str]
    pair_audio: torch.Tensor  # (n_pairs,) int64 index into clips
    pair_visual: torch.Tensor  # (n_pairs,) int64 index into images
    speakers: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        n_clips, n_images = len(self.waveforms), len(self.images)
        for name in ("clip_power", "clip_digit", "clip_speaker", "audio_clean"):
            if len(getattr(self, name)) != n_clips:
                raise ValueError(f"{self.name} split: {name} has {len(getattr(self, name))} "
                                 f"rows but there are {n_clips} clips")
        if len(self.clip_source) != n_clips or len(self.image_source) != n_images:
            raise ValueError(f"{self.name} split: source id lists do not match the data")
        if len(self.image_digit) != n_images:
            raise ValueError(f"{self.name} split: image_digit does not match images")
        if len(self.pair_audio) != len(self.pair_visual):
            raise ValueError(f"{self.name} split: pair_audio and pair_visual differ in length")

    def __len__(self) -> int:
        return len(self.pair_audio)

    def to(self, device: torch.device | str) -> AVSplit:
        """A copy with every tensor on ``device`` (the splits are small enough to live there).

        Parameters
        ----------
        device
            The device.

        Returns
        -------
        AVSplit
        """
        moved = {f.name: getattr(self, f.name) for f in fields(self)}
        for key, value in moved.items():
            if isinstance(value, torch.Tensor):
                moved[key] = value.to(device)
        return AVSplit(**moved)

    def stimulus_ids(self, audio_index: torch.Tensor, visual_index: torch.Tensor) -> list[str]:
        """The stable ids of pairs.

        Parameters
        ----------
        audio_index
            The pairs' clips.
        visual_index
            The pairs' images.

        Returns
        -------
        list of str
            ``"<clip source>|<image source>"`` per pair.
        """
        return [f"{self.clip_source[a]}|{self.image_source[v]}"
                for a, v in zip(audio_index.tolist(), visual_index.tolist(), strict=True)]


DIGIT_CLASSES = 10  # the digit datasets' classes: the digits 0-9, labelled by themselves


@dataclass
class AVDataset:
    """A built dataset: its splits, the audio feature transform, and where it came from.

    Parameters
    ----------
    name
        The dataset's name.
    splits
        ``"train"``, ``"val"`` and ``"test"`` splits.
    features
        The audio transform from waveforms to frames.
    sample_rate
        The waveforms' sample rate in Hz.
    config
        The builder's keyword arguments (JSON-serialisable).
    class_names
        The names of the classes of a dataset whose labels are not the digits 0-9: label ``i``
        is ``class_names[i]``. ``None`` (the digit datasets) means the labels are the digits
        themselves, stored as ``audio_digit``/``visual_digit``.

    Raises
    ------
    ValueError
        For fewer than two or repeated class names, or labels outside their indices.
    """

    name: str
    splits: dict[str, AVSplit]
    features: AudioFeatures
    sample_rate: int
    config: dict  # the builder's keyword arguments, JSON-serialisable
    class_names: list[str] | None = None

    def __post_init__(self) -> None:
        if self.class_names is None:
            return
        if len(self.class_names) < 2 or len(set(self.class_names)) != len(self.class_names):
            raise ValueError(f"dataset {self.name}: class_names must be two or more distinct "
                             f"names, got {self.class_names}")
        for split in self.splits.values():
            for labels in (split.clip_digit, split.image_digit):
                if len(labels) and not 0 <= int(labels.min()) <= int(labels.max()) < \
                        len(self.class_names):
                    raise ValueError(f"dataset {self.name}: the {split.name} split has labels "
                                     f"outside 0..{len(self.class_names) - 1}, the indices "
                                     f"of its {len(self.class_names)} class names")

    @property
    def n_classes(self) -> int:
        """How many classes the readout needs: the class names', or 10 digits."""
        return DIGIT_CLASSES if self.class_names is None else len(self.class_names)

    @property
    def label_names(self) -> list[str]:
        """The name of every label: the class names, or ``"0"`` .. ``"9"``."""
        return ([str(d) for d in range(DIGIT_CLASSES)] if self.class_names is None
                else list(self.class_names))

    @property
    def timesteps(self) -> int:
        """T, the time steps of a sample (its features')."""
        return self.features.timesteps

    @property
    def frame_shape(self) -> tuple[int, int]:
        """``(H, W)``, the frame grid."""
        return self.features.height, self.features.width

    def fingerprint(self) -> str:
        """A digest of every label, id and value, with a sketch that tells last-bit
        differences (another CPU's maths) from changed data (see
        [fingerprint][repsim.data.fingerprint.fingerprint];
        ``repsim.data.fingerprint.data_difference`` compares two).

        Returns
        -------
        str
        """
        from repsim.data.fingerprint import fingerprint

        return fingerprint(self)


def check_dataset(dataset: AVDataset) -> None:
    """Refuse a built dataset that training or extraction could not use.

    One NaN sample would make every feature computed with it NaN, and training would then blame
    its learning rate; an index past the end would fail deep inside a batch.

    Parameters
    ----------
    dataset
        The dataset a builder returned.

    Raises
    ------
    ValueError
        In one line naming the split: a missing split, pairs that index past a split's clips or
        images, NaN or infinite values, images outside [0, 1], frames off the dataset's grid.
    """
    missing = [name for name in SPLITS if name not in dataset.splits]
    if missing:
        raise ValueError(f"it has no {' or '.join(missing)} split; a dataset has a train, a "
                         f"val and a test split")
    grid = (dataset.timesteps, 1, *dataset.frame_shape)
    for split in dataset.splits.values():
        where = f"the {split.name} split"
        for pairs, items, count in ((split.pair_audio, "clip", len(split.waveforms)),
                                    (split.pair_visual, "image", len(split.images))):
            outside = pairs[(pairs < 0) | (pairs >= count)]
            if len(outside):
                raise ValueError(f"{where} pairs {items} {int(outside[0])}, but it has "
                                 f"{count} {items}s")
        for name in ("waveforms", "clip_power", "audio_clean", "images"):
            if not bool(torch.isfinite(getattr(split, name)).all()):
                raise ValueError(f"{where}'s {name} hold NaN or infinite values")
        if len(split.images) and not 0 <= float(split.images.min()) <= float(
                split.images.max()) <= 1:
            raise ValueError(f"{where}'s images lie outside [0, 1] (from "
                             f"{float(split.images.min()):g} to {float(split.images.max()):g})")
        if tuple(split.images.shape[1:]) != dataset.frame_shape:
            raise ValueError(f"{where}'s images are {' x '.join(map(str, split.images.shape[1:]))}"
                             f", but the frames are {dataset.frame_shape[0]} x "
                             f"{dataset.frame_shape[1]}")
        if tuple(split.audio_clean.shape[1:]) != grid:
            raise ValueError(f"{where}'s audio frames have shape "
                             f"{tuple(split.audio_clean.shape[1:])}, not (T, 1, H, W) = {grid}")


@dataclass
class Batch:
    """Model inputs and labels for a batch of pairs.

    Parameters
    ----------
    audio
        ``(B, T, 1, H, W)`` audio frames.
    visual
        ``(B, T, 1, H, W)`` visual frames.
    audio_digit
        ``(B,)`` the heard digit (or class).
    visual_digit
        ``(B,)`` the seen digit (or class).
    audio_index
        ``(B,)`` clip indices into the split.
    visual_index
        ``(B,)`` image indices into the split.
    """

    audio: torch.Tensor  # (B, T, 1, H, W)
    visual: torch.Tensor  # (B, T, 1, H, W)
    audio_digit: torch.Tensor  # (B,)
    visual_digit: torch.Tensor  # (B,)
    audio_index: torch.Tensor  # (B,) clip indices into the split
    visual_index: torch.Tensor  # (B,) image indices into the split

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        """A copy with every tensor on ``device``.

        Parameters
        ----------
        device
            The device.
        non_blocking
            Copy asynchronously from pinned memory.

        Returns
        -------
        Batch
        """
        return Batch(*(t.to(device, non_blocking=non_blocking) for t in
                       (self.audio, self.visual, self.audio_digit, self.visual_digit,
                        self.audio_index, self.visual_index)))


def _is_clean(snr_db: float | torch.Tensor) -> bool:
    if isinstance(snr_db, torch.Tensor):
        return bool(torch.isinf(snr_db).all() and (snr_db > 0).all())
    return math.isinf(snr_db) and snr_db > 0


def make_batch(
    split: AVSplit,
    features: AudioFeatures,
    audio_index: torch.Tensor,
    visual_index: torch.Tensor,
    *,
    audio_snr: float | torch.Tensor = math.inf,
    visual_snr: float | torch.Tensor = math.inf,
    remove: str | None = None,
    per_step_visual_noise: bool = True,
    generator: Generators = None,
) -> Batch:
    """Assemble model inputs for pairs ``(audio_index[i], visual_index[i])``.

    Audio noise is white Gaussian noise added to the waveform at ``audio_snr`` dB relative to
    the clip's own power (before padding), then features are recomputed; clean clips reuse the
    cached features. Visual noise is added to pixel values at ``visual_snr`` dB relative to the
    clean image's power.

    Parameters
    ----------
    split
        The split the indices refer to.
    features
        The audio transform (the dataset's ``features``).
    audio_index
        The pairs' clips.
    visual_index
        The pairs' images.
    audio_snr, visual_snr
        Scalars or per-sample tensors in dB; ``inf`` means clean.
    remove
        ``"audio"`` or ``"visual"`` zeroes that modality after everything else; ``None`` keeps
        both.
    per_step_visual_noise
        Draw the visual noise afresh for every time step (a noisy video of a still image);
        ``False`` draws one noisy image.
    generator
        One generator for the batch, or one per pair (audio noise is drawn first, then visual).

    Returns
    -------
    Batch
    """
    if remove not in (None, *MODALITIES):
        raise ValueError(f"remove must be None, 'audio' or 'visual', not {remove!r}")
    timesteps = features.timesteps

    if _is_clean(audio_snr):
        audio = split.audio_clean[audio_index]
    else:
        noisy = add_white_noise(split.waveforms[audio_index], audio_snr,
                                signal_power=split.clip_power[audio_index], generator=generator)
        audio = features(noisy)

    image = split.images[visual_index]  # (B, H, W)
    visual = image[:, None, None].expand(-1, timesteps, 1, -1, -1)
    if not _is_clean(visual_snr):
        power = image.pow(2).mean(dim=(1, 2))
        if per_step_visual_noise:
            visual = add_white_noise(visual, visual_snr, signal_power=power, generator=generator)
        else:
            visual = add_white_noise(image, visual_snr, signal_power=power, generator=generator)
            visual = visual[:, None, None].expand(-1, timesteps, 1, -1, -1)
    visual = visual.contiguous()

    if remove == "audio":
        audio = torch.zeros_like(audio)
    elif remove == "visual":
        visual = torch.zeros_like(visual)
    return Batch(audio=audio, visual=visual,
                 audio_digit=split.clip_digit[audio_index],
                 visual_digit=split.image_digit[visual_index],
                 audio_index=audio_index, visual_index=visual_index)
