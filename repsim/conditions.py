"""The vocabulary of test conditions: modalities, noise kinds, condition names and SNR grids.

A condition either adds white noise to a modality (or both) at an SNR in dB, or removes a
modality (its input all zeros), or leaves the inputs clean. Its name is what activation files
and figures call it: ``clean``, ``audio_snr-10``, ``both_snr0``, ``visual_removed``, and for
probe sets also ``incongruent`` (clean inputs whose audio and visual digits differ).

Two SNR grids, for two purposes:

- :data:`TEST_SNRS`: the test grid a training run is evaluated on (``metrics.json``);
- :data:`PROBE_SNRS`: the noisy conditions an extraction records by default (fewer, since
  each one multiplies the activation file).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

MODALITIES = ("audio", "visual")
NOISE_KINDS = ("audio", "visual", "both")
CLEAN = "clean"
INCONGRUENT = "incongruent"
TEST_SNRS = (20.0, 10.0, 5.0, 0.0, -5.0, -10.0)
PROBE_SNRS = (0.0, -10.0)
CONDITION_FORMS = (CLEAN, INCONGRUENT, "audio_removed", "visual_removed", "audio_snr{X}",
                   "visual_snr{X}", "both_snr{X}", "incongruent_{a noisy or removed form}")
_NOISY = re.compile(rf"^({'|'.join(NOISE_KINDS)})_snr(-?\d+(?:\.\d+)?)$")
_REMOVED = re.compile(rf"^({'|'.join(MODALITIES)})_removed$")
# The same two forms on any named model input (repsim.record's built-in conditions).
_ON_INPUT = re.compile(r"^(?P<input>\w+?)_(?:removed|snr(?P<snr>-?\d+(?:\.\d+)?))$")


def input_condition(name: str) -> tuple[str, float | None] | None:
    """A condition on a named input: ``(input, dB)`` for ``"<input>_snr<X>"`` (white noise at
    X dB), ``(input, None)`` for ``"<input>_removed"`` (zeros); None for any other name."""
    match = _ON_INPUT.match(name)
    if match is None:
        return None
    snr = match.group("snr")
    return match.group("input"), None if snr is None else float(snr)


def condition_change(name: str) -> dict[str, object] | None:
    """What condition ``name`` does, read from its name, as activation files describe it
    (``condition_changes``): ``{"of": the intact condition, "input": ..., "change": "removed"}``
    or ``{..., "change": "noise", "snr_db": X}``; None for any other name. ``incongruent_<c>``
    is ``<c>`` of the incongruent stimuli; ``both_snr<X>`` is noise on the input ``both``."""
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
    """The name of the condition with ``modality`` removed, e.g. ``"audio_removed"``."""
    return Condition(remove=modality).name


@dataclass(frozen=True)
class Condition:
    """What is done to the inputs: white noise on ``noise`` at ``snr_db`` dB, or ``remove``
    a modality. ``Condition()`` is clean."""

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
        """Condition name as used in activation files."""
        if self.remove is not None:
            return f"{self.remove}_removed"
        if self.noise is not None:
            return f"{self.noise}_snr{self.snr_db:g}"
        return CLEAN

    @property
    def audio_snr(self) -> float:
        return self.snr_db if self.noise in ("audio", "both") else math.inf

    @property
    def visual_snr(self) -> float:
        return self.snr_db if self.noise in ("visual", "both") else math.inf


@dataclass(frozen=True)
class ProbeCondition:
    """A probe-set condition: which pairs (congruent or incongruent) and what is done to the
    inputs."""

    name: str
    incongruent: bool
    inputs: Condition


def parse_condition(name: str) -> ProbeCondition:
    """The condition a name stands for; ValueError for an unknown name (listing the forms).

    ``incongruent_<condition>`` is that condition on the incongruent pairs (e.g.
    ``incongruent_audio_snr-10``). SNRs are normalised: ``audio_snr-10.0`` becomes
    ``audio_snr-10``.
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
# What the mechanism measures of a study run need beyond PROBE_CONDITIONS: the probe stimuli
# with audio noise at each PROBE_SNRS, congruent (noise entry, the gate) and incongruent (what
# survives of the seen and the heard digit).
MECHANISM_CONDITIONS = tuple(f"{prefix}{Condition(noise='audio', snr_db=snr).name}"
                             for prefix in ("", f"{INCONGRUENT}_") for snr in PROBE_SNRS)


def _check_finite(snrs: Sequence[float]) -> None:
    for snr in snrs:
        if not math.isfinite(snr):
            raise ValueError(f"SNRs must be finite dB values (clean is its own condition), "
                             f"got {snr}")


def probe_condition_names(conditions: Sequence[str] = PROBE_CONDITIONS,
                          snrs: Sequence[float] = PROBE_SNRS) -> list[str]:
    """``conditions`` then audio, visual and both noise at each of ``snrs``; canonical names,
    duplicates dropped (first occurrence kept)."""
    _check_finite(snrs)
    names = [parse_condition(name).name for name in conditions]
    names += [Condition(noise=kind, snr_db=float(snr)).name
              for snr in snrs for kind in NOISE_KINDS]
    names = list(dict.fromkeys(names))
    if not names:
        raise ValueError("a probe set needs at least one condition")
    return names


def grid_conditions(snrs: Sequence[float] = TEST_SNRS) -> list[Condition]:
    """The test grid: clean, each noise kind at each finite SNR, then each modality removed."""
    _check_finite(snrs)
    return ([Condition()]
            + [Condition(noise=kind, snr_db=float(snr)) for kind in NOISE_KINDS for snr in snrs]
            + [Condition(remove=modality) for modality in MODALITIES])
