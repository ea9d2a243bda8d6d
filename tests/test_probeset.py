"""repsim.probeset: a fixed, seeded probe set defined by the dataset alone."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from repsim.conditions import MECHANISM_CONDITIONS, parse_condition
from repsim.conditions import probe_condition_names as condition_names
from repsim.data.base import AVDataset, AVSplit
from repsim.data.features import LogMelFrames
from repsim.data.pairing import congruent_pairs
from repsim.probeset import ProbeSet

T, H, W = 3, 6, 4


def tiny_dataset(seed: int = 0, clips_per_digit: int = 3, pairs: int = 40) -> AVDataset:
    """A real AVDataset in miniature: random 'speech' with power varying by digit, random
    images, congruent pairs per split; built in milliseconds, with the real log-mel path."""
    rng = np.random.default_rng(seed)
    features = LogMelFrames(sample_rate=1000, n_samples=T * W * 8, timesteps=T, height=H,
                            width=W, n_fft=32)
    splits = {}
    for number, name in enumerate(("train", "val", "test")):
        digits = np.repeat(np.arange(10), clips_per_digit)
        waveforms = rng.normal(size=(len(digits), features.n_samples)) * (1 + digits[:, None])
        waveforms = torch.as_tensor(waveforms, dtype=torch.float32)
        images = torch.as_tensor(rng.uniform(size=(len(digits), H, W)), dtype=torch.float32)
        audio, visual = congruent_pairs(digits, digits, pairs, rng)
        splits[name] = AVSplit(
            name=name, waveforms=waveforms, clip_power=waveforms.pow(2).mean(dim=1),
            clip_digit=torch.as_tensor(digits), clip_speaker=torch.as_tensor(
                np.arange(len(digits)) % 2 + 2 * number),
            clip_source=[f"tiny/{name}/clip{i}" for i in range(len(digits))],
            audio_clean=features(waveforms), images=images, image_digit=torch.as_tensor(digits),
            image_source=[f"tiny/{name}/img{i}" for i in range(len(digits))],
            pair_audio=torch.as_tensor(audio), pair_visual=torch.as_tensor(visual),
            speakers=[f"speaker{i}" for i in range(6)])
    return AVDataset(name="tiny", splits=splits, features=features, sample_rate=1000,
                     config={"seed": seed})


@pytest.fixture(scope="module")
def dataset() -> AVDataset:
    return tiny_dataset()


def test_condition_names_defaults_order_and_normalisation():
    assert condition_names() == ["clean", "incongruent", "audio_removed", "visual_removed",
                                 "audio_snr0", "visual_snr0", "both_snr0", "audio_snr-10",
                                 "visual_snr-10", "both_snr-10"]
    assert condition_names(["audio_snr-10.0", "clean", "clean"], [2.5]) == [
        "audio_snr-10", "clean", "audio_snr2.5", "visual_snr2.5", "both_snr2.5"]
    parsed = parse_condition("both_snr-5")
    assert (parsed.inputs.audio_snr, parsed.inputs.visual_snr) == (-5.0, -5.0)
    assert parse_condition("visual_removed").inputs.remove == "visual"
    assert parse_condition("incongruent").incongruent


@pytest.mark.parametrize("name", ["noisy", "audio_snr", "audio_snrx", "speech_snr0",
                                  "both_removed", "Clean"])
def test_unknown_condition_names_are_refused(name):
    with pytest.raises(ValueError, match=f"unknown condition {name!r}"):
        parse_condition(name)


def test_non_finite_snr_refused():
    with pytest.raises(ValueError, match="finite"):
        condition_names(["clean"], [math.inf])


def test_same_stimuli_for_same_dataset_and_seed(dataset):
    first = ProbeSet.build(dataset, n_stimuli=12, seed=3).coordinates()
    rebuilt = ProbeSet.build(tiny_dataset(), n_stimuli=12, seed=3).coordinates()
    for key in first:
        np.testing.assert_array_equal(first[key], rebuilt[key])
    other_seed = ProbeSet.build(dataset, n_stimuli=12, seed=4).coordinates()
    assert not np.array_equal(first["stimulus_id"], other_seed["stimulus_id"])
    # a larger probe set extends a smaller one, condition by condition
    larger = ProbeSet.build(dataset, ["clean", "incongruent"], n_stimuli=20,
                            seed=3).coordinates()
    smaller = ProbeSet.build(dataset, ["clean", "incongruent"], n_stimuli=12,
                             seed=3).coordinates()
    np.testing.assert_array_equal(larger["stimulus_id"][:12], smaller["stimulus_id"][:12])
    np.testing.assert_array_equal(larger["stimulus_id"][20:32], smaller["stimulus_id"][12:])


def test_coordinates_describe_the_pairs(dataset):
    probe = ProbeSet.build(dataset, ["clean", "incongruent", "visual_snr-5", "audio_removed"],
                           n_stimuli=15, seed=0)
    coords = probe.coordinates()
    assert len(probe) == 60 and all(len(v) == 60 for v in coords.values())
    split = dataset.splits["test"]
    digit_a = split.clip_digit.numpy()[coords["audio_index"]]
    digit_v = split.image_digit.numpy()[coords["visual_index"]]
    np.testing.assert_array_equal(coords["audio_digit"], digit_a)
    np.testing.assert_array_equal(coords["visual_digit"], digit_v)
    np.testing.assert_array_equal(coords["congruent"], digit_a == digit_v)
    by_condition = {name: coords["condition"] == name for name in probe.condition_names}
    assert coords["congruent"][by_condition["clean"]].all()
    assert not coords["congruent"][by_condition["incongruent"]].any()
    # every condition but incongruent shows the same pairs under the same ids
    for name in ("visual_snr-5", "audio_removed"):
        np.testing.assert_array_equal(coords["stimulus_id"][by_condition[name]],
                                      coords["stimulus_id"][by_condition["clean"]])
    assert set(coords["visual_snr"][by_condition["visual_snr-5"]]) == {-5.0}
    assert set(coords["audio_snr"][by_condition["visual_snr-5"]]) == {math.inf}
    assert set(coords["removed"][by_condition["audio_removed"]]) == {"audio"}
    assert set(coords["removed"][~by_condition["audio_removed"]]) == {"none"}
    first = coords["audio_index"][0], coords["visual_index"][0]
    assert coords["stimulus_id"][0] == f"tiny/test/clip{first[0]}|tiny/test/img{first[1]}"
    assert coords["speaker"][0] == split.speakers[int(split.clip_speaker[first[0]])]
    # clean test pairs are drawn without replacement from the split's pairs
    test_pairs = set(zip(split.pair_audio.tolist(), split.pair_visual.tolist(), strict=True))
    clean = by_condition["clean"]
    assert set(zip(coords["audio_index"][clean].tolist(), coords["visual_index"][clean].tolist(),
                   strict=True)) <= test_pairs


def _inputs(probe: ProbeSet, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    batches = list(probe.batches(batch_size))
    assert [start for start, _ in batches] == sorted(start for start, _ in batches)
    return (torch.cat([b.audio for _, b in batches]), torch.cat([b.visual for _, b in batches]))


def test_inputs_do_not_depend_on_batch_size(dataset):
    probe = ProbeSet.build(dataset, ["both_snr0", "clean"], n_stimuli=9, seed=1)
    audio_1, visual_1 = _inputs(probe, 1)
    audio_4, visual_4 = _inputs(probe, 4)
    assert torch.equal(audio_1, audio_4) and torch.equal(visual_1, visual_4)
    assert audio_1.shape == (18, T, 1, H, W)


def test_batches_follow_the_conditions(dataset):
    probe = ProbeSet.build(dataset, ["clean", "audio_removed", "visual_removed", "audio_snr0",
                                     "visual_snr0"], n_stimuli=7, seed=0)
    audio, visual = _inputs(probe, 3)
    clean_a, clean_v = audio[:7], visual[:7]
    split = dataset.splits["test"]
    coords = probe.coordinates()
    assert torch.equal(clean_a, split.audio_clean[coords["audio_index"][:7]])
    assert torch.equal(clean_v[:, 0, 0], split.images[coords["visual_index"][:7]])
    assert clean_a.abs().sum() > 0 and clean_v.abs().sum() > 0
    # audio_removed: audio all zero, vision untouched; visual_removed the other way round
    assert torch.count_nonzero(audio[7:14]) == 0 and torch.equal(visual[7:14], clean_v)
    assert torch.count_nonzero(visual[14:21]) == 0 and torch.equal(audio[14:21], clean_a)
    # noise conditions change only their modality; measured SNR near the request (0 dB)
    assert not torch.equal(audio[21:28], clean_a) and torch.equal(visual[21:28], clean_v)
    assert torch.equal(audio[28:35], clean_a) and not torch.equal(visual[28:35], clean_v)
    noise = visual[28:35] - clean_v
    snr_db = 10 * torch.log10(clean_v.pow(2).mean() / noise.pow(2).mean())
    assert abs(float(snr_db)) < 0.5


def test_bad_probe_set_arguments(dataset):
    with pytest.raises(ValueError, match="has only 37 distinct pairs \\(3 repeat another\\)"):
        ProbeSet.build(dataset, n_stimuli=41)
    with pytest.raises(ValueError, match="positive integer"):
        ProbeSet.build(dataset, n_stimuli=0)
    with pytest.raises(ValueError, match="unknown condition 'loud'"):
        ProbeSet.build(dataset, ["clean", "loud"])
    with pytest.raises(ValueError, match="batch size"):
        next(ProbeSet.build(dataset, n_stimuli=2).batches(0))
    assert len(ProbeSet.build(dataset, ["clean"], n_stimuli=None)) == 37  # distinct pairs
    congruent_only = ProbeSet.build(dataset, ["clean"], n_stimuli=5)
    with pytest.raises(ValueError, match="'incongruent' needs incongruent pairs"):
        congruent_only.pairs(parse_condition("incongruent"))


def test_definition_names_dataset_seed_and_conditions(dataset):
    probe = ProbeSet.build(dataset, ["clean", "incongruent"], n_stimuli=5, seed=7)
    definition = probe.definition()
    assert definition["dataset_fingerprint"] == dataset.fingerprint()
    assert definition["seed"] == 7 and definition["n_stimuli_per_condition"] == 5
    assert definition["conditions"] == ["clean", "incongruent"]


def test_incongruent_conditions_with_audio_noise(dataset):
    """``incongruent_audio_snrX``: the incongruent pairs (same ids, digits, images) with
    noise on the audio alone."""
    assert parse_condition("incongruent_audio_snr-10.0").name == "incongruent_audio_snr-10"
    assert MECHANISM_CONDITIONS == ("audio_snr0", "audio_snr-10", "incongruent_audio_snr0",
                                    "incongruent_audio_snr-10")
    probe = ProbeSet.build(dataset, ["incongruent", "incongruent_audio_snr0"], n_stimuli=7,
                           seed=0)
    coords = probe.coordinates()
    for key in ("stimulus_id", "audio_digit", "visual_digit", "congruent"):
        np.testing.assert_array_equal(coords[key][:7], coords[key][7:])
    assert not coords["congruent"].any()
    assert list(coords["audio_snr"]) == [np.inf] * 7 + [0.0] * 7
    audio, visual = _inputs(probe, 3)
    assert torch.equal(visual[:7], visual[7:]) and not torch.equal(audio[:7], audio[7:])


@pytest.mark.parametrize("name", ["incongruent_clean", "incongruent_incongruent",
                                  "incongruent_", "incongruent_speech_snr0"])
def test_bad_incongruent_conditions_are_refused(name):
    with pytest.raises(ValueError, match=f"unknown condition {name!r}"):
        parse_condition(name)


def test_a_pair_that_repeats_in_the_split_is_one_stimulus(dataset):
    """The split holds 3 pairs twice; the probe set takes each pair once, so every stimulus id
    is unique within a condition (the activation file refuses repeated ids)."""
    split = dataset.splits["test"]
    pairs = list(zip(split.pair_audio.tolist(), split.pair_visual.tolist(), strict=True))
    assert len(pairs) - len(set(pairs)) == 3
    probe = ProbeSet.build(dataset, ["clean", "incongruent"], n_stimuli=None, seed=0)
    table = pd.DataFrame({name: probe.coordinates()[name]
                          for name in ("stimulus_id", "condition")})
    assert not table.duplicated().any()
    assert (table["condition"] == "clean").sum() == len(set(pairs))
