"""Checkpoints: plain dicts of tensors and JSON-like values, never pickled code.

A checkpoint is written with ``torch.save`` to a temporary name and renamed when complete,
and read with ``torch.load(..., weights_only=True)``, which refuses any pickle that would
import or call something outside tensors and plain containers.
"""

from __future__ import annotations

import io
import os
import platform
import re
import zipfile
from pathlib import Path

import torch

from repsim.data.base import AVDataset
from repsim.data.config import DataConfig
from repsim.data.fingerprint import data_difference
from repsim.models.fusion import FusionConvLSTM, ModelConfig
from repsim.provenance import atomic_path, library_versions

FORMAT = "repsim-checkpoint"
FORMAT_VERSION = 1
ZIP_MAGIC = b"PK\x03\x04"  # how the zip archive that torch.save writes begins
# Every key that extraction and ``--resume`` read.
REQUIRED_KEYS = ("format", "format_version", "config", "model_state", "optimizer_state",
                 "epoch", "metrics", "versions", "data_fingerprint", "history", "rng_state",
                 "complete")
# The random states train/loop.py's _restore_rng_state reads: tensors, and numpy's legacy
# state as a dict of these fields.
RNG_KEYS = ("torch", "shuffle", "noise", "numpy")
NUMPY_RNG_TYPES = {"kind": str, "keys": torch.Tensor, "pos": int, "has_gauss": int,
                   "cached": float}


def build_payload(*, config: dict, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                  epoch: int, metrics: dict, data_fingerprint: str, history: list[dict],
                  rng_state: dict) -> dict:
    """The checkpoint dict of a run after ``epoch`` epochs (CPU tensors and plain values).

    The torch thread count and the CPU kind are recorded because CPU results depend on them
    (older checkpoints lack both: unknown).

    Parameters
    ----------
    config
        The run's full configuration, as a dict.
    model
        The model, whose state dict is saved.
    optimizer
        The optimizer, whose state is saved for resuming.
    epoch
        The epochs done.
    metrics
        The final metrics; empty until the run has finished (``complete`` says which).
    data_fingerprint
        The dataset's fingerprint, checked when the dataset is rebuilt.
    history
        The per-epoch records so far.
    rng_state
        The random generators' states, for an exact resume.

    Returns
    -------
    dict
        With every key of ``REQUIRED_KEYS``.
    """
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION, "config": config,
        "model_state": {key: value.detach().cpu() for key, value in model.state_dict().items()},
        "optimizer_state": optimizer.state_dict(), "epoch": epoch, "metrics": metrics,
        "versions": library_versions(), "data_fingerprint": data_fingerprint,
        "history": history, "rng_state": rng_state, "complete": bool(metrics),
        "torch_threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
    }


def save_checkpoint(path: str | os.PathLike, payload: dict) -> Path:
    """Write a checkpoint dict atomically: to a temporary name, renamed when complete.

    Parameters
    ----------
    path
        Where.
    payload
        A checkpoint dict (see [build_payload][repsim.checkpoint.build_payload]).

    Returns
    -------
    pathlib.Path
        The path written.

    Raises
    ------
    ValueError
        For a payload that lacks a required key, has another format, or holds objects that
        ``torch.load(weights_only=True)`` would refuse.
    """
    missing = [key for key in REQUIRED_KEYS if key not in payload]
    if missing:
        raise ValueError(f"checkpoint payload lacks key(s): {', '.join(missing)}")
    if payload["format"] != FORMAT:
        raise ValueError(f"checkpoint payload format must be {FORMAT!r}, "
                         f"got {payload['format']!r}")
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    try:  # never write a file that the safe loader would refuse
        torch.load(io.BytesIO(buffer.getvalue()), map_location="cpu", weights_only=True)
    except Exception as error:
        raise ValueError(f"checkpoint payload holds objects that torch.load(weights_only=True) "
                         f"refuses: {_reason(error)}") from None
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getvalue())
    return path


def _refused_global(error: Exception) -> str | None:
    """The global (``module.name``) a weights-only load refused, if torch's error names one."""
    found = re.search(r"\bGLOBAL ([\w.]+)", str(error))
    return found.group(1).rstrip(".") if found else None


