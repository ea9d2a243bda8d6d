"""Running a study's runs: here in worker processes, or as a SLURM job array via submitit.

Local workers are spawned processes, each given an even share of the cores (torch's threads
and the OpenMP/BLAS pools), so that two workers never oversubscribe the machine; each worker
keeps the datasets it built for its next runs. On SLURM, submitit submits one array task per
unfinished run (requeued on preemption or time-out: the run continues from its last
checkpoint) and an aggregation job that starts after the array.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from repsim.cli import STOPPED_STATUS
from repsim.device import available_cores, limit_threads
from repsim.provenance import Busy
from repsim.rundir import FAILED_FILE, RUN_LOG_FILE
from repsim.study.spec import Study, StudyRun, load_study
from repsim.study.steps import cell_runs

if TYPE_CHECKING:  # submitit is optional; imported where a submission needs it
    from submitit import AutoExecutor, Job

log = logging.getLogger("repsim.study")

PR_SET_PDEATHSIG = 1  # prctl option (linux/prctl.h): a signal when the parent dies
PARENT_CHECK_S = 0.5  # how often a worker checks that its parent is alive
STOP_CHECK_S = 0.2  # how often the parent asks should_stop while waiting for its workers
SKIPPED = "skipped"  # a run a stopping worker did not begin (never reported)
CELL_SEPARATOR = ","  # joins the run keys of a stacked cell into one task's key


def worker_threads(jobs: int, threads: int | None = None) -> int:
    """Threads each of ``jobs`` local workers gets: ``threads`` when given, else the user's
    ``OMP_NUM_THREADS`` when set, else an even share of the cores (at least one)."""
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        return threads
    user = os.environ.get("OMP_NUM_THREADS", "").strip()
    if user.isdigit() and int(user) > 0:
        return int(user)
    return max(1, available_cores() // jobs)


@dataclass
class Outcome:
    """How one run ended: ``done``, ``already done``, ``failed`` (``error`` says why),
    ``busy`` (another live process holds it; ``error`` names it) or ``stopped``."""

    run: StudyRun
    state: str
    seconds: float = 0.0
    error: str | None = None

    @property
    def log_path(self) -> Path:
        return self.run.run_dir / RUN_LOG_FILE


@dataclass
class StudyTask:
    """One run of a study, as a picklable callable (a local worker's or a SLURM array task's).

    ``checkpoint`` is what submitit calls on the preemption/time-out signal: it resubmits the
    same call, which continues from the run's last training checkpoint.
    """

    study_file: str
    folder: str
    threads: int | None = None
    _cache: dict = field(default_factory=dict, repr=False)

    def study(self) -> Study:
        if "study" not in self._cache:
            self._cache["study"] = load_study(self.study_file, self.folder)
        return self._cache["study"]

    def __call__(self, key: str, should_stop: Callable[[], bool] | None = None) -> str:
        """Complete run ``key``, or the runs of a stacked cell: their keys joined by
        :data:`CELL_SEPARATOR` (one line of their states, failures named)."""
        from repsim.study.steps import complete_run

        if self.threads is not None:
            limit_threads(self.threads)
        study = self.study()
        datasets = self._cache.setdefault("datasets", {})
        if CELL_SEPARATOR not in key:
            return complete_run(study, study.run(key), datasets, should_stop)
        outcomes = self.cell([study.run(name) for name in key.split(CELL_SEPARATOR)],
                             should_stop)
        failed = {name: error for name, (state, error) in outcomes.items() if state == "failed"}
        if failed:
            raise RuntimeError("; ".join(f"{name} failed: {error}"
                                         for name, error in failed.items()))
        return ", ".join(f"{name} {state}" for name, (state, _) in outcomes.items())

    def cell(self, runs: Sequence[StudyRun], should_stop: Callable[[], bool] | None = None
             ) -> dict[str, tuple[str, str | None]]:
        """Complete a stacked cell's runs (:func:`repsim.study.steps.complete_cell`)."""
        from repsim.study.steps import complete_cell

        if self.threads is not None:
            limit_threads(self.threads)
        return complete_cell(self.study(), runs, self._cache.setdefault("datasets", {}),
                             should_stop)

    def share_data(self, key: str) -> None:
        """Build (or load) the study's shared copy of run ``key``'s dataset, and keep it for
        this worker's runs (:mod:`repsim.study.shared`)."""
        from repsim.study.steps import run_dataset

        if self.threads is not None:
            limit_threads(self.threads)
        study = self.study()
        run_dataset(study, study.run(key), self._cache.setdefault("datasets", {}))

    def checkpoint(self, key: str) -> Any:  # a submitit DelayedSubmission
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(StudyTask(self.study_file, self.folder, self.threads), key)

    def __getstate__(self) -> dict:
        return {"study_file": self.study_file, "folder": self.folder, "threads": self.threads}

    def __setstate__(self, state: dict) -> None:
        self.study_file, self.folder = state["study_file"], state["folder"]
        self.threads, self._cache = state["threads"], {}


