"""Finding finished training runs, and the activation file of the model each one made.

A run is a directory written by ``python -m repsim.train`` (:mod:`repsim.rundir` names its
files); it has finished when it holds ``metrics.json``. Among the runs of one experiment (one
dataset and depth), *early* fusion is fusion layer 1 and *late* fusion is layer L+1 (the rule
of :func:`repsim.models.fusion.fusion_role`); each may exist for several seeds.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from repsim.models.config import fusion_role
from repsim.rundir import (
    ACTIVATIONS_FILE,
    CHECKPOINT_FILE,
    METRICS_FILE,
    RUNS_DIR,
    Metrics,
    read_metrics,
)


@dataclass(frozen=True)
class Run:
    """A training run directory and its metrics."""

    path: Path
    metrics: Metrics = field(repr=False)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def dataset(self) -> str:
        return self.metrics.dataset

    @property
    def fusion_layer(self) -> int:
        return self.metrics.fusion_layer

    @property
    def layers(self) -> int:
        return self.metrics.layers

    @property
    def seed(self) -> int:
        return self.metrics.seed

    @property
    def role(self) -> str:
        """``"early"``, ``"late"`` or ``"k=<k>"``."""
        return fusion_role(self.fusion_layer, self.layers)

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


def find_runs(runs_dir: str | os.PathLike = RUNS_DIR, dataset: str | None = None) -> list[Run]:
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
    """The early-fusion (k = 1) and late-fusion (k = L+1) runs of an experiment, by seed."""

    early: list[Run]
    late: list[Run]


def early_and_late(runs: Sequence[Run], *, need_activations: bool = False) -> EarlyLate:
    """The early (fusion layer 1) and late (fusion layer L+1) runs of one experiment.

    With ``need_activations`` only runs with an ``activations.h5`` count, and a missing one
    for the first early or late run is an error that says how to make it.
    """
    runs = one_experiment(runs)
    early = [run for run in runs if run.role == "early"]
    late = [run for run in runs if run.role == "late"]
    names = ", ".join(run.name for run in runs)
    if not early:
        raise FileNotFoundError(f"no early-fusion run (fusion layer 1) among {names}")
    if not late:
        layers = runs[0].layers
        raise FileNotFoundError(f"no late-fusion run (fusion layer {layers + 1} of a "
                                f"{layers}-layer model) among {names}")
    if need_activations:
        early, late = _with_activations(early), _with_activations(late)
    return EarlyLate(sorted(early, key=lambda r: r.seed), sorted(late, key=lambda r: r.seed))


def _with_activations(runs: list[Run]) -> list[Run]:
    present = [run for run in runs if run.activations_path.is_file()]
    if not present:
        first = runs[0]
        raise FileNotFoundError(f"{first.activations_path} does not exist; run python -m "
                                f"repsim.extract {first.path / CHECKPOINT_FILE}")
    return present


@dataclass(frozen=True)
class ModelInput:
    """An activation file and what is known of the model that made it: a repsim fusion
    network's fusion layer, depth and seed, or the name its recording gave it."""

    path: Path
    fusion_layer: int | None = None
    layers: int | None = None
    seed: int | None = None
    name: str | None = None

    @property
    def is_fusion_run(self) -> bool:
        """Whether the model is one of repsim's fusion networks (its fusion layer is known)."""
        return self.fusion_layer is not None

    @property
    def role(self) -> str:
        """``"early"``, ``"late"``, ``"k=<n>"``; for any other model its recorded name, else
        the file's name."""
        if self.fusion_layer is None:
            if self.name:
                return self.name
            return self.path.stem if self.path.name != ACTIVATIONS_FILE else self.path.parent.name
        if self.layers is None:
            return "early" if self.fusion_layer == 1 else f"k={self.fusion_layer}"
        return fusion_role(self.fusion_layer, self.layers)

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
    from the training configuration stored in the activation file when a figure opens it
    (:func:`repsim.figures.base.open_model`); the file itself is not opened here.
    """
    target = Path(target)
    if target.is_dir():
        path = target / ACTIVATIONS_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist; run python -m repsim.extract "
                                    f"{target / CHECKPOINT_FILE}")
    elif target.is_file():
        path = target
    else:
        raise FileNotFoundError(f"{target} is neither an activation file nor a run directory")
    metrics_path = path.parent / METRICS_FILE
    if metrics_path.is_file():
        metrics = read_metrics(metrics_path)
        return ModelInput(path, metrics.fusion_layer, metrics.layers, metrics.seed)
    return ModelInput(path)
