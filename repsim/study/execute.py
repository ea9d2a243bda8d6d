"""Running a study's runs: here in worker processes, or as a SLURM job array via submitit.

Local workers are spawned processes, each given an even share of the cores (torch's threads
and the OpenMP/BLAS pools), so that two workers never oversubscribe the machine; each worker
keeps the datasets it built for its next runs. On SLURM, submitit submits one array task per
unfinished run (requeued on preemption or time-out: the run continues from its last
checkpoint) and an aggregation job that starts after the array.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from repsim.device import available_cores, limit_threads
from repsim.rundir import FAILED_FILE, RUN_LOG_FILE
from repsim.study.spec import Study, StudyRun, load_study

log = logging.getLogger("repsim.study")


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
    """How one run ended: ``done``, ``already done`` or ``failed`` (with the error)."""

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

    def __call__(self, key: str) -> str:
        from repsim.study.steps import complete_run

        if self.threads is not None:
            limit_threads(self.threads)
        study = self.study()
        return complete_run(study, study.run(key), self._cache.setdefault("datasets", {}))

    def checkpoint(self, key: str):
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(StudyTask(self.study_file, self.folder, self.threads), key)

    def __getstate__(self) -> dict:
        return {"study_file": self.study_file, "folder": self.folder, "threads": self.threads}

    def __setstate__(self, state: dict) -> None:
        self.__init__(**state)


_WORKER_TASK: StudyTask | None = None


def _start_worker(study_file: str, folder: str, threads: int) -> None:
    global _WORKER_TASK
    limit_threads(threads)
    _WORKER_TASK = StudyTask(study_file, folder)


def _run_in_worker(key: str) -> tuple[str, float]:
    started = time.perf_counter()
    state = _WORKER_TASK(key)
    return state, time.perf_counter() - started


def run_local(study: Study, study_file: Path, runs: Sequence[StudyRun], jobs: int,
              on_outcome: Callable[[Outcome], None] | None = None,
              threads: int | None = None) -> list[Outcome]:
    """Complete ``runs`` in ``jobs`` worker processes, each with ``threads`` threads
    (:func:`worker_threads`: by default an even share of the cores).

    A failed run is reported (``failed.txt`` and ``run.log`` in its directory) and the
    others go on. ``study_file`` is the copy in the study folder the workers read.
    """
    if jobs < 1:
        raise ValueError(f"--jobs must be at least 1, got {jobs}")
    threads = worker_threads(jobs, threads)
    outcomes = []
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=_start_worker,
                             initargs=(str(study_file), str(study.folder), threads)) as pool:
        futures = {pool.submit(_run_in_worker, run.key): run for run in runs}
        for future in as_completed(futures):
            run = futures[future]
            try:
                state, seconds = future.result()
                outcome = Outcome(run, state, seconds)
            except Exception as error:  # the run's own failure, or its worker died
                outcome = Outcome(run, "failed", error=f"{type(error).__name__}: {error}")
            outcomes.append(outcome)
            if on_outcome is not None:
                on_outcome(outcome)
    return outcomes


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


def require_submitit():
    """The submitit module; ValueError saying how to install it when it is missing."""
    try:
        import submitit
    except ImportError:
        raise ValueError("SLURM runs need submitit: pip install submitit (or pip install "
                         "'repsim-av[slurm]')") from None
    return submitit


def submitit_executor(folder: Path, options: SlurmOptions, cluster: str | None, name: str):
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
           cluster: str | None = None) -> tuple[list, object]:
    """Submit ``runs`` as one job array and the aggregation after it; returns the jobs.

    On SLURM the aggregation job depends on the array (``afterany``); the local and debug
    executors have no dependencies, so there the array is waited for first.
    """
    folder = study.folder / "slurm"
    executor = submitit_executor(folder, options, cluster, f"repsim-{study.name}")
    task = StudyTask(str(study_file), str(study.folder), threads=options.cpus)
    jobs = executor.map_array(task, [run.key for run in runs]) if runs else []
    after = submitit_executor(folder, _report_job_options(options), cluster,
                              f"repsim-{study.name}-report")
    if after.cluster == "slurm" and jobs:
        array_id = jobs[0].job_id.split("_")[0]
        after.update_parameters(slurm_additional_parameters={
            **options.options, "dependency": f"afterany:{array_id}"})
    elif jobs:
        for job in jobs:
            job.wait()
    report = after.submit(aggregate, str(study_file), str(study.folder))
    return jobs, report


def _report_job_options(options: SlurmOptions) -> SlurmOptions:
    """The aggregation job's resources: the array's, without GPUs, for a short time."""
    return SlurmOptions(partition=options.partition, gpus=0, cpus=min(options.cpus, 4),
                        mem_gb=options.mem_gb, time_min=30, options=options.options)


def failure_line(outcome: Outcome) -> str:
    """One line for a failed run: its key, the error and where its log is."""
    return (f"{outcome.run.key} failed: {outcome.error} (log: {outcome.log_path}; "
            f"details: {outcome.run.run_dir / FAILED_FILE})")
