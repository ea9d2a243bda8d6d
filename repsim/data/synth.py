"""A small formant synthesizer (source-filter speech) for the English digit words, at 8 kHz.

Source: Rosenberg glottal pulses at a smooth, falling pitch contour with per-period jitter and
shimmer, differentiated (glottal flow derivative, which folds in lip radiation), plus
aspiration noise (breathy voice, the /h/ after a released stop). Filter: four second-order
resonators in cascade (Klatt 1980) whose formant frequencies and bandwidths follow the word's
phones; targets are joined by straight lines and then smoothed, so transitions are gradual.
Fricatives (s, z, f, v, th) and stop bursts (t, k) add white noise shaped by Butterworth
filters (scipy.signal), in parallel with the cascade. Speakers differ in pitch, vocal-tract
length (all formants scaled), speaking rate, jitter, shimmer, breathiness, glottal open
quotient, formant bandwidths and small per-phone formant offsets (an accent); every utterance
also varies a little (:class:`Variation`). Like a recording, a clip is never digitally silent:
white noise 30-45 dB below the word runs through it (without it, log-mel frames of silence sit
at the log floor, and any added noise moves them far outside what a model saw in training).

The time-varying cascade is a per-sample recursion vectorised across clips: the four stages
are pipelined (stage k filters stage k-1's output of the previous sample), so one numpy update
per sample advances all stages of all clips; the output is then shifted back by the pipeline's
delay (three samples).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

SAMPLE_RATE = 8000
CONTROL_HOP = 8  # samples between control points (1 ms): formants and levels change this often
MAX_FORMANT = 0.46 * SAMPLE_RATE  # formants are kept below Nyquist
FOURTH_FORMANT = 3300.0  # Hz for the reference (scale 1) vocal tract; F1-F3 come from the phones
FOURTH_BANDWIDTH = 250.0
MAX_PITCH = 500.0  # Hz; pitch contours are clipped here
OPEN_SPLIT = 0.72  # fraction of the open phase spent opening (the rest is the closing slope)
FORMANT_SMOOTHING = 0.030  # seconds (Hann window) for formant and bandwidth tracks
LEVEL_SMOOTHING = 0.008  # seconds (Hann window) for source levels
WANDER_SMOOTHING = 0.1  # seconds (Hann window) turning white noise into a slow pitch wander
ASPIRATION_GAIN = 0.15  # aspiration noise relative to the unit-RMS glottal excitation
STEADY = 0.2  # each end of a phone where its formants move towards its neighbours
TAIL = 0.03  # seconds kept after the last phone (resonances ring out)
TARGET_RMS = 0.05  # RMS of an utterance over its span, before the random gain

# Frication noise colours: white noise through these Butterworth filters (order, type, Hz).
NOISE_BANDS: dict[str, tuple[int, str, float | tuple[float, float]]] = {
    "sibilant": (4, "highpass", 2600.0),  # s, z
    "labiodental": (2, "bandpass", (900.0, 3800.0)),  # f, v
    "dental": (2, "highpass", 1600.0),  # th
    "alveolar": (2, "highpass", 3000.0),  # t burst
    "velar": (2, "bandpass", (1400.0, 2600.0)),  # k burst
}

Formants = tuple[float, float, float]


@dataclass(frozen=True)
class Phone:
    """One speech sound: duration, formant targets and the levels of its sound sources.

    ``formants`` holds (F1, F2, F3) at the phone's start and end (equal for a steady sound,
    different for a diphthong); ``None`` borrows the next phone's start (or the previous
    phone's end), as the resonances of /h/ and of stop bursts are those of the neighbouring
    vowel. Levels: ``voicing`` of the glottal source, ``aspiration`` of noise through the
    formants, ``frication`` of noise coloured by ``NOISE_BANDS[noise]``.
    """

    duration: float  # seconds at speaking rate 1
    formants: tuple[Formants, Formants] | None = None
    bandwidths: Formants = (60.0, 90.0, 150.0)
    voicing: float = 0.0
    aspiration: float = 0.0
    frication: float = 0.0
    noise: str | None = None


def _vowel(duration: float, start: Formants, end: Formants | None = None) -> Phone:
    return Phone(duration, (start, end or start), voicing=1.0)


# Adult-male reference targets (Peterson & Barney / Hillenbrand-like values; /u/ fronted as in
# American "two"). Durations are for a careful citation form at rate 1.
PHONES: dict[str, Phone] = {
    "iy": _vowel(0.23, (270, 2290, 3010)),
    "ih": _vowel(0.08, (400, 1920, 2550)),
    "eh": _vowel(0.10, (550, 1770, 2490)),
    "ah": _vowel(0.12, (620, 1220, 2550)),
    "ao": _vowel(0.17, (590, 920, 2500)),
    "uw": _vowel(0.26, (330, 1250, 2300)),
    "ow": _vowel(0.20, (540, 1050, 2400), (420, 880, 2350)),
    "ay": _vowel(0.24, (720, 1150, 2450), (420, 1950, 2600)),
    "ey": _vowel(0.24, (520, 1900, 2550), (340, 2250, 2900)),
    "r": Phone(0.08, ((460, 1200, 1650),) * 2, (70, 100, 120), voicing=0.9),
    "w": Phone(0.08, ((300, 650, 2200),) * 2, (60, 80, 150), voicing=0.8),
    "n": Phone(0.14, ((250, 1450, 2500),) * 2, (80, 250, 350), voicing=0.55),
    "z": Phone(0.09, ((250, 1600, 2600),) * 2, voicing=0.25, frication=0.35, noise="sibilant"),
    "v": Phone(0.08, ((250, 1100, 2300),) * 2, voicing=0.3, frication=0.12,
               noise="labiodental"),
    "s": Phone(0.14, frication=0.5, noise="sibilant"),
    "f": Phone(0.12, frication=0.15, noise="labiodental"),
    "th": Phone(0.11, frication=0.12, noise="dental"),
    "hh": Phone(0.04, aspiration=1.0),
    "tcl": Phone(0.05),  # stop closure: silence
    "kcl": Phone(0.06),
    "t": Phone(0.015, frication=0.7, noise="alveolar"),  # release burst
    "k": Phone(0.02, frication=0.7, noise="velar"),
}
PHONE_NAMES = tuple(PHONES)

# The phones of "zero" .. "nine", indexed by digit.
WORDS: tuple[tuple[str, ...], ...] = (
    ("z", "ih", "r", "ow"),
    ("w", "ah", "n"),
    ("tcl", "t", "hh", "uw"),
    ("th", "r", "iy"),
    ("f", "ao", "r"),
    ("f", "ay", "v"),
    ("s", "ih", "kcl", "k", "hh", "s"),
    ("s", "eh", "v", "ah", "n"),
    ("ey", "tcl", "t", "hh"),
    ("n", "ay", "n"),
)
WORD_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


@dataclass(frozen=True)
class Speaker:
    """A voice: the parameters that stay the same across all of a speaker's utterances."""

    name: str
    pitch: float  # mean fundamental frequency, Hz
    tract_scale: float  # all formants are multiplied by this (shorter vocal tract -> larger)
    rate: float  # speaking rate: phone durations are divided by it
    jitter: float  # standard deviation of period-to-period pitch changes (fraction)
    shimmer: float  # standard deviation of period-to-period amplitude changes (fraction)
    breathiness: float  # aspiration noise during voicing, relative to aspiration in /h/
    open_quotient: float  # open fraction of each glottal period
    bandwidth_scale: float  # all formant bandwidths are multiplied by this
    accent: np.ndarray = field(repr=False)  # (len(PHONE_NAMES), 3) factors on F1-F3 per phone


