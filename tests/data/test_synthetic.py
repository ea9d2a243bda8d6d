"""The synthetic dataset and its formant synthesizer.

The synthesizer's parts are checked against independent references (scipy's lfilter and
freqz, an autocorrelation pitch estimate, spectra); the dataset must be a real test of
hearing (a linear classifier on clean log-mel frames of unseen speakers >= 90 %, clearly
worse at 0 dB, speakers that differ), must hold real, learnable digit images, keep its splits
apart, and be deterministic for a seed.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from scipy import signal
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from repsim.data import build_dataset, make_batch, synth
from repsim.data.features import LogMelFrames
from repsim.data.fingerprint import fingerprint_difference
from repsim.data.synthetic import SyntheticConfig, clip_rng, jitter_images, speaker_roster

SR = synth.SAMPLE_RATE
TINY = {"train_speakers": 2, "val_speakers": 1, "test_speakers": 1, "repetitions": 1,
        "train_pairs": 30, "val_pairs": 10, "test_pairs": 10}


def voice(pitch: float = 120.0, tract_scale: float = 1.0, **changes) -> synth.Speaker:
    """A steady, jitter-free test voice."""
    values = {"name": "test", "pitch": pitch, "tract_scale": tract_scale, "rate": 1.0,
              "jitter": 0.0, "shimmer": 0.0, "breathiness": 0.0, "open_quotient": 0.6,
              "bandwidth_scale": 1.0, "accent": np.ones((len(synth.PHONE_NAMES), 3)), **changes}
    return synth.Speaker(**values)


def speak(words, speakers, seed=0, variation=synth.NO_VARIATION, n_samples=SR):
    rngs = [np.random.default_rng([seed, i]) for i in range(len(words))]
    return synth.synthesize(words, speakers, rngs, n_samples=n_samples, variation=variation)


def fit_score(x_train, y_train, x_test, y_test, strength: float = 0.1) -> float:
    """Held-out accuracy of an L2 logistic regression (one BLAS thread: the suite shares
    two cores, where more threads only wait for each other). The held-out score is the
    measurement, so an optimiser stopped at max_iter is fine and not worth a warning."""
    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = LogisticRegression(C=strength, max_iter=300).fit(x_train, y_train)
        return float(model.score(x_test, y_test))


# --- the synthesizer --------------------------------------------------------------------

def test_resonator_cascade_equals_scipy_lfilter_for_fixed_formants():
    rng = np.random.default_rng(0)
    source = rng.normal(size=(3, 2000))
    formants = np.array([[500.0, 1500.0, 2500.0, 3300.0], [300.0, 2200.0, 2900.0, 3500.0],
                         [700.0, 1100.0, 2400.0, 3300.0]])
    bandwidths = np.array([[60.0, 90.0, 150.0, 250.0]] * 3)
    n_ctrl = 2000 // synth.CONTROL_HOP + 2
    got = synth.formant_cascade(source, np.repeat(formants[:, :, None], n_ctrl, 2),
                                np.repeat(bandwidths[:, :, None], n_ctrl, 2))
    for i in range(3):
        expected = source[i]
        for f, b in zip(formants[i], bandwidths[i], strict=True):
            # written out from the resonance: poles r e^{+-i theta}, unity gain at 0 Hz
            r, theta = math.exp(-math.pi * b / SR), 2 * math.pi * f / SR
            den = [1.0, -2 * r * math.cos(theta), r * r]
            expected = signal.lfilter([sum(den)], den, expected)
        np.testing.assert_allclose(got[i], expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize(("frequency", "bandwidth"), [(500.0, 60.0), (1500.0, 90.0),
                                                      (2500.0, 150.0)])
def test_a_resonator_peaks_at_its_formant_with_its_bandwidth(frequency, bandwidth):
    a, b, c = (float(x) for x in synth.resonator_coefficients(frequency, bandwidth))
    freqs, response = signal.freqz([a], [1.0, -b, -c], worN=2**15, fs=SR)
    gain = np.abs(response)
    assert gain[0] == pytest.approx(1.0, rel=1e-9)  # unity gain at 0 Hz
    assert freqs[np.argmax(gain)] == pytest.approx(frequency, rel=0.02)
    above_half_power = freqs[gain >= gain.max() / math.sqrt(2)]
    assert above_half_power[-1] - above_half_power[0] == pytest.approx(bandwidth, rel=0.1)


def autocorrelation_pitch(x: np.ndarray) -> float:
    """Pitch (Hz) of a voiced stretch: the strongest autocorrelation lag in 60-400 Hz."""
    x = x - x.mean()
    corr = np.correlate(x, x, mode="full")[len(x) - 1:]
    lo, hi = SR // 400, SR // 60
    return SR / (lo + int(np.argmax(corr[lo:hi])))


@pytest.mark.parametrize("pitch", [100.0, 180.0])
def test_the_pitch_of_a_vowel_is_the_speakers_pitch(pitch):
    waves, spans = speak([("ah", "ah", "ah")], [voice(pitch)])
    start, stop = spans[0]
    middle = waves[0][start + (stop - start) // 3: start + 2 * (stop - start) // 3]
    # the contour falls from 1.05 to 0.88 of the speaker's pitch over the word
    assert autocorrelation_pitch(middle) == pytest.approx(pitch * 0.965, rel=0.04)


def spectral_centroid(x: np.ndarray) -> float:
    freqs, power = signal.welch(x, fs=SR, nperseg=256)
    return float((freqs * power).sum() / power.sum())


def test_a_shorter_vocal_tract_raises_the_spectrum():
    waves, spans = speak([("ah", "ah")] * 2, [voice(120.0, 0.9), voice(120.0, 1.2)])
    low, high = (spectral_centroid(w[s:e]) for w, (s, e) in zip(waves, spans, strict=True))
    assert high > low * 1.15


def test_vowels_and_fricatives_put_their_energy_where_phonetics_says():
    waves, spans = speak([("iy",), ("uw",), ("s", "ah")], [voice()] * 3)

    def band_ratio(w, lo, hi):
        freqs, power = signal.welch(w, fs=SR, nperseg=256)
        return power[(freqs >= lo) & (freqs < hi)].sum() / power.sum()

    iy, uw = (w[a:b] for w, (a, b) in zip(waves[:2], spans[:2], strict=True))
    start = spans[2][0]
    s = waves[2][start + SR // 50: start + SR // 10]  # inside the 0.14 s of /s/
    assert band_ratio(iy, 1900, 3200) > 3 * band_ratio(uw, 1900, 3200)  # F2/F3 of /i/ high
    assert band_ratio(s, 2500, 4000) > 0.8  # /s/: high-frequency noise
    assert band_ratio(iy, 0, 2500) > 0.5


def test_outside_its_span_a_clip_holds_only_the_noise_floor_and_needs_no_other_clip():
    speakers = [synth.random_speaker(f"s{i}", np.random.default_rng(i)) for i in range(3)]
    words = [synth.WORDS[d] for d in (3, 6, 9)]
    rngs = [np.random.default_rng([7, i]) for i in range(3)]
    together, spans = synth.synthesize(words, speakers, rngs, n_samples=SR, chunk=3)
    alone, _ = synth.synthesize(words[1:2], speakers[1:2], [np.random.default_rng([7, 1])],
                                n_samples=SR)
    np.testing.assert_array_equal(together[1], alone[0])
    low, high = synth.Variation().floor_db
    for wave, (start, stop) in zip(together.astype(np.float64), spans, strict=True):
        assert 0 <= start < stop <= SR
        word = np.sqrt(np.mean(wave[start:stop] ** 2))
        assert word == pytest.approx(synth.TARGET_RMS, rel=0.5)  # +-3 dB random gain
        outside = np.concatenate([wave[:start], wave[stop:]])
        floor_db = 20 * np.log10(word / np.sqrt(np.mean(outside ** 2)))
        assert low - 1.0 < floor_db < high + 1.0
        assert np.abs(wave).max() <= 1.0


def test_synthesizer_bad_input_is_refused():
    with pytest.raises(ValueError, match="unknown phone"):
        speak([("ah", "qq")], [voice()])
    with pytest.raises(ValueError, match="one speaker and one generator per word"):
        synth.synthesize([("ah",)], [voice(), voice()], [np.random.default_rng(0)],
                         n_samples=SR)
    with pytest.raises(ValueError, match="digits must be 0-9"):
        synth.speak_digits([10], [voice()], [np.random.default_rng(0)], n_samples=SR)
    with pytest.raises(ValueError, match="formant targets"):
        speak([("s", "t")], [voice()])


# --- the dataset: a real test of hearing, and of seeing ----------------------------------

@pytest.fixture(scope="module")
def dataset():
    """Twelve training voices, six unseen test voices (three utterances of each word)."""
    return build_dataset("synthetic", train_speakers=12, val_speakers=2, test_speakers=6,
                         repetitions=3, train_pairs=360, val_pairs=60, test_pairs=180)


def clip_features(dataset, split_name: str, snr: float, seed: int = 0):
    """Flattened log-mel frames of every clip of a split, with white noise at ``snr``."""
    split = dataset.splits[split_name]
    clips = torch.arange(len(split.waveforms))
    batch = make_batch(split, dataset.features, clips, torch.zeros_like(clips),
                       audio_snr=snr, generator=torch.Generator().manual_seed(seed))
    return batch.audio.flatten(1).numpy(), batch.audio_digit.numpy()


@pytest.fixture(scope="module")
def hearing(dataset) -> dict[str, float]:
    """Word accuracy on the unseen test speakers: clean, and at 0 dB (trained clean, and
    trained at 0 dB too)."""
    clean_train, clean_test = (clip_features(dataset, s, math.inf) for s in ("train", "test"))
    noisy_train, noisy_test = (clip_features(dataset, s, 0.0, i)
                               for i, s in enumerate(("train", "test")))
    return {"clean": fit_score(*clean_train, *clean_test),
            "0 dB, trained clean": fit_score(*clean_train, *noisy_test),
            "0 dB, trained at 0 dB": fit_score(*noisy_train, *noisy_test)}


def test_words_of_unseen_speakers_are_recognised_from_clean_log_mel_frames(hearing):
    assert hearing["clean"] >= 0.9, hearing


def test_at_0_db_recognition_is_clearly_worse(hearing):
    assert hearing["0 dB, trained at 0 dB"] <= hearing["clean"] - 0.05, hearing
    assert hearing["0 dB, trained clean"] <= hearing["clean"] - 0.3, hearing
    assert hearing["0 dB, trained at 0 dB"] > 0.3, hearing  # degraded, not destroyed


def voice_spectra(dataset, split_name: str) -> np.ndarray:
    """Each clip's long-term spectrum: its log-mel values averaged over the speech frames
    (those within 20 dB of the clip's loudest), where the voice shows whatever the timing."""
    log_mel = dataset.features.log_mel(dataset.splits[split_name].waveforms).double().numpy()
    energy_db = 10.0 * np.log10(np.exp(log_mel).sum(axis=1))  # (clips, frames)
    speech = energy_db > energy_db.max(axis=1, keepdims=True) - 20.0
    return np.stack([clip[:, frames].mean(axis=1)
                     for clip, frames in zip(log_mel, speech, strict=True)])


def test_the_same_word_differs_across_speakers(dataset):
    split = dataset.splits["train"]
    spectra = voice_spectra(dataset, "train")
    digits, speakers = split.clip_digit.numpy(), split.clip_speaker.numpy()
    within, across = [], []  # distances from one utterance to the same word...
    for digit in range(10):
        for s in np.unique(speakers):
            mine = spectra[(digits == digit) & (speakers == s)]
            others = spectra[(digits == digit) & (speakers != s)]
            within.append(np.linalg.norm(mine[0] - mine[1:], axis=1).mean())  # ...same voice
            across.append(np.linalg.norm(mine[0] - others, axis=1).mean())  # ...other voices
    assert np.mean(across) > 1.3 * np.mean(within)
    # and the voice can be recognised: train on two repetitions of every word, test on the
    # third, from the long-term spectrum and from the model's own input frames
    reps = np.array([int(source.rsplit("/", 1)[1]) for source in split.clip_source])
    first, chance = reps < 2, 1.0 / len(split.speakers)
    assert fit_score(spectra[first], speakers[first], spectra[~first], speakers[~first],
                     strength=1.0) > 5 * chance
    frames = split.audio_clean.flatten(1).numpy()
    assert fit_score(frames[first], speakers[first], frames[~first], speakers[~first]) \
        > 2 * chance


def test_held_out_images_are_classifiable_from_their_pixels(dataset):
    train, test = dataset.splits["train"], dataset.splits["test"]
    accuracy = fit_score(train.images.flatten(1).numpy(), train.image_digit.numpy(),
                         test.images.flatten(1).numpy(), test.image_digit.numpy())
    assert accuracy >= 0.75


def test_images_are_the_real_sklearn_digits_with_a_small_jitter(dataset):
    from sklearn.datasets import load_digits

    images = load_digits().images / 16.0
    test = dataset.splits["test"]
    index = [int(source.split("/")[1]) for source in test.image_source]
    np.testing.assert_array_equal(test.image_digit.numpy(), load_digits().target[index])
    assert 0.0 <= float(test.images.min()) and float(test.images.max()) <= 1.0
    # jittered: not a plain resize, but still close to it (a small affine change)
    unjittered = torch.nn.functional.interpolate(
        torch.tensor(images[index], dtype=torch.float32)[:, None], size=(16, 16),
        mode="bilinear", antialias=True, align_corners=False)[:, 0]
    difference = (test.images - unjittered).abs().mean(dim=(1, 2))
    assert float(difference.min()) > 0.0
    assert float(difference.mean()) < 0.2


def test_no_jitter_means_a_plain_resize():
    images = torch.rand(4, 16, 16)
    same = jitter_images(images, np.random.default_rng(0), rotation=0.0, scale=0.0, shift=0.0)
    torch.testing.assert_close(same, images, atol=1e-5, rtol=0)


# --- splits, ids, sizes ------------------------------------------------------------------

def test_splits_are_disjoint_in_speakers_clips_and_images(dataset):
    splits = dataset.splits
    speakers = [set(s.speakers) for s in splits.values()]
    images = [{source.split("/")[1] for source in s.image_source} for s in splits.values()]
    clips = [set(s.clip_source) for s in splits.values()]
    for group in (speakers, images, clips):
        for i in range(3):
            for j in range(i + 1, 3):
                assert not group[i] & group[j]
    assert [len(s.speakers) for s in splits.values()] == [12, 2, 6]


def test_ids_are_stable_readable_and_unique(dataset):
    for split in dataset.splits.values():
        assert len(set(split.clip_source)) == len(split.clip_source)
        assert len(set(split.image_source)) == len(split.image_source)
        for source, digit, speaker in zip(split.clip_source, split.clip_digit.tolist(),
                                          split.clip_speaker.tolist(), strict=True):
            assert re.fullmatch(rf"synth/{split.speakers[speaker]}/{digit}/[0-9]+", source)
        assert all(re.fullmatch(r"digits/[0-9]+/[0-9]+", s) for s in split.image_source)


def test_every_speaker_says_every_digit_equally_often(dataset):
    for split in dataset.splits.values():
        table = np.zeros((len(split.speakers), 10), dtype=int)
        np.add.at(table, (split.clip_speaker.numpy(), split.clip_digit.numpy()), 1)
        assert (table == 3).all()


def test_shapes_sizes_pairs_and_clip_power(dataset):
    assert dataset.timesteps == 8 and dataset.frame_shape == (16, 16)
    assert dataset.sample_rate == SR
    for name, n_pairs in (("train", 360), ("val", 60), ("test", 180)):
        split = dataset.splits[name]
        assert len(split) == n_pairs
        assert split.waveforms.shape[1] == SR and split.images.shape[1:] == (16, 16)
        assert split.audio_clean.shape == (len(split.waveforms), 8, 1, 16, 16)
        assert torch.equal(split.clip_digit[split.pair_audio],
                           split.image_digit[split.pair_visual])
        # a clip can be remade on its own, and its power is that of the utterance only
        number = int(split.speakers[0][3:])
        speaker = speaker_roster(SyntheticConfig(**dataset.config))[name][0]
        waves, spans = synth.speak_digits([0], [speaker], [clip_rng(0, number, 0, 0)],
                                          n_samples=SR)
        assert split.clip_source[0] == f"synth/{speaker.name}/0/0"
        np.testing.assert_array_equal(split.waveforms[0].numpy(), waves[0])
        start, stop = spans[0]
        assert float(split.clip_power[0]) == pytest.approx(
            np.mean(waves[0][start:stop].astype(np.float64) ** 2), rel=1e-6)


def test_features_are_fitted_on_the_training_clips(dataset):
    train = dataset.splits["train"]
    refit = LogMelFrames(SR, SR, 8, 16, 16).fit(train.waveforms)
    assert dataset.features.mean == pytest.approx(refit.mean)
    assert dataset.features.std == pytest.approx(refit.std)
    torch.testing.assert_close(train.audio_clean[:5], dataset.features(train.waveforms[:5]))


def test_the_grid_is_a_parameter():
    data = build_dataset("synthetic", timesteps=5, height=12, width=10, **TINY)
    assert data.timesteps == 5 and data.frame_shape == (12, 10)
    batch = make_batch(data.splits["val"], data.features, data.splits["val"].pair_audio,
                       data.splits["val"].pair_visual)
    assert batch.audio.shape == batch.visual.shape == (10, 5, 1, 12, 10)


# --- determinism and configuration -------------------------------------------------------

@pytest.fixture(scope="module")
def tiny():
    return build_dataset("synthetic", seed=11, **TINY)


def test_the_config_is_json_and_rebuilds_the_identical_dataset(tiny):
    config = json.loads(json.dumps(tiny.config))
    assert config["seed"] == 11 and config["timesteps"] == 8 and config["width"] == 16
    assert SyntheticConfig.from_dict(config).to_dict() == config
    again = build_dataset("synthetic", **config)
    assert again.fingerprint() == tiny.fingerprint()
    for name, split in tiny.splits.items():
        other = again.splits[name]
        for field in ("waveforms", "images", "audio_clean", "pair_audio", "pair_visual"):
            assert torch.equal(getattr(split, field), getattr(other, field))
        assert split.clip_source == other.clip_source


# Builds the default dataset; prints its fingerprint and a hash of the raw waveform bytes.
FINGERPRINT = """
import hashlib
from repsim.data import build_dataset
data = build_dataset("synthetic", repetitions=1, train_speakers=4)  # a third of the default
raw = hashlib.sha256(b"".join(s.waveforms.numpy().tobytes() for s in data.splits.values()))
print(data.fingerprint().replace(" ", "|"), raw.hexdigest())
"""


def test_fingerprint_is_the_same_on_a_cpu_without_avx512():
    """numpy without its AVX-512 paths (as on an AVX2 machine) synthesises a few samples
    differently in the last bits; a checkpoint trained on one must accept the other's data."""
    try:  # the CPU features numpy dispatches on (not public API, hence the guard)
        from numpy._core._multiarray_umath import __cpu_features__ as cpu_features
    except ImportError:
        pytest.skip("this numpy does not list its CPU features")
    if not cpu_features.get("AVX512_ICL"):
        pytest.skip("this CPU has no AVX-512 paths to switch off")

    def run(disabled: str) -> list[str]:
        env = {**os.environ, "NPY_DISABLE_CPU_FEATURES": disabled}
        return subprocess.run([sys.executable, "-c", FINGERPRINT], env=env, check=True,
                              capture_output=True, text=True).stdout.split()

    (fingerprint_v4, raw_v4), (fingerprint_v3, raw_v3) = (
        [words[0].replace("|", " "), words[1]] for words in (run(""), run("X86_V4 AVX512_ICL")))
    if raw_v4 == raw_v3:
        pytest.skip("numpy gives identical bits on both paths on this CPU")
    assert fingerprint_difference(fingerprint_v4, fingerprint_v3) is None


# A small dataset resized to 20 x 24 (torch's antialiased resize), its fingerprint and a hash
# of the raw image bytes.
RESIZED = """
import hashlib
from repsim.data import build_dataset
data = build_dataset("synthetic", height=20, width=24, train_speakers=2, val_speakers=1,
                     test_speakers=2, repetitions=1, train_pairs=10, val_pairs=10,
                     test_pairs=10)
raw = hashlib.sha256(b"".join(s.images.numpy().tobytes() for s in data.splits.values()))
print(data.fingerprint().replace(" ", "|"), raw.hexdigest())
"""


def test_fingerprint_is_the_same_with_torch_kernels_of_another_cpu():
    """torch's resize without vector instructions (as on a CPU torch has no kernels for)
    differs by about 1e-6 in a quarter of the image values: the same data all the same."""
    def run(capability: str) -> list[str]:
        env = {**os.environ, "ATEN_CPU_CAPABILITY": capability}
        words = subprocess.run([sys.executable, "-c", RESIZED], env=env, check=True,
                               capture_output=True, text=True).stdout.split()
        return [words[0].replace("|", " "), words[1]]

    (vector, raw_vector), (plain, raw_plain) = run("avx2"), run("default")
    if raw_vector == raw_plain:
        pytest.skip("torch gives identical bits with and without its vector kernels here")
    assert fingerprint_difference(vector, plain) is None


def test_a_different_seed_gives_a_different_dataset(tiny):
    other = build_dataset("synthetic", seed=12, **TINY)
    assert other.fingerprint() != tiny.fingerprint()
    assert not torch.equal(other.splits["train"].waveforms, tiny.splits["train"].waveforms)
    assert not torch.equal(other.splits["train"].images, tiny.splits["train"].images)


def test_a_clip_does_not_depend_on_unrelated_options(tiny):
    more = build_dataset("synthetic", seed=11, **{**TINY, "train_pairs": 50, "repetitions": 2,
                                                  "test_speakers": 2, "height": 12})
    a, b = tiny.splits["train"], more.splits["train"]
    position = b.clip_source.index(a.clip_source[0])
    assert torch.equal(a.waveforms[0], b.waveforms[position])


def test_distractors_are_other_digits_of_the_split_at_the_asked_snr(tiny):
    mixed = build_dataset("synthetic", seed=11, distractor_snr=3.0, **TINY)
    for name, clean in tiny.splits.items():
        split = mixed.splits[name]
        assert torch.equal(split.clip_digit, clean.clip_digit)
        assert torch.equal(split.clip_power, clean.clip_power)  # the target's, for test noise
        assert torch.equal(split.images, clean.images)
        for index, source in enumerate(split.clip_source):
            target, rest = source.split("+")
            partner_source, snr = rest.split("@")
            assert target == clean.clip_source[index] and snr == "3dB"
            partner = clean.clip_source.index(partner_source)
            assert clean.clip_digit[partner] != clean.clip_digit[index]
            residual = (split.waveforms[index] - clean.waveforms[index]).double()
            partner_wave = clean.waveforms[partner].double()
            gain = float(residual @ partner_wave / (partner_wave @ partner_wave))
            torch.testing.assert_close(residual, gain * partner_wave, rtol=0, atol=1e-6)
            ratio_db = 10 * math.log10(float(clean.clip_power[index])
                                       / (gain**2 * float(clean.clip_power[partner])))
            assert ratio_db == pytest.approx(3.0, abs=1e-3)


@pytest.mark.parametrize(("options", "message"), [
    ({"no_such_option": 1}, "no_such_option"),
    ({"train_speakers": 0}, "train_speakers must be a positive integer"),
    ({"repetitions": 1.5}, "repetitions must be a positive integer"),
    ({"timesteps": -2}, "timesteps must be a positive integer or None"),
    ({"seed": -1}, "seed must be a non-negative integer"),
    ({"image_test_fraction": 0.9}, "leave at least 10 % for training"),
    ({"rotation": 90}, "jitter out of range"),
    ({"duration": 0.1}, "duration must be between"),
    ({"distractor_snr": "loud"}, "distractor_snr must be None or a number of dB"),
    ({"distractor_snr": 100.0}, "distractor_snr must be None or a number of dB"),
])
def test_bad_options_are_refused_with_the_option_named(options, message):
    with pytest.raises(ValueError, match=message):
        build_dataset("synthetic", **options)


def test_an_unknown_dataset_name_lists_the_choices():
    with pytest.raises(ValueError, match="unknown dataset 'synth'; choose one of: avmnist, "
                                         "folder, synthetic"):
        build_dataset("synth")
