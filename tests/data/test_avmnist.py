"""The avmnist builder: real FSDD + mnist-mini (counts, labels, splits), options, bad input."""

from __future__ import annotations

import gzip
import json
import re

import numpy as np
import pytest
import torch
from avdata_files import write_idx, write_mini_avmnist
from scipy.io import wavfile

from repsim.data import build_dataset, make_batch
from repsim.data.avmnist import build
from repsim.data.download import ENV_DATA_DIR, ENV_MIRROR, ENV_OFFLINE
from repsim.data.features import LogMelFrames

SPLITS = ("train", "val", "test")


@pytest.fixture(autouse=True)
def _no_ambient_settings(monkeypatch):
    for name in (ENV_DATA_DIR, ENV_MIRROR, ENV_OFFLINE):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def real(shared_data):
    """avmnist built once from the shared folder (mnist-mini + the 3,000 FSDD clips)."""
    return build(data_dir=shared_data, download=False)


@pytest.fixture
def mini(tmp_path):
    """A tiny generated data root: 100/50 images, 2 speakers x 10 digits x 12 clips."""
    return write_mini_avmnist(tmp_path / "data")


def _raw_idx(path, header):
    return np.frombuffer(gzip.decompress(path.read_bytes())[header:], np.uint8)


# --- real data ---------------------------------------------------------------------------

def test_real_split_sizes_follow_the_official_fsdd_split_and_mnist_files(real):
    clips = {name: len(real.splits[name].waveforms) for name in SPLITS}
    images = {name: len(real.splits[name].images) for name in SPLITS}
    assert clips == {"train": 2400, "val": 300, "test": 300}
    assert clips["train"] + clips["val"] == 2700
    assert images == {"train": 7200, "val": 800, "test": 2000}
    assert images["train"] + images["val"] == 8000
    for name in SPLITS:
        assert len(real.splits[name]) == images[name]  # one pair per image by default


def test_real_clip_digits_speakers_and_splits_come_from_the_file_names(real, shared_data):
    stems = {p.stem for p in (shared_data / "fsdd" / "recordings").glob("*.wav")}
    seen = set()
    index_range = {"test": range(0, 5), "val": range(5, 10), "train": range(10, 50)}
    for name in SPLITS:
        split = real.splits[name]
        assert split.speakers == ["george", "jackson", "lucas", "nicolas", "theo", "yweweler"]
        counts = np.zeros((10, 6), dtype=int)
        for source, digit, speaker in zip(split.clip_source, split.clip_digit.tolist(),
                                          split.clip_speaker.tolist(), strict=True):
            d, spk, index = re.fullmatch(r"fsdd/(\d)_([a-z]+)_(\d+)", source).groups()
            assert (int(d), spk) == (digit, split.speakers[speaker])
            assert int(index) in index_range[name]
            counts[digit, speaker] += 1
            seen.add(source.removeprefix("fsdd/"))
        assert (counts == len(index_range[name])).all()
    assert seen == stems


