"""The vocabulary of test conditions: modalities, noise kinds, condition names and SNR grids.

A condition either adds white noise to a modality (or both) at an SNR in dB, or removes a
modality (its input all zeros), or leaves the inputs clean. Its name is what activation files
and figures call it: ``clean``, ``audio_snr-10``, ``both_snr0``, ``visual_removed``, and for
probe sets also ``incongruent`` (clean inputs whose audio and visual digits differ).

Two SNR grids, for two purposes:

- [TEST_SNRS][repsim.conditions.TEST_SNRS]: the test grid a training run is evaluated on
  (``metrics.json``);
- [PROBE_SNRS][repsim.conditions.PROBE_SNRS]: the noisy conditions an extraction records by
  default (fewer, since each one multiplies the activation file).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

MODALITIES = ("audio", "visual")
"""The two input modalities."""
NOISE_KINDS = ("audio", "visual", "both")
"""Where white noise can be added: one modality or both."""
CLEAN = "clean"
"""The condition that changes nothing."""
INCONGRUENT = "incongruent"
"""Clean inputs whose audio and visual digits differ."""
TEST_SNRS = (20.0, 10.0, 5.0, 0.0, -5.0, -10.0)
"""The test grid (dB): every training run is evaluated at each, per noise kind."""
PROBE_SNRS = (0.0, -10.0)
"""The noisy conditions (dB) an extraction records by default."""
CONDITION_FORMS = (CLEAN, INCONGRUENT, "audio_removed", "visual_removed", "audio_snr{X}",
                   "visual_snr{X}", "both_snr{X}", "incongruent_{a noisy or removed form}")
_NOISY = re.compile(rf"^({'|'.join(NOISE_KINDS)})_snr(-?\d+(?:\.\d+)?)$")
_REMOVED = re.compile(rf"^({'|'.join(MODALITIES)})_removed$")
# The same two forms on any named model input (repsim.record's built-in conditions).
_ON_INPUT = re.compile(r"^(?P<input>\w+?)_(?:removed|snr(?P<snr>-?\d+(?:\.\d+)?))$")


def input_condition(name: str) -> tuple[str, float | None] | None:
    """A condition on a named input, read from its name.

    Parameters
    ----------
    name
        A condition name.

    Returns
    -------
    tuple or None
        ``(input, dB)`` for ``"<input>_snr<X>"`` (white noise at X dB), ``(input, None)`` for
        ``"<input>_removed"`` (zeros); ``None`` for any other name.
    """
    match = _ON_INPUT.match(name)
    if match is None:
        return None
    snr = match.group("snr")
    return match.group("input"), None if snr is None else float(snr)


def condition_change(name: str) -> dict[str, object] | None:
    """What condition ``name`` does, read from its name, as activation files describe it
    (``condition_changes``).

    ``incongruent_<c>`` is ``<c>`` of the incongruent stimuli; ``both_snr<X>`` is noise on the
    input ``both``.

    Parameters
    ----------
    name
        A condition name.

    Returns
    -------
    dict or None
        ``{"of": the intact condition, "input": ..., "change": "removed"}`` or
        ``{..., "change": "noise", "snr_db": X}``; ``None`` for any other name.
    """
    of, inner = CLEAN, name
    if name.startswith(f"{INCONGRUENT}_"):
        of, inner = INCONGRUENT, name.removeprefix(f"{INCONGRUENT}_")
    parsed = input_condition(inner)
    if parsed is None:
        return None
    target, snr = parsed
    return {"of": of, "input": target,
            **({"change": "removed"} if snr is None else {"change": "noise", "snr_db": snr})}


def removed_condition(modality: str) -> str:
    """The name of the condition with ``modality`` removed.

    Parameters
    ----------
    modality
        ``"audio"`` or ``"visual"``.

    Returns
    -------
    str
        E.g. ``"audio_removed"``.
    """
    return Condition(remove=modality).name


@dataclass(frozen=True)
class Condition:
    """What is done to the inputs: white noise on one modality (or both), or one modality removed.
    ``Condition()`` is clean.

    Parameters
    ----------
    noise
        ``"audio"``, ``"visual"``, ``"both"`` or ``None`` (no noise).
    snr_db
        The noise's SNR in dB; ``inf`` (clean) without noise, finite with it.
    remove
        ``"audio"``, ``"visual"`` or ``None``: the modality whose input is all zeros.

    Raises
    ------
    ValueError
        For an unknown modality, a NaN SNR, noise without a finite SNR, or noise and removal at
        once.
    """

    noise: str | None = None
    snr_db: float = math.inf
    remove: str | None = None

    def __post_init__(self) -> None:
        if self.noise not in (None, *NOISE_KINDS):
            raise ValueError(f"noise must be one of {NOISE_KINDS} or None, got {self.noise!r}")
        if self.remove not in (None, *MODALITIES):
            raise ValueError(f"remove must be 'audio', 'visual' or None, got {self.remove!r}")
        if math.isnan(self.snr_db):
            raise ValueError("SNR must be a number of dB or inf, not NaN")
        if self.noise is not None and math.isinf(self.snr_db):
            raise ValueError(f"{self.noise} noise needs a finite SNR, got {self.snr_db}")
        if self.noise is not None and self.remove is not None:
            raise ValueError("a condition either adds noise or removes a modality, not both")

    @property
    def name(self) -> str:
        """The condition's name, as used in activation files."""
        if self.remove is not None:
            return f"{self.remove}_removed"
        if self.noise is not None:
            return f"{self.noise}_snr{self.snr_db:g}"
        return CLEAN

    @property
    def audio_snr(self) -> float:
        """The audio input's SNR in dB (``inf``: clean)."""
        return self.snr_db if self.noise in ("audio", "both") else math.inf

    @property
    def visual_snr(self) -> float:
        """The visual input's SNR in dB (``inf``: clean)."""
        return self.snr_db if self.noise in ("visual", "both") else math.inf


