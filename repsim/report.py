"""Accuracy tables of trained runs, side by side: ``python -m repsim.report RUN [RUN ...]``.

Each run contributes one block of columns (noise on audio, on visual, on both) to a shared
table whose rows are the SNRs of the noise grid (clean first), then a ``removed`` row with the
accuracy when the column's modality is zeroed. Numbers are test accuracies in percent, read
from each run's ``metrics.json``.
"""

from __future__ import annotations

import argparse
import sys

from repsim.cli import CommandParser, add_threads, add_version, command_prog, user_errors_exit_2
from repsim.conditions import CLEAN, NOISE_KINDS
from repsim.device import limit_threads
from repsim.models.config import fusion_role
from repsim.rundir import Metrics, read_metrics


def _heading(metrics: Metrics) -> str:
    """``<run> (k=<k>[ late], <n> params)``."""
    late = " late" if fusion_role(metrics.fusion_layer, metrics.layers) == "late" else ""
    return f"{metrics.run} (k={metrics.fusion_layer}{late}, {metrics.parameters:,} params)"


def accuracy_table(runs: list[Metrics]) -> str:
    """The runs' noise-grid accuracies as one plain-text table, one column block per run."""
    if not runs:
        raise ValueError("accuracy_table needs at least one run's metrics")
    snrs = sorted({snr for m in runs for _, snr in m.noise_accuracy}, reverse=True)
    cell = 7
    block = len(NOISE_KINDS) * (cell + 1)
    width = max(block, *(len(_heading(m)) for m in runs)) + 3
    label = 10

    def percent(value: float | None) -> str:
        return f"{100 * value:{cell}.1f}" if value is not None else f"{'-':>{cell}}"

    lines = [" " * label + "".join(f"{_heading(m):<{width}}" for m in runs),
             f"{'SNR (dB)':<{label}}" + "".join(
                 f"{''.join(f'{t:>{cell}} ' for t in NOISE_KINDS):<{width}}" for _ in runs)]
    rows: list[tuple[str, list[list[float | None]]]] = [
        (CLEAN, [[m.clean_accuracy] * len(NOISE_KINDS) for m in runs])]
    for snr in snrs:
        rows.append((f"{snr:g}", [[m.noise_accuracy.get((kind, snr)) for kind in NOISE_KINDS]
                                  for m in runs]))
    rows.append(("removed", [[m.removed["audio"], m.removed["visual"], None] for m in runs]))
    for name, cells in rows:
        lines.append(f"{name:<{label}}" + "".join(
            f"{''.join(percent(v) + ' ' for v in run_cells):<{width}}" for run_cells in cells))
    return "\n".join(line.rstrip() for line in lines)


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m repsim.report`` argument parser."""
    parser = CommandParser(
        prog=command_prog("python -m repsim.report"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Print test accuracies (percent) of trained runs side by side: clean, "
                    "with white noise on audio, visual or both at each SNR, and with a "
                    "modality removed.",
        epilog="examples:\n  %(prog)s runs/synthetic-f1-s0 runs/synthetic-f3-s0\n"
               "  %(prog)s runs/*-s0/metrics.json")
    add_version(parser)
    parser.add_argument("runs", nargs="+", help="run directories (or their metrics.json)")
    add_threads(parser)
    return parser


@user_errors_exit_2
def main(argv: list[str] | None = None) -> int:
    """``python -m repsim.report``: print the runs' accuracy tables side by side."""
    args = build_parser().parse_args(argv)
    if args.threads is not None:
        limit_threads(args.threads)
    print(accuracy_table([read_metrics(path) for path in args.runs]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
