"""Pairing: congruent pairs share a digit and use every clip evenly; incongruent pairs never
share one and fill every (audio digit, visual digit) cell of the table equally."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from repsim.data.pairing import congruent_pairs, incongruent_pairs

CLIPS = np.repeat(np.arange(10), 7)  # 70 clips, 7 per digit
IMAGES = np.tile(np.arange(10), 5)  # 50 images, 5 per digit


@given(clips=st.lists(st.integers(0, 9), min_size=1, max_size=60),
       n_pairs=st.integers(0, 200), seed=st.integers(0, 2**32 - 1))
@settings(max_examples=60, deadline=None)
def test_congruent_pairs_share_their_digit_and_use_clips_evenly(clips, n_pairs, seed):
    clip_digit = np.array(clips)
    image_digit = np.arange(10).repeat(2)
    audio, visual = congruent_pairs(clip_digit, image_digit, n_pairs,
                                    np.random.default_rng(seed))
    assert len(audio) == len(visual) == n_pairs
    np.testing.assert_array_equal(clip_digit[audio], image_digit[visual])
    uses = np.bincount(audio, minlength=len(clip_digit))
    assert uses.min() >= n_pairs // len(clip_digit)
    assert uses.max() <= -(-n_pairs // len(clip_digit))


def test_congruent_images_are_drawn_from_all_images_of_the_digit():
    audio, visual = congruent_pairs(CLIPS, IMAGES, 5000, np.random.default_rng(0))
    counts = np.bincount(visual, minlength=len(IMAGES))
    assert counts.min() > 0
    # uniform within a digit: each of the 5 images of a digit gets ~1/5 of its 500 pairs
    assert np.abs(counts - 100).max() < 45


def test_congruent_pairing_needs_an_image_for_every_clip_digit():
    with pytest.raises(ValueError, match=r"no image for digit\(s\) \[9\]"):
        congruent_pairs(CLIPS, IMAGES[IMAGES != 9], 10, np.random.default_rng(0))


@pytest.mark.parametrize("pairing", [congruent_pairs, incongruent_pairs])
def test_bad_requests_are_refused_and_zero_pairs_is_empty(pairing):
    with pytest.raises(ValueError, match="n_pairs must be non-negative"):
        pairing(CLIPS, IMAGES, -1, np.random.default_rng(0))
    with pytest.raises(ValueError, match="no clips"):
        pairing(np.array([], dtype=np.int64), IMAGES, 3, np.random.default_rng(0))
    audio, visual = pairing(CLIPS, IMAGES, 0, np.random.default_rng(0))
    assert len(audio) == len(visual) == 0


def test_incongruent_pairs_differ_and_fill_the_table_evenly():
    n = 900  # ten audio digits x nine visual digits, ten times over
    audio, visual = incongruent_pairs(CLIPS, IMAGES, n, np.random.default_rng(1))
    a, v = CLIPS[audio], IMAGES[visual]
    assert (a != v).all()
    table = np.zeros((10, 10), dtype=int)
    np.add.at(table, (a, v), 1)
    off_diagonal = table[~np.eye(10, dtype=bool)]
    np.testing.assert_array_equal(off_diagonal, np.full(90, n // 90))
    np.testing.assert_array_equal(np.bincount(a, minlength=10), np.full(10, n // 10))
    np.testing.assert_array_equal(np.bincount(v, minlength=10), np.full(10, n // 10))


@pytest.mark.parametrize("n", [1, 37, 95, 250])
def test_incongruent_table_is_balanced_for_any_count(n):
    audio, visual = incongruent_pairs(CLIPS, IMAGES, n, np.random.default_rng(2))
    a, v = CLIPS[audio], IMAGES[visual]
    assert (a != v).all()
    table = np.zeros((10, 10), dtype=int)
    np.add.at(table, (a, v), 1)
    off_diagonal = table[~np.eye(10, dtype=bool)]
    assert off_diagonal.max() - off_diagonal.min() <= 1
    audio_counts = np.bincount(a, minlength=10)
    assert audio_counts.max() - audio_counts.min() <= 1


def test_incongruent_pairs_use_only_digits_present_in_both_modalities():
    images = IMAGES[IMAGES < 4]  # images of 0-3 only
    audio, visual = incongruent_pairs(CLIPS, images, 120, np.random.default_rng(3))
    a, v = CLIPS[audio], images[visual]
    assert set(a.tolist()) == set(v.tolist()) == {0, 1, 2, 3}
    assert (a != v).all()
    with pytest.raises(ValueError, match="at least two digits"):
        incongruent_pairs(CLIPS, IMAGES[IMAGES == 2], 5, np.random.default_rng(0))


@pytest.mark.parametrize("pairing", [congruent_pairs, incongruent_pairs])
def test_pairing_is_deterministic_for_a_seed(pairing):
    first = pairing(CLIPS, IMAGES, 64, np.random.default_rng(7))
    again = pairing(CLIPS, IMAGES, 64, np.random.default_rng(7))
    other = pairing(CLIPS, IMAGES, 64, np.random.default_rng(8))
    assert all(np.array_equal(x, y) for x, y in zip(first, again, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(first, other, strict=True))