class _Worker:
    """The state of one local worker process: its task, the parent it serves, and the flag
    that stops its training before the next step (set by SIGTERM/SIGINT, by the parent's
    stop event, or when the parent is gone)."""

    task: StudyTask | None = None
    parent: int | None = None
    parent_stop: Any = None  # the parent's multiprocessing Event
    stop = threading.Event()
    busy = threading.Event()

    @classmethod
    def stopping(cls) -> bool:
        if cls.parent_stop is not None and cls.parent_stop.is_set():
            cls.stop.set()
        return cls.stop.is_set()


def _end_with_parent() -> None:
    """Ask Linux to send this process SIGTERM when its parent dies (``prctl``'s
    PR_SET_PDEATHSIG); elsewhere :func:`_watch_parent` alone notices it."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        log.debug("no prctl here: the worker checks for its parent every %s s", PARENT_CHECK_S)


def _watch_parent() -> None:
    """Stop when the parent is gone, and end the process once no run is in progress: an
    orphaned worker would otherwise wait forever for its next run (holding memory)."""
    while True:
        if os.getppid() != _Worker.parent:
            _Worker.stop.set()
            if not _Worker.busy.is_set():
                os._exit(STOPPED_STATUS)
        time.sleep(PARENT_CHECK_S)


def _start_worker(study_file: str, folder: str, threads: int, parent: int,
                  parent_stop: Any) -> None:
    limit_threads(threads)
    _Worker.task = StudyTask(study_file, folder)
    _Worker.parent, _Worker.parent_stop = parent, parent_stop
    for signum in (signal.SIGTERM, signal.SIGINT):  # stop before the next step, then return
        signal.signal(signum, lambda signum, frame: _Worker.stop.set())
    _end_with_parent()
    threading.Thread(target=_watch_parent, daemon=True, name="watch-parent").start()


def _run_cell_in_worker(keys: list[str]) -> list[tuple[str, str, float, str | None]]:
    """``(key, state, seconds, detail)`` of each run of a stacked cell in this worker
    (:func:`_run_in_worker`'s states; a run that failed is ``failed`` with its error)."""
    from repsim.extract import ExtractionStopped
    from repsim.train import TrainingStopped

    started = time.perf_counter()
    task = _Worker.task
    assert task is not None, "_start_worker sets the task"
    if _Worker.stopping():
        return [(key, SKIPPED, 0.0, None) for key in keys]
    _Worker.busy.set()
    try:
        study = task.study()
        outcomes = task.cell([study.run(key) for key in keys], should_stop=_Worker.stopping)
        each = (time.perf_counter() - started) / len(keys)
        return [(key, state, each, error) for key, (state, error) in outcomes.items()]
    except (TrainingStopped, ExtractionStopped) as stopped:
        return [(key, "stopped", 0.0, str(stopped)) for key in keys]
    except Busy as busy:
        return [(key, "busy", 0.0, str(busy)) for key in keys]
    finally:
        _Worker.busy.clear()


def _run_in_worker(key: str) -> tuple[str, float, str | None]:
    """``(state, seconds, detail)`` of one run in this worker: ``stopped`` (asked to stop;
    the run keeps its last complete epoch), ``skipped`` (asked to stop before it began),
    ``busy`` (another live process holds the run; ``detail`` names it) or what
    :func:`complete_run` returned."""
    from repsim.extract import ExtractionStopped
    from repsim.train import TrainingStopped

    started = time.perf_counter()
    task = _Worker.task
    assert task is not None, "_start_worker sets the task"
    if _Worker.stopping():
        return SKIPPED, 0.0, None
    _Worker.busy.set()
    try:
        state, detail = task(key, should_stop=_Worker.stopping), None
    except (TrainingStopped, ExtractionStopped) as stopped:
        state, detail = "stopped", str(stopped)
    except Busy as busy:
        state, detail = "busy", str(busy)
    finally:
        _Worker.busy.clear()
    return state, time.perf_counter() - started, detail


def _share_data_in_worker(key: str) -> None:
    task = _Worker.task
    assert task is not None, "_start_worker sets the task"
    if not _Worker.stopping():
        task.share_data(key)


def data_runs(runs: Sequence[StudyRun]) -> list[StudyRun]:
    """One run of each distinct data config among ``runs``: whose datasets to share."""
    return list({run.config.data.to_json(): run for run in reversed(runs)}.values())[::-1]


def run_local(study: Study, study_file: Path, runs: Sequence[StudyRun], jobs: int,
              on_outcome: Callable[[Outcome], None] | None = None,
              should_stop: Callable[[], bool] | None = None,
              threads: int | None = None) -> list[Outcome]:
    """Complete ``runs`` in ``jobs`` worker processes, each with ``threads`` threads
    (:func:`worker_threads`: by default an even share of the cores).

    The datasets the runs share are built first, each once, by the workers side by side
    (:mod:`repsim.study.shared`); every run then loads its memory-mapped copy.
    A failed run is reported (``failed.txt`` and ``run.log`` in its directory) and the
    others go on; a run another live process holds is ``busy`` and left alone. When
    ``should_stop`` (asked a few times a second) answers True, every worker stops its run
    before the next training step (``stopped``: its last complete epoch is kept), runs not
    begun are left (and not reported), and this returns once the workers have ended. A
    worker whose parent dies does the same and exits. ``study_file`` is the copy in the
    study folder the workers read.
    """
    if jobs < 1:
        raise ValueError(f"--jobs must be at least 1, got {jobs}")
    threads = worker_threads(jobs, threads)
    outcomes = []
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=_start_worker,
                             initargs=(str(study_file), str(study.folder), threads,
                                       os.getpid(), stop)) as pool:
        for future in [pool.submit(_share_data_in_worker, run.key) for run in data_runs(runs)]:
            try:
                future.result()
            except Exception as error:  # the runs that need it fail and say why
                log.debug("sharing a dataset failed: %s", error)
        futures: dict[Future, list[StudyRun]] = {}
        for cell in cell_runs(runs):
            if len(cell) == 1:
                futures[pool.submit(_run_in_worker, cell[0].key)] = cell
            else:
                futures[pool.submit(_run_cell_in_worker, [run.key for run in cell])] = cell
        waiting = set(futures)
        while waiting:
            done, waiting = wait(waiting, timeout=STOP_CHECK_S, return_when=FIRST_COMPLETED)
            for future in done:
                if future.cancelled():
                    continue
                for outcome in _outcomes(futures[future], future):
                    if outcome.state == SKIPPED:
                        continue
                    outcomes.append(outcome)
                    if on_outcome is not None:
                        on_outcome(outcome)
            if should_stop is not None and not stop.is_set() and should_stop():
                stop.set()
                for future in waiting:
                    future.cancel()  # those not yet handed to a worker
    return outcomes


