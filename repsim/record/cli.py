"""``python -m repsim.record MODULE:FUNCTION --stimuli TABLE --batches MODULE:FUNCTION
--layers PATTERN ... --out FILE``: record any PyTorch model from the command line.

The arguments are parsed before torch is imported, so that ``--help`` is quick.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from repsim import loader
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

time: a module called T times at one place in one forward gives T steps; --time-dim names the
time axis of a module called once (PATTERN=AXIS, or one AXIS for all), --fold-time a module
that sees time folded into its batch; otherwise one step. Layers may differ in their steps
(here rnn has T, head 1).

  %(prog)s my_model.py:build --batches my_model.py:batches --list-layers

lists every module with its output shapes and calls per forward, to choose --layers from.
MODULE as a .py file is run when it is loaded, as any plugin: name only files you trust.
"""


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m repsim.record`` argument parser."""
    parser = CommandParser(
        prog=command_prog(PROG), formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EXAMPLE,
        description="Record chosen layers of any PyTorch model, per time step, into an "
                    "activation file that repsim's analyses and figures read. MODULE is a "
                    "Python module name or a .py file; FUNCTION builds the model (weights "
                    "loaded). A .py file is run when it is loaded, as any imported module "
                    "is: name only files you trust.")
    add_version(parser)
    parser.add_argument("model", metavar="MODULE:FUNCTION",
                        help="the function that returns the model, e.g. my_model.py:build")
    parser.add_argument("--stimuli", metavar="TABLE",
                        help="CSV or Parquet table, one row per stimulus in batch order, with "
                             "a unique stimulus_id column (read as text) (required to record)")
    parser.add_argument("--batches", required=True, metavar="MODULE:FUNCTION",
                        help="a function returning the batches (each a tuple of positional or "
                             "a dict of keyword inputs); called again for each condition")
    parser.add_argument("--layers", nargs="+", metavar="PATTERN",
                        help="glob patterns over the model's module names, e.g. "
                             "'encoder.layers.*' (required to record)")
    parser.add_argument("--out", type=Path, metavar="FILE",
                        help="the activation file to write (.h5) (required to record)")
    parser.add_argument("--list-layers", action="store_true",
                        help="list every module's name, type, output shapes and calls per "
                             "forward of the first batch, and record nothing")
    parser.add_argument("--time-dim", nargs="+", default=[], metavar="[PATTERN=]AXIS",
                        help="the time axis of the output of a module called once, for every "
                             "layer or per pattern (default: none, one step)")
    parser.add_argument("--fold-time", nargs="+", default=[], metavar="[PATTERN=]BT|TB",
                        help="time folded into the batch of a per-frame module's (B*T, ...) "
                             "output: BT for batch-major rows (frames.flatten of B and T), TB "
                             "for time-major rows (default: none)")
    parser.add_argument("--batch-dim", nargs="+", default=[], metavar="[PATTERN=]AXIS",
                        help="the batch axis of an output whose batch is not axis 0, e.g. "
                             "rnn=1 for an nn.LSTM's h_n (default: 0)")
    parser.add_argument("--output", nargs="+", default=[], metavar="[PATTERN=]INDEX",
                        help="which element of a tuple output to record (default: the first "
                             "tensor), e.g. cell=1 for the c of an LSTMCell's (h, c)")
    parser.add_argument("--conditions", nargs="+", metavar="NAME",
                        help="clean, <input>_removed, <input>_snr<X> on keyword inputs "
                             "(default: clean only)")
    parser.add_argument("--logits", action="store_true",
                        help="the model returns (B, classes) or (B, T, classes) logits (or a "
                             "tuple whose first element is): store them and the predictions, "
                             "so that noise_robustness can score the model (default: off)")
    parser.add_argument("--model-name", default=None,
                        help="the model's name in figures and tables (default: the output "
                             "file's stem)")
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
                        help="replace an existing output file (a regular file only: never a "
                             "device, FIFO, socket, folder or a link out of its folder)")
    add_threads(parser)
    add_progress(parser)
    add_verbose(parser)
    return parser


def load_function(spec: str) -> Callable[..., Any]:
    """The function ``spec`` names: ``module.name:function`` or ``path/file.py:function``
    ([repsim.loader.load_function][]); ValueError of one line, starting with ``spec``, when it
    does not import or is not callable."""
    try:
        return loader.load_function(spec, files=True)
    except ValueError as error:
        raise ValueError(f"{spec}: {error}") from error


def per_pattern(values: Sequence[str], option: str, parse: Callable[[str, str], Any] | None = None
                ) -> Any:
    """``--time-dim``/``--output``/``--batch-dim``/``--fold-time`` words: one value for all,
    or PATTERN=VALUE pairs; values are integers unless ``parse`` says otherwise."""
    parse = parse or _integer
    if not values:
        return None
    if len(values) == 1 and "=" not in values[0]:
        return parse(values[0], option)
    pairs = {}
    for word in values:
        pattern, sep, value = word.rpartition("=")
        if not sep or not pattern:
            raise ValueError(f"{option} takes one VALUE or PATTERN=VALUE pairs, got {word!r}")
        pairs[pattern] = parse(value, option)
    return pairs


def _fold(text: str, option: str) -> str:
    if text.upper() not in ("BT", "TB"):
        raise ValueError(f"{option}: expected BT or TB, got {text!r}")
    return text.upper()


def returned_logits(output: Any) -> Any:
    """``--logits``: the model's return value, or the first element of a tuple it returns."""
    return output[0] if isinstance(output, tuple | list) else output


