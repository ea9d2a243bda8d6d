"""``python -m repsim.study STUDY.toml``: run a whole study, here or on SLURM, restart-safe."""

from __future__ import annotations

import argparse
import contextlib
import logging
import shlex
import shutil
import signal
import sys
from collections import Counter
from pathlib import Path

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from repsim.cli import (
    BUSY_STATUS,
    INTERRUPTED_STATUS,
    STOPPED_STATUS,
    CommandParser,
    add_progress,
    add_threads,
    add_verbose,
    add_version,
    command_prog,
    key_value,
    setup_logging,
    show_progress,
    user_errors_exit_2,
)
from repsim.data.registry import plugins_unchecked
from repsim.device import available_cores, limit_threads, resolve_device
from repsim.models.config import DEFAULT_FUSION_OP
from repsim.provenance import atomic_path
from repsim.rundir import FAILED_FILE, RUN_LOG_FILE, RUNS_DIR, STUDY_FILE, run_state
from repsim.study.execute import (
    SlurmOptions,
    failure_line,
    require_submitit,
    run_local,
    submit,
    worker_threads,
)
from repsim.study.records import study_run_state
from repsim.study.spec import Study, differing_keys, load_study, read_study_file
from repsim.study.timing import study_seconds, time_line

log = logging.getLogger("repsim.study")

