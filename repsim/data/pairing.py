"""Pairing audio clips with images: congruent pairs for training, incongruent for analysis."""

from __future__ import annotations

import numpy as np

# Pairs drawn per image at most (a dataset's ``pairs_per_image`` option): beyond it a typo
# would ask for billions of pairs.
MAX_PAIRS_PER_IMAGE = 100


def check_pairs_per_image(value: float) -> None:
    """Check how many pairs are drawn per image.

    Parameters
    ----------
    value
        Pairs drawn per image.

    Raises
    ------
    ValueError
        Unless ``value`` is in (0, ``MAX_PAIRS_PER_IMAGE``].
    """
    if not 0 < value <= MAX_PAIRS_PER_IMAGE:
        raise ValueError(f"pairs_per_image must be positive and at most "
                         f"{MAX_PAIRS_PER_IMAGE}, got {value}")


def _by_digit(digits: np.ndarray) -> dict[int, np.ndarray]:
    return {int(d): np.flatnonzero(digits == d) for d in np.unique(digits)}


def _check_request(clip_digit: np.ndarray, n_pairs: int) -> None:
    """Refuse a negative pair count, or pairs asked of no clips, with a clear message."""
    if n_pairs < 0:
        raise ValueError(f"n_pairs must be non-negative, got {n_pairs}")
    if n_pairs and not len(clip_digit):
        raise ValueError(f"cannot draw {n_pairs} pairs: there are no clips")


def congruent_pairs(clip_digit: np.ndarray, image_digit: np.ndarray, n_pairs: int,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(clip, image) index pairs with equal digits.

    Every clip is used ``n_pairs // n_clips`` or one more times (clips cycle in a shuffled
    order), each with an image of its digit drawn uniformly, so no clip is over-represented.

    Parameters
    ----------
    clip_digit
        The digit (or class) of each clip.
    image_digit
        The digit (or class) of each image.
    n_pairs
        How many pairs to draw.
    rng
        The random generator.

    Returns
    -------
    audio : numpy.ndarray
        Each pair's clip index.
    visual : numpy.ndarray
        Each pair's image index.

    Raises
    ------
    ValueError
        For a negative ``n_pairs``, no clips, or a clip's digit with no image.
    """
    clip_digit, image_digit = np.asarray(clip_digit), np.asarray(image_digit)
    _check_request(clip_digit, n_pairs)
    images_of = _by_digit(image_digit)
    missing = sorted(set(np.unique(clip_digit).tolist()) - set(images_of))
    if missing:
        raise ValueError(f"no image for digit(s) {missing}: cannot pair congruently")
    reps = -(-n_pairs // max(len(clip_digit), 1))
    audio = np.concatenate([np.empty(0, dtype=np.int64)]
                           + [rng.permutation(len(clip_digit)) for _ in range(reps)])[:n_pairs]
    visual = np.empty(n_pairs, dtype=np.int64)
    for digit, idx in images_of.items():
        slots = np.flatnonzero(clip_digit[audio] == digit)
        visual[slots] = rng.choice(idx, size=len(slots))
    return audio.astype(np.int64), visual


MAX_REDRAWS = 1000  # draws of one incongruent pair before its digits are judged exhausted


def incongruent_pairs(clip_digit: np.ndarray, image_digit: np.ndarray, n_pairs: int,
                      rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(clip, image) index pairs whose digits differ.

    Audio digit and visual digit are balanced: with the k digits (classes) present in both
    modalities, pair ``i`` takes the audio digit ``a`` and the visual digit ``s`` places after it
    (cyclically), the shift ``s`` cycling through 1..k-1, so every off-diagonal cell of the
    audio-digit x visual-digit table is filled about equally. No pair is drawn twice (a repeat is
    drawn again, which leaves the draws before it as they were).

    Parameters
    ----------
    clip_digit
        The digit (or class) of each clip.
    image_digit
        The digit (or class) of each image.
    n_pairs
        How many pairs to draw.
    rng
        The random generator.

    Returns
    -------
    audio : numpy.ndarray
        Each pair's clip index.
    visual : numpy.ndarray
        Each pair's image index.

    Raises
    ------
    ValueError
        For a negative ``n_pairs``, no clips, fewer than two digits present in both modalities,
        or too few clips and images for that many distinct pairs.
    """
    clip_digit, image_digit = np.asarray(clip_digit), np.asarray(image_digit)
    _check_request(clip_digit, n_pairs)
    clips_of, images_of = _by_digit(clip_digit), _by_digit(image_digit)
    digits = sorted(set(clips_of) & set(images_of))
    if len(digits) < 2:
        raise ValueError("incongruent pairs need at least two digits present in both modalities")
    audio = np.empty(n_pairs, dtype=np.int64)
    visual = np.empty(n_pairs, dtype=np.int64)
    drawn: set[tuple[int, int]] = set()
    for i in range(n_pairs):
        a = digits[i % len(digits)]
        v = digits[(digits.index(a) + 1 + (i // len(digits)) % (len(digits) - 1)) % len(digits)]
        for _ in range(MAX_REDRAWS):  # a pair drawn before would be the same stimulus twice
            pair = (int(rng.choice(clips_of[a])), int(rng.choice(images_of[v])))
            if pair not in drawn:
                break
        else:
            raise ValueError(f"cannot draw {n_pairs} distinct incongruent pairs: too few clips "
                             f"and images of digits {a} and {v}")
        drawn.add(pair)
        audio[i], visual[i] = pair
    return audio, visual
