"""``python -m repsim.train``: parse the options into a :class:`TrainConfig`, train, and print
one summary line (see :func:`repsim.train.run` for what a run does)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import signal
import sys
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

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
    key_value,
    setup_logging,
    show_progress,
    user_errors_exit_2,
)
from repsim.config import config_defaults, words
from repsim.data.registry import dataset_names
from repsim.device import PRECISIONS, limit_threads
from repsim.models.config import DEFAULT_FUSION_OP, FUSION_OPS, fusion_role
from repsim.rundir import RUN_FILES, TENSORBOARD_DIR
from repsim.train.config import AUGMENT_CHOICES, TrainConfig

if TYPE_CHECKING:
    from repsim.train.loop import TrainResult
    from repsim.train.tensorboard import TensorBoardLogger

LOGGERS = ("none", "tensorboard")

EXAMPLES = """examples:
  %(prog)s                                  # synthetic data, early fusion (k=1)
  %(prog)s --fusion-layer late --out-dir runs/late
  %(prog)s --dataset avmnist --data-dir ../shared/data --layers 4 --hidden 32
  %(prog)s --augment both --augment-snr -10 20 --epochs 12
  %(prog)s --data-option distractor_snr=0   # a competing talker in every clip
  %(prog)s --config runs/late/config.json --resume runs/late/ckpt.pt
  %(prog)s --logger tensorboard             # then: tensorboard --logdir runs
  {report} runs/synthetic-f1-s0 runs/late   # accuracy tables side by side