def random_speaker(name: str, rng: np.random.Generator) -> Speaker:
    """Draw a speaker: pitch 85-255 Hz (log-uniform), vocal-tract scale rising with pitch."""
    pitch = math.exp(rng.uniform(math.log(85.0), math.log(255.0)))
    tract_scale = float(np.clip((pitch / 110.0) ** 0.25 * math.exp(rng.normal(0.0, 0.04)),
                                0.85, 1.3))
    return Speaker(
        name=name, pitch=pitch, tract_scale=tract_scale,
        rate=math.exp(rng.uniform(math.log(0.85), math.log(1.18))),
        jitter=rng.uniform(0.003, 0.02), shimmer=rng.uniform(0.02, 0.08),
        breathiness=rng.uniform(0.03, 0.3), open_quotient=rng.uniform(0.45, 0.75),
        bandwidth_scale=rng.uniform(0.8, 1.3),
        accent=np.exp(rng.normal(0.0, 0.05, size=(len(PHONE_NAMES), 3))),
    )


@dataclass(frozen=True)
class Variation:
    """How much one utterance differs from the next of the same speaker (0 = identical)."""

    duration: float = 0.10  # sd of the log duration factor of each phone
    tempo: float = 0.05  # sd of the log rate factor of the whole word
    pitch: float = 0.05  # sd of the log pitch factor (and of the contour's start and end)
    drift: float = 0.02  # sd of a slow random pitch wander (fraction)
    formants: float = 0.02  # sd of the log factor on each formant for the whole word
    gain_db: float = 3.0  # the level is drawn uniformly within +-gain_db
    onset: tuple[float, float] = (0.03, 0.25)  # the word starts at a uniform time in here (s)
    floor_db: tuple[float, float] = (30.0, 45.0)  # recording noise floor, dB below the word


