"""The default dataset: scikit-learn's handwritten digits paired with synthesized spoken digits.

Audio: the words "zero".."nine" from :mod:`repsim.data.synth`, ``repetitions`` utterances of
every word by every speaker; train, val and test speakers are disjoint (val speakers are held
out like test speakers, so validation measures generalisation to new voices). Visual: the
1,797 real 8x8 images of ``sklearn.datasets.load_digits`` (0..16 scaled to [0, 1]), split
per digit into disjoint train/val/test sets, resized to the frame grid and given a small
random affine jitter (rotation, scale, shift); each training image appears in
``train_image_copies`` differently jittered copies. Pairs are congruent, drawn within a split.

Everything is drawn from generators seeded by ``(seed, stream, ...)``, so one seed always
gives the same dataset, and a clip depends only on the seed, its speaker index, digit and
repetition. Building the default dataset takes a few seconds and needs no files.
"""

from __future__ import annotations

import inspect
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from repsim.config import Config, check_positive_int, is_int
from repsim.data import synth
from repsim.data.base import DIGIT_CLASSES, SPLITS, AVDataset, AVSplit
from repsim.data.features import LogMelFrames, resize_images
from repsim.data.pairing import congruent_pairs

DEFAULT_TIMESTEPS = 8
DEFAULT_SIZE = 16
# Upper bounds of the size options, so that a typo (train_pairs = 1e11) is one line, not
# hours of synthesis; and of the clips of one split (speakers x 10 digits x repetitions).
SIZE_LIMITS = {**dict.fromkeys(("train_speakers", "val_speakers", "test_speakers"), 1000),
               "repetitions": 100, "train_image_copies": 100,
               **dict.fromkeys(("train_pairs", "val_pairs", "test_pairs"), 1_000_000)}
MAX_CLIPS = 100_000
FEATURE_BATCH = 256  # clips per log-mel batch (bounds memory)
# Random streams: every random choice has its own, so changing one option (e.g. how many
# pairs) never changes what another part (e.g. the clips) looks like.
_SPEAKER, _CLIP, _IMAGE_SPLIT, _JITTER, _PAIRS, _DISTRACTOR = range(6)