def test_real_images_and_labels_match_the_idx_files(real, shared_data):
    mnist = shared_data / "mnist-mini"
    for prefix, names in (("train", ("train", "val")), ("t10k", ("test",))):
        pixels = _raw_idx(mnist / f"{prefix}-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28)
        labels = _raw_idx(mnist / f"{prefix}-labels-idx1-ubyte.gz", 8)
        rows = []
        for name in names:
            split = real.splits[name]
            rows_here = [int(s.rsplit("/", 1)[1]) for s in split.image_source]
            assert all(s.startswith("mnist/train/" if prefix == "train" else "mnist/test/")
                       for s in split.image_source)
            np.testing.assert_array_equal(split.image_digit.numpy(), labels[rows_here])
            np.testing.assert_allclose(split.images.numpy(), pixels[rows_here] / 255.0,
                                       rtol=0, atol=1e-7)
            rows += rows_here
        assert rows == list(range(len(labels)))  # train then val in file order, nothing lost
    assert real.splits["val"].image_source[0] == "mnist/train/7200"


def test_real_waveforms_are_the_clips_cut_or_padded_to_one_second(real, shared_data):
    split = real.splits["test"]
    for i in (0, 57, 299):
        rate, samples = wavfile.read(shared_data / "fsdd" / "recordings"
                                     / f"{split.clip_source[i].removeprefix('fsdd/')}.wav")
        clip = samples[:8000].astype(np.float64) / 32768.0
        expected = np.zeros(8000)
        expected[:len(clip)] = clip
        np.testing.assert_allclose(split.waveforms[i].numpy(), expected, rtol=0, atol=1e-7)
        assert split.clip_power[i].item() == pytest.approx(np.mean(clip**2), rel=1e-5)


def test_real_pairs_are_congruent_and_use_every_clip(real):
    for name in SPLITS:
        split = real.splits[name]
        assert torch.equal(split.clip_digit[split.pair_audio], split.image_digit[split.pair_visual])
        assert set(split.pair_audio.tolist()) == set(range(len(split.waveforms)))


def test_real_cached_features_match_the_fitted_transform(real):
    assert real.timesteps == 10 and real.frame_shape == (28, 28)
    for name in SPLITS:
        split = real.splits[name]
        assert split.audio_clean.shape == (len(split.waveforms), 10, 1, 28, 28)
        torch.testing.assert_close(split.audio_clean[:16], real.features(split.waveforms[:16]),
                                   rtol=1e-5, atol=1e-5)


def test_real_batches_have_the_model_input_shapes(real):
    split = real.splits["val"]
    index = torch.arange(16)
    batch = make_batch(split, real.features, split.pair_audio[index], split.pair_visual[index],
                       audio_snr=0.0, generator=torch.Generator().manual_seed(0))
    assert batch.audio.shape == batch.visual.shape == (16, 10, 1, 28, 28)
    assert torch.equal(batch.audio_digit, batch.visual_digit)


# --- generated data: options, determinism, bad input ---------------------------------------

def test_same_seed_same_dataset_other_seed_other_pairs(mini):
    first, again = build(data_dir=mini, seed=3), build(data_dir=mini, seed=3)
    assert first.fingerprint() == again.fingerprint()
    for name in SPLITS:
        assert torch.equal(first.splits[name].audio_clean, again.splits[name].audio_clean)
    other = build(data_dir=mini, seed=4)
    assert other.fingerprint() != first.fingerprint()
    assert other.splits["train"].clip_source == first.splits["train"].clip_source
    assert not torch.equal(other.splits["train"].pair_visual, first.splits["train"].pair_visual)


def test_features_are_fitted_on_the_train_clips_only(mini):
    dataset = build(data_dir=mini, timesteps=4, height=16, width=12)
    train = dataset.splits["train"]
    reference = LogMelFrames(sample_rate=8000, n_samples=8000, timesteps=4, height=16,
                             width=12).fit(train.waveforms)
    assert dataset.features.mean == pytest.approx(reference.mean, rel=1e-9)
    assert dataset.features.std == pytest.approx(reference.std, rel=1e-9)
    for name in SPLITS:
        split = dataset.splits[name]
        torch.testing.assert_close(split.audio_clean, reference(split.waveforms),
                                   rtol=1e-5, atol=1e-5)


def test_config_round_trips_through_json_and_the_registry(mini):
    dataset = build(data_dir=mini, seed=1, timesteps=4, height=16, width=12)
    rebuilt = build_dataset("avmnist", **json.loads(json.dumps(dataset.config)))
    assert rebuilt.fingerprint() == dataset.fingerprint()
    assert rebuilt.config == dataset.config


def test_grid_options_shape_audio_and_images(mini):
    dataset = build(data_dir=mini, timesteps=4, height=16, width=12)
    split = dataset.splits["train"]
    assert split.audio_clean.shape[1:] == (4, 1, 16, 12)
    assert split.images.shape[1:] == (16, 12)
    assert dataset.frame_shape == (16, 12) and dataset.timesteps == 4


def test_split_options_and_pair_counts(mini):
    dataset = build(data_dir=mini, val_clip_indices=2, val_fraction=0.2, pairs_per_image=3)
    sizes = {name: (len(dataset.splits[name].waveforms), len(dataset.splits[name].images),
                    len(dataset.splits[name])) for name in SPLITS}
    # 12 indices per digit and speaker: 0-4 test, 5-6 val, 7-11 train; 100 train-file images.
    assert sizes == {"train": (100, 80, 240), "val": (40, 20, 60), "test": (100, 50, 150)}


def test_long_clips_are_cropped_and_short_ones_padded(mini):
    dataset = build(data_dir=mini)
    split = dataset.splits["train"]
    for i in range(len(split.waveforms)):
        _, samples = wavfile.read(mini / "fsdd" / "recordings"
                                  / f"{split.clip_source[i].removeprefix('fsdd/')}.wav")
        kept = samples[:8000].astype(np.float64) / 32768.0
        assert split.clip_power[i].item() == pytest.approx(np.mean(kept**2), rel=1e-5)
        assert not split.waveforms[i, len(kept):].any()


def test_non_audio_file_among_the_wavs_is_named(mini):
    bad = mini / "fsdd" / "recordings" / "4_alice_20.wav"
    bad.write_text("not audio")
    with pytest.raises(ValueError, match=r"4_alice_20\.wav is not a readable WAV file"):
        build(data_dir=mini)


def test_wav_with_an_unexpected_name_is_named(mini):
    (mini / "fsdd" / "recordings" / "take1.wav").write_bytes(
        (mini / "fsdd" / "recordings" / "0_bob_0.wav").read_bytes())
    with pytest.raises(ValueError, match=r"take1\.wav does not follow FSDD's"):
        build(data_dir=mini)


def test_directory_without_the_expected_files(tmp_path):
    (tmp_path / "unrelated.txt").write_text("hello")
    with pytest.raises(FileNotFoundError) as caught:
        build(data_dir=tmp_path, download=False)
    message = str(caught.value)
    assert "mnist/train-images-idx3-ubyte.gz" in message and "fsdd/recordings/*.wav" in message
    assert str(tmp_path) in message
    assert all(name in message for name in (ENV_DATA_DIR, ENV_MIRROR, ENV_OFFLINE))


def test_missing_idx_in_the_data_dir_is_named(mini):
    (mini / "mnist" / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match=r"missing mnist/train-labels-idx1-ubyte\.gz in"):
        build(data_dir=mini, download=False)


def test_truncated_idx_in_the_data_dir_is_named(mini):
    path = mini / "mnist" / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte is truncated"):
        build(data_dir=mini, download=False)


def test_labels_that_do_not_match_the_images_are_refused(mini):
    write_idx(mini / "mnist" / "t10k-labels-idx1-ubyte", np.zeros(49, np.uint8), gzipped=False)
    with pytest.raises(ValueError, match=r"t10k-labels-idx1-ubyte holds \(49,\) labels for the "
                                         r"50 images"):
        build(data_dir=mini)


def test_an_empty_split_is_refused(mini):
    for path in (mini / "fsdd" / "recordings").glob("*_[0-4].wav"):
        path.unlink()
    with pytest.raises(ValueError, match="the test split of avmnist would be empty: 0 clips"):
        build(data_dir=mini)


@pytest.mark.parametrize(("options", "message"), [
    ({"val_fraction": 0.0}, "val_fraction must be between 0 and 1"),
    ({"val_clip_indices": 0}, "val_clip_indices must be at least 1"),
    ({"pairs_per_image": -1}, "pairs_per_image must be positive"),
    ({"timesteps": 0}, "timesteps must be positive"),
])
def test_bad_options_are_refused(mini, options, message):
    with pytest.raises(ValueError, match=message):
        build(data_dir=mini, **options)
