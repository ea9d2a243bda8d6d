"""Record a trained model's layer states on a probe set: ``repsim.extract.run(config)`` or
``python -m repsim.extract runs/<name>/ckpt.pt``.

The probe set (:mod:`repsim.probeset`) is rebuilt from the checkpoint's dataset and a seed,
so every checkpoint of one dataset is probed with the same stimuli in the same order. Every
ConvLSTM layer's hidden state (and, on request, cell state) at every time step is written,
batch by batch, to an activation file (:mod:`repsim.activations` describes the format),
optionally pooled over space and stored as float16. The recording itself is
:func:`repsim.record`'s: the model's :meth:`~repsim.models.fusion.FusionConvLSTM.recorded_layers`
say which module and output make each layer state, the probe set gives the batches and the
stimulus table.

The file is written under a temporary name and renamed only when complete: Ctrl-C, SIGTERM
or a crash leave nothing at the output path, and a rerun starts again from the beginning
(extraction does not resume; temporaries of killed runs are deleted by the next run).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from repsim import activations
from repsim.cli import (
    STOPPED_STATUS,
    CommandParser,
    add_device,
    add_progress,
    add_threads,
    add_verbose,
    add_version,
    command_prog,
    keep_freed_memory,
    setup_logging,
    show_progress,
    user_errors_exit_2,
)
from repsim.conditions import (
    CONDITION_FORMS,
    PROBE_CONDITIONS,
    PROBE_SNRS,
    condition_change,
    probe_condition_names,
)
from repsim.config import Config, check_positive_int, words
from repsim.device import limit_threads, resolve_device
from repsim.provenance import claim, library_versions, sha256_file
from repsim.record.pooling import POOLINGS
from repsim.record.result import RecordResult as ExtractResult
from repsim.rundir import ACTIVATIONS_FILE, CHECKPOINT_FILE

if TYPE_CHECKING:  # torch is imported where it is used: parsing the command line needs none
    import torch

    from repsim.data.base import AVDataset
    from repsim.probeset import ProbeSet
    from repsim.record.stimuli import RecordBatch

log = logging.getLogger("repsim.extract")
# Pairs per condition by default; a test split with fewer is recorded whole (and logged).
DEFAULT_STIMULI = 200


class ExtractionStopped(Exception):
    """The caller's ``should_stop`` asked the extraction to stop; nothing was kept."""


@dataclass
class ExtractConfig(Config):
    """What to record from which checkpoint, and how to store it; round-trips through JSON.

    Parameters
    ----------
    checkpoint
        The run's checkpoint (``ckpt.pt``).
    output
        The activation file; ``None``: ``activations.h5`` beside the checkpoint.
    layers
        The layers to record; ``None``: every layer of the model's ``layer_names``. The fusion
        operator's output ``join.<k>`` is recorded when named here.
    states
        Any of ``"h"`` (hidden) and ``"c"`` (cell).
    pool
        ``"none"`` keeps the full frame, ``"avg"`` averages ``pool_factor`` x ``pool_factor``
        blocks (edge blocks average the cells they cover), ``"global"`` takes the spatial mean
        (y = x = 1).
    pool_factor
        The block size of ``"avg"`` pooling.
    dtype
        The stored type: ``"float32"`` or ``"float16"``.
    compression
        ``"none"``, ``"gzip"`` or ``"lzf"``.
    compression_level
        The gzip level.
    batch_size
        Stimuli per forward.
    n_stimuli
        Pairs per condition; ``None``: every test pair. The default records every pair of a
        test split that has fewer, and logs it.
    seed
        Fixes the probe set's pairs and noise.
    conditions
        The probe set's conditions (see [repsim.conditions][]).
    snrs
        Audio, visual and both noise at each of these SNRs (dB) join the conditions.
    device
        ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
    data_dir
        Where the dataset's files are now; ``None``: where the checkpoint's config says.
    overwrite
        Replace an existing output file.

    Raises
    ------
    ValueError
        For an unknown state, pooling, type, compression or condition, or no layers.
    """

    checkpoint: str
    output: str | None = None
    layers: tuple[str, ...] | None = None
    states: tuple[str, ...] = ("h",)
    pool: str = "none"
    pool_factor: int = 2
    dtype: str = "float32"
    compression: str = "none"
    compression_level: int = 4
    batch_size: int = 64
    n_stimuli: int | None = DEFAULT_STIMULI
    seed: int = 0
    conditions: tuple[str, ...] = PROBE_CONDITIONS
    snrs: tuple[float, ...] = PROBE_SNRS
    device: str = "auto"
    data_dir: str | None = None
    overwrite: bool = False

    KIND = "extract"

    def __post_init__(self) -> None:
        self.checkpoint = str(self.checkpoint)
        self.output = None if self.output is None else str(self.output)
        self.layers = None if self.layers is None else tuple(self.layers)
        self.states = tuple(self.states)
        self.conditions = tuple(self.conditions)
        self.snrs = tuple(float(snr) for snr in self.snrs)
        if not self.states or any(state not in activations.STATES for state in self.states):
            raise ValueError(f"states must be one or both of {', '.join(activations.STATES)}, "
                             f"got {', '.join(self.states) or 'none'}")
        self.states = tuple(s for s in activations.STATES if s in self.states)
        check_positive_int("n_stimuli", self.n_stimuli, allow_none=True)
        if self.layers is not None and not self.layers:
            raise ValueError("layers must name at least one layer (or be None for all)")
        if self.pool not in POOLINGS:
            raise ValueError(f"pool must be one of {', '.join(POOLINGS)}, not {self.pool!r}")
        for name in ("pool_factor", "batch_size"):
            check_positive_int(name, getattr(self, name))
        if self.dtype not in activations.DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(activations.DTYPES)}, "
                             f"not {self.dtype!r}")
        if self.compression not in activations.COMPRESSIONS:
            raise ValueError(f"compression must be one of "
                             f"{', '.join(activations.COMPRESSIONS)}, not {self.compression!r}")
        self.condition_list()  # unknown condition names and non-finite SNRs fail here

    @property
    def output_path(self) -> Path:
        """Where the activation file goes."""
        if self.output is not None:
            return Path(self.output)
        return Path(self.checkpoint).with_name(ACTIVATIONS_FILE)

    def condition_list(self) -> list[str]:
        """The probe set's condition names, in file order.

        Returns
        -------
        list of str
        """
        return probe_condition_names(self.conditions, self.snrs)