@dataclass(frozen=True)
class SyntheticConfig(Config):
    """Every option of the synthetic dataset (``None`` sizes take the defaults: T=8, 16x16).

    ``data_dir`` is accepted like every builder's, but the synthetic dataset reads and writes
    no files. Sizes: ``repetitions`` utterances per speaker and digit; ``*_pairs`` congruent
    pairs per split; image fractions of the 1,797 sklearn digits held out (per digit) for val
    and test. Jitter: rotation uniform in +-``rotation`` degrees, scale in 1 +- ``scale``,
    shift in +-``shift`` of the image size along each axis. ``distractor_snr`` (dB, None for
    none) mixes into every clip another clip of the same split saying a different digit, that
    much quieter than the clip's own utterance: a competing talker, which the audio alone
    cannot always tell from the target and the image can.
    """

    data_dir: str | None = None
    seed: int = 0
    timesteps: int | None = None
    height: int | None = None
    width: int | None = None
    train_speakers: int = 20
    val_speakers: int = 4
    test_speakers: int = 8
    repetitions: int = 5
    train_pairs: int = 2400
    val_pairs: int = 400
    test_pairs: int = 800
    image_val_fraction: float = 0.1
    image_test_fraction: float = 0.3
    train_image_copies: int = 2
    rotation: float = 10.0
    scale: float = 0.08
    shift: float = 0.06
    duration: float = 1.0
    distractor_snr: float | None = None

    KIND = "synthetic dataset"

    def __post_init__(self) -> None:
        for name in ("timesteps", "height", "width"):
            check_positive_int(name, getattr(self, name), allow_none=True)
        for name in ("train_speakers", "val_speakers", "test_speakers", "repetitions",
                     "train_pairs", "val_pairs", "test_pairs", "train_image_copies"):
            check_positive_int(name, getattr(self, name))
            if getattr(self, name) > SIZE_LIMITS[name]:
                raise ValueError(f"{name} must be at most {SIZE_LIMITS[name]:,}, got "
                                 f"{getattr(self, name):,}")
        clips = max(self.speaker_counts().values()) * DIGIT_CLASSES * self.repetitions
        if clips > MAX_CLIPS:
            raise ValueError(f"a split would have {clips:,} clips (speakers x 10 digits x "
                             f"repetitions); at most {MAX_CLIPS:,} are allowed")
        if not is_int(self.seed) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")
        fractions = (self.image_val_fraction, self.image_test_fraction)
        if min(fractions) <= 0 or sum(fractions) >= 0.9:
            raise ValueError("image_val_fraction and image_test_fraction must be positive and "
                             f"leave at least 10 % for training, got {fractions}")
        if not 0 <= self.rotation <= 45 or not 0 <= self.scale < 0.5 or not 0 <= self.shift < 0.5:
            raise ValueError("jitter out of range: need 0 <= rotation <= 45 (degrees), "
                             f"0 <= scale < 0.5, 0 <= shift < 0.5; got rotation={self.rotation}, "
                             f"scale={self.scale}, shift={self.shift}")
        if not 0.5 <= self.duration <= 4.0:
            raise ValueError(f"duration must be between 0.5 and 4 seconds, got {self.duration}")
        if self.distractor_snr is not None and (
                isinstance(self.distractor_snr, bool)
                or not isinstance(self.distractor_snr, int | float)
                or not -20.0 <= self.distractor_snr <= 60.0):
            raise ValueError(f"distractor_snr must be None or a number of dB in [-20, 60], "
                             f"got {self.distractor_snr!r}")

    def resolved(self) -> SyntheticConfig:
        """The same options with the default grid filled in for ``None`` sizes."""
        return SyntheticConfig(**{
            **asdict(self),
            "timesteps": self.timesteps or DEFAULT_TIMESTEPS,
            "height": self.height or DEFAULT_SIZE,
            "width": self.width or DEFAULT_SIZE,
            "data_dir": None if self.data_dir is None else str(self.data_dir),
        })

    def speaker_counts(self) -> dict[str, int]:
        return {"train": self.train_speakers, "val": self.val_speakers,
                "test": self.test_speakers}

    def pair_counts(self) -> dict[str, int]:
        return {"train": self.train_pairs, "val": self.val_pairs, "test": self.test_pairs}


