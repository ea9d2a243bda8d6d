"""Noise entry: how much a layer changes when noise is added to one input modality.

For one layer x time step with states ``h`` on clean stimuli and ``h_noisy`` on the same
stimuli with (e.g.) audio noise, matched by ``stimulus_id``:

- CKA entry ``E = 1 - CKA(h, h_noisy)`` (linear by default; see [repsim.analysis.cka.cka][]):
  0 when the noise leaves the representational geometry intact, towards 1 when it replaces it;
- relative change ``||h_noisy - h||_F / ||h||_F`` over all stimuli and features.

These are the ablation sensitivities of [repsim.analysis.modality_sensitivity][] with noise in
place of removal, and computed by the same function. A layer the noise never reaches (a
visual-branch layer under audio noise) has ``E = 0`` and relative change 0 exactly.
"""

from __future__ import annotations

from numpy.typing import ArrayLike

from repsim.analysis.ablation import modality_sensitivity


def noise_entry(clean: ArrayLike, noisy: ArrayLike, kernel: str = "linear", debiased: bool = False,
                threshold: float = 1.0) -> tuple[float, float]:
    """How much one representation changes when noise is added to one modality.

    Parameters
    ----------
    clean
        The states ``(n, ...)`` on clean stimuli: NumPy, torch or xarray, stimuli first.
    noisy
        The states of the same stimuli with noise (matched by ``stimulus_id`` when both carry
        it).
    kernel, debiased, threshold
        The CKA options (as for [cka][repsim.analysis.cka.cka]).

    Returns
    -------
    tuple of float
        ``(1 - CKA(clean, noisy), ||noisy - clean||_F / ||clean||_F)``.

    Raises
    ------
    ValueError
        When the clean states are constant across stimuli, or the stimuli do not match.
    """
    return modality_sensitivity(clean, noisy, kernel=kernel, debiased=debiased,
                                threshold=threshold)
