"""make_batch and the split/dataset containers: the SNR measured on what comes out, clean at
inf, fresh visual noise per step, modality removal, labels and ids, and bad input."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from repsim.data import build_dataset, make_batch
from repsim.data.base import AVSplit
from repsim.data.fingerprint import data_difference
from repsim.data.noise import add_white_noise
from repsim.data.pairing import incongruent_pairs


@dataclasses.dataclass(frozen=True)
class WaveformFrames:
    """An 'audio feature' that is the waveform itself, cut into (T, 1, H, W) frames, so
    that the audio SNR can be measured on make_batch's output (T * H * W = n_samples)."""

    timesteps: int = 8
    height: int = 25
    width: int = 40

    def __call__(self, waveforms: torch.Tensor) -> torch.Tensor:
        return waveforms.reshape(len(waveforms), self.timesteps, 1, self.height, self.width)


def snr_db(signal_power: torch.Tensor, noise: torch.Tensor) -> float:
    """10 log10(total signal power / total noise power) over a batch, float64."""
    noise_power = noise.double().reshape(len(noise), -1).pow(2).mean(dim=1)
    return 10.0 * math.log10(float(signal_power.double().sum() / noise_power.sum()))


@pytest.fixture(scope="module")
def dataset():
    return build_dataset("synthetic", train_speakers=2, val_speakers=1, test_speakers=2,
                         repetitions=2, train_pairs=40, val_pairs=20, test_pairs=64, seed=3)


@pytest.fixture(scope="module")
def split(dataset) -> AVSplit:
    return dataset.splits["test"]


def test_shapes_dtypes_and_labels(dataset, split):
    index = torch.arange(len(split))
    batch = make_batch(split, dataset.features, split.pair_audio[index],
                       split.pair_visual[index])
    steps, (height, width) = dataset.timesteps, dataset.frame_shape
    assert batch.audio.shape == batch.visual.shape == (len(split), steps, 1, height, width)
    assert batch.audio.dtype == batch.visual.dtype == torch.float32
    assert torch.equal(batch.audio_digit, split.clip_digit[split.pair_audio])
    assert torch.equal(batch.visual_digit, split.image_digit[split.pair_visual])
    assert torch.equal(batch.audio_digit, batch.visual_digit)  # the split's pairs congruent
    assert torch.equal(batch.audio_index, split.pair_audio)
    moved = batch.to("cpu")
    assert torch.equal(moved.visual, batch.visual)


def test_inf_is_exactly_clean(dataset, split):
    a, v = split.pair_audio, split.pair_visual
    batch = make_batch(split, dataset.features, a, v, audio_snr=math.inf, visual_snr=math.inf)
    assert torch.equal(batch.audio, split.audio_clean[a])
    for t in range(dataset.timesteps):
        assert torch.equal(batch.visual[:, t, 0], split.images[v])


@pytest.mark.parametrize("snr", [-10.0, 0.0, 10.0])
def test_audio_snr_measured_on_the_output_matches_the_request(split, snr):
    clips = torch.arange(len(split.waveforms))
    batch = make_batch(split, WaveformFrames(), clips, torch.zeros_like(clips),
                       audio_snr=snr, generator=torch.Generator().manual_seed(0))
    noise = batch.audio.reshape(len(clips), -1) - split.waveforms[clips]
    # signal power: the clip's own power before padding, as the design says
    assert snr_db(split.clip_power[clips], noise) == pytest.approx(snr, abs=0.1)


@pytest.mark.parametrize("snr", [-10.0, 0.0, 10.0])
def test_visual_snr_measured_on_the_output_matches_the_request(dataset, split, snr):
    a, v = split.pair_audio, split.pair_visual
    batch = make_batch(split, dataset.features, a, v, visual_snr=snr,
                       generator=torch.Generator().manual_seed(1))
    clean = split.images[v]
    noise = batch.visual[:, :, 0] - clean[:, None]
    assert snr_db(clean.pow(2).mean(dim=(1, 2)), noise) == pytest.approx(snr, abs=0.1)
    assert torch.equal(batch.audio, split.audio_clean[a])  # the other modality stays clean


def test_visual_noise_is_fresh_at_every_step_unless_asked_otherwise(dataset, split):
    a, v = split.pair_audio, split.pair_visual
    fresh = make_batch(split, dataset.features, a, v, visual_snr=0.0,
                       generator=torch.Generator().manual_seed(2)).visual
    steps = fresh.shape[1]
    for t in range(1, steps):
        assert not torch.allclose(fresh[:, t], fresh[:, 0])
    held = make_batch(split, dataset.features, a, v, visual_snr=0.0,
                      per_step_visual_noise=False,
                      generator=torch.Generator().manual_seed(2)).visual
    for t in range(1, steps):
        assert torch.equal(held[:, t], held[:, 0])
    clean = split.images[v]
    assert not torch.equal(held[:, 0, 0], clean)
    power = clean.pow(2).mean(dim=(1, 2))
    assert snr_db(power, held[:, 0, 0] - clean) == pytest.approx(0.0, abs=0.3)  # one frame