def _check_layers(requested: Sequence[str] | None, available: list[str]) -> list[str]:
    """Requested layers in forward order (all when None); ValueError naming unknown ones."""
    if requested is None:
        return list(available)
    unknown = [layer for layer in requested if layer not in available]
    if unknown:
        raise ValueError(f"unknown layer(s) {', '.join(map(repr, unknown))}; this model has: "
                         f"{', '.join(available)}")
    return [layer for layer in available if layer in requested]


def run(config: ExtractConfig, *, dataset: AVDataset | None = None, progress: bool = False,
        should_stop: Callable[[], bool] | None = None) -> ExtractResult:
    """Extract activations as ``config`` says: build the probe set of the checkpoint's dataset and
    record the chosen layers of its model on it (through [repsim.record.api.record][]).

    Every user mistake (missing or foreign checkpoint, unknown layer or condition, unwritable or
    existing output) raises before any stimulus is processed.

    Parameters
    ----------
    config
        What to record and where.
    dataset
        The checkpoint's dataset, already built (it must have the checkpoint's fingerprint);
        ``None`` rebuilds it.
    progress
        Show a tqdm bar on stderr.
    should_stop
        Asked between batches; when it answers True the extraction raises
        [ExtractionStopped][repsim.extract.ExtractionStopped] and the unfinished file is
        discarded.

    Returns
    -------
    RecordResult
        What was written where ([RecordResult][repsim.record.result.RecordResult]).

    Raises
    ------
    FileNotFoundError
        For a missing checkpoint.
    ValueError
        For a file that is not a repsim checkpoint, a dataset that differs from the
        checkpoint's, an unknown layer or condition, or an existing output without
        ``overwrite``.
    ExtractionStopped
        When ``should_stop`` answered True.

    Examples
    --------
    ```python
    from repsim.extract import ExtractConfig, run

    result = run(ExtractConfig("runs/synthetic-f1-s0/ckpt.pt", snrs=(0.0, -10.0)))
    result.path          # runs/synthetic-f1-s0/activations.h5
    ```
    """
    from repsim.checkpoint import check_checkpoint_path

    started = time.perf_counter()
    check_checkpoint_path(config.checkpoint)  # before the output: its folder may be missing too
    output = config.output_path
    activations.check_output_path(output, config.overwrite)
    with claim(output):  # taken first: a second extraction to this path fails at once
        return _extract(config, output, dataset, progress, should_stop, started)


