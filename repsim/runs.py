"""Finding training runs under ``runs/`` and the files the figure scripts read from them.

A run is a directory written by ``python -m repsim.train`` holding ``metrics.json`` (and
``ckpt.pt``, and after ``python -m repsim.extract`` an ``activations.h5``). Among the runs of
one experiment (one dataset and depth), *early* fusion is fusion layer 1 and *late* fusion is
the largest fusion layer present; each may exist for several seeds. Every analysis script uses
these helpers, so the rules live in one place.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from repsim import activations

METRICS_FILE = "metrics.json"
ACTIVATIONS_FILE = "activations.h5"
REQUIRED_METRICS = ("dataset", "fusion_layer", "layers", "seed", "clean_accuracy", "noise",
                    "removed")
NOISE_KINDS = ("audio", "visual", "both")


def read_metrics(path: str | os.PathLike) -> dict:
    """Read and check a run's ``metrics.json`` (the fields the figures need must be there)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no metrics file at {path} (has the training run finished?)")
    try:
        metrics = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error.msg} at line {error.lineno}); "
                         "the file is incomplete or corrupt") from None
    if not isinstance(metrics, dict):
        raise ValueError(f"{path} does not hold a metrics object")
    missing = [key for key in REQUIRED_METRICS if key not in metrics]
    if missing:
        raise ValueError(f"{path} is incomplete: missing {', '.join(missing)}")
    for entry in metrics["noise"]:
        if (not isinstance(entry, dict) or entry.get("noise") not in NOISE_KINDS
                or not isinstance(entry.get("snr_db"), (int, float))
                or not isinstance(entry.get("accuracy"), (int, float))):
            raise ValueError(f"{path}: malformed noise entry {entry!r} (expected noise in "
                             f"{'/'.join(NOISE_KINDS)}, numeric snr_db and accuracy)")
    return metrics


@dataclass(frozen=True)
class Run:
    """A training run directory and its metrics."""

    path: Path
    metrics: dict = field(repr=False)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def dataset(self) -> str:
        return str(self.metrics["dataset"])

    @property
    def fusion_layer(self) -> int:
        return int(self.metrics["fusion_layer"])

    @property
    def layers(self) -> int:
        return int(self.metrics["layers"])

    @property
    def seed(self) -> int:
        return int(self.metrics["seed"])

    @property
    def config(self) -> dict:
        """The full training configuration the run was made with (from ``metrics.json``)."""
        return self.metrics.get("config", {})

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS_FILE

    @property
    def activations_path(self) -> Path:
        return self.path / ACTIVATIONS_FILE


def load_run(path: str | os.PathLike) -> Run:
    """The run in directory ``path`` (or the run whose ``metrics.json`` is ``path``)."""
    path = Path(path)
    if path.name == METRICS_FILE:
        path = path.parent
    if not path.exists():
        raise FileNotFoundError(f"run directory {path} does not exist")
    if not path.is_dir():
        raise ValueError(f"{path} is neither a run directory nor a {METRICS_FILE} file")
    return Run(path, read_metrics(path / METRICS_FILE))


def find_runs(runs_dir: str | os.PathLike = "runs", dataset: str | None = None) -> list[Run]:
    """Every finished run directly under ``runs_dir`` (optionally of one dataset), sorted.

    A directory without ``metrics.json`` (a run still training) is skipped; a broken
    ``metrics.json`` is an error naming the file.
    """
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise FileNotFoundError(f"runs directory {runs_dir} does not exist; train models "
                                "first (python -m repsim.train) or name inputs explicitly")
    runs = [Run(d, read_metrics(d / METRICS_FILE)) for d in sorted(runs_dir.iterdir())
            if (d / METRICS_FILE).is_file()]
    if dataset is not None:
        runs = [run for run in runs if run.dataset == dataset]
    if not runs:
        which = f" of dataset {dataset!r}" if dataset else ""
        raise FileNotFoundError(f"no finished runs{which} under {runs_dir} "
                                f"(no */{METRICS_FILE}); train models first")
    return sorted(runs, key=lambda r: (r.dataset, r.layers, r.fusion_layer, r.seed, r.name))


def one_experiment(runs: Sequence[Run]) -> list[Run]:
    """Check that ``runs`` share one dataset and depth, so their fusion layers compare."""
    kinds = sorted({(run.dataset, run.layers) for run in runs})
    if len(kinds) > 1:
        listed = ", ".join(f"{d} with {n} layers" for d, n in kinds)
        raise ValueError(f"the runs mix experiments ({listed}); pick one with --dataset "
                         "or name the run directories")
    duplicates = _duplicates((run.fusion_layer, run.seed) for run in runs)
    if duplicates:
        k, seed = duplicates[0]
        names = [run.name for run in runs if (run.fusion_layer, run.seed) == (k, seed)]
        raise ValueError(f"runs {', '.join(names)} are all fusion layer {k}, seed {seed}; "
                         "keep one or name the run directories")
    return list(runs)


