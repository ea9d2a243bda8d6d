"""The dataset fingerprint: a content digest that sees mirrored, reversed or negated data, and
a sketch that still matches data rebuilt on another CPU (last-bit differences); checkpoints
from before content digests are checked by their old rule, with a warning."""

from __future__ import annotations

import dataclasses
import hashlib
import logging

import numpy as np
import pytest
import torch

from repsim.data import build_dataset
from repsim.data.fingerprint import (
    TOLERANCE,
    data_difference,
    fingerprint_difference,
    legacy_fingerprint,
)


@pytest.fixture(scope="module")
def dataset():
    return build_dataset("synthetic", train_speakers=2, val_speakers=1, test_speakers=2,
                         repetitions=2, train_pairs=40, val_pairs=20, test_pairs=30, seed=5)


def changed(dataset, **per_split):
    """``dataset`` with every split's arrays replaced by ``function(array)``."""
    splits = {name: dataclasses.replace(split, **{field: function(getattr(split, field))
                                                 for field, function in per_split.items()})
              for name, split in dataset.splits.items()}
    return dataclasses.replace(dataset, splits=splits)


def old_rule(dataset) -> str:
    """The fingerprint before content digests, written out independently: SHA-256 over the
    labels, pairs, ids and each item's sums of |x| and x^2 to 6 significant digits."""
    digest = hashlib.sha256(dataset.name.encode())
    for name in sorted(dataset.splits):
        split = dataset.splits[name]
        digest.update(name.encode())
        for tensor in (split.clip_digit, split.image_digit, split.pair_audio,
                       split.pair_visual):
            digest.update(tensor.numpy().astype("<i8").tobytes())
        for items in (split.waveforms, split.images):
            rows = items.double().numpy().reshape(len(items), -1)
            sums = np.stack([np.abs(rows).sum(axis=1), (rows ** 2).sum(axis=1)], axis=1)
            digest.update(",".join(f"{v:.6g}" for v in sums.ravel()).encode())
        digest.update("\n".join(split.clip_source + split.image_source).encode())
    return digest.hexdigest()


@pytest.mark.parametrize("change", ["mirrored images", "reversed and negated clips",
                                    "images upside down"])
def test_the_fingerprint_sees_mirrored_reversed_and_negated_data(dataset, change):
    """Every item keeps its sums of |x| and x^2 (which the old fingerprint summed), yet the
    data are not the ones a model was trained on."""
    other = {"mirrored images": lambda: changed(dataset, images=lambda x: x.flip(-1)),
             "reversed and negated clips": lambda: changed(dataset,
                                                           waveforms=lambda x: -x.flip(-1)),
             "images upside down": lambda: changed(dataset, images=lambda x: x.flip(-2)),
             }[change]()
    assert old_rule(other) == old_rule(dataset)  # the change the old rule could not see
    assert other.fingerprint() != dataset.fingerprint()
    reason = data_difference(dataset.fingerprint(), other)
    assert reason is not None and "differ (content digest" in reason


def test_one_mirrored_image_in_a_split_is_seen(dataset):
    images = dataset.splits["train"].images.clone()
    images[7] = images[7].flip(-1)
    assert not torch.equal(images[7], dataset.splits["train"].images[7])
    other = dataclasses.replace(dataset, splits={
        **dataset.splits, "train": dataclasses.replace(dataset.splits["train"], images=images)})
    assert fingerprint_difference(dataset.fingerprint(), other.fingerprint()) is not None


def test_the_same_data_give_the_same_fingerprint(dataset):
    rebuilt = build_dataset("synthetic", **dataset.config)
    assert rebuilt.fingerprint() == dataset.fingerprint()
    assert data_difference(dataset.fingerprint(), rebuilt) is None


def test_last_bit_differences_of_another_cpu_are_the_same_data(dataset):
    """One float32 ulp on a few clip samples (numpy's AVX-512 paths), and about 1e-6 on a
    third of the image values (torch's resize on another instruction set): the digest
    changes, the data match."""
    generator = torch.Generator().manual_seed(0)

    def ulps(x):
        out = x.clone().view(-1)
        for i in torch.randint(0, out.numel(), (9,), generator=generator).tolist():
            out[i] = torch.nextafter(out[i], torch.tensor(2.0))
        return out.view_as(x)

    def resized(x):
        moved = torch.rand(x.shape, generator=generator) < 0.3
        noise = (torch.rand(x.shape, generator=generator) - 0.5) * 4e-6
        return x + moved * noise

    other = changed(dataset, waveforms=ulps, images=resized)
    assert other.fingerprint() != dataset.fingerprint()
    assert data_difference(dataset.fingerprint(), other) is None


def test_every_value_moved_within_the_tolerance_still_matches(dataset):
    """The guarantee: each value scaled by at most 1 +- TOLERANCE, in the worst direction."""
    other = changed(dataset, waveforms=lambda x: x * (1 + TOLERANCE * torch.sign(x)),
                    images=lambda x: x * (1 - 0.9 * TOLERANCE))
    assert data_difference(dataset.fingerprint(), other) is None


def test_relabelled_data_and_changed_pairs_are_named_as_such(dataset):
    test = dataset.splits["test"]
    swapped = dataclasses.replace(dataset, splits={
        **dataset.splits, "test": dataclasses.replace(test, pair_visual=test.pair_visual.flip(0))})
    reason = fingerprint_difference(dataset.fingerprint(), swapped.fingerprint())
    assert reason is not None and reason.startswith("its labels, speakers, pairs or source ids")


def test_a_fingerprint_from_before_content_digests_is_checked_by_its_old_rule(dataset, caplog):
    stored = old_rule(dataset)
    assert legacy_fingerprint(dataset) == stored
    with caplog.at_level(logging.WARNING, logger="repsim"):
        assert data_difference(stored, dataset) is None
    assert "predates content digests" in caplog.text and "train again" in caplog.text
    other = changed(dataset, images=lambda x: x * 0.5)
    assert data_difference(stored, other).startswith(f"fingerprint {stored[:12]} stored")


def test_a_damaged_stored_fingerprint_never_matches(dataset):
    current = dataset.fingerprint()
    assert fingerprint_difference("sha256:" + "0" * 64, current) is not None
    broken = current.rsplit(",", 1)[0] + ",nan"
    assert fingerprint_difference(broken, current) is not None