def _outcomes(runs: list[StudyRun], future: Future) -> list[Outcome]:
    """The outcome of each of ``runs`` (one run, or a stacked cell's) from its future."""
    try:
        result = future.result()
    except Exception as error:  # the runs' own failure, or their worker died
        return [Outcome(run, "failed", error=f"{type(error).__name__}: {error}")
                for run in runs]
    if len(runs) == 1 and not isinstance(result, list):
        state, seconds, detail = result
        return [Outcome(runs[0], state, seconds, error=detail)]
    by_key = {key: (state, seconds, detail) for key, state, seconds, detail in result}
    return [Outcome(run, *by_key[run.key][:2], error=by_key[run.key][2]) for run in runs]


@dataclass(frozen=True)
class SlurmOptions:
    """Resources of each array task (None: the cluster's default) and extra sbatch options."""

    partition: str | None = None
    gpus: int = 0
    cpus: int = 4
    mem_gb: float = 16.0
    time_min: int = 120
    parallel: int | None = None
    options: dict = field(default_factory=dict)


def require_submitit() -> ModuleType:
    """The submitit module; ValueError saying how to install it when it is missing."""
    try:
        import submitit
    except ImportError:
        raise ValueError("SLURM runs need submitit: pip install submitit (or pip install "
                         "-e '.[slurm]' in a checkout)") from None
    return submitit


