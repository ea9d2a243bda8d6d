"""One study run, step by step: train, evaluate (part of training), extract, summarise.

The extraction records every layer and the fusion operator's output (``join.<k>``, what the
first fused layer or, at late fusion, the readout reads), which the summary's mechanism
measures probe.

Each step is skipped when its output is complete and resumed or redone when it is not:
training continues from its last checkpoint (``resume="auto"``), an extraction that did not
finish left nothing and starts again, the summary is written last and atomically. So calling
:func:`complete_run` again after any interruption finishes the run without redoing work.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from repsim import activations
from repsim.provenance import Busy, claim
from repsim.rundir import (
    ACTIVATIONS_FILE,
    CHECKPOINT_FILE,
    FAILED_FILE,
    METRICS_FILE,
    RUN_LOG_FILE,
    SUMMARY_FILE,
    write_json,
)
from repsim.study.spec import Study, StudyRun
from repsim.study.timing import RUN_STAGES, SECONDS

if TYPE_CHECKING:  # torch is imported where a run needs it
    from repsim.data.base import AVDataset

log = logging.getLogger("repsim.study")


def _activations_complete(path: Path) -> bool:
    try:
        activations.open(path).close()
    except (FileNotFoundError, ValueError):
        return False
    return True


@contextlib.contextmanager
def _run_log(run_dir: Path):
    """Send repsim's log lines to the run's ``run.log`` while the run's steps go on."""
    run_dir.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(run_dir / RUN_LOG_FILE)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s"))
    logger = logging.getLogger("repsim")
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(min(previous or logging.INFO, logging.INFO))
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)
        handler.close()


def complete_run(study: Study, run: StudyRun, datasets: dict | None = None,
                 should_stop: Callable[[], bool] | None = None,
                 trained: Mapping[str, float] | None = None) -> str:
    """Bring ``run`` to its end (see the module docstring); returns ``"done"`` or
    ``"already done"``. A failure writes ``failed.txt`` (the error and its traceback) and
    raises; the next attempt removes it. ``datasets`` (data config JSON -> dataset) keeps
    the datasets loaded for earlier runs of the same worker, and gains this run's; each is
    the study's shared copy (:mod:`repsim.study.shared`), built by the first run that needs
    it. The summary records the seconds of each stage (:mod:`repsim.study.timing`).

    The run is claimed first (:func:`repsim.provenance.claim` on its summary): a run that
    another live process is working on raises :class:`repsim.provenance.Busy` and is left
    untouched. ``should_stop`` is asked before every training step and extraction batch;
    a stop raises the trainer's or extractor's ``...Stopped`` and keeps what training
    finished (the next attempt continues from it). Neither writes ``failed.txt``.
    ``trained``: the seconds by stage that training this run already took elsewhere (its
    share of a stacked training, :func:`complete_cell`), counted in its summary.
    """
    from repsim.extract import ExtractConfig, ExtractionStopped
    from repsim.extract import run as extract
    from repsim.models.fusion import FusionConvLSTM
    from repsim.study.summary import summarize
    from repsim.train import TrainingStopped
    from repsim.train import run as train

    run_dir = run.run_dir
    if (run_dir / SUMMARY_FILE).is_file():
        return "already done"
    run_dir.mkdir(parents=True, exist_ok=True)
    with claim(run_dir / SUMMARY_FILE), _run_log(run_dir):
        if (run_dir / SUMMARY_FILE).is_file():  # finished by another process meanwhile
            return "already done"
        (run_dir / FAILED_FILE).unlink(missing_ok=True)
        started = time.perf_counter()
        seconds = dict.fromkeys(RUN_STAGES, 0.0)
        log.info("study %s, run %s", study.name, run.key)
        try:
            output = run_dir / ACTIVATIONS_FILE
            extracted = _activations_complete(output)
            with _timed(seconds, "data"):  # data only where a step still needs it
                dataset = None if extracted and (run_dir / METRICS_FILE).is_file() \
                    else run_dataset(study, run, datasets)
            result = train(run.config, resume="auto", dataset=dataset, should_stop=should_stop)
            for stage, value in result.seconds.items():
                seconds[stage] += value
            if not extracted:
                evaluation = study.evaluation
                with _timed(seconds, "extraction"):
                    extract(ExtractConfig(
                        checkpoint=str(run_dir / CHECKPOINT_FILE), output=str(output),
                        layers=tuple(FusionConvLSTM(run.config.model).recordable_layer_names),
                        n_stimuli=evaluation.probe_stimuli,
                        conditions=evaluation.probe_conditions, snrs=evaluation.probe_snrs,
                        device=run.config.device, overwrite=True),
                        dataset=dataset, should_stop=should_stop)
            with _timed(seconds, "summary"):
                summarized = summarize(output)
            seconds["other"] = max(0.0, time.perf_counter() - started - sum(seconds.values()))
            for stage, value in (trained or {}).items():  # spent before this call
                seconds[stage] += value
            summary = {"run": run.key, "dataset": run.dataset, "protocol": run.protocol,
                       "fusion_layer": run.fusion_layer, "seed": run.seed,
                       "clean_accuracy": result.metrics.clean_accuracy, **summarized,
                       SECONDS: {stage: round(value, 3) for stage, value in seconds.items()}}
            write_json(run_dir / SUMMARY_FILE, summary)
        except (Busy, TrainingStopped, ExtractionStopped) as stopped:
            log.info("run %s not finished: %s", run.key, stopped)
            raise
        except Exception as error:
            _record_failure(run_dir, error)
            raise
        log.info("run %s done in %.0f s (%s)", run.key, time.perf_counter() - started,
                 ", ".join(f"{stage} {value:.1f} s" for stage, value in seconds.items()))
    return "done"