def _integer(text: str, option: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{option}: expected an integer, got {text!r}") from None


def _called(spec: str, function: Callable[[], Any]) -> Any:
    """``function()``, with whatever it raises (``sys.exit`` included) as one ValueError
    naming ``spec``."""
    try:
        return function()
    except SystemExit as exit_:
        raise ValueError(f"{spec} called sys.exit({exit_.code!r}) instead of returning") from None
    except Exception as error:
        raise ValueError(f"{spec} raised {type(error).__name__}: "
                         f"{str(error).splitlines()[0] if str(error) else ''}") from error


@user_errors_exit_2
def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, build the model and batches, record (or list the model's layers),
    and log a one-line summary."""
    args = build_parser().parse_args(argv)
    logger = setup_logging(args.verbose)
    if args.threads is not None:
        limit_threads(args.threads)
    if args.list_layers:
        return _list_layers(args)
    missing = [option for option, value in (("--stimuli", args.stimuli),
                                            ("--layers", args.layers), ("--out", args.out))
               if not value]
    if missing:
        raise ValueError(f"recording needs {', '.join(missing)} (or --list-layers to list the "
                         f"model's modules)")
    options = {"time_dim": per_pattern(args.time_dim, "--time-dim"),
               "output": per_pattern(args.output, "--output"),
               "batch_dim": per_pattern(args.batch_dim, "--batch-dim"),
               "fold_time": per_pattern(args.fold_time, "--fold-time", _fold) or False}
    from repsim.activations import check_output_path
    check_output_path(args.out, args.overwrite)  # before the model is built
    build, batches = load_function(args.model), load_function(args.batches)
    from repsim.record.api import RecordingStopped, record
    model = _called(args.model, build)
    stop = threading.Event()  # SIGTERM is read between batches (see repsim.extract)
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    try:
        result = record(model, lambda: _called(args.batches, batches), args.layers, args.out,
                        table=args.stimuli, conditions=args.conditions, seed=args.seed,
                        device=args.device, dtype=args.dtype, pool=args.pool,
                        pool_factor=args.pool_factor, overwrite=args.overwrite,
                        logits=returned_logits if args.logits else None,
                        model_name=args.model_name, progress=show_progress(args.progress),
                        should_stop=stop.is_set, **options)
    except RecordingStopped as stopped:
        print(f"stopped: {stopped}", file=sys.stderr)
        return STOPPED_STATUS
    finally:
        signal.signal(signal.SIGTERM, previous)
    logger.info(result.summary())
    return 0


def _list_layers(args: argparse.Namespace) -> int:
    """``--list-layers``: the model's modules, from one forward of the first batch."""
    build, batches = load_function(args.model), load_function(args.batches)
    from repsim.record.listing import layers

    model = _called(args.model, build)
    first = _called(args.batches, lambda: next(iter(batches()), None))
    if first is None:
        raise ValueError(f"{args.batches} gave no batch")
    table = layers(model, first)
    print(table.to_string(index=False))
    return 0