NO_VARIATION = Variation(duration=0.0, tempo=0.0, pitch=0.0, drift=0.0, formants=0.0,
                         gain_db=0.0, onset=(0.1, 0.1), floor_db=(40.0, 40.0))


@dataclass
class _Plan:
    """One clip laid out in time (step tracks, one point per CONTROL_HOP samples, not yet
    smoothed) and everything random about it."""

    formants: np.ndarray  # (4, n_ctrl) Hz: straight lines between steady phone targets
    bandwidths: np.ndarray  # (4, n_ctrl) Hz, one value per phone
    voicing: np.ndarray  # (n_ctrl,) one value per phone, zero outside the word
    aspiration: np.ndarray  # (n_ctrl,)
    frication: np.ndarray  # (len(NOISE_BANDS), n_ctrl)
    pitch: np.ndarray  # (n_ctrl,) Hz, the smooth contour before the random wander
    wander: np.ndarray  # (n_ctrl,) white noise, smoothed into a slow pitch wander
    drift: float  # sd of the pitch wander (fraction)
    span: tuple[int, int]  # samples [start, stop) of the utterance
    gain: float
    floor: float  # RMS of the recording noise floor relative to the utterance's
    jitter: np.ndarray  # (n_periods,) standard-normal draws, scaled by the speaker's jitter
    shimmer: np.ndarray  # (n_periods,)
    aspiration_noise: np.ndarray  # (n_samples,)
    frication_noise: np.ndarray  # (n_samples,)
    floor_noise: np.ndarray  # (n_samples,)


def _hann_smooth(tracks: np.ndarray, seconds: float) -> np.ndarray:
    """Smooth control tracks along the last axis with a unit-area Hann window."""
    from scipy import ndimage  # on use: loading a built dataset needs no scipy

    taps = max(3, round(seconds * SAMPLE_RATE / CONTROL_HOP) | 1)
    window = np.hanning(taps + 2)[1:-1]
    return ndimage.convolve1d(tracks, window / window.sum(), axis=-1, mode="nearest")


def _borrowed_formants(phones: Sequence[Phone], j: int) -> tuple[Formants, Formants]:
    """Formant targets of phone j, or of its nearest neighbour with targets (next first)."""
    for k in [*range(j, len(phones)), *range(j - 1, -1, -1)]:
        if phones[k].formants is not None:
            targets = phones[k].formants
            return (targets[0],) * 2 if k > j else (targets[1],) * 2 if k < j else targets
    raise ValueError("a word needs at least one phone with formant targets")


