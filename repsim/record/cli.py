"""``python -m repsim.record MODULE:FUNCTION --stimuli TABLE --batches MODULE:FUNCTION
--layers PATTERN ... --out FILE``: record any PyTorch model from the command line.

The arguments are parsed before torch is imported, so that ``--help`` is quick.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from repsim.cli import (
    STOPPED_STATUS,
    CommandParser,
    add_device,
    add_progress,
    add_threads,
    add_verbose,
    add_version,
    command_prog,
    setup_logging,
    show_progress,
    user_errors_exit_2,
)
from repsim.device import limit_threads
from repsim.record.pooling import POOLINGS

log = logging.getLogger("repsim.record")
PROG = "python -m repsim.record"
EXAMPLE = """example: a model file of your own, my_model.py, and the command

  # my_model.py
  import torch
  from torch import nn

  class Net(nn.Module):
      def __init__(self):
          super().__init__()
          self.rnn = nn.GRU(8, 16, batch_first=True)
          self.head = nn.Linear(16, 10)
      def forward(self, audio):
          out, _ = self.rnn(audio)
          return self.head(out[:, -1])

  def build():                       # the model, weights loaded
      model = Net()
      model.load_state_dict(torch.load("net.pt", weights_only=True))
      return model

  def batches():                     # the inputs, in the order of the table's rows
      audio = torch.load("audio.pt")  # (stimuli, time, 8)
      for start in range(0, len(audio), 32):
          yield {"audio": audio[start:start + 32]}

  # stimuli.csv: a stimulus_id column (unique), any other columns (labels...)

  %(prog)s my_model.py:build --stimuli stimuli.csv --batches my_model.py:batches \\
      --layers rnn head --time-dim rnn=1 --conditions clean audio_snr0 audio_removed \\
      --out my_model.h5

time: a module called T times in one forward gives T steps; --time-dim names the time axis
of a module called once (PATTERN=AXIS, or one AXIS for all); otherwise one step.
"""


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m repsim.record`` argument parser."""
    parser = CommandParser(
        prog=command_prog(PROG), formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EXAMPLE,
        description="Record chosen layers of any PyTorch model, per time step, into an "
                    "activation file that repsim's analyses and figures read. MODULE is a "
                    "Python module name or a .py file; FUNCTION builds the model (weights "
                    "loaded).")
    add_version(parser)
    parser.add_argument("model", metavar="MODULE:FUNCTION",
                        help="the function that returns the model, e.g. my_model.py:build")
    parser.add_argument("--stimuli", required=True, metavar="TABLE",
                        help="CSV or Parquet table, one row per stimulus in batch order, with "
                             "a unique stimulus_id column")
    parser.add_argument("--batches", required=True, metavar="MODULE:FUNCTION",
                        help="a function returning the batches (each a tuple of positional or "
                             "a dict of keyword inputs); called again for each condition")
    parser.add_argument("--layers", required=True, nargs="+", metavar="PATTERN",
                        help="glob patterns over the model's module names, e.g. "
                             "'encoder.layers.*'")
    parser.add_argument("--out", required=True, type=Path, metavar="FILE",
                        help="the activation file to write (.h5)")
    parser.add_argument("--time-dim", nargs="+", default=[], metavar="[PATTERN=]AXIS",
                        help="the time axis of the output of a module called once, for every "
                             "pattern or per pattern (default: none, one step)")
    parser.add_argument("--output", nargs="+", default=[], metavar="[PATTERN=]INDEX",
                        help="which element of a tuple output to record (default: the first "
                             "tensor), e.g. cell=1 for the c of an LSTMCell's (h, c)")
    parser.add_argument("--conditions", nargs="+", metavar="NAME",
                        help="clean, <input>_removed, <input>_snr<X> on keyword inputs "
                             "(default: clean only)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the noise conditions (default: %(default)s)")
    add_device(parser)
    parser.add_argument("--dtype", default="float32",
                        help="stored number type: float32 or float16 (default: %(default)s)")
    parser.add_argument("--pool", choices=POOLINGS, default="none",
                        help="spatial pooling of maps: none, avg (blocks) or global "
                             "(default: %(default)s)")
    parser.add_argument("--pool-factor", type=int, default=2,
                        help="block size of --pool avg (default: %(default)s)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing output file")
    add_threads(parser)
    add_progress(parser)
    add_verbose(parser)
    return parser


def load_function(spec: str) -> Callable[..., Any]:
    """The function ``spec`` names: ``module.name:function`` or ``path/file.py:function``;
    ValueError of one line when it does not import or is not callable."""
    module_name, sep, attribute = spec.rpartition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"{spec!r} is not MODULE:FUNCTION (e.g. my_model.py:build)")
    try:
        if module_name.endswith(".py"):
            path = Path(module_name)
            if not path.is_file():
                raise ValueError(f"{spec}: the file {path} does not exist")
            module_spec = importlib.util.spec_from_file_location(path.stem, path)
            assert module_spec is not None and module_spec.loader is not None
            module = importlib.util.module_from_spec(module_spec)
            module_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
    except ValueError:
        raise
    except Exception as error:  # whatever the user's module raised while importing
        raise ValueError(f"{spec}: cannot import {module_name}: {type(error).__name__}: "
                         f"{str(error).splitlines()[0] if str(error) else ''}") from error
    function = getattr(module, attribute, None)
    if not callable(function):
        raise ValueError(f"{spec}: {module_name} has no function {attribute!r}")
    return function


def per_pattern(values: Sequence[str], option: str) -> int | dict[str, int] | None:
    """``--time-dim``/``--output`` words: one integer for all, or PATTERN=INTEGER pairs."""
    if not values:
        return None
    if len(values) == 1 and "=" not in values[0]:
        return _integer(values[0], option)
    pairs = {}
    for word in values:
        pattern, sep, number = word.rpartition("=")
        if not sep or not pattern:
            raise ValueError(f"{option} takes one AXIS or PATTERN=AXIS pairs, got {word!r}")
        pairs[pattern] = _integer(number, option)
    return pairs


def _integer(text: str, option: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{option}: expected an integer, got {text!r}") from None


@user_errors_exit_2
def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, build the model and batches, record, and log a one-line summary."""
    args = build_parser().parse_args(argv)
    logger = setup_logging(args.verbose)
    if args.threads is not None:
        limit_threads(args.threads)
    time_dim = per_pattern(args.time_dim, "--time-dim")
    output = per_pattern(args.output, "--output")
    from repsim.activations import check_output_path
    check_output_path(args.out, args.overwrite)  # before the model is built
    build, batches = load_function(args.model), load_function(args.batches)
    from repsim.record.api import RecordingStopped, record
    try:
        model = build()
    except Exception as error:
        raise ValueError(f"{args.model} raised {type(error).__name__}: "
                         f"{str(error).splitlines()[0] if str(error) else ''}") from error
    stop = threading.Event()  # SIGTERM is read between batches (see repsim.extract)
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    try:
        result = record(model, batches, args.layers, args.out, table=args.stimuli,
                        time_dim=time_dim, output=output, conditions=args.conditions,
                        seed=args.seed, device=args.device, dtype=args.dtype, pool=args.pool,
                        pool_factor=args.pool_factor, overwrite=args.overwrite,
                        progress=show_progress(args.progress), should_stop=stop.is_set)
    except RecordingStopped as stopped:
        print(f"stopped: {stopped}", file=sys.stderr)
        return STOPPED_STATUS
    finally:
        signal.signal(signal.SIGTERM, previous)
    logger.info(result.summary())
    return 0
