"""Time to write a finished study's report: ``python -m repsim.study STUDY --report``.

Copies a committed study folder (its study file and the runs' records: config, log, metrics,
summary) to a temporary folder and times the whole command there, in a fresh process, from
start-up to the last figure (target: under 60 s for the quick study's 60 runs). The
committed report is not touched. Run it alone: other processes on the cores change it.

    python benchmarks/bench_report.py
    python benchmarks/bench_report.py --study studies/avmnist
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_SECONDS = 60


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", type=Path, default=Path("studies/quick"),
                        help="a finished study's folder (default studies/quick)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / args.study.name
        shutil.copytree(args.study, folder, ignore=shutil.ignore_patterns("*.h5", "*.pt"))
        runs = len(list(folder.glob("runs/*/*/*/summary.json")))
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "repsim.study", str(folder / "study.toml"),
                        "--out-dir", str(folder), "--report"], check=True, capture_output=True)
        seconds = time.perf_counter() - started
    print(f"report of {args.study} ({runs} runs): {seconds:.1f} s "
          f"(target < {TARGET_SECONDS} s)")


if __name__ == "__main__":
    main()