def _duplicates(keys: Iterable[tuple]) -> list[tuple]:
    seen, repeated = set(), []
    for key in keys:
        if key in seen:
            repeated.append(key)
        seen.add(key)
    return repeated


@dataclass(frozen=True)
class EarlyLate:
    """The early-fusion (k = 1) and late-fusion (largest k) runs of an experiment, by seed."""

    early: list[Run]
    late: list[Run]


def early_and_late(runs: Sequence[Run], *, need_activations: bool = False) -> EarlyLate:
    """Split one experiment's runs into early (fusion layer 1) and late (largest fusion layer).

    With ``need_activations`` only runs with an ``activations.h5`` count, and a missing one
    for the first early or late run is an error that says how to make it.
    """
    runs = one_experiment(runs)
    early = [run for run in runs if run.fusion_layer == 1]
    late_layer = max(run.fusion_layer for run in runs)
    late = [run for run in runs if run.fusion_layer == late_layer]
    if not early:
        raise FileNotFoundError("no early-fusion run (fusion layer 1) among "
                                f"{', '.join(run.name for run in runs)}")
    if late_layer == 1:
        raise FileNotFoundError("no late-fusion run: every run has fusion layer 1 "
                                f"({', '.join(run.name for run in runs)})")
    if need_activations:
        early, late = _with_activations(early), _with_activations(late)
    return EarlyLate(sorted(early, key=lambda r: r.seed), sorted(late, key=lambda r: r.seed))


def _with_activations(runs: list[Run]) -> list[Run]:
    present = [run for run in runs if run.activations_path.is_file()]
    if not present:
        first = runs[0]
        raise FileNotFoundError(f"{first.activations_path} does not exist; run python -m "
                                f"repsim.extract {first.path / 'ckpt.pt'}")
    return present


@dataclass(frozen=True)
class ModelInput:
    """An activation file and what is known of the model that made it."""

    path: Path
    fusion_layer: int | None = None
    layers: int | None = None
    seed: int | None = None

    @property
    def role(self) -> str:
        """``"early"``, ``"late"``, ``"k=<n>"`` or the file name when nothing is known."""
        if self.fusion_layer is None:
            return self.path.stem if self.path.name != ACTIVATIONS_FILE else self.path.parent.name
        if self.fusion_layer == 1:
            return "early"
        if self.layers is not None and self.fusion_layer == self.layers + 1:
            return "late"
        return f"k={self.fusion_layer}"

    @property
    def label(self) -> str:
        """A human label for legends and titles, e.g. ``"early (k=1, seed 0)"``."""
        details = [f"k={self.fusion_layer}"] if self.fusion_layer is not None else []
        if self.seed is not None:
            details.append(f"seed {self.seed}")
        if not details or self.role.startswith("k="):
            return self.role + (f" (seed {self.seed})" if self.seed is not None else "")
        return f"{self.role} ({', '.join(details)})"


def model_input_of_run(run: Run) -> ModelInput:
    """The activation file of ``run`` with the run's fusion layer, depth and seed."""
    return ModelInput(run.activations_path, run.fusion_layer, run.layers, run.seed)


def resolve_model_input(target: str | os.PathLike) -> ModelInput:
    """An activation file named directly, or the ``activations.h5`` of a run directory.

    What is known of the model comes from the run's ``metrics.json`` when there is one, else
    from the training configuration stored in the activation file (see
    :func:`model_input_from_config`); the file itself is not opened here.
    """
    target = Path(target)
    if target.is_dir():
        path = target / ACTIVATIONS_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist; run python -m repsim.extract "
                                    f"{target / 'ckpt.pt'}")
    elif target.is_file():
        path = target
    else:
        raise FileNotFoundError(f"{target} is neither an activation file nor a run directory")
    metrics_path = path.parent / METRICS_FILE
    if metrics_path.is_file():
        metrics = read_metrics(metrics_path)
        return ModelInput(path, int(metrics["fusion_layer"]), int(metrics["layers"]),
                          int(metrics["seed"]))
    return ModelInput(path)


def model_input_from_config(model: ModelInput, config: dict) -> ModelInput:
    """Fill what ``model`` lacks from a training config (the ``config`` attribute of its file).

    The config holds a ``model`` sub-dict with ``fusion_layer`` and ``layers``, and ``seed``
    at the top level; whatever is absent stays unknown.
    """
    if model.fusion_layer is not None:
        return model
    model_config = config.get("model", {}) if isinstance(config, dict) else {}
    fusion, layers = model_config.get("fusion_layer"), model_config.get("layers")
    if fusion == "late" and isinstance(layers, int):
        fusion = layers + 1
    seed = config.get("seed") if isinstance(config, dict) else None
    return ModelInput(model.path, fusion if isinstance(fusion, int) else None,
                      layers if isinstance(layers, int) else None,
                      seed if isinstance(seed, int) else None)


