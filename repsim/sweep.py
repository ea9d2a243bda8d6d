"""Sweeps over fusion layers x seeds: ``python -m repsim.sweep``, here or on a SLURM cluster.

A sweep is a list of ordinary training runs, each one ``python -m repsim.train`` invocation
with ``--fusion-layer K --seed S --out-dir <runs-dir>/<dataset>-f<K>-s<S>`` added to the
training options you give after ``--``. Locally the runs go one after another, skipping runs
that already have a ``metrics.json``. With ``--slurm`` the sweep is written as a SLURM job
array (one task per run) that you submit with ``sbatch`` (or ``--submit``).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from repsim.cli import setup_logging, user_errors_exit_2
from repsim.rundir import METRICS_FILE, run_name
from repsim.train import TrainConfig, TrainResult, run
from repsim.train.cli import build_parser as build_train_parser
from repsim.train.cli import config_from_args, summary_line

log = logging.getLogger("repsim.sweep")

EXAMPLES = """\
examples:
  # early (1), middle (2) and late (3) fusion of a 2-layer network, 3 seeds, here:
  python -m repsim.sweep --fusion-layers 1 2 3 --seeds 0 1 2 -- --epochs 8
  # the same on a SLURM cluster, one GPU per run:
  python -m repsim.sweep --fusion-layers 1 2 3 --seeds 0 1 2 --slurm --gpus 1 \\
      --partition gpu --submit -- --dataset avmnist --device cuda
"""


@dataclass(frozen=True)
class SweepJob:
    """One run of the sweep: its training arguments and the config they produce."""

    argv: tuple[str, ...]
    config: TrainConfig

    @property
    def run_dir(self) -> Path:
        return self.config.run_dir

    @property
    def finished(self) -> bool:
        return (self.run_dir / METRICS_FILE).is_file()


def plan(train_args: list[str], fusion_layers: list[str], seeds: list[int],
         runs_dir: str | Path = "runs") -> list[SweepJob]:
    """The sweep's runs, every config validated before anything starts."""
    if not fusion_layers or not seeds:
        raise ValueError("a sweep needs at least one fusion layer and one seed")
    if any(arg == "--out-dir" or arg.startswith("--out-dir=") for arg in train_args):
        raise ValueError("--out-dir is set per run by the sweep; use --runs-dir instead")
    parser = build_train_parser()
    jobs = []
    for fusion_layer in fusion_layers:
        for seed in seeds:
            argv = (*train_args, "--fusion-layer", str(fusion_layer), "--seed", str(seed))
            config = config_from_args(parser.parse_args(argv))
            out_dir = str(Path(runs_dir) / run_name(config.data.dataset,
                                                    config.model.fusion_layer, seed))
            jobs.append(SweepJob(argv=(*argv, "--out-dir", out_dir),
                                 config=dataclasses.replace(config, out_dir=out_dir)))
    run_dirs = [job.run_dir for job in jobs]
    if len(set(run_dirs)) != len(run_dirs):
        raise ValueError("two runs of the sweep would share a run directory (is a fusion "
                         "layer given twice, e.g. as a number and as 'late'?)")
    return jobs


def run_local(jobs: list[SweepJob], *, progress: bool = True) -> list[TrainResult]:
    """Train every unfinished run here, one after another."""
    results = []
    for index, job in enumerate(jobs, start=1):
        if job.finished:
            log.info("[%d/%d] %s already finished, skipped", index, len(jobs), job.run_dir)
            continue
        log.info("[%d/%d] training %s", index, len(jobs), job.run_dir)
        result = run(job.config, overwrite=True, progress=progress)
        log.info("%s", summary_line(result))
        results.append(result)
    return results


@dataclass(frozen=True)
class SlurmOptions:
    """Resources of each array task; ``None`` leaves the cluster's default."""

    partition: str | None = None
    time: str = "02:00:00"
    cpus: int = 4
    gpus: int = 0
    mem: str | None = "16G"
    max_parallel: int | None = None
    python: str = sys.executable


