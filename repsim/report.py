"""Accuracy tables of trained runs, side by side: ``python -m repsim.report RUN [RUN ...]``.

Each run contributes one block of columns (noise on audio, on visual, on both) to a shared
table whose rows are the SNRs of the noise grid (clean first), then a ``removed`` row with the
accuracy when the column's modality is zeroed. Numbers are test accuracies in percent, read
from each run's ``metrics.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from repsim.cli import user_errors_exit_2
from repsim.evaluate import NOISE_TARGETS

REQUIRED = ("run", "fusion_layer", "layers", "parameters", "clean_accuracy", "noise", "removed")


def load_metrics(path: str | os.PathLike) -> dict:
    """A run's metrics from its directory or its ``metrics.json``."""
    path = Path(path)
    if path.is_dir():
        path = path / "metrics.json"
    if not path.is_file():
        raise FileNotFoundError(f"no metrics.json at {path} (has the run finished?)")
    try:
        metrics = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from None
    missing = [key for key in REQUIRED if not isinstance(metrics, dict) or key not in metrics]
    if missing:
        raise ValueError(f"{path} is not a repsim metrics file (missing {', '.join(missing)})")
    return metrics


def _heading(metrics: dict) -> str:
    """``<run> (k=<k>[ late], <n> params)``."""
    k = metrics["fusion_layer"]
    late = " late" if k == metrics["layers"] + 1 else ""
    return f"{metrics['run']} (k={k}{late}, {metrics['parameters']:,} params)"


def accuracy_table(runs: list[dict]) -> str:
    """The runs' noise-grid accuracies as one plain-text table, one column block per run."""
    if not runs:
        raise ValueError("accuracy_table needs at least one run's metrics")
    snrs = sorted({entry["snr_db"] for m in runs for entry in m["noise"]}, reverse=True)
    cell = 7
    block = len(NOISE_TARGETS) * (cell + 1)
    width = max(block, *(len(_heading(m)) for m in runs)) + 3
    label = 10

    def percent(value: float | None) -> str:
        return f"{100 * value:{cell}.1f}" if value is not None else f"{'-':>{cell}}"

    lines = [" " * label + "".join(f"{_heading(m):<{width}}" for m in runs),
             f"{'SNR (dB)':<{label}}" + "".join(
                 f"{''.join(f'{t:>{cell}} ' for t in NOISE_TARGETS):<{width}}" for _ in runs)]
    rows: list[tuple[str, list[list[float | None]]]] = [
        ("clean", [[m["clean_accuracy"]] * len(NOISE_TARGETS) for m in runs])]
    for snr in snrs:
        cells = []
        for m in runs:
            found = {(e["noise"], e["snr_db"]): e["accuracy"] for e in m["noise"]}
            cells.append([found.get((target, snr)) for target in NOISE_TARGETS])
        rows.append((f"{snr:g}", cells))
    rows.append(("removed", [[m["removed"].get("audio"), m["removed"].get("visual"), None]
                             for m in runs]))
    for name, cells in rows:
        lines.append(f"{name:<{label}}" + "".join(
            f"{''.join(percent(v) + ' ' for v in run_cells):<{width}}" for run_cells in cells))
    return "\n".join(line.rstrip() for line in lines)


@user_errors_exit_2
def main(argv: list[str] | None = None) -> int:
    """``python -m repsim.report``: print the runs' accuracy tables side by side."""
    parser = argparse.ArgumentParser(
        prog="python -m repsim.report",
        description="Print test accuracies (percent) of trained runs side by side: clean, "
                    "with white noise on audio, visual or both at each SNR, and with a "
                    "modality removed.",
        epilog="example: python -m repsim.report runs/synthetic-f1-s0 runs/synthetic-f3-s0")
    parser.add_argument("runs", nargs="+", help="run directories (or their metrics.json)")
    args = parser.parse_args(argv)
    print(accuracy_table([load_metrics(path) for path in args.runs]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
