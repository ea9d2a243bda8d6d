"""The container every dataset builder returns, and the step that turns it into model inputs.

A dataset is held as clean sources (padded waveforms, images on the frame grid, cached
clean audio features) plus index pairs. Noise and modality removal are applied per batch
by :func:`make_batch`, so features are computed once per clip and noise is drawn on the fly.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field, fields
from typing import Protocol

import numpy as np
import torch

from repsim.conditions import MODALITIES
from repsim.data.noise import Generators, add_white_noise

SPLITS = ("train", "val", "test")  # every dataset's splits, in this order


class AudioFeatures(Protocol):
    """Turns waveforms ``(B, n_samples)`` into audio frames ``(B, T, 1, H, W)`` (float32)."""

    @property
    def timesteps(self) -> int: ...

    @property
    def height(self) -> int: ...

    @property
    def width(self) -> int: ...

    def __call__(self, waveforms: torch.Tensor) -> torch.Tensor: ...


@dataclass
class AVSplit:
    """One split (train, val or test): clean sources and the congruent pairs drawn from them.

    Clips and images are indexed separately; a pair is ``(pair_audio[i], pair_visual[i])``.
    ``clip_source``/``image_source`` are stable ids (e.g. ``"fsdd/3_theo_2"``) from which
    stimulus ids are built, so that two models see the same stimulus under the same id.
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
        """A copy with every tensor on ``device`` (the splits are small enough to live there)."""
        moved = {f.name: getattr(self, f.name) for f in fields(self)}
        for key, value in moved.items():
            if isinstance(value, torch.Tensor):
                moved[key] = value.to(device)
        return AVSplit(**moved)

    def stimulus_ids(self, audio_index: torch.Tensor, visual_index: torch.Tensor) -> list[str]:
        """Stable ids ``"<clip source>|<image source>"`` for the given pairs."""
        return [f"{self.clip_source[a]}|{self.image_source[v]}"
                for a, v in zip(audio_index.tolist(), visual_index.tolist(), strict=True)]


DIGIT_CLASSES = 10  # the digit datasets' classes: the digits 0-9, labelled by themselves


@dataclass
class AVDataset:
    """A built dataset: its splits, the audio feature transform, and where it came from.

    ``class_names`` names the classes of a dataset whose labels are not the digits 0-9:
    label ``i`` is ``class_names[i]``. ``None`` (the digit datasets) means the labels are the
    digits themselves, stored as ``audio_digit``/``visual_digit``.
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
        return self.features.timesteps

    @property
    def frame_shape(self) -> tuple[int, int]:
        return self.features.height, self.features.width

    def fingerprint(self) -> str:
        """SHA-256 over every split's labels, pairs and source ids, and each clean clip's
        and image's :func:`_rounded_summary`: equal data, equal fingerprint, also when the
        data were built on another CPU and differ in the last bits."""
        digest = hashlib.sha256(self.name.encode())
        if self.class_names is not None:  # digit datasets: the digest they always had
            digest.update("\n".join(self.class_names).encode())
        for split_name in sorted(self.splits):
            split = self.splits[split_name]
            digest.update(split_name.encode())
            for tensor in (split.clip_digit, split.image_digit, split.pair_audio,
                           split.pair_visual):
                integers = tensor.detach().cpu().numpy().astype("<i8")
                digest.update(np.ascontiguousarray(integers).tobytes())
            digest.update(_rounded_summary(split.waveforms))
            digest.update(_rounded_summary(split.images))
            digest.update("\n".join(split.clip_source + split.image_source).encode())
        return digest.hexdigest()


def _rounded_summary(items: torch.Tensor) -> bytes:
    """Each item's sum of |x| and of x^2, to 6 significant digits.

    numpy's and torch's float maths differ in the last bits between a CPU's SIMD paths (the
    synthetic dataset built with AVX-512 and with AVX2 differs by up to 2e-12 relative per
    clip), so raw bytes would make a checkpoint trained on one machine refuse the data on
    another. Sums of positive terms do not cancel, so such noise stays far below the
    rounding, while any real change to an item shows.
    """
    rows = items.detach().cpu().double().reshape(len(items), -1)
    summary = torch.stack([rows.abs().sum(dim=1), rows.square().sum(dim=1)], dim=1)
    return ",".join(f"{value:.6g}" for value in summary.flatten().tolist()).encode()


@dataclass
class Batch:
    """Model inputs and labels for a batch of pairs."""

    audio: torch.Tensor  # (B, T, 1, H, W)
    visual: torch.Tensor  # (B, T, 1, H, W)
    audio_digit: torch.Tensor  # (B,)
    visual_digit: torch.Tensor  # (B,)
    audio_index: torch.Tensor  # (B,) clip indices into the split
    visual_index: torch.Tensor  # (B,) image indices into the split

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
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
    clean image's power, drawn afresh for every time step unless ``per_step_visual_noise`` is
    False. SNRs may be scalars or per-sample tensors; ``inf`` means clean. ``remove`` zeroes
    one modality (``"audio"`` or ``"visual"``) after everything else. ``generator``: one
    generator for the batch, or one per pair (audio noise is drawn first, then visual).
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