def submitit_executor(folder: Path, options: SlurmOptions, cluster: str | None, name: str
                      ) -> AutoExecutor:
    """A submitit executor for this study (``cluster``: None = SLURM when available; "local"
    or "debug" run here, for tests)."""
    submitit = require_submitit()
    executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
    parameters = {"name": name, "timeout_min": options.time_min, "cpus_per_task": options.cpus,
                  "gpus_per_node": options.gpus, "mem_gb": options.mem_gb}
    if executor.cluster == "slurm":
        parameters["slurm_additional_parameters"] = dict(options.options)
        if options.partition:
            parameters["slurm_partition"] = options.partition
        if options.parallel:
            parameters["slurm_array_parallelism"] = options.parallel
    executor.update_parameters(**parameters)
    return executor


def aggregate(study_file: str, folder: str) -> str:
    """The study's last step: its report from the finished runs; returns where it went."""
    from repsim.study.report import write_report

    return str(write_report(load_study(study_file, folder)))


def submit(study: Study, study_file: Path, runs: Sequence[StudyRun], options: SlurmOptions,
           cluster: str | None = None, at_once: int = 1) -> tuple[list[Job], Job]:
    """Submit ``runs`` as one job array and the aggregation after it; returns the jobs.

    On SLURM the aggregation job depends on the array (``afterany``). The local and debug
    executors (tests) have no dependencies and no array limit: there the runs start
    ``at_once`` at a time, and all are waited for before the aggregation.
    """
    folder = study.folder / "slurm"
    executor = submitit_executor(folder, options, cluster, f"repsim-{study.name}")
    task = StudyTask(str(study_file), str(study.folder), threads=options.cpus)
    keys = [CELL_SEPARATOR.join(run.key for run in cell) for cell in cell_runs(runs)]
    if executor.cluster == "slurm":
        jobs = executor.map_array(task, keys) if keys else []
    else:
        jobs = submit_at_most(executor, task, keys, at_once)
    after = submitit_executor(folder, _report_job_options(options), cluster,
                              f"repsim-{study.name}-report")
    if after.cluster == "slurm" and jobs:
        array_id = jobs[0].job_id.split("_")[0]
        after.update_parameters(slurm_additional_parameters={
            **options.options, "dependency": f"afterany:{array_id}"})
    report = after.submit(aggregate, str(study_file), str(study.folder))
    return jobs, report


def submit_at_most(executor: AutoExecutor, task: Callable[[str], Any], keys: Sequence[str],
                   at_once: int) -> list[Job]:
    """Submit ``task(key)`` for every key, never more than ``at_once`` unfinished at a time,
    and wait for all; returns the jobs in the order of ``keys``."""
    if at_once < 1:
        raise ValueError(f"at_once must be at least 1, got {at_once}")
    jobs: list = []
    running: list = []
    for key in keys:
        while len(running) >= at_once:
            running = [job for job in running if not job.done()]
            if len(running) >= at_once:
                time.sleep(STOP_CHECK_S)
        job = executor.submit(task, key)
        jobs.append(job)
        running.append(job)
    for job in running:
        job.wait()
    return jobs


def _report_job_options(options: SlurmOptions) -> SlurmOptions:
    """The aggregation job's resources: the array's, without GPUs, for a short time."""
    return SlurmOptions(partition=options.partition, gpus=0, cpus=min(options.cpus, 4),
                        mem_gb=options.mem_gb, time_min=30, options=options.options)


def failure_line(outcome: Outcome) -> str:
    """One line for a failed run: its key, the error and where its log is."""
    return (f"{outcome.run.key} failed: {outcome.error} (log: {outcome.log_path}; "
            f"details: {outcome.run.run_dir / FAILED_FILE})")