def _plan(names: Sequence[str], speaker: Speaker, rng: np.random.Generator,
          variation: Variation, n_samples: int) -> _Plan:
    """Lay one utterance out in time and draw everything random about it."""
    unknown = [name for name in names if name not in PHONES]
    if unknown:
        raise ValueError(f"unknown phone(s) {unknown}; known: {', '.join(PHONE_NAMES)}")
    phones = [PHONES[name] for name in names]
    n_ctrl = n_samples // CONTROL_HOP + 2
    times = np.arange(n_ctrl) * (CONTROL_HOP / SAMPLE_RATE)

    stretch = math.exp(rng.normal(0.0, variation.tempo)) * speaker.rate
    durations = np.array([p.duration for p in phones]) / stretch
    durations *= np.exp(rng.normal(0.0, variation.duration, size=len(phones)))
    onset = rng.uniform(*variation.onset)
    bounds = onset + np.concatenate([[0.0], np.cumsum(durations)])

    # Formants: steady targets inside each phone, straight lines across boundaries.
    key_times, key_values = [], []
    word_factor = np.exp(rng.normal(0.0, variation.formants, size=3))
    for j, name in enumerate(names):
        start, end = _borrowed_formants(phones, j)
        scale = speaker.tract_scale * speaker.accent[PHONE_NAMES.index(name)] * word_factor
        d = bounds[j + 1] - bounds[j]
        key_times += [bounds[j] + STEADY * d, bounds[j + 1] - STEADY * d]
        key_values += [np.array(start) * scale, np.array(end) * scale]
    formants = np.stack([np.interp(times, key_times, values) for values in np.array(key_values).T]
                        + [np.full(n_ctrl, FOURTH_FORMANT * speaker.tract_scale)])

    # Bandwidths and source levels: one value per phone (levels zero outside the word).
    index = np.searchsorted(bounds, times, side="right") - 1
    inside = (index >= 0) & (index < len(phones))
    index = np.clip(index, 0, len(phones) - 1)

    def per_phone(values: Sequence[float]) -> np.ndarray:
        return np.where(inside, np.asarray(values, dtype=np.float64)[index], 0.0)

    bandwidths = np.concatenate([np.array([p.bandwidths for p in phones]).T[:, index],
                                 np.full((1, n_ctrl), FOURTH_BANDWIDTH)])
    frication = np.stack([per_phone([p.frication if p.noise == band else 0.0 for p in phones])
                          for band in NOISE_BANDS])

    # Pitch: a falling contour (declination); the wander is added when rendering.
    level = speaker.pitch * math.exp(rng.normal(0.0, variation.pitch))
    start_end = np.array([1.05, 0.88]) * np.exp(rng.normal(0.0, variation.pitch / 2, size=2))
    n_periods = math.ceil(MAX_PITCH * n_samples / SAMPLE_RATE) + 2
    stop = min(n_samples, math.ceil((bounds[-1] + TAIL) * SAMPLE_RATE))
    return _Plan(
        formants=formants, bandwidths=bandwidths * speaker.bandwidth_scale,
        voicing=per_phone([p.voicing for p in phones]),
        aspiration=per_phone([p.aspiration for p in phones]), frication=frication,
        pitch=level * np.interp(times, bounds[[0, -1]], start_end),
        wander=rng.standard_normal(n_ctrl), drift=variation.drift,
        span=(min(int(onset * SAMPLE_RATE), stop - 1), stop),
        gain=10.0 ** (rng.uniform(-variation.gain_db, variation.gain_db) / 20.0),
        floor=10.0 ** (-rng.uniform(*variation.floor_db) / 20.0),
        jitter=rng.standard_normal(n_periods, dtype=np.float32),
        shimmer=rng.standard_normal(n_periods, dtype=np.float32),
        aspiration_noise=rng.standard_normal(n_samples, dtype=np.float32),
        frication_noise=rng.standard_normal(n_samples, dtype=np.float32),
        floor_noise=rng.standard_normal(n_samples, dtype=np.float32),
    )


def _to_samples(tracks: np.ndarray, n_samples: int) -> np.ndarray:
    """Linear interpolation of control tracks (..., n_ctrl) to samples (..., n_samples)."""
    weight = np.arange(CONTROL_HOP) / CONTROL_HOP
    left = tracks[..., :-1, None]
    steps = left + (tracks[..., 1:, None] - left) * weight  # (..., n_ctrl - 1, CONTROL_HOP)
    return steps.reshape(*tracks.shape[:-1], steps.shape[-2] * CONTROL_HOP)[..., :n_samples]


def glottal_flow(pitch: np.ndarray, open_quotient: np.ndarray, jitter: np.ndarray,
                 shimmer: np.ndarray) -> np.ndarray:
    """Rosenberg glottal flow pulses ``(N, n_samples)`` in [0, ~1] at ``pitch`` Hz per sample.

    Each period opens with a raised-cosine rise over ``OPEN_SPLIT * open_quotient`` of the
    period and closes with a quarter-cosine fall over the rest of the open phase. ``jitter``
    and ``shimmer`` (N, n_periods) are per-period fractional changes of pitch and amplitude.
    """
    phase = np.cumsum(pitch, axis=1) / SAMPLE_RATE
    last = jitter.shape[1] - 1
    period = np.minimum(phase.astype(np.int64), last)
    phase = np.cumsum(pitch * (1.0 + np.take_along_axis(jitter, period, axis=1)),
                      axis=1) / SAMPLE_RATE
    period = np.minimum(phase.astype(np.int64), last)
    frac = phase - np.floor(phase)
    opening = OPEN_SPLIT * open_quotient[:, None]
    closing = open_quotient[:, None] - opening
    rise = 0.5 * (1.0 - np.cos(np.pi * np.minimum(frac / opening, 1.0)))
    fall = np.cos(0.5 * np.pi * np.clip((frac - opening) / closing, 0.0, 1.0))
    flow = np.where(frac < opening, rise, fall)
    return flow * (1.0 + np.take_along_axis(shimmer, period, axis=1))