def write_slurm_script(jobs: list[SweepJob], directory: str | Path,
                       options: SlurmOptions = SlurmOptions()) -> Path:
    """Write ``jobs.txt`` (one line of train arguments per task) and ``sweep.sbatch``.

    Task ``i`` of the array runs line ``i`` of ``jobs.txt``, in the directory the sweep was
    planned from, so relative paths (``runs/``, ``--data-dir``) mean the same on the nodes.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "jobs.txt").write_text("".join(shlex.join(job.argv) + "\n" for job in jobs))
    array = f"0-{len(jobs) - 1}" + (f"%{options.max_parallel}" if options.max_parallel else "")
    lines = [
        "#!/bin/bash",
        "#SBATCH --job-name=repsim-sweep",
        f"#SBATCH --array={array}",
        f"#SBATCH --output={directory.resolve()}/slurm-%A_%a.out",
        f"#SBATCH --time={options.time}",
        f"#SBATCH --cpus-per-task={options.cpus}",
    ]
    if options.partition:
        lines.append(f"#SBATCH --partition={options.partition}")
    if options.gpus:
        lines.append(f"#SBATCH --gres=gpu:{options.gpus}")
    if options.mem:
        lines.append(f"#SBATCH --mem={options.mem}")
    lines += [
        "set -euo pipefail",
        f"cd {shlex.quote(str(Path.cwd()))}",
        f"mapfile -t JOBS < {shlex.quote(str((directory / 'jobs.txt').resolve()))}",
        f'eval "exec {shlex.quote(options.python)} -m repsim.train '
        '${JOBS[$SLURM_ARRAY_TASK_ID]}"',
    ]
    script = directory / "sweep.sbatch"
    script.write_text("\n".join(lines) + "\n")
    return script


def submit(script: Path) -> str:
    """Submit ``script`` with sbatch; return sbatch's answer (the job id line)."""
    if shutil.which("sbatch") is None:
        raise FileNotFoundError(f"sbatch not found on PATH; submit {script} on the cluster's "
                                f"login node with: sbatch {script}")
    done = subprocess.run(["sbatch", str(script)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ValueError(f"sbatch refused {script}: {done.stderr.strip()}")
    return done.stdout.strip()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m repsim.sweep", epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train every fusion layer x seed. Options after `--` go to every "
                    "`python -m repsim.train` run.")
    parser.add_argument("--fusion-layers", nargs="+", required=True, metavar="K",
                        help="fusion layers (1..layers+1, or 'late')")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0], metavar="S",
                        help="training seeds (default 0)")
    parser.add_argument("--runs-dir", default="runs", help="parent of the run directories")
    parser.add_argument("--dry-run", action="store_true", help="list the runs, train nothing")
    slurm = parser.add_argument_group("SLURM")
    slurm.add_argument("--slurm", action="store_true",
                       help="write a SLURM job array instead of training here")
    slurm.add_argument("--partition")
    slurm.add_argument("--time", default=SlurmOptions.time, help="per run (default 02:00:00)")
    slurm.add_argument("--cpus", type=int, default=SlurmOptions.cpus, help="per run")
    slurm.add_argument("--gpus", type=int, default=0, help="per run (default 0)")
    slurm.add_argument("--mem", default=SlurmOptions.mem, help="per run (default 16G)")
    slurm.add_argument("--max-parallel", type=int, help="at most this many runs at once")
    slurm.add_argument("--submit", action="store_true", help="run sbatch on the script")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("train_args", nargs=argparse.REMAINDER,
                        help="-- then options for python -m repsim.train")
    return parser


@user_errors_exit_2
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging()
    train_args = args.train_args[1:] if args.train_args[:1] == ["--"] else args.train_args
    jobs = plan(train_args, args.fusion_layers, args.seeds, args.runs_dir)
    if args.dry_run:
        for job in jobs:
            state = "finished" if job.finished else "to run"
            print(f"{job.run_dir} ({state}): python -m repsim.train {shlex.join(job.argv)}")
        return 0
    if args.slurm:
        options = SlurmOptions(partition=args.partition, time=args.time, cpus=args.cpus,
                               gpus=args.gpus, mem=args.mem, max_parallel=args.max_parallel)
        script = write_slurm_script(jobs, Path(args.runs_dir) / "sweep", options)
        answer = f"; {submit(script)}" if args.submit else f"; submit with: sbatch {script}"
        print(f"wrote a {len(jobs)}-task SLURM array to {script}{answer}")
        return 0
    results = run_local(jobs, progress=not args.quiet)
    print(f"trained {len(results)} of {len(jobs)} runs "
          f"({len(jobs) - len(results)} already finished) under {args.runs_dir}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
