"""Additive white Gaussian noise at a signal-to-noise ratio in dB, and per-item noise seeds.

Evaluation draws each test item's noise from a generator of its own (:func:`item_generators`),
so that an item's noise, and with it every accuracy under noise, does not depend on how the
items were batched.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch

Generators = torch.Generator | Sequence[torch.Generator] | None


def derived_seed(*parts: int) -> int:
    """A 32-bit seed derived from non-negative integers (numpy's SeedSequence mixes them).

    Parameters
    ----------
    *parts
        The integers.

    Returns
    -------
    int
    """
    return int(np.random.SeedSequence(list(parts)).generate_state(1)[0])


def item_generators(positions: Iterable[int], *parts: int,
                    device: torch.device | str = "cpu") -> list[torch.Generator]:
    """One generator per item position, seeded from ``(*parts, position)``.

    Parameters
    ----------
    positions
        The items' positions in their split.
    *parts
        What else the seed depends on (e.g. the seed and the condition).
    device
        Where the generators live.

    Returns
    -------
    list of torch.Generator
    """
    return [torch.Generator(device=device).manual_seed(derived_seed(*parts, int(position)))
            for position in positions]


def add_white_noise(
    x: torch.Tensor,
    snr_db: float | torch.Tensor,
    *,
    signal_power: torch.Tensor | None = None,
    generator: Generators = None,
) -> torch.Tensor:
    """``x`` plus white Gaussian noise, one SNR per sample (axis 0).

    The noise variance of sample ``i`` is ``signal_power[i] / 10 ** (snr_db[i] / 10)``.

    Parameters
    ----------
    x
        A batch, samples on axis 0.
    snr_db
        A scalar or a tensor of shape ``(B,)``; ``+inf`` leaves a sample clean.
    signal_power
        Each sample's signal power, shape ``(B,)``; ``None``: the mean square of each sample.
    generator
        Noise is drawn on ``x``'s device from this generator (which must live on that device),
        so that runs are reproducible; a sequence of generators, one per sample, draws each
        sample's noise from its own.

    Returns
    -------
    torch.Tensor
        The noisy batch (``x`` is not changed).

    Raises
    ------
    ValueError
        For a NaN or ``-inf`` SNR, or a number of generators other than the batch's.
    """
    batch = x.shape[0]
    if signal_power is None:
        signal_power = x.reshape(batch, -1).pow(2).mean(dim=1)
    snr = torch.as_tensor(snr_db, dtype=torch.float64, device=x.device).expand(batch)
    if torch.isnan(snr).any() or torch.isneginf(snr).any():
        raise ValueError("SNR must be a number of dB or +inf (clean), not NaN or -inf")
    noise_power = signal_power.to(torch.float64) / torch.pow(10.0, snr / 10.0)
    scale = noise_power.sqrt().to(x.dtype).reshape(batch, *([1] * (x.dim() - 1)))
    if generator is None or isinstance(generator, torch.Generator):
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    elif len(generator) != batch:
        raise ValueError(f"got {len(generator)} generators for {batch} samples")
    else:
        noise = torch.stack([torch.randn(x.shape[1:], generator=g, device=x.device,
                                         dtype=x.dtype) for g in generator])
    return x + scale * noise
