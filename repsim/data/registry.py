"""The one place that maps dataset names to builders: repsim's own, plugins, ``MODULE:FUNCTION``.

Train, extract and the study runner call [build_dataset][repsim.data.registry.build_dataset]
and never import a dataset module. A name is resolved, in this order, as

- ``MODULE:FUNCTION`` (any name with a colon): that function of that importable module
  (loaded by [repsim.loader.load_function][]);
- one of repsim's own datasets (``synthetic``, ``avmnist``, ``folder``);
- a plugin: an entry point of the group ``repsim.datasets`` (name -> ``module:function``)
  that an installed package declares. Two packages declaring one name is an error that names
  both; use ``MODULE:FUNCTION`` to pick one.

Builders are imported lazily: naming ``synthetic`` never imports the MNIST/FSDD code, and
listing the names imports no plugin. A builder's module may define ``check_options(**options)``,
a cheap check of option values that [DataConfig][repsim.data.config.DataConfig] runs when it
is made. The builder contract is documented in the documentation's "Train on your own data"
(``docs/datasets.md``).
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib.metadata
import inspect
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from repsim.loader import load_function

if TYPE_CHECKING:
    from repsim.data.base import AVDataset


ENTRY_POINT_GROUP = "repsim.datasets"
BUILTIN_SOURCE = "repsim"
_BUILTINS = {
    "synthetic": "repsim.data.synthetic:build",
    "avmnist": "repsim.data.avmnist:build",
    "folder": "repsim.data.folder:build",
}
# True inside plugins_unchecked(): configs naming a plugin do not import it
_PLUGINS_UNCHECKED: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "repsim_plugins_unchecked", default=False)


@dataclass(frozen=True)
class DatasetEntry:
    """Where a dataset name leads.

    Parameters
    ----------
    name
        The dataset's name.
    target
        Its builder, ``"module:function"``.
    source
        Who declares it: ``"repsim"``, or the distribution that declares the entry point.
    """

    name: str
    target: str
    source: str


def _plugin_entries() -> list[DatasetEntry]:
    """Every entry point of :data:`ENTRY_POINT_GROUP` (nothing is imported)."""
    entries = []
    for point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        distribution = getattr(point, "dist", None)
        source = distribution.name if distribution is not None else "an unknown package"
        entries.append(DatasetEntry(point.name, point.value, source))
    return entries


def dataset_entries() -> list[DatasetEntry]:
    """repsim's datasets, then every plugin entry point, sorted by name.

    A plugin that reuses one of repsim's names is listed but never chosen: repsim's own dataset
    wins.

    Returns
    -------
    list of DatasetEntry
    """
    own = [DatasetEntry(name, target, BUILTIN_SOURCE) for name, target in _BUILTINS.items()]
    plugins = {(entry.name, entry.target, entry.source): entry for entry in _plugin_entries()}
    return sorted([*own, *plugins.values()], key=lambda entry: (entry.name, entry.source))


def dataset_names() -> list[str]:
    """The names [build_dataset][repsim.data.registry.build_dataset] accepts (besides any
    ``MODULE:FUNCTION``).

    Returns
    -------
    list of str
    """
    return sorted({entry.name for entry in dataset_entries()})


def _target(name: str) -> str:
    """The ``module:function`` that ``name`` stands for, or ValueError (unknown or ambiguous)."""
    if ":" in name:
        return name
    if name in _BUILTINS:
        return _BUILTINS[name]
    declared = {entry.target: entry for entry in _plugin_entries() if entry.name == name}
    if len(declared) > 1:
        who = "; ".join(f"{entry.source} ({entry.target})" for entry in declared.values())
        raise ValueError(f"dataset {name!r} is registered by more than one package: {who}; "
                         f"name the one you mean as MODULE:FUNCTION")
    if not declared:
        raise ValueError(f"unknown dataset {name!r}; choose one of: "
                         f"{', '.join(dataset_names())} (or give MODULE:FUNCTION)")
    return next(iter(declared))


def _load(name: str, target: str) -> Callable[..., AVDataset]:
    """Import the builder ``target`` names; ValueError with the import error if that fails."""
    try:
        return load_function(target)
    except ValueError as error:
        raise ValueError(f"dataset {name!r}: {error}") from error


def dataset_builder(name: str, options: Iterable[str] = ()) -> Callable[..., AVDataset]:
    """The builder function of a dataset, checked against option names before any building.

    Parameters
    ----------
    name
        A dataset name or ``MODULE:FUNCTION``.
    options
        Option names the builder must accept as keyword arguments (a builder with ``**options``
        accepts any).

    Returns
    -------
    Callable
        The builder.

    Raises
    ------
    ValueError
        If ``name`` is unknown, ambiguous (two plugins) or fails to import, or an option name is
        not one of the builder's keyword arguments.
    """
    builder = _load(name, _target(name))
    parameters = inspect.signature(builder).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return builder
    unknown = sorted(set(options) - set(parameters))
    if unknown:
        raise ValueError(f"dataset {name!r} has no option(s) {', '.join(unknown)}; its options "
                         f"are: {', '.join(parameters)}")
    return builder


@contextlib.contextmanager
def plugins_unchecked() -> Iterator[None]:
    """A block within which [check_dataset_options][repsim.data.registry.check_dataset_options]
    imports no plugin (an entry point or ``MODULE:FUNCTION``): its name is resolved, its options
    are not checked.

    For commands that only read records (``python -m repsim.study FILE --status``): importing a
    plugin runs its code, which they do not need.

    Yields
    ------
    None
    """
    token = _PLUGINS_UNCHECKED.set(True)
    try:
        yield
    finally:
        _PLUGINS_UNCHECKED.reset(token)


def check_dataset_options(name: str, options: dict) -> None:
    """Check a dataset's name and options without building or reading anything, so that a config
    fails when it is made.

    Inside [plugins_unchecked][repsim.data.registry.plugins_unchecked], a plugin's name is only
    resolved.

    Parameters
    ----------
    name
        A dataset name or ``MODULE:FUNCTION``.
    options
        The builder's keyword arguments.

    Raises
    ------
    ValueError
        For an unknown ``name`` or option name, or an option value the dataset's
        ``check_options`` refuses.
    """
    if _PLUGINS_UNCHECKED.get() and name not in _BUILTINS:
        _target(name)
        return
    builder = dataset_builder(name, options)
    check = getattr(inspect.getmodule(builder), "check_options", None)
    if check is not None:
        check(**options)


def build_dataset(name: str, **options: Any) -> AVDataset:
    """Build a dataset by name, and check what the builder returned.

    Parameters
    ----------
    name
        A dataset name or ``MODULE:FUNCTION``.
    **options
        The builder's keyword arguments (``data_dir``, ``seed``, sizes...).

    Returns
    -------
    AVDataset
        The built dataset, checked by [check_dataset][repsim.data.base.check_dataset].

    Raises
    ------
    ValueError
        Naming the dataset and the problem, when the builder returns anything but a usable
        [AVDataset][repsim.data.base.AVDataset], or when a plugin's builder raises (its first
        line); repsim's own builders' errors pass as they are.

    Examples
    --------
    ```python
    from repsim.data import build_dataset

    data = build_dataset("synthetic", seed=0, timesteps=4, height=8, width=8)
    data.train.audio.shape      # (pairs, T, 1, H, W)
    ```
    """
    from repsim.data.base import AVDataset, check_dataset  # torch: loaded when one is built

    builder = dataset_builder(name, options)
    try:
        dataset = builder(**options)
    except Exception as error:
        if name in _BUILTINS:
            raise
        first = str(error).splitlines()[0] if str(error) else ""
        what = first if isinstance(error, ValueError) else \
            f"its builder raised {type(error).__name__}: {first}"
        raise ValueError(f"dataset {name!r}: {what}") from error
    if not isinstance(dataset, AVDataset):
        raise ValueError(f"dataset {name!r}: its builder returned {type(dataset).__name__}, "
                         f"not an AVDataset")
    try:
        check_dataset(dataset)
    except ValueError as error:
        raise ValueError(f"dataset {name!r}: {error}") from None
    return dataset
