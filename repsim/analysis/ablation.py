"""Modality-ablation sensitivity: how much a layer changes when one input modality is removed.

Definitions, for one layer x time step with intact states ``h`` and states ``h_removed``
recorded on the same stimuli with one modality zeroed (matched by ``stimulus_id``):

- CKA sensitivity ``S = 1 - CKA(h, h_removed)`` (linear by default; see
  [repsim.analysis.cka.cka][]). If removal makes the layer constant across stimuli (e.g. an
  audio-branch layer without audio), no stimulus information is left: its HSIC with the
  intact states is exactly 0, so CKA is taken as 0 and ``S = 1``. An intact layer that is
  constant has no CKA at all: ValueError.
- Relative change ``||h - h_removed||_F / ||h||_F`` over all stimuli and features.
- Reliance index ``S_audio / (S_audio + S_visual)``: 1 when only removing audio changes the
  layer, 0 when only removing vision does, 0.5 for equal reliance; NaN when neither removal
  changes it (0 / 0). Given for both measures.

[repsim.labelled.ablation_sensitivity][] applies them to every layer x time step of an
activation file.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from repsim.analysis._arrays import aligned_matrices, is_constant
from repsim.analysis.cka import cka


def modality_sensitivity(h: ArrayLike, h_removed: ArrayLike, kernel: str = "linear",
                         debiased: bool = False, threshold: float = 1.0) -> tuple[float, float]:
    """How much one representation changes when a modality is removed.

    Parameters
    ----------
    h
        The intact states ``(n, ...)``: NumPy, torch or xarray, stimuli first.
    h_removed
        The states of the same stimuli with one modality removed (matched by ``stimulus_id``
        when both carry it).
    kernel, debiased, threshold
        The CKA options (as for [cka][repsim.analysis.cka.cka]).

    Returns
    -------
    tuple of float
        ``(1 - CKA(h, h_removed), ||h - h_removed||_F / ||h||_F)``; the CKA sensitivity is 1 when
        removal leaves the layer constant across stimuli.

    Raises
    ------
    ValueError
        When the intact states are constant across stimuli (no CKA), or the stimuli do not match.
    """
    intact, removed = aligned_matrices([h, h_removed], ["h", "h_removed"])
    if is_constant(intact):
        raise ValueError("h (the intact states) is constant across stimuli: CKA with it is "
                         "undefined")
    change = float(np.linalg.norm(intact - removed) / np.linalg.norm(intact))
    if is_constant(removed):
        return 1.0, change
    return 1.0 - cka(intact, removed, kernel=kernel, debiased=debiased,
                     threshold=threshold), change


def reliance_index(s_audio: ArrayLike, s_visual: ArrayLike) -> np.ndarray:
    """The reliance index ``S_audio / (S_audio + S_visual)``, elementwise.

    Parameters
    ----------
    s_audio
        Sensitivities to removing audio (any shape).
    s_visual
        Sensitivities to removing vision, of the same shape.

    Returns
    -------
    numpy.ndarray
        1 where only removing audio changes the layer, 0 where only removing vision does; NaN
        where both sensitivities are zero.
    """
    s_audio, s_visual = np.asarray(s_audio, dtype=float), np.asarray(s_visual, dtype=float)
    total = s_audio + s_visual
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total != 0, s_audio / np.where(total != 0, total, 1.0), np.nan)
