"""``repsim COMMAND [options]`` (also ``python -m repsim``): one entry point for every command.

Each command hands the rest of the line to an existing command line's ``main`` and returns its
exit status, so ``repsim train ...`` is ``python -m repsim.train ...``. A command's module is
imported only when it runs: ``repsim --help`` starts without torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path

import repsim
from repsim.cli import invoked_as, user_errors_exit_2

# command: (module whose ``main(argv)`` runs it, one line for ``repsim --help``)
COMMANDS = {
    "train": ("repsim.train.cli", "train a fusion network and test it under noise"),
    "extract": ("repsim.extract", "record every layer's states of a checkpoint on the probe set"),
    "record": ("repsim.record.cli", "record chosen layers of any PyTorch model per time step"),
    "figure": ("repsim.figures.__main__", "draw a figure by name (repsim figure --help)"),
    "study": ("repsim.study.cli", "run, follow or report a whole study from a study file"),
    "data": ("repsim.data.__main__", "build a dataset, describe it, draw a few stimuli"),
    "report": ("repsim.report", "accuracy tables of trained runs side by side"),
}
EXAMPLES = """examples:
  repsim train --fusion-layer 1
  repsim extract runs/synthetic-f1-s0/ckpt.pt
  repsim record my_model.py:build --stimuli stimuli.csv --batches my_model.py:batches \
      --layers 'encoder.*' --out my_model.h5
  repsim figure cka_by_layer
  repsim study studies/quick.toml --dry-run
"""


def parser() -> argparse.ArgumentParser:
    """The top-level parser: only ``--help`` and ``--version`` (a command parses the rest)."""
    listing = "\n".join(f"  {name:<9} {line}" for name, (_, line) in COMMANDS.items())
    p = argparse.ArgumentParser(
        prog="repsim", usage="repsim COMMAND [options]   (repsim COMMAND --help for its options)",
        description=f"{repsim.__doc__}\n\ncommands:\n{listing}", epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"repsim {repsim.__version__}")
    return p


@user_errors_exit_2
def main(argv: Sequence[str] | None = None) -> int:
    """Run ``repsim COMMAND ARGS...``: COMMAND's ``main(ARGS)``, whose exit status is returned."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] in (["-h"], ["--help"], ["--version"]):
        parser().parse_args(argv[:1])  # prints and exits with status 0
    if not argv or argv[0] not in COMMANDS:
        what = f"unknown command {argv[0]!r}" if argv else "no command given"
        raise ValueError(f"{what}; choose one of {', '.join(COMMANDS)} (repsim --help)")
    module, _ = COMMANDS[argv[0]]
    typed = "python -m repsim" if Path(sys.argv[0]).name == "__main__.py" else "repsim"
    with invoked_as(f"{typed} {argv[0]}"):  # the command's usage line names what was typed
        return importlib.import_module(module).main(argv[1:])
