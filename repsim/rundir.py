"""The run directory: its file names, its default name, and the metrics record it ends with.

A training run writes, in this order, ``config.json`` (at the start), ``ckpt.pt`` and
``log.csv`` (after every epoch) and ``metrics.json`` (last: a run without it has not
finished), and with ``--logger tensorboard`` TensorBoard event files in ``tensorboard/``;
``python -m repsim.extract`` adds ``activations.h5``. In a study, a run directory also holds
``summary.json`` (the representation summary, its last step), ``run.log`` and, after a
failure, ``failed.txt``; the study folder holds a copy of the study file. Every module that
reads or writes one of these files takes its name from here.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from repsim.conditions import MODALITIES, NOISE_KINDS
from repsim.provenance import atomic_path

CHECKPOINT_FILE = "ckpt.pt"
CONFIG_FILE = "config.json"
LOG_FILE = "log.csv"
METRICS_FILE = "metrics.json"
ACTIVATIONS_FILE = "activations.h5"
TENSORBOARD_DIR = "tensorboard"
SUMMARY_FILE = "summary.json"
RUN_LOG_FILE = "run.log"
FAILED_FILE = "failed.txt"
STUDY_FILE = "study.toml"
RUNS_DIR = "runs"
RUN_STATES = ("done", "partial", "failed", "not started")
# The files a training run writes atomically (their temporaries are cleaned by its next run).
RUN_FILES = (CHECKPOINT_FILE, METRICS_FILE, LOG_FILE, CONFIG_FILE)
LOG_FIELDS = ("epoch", "train_loss", "val_accuracy", "lr", "epoch_seconds", "elapsed_seconds")


def _cell_name(fusion_layer: int, seed: int, operator: str | None) -> str:
    """``f<k>-s<seed>``, prefixed ``<operator>-`` when an operator is named."""
    return f"{operator + '-' if operator else ''}f{fusion_layer}-s{seed}"


def run_name(dataset: str, fusion_layer: int, seed: int, operator: str | None = None) -> str:
    """The default name of a run directory: ``<dataset>-f<k>-s<seed>``, or
    ``<dataset>-<operator>-f<k>-s<seed>`` for a fusion operator other than the default
    (``operator`` None: the default's runs keep the names they had before operators). The
    colon of a ``MODULE:FUNCTION`` dataset becomes ``_``, as no file name may hold one on
    Windows."""
    return f"{dataset.replace(':', '_')}-{_cell_name(fusion_layer, seed, operator)}"


def default_run_dir(dataset: str, fusion_layer: int, seed: int,
                    operator: str | None = None) -> Path:
    """``runs/<run_name>``, where a run goes when no directory is named."""
    return Path(RUNS_DIR) / run_name(dataset, fusion_layer, seed, operator)


def study_run_dir(study_dir: str | os.PathLike, dataset: str, protocol: str,
                  fusion_layer: int, seed: int, operator: str | None = None) -> Path:
    """``<study>/runs/<dataset>/<protocol>/f<k>-s<seed>``: a study's run directory
    (``<operator>-f<k>-s<seed>`` for a non-default fusion operator, as in :func:`run_name`)."""
    return (Path(study_dir) / RUNS_DIR / dataset / protocol
            / _cell_name(fusion_layer, seed, operator))


def run_state(run_dir: str | os.PathLike) -> str:
    """One of :data:`RUN_STATES`: ``done`` once the study's last step (the summary) is
    written, ``failed`` when the last attempt failed, ``partial`` when some of it exists."""
    run_dir = Path(run_dir)
    if (run_dir / SUMMARY_FILE).is_file():
        return "done"
    if (run_dir / FAILED_FILE).is_file():
        return "failed"
    if any((run_dir / name).exists() for name in (CHECKPOINT_FILE, METRICS_FILE,
                                                   ACTIVATIONS_FILE)):
        return "partial"
    return "not started"


@dataclass(frozen=True)
class Metrics:
    """What a finished run measured: the one schema of ``metrics.json``.

    Parameters
    ----------
    run
        The run's name.
    dataset
        The dataset's name.
    fusion_layer
        The fusion layer k.
    layers
        The ConvLSTM layers.
    seed
        The training seed.
    parameters
        The model's parameter count.
    branch_hidden
        The width of the branch layers; ``None`` for k = 1.
    clean_accuracy
        Test accuracy on clean inputs.
    noise
        Test accuracies under noise: a list of ``{"noise": "audio" | "visual" | "both",
        "snr_db", "accuracy"}``.
    removed
        Test accuracies with a modality removed: ``{"audio": acc, "visual": acc}``.
    val_accuracy
        The final validation accuracy.
    epochs
        The epochs trained.
    train_seconds
        The training time.
    config
        The full training config.
    versions
        The library versions.
    test_items
        The test pairs behind each accuracy (absent from files of repsim before 0.2).
    stopped_epoch
        A run trained with ``stop_at_plateau``: the epoch it stopped at (``None`` when it trained
        every epoch); other runs have none.
    best_epoch
        A run trained with ``stop_at_plateau``: the epoch whose weights it kept.
    stacked
        How many seeds trained as one stacked network with this run
        (:mod:`repsim.train.stacked`); ``None`` for a run trained alone.
    """

    run: str
    dataset: str
    fusion_layer: int
    layers: int
    seed: int
    parameters: int
    branch_hidden: int | None
    clean_accuracy: float
    noise: list
    removed: dict
    val_accuracy: float | None
    epochs: int
    train_seconds: float
    config: dict
    versions: dict
    test_items: int | None = None
    stopped_epoch: int | None = None
    best_epoch: int | None = None
    stacked: int | None = None

    def to_dict(self) -> dict:
        """The ``metrics.json`` object.

        Returns
        -------
        dict
        """
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict, source: str = "metrics") -> Metrics:
        """Check and convert a ``metrics.json`` object (keys beyond the schema are ignored).

        Parameters
        ----------
        values
            The object.
        source
            What it was read from, for messages.

        Returns
        -------
        Metrics

        Raises
        ------
        ValueError
            Naming ``source`` and what is wrong.
        """
        if not isinstance(values, dict):
            raise ValueError(f"{source} does not hold a metrics object")
        fields = dataclasses.fields(cls)
        names = [f.name for f in fields if f.name in values]
        missing = [f.name for f in fields
                   if f.name not in values and f.default is dataclasses.MISSING]
        if missing:
            raise ValueError(f"{source} is incomplete: missing {', '.join(missing)}")
        if not isinstance(values["noise"], list):
            raise ValueError(f"{source}: noise must be a list, got {values['noise']!r}")
        for entry in values["noise"]:
            if (not isinstance(entry, dict) or entry.get("noise") not in NOISE_KINDS
                    or not isinstance(entry.get("snr_db"), int | float)
                    or not isinstance(entry.get("accuracy"), int | float)):
                raise ValueError(f"{source}: malformed noise entry {entry!r} (expected noise in "
                                 f"{'/'.join(NOISE_KINDS)}, numeric snr_db and accuracy)")
        removed = values["removed"]
        if not isinstance(removed, dict) or sorted(removed) != sorted(MODALITIES):
            raise ValueError(f"{source}: removed must map {' and '.join(MODALITIES)} to "
                             f"accuracies, got {removed!r}")
        for name in ("fusion_layer", "layers", "seed", "epochs"):
            if isinstance(values[name], bool) or not isinstance(values[name], int):
                raise ValueError(f"{source}: {name} must be an integer, got {values[name]!r}")
        numbers = {"clean_accuracy": values["clean_accuracy"],
                   "val_accuracy": values["val_accuracy"],
                   "train_seconds": values["train_seconds"],
                   **{f"removed.{name}": value for name, value in removed.items()}}
        for name, value in numbers.items():
            if (isinstance(value, bool) or not isinstance(value, int | float)) and not (
                    value is None and name == "val_accuracy"):
                raise ValueError(f"{source}: {name} must be a number, got {value!r}")
        for name in ("test_items", "stopped_epoch", "best_epoch", "stacked"):
            value = values.get(name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise ValueError(f"{source}: {name} must be an integer, got {value!r}")
        for name in ("config", "versions"):
            if not isinstance(values[name], dict):
                raise ValueError(f"{source}: {name} must be an object, got {values[name]!r}")
        return cls(**{name: values[name] for name in names})

    @property
    def noise_accuracy(self) -> dict[tuple[str, float], float]:
        """``{(noise kind, snr_db): accuracy}``."""
        return {(entry["noise"], float(entry["snr_db"])): float(entry["accuracy"])
                for entry in self.noise}


def read_metrics(path: str | os.PathLike) -> Metrics:
    """Read and check a run's ``metrics.json`` (a run directory or the file itself)."""
    path = Path(path)
    if path.is_dir():
        path = path / METRICS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no metrics file at {path} (has the training run finished?)")
    try:
        values = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error.msg} at line {error.lineno}); "
                         "the file is incomplete or corrupt") from None
    return Metrics.from_dict(values, str(path))


