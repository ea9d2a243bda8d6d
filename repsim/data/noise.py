"""Additive white Gaussian noise at a signal-to-noise ratio in dB."""

from __future__ import annotations

import torch


def add_white_noise(
    x: torch.Tensor,
    snr_db: float | torch.Tensor,
    *,
    signal_power: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Return ``x`` plus white Gaussian noise, one SNR per sample (axis 0).

    The noise variance of sample ``i`` is ``signal_power[i] / 10 ** (snr_db[i] / 10)``, where
    ``signal_power`` defaults to the mean square of each sample. ``snr_db`` is a scalar or a
    tensor of shape ``(B,)``; ``+inf`` leaves a sample clean. Noise is drawn on ``x``'s device
    from ``generator`` (which must live on that device) so that runs are reproducible.
    """
    batch = x.shape[0]
    if signal_power is None:
        signal_power = x.reshape(batch, -1).pow(2).mean(dim=1)
    snr = torch.as_tensor(snr_db, dtype=torch.float64, device=x.device).expand(batch)
    if torch.isnan(snr).any() or torch.isneginf(snr).any():
        raise ValueError("SNR must be a number of dB or +inf (clean), not NaN or -inf")
    noise_power = signal_power.to(torch.float64) / torch.pow(10.0, snr / 10.0)
    scale = noise_power.sqrt().to(x.dtype).reshape(batch, *([1] * (x.dim() - 1)))
    noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return x + scale * noise