"""


def _fusion_layer(text: str) -> int | str:
    """``--fusion-layer`` value: a layer number, ``early`` (1) or ``late`` (layers + 1)."""
    if text == "early":
        return 1
    if text == "late":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a layer number, 'early' or 'late', got {text!r}") from None


def _snr_list(text: str) -> float:
    """One ``--snrs`` value in dB (``inf`` is accepted and means clean)."""
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an SNR in dB or 'inf', got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m repsim.train`` argument parser; unset options keep the config's value."""
    prog = command_prog("python -m repsim.train")
    # the report command, typed the way this one was ("repsim train": "repsim report")
    report = ("python -m repsim.report" if prog == "python -m repsim.train"
              else f"{prog.rsplit(' ', 1)[0]} report")
    parser = CommandParser(
        prog=prog, epilog=EXAMPLES.replace("{report}", report),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train a fusion ConvLSTM, then test it clean, on a noise grid and with "
                    "each modality removed. Writes ckpt.pt, config.json, log.csv and "
                    "metrics.json into the run directory.")
    add_version(parser)
    defaults = SimpleNamespace(**config_defaults(TrainConfig))  # no dataset module imported
    model_defaults, data_defaults = SimpleNamespace(**defaults.model), SimpleNamespace(
        **defaults.data)
    arg = parser.add_argument
    arg("--config", metavar="JSON", help="start from this TrainConfig JSON (e.g. a run's "
        "config.json); the options below override it")
    data = parser.add_argument_group("data")
    data.add_argument("--dataset", metavar="NAME",
                      help=f"dataset: {', '.join(dataset_names())}, a plugin's name, or "
                           f"MODULE:FUNCTION (default {data_defaults.dataset}; list them with "
                           f"python -m repsim.data --list); a plugin is imported, which runs "
                           f"its code: name only plugins you trust")
    data.add_argument("--data-dir", help="where the dataset's files are (avmnist, folder)")
    data.add_argument("--data-seed", type=int,
                      help=f"dataset seed (default {data_defaults.seed})")
    data.add_argument("--timesteps", type=int, help="time steps T (default: the dataset's)")
    data.add_argument("--height", type=int, help="frame height H (default: the dataset's)")
    data.add_argument("--width", type=int, help="frame width W (default: the dataset's)")
    data.add_argument("--data-option", type=key_value, action="append", metavar="KEY=VALUE",
                      help="any other dataset option, e.g. --data-option distractor_snr=0 "
                           "(repeatable; see python -m repsim.data)")
    model = parser.add_argument_group("model")
    model.add_argument("--fusion-layer", type=_fusion_layer, metavar="K",
                       help=f"1..layers+1, 'early' (1) or 'late' (layers+1) (default "
                            f"{model_defaults.fusion_layer}: early fusion)")
    model.add_argument("--layers", type=int,
                       help=f"ConvLSTM layers (default {model_defaults.layers})")
    model.add_argument("--hidden", type=int,
                       help=f"channels per layer (default {model_defaults.hidden})")
    model.add_argument("--kernel", type=int,
                       help=f"convolution kernel size (default {model_defaults.kernel})")
    model.add_argument("--readout", choices=("last", "per_step"),
                       help=f"classify at the last step or at every step (default "
                            f"{model_defaults.readout})")
    model.add_argument("--fusion-op", metavar="OP",
                       help=f"how the streams are joined at the fusion layer: "
                            f"{', '.join(FUSION_OPS)} (default {model_defaults.fusion_op})")
    model.add_argument("--match-params", action="store_true", default=None,
                       help="narrow the branch layers so the parameter count matches k=1 "
                            "with concatenation")
    train = parser.add_argument_group("training")
    train.add_argument("--epochs", type=int, help=f"training epochs (default {defaults.epochs})")
    train.add_argument("--batch-size", type=int,
                       help=f"training batch size (default {defaults.batch_size})")
    train.add_argument("--lr", type=float, help=f"peak learning rate (default {defaults.lr:g})")
    train.add_argument("--weight-decay", type=float,
                       help=f"AdamW weight decay (default {defaults.weight_decay:g})")
    train.add_argument("--grad-clip", type=float,
                       help=f"gradient norm clip, 0 = off (default {defaults.grad_clip:g})")
    train.add_argument("--seed", type=int, help=f"training seed (default {defaults.seed})")
    add_device(train)
    add_threads(train)
    train.add_argument("--compile", action="store_true", default=None,
                       help="torch.compile the model for training")
    train.add_argument("--precision", choices=PRECISIONS,
                       help="bf16 autocast or float32; auto (default) is bf16 on CUDA and "
                            "float32 on the CPU, where bf16 is faster on CPUs with bf16 "
                            "instructions")
    train.add_argument("--augment", choices=AUGMENT_CHOICES,
                       help=f"train-time white noise on these modalities (default "
                            f"{defaults.augment})")
    train.add_argument("--augment-snr", type=float, nargs=2, metavar=("LOW", "HIGH"),
                       help=f"range of train-time SNRs (default "
                            f"{words(defaults.augment_snr, 'dB')})")
    train.add_argument("--augment-fraction", type=float,
                       help=f"fraction of samples that get noise (default "
                            f"{defaults.augment_fraction:g})")
    train.add_argument("--stop-at-plateau", action="store_true", default=None,
                       help="stop once --plateau-patience epochs in a row have not raised the "
                            "best validation accuracy by more than --plateau-gain, and keep "
                            "the best epoch's model (default: train every epoch)")
    train.add_argument("--plateau-patience", type=int, metavar="EPOCHS",
                       help=f"epochs without a gain before --stop-at-plateau stops (default "
                            f"{defaults.plateau_patience})")
    train.add_argument("--plateau-gain", type=float, metavar="ACCURACY",
                       help=f"the smallest gain of validation accuracy (0-1) that counts for "
                            f"--stop-at-plateau (default {defaults.plateau_gain:g})")
    train.add_argument("--modality-dropout", type=float, metavar="FRACTION",
                       help=f"fraction of training samples with one modality zeroed "
                            f"(default {defaults.modality_dropout:g})")
    evaluation = parser.add_argument_group("evaluation")
    evaluation.add_argument("--snrs", type=_snr_list, nargs="+", metavar="DB",
                            help=f"test-grid SNRs in dB (default "
                                 f"{words(defaults.noise_snrs, 'dB')}; clean is always "
                                 f"included)")
    evaluation.add_argument("--eval-batch-size", type=int,
                            help=f"test batch size (default {defaults.eval_batch_size})")
    output = parser.add_argument_group("output")
    output.add_argument("--out-dir", help="run directory (default runs/<dataset>-f<k>-s<seed>): "
                        "empty, new, or a run of this configuration")
    output.add_argument("--resume", metavar="CKPT|auto",
                        help="continue from this checkpoint (same configuration); 'auto': "
                             "finish the run in the output directory, whatever state it is "
                             "in (a finished run is reported, not retrained)")
    output.add_argument("--overwrite", action="store_true",
                        help="start afresh even if the run directory holds a checkpoint, "
                             "another run or other files (the run's own files are rewritten; "
                             "others stay)")
    output.add_argument("--logger", choices=LOGGERS, default="none",
                        help=f"experiment tracking: tensorboard writes each epoch's train "
                             f"loss, validation accuracy and learning rate, and at the end the "
                             f"hyper-parameters with the test accuracies, into "
                             f"<run directory>/{TENSORBOARD_DIR}/ (needs pip install -e "
                             f"'.[tensorboard]' in a checkout; default none)")
    add_progress(output)
    add_verbose(output)
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """A TrainConfig from ``--config`` (or the defaults) with the given options applied."""
    if args.config is not None:
        path = Path(args.config)
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {path}")
        try:
            base = TrainConfig.from_json(path.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} is not valid JSON: {error}") from None
    else:
        base = TrainConfig()

    def given(**names: str) -> dict:
        return {field_name: getattr(args, arg_name) for field_name, arg_name in names.items()
                if getattr(args, arg_name) is not None}

    data = dataclasses.replace(base.data, **given(
        dataset="dataset", data_dir="data_dir", seed="data_seed", timesteps="timesteps",
        height="height", width="width"))
    if args.data_option:
        data = dataclasses.replace(data, options={**data.options, **dict(args.data_option)})
    model = dataclasses.replace(base.model, **given(
        fusion_layer="fusion_layer", layers="layers", hidden="hidden", kernel="kernel",
        readout="readout", match_params="match_params", fusion_op="fusion_op"))
    changes = given(epochs="epochs", batch_size="batch_size", lr="lr",
                    weight_decay="weight_decay", grad_clip="grad_clip", seed="seed",
                    device="device", compile="compile", precision="precision",
                    augment="augment",
                    augment_snr="augment_snr", augment_fraction="augment_fraction",
                    modality_dropout="modality_dropout",
                    eval_batch_size="eval_batch_size", out_dir="out_dir",
                    stop_at_plateau="stop_at_plateau", plateau_patience="plateau_patience",
                    plateau_gain="plateau_gain")
    if args.snrs is not None:
        changes["noise_snrs"] = tuple(snr for snr in args.snrs if not math.isinf(snr)
                                      or snr < 0)
    return dataclasses.replace(base, model=model, data=data, **changes)