def _extract(config: ExtractConfig, output: Path, dataset: AVDataset | None, progress: bool,
             should_stop: Callable[[], bool] | None, started: float) -> ExtractResult:
    """:func:`run` once the output is claimed."""
    from repsim.checkpoint import dataset_from_checkpoint, load_checkpoint, model_from_checkpoint
    from repsim.data.fingerprint import data_difference
    from repsim.probeset import ProbeSet
    from repsim.record.api import RecordingStopped, record

    ckpt = load_checkpoint(config.checkpoint)
    model = model_from_checkpoint(ckpt)
    if not ckpt["complete"]:
        log.warning("%s is the checkpoint of an unfinished training run (epoch %s)",
                    config.checkpoint, ckpt.get("epoch"))
    layers = _check_layers(config.layers, model.layer_names if config.layers is None
                           else model.recordable_layer_names)
    conditions = config.condition_list()
    device = resolve_device(config.device)

    if dataset is None:
        log.info("rebuilding the %s dataset of %s", ckpt["config"]["data"]["dataset"],
                 config.checkpoint)
        dataset = dataset_from_checkpoint(ckpt, data_dir=config.data_dir)
    else:
        difference = data_difference(ckpt["data_fingerprint"], dataset)
        if difference is not None:
            raise ValueError(f"the dataset given is not the one {config.checkpoint} was "
                             f"trained on: {difference}")
    n_stimuli = config.n_stimuli
    available = len(dataset.splits["test"]) if "test" in dataset.splits else None
    if n_stimuli == DEFAULT_STIMULI and available is not None and available < n_stimuli:
        log.info("the test split has %d pairs, fewer than the default %d: recording all of "
                 "them", available, DEFAULT_STIMULI)
        n_stimuli = None
    probe = ProbeSet.build(dataset, conditions, n_stimuli=n_stimuli, seed=config.seed)
    attrs = {
        "checkpoint": str(Path(config.checkpoint).resolve()),
        "checkpoint_sha256": sha256_file(config.checkpoint),
        "config": json.dumps(ckpt["config"]),
        "probe_set": json.dumps(probe.definition()),
        "condition_changes": json.dumps({name: change for name in conditions
                                         if (change := condition_change(name)) is not None}),
        "extract_config": config.to_json(),
        "model_layers": json.dumps(model.layer_names),
        "versions": json.dumps(library_versions()),
    }
    log.info("recording %s of %d layers for %d stimuli (%d conditions) on %s",
             "/".join(config.states), len(layers), len(probe), len(conditions), device)
    try:
        result = record(model, probe_batches(probe, config.batch_size),
                        model.recorded_layers(config.states, layers), output,
                        table=probe.coordinates(), pool=config.pool,
                        pool_factor=config.pool_factor, dtype=config.dtype,
                        compression=config.compression,
                        compression_level=config.compression_level, device=str(device),
                        logits=recorded_logits, attrs=attrs, overwrite=config.overwrite,
                        claimed=True, progress=progress, should_stop=should_stop)
    except RecordingStopped:
        raise ExtractionStopped(f"extraction stopped before {output} was complete; nothing "
                                f"was written") from None
    # the whole extraction's time: rebuilding the data and the probe set included
    return dataclasses.replace(result, conditions=conditions,
                               seconds=time.perf_counter() - started)


def probe_batches(probe: ProbeSet, batch_size: int) -> Iterator[RecordBatch]:
    """The probe set's batches as a FusionConvLSTM's inputs, with ``record=True`` so that its
    ConvLSTM modules return their cell states too."""
    from repsim.record.stimuli import RecordBatch

    for _, batch in probe.batches(batch_size):
        yield RecordBatch({"audio": batch.audio, "visual": batch.visual, "record": True})


def recorded_logits(output: tuple[torch.Tensor, object]) -> torch.Tensor:
    """The logits of a ``record=True`` forward's ``(logits, states)``."""
    return output[0]