@dataclass(frozen=True)
class ProbeCondition:
    """A probe-set condition: which pairs and what is done to the inputs.

    Parameters
    ----------
    name
        Its canonical name (e.g. ``incongruent_audio_snr-10``).
    incongruent
        Whether it is of the incongruent pairs (audio digit differs from visual digit).
    inputs
        What is done to the inputs.
    """

    name: str
    incongruent: bool
    inputs: Condition


def parse_condition(name: str) -> ProbeCondition:
    """The condition a name stands for.

    ``incongruent_<condition>`` is that condition on the incongruent pairs (e.g.
    ``incongruent_audio_snr-10``). SNRs are normalised: ``audio_snr-10.0`` becomes
    ``audio_snr-10``.

    Parameters
    ----------
    name
        A condition name.

    Returns
    -------
    ProbeCondition
        The pairs, the inputs' condition and the canonical name.

    Raises
    ------
    ValueError
        For an unknown name, listing the forms.
    """
    if name == INCONGRUENT:
        return ProbeCondition(INCONGRUENT, True, Condition())
    prefix = f"{INCONGRUENT}_"
    inner = name.removeprefix(prefix)
    if name.startswith(prefix) and (_REMOVED.match(inner) or _NOISY.match(inner)):
        inputs = parse_condition(inner).inputs
        return ProbeCondition(f"{prefix}{inputs.name}", True, inputs)
    if name == CLEAN:
        inputs = Condition()
    elif match := _REMOVED.match(name):
        inputs = Condition(remove=match.group(1))
    elif match := _NOISY.match(name):
        inputs = Condition(noise=match.group(1), snr_db=float(match.group(2)))
    else:
        raise ValueError(f"unknown condition {name!r}; conditions are "
                         f"{', '.join(CONDITION_FORMS)} (X a dB value, e.g. audio_snr-10)")
    return ProbeCondition(inputs.name, False, inputs)


PROBE_CONDITIONS = (CLEAN, INCONGRUENT, *(removed_condition(m) for m in MODALITIES))
"""The conditions every probe set has, before its noisy ones."""
# What the mechanism measures of a study run need beyond PROBE_CONDITIONS: the probe stimuli
# with audio noise at each PROBE_SNRS, congruent (noise entry, the gate) and incongruent (what
# survives of the seen and the heard digit).
MECHANISM_CONDITIONS = tuple(f"{prefix}{Condition(noise='audio', snr_db=snr).name}"
                             for prefix in ("", f"{INCONGRUENT}_") for snr in PROBE_SNRS)
"""The probe conditions a study run's mechanism measures need."""


def _check_finite(snrs: Sequence[float]) -> None:
    for snr in snrs:
        if not math.isfinite(snr):
            raise ValueError(f"SNRs must be finite dB values (clean is its own condition), "
                             f"got {snr}")


def probe_condition_names(conditions: Sequence[str] = PROBE_CONDITIONS,
                          snrs: Sequence[float] = PROBE_SNRS) -> list[str]:
    """The names of a probe set's conditions.

    Parameters
    ----------
    conditions
        Conditions first, in order.
    snrs
        Then audio, visual and both noise at each of these SNRs (finite dB values).

    Returns
    -------
    list of str
        Canonical names, duplicates dropped (first occurrence kept).

    Raises
    ------
    ValueError
        For an unknown condition, a non-finite SNR, or no condition at all.
    """
    _check_finite(snrs)
    names = [parse_condition(name).name for name in conditions]
    names += [Condition(noise=kind, snr_db=float(snr)).name
              for snr in snrs for kind in NOISE_KINDS]
    names = list(dict.fromkeys(names))
    if not names:
        raise ValueError("a probe set needs at least one condition")
    return names


def grid_conditions(snrs: Sequence[float] = TEST_SNRS) -> list[Condition]:
    """The test grid a training run is evaluated on.

    Parameters
    ----------
    snrs
        The SNRs in dB (finite).

    Returns
    -------
    list of Condition
        Clean, each noise kind at each SNR, then each modality removed.

    Raises
    ------
    ValueError
        For a non-finite SNR.
    """
    _check_finite(snrs)
    return ([Condition()]
            + [Condition(noise=kind, snr_db=float(snr)) for kind in NOISE_KINDS for snr in snrs]
            + [Condition(remove=modality) for modality in MODALITIES])
