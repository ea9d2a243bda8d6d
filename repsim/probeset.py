"""The probe set: which stimuli an extraction runs through a model, and under which conditions.

A probe set depends on the dataset and a seed only, never on the model, so every checkpoint
trained on one dataset sees the same stimuli in the same order, with the same noise, under
the same ids: two models can be compared stimulus by stimulus.

- ``n`` congruent pairs are drawn from the test split's pairs (a seeded permutation, a pair
  that repeats one drawn before skipped, since it would be the same stimulus under the same
  id twice; a larger ``n`` extends a smaller one). Every condition except ``incongruent``
  uses these pairs, so a ``stimulus_id`` names the same pair in ``clean``, ``audio_snr0``,
  ``visual_removed``...
- ``incongruent`` draws ``n`` pairs whose audio and visual digits (classes) differ
  (:func:`repsim.data.pairing.incongruent_pairs`, balanced over class combinations).
- Conditions (names as in the activation files): ``clean``, ``incongruent``,
  ``audio_removed``, ``visual_removed`` (that modality's input is all zeros) and
  ``audio_snr{X}``, ``visual_snr{X}``, ``both_snr{X}`` (white noise at X dB, e.g.
  ``audio_snr-10``; see :func:`repsim.data.make_batch`).
- Noise is drawn on the CPU from a generator seeded by (seed, condition name, pair position),
  one stimulus at a time, so it does not depend on batch size, device or ``n``.

Rows are ordered condition by condition, pairs in the same order within each condition.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from repsim.activations.format import CLASS_COORDS, CLASS_NAMES, DIGIT_COORDS, STIMULUS_COORDS
from repsim.conditions import INCONGRUENT, ProbeCondition, parse_condition, probe_condition_names
from repsim.data.base import AVDataset, Batch, make_batch
from repsim.data.noise import derived_seed, item_generators
from repsim.data.pairing import incongruent_pairs

PROBE_SET_VERSION = 1


def _name_key(name: str) -> int:
    return zlib.crc32(name.encode())


class ProbeSet:
    """The ordered stimuli of an extraction (the module docstring defines them).

    Build it with [build][repsim.probeset.ProbeSet.build];
    [coordinates][repsim.probeset.ProbeSet.coordinates] gives the per-stimulus coordinates of the
    activation file, [batches][repsim.probeset.ProbeSet.batches] the model inputs,
    [definition][repsim.probeset.ProbeSet.definition] a JSON-able record.

    Parameters
    ----------
    dataset
        The dataset whose split the stimuli come from.
    conditions
        The probe conditions, in row order.
    n_stimuli
        Pairs per condition.
    seed
        Seeds the draws and the noise.
    congruent
        The congruent pairs: (clip index, image index) arrays.
    incongruent
        The incongruent pairs, or ``None`` when no condition needs them.
    split
        The dataset split the pairs index.
    """

    def __init__(self, dataset: AVDataset, conditions: list[ProbeCondition], n_stimuli: int,
                 seed: int, congruent: tuple[np.ndarray, np.ndarray],
                 incongruent: tuple[np.ndarray, np.ndarray] | None, split: str) -> None:
        self.dataset, self.conditions = dataset, conditions
        self.n_stimuli, self.seed, self.split_name = n_stimuli, seed, split
        self.split = dataset.splits[split]
        self._pairs = {False: congruent, True: incongruent}
        self._fingerprint: str | None = None

    @classmethod
    def build(cls, dataset: AVDataset, conditions: Sequence[str] | None = None,
              n_stimuli: int | None = 200, seed: int = 0, split: str = "test") -> ProbeSet:
        """Draw a probe set from a dataset's split.

        Parameters
        ----------
        dataset
            A built dataset.
        conditions
            Condition names; ``None``: the default of
            [probe_condition_names][repsim.conditions.probe_condition_names].
        n_stimuli
            Pairs per condition; ``None``: every distinct pair of the split.
        seed
            Seeds the pairs and the noise.
        split
            The split to draw from.

        Returns
        -------
        ProbeSet

        Raises
        ------
        ValueError
            For no conditions, an unknown split or condition, a number of stimuli that is not a
            positive integer or exceeds the split's pairs, or an incongruent condition on a dataset
            that cannot pair its classes incongruently.
        """
        names = probe_condition_names() if conditions is None else list(dict.fromkeys(
            parse_condition(name).name for name in conditions))
        if not names:
            raise ValueError("a probe set needs at least one condition")
        parsed = [parse_condition(name) for name in names]
        if split not in dataset.splits:
            raise ValueError(f"unknown split {split!r}; the dataset has "
                             f"{', '.join(dataset.splits)}")
        pairs = dataset.splits[split]
        available = len(pairs)
        both = np.stack([pairs.pair_audio.cpu().numpy(), pairs.pair_visual.cpu().numpy()],
                        axis=1).astype(np.int64)
        distinct = len(np.unique(both, axis=0))
        n = distinct if n_stimuli is None else n_stimuli
        if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
            raise ValueError(f"number of stimuli must be a positive integer, got {n_stimuli!r}")
        if n > distinct:
            repeats = f" ({available - distinct} repeat another)" if distinct < available else ""
            raise ValueError(f"asked for {n} stimuli but the {split} split has only "
                             f"{distinct} distinct pairs{repeats}")
        order = np.random.default_rng(derived_seed(seed, _name_key("congruent"))).permutation(
            available)
        _, first = np.unique(both[order], axis=0, return_index=True)
        order = order[np.sort(first)][:n]  # each pair where it first comes in the permutation
        congruent = (both[order, 0], both[order, 1])
        incongruent = None
        if any(c.incongruent for c in parsed):
            rng = np.random.default_rng(derived_seed(seed, _name_key(INCONGRUENT)))
            incongruent = incongruent_pairs(pairs.clip_digit.cpu().numpy(),
                                            pairs.image_digit.cpu().numpy(), n, rng)
        return cls(dataset, parsed, n, seed, congruent, incongruent, split)

    @property
    def condition_names(self) -> list[str]:
        """The conditions' names, in row order."""
        return [c.name for c in self.conditions]

    def __len__(self) -> int:
        return self.n_stimuli * len(self.conditions)

    def pairs(self, condition: ProbeCondition) -> tuple[np.ndarray, np.ndarray]:
        """The pairs of a condition's stimuli.

        Parameters
        ----------
        condition
            One of the probe set's conditions.

        Returns
        -------
        tuple of numpy.ndarray
            (clip index, image index) arrays.
        """
        pairs = self._pairs[condition.incongruent]
        if pairs is None:
            raise ValueError(f"condition {condition.name!r} needs incongruent pairs, and this "
                             f"probe set was built without an incongruent condition")
        return pairs

    def coordinates(self) -> dict[str, np.ndarray]:
        """The per-stimulus coordinates in row order.

        Returns
        -------
        dict of str to numpy.ndarray
            Names as in the activation file format (a dataset with class names labels stimuli
            ``audio_class``/``visual_class``).
        """
        columns = self._columns()
        if self.dataset.class_names is not None:
            columns = {CLASS_COORDS[DIGIT_COORDS.index(key)] if key in DIGIT_COORDS else key:
                       values for key, values in columns.items()}
        return columns

    def _columns(self) -> dict[str, np.ndarray]:
        """The coordinates under the format's digit names (:data:`STIMULUS_COORDS`)."""
        split = self.split
        clip_digit = split.clip_digit.cpu().numpy()
        image_digit = split.image_digit.cpu().numpy()
        speaker_index = split.clip_speaker.cpu().numpy()
        columns: dict[str, list] = {key: [] for key in STIMULUS_COORDS}
        for condition in self.conditions:
            audio, visual = self.pairs(condition)
            n = len(audio)
            columns["stimulus_id"] += split.stimulus_ids(torch.from_numpy(audio),
                                                         torch.from_numpy(visual))
            columns["condition"] += [condition.name] * n
            columns["audio_digit"] += clip_digit[audio].tolist()
            columns["visual_digit"] += image_digit[visual].tolist()
            columns["congruent"] += (clip_digit[audio] == image_digit[visual]).tolist()
            columns["speaker"] += [split.speakers[s] if split.speakers else str(s)
                                   for s in speaker_index[audio].tolist()]
            columns["audio_source"] += [split.clip_source[a] for a in audio.tolist()]
            columns["visual_source"] += [split.image_source[v] for v in visual.tolist()]
            columns["audio_index"] += audio.tolist()
            columns["visual_index"] += visual.tolist()
            columns["audio_snr"] += [condition.inputs.audio_snr] * n
            columns["visual_snr"] += [condition.inputs.visual_snr] * n
            columns["removed"] += [condition.inputs.remove or "none"] * n
        types = {"audio_digit": np.int64, "visual_digit": np.int64, "congruent": bool,
                 "audio_index": np.int64, "visual_index": np.int64, "audio_snr": np.float64,
                 "visual_snr": np.float64}
        return {key: np.asarray(values, dtype=types.get(key, str))
                for key, values in columns.items()}

    def batches(self, batch_size: int) -> Iterator[tuple[int, Batch]]:
        """The model inputs in row order, on the CPU; a batch never spans conditions.

        Parameters
        ----------
        batch_size
            Stimuli per batch (a positive integer).

        Yields
        ------
        tuple of (int, Batch)
            The batch's first row and the batch.

        Raises
        ------
        ValueError
            For a batch size that is not a positive integer.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
            raise ValueError(f"batch size must be a positive integer, got {batch_size!r}")
        row = 0
        for condition in self.conditions:
            audio, visual = self.pairs(condition)
            for start in range(0, len(audio), batch_size):
                stop = min(start + batch_size, len(audio))
                yield row + start, self._batch(condition, audio, visual, start, stop)
            row += len(audio)

    def _batch(self, condition: ProbeCondition, audio: np.ndarray, visual: np.ndarray,
               start: int, stop: int) -> Batch:
        inputs = condition.inputs
        options: dict[str, Any] = {"audio_snr": inputs.audio_snr, "visual_snr": inputs.visual_snr,
                   "remove": inputs.remove}
        index_a, index_v = torch.from_numpy(audio), torch.from_numpy(visual)
        if inputs.noise is None:
            return make_batch(self.split, self.dataset.features, index_a[start:stop],
                              index_v[start:stop], **options)
        # One stimulus at a time: its noise (own generator) and its features (computed alone)
        # are then the same bits whatever the batch size and thread count.
        generators = item_generators(range(start, stop), self.seed, _name_key(condition.name))
        parts = [make_batch(self.split, self.dataset.features, index_a[i:i + 1],
                            index_v[i:i + 1], generator=[generator], **options)
                 for i, generator in zip(range(start, stop), generators, strict=True)]
        return Batch(**{field.name: torch.cat([getattr(part, field.name) for part in parts])
                        for field in dataclasses.fields(Batch)})

    def fingerprint(self) -> str:
        """The dataset's fingerprint (computed once).

        Returns
        -------
        str
        """
        if self._fingerprint is None:
            self._fingerprint = self.dataset.fingerprint()
        return self._fingerprint

    def definition(self) -> dict:
        """What defines this probe set, JSON-able (stored in the activation file).

        Returns
        -------
        dict
        """
        return {"version": PROBE_SET_VERSION, "dataset": self.dataset.name,
                "dataset_config": self.dataset.config,
                "dataset_fingerprint": self.fingerprint(), "split": self.split_name,
                "seed": self.seed, "n_stimuli_per_condition": self.n_stimuli,
                "conditions": self.condition_names,
                "noise": "white Gaussian, seeded per (seed, condition, pair position), drawn "
                         "afresh per visual time step",
                # only for datasets with named classes: digit files stay as they were
                **({} if self.dataset.class_names is None
                   else {CLASS_NAMES: list(self.dataset.class_names)})}