def _stimulus_count(text: str) -> int | None:
    """``--stimuli``: a positive integer or ``all``."""
    if text == "all":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'all', "
                                         f"got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m repsim.extract`` argument parser."""
    defaults = ExtractConfig(checkpoint=CHECKPOINT_FILE)
    parser = CommandParser(
        prog=command_prog("python -m repsim.extract"),
        description="Record every ConvLSTM layer's state at every time step of a trained "
                    "model on a fixed probe set, into an HDF5/netCDF-4 activation file. "
                    "Options that take several values take every word up to the next "
                    "option: give the checkpoint first.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  %(prog)s runs/synthetic-f1-s0/ckpt.pt\n"
               "  %(prog)s runs/synthetic-f3-s0/ckpt.pt --states h c "
               "--pool avg --dtype float16\n"
               "  %(prog)s ckpt.pt --layers fused.2 --conditions clean "
               "incongruent --snrs -o fused2.h5 --overwrite")
    add_version(parser)
    parser.add_argument("checkpoint", help="a checkpoint written by python -m repsim.train")
    parser.add_argument("-o", "--output", help=f"activation file (default: {ACTIVATIONS_FILE} "
                                               f"beside the checkpoint)")
    parser.add_argument("--layers", nargs="+", metavar="LAYER",
                        help="layers to record, e.g. audio.1 fused.2, or join.K (the fusion "
                             "operator's output, recorded only when named; default: all "
                             "others)")
    parser.add_argument("--states", nargs="+", choices=activations.STATES,
                        default=list(defaults.states),
                        help=f"h (hidden) and/or c (cell) (default: {words(defaults.states)})")
    parser.add_argument("--pool", choices=POOLINGS, default=defaults.pool,
                        help="spatial pooling: none, avg (blocks) or global (spatial mean) "
                             "(default: %(default)s)")
    parser.add_argument("--pool-factor", type=int, default=defaults.pool_factor,
                        help="block size of --pool avg (default: %(default)s)")
    parser.add_argument("--dtype", choices=activations.DTYPES, default=defaults.dtype,
                        help="stored number type (default: %(default)s)")
    parser.add_argument("--compression", choices=activations.COMPRESSIONS,
                        default=defaults.compression,
                        help="gzip is netCDF-standard; lzf is faster but HDF5-only "
                             "(default: %(default)s)")
    parser.add_argument("--compression-level", type=int, default=defaults.compression_level,
                        help="gzip level 1-9 (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size,
                        help="stimuli per forward pass (default: %(default)s)")
    parser.add_argument("--stimuli", type=_stimulus_count, default=defaults.n_stimuli,
                        metavar="N", help="test pairs per condition, or 'all' "
                                          "(default: %(default)s)")
    parser.add_argument("--seed", type=int, default=defaults.seed,
                        help="probe-set seed: which pairs and which noise (default: "
                             "%(default)s)")
    parser.add_argument("--conditions", nargs="+", default=list(defaults.conditions),
                        metavar="NAME",
                        help=f"{', '.join(CONDITION_FORMS)} (X in dB; default: "
                             f"{words(defaults.conditions)})")
    parser.add_argument("--snrs", nargs="*", type=float, default=list(defaults.snrs),
                        metavar="DB", help=f"add audio, visual and both noise at these SNRs; "
                                           f"give none for no noise (default: "
                                           f"{words(defaults.snrs, 'dB')})")
    add_device(parser, default=defaults.device)
    add_threads(parser)
    parser.add_argument("--data-dir", help="where the checkpoint's dataset files are")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing output file (a regular file only: never a "
                             "device, FIFO, socket, folder or a link out of its folder)")
    add_progress(parser)
    add_verbose(parser)
    return parser


@user_errors_exit_2
def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, run the extraction, and log a one-line summary."""
    args = build_parser().parse_args(argv)
    logger = setup_logging(args.verbose)
    keep_freed_memory()
    if args.threads is not None:
        limit_threads(args.threads)
    config = ExtractConfig(
        checkpoint=args.checkpoint, output=args.output, layers=args.layers,
        states=tuple(args.states), pool=args.pool, pool_factor=args.pool_factor,
        dtype=args.dtype, compression=args.compression,
        compression_level=args.compression_level, batch_size=args.batch_size,
        n_stimuli=args.stimuli, seed=args.seed, conditions=tuple(args.conditions),
        snrs=tuple(args.snrs), device=args.device, data_dir=args.data_dir,
        overwrite=args.overwrite)
    # SIGTERM only sets a flag that the batch loop reads: raising inside the handler could
    # interrupt HDF5 midway and leave its lock held.
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    try:
        result = run(config, progress=show_progress(args.progress), should_stop=stop.is_set)
    except ExtractionStopped as stopped:
        print(f"stopped: {stopped}", file=sys.stderr)
        return STOPPED_STATUS
    finally:
        signal.signal(signal.SIGTERM, previous)
    logger.info(result.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