def open_model(model: ModelInput) -> tuple[ModelInput, xr.Dataset]:
    """Open ``model``'s activation file (lazily) and fill what is unknown from its config."""
    data = activations.open(model.path)
    config = data.attrs.get("config")
    if isinstance(config, str):
        try:
            config = json.loads(config)
        except json.JSONDecodeError:
            config = None
    return model_input_from_config(model, config or {}), data


def default_models(runs_dir: str | os.PathLike = "runs", dataset: str | None = None
                   ) -> EarlyLate:
    """The early and late runs with activation files under ``runs_dir`` (by seed)."""
    return early_and_late(find_runs(runs_dir, dataset), need_activations=True)


def models_to_compare(inputs: Sequence[str | os.PathLike] = (),
                      runs_dir: str | os.PathLike = "runs",
                      dataset: str | None = None) -> list[ModelInput]:
    """The named activation files / run directories, or else the first-seed early and late
    runs under ``runs_dir``, in that order."""
    if inputs:
        return [resolve_model_input(target) for target in inputs]
    found = default_models(runs_dir, dataset)
    return [model_input_of_run(found.early[0]), model_input_of_run(found.late[0])]


def layer_depth(layer: str) -> int:
    """The depth ``d`` of a layer named ``"<stream>.<d>"`` (e.g. 2 for ``"fused.2"``)."""
    try:
        return int(layer.rsplit(".", 1)[1])
    except (IndexError, ValueError):
        raise ValueError(f"layer name {layer!r} is not of the form <stream>.<depth>") from None


def layer_states(data: xr.Dataset, layer: str, condition: str, *, state: str = "h",
                 time: int | None = None, order: np.ndarray | None = None) -> np.ndarray:
    """One layer's states on one condition as float32 ``(stimuli, [time,] features)``.

    Rows follow the file, or the stimulus ids in ``order`` (to align two models stimulus by
    stimulus); a stimulus missing from either side is an error.
    """
    da = activations.select(data, layer, state=state, time=time, condition=condition)
    values = np.asarray(da.values, dtype=np.float32)
    values = values.reshape(values.shape[0], -1) if time is not None else \
        values.reshape(*values.shape[:2], -1)
    if order is None:
        return values
    return values[_alignment(da["stimulus_id"].values, order, condition)]


def stimulus_ids(data: xr.Dataset, condition: str) -> np.ndarray:
    """The stimulus ids of ``condition``, in file order (refusing duplicates)."""
    ids = np.asarray(data["stimulus_id"].values[data["condition"].values == condition], dtype=str)
    if ids.size == 0:
        present = ", ".join(activations.condition_names(data))
        raise ValueError(f"no stimuli of condition {condition!r}; this file has: {present}")
    if len(np.unique(ids)) != ids.size:
        raise ValueError(f"condition {condition!r} repeats stimulus ids; cannot align models")
    return ids


def stimulus_table(data: xr.Dataset, condition: str) -> pd.DataFrame:
    """The per-stimulus coordinates (digits, ids, ...) of ``condition``, in file order."""
    stimulus_ids(data, condition)  # refuses an absent condition
    keep = data["condition"].values == condition
    columns = {name: np.asarray(coord.values)[keep] for name, coord in data.coords.items()
               if coord.dims == ("stimulus",)}
    return pd.DataFrame(columns)


def _alignment(ids: np.ndarray, order: np.ndarray, condition: str) -> np.ndarray:
    """Row indices that put ``ids`` in the order of ``order`` (same set required)."""
    position = {stimulus: i for i, stimulus in enumerate(np.asarray(ids, dtype=str))}
    missing = [stimulus for stimulus in np.asarray(order, dtype=str) if stimulus not in position]
    if missing or len(position) != len(order):
        raise ValueError(f"the activation files hold different stimuli for condition "
                         f"{condition!r} ({len(missing)} of {len(order)} ids not found, "
                         f"{len(position)} vs {len(order)} stimuli); extract both from the "
                         "same dataset and probe set")
    return np.array([position[stimulus] for stimulus in np.asarray(order, dtype=str)])


def add_input_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every figure script shares: where runs are, which dataset, where to write."""
    parser.add_argument("--runs-dir", default="runs", type=Path,
                        help="where to look for runs when no inputs are named (default: runs)")
    parser.add_argument("--dataset", default=None,
                        help="only runs of this dataset (needed when runs/ holds several)")
    parser.add_argument("--out-dir", default="figures", type=Path,
                        help="where the figure (.png, .pdf) and its numbers (.csv) go "
                             "(default: figures)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more detail")