def run(config: TrainConfig, **options: Any) -> TrainResult:
    """:func:`repsim.train.run`, imported at the first call: parsing needs no torch."""
    from repsim.train.loop import run as train

    return train(config, **options)


def summary_line(result: TrainResult) -> str:
    """One line: what was trained, how well, and where it was written."""
    metrics = result.metrics
    val = "none" if metrics.val_accuracy is None else f"{100 * metrics.val_accuracy:.1f}%"
    operator = metrics.config.get("model", {}).get("fusion_op", DEFAULT_FUSION_OP)  # old: concat
    layers = f"{metrics.layers} layer{'s' if metrics.layers != 1 else ''}"
    where = (f"late fusion (k={metrics.fusion_layer}, after {layers})"
             if fusion_role(metrics.fusion_layer, metrics.layers) == "late"
             else f"fusion layer {metrics.fusion_layer} of {metrics.layers}")
    epochs = (f"{metrics.epochs} epochs" if metrics.stopped_epoch is None else
              f"{metrics.stopped_epoch} of {metrics.epochs} epochs (at its plateau; kept "
              f"epoch {metrics.best_epoch})")
    spent = ", ".join(f"{stage} {seconds:.0f} s" for stage, seconds in result.seconds.items()
                      if stage != "training")
    return (f"trained {metrics.dataset} {where} by {operator} ({metrics.parameters:,} "
            f"parameters) for {epochs} in {metrics.train_seconds:.0f} s"
            + (f" ({spent})" if spent else "") + f": clean "
            f"test accuracy {100 * metrics.clean_accuracy:.1f}% (val {val}); wrote "
            f"{result.run_dir}/ ({', '.join(RUN_FILES)})")


def _epoch_logger(name: str, config: TrainConfig) -> TensorBoardLogger | None:
    """The ``on_epoch`` logger ``--logger`` names (None for none), made before any training:
    a missing package is a user error."""
    if name == "none":
        return None
    from repsim.train.tensorboard import TensorBoardLogger

    try:
        return TensorBoardLogger(config)
    except ImportError as error:
        raise ValueError(str(error)) from None


@user_errors_exit_2
def main(argv: list[str] | None = None) -> int:
    """``python -m repsim.train``: parse, :func:`run`, print the summary line."""
    args = build_parser().parse_args(argv)
    from repsim.train.loop import TrainingStopped

    setup_logging(args.verbose)
    keep_freed_memory()
    if args.threads is not None:
        limit_threads(args.threads)
    config = config_from_args(args)
    logger = _epoch_logger(args.logger, config)
    # SIGTERM (a cluster's preemption) only sets a flag; the loop stops before its next step.
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    try:
        result = run(config, resume=args.resume, overwrite=args.overwrite, on_epoch=logger,
                     progress=show_progress(args.progress), should_stop=stop.is_set)
        if logger is not None:
            logger.finish(result.metrics)
    except TrainingStopped as stopped:
        print(f"stopped by SIGTERM: {stopped}; rerun the same command with --resume auto to "
              f"continue", file=sys.stderr)
        return STOPPED_STATUS
    finally:
        signal.signal(signal.SIGTERM, previous)
        if logger is not None:
            logger.close()
    events = f"; TensorBoard events in {logger.log_dir}/" if logger is not None else ""
    print(summary_line(result) + events)
    return 0
