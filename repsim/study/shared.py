"""The data a study's runs share, built once per study and memory-mapped by every worker.

Every run of a study whose data config is the same (all runs of a dataset, unless the study
gives each seed its own data with ``data_seeds``) trains, is tested and is probed on the same
dataset. Instead of each run (or each worker) building it again, it is built once and kept
beside the study's runs, in ``<study folder>/shared_data/<dataset>-<key>/``:

- ``tensors.pt``: every split's tensors (clips, clean audio frames, images, labels, pairs),
  loaded with ``torch.load(mmap=True)``, so that the workers of a study share one copy of the
  data in the page cache instead of holding one each;
- ``dataset.json``: the data config it was built from, the repsim version, the dataset's
  name, class names, sample rate, builder options, audio feature settings, source ids and
  speakers, and its fingerprint (:mod:`repsim.data.fingerprint`, a content digest).

``<key>`` is a digest of the data config and the repsim version: another config or another
version has another folder, and so never reads data a different builder made. On loading,
the content digest of the loaded data (the fingerprint's ``sha256`` part, over every byte) is
computed again and compared with the recorded one: a folder whose data differ from the digest
it records (a disk error, an edit) is rebuilt, with a warning. A folder is written under a
temporary name and renamed when complete, so that workers and array tasks racing to build it
never read half of one.

Only datasets whose audio features are :class:`repsim.data.features.LogMelFrames` (every
built-in dataset's) can be kept this way; a plugin's other feature transform is built in
each worker, as before.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

import torch

from repsim import __version__
from repsim.data.base import AVDataset, AVSplit
from repsim.data.config import DataConfig
from repsim.data.features import LogMelFrames
from repsim.data.fingerprint import content_digest

log = logging.getLogger("repsim.study")

SHARED_DATA_DIR = "shared_data"  # under the study folder
TENSORS_FILE = "tensors.pt"
DESCRIPTION_FILE = "dataset.json"
CACHE_FORMAT = 1
_LISTS = ("clip_source", "image_source", "speakers")  # a split's fields kept in the JSON


class _Kept(AVDataset):
    """A dataset loaded from a study's shared data: its fingerprint, checked against the data
    when loaded, is not computed again by every step that asks for it."""

    _known: str = ""

    def fingerprint(self) -> str:
        return self._known


def data_key(data: DataConfig) -> str:
    """The folder name of ``data``'s shared copy: ``<dataset>-<16 hex digits>`` of the config
    and the repsim version."""
    text = json.dumps({"config": data.to_dict(), "repsim": __version__,
                       "format": CACHE_FORMAT}, sort_keys=True)
    return f"{data.dataset}-{hashlib.sha256(text.encode()).hexdigest()[:16]}"


def shared_path(folder: str | os.PathLike, data: DataConfig) -> Path:
    """Where the study in ``folder`` keeps ``data``'s dataset."""
    return Path(folder) / SHARED_DATA_DIR / data_key(data)


def shared_dataset(folder: str | os.PathLike, data: DataConfig) -> AVDataset:
    """``data``'s dataset for the study in ``folder``: loaded (memory-mapped) from its shared
    copy when that exists and matches its digest, else built and, where its features allow
    (module docstring), kept there for the other runs."""
    path = shared_path(folder, data)
    dataset = load_shared(path)
    if dataset is not None:
        return dataset
    log.info("building the %s dataset", data.dataset)
    built = data.build()
    if not isinstance(built.features, LogMelFrames):
        log.info("the %s dataset's features (%s) cannot be kept for the study's other runs: "
                 "each worker builds it", data.dataset, type(built.features).__name__)
        return built
    save_shared(path, built, data)
    kept = load_shared(path)
    return built if kept is None else kept


def load_shared(path: str | os.PathLike) -> AVDataset | None:
    """The dataset kept at ``path``, memory-mapped; None when there is none, or (with a
    warning) when its data do not match the fingerprint it records."""
    path = Path(path)
    if not (path / DESCRIPTION_FILE).is_file():
        return None
    try:
        description = json.loads((path / DESCRIPTION_FILE).read_text())
        if description.get("format") != CACHE_FORMAT:
            raise ValueError(f"format {description.get('format')!r}, not {CACHE_FORMAT}")
        tensors = torch.load(path / TENSORS_FILE, mmap=True, weights_only=True)
        splits = {name: AVSplit(name=name, **tensors[name],
                                **{key: description["splits"][name][key] for key in _LISTS})
                  for name in description["splits"]}
        dataset = _Kept(name=description["name"], splits=splits,
                        features=LogMelFrames(**description["features"]),
                        sample_rate=description["sample_rate"], config=description["options"],
                        class_names=description["class_names"])
    except (OSError, ValueError, RuntimeError, KeyError, TypeError, AttributeError) as error:
        log.warning("the shared data in %s cannot be read (%s: %s): building them again",
                    path, type(error).__name__, error)
        return None
    # the bytes are checked: the fingerprint's content digest (its sketch's float sums move
    # in the last bits with the number of threads that computes them)
    recorded = description["fingerprint"]
    if content_digest(AVDataset.fingerprint(dataset)) != content_digest(recorded):
        log.warning("the shared data in %s differ from the digest they record: building them "
                    "again", path)
        return None
    dataset._known = recorded
    return dataset


def save_shared(path: str | os.PathLike, dataset: AVDataset, data: DataConfig) -> Path:
    """Keep ``dataset`` (built from ``data``) at ``path``: written beside it under a temporary
    name, then renamed; when another process has kept it meanwhile, its copy stays."""
    path = Path(path)
    if not isinstance(dataset.features, LogMelFrames):
        raise ValueError(f"only datasets with LogMelFrames features can be shared, not "
                         f"{type(dataset.features).__name__}")
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp{os.getpid()}")
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir()
    try:
        tensors = {name: {field.name: getattr(split, field.name)
                          for field in dataclasses.fields(AVSplit)
                          if isinstance(getattr(split, field.name), torch.Tensor)}
                   for name, split in dataset.splits.items()}
        torch.save(tensors, temporary / TENSORS_FILE)
        description = {
            "format": CACHE_FORMAT, "repsim": __version__, "config": data.to_dict(),
            "name": dataset.name, "class_names": dataset.class_names,
            "sample_rate": dataset.sample_rate, "options": dataset.config,
            "features": dataclasses.asdict(dataset.features),
            "splits": {name: {key: list(getattr(split, key)) for key in _LISTS}
                       for name, split in dataset.splits.items()},
            "fingerprint": dataset.fingerprint()}
        (temporary / DESCRIPTION_FILE).write_text(json.dumps(description))
        if path.exists():  # a stale or mismatching copy: replaced
            shutil.rmtree(path, ignore_errors=True)
        try:
            os.rename(temporary, path)
        except OSError:  # another process kept it first
            log.debug("%s was kept by another process meanwhile", path)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    return path
