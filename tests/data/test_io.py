"""IDX and WAV readers: sizes from the files, real MNIST/FSDD, resampling, damaged files."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
from avdata_files import idx_bytes, write_idx
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.io import wavfile
from scipy.signal import resample_poly

from repsim.data.io import read_idx, read_wav


@settings(max_examples=25, deadline=None)
@given(dtype=st.sampled_from(["u1", "i1", "i2", "i4", "f4", "f8"]),
       shape=st.lists(st.integers(0, 5), min_size=1, max_size=4),
       gzipped=st.booleans(), seed=st.integers(0, 2**16))
def test_idx_round_trip_any_type_and_shape(tmp_path_factory, dtype, shape, gzipped, seed):
    rng = np.random.default_rng(seed)
    array = (rng.normal(0, 50, size=shape)).astype(dtype)
    path = write_idx(tmp_path_factory.mktemp("idx") / "a.idx", array, gzipped)
    result = read_idx(path)
    assert result.dtype == np.dtype(dtype) and result.shape == tuple(shape)
    np.testing.assert_array_equal(result, array)


def test_real_mnist_idx_matches_a_direct_parse(shared_data):
    images_path = shared_data / "mnist-mini" / "t10k-images-idx3-ubyte.gz"
    labels_path = shared_data / "mnist-mini" / "t10k-labels-idx1-ubyte.gz"
    images, labels = read_idx(images_path), read_idx(labels_path)
    raw_images = gzip.decompress(images_path.read_bytes())
    raw_labels = gzip.decompress(labels_path.read_bytes())
    assert int.from_bytes(raw_images[:4], "big") == 2051
    assert int.from_bytes(raw_labels[:4], "big") == 2049
    n = int.from_bytes(raw_images[4:8], "big")
    assert images.shape == (n, 28, 28) == (2000, 28, 28) and labels.shape == (n,)
    np.testing.assert_array_equal(images.ravel(), np.frombuffer(raw_images[16:], np.uint8))
    np.testing.assert_array_equal(labels, np.frombuffer(raw_labels[8:], np.uint8))


def test_raw_and_gzipped_idx_read_the_same(shared_data, tmp_path):
    gz = shared_data / "mnist-mini" / "t10k-labels-idx1-ubyte.gz"
    raw = tmp_path / "t10k-labels-idx1-ubyte"
    raw.write_bytes(gzip.decompress(gz.read_bytes()))
    np.testing.assert_array_equal(read_idx(raw), read_idx(gz))


def test_missing_idx_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte.gz"):
        read_idx(tmp_path / "train-images-idx3-ubyte.gz")


def test_truncated_idx_is_refused_naming_the_file(tmp_path):
    data = idx_bytes(np.arange(600, dtype=np.uint8).reshape(6, 10, 10))
    path = tmp_path / "cut-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(data[:-7]))
    with pytest.raises(ValueError, match=r"cut-images-idx3-ubyte\.gz is truncated"):
        read_idx(path)


def test_truncated_gzip_stream_is_refused_naming_the_file(tmp_path):
    compressed = gzip.compress(idx_bytes(np.zeros((50, 28, 28), np.uint8)))
    path = tmp_path / "half.gz"
    path.write_bytes(compressed[: len(compressed) // 2])
    with pytest.raises(ValueError, match=r"half\.gz is a damaged gzip file"):
        read_idx(path)


def test_corrupt_idx_bad_magic_is_refused(tmp_path):
    data = bytearray(idx_bytes(np.zeros((3, 4), np.uint8)))
    data[2] = 0x42  # not a known type code
    path = tmp_path / "bad-magic.idx"
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"bad-magic\.idx is not an IDX file: bad magic"):
        read_idx(path)


def test_idx_with_trailing_bytes_is_refused(tmp_path):
    path = tmp_path / "long.idx"
    path.write_bytes(idx_bytes(np.zeros(10, np.uint8)) + b"\x00\x01")
    with pytest.raises(ValueError, match=r"long\.idx is corrupt: 2 bytes after"):
        read_idx(path)


def test_real_fsdd_clip_reads_as_scaled_int16(shared_data):
    path = shared_data / "fsdd" / "recordings" / "3_theo_2.wav"
    rate, samples = wavfile.read(path)
    assert rate == 8000 and samples.dtype == np.int16
    waveform = read_wav(path, 8000)
    assert waveform.dtype == np.float32
    np.testing.assert_allclose(waveform, samples / 32768.0, rtol=0, atol=1e-7)


def test_stereo_16khz_is_mixed_down_and_resampled_like_scipy(tmp_path):
    t = np.arange(16000) / 16000
    left = 0.5 * np.sin(2 * np.pi * 440 * t)
    right = 0.3 * np.sin(2 * np.pi * 1000 * t + 0.3)
    stereo = np.round(np.stack([left, right], axis=1) * 32767).astype(np.int16)
    path = tmp_path / "stereo.wav"
    wavfile.write(path, 16000, stereo)
    waveform = read_wav(path, 8000)
    mono = stereo.astype(np.float64).mean(axis=1) / 32768.0
    expected = resample_poly(mono, 1, 2)
    assert waveform.shape == (8000,) and waveform.dtype == np.float32
    np.testing.assert_allclose(waveform, expected, rtol=0, atol=1e-6)
    # The 440 Hz tone keeps its frequency: the spectral peak of the result is at 440 Hz.
    spectrum = np.abs(np.fft.rfft(waveform))
    assert np.fft.rfftfreq(8000, 1 / 8000)[spectrum.argmax()] == pytest.approx(440, abs=1)


def test_44k1_float_wav_is_resampled_with_the_reduced_ratio(tmp_path):
    signal = (0.4 * np.sin(2 * np.pi * 300 * np.arange(44100) / 44100)).astype(np.float32)
    path = tmp_path / "cd.wav"
    wavfile.write(path, 44100, signal)
    waveform = read_wav(path, 8000)
    np.testing.assert_allclose(waveform, resample_poly(signal.astype(np.float64), 80, 441),
                               rtol=0, atol=1e-6)


@pytest.mark.parametrize(("dtype", "values", "expected"), [
    ("uint8", [0, 128, 255], [-1.0, 0.0, 127 / 128]),
    ("int16", [-32768, 0, 16384], [-1.0, 0.0, 0.5]),
    ("int32", [-2**31, 0, 2**30], [-1.0, 0.0, 0.5]),
    ("float32", [-1.5, 0.25, 2.0], [-1.0, 0.25, 1.0]),
])
def test_pcm_types_scale_to_unit_range(tmp_path, dtype, values, expected):
    path = tmp_path / f"{dtype}.wav"
    wavfile.write(path, 8000, np.array(values, dtype=dtype))
    np.testing.assert_allclose(read_wav(path, 8000), expected, rtol=0, atol=1e-7)


def test_non_audio_file_is_refused_naming_it(tmp_path):
    path = tmp_path / "5_eve_1.wav"
    path.write_text("this is not audio\n")
    with pytest.raises(ValueError, match=r"5_eve_1\.wav is not a readable WAV file"):
        read_wav(path, 8000)


def test_empty_wav_is_refused(tmp_path):
    path = tmp_path / "empty.wav"
    wavfile.write(path, 8000, np.zeros(0, np.int16))
    with pytest.raises(ValueError, match=r"empty\.wav holds no audio samples"):
        read_wav(path, 8000)


def test_a_wav_cut_short_is_refused_naming_the_file(tmp_path):
    """scipy reads the samples a cut file still holds without a word; a clip cut short in a
    copy or a download would then train as a shorter clip."""
    path = tmp_path / "cut.wav"
    wavfile.write(path, 8000, np.arange(800, dtype=np.int16))
    whole = path.read_bytes()
    assert read_wav(path, 8000).shape == (800,)
    path.write_bytes(whole[:-600])  # 300 of its 800 samples gone
    with pytest.raises(ValueError, match=r"cut\.wav is truncated: its header promises 1,600 "
                                         r"bytes of samples and the file holds 1,000"):
        read_wav(path, 8000)
    unknown = bytearray(whole)  # a streamed WAV: data length 0xFFFFFFFF, "unknown"
    at = unknown.find(b"data")
    unknown[at + 4:at + 8] = b"\xff\xff\xff\xff"
    path.write_bytes(bytes(unknown))
    np.testing.assert_array_equal(read_wav(path, 8000) * 32768, np.arange(800))


def test_missing_wav_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"gone\.wav"):
        read_wav(tmp_path / "gone.wav", 8000)