EXAMPLES = f"""examples:
  %(prog)s studies/quick.toml --dry-run     # the runs and a time estimate
  %(prog)s studies/quick.toml --jobs 2      # run (or finish) it here
  %(prog)s studies/quick.toml --status      # what is done, partial, failed
  %(prog)s studies/quick.toml --report      # results.csv from finished runs
  %(prog)s studies/paper.toml --slurm --partition gpu --gpus 1 --cpus 8 \\
      --time-min 240 --slurm-option account=mylab

exit status: 0 done; 1 a run failed; 2 a mistake in the input; {BUSY_STATUS} runs another
process holds were left for later (busy: run the same command again); {INTERRUPTED_STATUS} or
{STOPPED_STATUS} stopped by Ctrl-C or SIGTERM.
"""


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m repsim.study`` argument parser."""
    parser = CommandParser(
        prog=command_prog("python -m repsim.study"), epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train, evaluate, extract and summarise every run of a study file "
                    "(datasets x protocols x fusion layers x seeds). Rerunning the same "
                    "command after an interruption finishes the study without redoing "
                    "finished work.")
    add_version(parser)
    parser.add_argument("study", type=Path, help="the study file (TOML)")
    parser.add_argument("--out-dir", type=Path,
                        help="the study folder, where its runs and report go (default: "
                             "<study file's folder>/<study name>)")
    parser.add_argument("--folder", type=Path, dest="out_dir",
                        help=argparse.SUPPRESS)  # old name of --out-dir
    parser.add_argument("--overwrite", action="store_true",
                        help="use the study folder even if it holds other files or another "
                             "study (its report.md, results.csv, answer.md and figures are "
                             "replaced; runs of another configuration are never retrained over)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="runs at once here, each with an even share of the cores "
                             "(default: %(default)s)")
    add_threads(parser)
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--dry-run", action="store_true",
                      help="list every run with its state and estimate the time; run nothing")
    what.add_argument("--status", action="store_true",
                      help="list every run with its state (done, partial, failed, not started, "
                           "unusable) and the finished runs' time by stage")
    what.add_argument("--report", action="store_true",
                      help="only write the report (results.csv, comparisons.csv, figures, "
                           "report.md) of the finished runs")
    slurm = parser.add_argument_group("SLURM (through submitit)")
    slurm.add_argument("--slurm", action="store_true",
                       help="submit the unfinished runs as a job array instead of running here")
    slurm.add_argument("--partition", help="SLURM partition (default: the cluster's)")
    slurm.add_argument("--gpus", type=int, default=SlurmOptions.gpus,
                       help="GPUs per run (default: %(default)s)")
    slurm.add_argument("--cpus", type=int, default=SlurmOptions.cpus,
                       help="CPUs per run (default: %(default)s)")
    slurm.add_argument("--mem-gb", type=float, default=SlurmOptions.mem_gb,
                       help="memory per run in GB (default: %(default)g)")
    slurm.add_argument("--time-min", type=int, default=SlurmOptions.time_min,
                       help="time limit per run in minutes (a run that reaches it is requeued "
                            "and continues; default: %(default)s)")
    slurm.add_argument("--parallel", type=int,
                       help="at most this many runs at once (default: no limit)")
    slurm.add_argument("--slurm-option", type=key_value, action="append", default=[],
                       metavar="KEY=VALUE", help="any other sbatch option (repeatable)")
    slurm.add_argument("--cluster", choices=("slurm", "local", "debug"),
                       help="with --slurm: 'local' or 'debug' run the job array here through "
                            "submitit's local executors, --jobs at a time (meant for tests; "
                            "default: slurm)")
    add_progress(parser)
    add_verbose(parser)
    return parser


def prepare_folder(study: Study, create: bool, overwrite: bool = False) -> Path:
    """The study file's copy in the study folder: refuse a folder that holds another study;
    with ``create``, make the folder and the copy. A study file that only extends the copy's
    axes (more seeds, fusion layers or operators, a new dataset or protocol, another
    ``[analysis]``; :func:`only_extends`) is the same study grown: with ``create`` the copy
    is replaced, and the runs it already finished are kept. A folder that holds files but no
    study is refused too, when anything would be written (``create``): its report.md,
    results.csv or figures would be replaced (a ``runs`` folder does not count: each run
    checks its own). ``overwrite`` takes either folder all the same. Returns the copy's
    path."""
    copy = study.folder / STUDY_FILE
    if create and not overwrite and not copy.is_file() and study.folder.is_dir():
        names = sorted(path.name for path in study.folder.iterdir()  # runs: checked by run
                       if not path.name.startswith(".") and path.name != RUNS_DIR)
        if names:
            shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
            raise ValueError(f"{study.folder} holds files that are not a study ({shown}; no "
                             f"{STUDY_FILE}), which the study's report would replace; choose "
                             f"another --out-dir, or pass --overwrite to use it anyway")
    if copy.is_file():
        before = read_study_file(copy)
        differences = differing_keys(before, study.values)
        if differences and not overwrite and not only_extends(before, study.values,
                                                              differences):
            raise ValueError(f"{study.folder} holds a different study ({copy}); differing "
                             f"keys: {', '.join(differences)}. Use another --out-dir, restore "
                             f"the study file, or pass --overwrite to replace it")
        if differences and create:
            with atomic_path(copy) as tmp:
                tmp.write_text(study.path.read_text())
    elif create:
        study.folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(copy) as tmp:
            tmp.write_text(study.path.read_text())
    return copy


# The study axes a study may grow along, and what an absent one means (None: no list to
# compare with, so a change of it is refused).
GROWING_AXES = {"seeds": None, "fusion_layers": None, "fusion_ops": [DEFAULT_FUSION_OP]}
# Tables a study may gain new entries of (a new dataset or protocol: new runs only).
GROWING_TABLES = ("datasets", "protocols")


def only_extends(before: dict, after: dict, differences: list[str]) -> bool:
    """True when every differing key is a study axis (:data:`GROWING_AXES`) whose new list
    keeps every value of the old one, a dataset or protocol table the old file did not have
    (:data:`GROWING_TABLES`), or the ``[analysis]`` table (how the report judges, not what
    runs train): the runs the old file made keep their configuration."""
    def axis(values: dict, name: str):
        return values.get("study", {}).get(name, GROWING_AXES[name])

    for key in differences:
        top, _, rest = key.partition(".")
        if top == "analysis" or (top in GROWING_TABLES and rest.split(".")[0]
                                 not in before.get(top, {})):
            continue
        name = key.removeprefix("study.")
        if not key.startswith("study.") or name not in GROWING_AXES:
            return False
        old, new = axis(before, name), axis(after, name)
        if not (isinstance(old, list) and isinstance(new, list)
                and all(value in new for value in old)):
            return False
    return True


def status_table(study: Study, estimates: dict[str, float] | None = None) -> str:
    """One line per run: dataset, protocol, (fusion operator,) fusion layer, seed, state,
    directory (and why a finished run is unusable, see :mod:`repsim.study.records`)."""
    operators = study.fusion_ops != (DEFAULT_FUSION_OP,)
    lines = [f"{'dataset':<22} {'protocol':<10} " + (f"{'operator':<8} " if operators else "")
             + f"{'k':>2} {'seed':>4}  {'state':<11}" + ("  estimate" if estimates else "")
             + "  directory"]
    for run in study.runs:
        state, reason = study_run_state(run)
        note = ""
        if state == "failed":
            note = f"  (log: {run.run_dir / RUN_LOG_FILE}; {run.run_dir / FAILED_FILE})"
        elif reason:
            note = f"  ({reason}; the report leaves it out)"
        estimate = (f"  {estimates[run.key] / 60:6.1f} min" if estimates and run.key in
                    estimates else ("  " + " " * 10 if estimates else ""))
        operator = f"{run.fusion_op:<8} " if operators else ""
        lines.append(f"{run.dataset:<22} {run.protocol:<10} {operator}{run.fusion_layer:>2} "
                     f"{run.seed:>4}  {state:<11}{estimate}  {run.run_dir}{note}")
    return "\n".join(lines)


def _check_devices_here(study: Study) -> None:
    """ValueError before anything starts if a run asks for a device this machine lacks."""
    for device in sorted({run.config.device for run in study.runs}):
        try:
            resolve_device(device)
        except ValueError as error:
            raise ValueError(f"{error}: run this study where CUDA is, e.g. with --slurm --gpus 1, "
                             f"or set device = \"auto\"") from None


@user_errors_exit_2
def main(argv: list[str] | None = None) -> int:
    """``python -m repsim.study``: run, report on or submit the study's runs."""
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    if args.jobs < 1:
        raise ValueError(f"--jobs must be at least 1, got {args.jobs}")
    if args.threads is not None:  # this process (a report, an estimate) and each worker
        limit_threads(args.threads)
    # --status reads records only: the study's dataset plugins are not imported (their code
    # would run on import)
    with plugins_unchecked() if args.status else contextlib.nullcontext():
        study = load_study(args.study, args.out_dir)
    options = SlurmOptions(partition=args.partition, gpus=args.gpus, cpus=args.cpus,
                           mem_gb=args.mem_gb, time_min=args.time_min, parallel=args.parallel,
                           options=dict(args.slurm_option))
    if args.slurm:
        require_submitit()
        if args.cluster in (None, "slurm") and shutil.which("sbatch") is None:
            raise ValueError("--slurm needs SLURM's sbatch on the PATH and there is none here; "
                             "run the study here with --jobs N instead")
    elif not (args.status or args.report):
        _check_devices_here(study)
        cores = available_cores()
        if args.jobs > cores:
            log.warning("--jobs %d is more than the %d cores here: the workers will share "
                        "cores, one thread each, and each run will be slower", args.jobs, cores)
    copy = prepare_folder(study, create=not (args.dry_run or args.status),
                          overwrite=args.overwrite)
    pending = [run for run in study.runs if run_state(run.run_dir) != "done"]
    if args.status:
        print(status_table(study))
        finished = [run for run in study.runs if run_state(run.run_dir) == "done"]
        print(time_line(*study_seconds(finished), len(finished)))
        return 0
    if args.dry_run:
        from repsim.study.estimate import estimate_seconds

        threads = worker_threads(args.jobs, args.threads)
        estimates = estimate_seconds(study, pending, threads)
        print(status_table(study, estimates))
        total = sum(estimates.values())
        print(f"{len(study.runs)} runs, {len(pending)} to do: about {total / 3600:.1f} h of "
              f"work, {total / args.jobs / 3600:.1f} h with --jobs {args.jobs} here "
              f"({threads} thread{'s' if threads > 1 else ''} each)")
        return 0
    if args.report:
        return _report(study, show_progress(args.progress))
    if args.slurm:
        jobs, report = submit(study, copy, pending, options, cluster=args.cluster or "slurm",
                              at_once=args.jobs)
        array = jobs[0].job_id.split("_")[0] if jobs else "none"
        print(f"submitted {len(jobs)} runs of study {study.name} as job array {array} and "
              f"the report as job {report.job_id}; logs in {study.folder / 'slurm'}")
        return 0
    return _run_here(study, copy, pending, args,
                     f"{parser.prog} {shlex.join(sys.argv[1:] if argv is None else argv)}")


