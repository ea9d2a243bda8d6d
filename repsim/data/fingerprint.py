"""A dataset's fingerprint: which data a checkpoint was trained on, checked whenever the data
are rebuilt (``repsim.extract``, ``repsim.train --resume``).

A fingerprint is one string of three parts, ``sha256:<hex> labels:<hex> sketch:<numbers>``:

- ``sha256``: SHA-256 over everything, exactly: the dataset's name and class names, and per
  split its labels, speakers, pairs, source ids and the bytes of every clean clip, audio
  frame and image. Equal data, equal digest; any change to any value, another digest.
- ``labels``: SHA-256 over the integer and text part alone (names, labels, speakers, pairs,
  ids).
- ``sketch``: per split and per array (clips, audio frames, images), :data:`PROJECTIONS`
  random +-1 projections of the array and its L1 mass, in float64.

Two fingerprints are of the same data when their ``sha256`` digests are equal, or when their
``labels`` digests are equal and every projection agrees to within :data:`TOLERANCE` of the
array's mass. The second rule is for data rebuilt on another CPU, whose float maths differs
in the last bits (numpy's AVX-512 paths change a few synthetic clips by one float32 ulp;
torch's image resizing differs by about 1e-6 between vector instruction sets): such data
are the same data, but their bytes, and so their digest, differ. Every value may move by
up to :data:`TOLERANCE` of its size and the data still match; a whole clip, frame or image
changed (mirrored, reversed, negated, replaced) moves a projection by about its own
magnitude, far beyond a tolerance of 1e-7 of the whole array's (a single pixel nudged slightly
in a large split can pass). The projections are a check against accidents, not a seal
against forgery.

Fingerprints written before content digests (repsim 0.3.0) are 64 hex digits: SHA-256 over
the labels, pairs, ids and each clip's and image's rounded sums of ``|x|`` and ``x^2``, which
mirrored or reversed data pass. Such a stored fingerprint is still checked, by that rule
(:func:`legacy_fingerprint`), with a warning saying so.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np
import torch

log = logging.getLogger("repsim.data")

PROJECTIONS = 4  # random projections per array in the sketch
TOLERANCE = 1e-7  # how far projections may differ, as a fraction of the array's L1 mass
_SEED = 20240101  # of the projections' signs (numpy's legacy generator: a stream fixed forever)
_BLOCK_BYTES = 8 << 20  # float64 rows converted at a time
_ARRAYS = ("waveforms", "audio_clean", "images")  # the float arrays of a split
_LEGACY = re.compile(r"[0-9a-f]{64}")
_PART = re.compile(r"sha256:([0-9a-f]{64}) labels:([0-9a-f]{64}) sketch:(\S+)")


class AVDataset(Protocol):
    """What a fingerprint reads of a :class:`repsim.data.base.AVDataset` (named so here, as a
    protocol, because that module calls this one)."""

    @property
    def name(self) -> str: ...

    @property
    def class_names(self) -> list[str] | None: ...

    @property
    def splits(self) -> Mapping[str, Any]: ...

    def fingerprint(self) -> str: ...


def fingerprint(dataset: AVDataset) -> str:
    """The fingerprint of a dataset: which data a checkpoint was trained on.

    One string of three parts, ``sha256:<hex> labels:<hex> sketch:<numbers>``: a SHA-256 over
    every value, one over the labels, ids and pairs alone, and random projections of each float
    array that tell another CPU's last-bit differences from changed data (the rules are in the
    module docstring).

    Parameters
    ----------
    dataset
        A built dataset.

    Returns
    -------
    str
    """
    everything, labels = hashlib.sha256(), hashlib.sha256()
    _update_labels(labels, dataset)
    everything.update(labels.digest())
    sketch: list[float] = []
    for name in sorted(dataset.splits):
        split = dataset.splits[name]
        for array_name in _ARRAYS:
            values = getattr(split, array_name).detach().cpu().contiguous()
            everything.update(f"{name}.{array_name}{tuple(values.shape)}{values.dtype}"
                              .encode())
            everything.update(values.reshape(-1).view(torch.uint8).numpy())  # any dtype
            sketch += _sketch(values)
    return (f"sha256:{everything.hexdigest()} labels:{labels.hexdigest()} "
            f"sketch:{','.join(repr(value) for value in sketch)}")


def _update_labels(digest, dataset: AVDataset) -> None:
    """Feed ``digest`` the dataset's integer and text part: names, labels, pairs, ids."""
    digest.update(dataset.name.encode())
    if dataset.class_names is not None:
        digest.update("\n".join(["classes", *dataset.class_names]).encode())
    for name in sorted(dataset.splits):
        split = dataset.splits[name]
        digest.update(name.encode())
        for tensor in (split.clip_digit, split.clip_speaker, split.image_digit,
                       split.pair_audio, split.pair_visual):
            integers = tensor.detach().cpu().numpy().astype("<i8")
            digest.update(np.ascontiguousarray(integers).tobytes())
        digest.update("\n".join([*split.clip_source, "", *split.image_source, "",
                                 *split.speakers]).encode())