def _record_failure(run_dir: Path, error: BaseException) -> None:
    """``failed.txt``: the error and its traceback."""
    trace = "".join(traceback.format_exception(error))
    (run_dir / FAILED_FILE).write_text(f"{type(error).__name__}: {error}\n\n{trace}")


def cell_runs(runs: Sequence[StudyRun]) -> list[list[StudyRun]]:
    """``runs`` grouped into what one task completes: the runs of a cell (the same config
    but for the seed) together where the study stacks seeds (``[train] stack_seeds``),
    every other run alone; in the order of their first runs."""
    cells: dict[str, list[StudyRun]] = {}
    for run in runs:
        key = run.key
        if run.config.stack_seeds:
            key = dataclasses.replace(run.config, seed=0, out_dir=None).to_json()
        cells.setdefault(key, []).append(run)
    return list(cells.values())


def complete_cell(study: Study, runs: Sequence[StudyRun], datasets: dict | None = None,
                  should_stop: Callable[[], bool] | None = None
                  ) -> dict[str, tuple[str, str | None]]:
    """Bring the runs of one cell to their end, their seeds trained as one stacked network
    (:mod:`repsim.train.stacked`), then each run evaluated, extracted and summarised by
    :func:`complete_run`; returns ``{run key: (state, error)}``, state ``"done"``,
    ``"already done"`` or ``"failed"`` (a run that diverged, or whose later steps failed:
    ``failed.txt`` says why, and the others go on). A stop or a busy run raises, as in
    :func:`complete_run`."""
    from repsim.extract import ExtractionStopped
    from repsim.train.loop import TrainingDiverged, TrainingStopped
    from repsim.train.stacked import run as train_stacked

    outcomes: dict[str, tuple[str, str | None]] = {}
    todo = [run for run in runs if not (run.run_dir / SUMMARY_FILE).is_file()]
    untrained = [run for run in todo if not (run.run_dir / METRICS_FILE).is_file()]
    shares: dict[str, dict[str, float]] = {}
    if len(untrained) > 1:
        for run in untrained:
            run.run_dir.mkdir(parents=True, exist_ok=True)
        with contextlib.ExitStack() as logs:
            for run in untrained:
                logs.enter_context(_run_log(run.run_dir))
            started = time.perf_counter()
            dataset = run_dataset(study, untrained[0], datasets)
            loaded = time.perf_counter() - started
            log.info("study %s: training %s stacked", study.name,
                     ", ".join(run.key for run in untrained))
            results = train_stacked([run.config for run in untrained], dataset, should_stop)
        for run, result in zip(untrained, results, strict=True):
            if isinstance(result, TrainingDiverged):
                _record_failure(run.run_dir, result)
                outcomes[run.key] = ("failed", f"{type(result).__name__}: {result}")
            else:
                shares[run.key] = {**result.seconds, "data": loaded / len(untrained)}
    for run in todo:
        if run.key in outcomes:
            continue
        try:
            outcomes[run.key] = (complete_run(study, run, datasets, should_stop,
                                              trained=shares.get(run.key)), None)
        except (Busy, TrainingStopped, ExtractionStopped):
            raise
        except Exception as error:  # written to its failed.txt; the others go on
            outcomes[run.key] = ("failed", f"{type(error).__name__}: {error}")
    for run in runs:
        outcomes.setdefault(run.key, ("already done", None))
    return outcomes


@contextlib.contextmanager
def _timed(seconds: dict[str, float], stage: str) -> Iterator[None]:
    """Add the seconds of the block to ``seconds[stage]``."""
    started = time.perf_counter()
    try:
        yield
    finally:
        seconds[stage] += time.perf_counter() - started


def run_dataset(study: Study, run: StudyRun, datasets: dict | None) -> AVDataset:
    """The run's dataset: the study's shared copy (:mod:`repsim.study.shared`), loaded once
    per worker (``datasets``, data config JSON -> dataset; None: loaded here)."""
    from repsim.study.shared import shared_dataset

    if datasets is None:
        return shared_dataset(study.folder, run.config.data)
    key = run.config.data.to_json()
    if key not in datasets:
        datasets[key] = shared_dataset(study.folder, run.config.data)
    return datasets[key]