# Lines of torch's weights-only error that are advice, not the reason (one of them suggests
# weights_only=False, which would run the file's code).
_ADVICE = ("Weights only load failed", "Please file an issue", "Check the documentation")


def _reason(error: Exception) -> str:
    """Why a torch.load failed, in one line: the refused global, or the first line of torch's
    error that is not its advice."""
    refused = _refused_global(error)
    if refused:
        return f"unsupported global {refused}"
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    reasons = [line for line in lines if not line.startswith(_ADVICE)]
    return (reasons or lines or [type(error).__name__])[0][:200]


def check_checkpoint_path(path: str | os.PathLike) -> None:
    """Refuse a checkpoint path that is not a file, before anything is loaded.

    Parameters
    ----------
    path
        The checkpoint's path.

    Raises
    ------
    FileNotFoundError
        Naming a missing checkpoint.
    IsADirectoryError
        For a directory.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.is_dir():
        raise IsADirectoryError(f"checkpoint path is a directory, not a file: {path}")


def _truncated(path: Path) -> bool:
    """Whether ``path`` begins as a zip archive (as ``torch.save`` writes) but lacks the end
    record that a complete one has: a copy cut short."""
    with open(path, "rb") as handle:
        begins_as_zip = handle.read(4) == ZIP_MAGIC
    return begins_as_zip and not zipfile.is_zipfile(path)


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read a repsim checkpoint onto the CPU without running any pickled code.

    Parameters
    ----------
    path
        The checkpoint (``ckpt.pt``).

    Returns
    -------
    dict
        The checkpoint: format version, config, model state, metrics, versions, fingerprint.

    Raises
    ------
    FileNotFoundError
        For a missing file.
    ValueError
        ("... is not a repsim checkpoint ...") for anything that is not one, including pickles
        that would run code, a newer format version and a copy cut short.
    """
    path = Path(path)
    check_checkpoint_path(path)
    with open(path, "rb") as handle:  # a file that cannot be opened is an OSError
        try:
            ckpt = torch.load(handle, map_location="cpu", weights_only=True)
        except Exception as error:  # any parse failure or refused global means "not ours"
            refused = _refused_global(error)
            if refused:
                raise ValueError(f"{path} is not a repsim checkpoint: its pickle calls or "
                                 f"imports {refused}, which the safe loader refuses; loading "
                                 f"it unsafely (weights_only=False) would run code from the "
                                 f"file") from None
            if _truncated(path):
                raise ValueError(f"{path} is not a repsim checkpoint, or one cut short: its "
                                 f"zip archive ends after {path.stat().st_size:,} bytes without "
                                 f"the directory a complete one ends with (copied or written "
                                 f"only in part?); use a complete copy") from None
            raise ValueError(f"{path} is not a repsim checkpoint (it cannot be read safely: "
                             f"{_reason(error)})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ValueError(f"{path} is not a repsim checkpoint (no format={FORMAT!r} marker)")
    version = ckpt.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ValueError(f"{path} is a repsim checkpoint of format version {version!r}; this "
                         f"repsim reads versions up to {FORMAT_VERSION}")
    missing = [key for key in REQUIRED_KEYS if key not in ckpt]
    if missing:
        raise ValueError(f"{path} is not a repsim checkpoint (missing {', '.join(missing)})")
    problem = _schema_problem(ckpt)
    if problem:
        raise ValueError(f"{path} is a damaged repsim checkpoint: {' '.join(problem.split())}")
    return ckpt


def _schema_problem(ckpt: dict) -> str | None:
    """The first value that resume or extraction could not use, or None.

    Checked on load so that a hand-edited file fails here, naming the field, rather than as
    a KeyError, TypeError or size mismatch deep inside training or extraction.
    """
    types = {"config": dict, "model_state": dict, "optimizer_state": dict, "epoch": int,
             "history": list, "rng_state": dict, "complete": bool, "metrics": dict,
             "data_fingerprint": str}
    optional = {"torch_threads": int, "cpu": str}  # absent from older checkpoints
    types.update({key: kind for key, kind in optional.items() if key in ckpt})
    for key, kind in types.items():
        if not isinstance(ckpt[key], kind) or (kind is int and isinstance(ckpt[key], bool)):
            return f"{key} must be of type {kind.__name__}, got {type(ckpt[key]).__name__}"
    if ckpt["epoch"] < 0:
        return f"epoch must be non-negative, got {ckpt['epoch']}"
    problem = _rng_problem(ckpt["rng_state"])
    if problem:
        return problem
    config = ckpt["config"]
    for part, config_class in (("model", ModelConfig), ("data", DataConfig)):
        try:
            config_class.from_dict(config.get(part))
        except (ValueError, TypeError) as error:
            return f"config.{part} is not a valid {part} configuration ({error})"
    return _state_problem(ckpt["model_state"], ModelConfig.from_dict(config["model"]))


def _rng_problem(state: dict) -> str | None:
    """What in ``rng_state`` train/loop.py's _restore_rng_state could not restore, or None."""
    for key in RNG_KEYS:
        if key not in state:
            return f"rng_state lacks {key!r}"
        kind: type = dict if key == "numpy" else torch.Tensor
        if not isinstance(state[key], kind):
            return (f"rng_state[{key!r}] must be of type {kind.__name__}, "
                    f"got {type(state[key]).__name__}")
    for key, kind in NUMPY_RNG_TYPES.items():
        if not isinstance(state["numpy"].get(key), kind):
            return (f"rng_state['numpy'][{key!r}] must be of type {kind.__name__}, "
                    f"got {type(state['numpy'].get(key)).__name__}")
    return None


def _state_problem(state: dict, model: ModelConfig) -> str | None:
    """The first key of ``state`` that a model built from ``model`` lacks, has in another
    shape or with NaN or infinite values, or has and ``state`` lacks; None when the weights
    fit the configuration."""
    with torch.device("meta"):  # shapes only: nothing is allocated or initialised
        expected = {key: tuple(value.shape)
                    for key, value in FusionConvLSTM(model).state_dict().items()}
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            return (f"model_state[{key!r}] must be of type Tensor, "
                    f"got {type(value).__name__}")
        if key not in expected:
            return f"model_state has {key!r}, which the model of config.model lacks"
        if tuple(value.shape) != expected[key]:
            return (f"model_state[{key!r}] has shape {tuple(value.shape)} but the model of "
                    f"config.model needs {expected[key]}")
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            return (f"model_state[{key!r}] holds values that are not finite (NaN or inf): "
                    f"the weights cannot be recorded or trained on")
    absent = [key for key in expected if key not in state]
    if absent:
        return f"model_state lacks {absent[0]!r}, which the model of config.model needs"
    return None


def model_from_checkpoint(ckpt: dict) -> FusionConvLSTM:
    """The checkpoint's model on the CPU, weights loaded, in eval mode.

    Parameters
    ----------
    ckpt
        A loaded checkpoint ([load_checkpoint][repsim.checkpoint.load_checkpoint]).

    Returns
    -------
    FusionConvLSTM
    """
    model = FusionConvLSTM(ModelConfig.from_dict(ckpt["config"]["model"]))
    model.load_state_dict(ckpt["model_state"])
    return model.eval()


def dataset_from_checkpoint(ckpt: dict, data_dir: str | os.PathLike | None = None) -> AVDataset:
    """Rebuild the dataset the checkpoint was trained on.

    Parameters
    ----------
    ckpt
        A loaded checkpoint.
    data_dir
        Where the dataset's files are now; ``None``: where the checkpoint's config says.

    Returns
    -------
    AVDataset

    Raises
    ------
    ValueError
        If the rebuilt data no longer match the recorded fingerprint (what differs is named,
        see ``repsim.data.fingerprint.data_difference``).
    """
    data = DataConfig.from_dict(ckpt["config"]["data"])
    if data_dir is not None:
        data.data_dir = str(data_dir)
    dataset = data.build()
    difference = data_difference(ckpt["data_fingerprint"], dataset)
    if difference is not None:
        raise ValueError(f"the rebuilt {data.dataset!r} dataset differs from the one the "
                         f"checkpoint was trained on: {difference}")
    return dataset
