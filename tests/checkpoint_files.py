"""Hand edits of a saved checkpoint that keep its format marker: what a user might do to one."""

from pathlib import Path

import torch


def _drop_rng_state(ckpt: dict) -> None:
    del ckpt["rng_state"]


def _drop_noise_rng(ckpt: dict) -> None:
    del ckpt["rng_state"]["noise"]


def _widen_model(ckpt: dict) -> None:
    ckpt["config"]["model"]["hidden"] += 1


def _config_string(ckpt: dict) -> None:
    ckpt["config"] = "hello"


def _nan_weight(ckpt: dict) -> None:
    first = next(iter(ckpt["model_state"].values()))
    first.view(-1)[0] = float("nan")


def _inf_weight(ckpt: dict) -> None:
    last = list(ckpt["model_state"].values())[-1]
    last.view(-1)[-1] = float("-inf")


# name: (edit, a part of the one-line ValueError it must cause)
HAND_EDITS = {
    "rng_state removed": (_drop_rng_state, "missing rng_state"),
    "rng_state noise removed": (_drop_noise_rng, "rng_state lacks 'noise'"),
    "config.model.hidden changed": (_widen_model, "but the model of config.model needs"),
    "config a string": (_config_string, "config must be of type dict, got str"),
    "a NaN weight": (_nan_weight, "holds values that are not finite (NaN or inf)"),
    "an infinite weight": (_inf_weight, "holds values that are not finite (NaN or inf)"),
}


def hand_edit(source: Path, target: Path, name: str) -> str:
    """Write ``source`` edited as ``HAND_EDITS[name]`` says to ``target``; returns the part of
    the error message that loading it must give."""
    edit, message = HAND_EDITS[name]
    ckpt = torch.load(source, weights_only=True)
    edit(ckpt)
    torch.save(ckpt, target)
    return message