def test_noisy_audio_features_are_computed_from_the_noisy_waveform(dataset, split):
    clips = torch.arange(len(split.waveforms))
    batch = make_batch(split, dataset.features, clips, torch.zeros_like(clips),
                       audio_snr=5.0, generator=torch.Generator().manual_seed(3))
    noisy = add_white_noise(split.waveforms[clips], 5.0, signal_power=split.clip_power[clips],
                            generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(batch.audio, dataset.features(noisy))
    assert not torch.allclose(batch.audio, split.audio_clean[clips])


def test_per_sample_snrs_leave_inf_rows_clean(dataset, split):
    clips = torch.arange(len(split.waveforms))
    snrs = torch.where(clips % 2 == 0, math.inf, 0.0)
    batch = make_batch(split, dataset.features, clips, torch.zeros_like(clips),
                       audio_snr=snrs, visual_snr=snrs,
                       generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(batch.audio[::2], split.audio_clean[clips[::2]])
    assert not torch.allclose(batch.audio[1::2], split.audio_clean[clips[1::2]])
    assert torch.equal(batch.visual[::2, 0, 0], split.images[torch.zeros(len(clips[::2]),
                                                                        dtype=torch.int64)])


@pytest.mark.parametrize("modality", ["audio", "visual"])
def test_removing_a_modality_zeroes_it_and_keeps_the_other(dataset, split, modality):
    a, v = split.pair_audio, split.pair_visual
    clean = make_batch(split, dataset.features, a, v)
    removed = make_batch(split, dataset.features, a, v, remove=modality, audio_snr=0.0,
                         visual_snr=0.0, generator=torch.Generator().manual_seed(5))
    other = "visual" if modality == "audio" else "audio"
    assert torch.count_nonzero(getattr(removed, modality)) == 0
    assert getattr(removed, modality).shape == getattr(clean, modality).shape
    assert not torch.equal(getattr(removed, other), getattr(clean, other))  # noisy, present
    kept = make_batch(split, dataset.features, a, v, remove=modality)
    assert torch.equal(getattr(kept, other), getattr(clean, other))
    assert torch.equal(kept.audio_digit, clean.audio_digit)  # labels are not removed


def test_an_unknown_modality_to_remove_is_refused(dataset, split):
    with pytest.raises(ValueError, match="remove must be None, 'audio' or 'visual'"):
        make_batch(split, dataset.features, split.pair_audio, split.pair_visual, remove="both")


def test_incongruent_pairs_keep_their_own_labels_and_ids(dataset, split):
    audio, visual = incongruent_pairs(split.clip_digit.numpy(), split.image_digit.numpy(), 30,
                                      np.random.default_rng(0))
    a, v = torch.from_numpy(audio), torch.from_numpy(visual)
    batch = make_batch(split, dataset.features, a, v)
    assert (batch.audio_digit != batch.visual_digit).all()
    ids = split.stimulus_ids(a, v)
    assert ids[0] == f"{split.clip_source[audio[0]]}|{split.image_source[visual[0]]}"
    assert len(set(ids)) == len(ids)


def test_split_refuses_mismatched_fields(split):
    fields = {f.name: getattr(split, f.name) for f in dataclasses.fields(split)}
    with pytest.raises(ValueError, match="clip_digit has"):
        AVSplit(**{**fields, "clip_digit": split.clip_digit[:-1]})
    with pytest.raises(ValueError, match="source id lists"):
        AVSplit(**{**fields, "image_source": split.image_source[:-1]})
    with pytest.raises(ValueError, match="pair_audio and pair_visual"):
        AVSplit(**{**fields, "pair_visual": split.pair_visual[:-1]})
    moved = split.to("cpu")
    assert torch.equal(moved.waveforms, split.waveforms) and len(moved) == len(split)


def test_fingerprint_follows_the_data(dataset):
    before = dataset.fingerprint()
    test = dataset.splits["test"]
    swapped = dataclasses.replace(test, pair_visual=test.pair_visual.flip(0))
    changed = dataclasses.replace(dataset, splits={**dataset.splits, "test": swapped})
    assert changed.fingerprint() != before
    assert dataset.fingerprint() == before


def test_fingerprint_ignores_last_bit_differences_but_not_real_changes(dataset):
    """Another CPU's SIMD maths changes a few samples in the last bits; that is the same data."""
    before = dataset.fingerprint()
    test = dataset.splits["test"]

    def with_test(**changes):
        split = dataclasses.replace(test, **changes)
        return dataclasses.replace(dataset, splits={**dataset.splits, "test": split})

    waveforms = test.waveforms.clone()
    loud = int(waveforms.abs().argmax())
    waveforms.view(-1)[loud] = torch.nextafter(waveforms.view(-1)[loud], torch.tensor(0.0))
    images = test.images.clone()
    images.view(-1)[int(images.argmax())] *= 1 - 1e-7
    assert not torch.equal(waveforms, test.waveforms)
    assert data_difference(before, with_test(waveforms=waveforms, images=images)) is None

    changed = test.waveforms.clone()
    changed[3, 100] += 0.01
    assert with_test(waveforms=changed).fingerprint() != before
    swapped = test.images.clone()
    swapped[[0, 1]] = swapped[[1, 0]]
    assert with_test(images=swapped).fingerprint() != before