def _sketch(items: torch.Tensor) -> list[float]:
    """:data:`PROJECTIONS` projections of ``items`` (rows: the first axis) on random +-1
    signs per row and per column, then the L1 mass; float64 throughout."""
    rows = items.reshape(len(items), -1)
    n, m = rows.shape
    signs = np.random.RandomState(_SEED)  # noqa: NPY002 (a stream numpy never changes)
    columns = torch.from_numpy(signs.randint(0, 2, (m, PROJECTIONS)) * 2.0 - 1.0)
    weights = torch.from_numpy(signs.randint(0, 2, (n, PROJECTIONS)) * 2.0 - 1.0)
    projections = torch.zeros(PROJECTIONS, dtype=torch.float64)
    mass = torch.zeros((), dtype=torch.float64)
    step = max(1, _BLOCK_BYTES // (8 * max(m, 1)))
    for start in range(0, n, step):
        block = rows[start:start + step].double()
        projections += (weights[start:start + step] * (block @ columns)).sum(dim=0)
        mass += block.abs().sum()
    return [*projections.tolist(), float(mass)]


def legacy_fingerprint(dataset: AVDataset) -> str:
    """The fingerprint repsim wrote before content digests, to check the checkpoints it made:
    SHA-256 over the labels, pairs and ids and each clip's and image's rounded sums."""
    digest = hashlib.sha256(dataset.name.encode())
    if dataset.class_names is not None:
        digest.update("\n".join(dataset.class_names).encode())
    for split_name in sorted(dataset.splits):
        split = dataset.splits[split_name]
        digest.update(split_name.encode())
        for tensor in (split.clip_digit, split.image_digit, split.pair_audio,
                       split.pair_visual):
            integers = tensor.detach().cpu().numpy().astype("<i8")
            digest.update(np.ascontiguousarray(integers).tobytes())
        for items in (split.waveforms, split.images):
            rows = items.detach().cpu().double().reshape(len(items), -1)
            summary = torch.stack([rows.abs().sum(dim=1), rows.square().sum(dim=1)], dim=1)
            digest.update(",".join(f"{value:.6g}" for value in summary.flatten().tolist())
                          .encode())
        digest.update("\n".join(split.clip_source + split.image_source).encode())
    return digest.hexdigest()


def is_legacy(stored: str) -> bool:
    """Whether ``stored`` is a fingerprint from before content digests."""
    return bool(_LEGACY.fullmatch(stored))


def content_digest(stored: str) -> str:
    """The ``sha256:<hex>`` part of a fingerprint (what a person compares by eye); a
    fingerprint from before content digests as it is."""
    found = _PART.match(stored)
    return f"sha256:{found.group(1)}" if found else stored


def short(stored: str) -> str:
    """The first 12 hex digits of a fingerprint's digest, for messages."""
    found = _PART.match(stored)
    return found.group(1)[:12] if found else stored[:12]


def fingerprint_difference(stored: str, current: str) -> str | None:
    """Whether two fingerprints are of the same data, and if not what differs.

    Parameters
    ----------
    stored
        The fingerprint a checkpoint recorded.
    current
        The fingerprint of the data now.

    Returns
    -------
    str or None
        ``None`` when they are of the same data (equal digests, or equal labels and every
        projection within ``TOLERANCE``); otherwise what differs, in a few words for a message.
    """
    if stored == current:
        return None
    old, new = _PART.fullmatch(stored), _PART.fullmatch(current)
    if old is None or new is None:
        return f"fingerprint {short(stored)} stored, {short(current)} now"
    if old.group(2) != new.group(2):
        return (f"its labels, speakers, pairs or source ids differ (labels digest "
                f"{old.group(2)[:12]} stored, {new.group(2)[:12]} now)")
    if not _sketches_agree(old.group(3), new.group(3)):
        return (f"its clips, audio frames or images differ (content digest "
                f"{old.group(1)[:12]} stored, {new.group(1)[:12]} now)")
    return None


def _sketches_agree(stored: str, current: str) -> bool:
    """Whether two sketches agree to within :data:`TOLERANCE` of each array's mass."""
    try:
        old = [float(value) for value in stored.split(",")]
        new = [float(value) for value in current.split(",")]
    except ValueError:
        return False
    width = PROJECTIONS + 1
    if len(old) != len(new) or len(old) % width:
        return False
    for start in range(0, len(old), width):
        mass = max(old[start + PROJECTIONS], new[start + PROJECTIONS])
        for a, b in zip(old[start:start + PROJECTIONS], new[start:start + PROJECTIONS],
                        strict=True):
            if not abs(a - b) <= TOLERANCE * mass:  # NaN never agrees
                return False
    return True


def data_difference(stored: str, dataset: AVDataset, current: str | None = None) -> str | None:
    """Whether a dataset holds the data a stored fingerprint names.

    A fingerprint from before content digests (repsim 0.3.0) is checked by its own, weaker rule,
    with a warning.

    Parameters
    ----------
    stored
        The fingerprint a checkpoint recorded.
    dataset
        The rebuilt dataset.
    current
        ``dataset``'s fingerprint, when the caller has it already.

    Returns
    -------
    str or None
        ``None`` when they match; otherwise what differs
        ([fingerprint_difference][repsim.data.fingerprint.fingerprint_difference]).
    """
    if is_legacy(stored):
        log.warning("the stored data fingerprint %s predates content digests (repsim 0.3.0): "
                    "the data are checked by its rounded sums alone, which mirrored or "
                    "reversed data pass; train again to store a content digest", stored[:12])
        legacy = legacy_fingerprint(dataset)
        return None if legacy == stored else f"fingerprint {stored[:12]} stored, {legacy[:12]} now"
    return fingerprint_difference(stored, dataset.fingerprint() if current is None else current)
