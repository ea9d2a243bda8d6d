"""The one place that maps dataset names to builders.

Train, extract and the study runner call :func:`build_dataset` and never import a dataset
module, so a new dataset is one entry here. Builders are imported lazily: naming ``synthetic`` never
imports the MNIST/FSDD code. A builder's module may define ``check_options(**options)``, a
cheap check of option values that :class:`repsim.data.DataConfig` runs when it is made.
"""

from __future__ import annotations

import importlib
import inspect
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from repsim.data.base import AVDataset


_BUILDERS = {
    "synthetic": "repsim.data.synthetic:build",
    "avmnist": "repsim.data.avmnist:build",
}


def dataset_names() -> list[str]:
    """Names accepted by :func:`build_dataset`."""
    return sorted(_BUILDERS)


def dataset_builder(name: str, options=()):
    """The builder function of dataset ``name``; ValueError if ``name`` or any of the option
    names is unknown, listing the choices (a cheap check, done before any building)."""
    if name not in _BUILDERS:
        raise ValueError(f"unknown dataset {name!r}; choose one of: {', '.join(dataset_names())}")
    module_name, function_name = _BUILDERS[name].split(":")
    builder = getattr(importlib.import_module(module_name), function_name)
    accepted = inspect.signature(builder).parameters
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(f"dataset {name!r} has no option(s) {', '.join(unknown)}; its options "
                         f"are: {', '.join(accepted)}")
    return builder


def check_dataset_options(name: str, options: dict) -> None:
    """ValueError for an unknown ``name``, option name, or an option value the dataset's
    ``check_options`` refuses; nothing is built or read, so a config fails when it is made."""
    builder = dataset_builder(name, options)
    check = getattr(inspect.getmodule(builder), "check_options", None)
    if check is not None:
        check(**options)


def build_dataset(name: str, **options) -> AVDataset:
    """Build dataset ``name``; ``options`` go to its builder (``data_dir``, ``seed``, sizes...)."""
    return dataset_builder(name, options)(**options)