def _rng(seed: int, *key: int) -> np.random.Generator:
    """The generator of one random stream (``key``) of dataset ``seed``."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def clip_rng(seed: int, speaker_number: int, digit: int, repetition: int
             ) -> np.random.Generator:
    """The generator behind one clip: with the speaker (:func:`speaker_roster`) and
    :func:`repsim.data.synth.speak_digits` it reproduces the clip on its own."""
    return _rng(seed, _CLIP, speaker_number, digit, repetition)


def speaker_numbers(config: SyntheticConfig) -> dict[str, range]:
    """Speakers are numbered across splits: train first, then val, then test."""
    numbers, first = {}, 0
    for split, count in config.speaker_counts().items():
        numbers[split] = range(first, first + count)
        first += count
    return numbers


def speaker_roster(config: SyntheticConfig) -> dict[str, list[synth.Speaker]]:
    """The voices of each split; speaker k is ``spk<k>``, drawn from its own stream."""
    return {split: [synth.random_speaker(f"spk{k:02d}", _rng(config.seed, _SPEAKER, k))
                    for k in numbers]
            for split, numbers in speaker_numbers(config).items()}


def _clips(config: SyntheticConfig, speakers: list[synth.Speaker], numbers: range,
           n_samples: int, split_code: int) -> dict:
    """Every speaker saying every digit ``repetitions`` times, and their ids; the clip of
    (speaker number, digit, repetition) has its own random stream. With ``distractor_snr``
    each clip also holds a competing utterance (:func:`add_distractors`)."""
    grid = [(s, digit, rep) for s in range(len(speakers)) for digit in range(10)
            for rep in range(config.repetitions)]
    waveforms, spans = synth.speak_digits(
        [digit for _, digit, _ in grid], [speakers[s] for s, _, _ in grid],
        [clip_rng(config.seed, numbers[s], digit, rep) for s, digit, rep in grid],
        n_samples=n_samples)
    # a clip's power is that of the utterance, before the silence that pads it to n_samples
    power = np.array([np.mean(np.square(w[start:stop], dtype=np.float64))
                      for w, (start, stop) in zip(waveforms, spans, strict=True)])
    digits = np.array([digit for _, digit, _ in grid], dtype=np.int64)
    sources = [f"synth/{speakers[s].name}/{digit}/{rep}" for s, digit, rep in grid]
    if config.distractor_snr is not None:
        waveforms, sources = add_distractors(waveforms, power, digits, sources,
                                             config.distractor_snr,
                                             _rng(config.seed, _DISTRACTOR, split_code))
    return {
        "waveforms": torch.from_numpy(waveforms),
        "clip_power": torch.tensor(power, dtype=torch.float32),
        "clip_digit": torch.from_numpy(digits),
        "clip_speaker": torch.tensor([s for s, _, _ in grid], dtype=torch.int64),
        "clip_source": sources,
        "speakers": [speaker.name for speaker in speakers],
    }


def add_distractors(waveforms: np.ndarray, power: np.ndarray, digits: np.ndarray,
                    sources: list[str], snr_db: float, rng: np.random.Generator
                    ) -> tuple[np.ndarray, list[str]]:
    """Mix into each clip a random other clip of a different digit, scaled so that the clip's
    utterance is ``snr_db`` dB above the distractor's. Returns the mixtures (float32) and
    source ids ``"<clip>+<distractor>@<snr>dB"``; ``power`` (the target's) is unchanged, so
    test-time noise stays relative to the target.
    """
    partners = np.empty(len(digits), dtype=np.int64)
    for index, digit in enumerate(digits):
        partners[index] = rng.choice(np.flatnonzero(digits != digit))
    gain = np.sqrt(power / power[partners] / 10.0 ** (snr_db / 10.0))
    mixed = (waveforms + gain[:, None] * waveforms[partners]).astype(np.float32)
    return mixed, [f"{sources[i]}+{sources[j]}@{snr_db:g}dB" for i, j in enumerate(partners)]


def image_split(digits: np.ndarray, config: SyntheticConfig) -> dict[str, np.ndarray]:
    """Indices of the sklearn digits in each split: a shuffled, per-digit (stratified) cut."""
    rng = _rng(config.seed, _IMAGE_SPLIT)
    parts: dict[str, list[np.ndarray]] = {split: [] for split in SPLITS}
    for digit in range(10):
        members = rng.permutation(np.flatnonzero(digits == digit))
        n_val = max(1, round(config.image_val_fraction * len(members)))
        n_test = max(1, round(config.image_test_fraction * len(members)))
        parts["test"].append(members[:n_test])
        parts["val"].append(members[n_test:n_test + n_val])
        parts["train"].append(members[n_test + n_val:])
    return {split: np.sort(np.concatenate(p)) for split, p in parts.items()}


def jitter_images(images: torch.Tensor, rng: np.random.Generator, *, rotation: float,
                  scale: float, shift: float) -> torch.Tensor:
    """Random rotation (+-degrees), scaling (1 +- scale) and shift (+- fraction of the size)
    of ``(N, H, W)`` images about their centre, bilinear, zeros outside, clamped to [0, 1]."""
    n = len(images)
    angle = np.deg2rad(rng.uniform(-rotation, rotation, n))
    zoom = rng.uniform(1.0 - scale, 1.0 + scale, n)
    offset = rng.uniform(-shift, shift, (n, 2)) * 2.0  # normalised coordinates span 2
    cos, sin = np.cos(angle) / zoom, np.sin(angle) / zoom
    theta = np.stack([np.stack([cos, -sin, offset[:, 0]], 1),
                      np.stack([sin, cos, offset[:, 1]], 1)], 1)  # output -> input coords
    grid = F.affine_grid(torch.tensor(theta, dtype=torch.float32), [n, 1, *images.shape[1:]],
                         align_corners=False)
    moved = F.grid_sample(images[:, None], grid, mode="bilinear", padding_mode="zeros",
                          align_corners=False)
    return moved[:, 0].clamp_(0.0, 1.0)


def _images(config: SyntheticConfig) -> dict[str, dict]:
    """The jittered image sets of each split, on the frame grid, with their ids."""
    from sklearn.datasets import load_digits  # here: importing scikit-learn takes ~1 s

    digits = load_digits()
    pixels = digits.images.astype(np.float32) / 16.0
    out = {}
    for code, (split, index) in enumerate(image_split(digits.target, config).items()):
        copies = config.train_image_copies if split == "train" else 1
        source = np.repeat(index, copies)
        copy = np.tile(np.arange(copies), len(index))
        assert config.height is not None and config.width is not None  # config is resolved()
        grid_images = resize_images(pixels[source], config.height, config.width)
        images = jitter_images(grid_images, _rng(config.seed, _JITTER, code),
                               rotation=config.rotation, scale=config.scale, shift=config.shift)
        out[split] = {
            "images": images,
            "image_digit": torch.tensor(digits.target[source], dtype=torch.int64),
            "image_source": [f"digits/{i}/{c}" for i, c in zip(source, copy, strict=True)],
        }
    return out


def _features(waveforms: torch.Tensor, features: LogMelFrames) -> torch.Tensor:
    """Clean audio frames of every clip, computed in batches of FEATURE_BATCH clips."""
    return torch.cat([features(waveforms[start:start + FEATURE_BATCH])
                      for start in range(0, len(waveforms), FEATURE_BATCH)])


def check_options(**options: Any) -> None:
    """ValueError for an option :func:`build` would refuse (name or value), building nothing."""
    SyntheticConfig.from_dict(options)


def build(**options: Any) -> AVDataset:
    """Build the synthetic audio-visual digit dataset.

    The keyword options are the fields of :class:`SyntheticConfig` (``data_dir``, ``seed``,
    ``timesteps``, ``height``, ``width``, then speakers, repetitions, pairs, image fractions,
    jitter and duration); an unknown one raises ValueError. The returned dataset's ``config``
    holds every option with the sizes filled in.
    """
    config = SyntheticConfig.from_dict(options).resolved()
    assert config.timesteps and config.height and config.width  # resolved() filled the grid
    n_samples = round(config.duration * synth.SAMPLE_RATE)
    roster, numbers = speaker_roster(config), speaker_numbers(config)
    clips = {split: _clips(config, roster[split], numbers[split], n_samples, code)
             for code, split in enumerate(SPLITS)}
    images = _images(config)
    features = LogMelFrames(sample_rate=synth.SAMPLE_RATE, n_samples=n_samples,
                            timesteps=config.timesteps, height=config.height,
                            width=config.width).fit(clips["train"]["waveforms"])
    splits = {}
    for code, split in enumerate(SPLITS):
        audio, visual = clips[split], images[split]
        pair_audio, pair_visual = congruent_pairs(
            audio["clip_digit"].numpy(), visual["image_digit"].numpy(),
            config.pair_counts()[split], _rng(config.seed, _PAIRS, code))
        splits[split] = AVSplit(
            name=split, **audio, **visual,
            audio_clean=_features(audio["waveforms"], features),
            pair_audio=torch.from_numpy(pair_audio), pair_visual=torch.from_numpy(pair_visual))
    return AVDataset(name="synthetic", splits=splits, features=features,
                     sample_rate=synth.SAMPLE_RATE, config=config.to_dict())


# The options and their defaults are SyntheticConfig's fields; the signature says so, so that
# introspection (help(), the dataset registry's option check) sees them all, from one source.
build.__signature__ = inspect.Signature(  # type: ignore[attr-defined]  # read by inspect
    [inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default,
                       annotation=f.type) for f in fields(SyntheticConfig)],
    return_annotation=AVDataset)
