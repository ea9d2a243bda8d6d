"""add_white_noise: the SNR it delivers, per-sample SNRs, clean at inf, white Gaussian noise,
reproducibility, and refused SNRs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from repsim.data.noise import add_white_noise


def measured_snr_db(clean: torch.Tensor, noisy: torch.Tensor,
                    signal_power: torch.Tensor | None = None) -> float:
    """10 log10(total signal power / total noise power) over the batch, in float64."""
    clean, noisy = clean.double(), noisy.double()
    batch = len(clean)
    if signal_power is None:
        signal_power = clean.reshape(batch, -1).pow(2).mean(dim=1)
    noise_power = (noisy - clean).reshape(batch, -1).pow(2).mean(dim=1)
    return 10.0 * math.log10(float(signal_power.double().sum() / noise_power.sum()))


@pytest.fixture(scope="module")
def signals() -> torch.Tensor:
    """64 sine 'clips' of different amplitudes, 4,000 samples each."""
    t = torch.arange(4000) / 8000.0
    amplitude = torch.linspace(0.05, 0.8, 64)[:, None]
    return (amplitude * torch.sin(2 * torch.pi * 300.0 * t)).float()


@pytest.mark.parametrize("snr", [-10.0, 0.0, 6.0, 20.0])
def test_delivered_snr_matches_the_request_within_a_tenth_of_a_db(signals, snr):
    generator = torch.Generator().manual_seed(0)
    noisy = add_white_noise(signals, snr, generator=generator)
    assert measured_snr_db(signals, noisy) == pytest.approx(snr, abs=0.1)


def test_each_sample_gets_its_own_snr_relative_to_its_own_power(signals):
    snrs = torch.tensor([-5.0, 0.0, 5.0, 10.0]).repeat(16)
    noisy = add_white_noise(signals, snrs, generator=torch.Generator().manual_seed(1))
    for level in (-5.0, 0.0, 5.0, 10.0):
        chosen = snrs == level
        assert measured_snr_db(signals[chosen], noisy[chosen]) == pytest.approx(level, abs=0.1)
    # the quiet clips get proportionally quieter noise
    noise_std = (noisy - signals).std(dim=1)
    ratio = noise_std / signals.pow(2).mean(dim=1).sqrt()
    expected = 10.0 ** (-snrs / 20.0)
    np.testing.assert_allclose(ratio.numpy(), expected.numpy(), rtol=0.05)


def test_an_explicit_signal_power_sets_the_noise_level(signals):
    power = torch.full((64,), 0.5)  # e.g. the power of a clip before it was zero-padded
    noisy = add_white_noise(signals, 3.0, signal_power=power,
                            generator=torch.Generator().manual_seed(2))
    assert measured_snr_db(signals, noisy, power) == pytest.approx(3.0, abs=0.1)


def test_inf_leaves_the_samples_exactly_clean(signals):
    assert torch.equal(add_white_noise(signals, math.inf), signals)
    mixed = torch.tensor([math.inf, 0.0]).repeat(32)
    noisy = add_white_noise(signals, mixed, generator=torch.Generator().manual_seed(3))
    assert torch.equal(noisy[::2], signals[::2])
    assert not torch.equal(noisy[1::2], signals[1::2])


def test_the_noise_is_white_gaussian_and_zero_mean():
    silent = torch.zeros(8, 20000)
    noise = add_white_noise(silent, 0.0, signal_power=torch.ones(8),
                            generator=torch.Generator().manual_seed(4)).double().flatten()
    values = noise.numpy()
    assert abs(values.mean()) < 0.01
    assert values.std() == pytest.approx(1.0, rel=0.01)
    lag1 = np.corrcoef(values[:-1], values[1:])[0, 1]
    assert abs(lag1) < 0.01  # white: no correlation between neighbouring samples
    assert abs(stats.skew(values)) < 0.03 and abs(stats.kurtosis(values)) < 0.06


def test_a_seeded_generator_reproduces_the_noise(signals):
    first = add_white_noise(signals, 0.0, generator=torch.Generator().manual_seed(5))
    again = add_white_noise(signals, 0.0, generator=torch.Generator().manual_seed(5))
    other = add_white_noise(signals, 0.0, generator=torch.Generator().manual_seed(6))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_shape_and_dtype_are_kept_for_images():
    images = torch.rand(5, 3, 1, 8, 8)
    noisy = add_white_noise(images, 10.0, generator=torch.Generator().manual_seed(7))
    assert noisy.shape == images.shape and noisy.dtype == images.dtype
    assert measured_snr_db(images, noisy) == pytest.approx(10.0, abs=0.3)  # few values


@pytest.mark.parametrize("snr", [math.nan, -math.inf])
def test_nan_and_minus_inf_are_refused(signals, snr):
    with pytest.raises(ValueError, match="SNR must be a number of dB"):
        add_white_noise(signals, snr)
    with pytest.raises(ValueError, match="SNR must be a number of dB"):
        add_white_noise(signals, torch.tensor([0.0, snr]).repeat(32))