def resonator_coefficients(frequency: np.ndarray | float, bandwidth: np.ndarray | float,
                           sample_rate: int = SAMPLE_RATE) -> tuple[np.ndarray, ...]:
    """Klatt's resonator ``y[n] = a x[n] + b y[n-1] + c y[n-2]`` (unity gain at 0 Hz)."""
    c = -np.exp(-2.0 * np.pi * np.asarray(bandwidth, dtype=np.float64) / sample_rate)
    b = 2.0 * np.exp(-np.pi * np.asarray(bandwidth, dtype=np.float64) / sample_rate) * np.cos(
        2.0 * np.pi * np.asarray(frequency, dtype=np.float64) / sample_rate)
    return 1.0 - b - c, b, c


def formant_cascade(source: np.ndarray, formants: np.ndarray, bandwidths: np.ndarray,
                    hop: int = CONTROL_HOP, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Filter ``source`` (N, n_samples) through resonators in cascade with moving formants.

    ``formants``/``bandwidths`` are (N, K, n_ctrl) in Hz, one point per ``hop`` samples
    (held in between; n_ctrl >= n_samples // hop + 1). The K stages are pipelined, so stage
    k's coefficients act up to k samples early: irrelevant for tracks that move over tens of
    milliseconds, and exact for fixed formants.
    """
    n_clips, n_samples = source.shape
    stages = formants.shape[1]
    a, b, c = (np.ascontiguousarray(x.transpose(2, 0, 1))
               for x in resonator_coefficients(formants, bandwidths, sample_rate))
    drive = np.zeros((n_samples + stages - 1, n_clips))
    drive[:n_samples] = source.T
    last_frame = a.shape[0] - 1
    inputs = np.zeros((n_clips, stages))
    y1, y2 = np.zeros((n_clips, stages)), np.zeros((n_clips, stages))
    out = np.empty((n_samples + stages - 1, n_clips))
    for t in range(n_samples + stages - 1):
        frame = min(t // hop, last_frame)
        inputs[:, 0] = drive[t]
        inputs[:, 1:] = y1[:, :-1]
        y = a[frame] * inputs
        y += b[frame] * y1
        y += c[frame] * y2
        y1, y2 = y, y1
        out[t] = y[:, -1]
    return np.ascontiguousarray(out[stages - 1:].T)


def _rms(x: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Per-row RMS (N, 1) of ``x`` (N, n), over the samples where ``mask`` holds if given."""
    if mask is None:
        power = np.einsum("ij,ij->i", x, x) / x.shape[1]
    else:
        power = np.einsum("ij,ij->i", x * mask, x) / np.maximum(mask.sum(axis=1), 1)
    return np.sqrt(np.maximum(power, 1e-20))[:, None]


def _render(plans: Sequence[_Plan], speakers: Sequence[Speaker], n_samples: int) -> np.ndarray:
    """Waveforms (N, n_samples) float64 for planned utterances."""
    from scipy import signal  # on use, as ndimage in _hann_smooth

    def stack(name: str) -> np.ndarray:
        return np.stack([getattr(plan, name) for plan in plans])

    def per_clip(values: Sequence[float]) -> np.ndarray:
        return np.array(values, dtype=np.float32)[:, None]

    formants = np.minimum(_hann_smooth(stack("formants"), FORMANT_SMOOTHING), MAX_FORMANT)
    bandwidths = _hann_smooth(stack("bandwidths"), FORMANT_SMOOTHING)
    wander = _hann_smooth(stack("wander"), WANDER_SMOOTHING)
    wander *= per_clip([p.drift for p in plans]) / np.maximum(wander.std(axis=1, keepdims=True),
                                                              1e-12)
    pitch = np.clip(stack("pitch") * (1.0 + wander), 40.0, MAX_PITCH)
    # Sample-rate signals are float32 (halves the work); the resonators run in float64.
    voicing, aspiration = (
        _to_samples(_hann_smooth(stack(name), LEVEL_SMOOTHING).astype(np.float32), n_samples)
        for name in ("voicing", "aspiration"))
    frication = _hann_smooth(stack("frication"), LEVEL_SMOOTHING).astype(np.float32)

    flow = glottal_flow(_to_samples(pitch.astype(np.float32), n_samples),
                        np.array([s.open_quotient for s in speakers], dtype=np.float32),
                        stack("jitter") * per_clip([s.jitter for s in speakers]),
                        stack("shimmer") * per_clip([s.shimmer for s in speakers]))
    slope = np.diff(flow, axis=1, prepend=0.0)  # glottal flow derivative (+ lip radiation)
    excitation = voicing * slope / _rms(slope)
    breath = per_clip([s.breathiness for s in speakers]) * voicing
    noise = (aspiration + breath) * ASPIRATION_GAIN * stack("aspiration_noise")
    vocal = formant_cascade(excitation + noise, formants, bandwidths)
    vocal /= _rms(vocal, voicing > 0.5 * voicing.max(axis=1, keepdims=True))

    noise = stack("frication_noise")
    for band, (order, kind, cutoff) in enumerate(NOISE_BANDS.values()):
        users = np.flatnonzero(frication[:, band].max(axis=1) > 0)
        if not len(users):
            continue
        sos = signal.butter(order, cutoff, btype=kind, fs=SAMPLE_RATE, output="sos")
        coloured = signal.sosfilt(sos, noise[users], axis=1)
        coloured /= _rms(coloured)
        vocal[users] += _to_samples(frication[users, band], n_samples) * coloured

    spans = np.array([plan.span for plan in plans])
    positions = np.arange(n_samples)
    inside = (positions >= spans[:, :1]) & (positions < spans[:, 1:])
    vocal *= inside
    vocal *= TARGET_RMS * per_clip([p.gain for p in plans]) / _rms(vocal, inside)
    # A recording is never digitally silent: white noise at the floor level, everywhere.
    floor = TARGET_RMS * per_clip([p.gain * p.floor for p in plans])
    return vocal + floor * stack("floor_noise")


def synthesize(words: Sequence[Sequence[str]], speakers: Sequence[Speaker],
               rngs: Sequence[np.random.Generator], *, n_samples: int,
               variation: Variation = Variation(), chunk: int = 128,
               ) -> tuple[np.ndarray, np.ndarray]:
    """Speak phone sequences: ``words[i]`` by ``speakers[i]`` with randomness from ``rngs[i]``.

    Returns waveforms ``(N, n_samples)`` float32 (only the noise floor outside each
    utterance) and spans ``(N, 2)``: the samples [start, stop) each utterance occupies. A
    clip depends only on its own phones, speaker and generator, never on the other clips or
    on ``chunk`` (how many clips are rendered together, bounding memory).
    """
    if not len(words) == len(speakers) == len(rngs):
        raise ValueError(f"need one speaker and one generator per word: {len(words)} words, "
                         f"{len(speakers)} speakers, {len(rngs)} generators")
    if n_samples < 2 * CONTROL_HOP:
        raise ValueError(f"n_samples must be at least {2 * CONTROL_HOP}, got {n_samples}")
    waveforms = np.zeros((len(words), n_samples), dtype=np.float32)
    spans = np.zeros((len(words), 2), dtype=np.int64)
    for start in range(0, len(words), chunk):
        part = slice(start, start + chunk)
        plans = [_plan(w, s, r, variation, n_samples)
                 for w, s, r in zip(words[part], speakers[part], rngs[part], strict=True)]
        waveforms[part] = _render(plans, speakers[part], n_samples)
        spans[part] = [plan.span for plan in plans]
    return waveforms, spans


def speak_digits(digits: Sequence[int], speakers: Sequence[Speaker],
                 rngs: Sequence[np.random.Generator], *, n_samples: int,
                 variation: Variation = Variation()) -> tuple[np.ndarray, np.ndarray]:
    """:func:`synthesize` the words "zero".."nine" for ``digits`` (ints 0-9)."""
    bad = sorted({int(d) for d in digits} - set(range(10)))
    if bad:
        raise ValueError(f"digits must be 0-9, got {bad}")
    return synthesize([WORDS[int(d)] for d in digits], speakers, rngs, n_samples=n_samples,
                      variation=variation)