def _run_here(study: Study, copy: Path, pending: list, args: argparse.Namespace,
              command: str) -> int:
    """Run ``pending`` in local workers, then report. SIGTERM or SIGINT stops the workers
    before their next training step, waits for them, and says how to continue."""
    log.info("study %s: %d runs, %d to do, %d at a time", study.name, len(study.runs),
             len(pending), args.jobs)
    bar = tqdm(total=len(pending), unit="run", desc=f"study {study.name}", file=sys.stderr,
               disable=not show_progress(args.progress))
    finished = 0

    def report_outcome(outcome) -> None:
        nonlocal finished
        finished += 1
        bar.update()
        if outcome.state == "failed":
            log.error("[%d/%d] %s", finished, len(pending), failure_line(outcome))
        elif outcome.state == "busy":
            log.warning("[%d/%d] %s busy: %s", finished, len(pending), outcome.run.key,
                        outcome.error)
        else:
            log.info("[%d/%d] %s %s (%.0f s)", finished, len(pending), outcome.run.key,
                     outcome.state, outcome.seconds)

    received: list[int] = []
    handlers = {signum: signal.signal(signum, lambda signum, frame: received.append(signum))
                for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        with bar, logging_redirect_tqdm():  # log lines print above the bar
            outcomes = run_local(study, copy, pending, args.jobs, on_outcome=report_outcome,
                                 should_stop=lambda: bool(received),
                                 threads=args.threads)
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
    count = Counter(outcome.state for outcome in outcomes)
    completed = count["done"] + count["already done"]
    if received:
        name = signal.Signals(received[0]).name
        others = "".join(f", {count[state]} {state}" for state in ("failed", "busy")
                         if count[state])
        print(f"study {study.name} stopped by {name}: {completed} of {len(pending)} runs "
              f"finished, {count['stopped']} stopped (each keeps its last complete epoch)"
              f"{others}, {len(pending) - len(outcomes)} not started; to continue, run the same "
              f"command again: {command}", file=sys.stderr)
        return STOPPED_STATUS if received[0] == signal.SIGTERM else INTERRUPTED_STATUS
    if any(run_state(run.run_dir) == "done" for run in study.runs):
        _report(study, show_progress(args.progress))
    busy = (f", {count['busy']} busy (held by another live process; run the same command "
            f"again once it is done)" if count["busy"] else "")
    print(f"study {study.name}: {completed} of {len(pending)} runs "
          f"finished, {count['failed']} failed{busy}, {len(study.runs) - len(pending)} were "
          f"already done; {study.folder}")
    return 1 if count["failed"] else BUSY_STATUS if count["busy"] else 0


def _report(study: Study, progress: bool) -> int:
    """Write the study's report: a log line as each stage begins, a bar when ``progress``."""
    from repsim.study.report import STAGES, write_report

    begun: list[str] = []

    def on_stage(what: str) -> None:
        if begun:
            bar.update()
        begun.append(what)
        log.info("report %s: %s (%d/%d)", study.name, what, len(begun), len(STAGES))

    with tqdm(total=len(STAGES), unit="step", desc=f"report {study.name}", file=sys.stderr,
              disable=not progress) as bar, logging_redirect_tqdm():
        path = write_report(study, on_stage=on_stage)
        bar.update()
    print(f"wrote {path}")
    return 0

