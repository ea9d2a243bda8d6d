"""repsim.data.features against independent computations: scipy's STFT, a mel filterbank
written out here in float64, numpy statistics; plus the frame layout and bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import signal

from repsim.data.features import (
    LOG_FLOOR,
    LogMelFrames,
    fix_length,
    hz_to_mel,
    mel_filterbank,
    mel_to_hz,
    resize_images,
)

SR, N_SAMPLES, T, H, W, N_FFT = 8000, 4000, 4, 12, 8, 128


def reference_filterbank(n_mels: int, n_fft: int, sample_rate: int, fmin: float,
                         fmax: float) -> np.ndarray:
    """Triangular HTK-mel filters, one loop per filter and bin, in float64."""
    def mel(f):
        return 2595.0 * math.log10(1.0 + f / 700.0)

    def hz(m):
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)

    lo, hi = mel(fmin), mel(fmax)
    edges = [hz(lo + (hi - lo) * i / (n_mels + 1)) for i in range(n_mels + 2)]
    n_bins = n_fft // 2 + 1
    bank = np.zeros((n_mels, n_bins))
    for m in range(n_mels):
        left, centre, right = edges[m], edges[m + 1], edges[m + 2]
        for k in range(n_bins):
            f = k * sample_rate / n_fft
            if left < f <= centre:
                bank[m, k] = (f - left) / (centre - left)
            elif centre < f < right:
                bank[m, k] = (right - f) / (right - centre)
    return bank


def reference_log_mel(waveform: np.ndarray, n_fft: int, hop: int, n_frames: int,
                      bank: np.ndarray) -> np.ndarray:
    """Centred (reflect-padded), Hann-windowed power STFT via scipy, then mel and log."""
    padded = np.pad(waveform.astype(np.float64), n_fft // 2, mode="reflect")
    window = signal.get_window("hann", n_fft)  # periodic, as for spectral analysis
    _, _, spec = signal.stft(padded, window=window, nperseg=n_fft, noverlap=n_fft - hop,
                             boundary=None, padded=False, detrend=False, scaling="spectrum")
    power = np.abs(spec * window.sum()) ** 2  # undo scipy's 1/sum(window) scaling
    return np.log(bank @ power[:, :n_frames] + LOG_FLOOR)


@pytest.fixture(scope="module")
def waveforms() -> torch.Tensor:
    """A chirp, a tone burst in silence, and white noise: (3, N_SAMPLES) float32."""
    t = np.arange(N_SAMPLES) / SR
    chirp = 0.3 * signal.chirp(t, 100.0, t[-1], 3500.0)
    burst = np.where((t > 0.1) & (t < 0.3), 0.5 * np.sin(2 * np.pi * 440.0 * t), 0.0)
    noise = np.random.default_rng(0).normal(0.0, 0.1, N_SAMPLES)
    return torch.tensor(np.stack([chirp, burst, noise]), dtype=torch.float32)


def test_filterbank_matches_the_written_out_triangles():
    for n_mels, n_fft, fmin, fmax in ((12, 128, 0.0, 4000.0), (40, 512, 50.0, 3000.0)):
        np.testing.assert_allclose(mel_filterbank(n_mels, n_fft, SR, fmin, fmax),
                                   reference_filterbank(n_mels, n_fft, SR, fmin, fmax),
                                   atol=1e-12)


def test_mel_scale_round_trips_and_has_its_textbook_value():
    assert hz_to_mel(1000.0) == pytest.approx(1000.0, abs=0.5)  # HTK: 1000 Hz ~ 1000 mel
    f = np.array([0.0, 123.0, 1000.0, 3999.0])
    np.testing.assert_allclose(mel_to_hz(hz_to_mel(f)), f, atol=1e-9)


def test_log_mel_matches_scipy_stft_and_a_written_out_filterbank(waveforms):
    features = LogMelFrames(SR, N_SAMPLES, T, H, W, n_fft=N_FFT)
    bank = reference_filterbank(H, N_FFT, SR, 0.0, SR / 2)
    got = features.log_mel(waveforms).double().numpy()
    assert got.shape == (3, H, T * W)
    for i, wave in enumerate(waveforms.numpy()):
        expected = reference_log_mel(wave, N_FFT, features.hop, T * W, bank)
        np.testing.assert_allclose(got[i], expected, atol=2e-3, rtol=1e-4)


def test_a_tone_lands_in_the_mel_band_around_its_frequency():
    features = LogMelFrames(SR, N_SAMPLES, T, H, W, n_fft=N_FFT)
    tone = torch.sin(2 * torch.pi * 1000.0 * torch.arange(N_SAMPLES) / SR)[None]
    loudest = int(features.log_mel(tone)[0].mean(dim=1).argmax())
    bank = reference_filterbank(H, N_FFT, SR, 0.0, SR / 2)
    assert loudest == int(np.argmax(bank[:, round(1000.0 * N_FFT / SR)]))


def test_fit_standardises_with_the_statistics_of_the_training_clips(waveforms):
    features = LogMelFrames(SR, N_SAMPLES, T, H, W, n_fft=N_FFT)
    fitted = features.fit(waveforms, batch_size=2)  # batches must not change the statistics
    values = features.log_mel(waveforms).double().numpy()
    assert fitted.mean == pytest.approx(values.mean(), rel=1e-6)
    assert fitted.std == pytest.approx(values.std(), rel=1e-6)
    frames = fitted(waveforms).double().numpy()
    assert frames.mean() == pytest.approx(0.0, abs=1e-5)
    assert frames.std() == pytest.approx(1.0, rel=1e-5)


def test_fit_transform_fits_on_the_chosen_rows_and_transforms_all(waveforms):
    features = LogMelFrames(SR, N_SAMPLES, T, H, W, n_fft=N_FFT)
    rows = torch.zeros(len(waveforms), dtype=torch.bool)
    rows[: len(waveforms) // 2] = True
    fitted, frames = features.fit_transform(waveforms, rows, batch_size=2)
    values = features.log_mel(waveforms[rows]).double().numpy()
    assert fitted.mean == pytest.approx(values.mean(), rel=1e-6)
    assert fitted.std == pytest.approx(values.std(), rel=1e-6)
    torch.testing.assert_close(frames, fitted(waveforms))


def test_frames_are_consecutive_windows_of_the_log_mel_spectrogram(waveforms):
    features = LogMelFrames(SR, N_SAMPLES, T, H, W, n_fft=N_FFT, mean=-2.0, std=3.0)
    frames = features(waveforms)
    assert frames.shape == (3, T, 1, H, W) and frames.dtype == torch.float32
    standardised = (features.log_mel(waveforms) + 2.0) / 3.0
    for t in range(T):
        torch.testing.assert_close(frames[:, t, 0], standardised[:, :, t * W:(t + 1) * W])


def test_the_hop_covers_the_clip_with_t_times_w_frames():
    features = LogMelFrames(SR, N_SAMPLES, T, H, W, n_fft=N_FFT)
    assert features.hop == N_SAMPLES // (T * W)
    assert (T * W - 1) * features.hop <= N_SAMPLES  # the last kept frame starts in the clip


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"timesteps": 0}, "timesteps must be positive"),
    ({"height": -1}, "height must be positive"),
    ({"n_samples": 10}, "too few"),
])
def test_bad_settings_are_refused(kwargs, message):
    settings = {"sample_rate": SR, "n_samples": N_SAMPLES, "timesteps": T, "height": H,
                "width": W, **kwargs}
    with pytest.raises(ValueError, match=message):
        LogMelFrames(**settings)


def test_waveforms_of_the_wrong_shape_are_refused(waveforms):
    features = LogMelFrames(SR, N_SAMPLES, T, H, W, n_fft=N_FFT)
    with pytest.raises(ValueError, match=rf"expected waveforms of shape \(B, {N_SAMPLES}\)"):
        features(waveforms[:, :-1])
    with pytest.raises(ValueError, match="expected waveforms"):
        features(waveforms[0])


def test_filterbank_range_is_checked():
    with pytest.raises(ValueError, match="fmax"):
        mel_filterbank(10, 128, SR, 0.0, 5000.0)
    with pytest.raises(ValueError, match="fmin"):
        mel_filterbank(10, 128, SR, 300.0, 200.0)


def test_fix_length_crops_and_pads_at_the_end():
    wave = np.arange(1, 6, dtype=np.float64)
    np.testing.assert_array_equal(fix_length(wave, 3), [1, 2, 3])
    np.testing.assert_array_equal(fix_length(wave, 7), [1, 2, 3, 4, 5, 0, 0])
    assert fix_length(wave, 7).dtype == np.float32


def test_resize_keeps_constants_and_range_and_copies_same_size_input():
    constant = torch.full((2, 8, 8), 0.25)
    torch.testing.assert_close(resize_images(constant, 16, 12), torch.full((2, 16, 12), 0.25))
    torch.testing.assert_close(resize_images(constant, 4, 4), torch.full((2, 4, 4), 0.25))
    same = resize_images(constant, 8, 8)
    assert same.data_ptr() != constant.data_ptr()
    rng = np.random.default_rng(0)
    small = resize_images(rng.uniform(size=(3, 28, 28)), 7, 7)
    assert small.shape == (3, 7, 7) and 0.0 <= float(small.min()) <= float(small.max()) <= 1.0


def reference_resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights of antialiased bilinear resizing along one axis: a triangle of
    half-width max(scale, 1) input pixels around each output centre, renormalised."""
    scale = n_in / n_out
    half_width = max(scale, 1.0)
    weights = np.zeros((n_out, n_in))
    for i in range(n_out):
        centre = (i + 0.5) * scale
        for j in range(n_in):
            weights[i, j] = max(0.0, 1.0 - abs(j + 0.5 - centre) / half_width)
        weights[i] /= weights[i].sum()
    return weights


@pytest.mark.parametrize(("size_in", "size_out"), [((15, 15), (5, 5)), ((28, 28), (16, 16)),
                                                   ((8, 8), (16, 16)), ((16, 12), (7, 9))])
def test_resize_matches_a_written_out_triangle_filter(size_in, size_out):
    images = np.random.default_rng(1).uniform(size=(2, *size_in))
    expected = np.einsum("oi,bij,pj->bop", reference_resize_matrix(size_in[0], size_out[0]),
                         images, reference_resize_matrix(size_in[1], size_out[1]))
    np.testing.assert_allclose(resize_images(images, *size_out).numpy(), expected, atol=1e-6)


def test_downscaling_does_not_alias_fine_stripes():
    stripes = np.tile(np.array([0.0, 1.0] * 8)[:15], (15, 1))[None]  # 1-pixel stripes
    resized = resize_images(stripes, 5, 5).numpy()[0]
    # point sampling (every third column) would give pure 0/1 stripes
    assert 0.4 < resized[1:-1, 1:-1].min() <= resized[1:-1, 1:-1].max() < 0.6
