"""What defines a training run: [TrainConfig][repsim.train.config.TrainConfig] (model, data,
optimisation, train-time noise, test grid), and which of its fields a resumed run may
change."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from repsim.conditions import NOISE_KINDS, TEST_SNRS
from repsim.config import Config, check_int, check_positive_int
from repsim.data.config import DataConfig
from repsim.device import EVAL_BATCH_SIZE, PRECISIONS, check_device_name
from repsim.models.config import DEFAULT_FUSION_OP, ModelConfig, operator_tag
from repsim.rundir import default_run_dir

AUGMENT_CHOICES = ("none", *NOISE_KINDS)
# Fields that may differ between a checkpoint and the run that resumes it: they change where
# and how fast the run goes, or what is evaluated at the end, never the trained weights.
RESUMABLE_DIFFERENCES = ("device", "compile", "out_dir", "eval_batch_size", "noise_snrs",
                         "stack_seeds")
# Fields training sets from the data rather than from the user (the readout's size is the
# dataset's class count); the data themselves are compared by their fingerprint.
DATA_DERIVED_FIELDS = ("model.classes",)
# Fields added after runs were saved without them, and the value their absence means.
ADDED_FIELDS = {"model.fusion_op": DEFAULT_FUSION_OP, "stop_at_plateau": False,
                "plateau_patience": 2, "plateau_gain": 0.01, "stack_seeds": False}


@dataclass
class TrainConfig(Config):
    """Everything that defines a training run; round-trips through JSON.

    The learning rate warms up linearly over the first ``warmup_epochs`` and then follows a
    cosine decay to zero at the end of the last epoch (at ``epochs``, also for a run that
    stops earlier; [lr_at][repsim.train.loop.lr_at]). The config is checked when it is made.
    A resumed run may differ from its checkpoint's config only in ``device``, ``compile``,
    ``out_dir``, ``eval_batch_size``, ``noise_snrs`` and ``stack_seeds``
    (``RESUMABLE_DIFFERENCES``), which never change the trained weights.

    Parameters
    ----------
    model
        The architecture ([ModelConfig][repsim.models.config.ModelConfig], or its dict);
        ``ModelConfig(layers=2, hidden=16)`` by default. Training sets its ``classes`` to the
        dataset's class count.
    data
        The dataset ([DataConfig][repsim.data.config.DataConfig], or its dict); the
        synthetic dataset by default.
    epochs
        Passes over the train split (the most, with ``stop_at_plateau``).
    batch_size
        Training pairs per optimiser step.
    lr
        The peak learning rate of AdamW (after the warm-up); positive.
    weight_decay
        AdamW's weight decay.
    warmup_epochs
        Epochs (a fraction allowed) of linear warm-up of the learning rate.
    grad_clip
        The largest gradient norm of a step (``clip_grad_norm_``); 0 does not clip.
    seed
        The training seed: initialisation, the order of the examples, train-time noise and
        the evaluation's noise (separate from the dataset's own seed).
    device
        ``"auto"`` (CUDA when available, else the CPU), ``"cpu"``, ``"cuda"`` or
        ``"cuda:N"``.
    compile
        Train through ``torch.compile``.
    precision
        ``"auto"`` (bf16 autocast on CUDA, float32 on the CPU), ``"float32"`` or ``"bf16"``.
    augment
        ``"none"``, or white noise added during training to the ``"audio"``, ``"visual"`` or
        ``"both"`` modalities (independently) of a random ``augment_fraction`` of samples,
        each at an SNR drawn uniformly from ``augment_snr``.
    augment_snr
        ``(low, high)`` in dB, finite, ``low <= high``.
    augment_fraction
        The fraction of training samples ``augment`` adds noise to, in [0, 1].
    modality_dropout
        The fraction, in [0, 1], of training samples of which one modality (audio or visual,
        equally likely) is zeroed, so that neither stream can be ignored.
    noise_snrs
        The finite SNRs in dB of the final test grid (clean is always evaluated); by default
        ``TEST_SNRS``: 20, 10, 5, 0, -5 and -10.
    eval_batch_size
        Pairs per forward of the validation and the test grid.
    out_dir
        The run directory; None means ``runs/<dataset>-f<k>-s<seed>``
        (``runs/<dataset>-<operator>-f<k>-s<seed>`` for a fusion operator other than
        ``concat``; ``repsim.rundir.run_name``).
    stop_at_plateau
        Stop training once ``plateau_patience`` epochs in a row have not raised the best
        validation accuracy of the epochs before them by more than ``plateau_gain`` (the
        report's plateau check, applied while training), and keep the weights of the epoch
        with the highest validation accuracy (the first of equals): the test grid, the
        checkpoint and the extraction use that epoch's model, and ``metrics.json`` records
        ``stopped_epoch`` and ``best_epoch``. Off by default, so that runs reproduce.
    plateau_patience
        Epochs in a row without a gain before ``stop_at_plateau`` stops.
    plateau_gain
        The gain in best validation accuracy (a fraction, in [0, 1)) that the last
        ``plateau_patience`` epochs must exceed for training to go on.
    stack_seeds
        For GPUs: lets a study train the seeds of a cell as one stacked network
        (``repsim.train.stacked``): each seed's run is the run it would be alone, to float32
        tolerance; it changes how fast the runs go, not what they train.

    Raises
    ------
    ValueError
        For ``epochs``, ``batch_size``, ``eval_batch_size`` or ``plateau_patience`` not a
        positive integer; ``stop_at_plateau`` or ``stack_seeds`` not a boolean; ``lr``,
        ``weight_decay``, ``warmup_epochs`` or ``grad_clip`` not a finite number >= 0, or
        ``lr`` 0; ``plateau_gain`` outside [0, 1); a ``seed`` that is not an integer; an
        unknown ``device``, ``precision`` or ``augment``; an ``augment_snr`` that is not two
        finite values low <= high; a fraction outside [0, 1]; a ``noise_snrs`` value that
        is not finite; and as [ModelConfig][repsim.models.config.ModelConfig] and
        [DataConfig][repsim.data.config.DataConfig] for a ``model`` or ``data`` dict.

    Examples
    --------
    >>> from repsim.train import TrainConfig
    >>> config = TrainConfig(epochs=2, noise_snrs=(0,))
    >>> config.noise_snrs, TrainConfig.from_json(config.to_json()) == config
    ((0.0,), True)
    >>> config.run_dir.as_posix()
    'runs/synthetic-f1-s0'
    """

    model: ModelConfig = field(default_factory=lambda: ModelConfig(layers=2, hidden=16))
    data: DataConfig = field(default_factory=DataConfig)
    epochs: int = 6
    batch_size: int = 32
    lr: float = 1e-2
    weight_decay: float = 1e-4
    warmup_epochs: float = 0.5
    grad_clip: float = 1.0
    seed: int = 0
    device: str = "auto"
    compile: bool = False
    precision: str = "auto"
    augment: str = "none"
    augment_snr: tuple[float, float] = (-10.0, 20.0)
    augment_fraction: float = 0.5
    modality_dropout: float = 0.0
    noise_snrs: tuple[float, ...] = TEST_SNRS
    eval_batch_size: int = EVAL_BATCH_SIZE
    out_dir: str | None = None
    stop_at_plateau: bool = False
    plateau_patience: int = 2
    plateau_gain: float = 0.01
    stack_seeds: bool = False

    KIND = "train"

    def __post_init__(self) -> None:
        if isinstance(self.model, dict):
            self.model = ModelConfig.from_dict(self.model)
        if isinstance(self.data, dict):
            self.data = DataConfig.from_dict(self.data)
        # Of any length here: the check below refuses all but two values, in one line.
        self.augment_snr = tuple(float(x) for x in self.augment_snr)  # type: ignore[assignment]
        self.noise_snrs = tuple(float(x) for x in self.noise_snrs)
        for name in ("epochs", "batch_size", "eval_batch_size", "plateau_patience"):
            check_positive_int(name, getattr(self, name))
        for name in ("stop_at_plateau", "stack_seeds"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if (not isinstance(self.plateau_gain, int | float) or isinstance(self.plateau_gain, bool)
                or not 0 <= self.plateau_gain < 1):
            raise ValueError(f"plateau_gain must be a number in [0, 1) (of accuracy), got "
                             f"{self.plateau_gain!r}")
        for name in ("lr", "weight_decay", "warmup_epochs", "grad_clip"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.lr == 0:
            raise ValueError("lr must be positive, got 0")
        check_int("seed", self.seed)
        check_device_name(self.device)
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.augment not in AUGMENT_CHOICES:
            raise ValueError(f"augment must be one of {AUGMENT_CHOICES}, got {self.augment!r}")
        if (len(self.augment_snr) != 2 or not all(map(math.isfinite, self.augment_snr))
                or self.augment_snr[0] > self.augment_snr[1]):
            raise ValueError(f"augment_snr must be two finite dB values low <= high, "
                             f"got {self.augment_snr}")
        for name in ("augment_fraction", "modality_dropout"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        for snr in self.noise_snrs:
            if not math.isfinite(snr):
                raise ValueError(f"noise_snrs are the finite SNRs of the test grid (clean is "
                                 f"always evaluated), got {snr}")

    @property
    def run_dir(self) -> Path:
        """Where the run writes its files: ``out_dir``, or by default
        ``repsim.rundir.default_run_dir``'s ``runs/<run name>``."""
        if self.out_dir is not None:
            return Path(self.out_dir)
        return default_run_dir(self.data.dataset, self.model.fusion_layer, self.seed,
                               operator_tag(self.model.fusion_op))


def flatten(values: dict, prefix: str = "", *, whole: tuple[str, ...] = ("options",)) -> dict:
    """A nested config dict made flat.

    Parameters
    ----------
    values
        The nested dict (``TrainConfig.to_dict()``).
    prefix
        Put before every key.
    whole
        Keys whose dicts stay one value (the dataset's builder options, by default).

    Returns
    -------
    dict
        ``{"model.hidden": 16, ...}``.
    """
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict) and key not in whole:
            flat.update(flatten(value, f"{prefix}{key}.", whole=whole))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def config_differences(saved: dict, current: dict, saved_as: str = "checkpoint") -> list[str]:
    """The fields that differ between two configs and would change the trained weights.

    Fields a resumed run may change (``RESUMABLE_DIFFERENCES``) and those training sets from
    the data (``DATA_DERIVED_FIELDS``) are left out; a field absent from a config saved
    before it existed counts as its default then (``ADDED_FIELDS``).

    Parameters
    ----------
    saved, current
        The two configs as dicts (``to_dict()``).
    saved_as
        What messages call ``saved``.

    Returns
    -------
    list of str
        ``"field: <saved> (<saved_as>) vs <current> (now)"`` per difference, by field name.
    """
    saved_flat, current_flat = flatten(saved), flatten(current)
    differences = []
    for key in sorted(set(saved_flat) | set(current_flat)):
        if key in RESUMABLE_DIFFERENCES or key in DATA_DERIVED_FIELDS:
            continue
        absent = ADDED_FIELDS.get(key, "<absent>")
        before, after = saved_flat.get(key, absent), current_flat.get(key, absent)
        if before != after:
            differences.append(f"{key}: {before!r} ({saved_as}) vs {after!r} (now)")
    return differences
