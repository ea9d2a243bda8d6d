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
import logging
import time
import traceback
from collections.abc import Callable
from pathlib import Path

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
                 should_stop: Callable[[], bool] | None = None) -> str:
    """Bring ``run`` to its end (see the module docstring); returns ``"done"`` or
    ``"already done"``. A failure writes ``failed.txt`` (the error and its traceback) and
    raises; the next attempt removes it. ``datasets`` (data config JSON -> dataset) keeps
    the datasets built for earlier runs of the same worker, and gains this run's.

    The run is claimed first (:func:`repsim.provenance.claim` on its summary): a run that
    another live process is working on raises :class:`repsim.provenance.Busy` and is left
    untouched. ``should_stop`` is asked before every training step and extraction batch;
    a stop raises the trainer's or extractor's ``...Stopped`` and keeps what training
    finished (the next attempt continues from it). Neither writes ``failed.txt``.
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
        log.info("study %s, run %s", study.name, run.key)
        try:
            output = run_dir / ACTIVATIONS_FILE
            extracted = _activations_complete(output)
            dataset = None if extracted and (run_dir / METRICS_FILE).is_file() \
                else _dataset(run, datasets)  # data only where a step still needs it
            result = train(run.config, resume="auto", dataset=dataset, should_stop=should_stop)
            if not extracted:
                evaluation = study.evaluation
                extract(ExtractConfig(
                    checkpoint=str(run_dir / CHECKPOINT_FILE), output=str(output),
                    layers=tuple(FusionConvLSTM(run.config.model).recordable_layer_names),
                    n_stimuli=evaluation.probe_stimuli, conditions=evaluation.probe_conditions,
                    snrs=evaluation.probe_snrs, device=run.config.device, overwrite=True),
                    dataset=dataset, should_stop=should_stop)
            summary = {"run": run.key, "dataset": run.dataset, "protocol": run.protocol,
                       "fusion_layer": run.fusion_layer, "seed": run.seed,
                       "clean_accuracy": result.metrics.clean_accuracy,
                       **summarize(output)}
            write_json(run_dir / SUMMARY_FILE, summary)
        except (Busy, TrainingStopped, ExtractionStopped) as stopped:
            log.info("run %s not finished: %s", run.key, stopped)
            raise
        except Exception as error:
            (run_dir / FAILED_FILE).write_text(
                f"{type(error).__name__}: {error}\n\n{traceback.format_exc()}")
            raise
        log.info("run %s done in %.0f s", run.key, time.perf_counter() - started)
    return "done"


def _dataset(run: StudyRun, datasets: dict | None):
    """The run's dataset, built once per worker (``datasets`` None: built here)."""
    if datasets is None:
        return run.config.data.build()
    key = run.config.data.to_json()
    if key not in datasets:
        log.info("building the %s dataset", run.config.data.dataset)
        datasets[key] = run.config.data.build()
    return datasets[key]