def write_json(path: str | os.PathLike, values: dict) -> None:
    """Write ``values`` as indented JSON, atomically (NaN and inf refused)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(values, indent=2, allow_nan=False) + "\n")


def write_metrics(run_dir: str | os.PathLike, metrics: Metrics) -> Path:
    """Write ``metrics.json``: the last file of a finished run."""
    path = Path(run_dir) / METRICS_FILE
    write_json(path, metrics.to_dict())
    return path


def write_log(run_dir: str | os.PathLike, history: Sequence[dict]) -> None:
    """Rewrite the per-epoch CSV log atomically (it survives resumes intact)."""
    with atomic_path(Path(run_dir) / LOG_FILE) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=LOG_FIELDS)
        writer.writeheader()
        for row in history:
            writer.writerow({key: row[key] for key in LOG_FIELDS})


def read_log(run_dir: str | os.PathLike) -> list[dict]:
    """The per-epoch rows of ``log.csv`` (numbers as floats, ``epoch`` as int); ValueError
    naming the file when it is missing a column or a value is not a number."""
    path = Path(run_dir) / LOG_FILE
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [name for name in LOG_FIELDS if name not in (reader.fieldnames or ())]
        if missing:
            raise ValueError(f"{path}: missing column(s) {', '.join(missing)}")
        try:
            return [{name: int(row[name]) if name == "epoch" else float(row[name])
                     for name in LOG_FIELDS} for row in reader]
        except (TypeError, ValueError):
            raise ValueError(f"{path}: a value is not a number") from None


def prepare_run_dir(run_dir: str | os.PathLike, *, resume: bool, overwrite: bool) -> Path:
    """Create ``run_dir`` and check it can be written, before any work is done."""
    run_dir = Path(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=run_dir, prefix=".write-test-"):
            pass
    except OSError as error:
        raise ValueError(f"cannot write to output directory {run_dir}: "
                         f"{error.strerror or error}") from None
    check_no_checkpoint(run_dir, resume=resume, overwrite=overwrite)
    return run_dir


def check_no_checkpoint(run_dir: str | os.PathLike, *, resume: bool, overwrite: bool) -> None:
    """ValueError if ``run_dir`` holds a checkpoint that neither ``resume`` nor
    ``overwrite`` allows to touch (checked again, cheaply, before the data are built)."""
    run_dir = Path(run_dir)
    if (run_dir / CHECKPOINT_FILE).exists() and not (resume or overwrite):
        raise ValueError(f"{run_dir} already holds a checkpoint; continue it with --resume "
                         f"{run_dir / CHECKPOINT_FILE}, start again with --overwrite, or "
                         f"choose another --out-dir")

