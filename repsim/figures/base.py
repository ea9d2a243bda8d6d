"""What every figure shares: the models it reads, where it writes, and its command line.

A figure module keeps what it computes and draws: its table function(s), ``plot``, ``run``
(the Python entry point) and ``main``. ``run`` checks its options and :func:`check_out_dir`
before any work, reads its models (:func:`models_to_compare`, :func:`open_model`, or
:func:`table_per_model` for a table per model) and ends with
:func:`repsim.plotting.save_outputs`. ``main`` builds its parser with :func:`figure_parser`,
adds its own options and hands over to :func:`run_cli`.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from repsim import activations
from repsim.cli import (
    CommandParser,
    add_threads,
    add_version,
    command_prog,
    setup_logging,
    user_errors_exit_2,
)
from repsim.device import limit_threads
from repsim.rundir import RUNS_DIR
from repsim.runs import (
    EarlyLate,
    ModelInput,
    early_and_late,
    find_runs,
    model_input_of_run,
    resolve_model_input,
)

if TYPE_CHECKING:  # pandas and xarray load where they are used: --help needs neither
    import pandas as pd
    import xarray as xr

FIGURES_DIR = "figures"
MODELS_HELP = ("activation files or run directories (default: the early and late runs under "
               "--runs-dir, first seed)")
log = logging.getLogger("repsim")


def model_input_from_config(model: ModelInput, config: dict) -> ModelInput:
    """Fill what ``model`` lacks from a training config (the ``config`` attribute of its file).

    The config holds a ``model`` sub-dict with ``fusion_layer`` and ``layers``, and ``seed``
    at the top level; whatever is absent stays unknown.
    """
    if model.fusion_layer is not None:
        return model
    model_config = config.get("model", {}) if isinstance(config, dict) else {}
    fusion, layers = model_config.get("fusion_layer"), model_config.get("layers")
    seed = config.get("seed") if isinstance(config, dict) else None
    return ModelInput(model.path, fusion if isinstance(fusion, int) else None,
                      layers if isinstance(layers, int) else None,
                      seed if isinstance(seed, int) else None)


def open_model(model: ModelInput) -> tuple[ModelInput, xr.Dataset]:
    """Open ``model``'s activation file (lazily) and fill what is unknown from its config,
    and the model's recorded name."""
    data = activations.open(model.path)
    config = data.attrs.get("config")
    if isinstance(config, str):
        try:
            config = json.loads(config)
        except json.JSONDecodeError:
            config = None
    model = model_input_from_config(model, config or {})
    name = activations.model_name(data)
    if model.name is None and name is not None:
        model = dataclasses.replace(model, name=name)
    return model, data


def models_title(models: Sequence[ModelInput]) -> str:
    """How a title names the models: "early vs late fusion" for repsim's early and late
    fusion runs, else their labels ("my_cnn vs my_transformer")."""
    roles = {model.role for model in models}
    if all(model.is_fusion_run for model in models) and roles == {"early", "late"}:
        return "early vs late fusion"
    return " vs ".join(dict.fromkeys(model.label for model in models))


def default_models(runs_dir: str | os.PathLike = RUNS_DIR, dataset: str | None = None
                   ) -> EarlyLate:
    """The early and late runs with activation files under ``runs_dir`` (by seed)."""
    return early_and_late(find_runs(runs_dir, dataset), need_activations=True)


def models_to_compare(inputs: Sequence[str | os.PathLike] = (),
                      runs_dir: str | os.PathLike = RUNS_DIR,
                      dataset: str | None = None) -> list[ModelInput]:
    """The named activation files / run directories, or else the first-seed early and late
    runs under ``runs_dir``, in that order."""
    if inputs:
        return [resolve_model_input(target) for target in inputs]
    found = default_models(runs_dir, dataset)
    return [model_input_of_run(found.early[0]), model_input_of_run(found.late[0])]


def table_per_model(table: Callable[[ModelInput, xr.Dataset], pd.DataFrame],
                    inputs: Sequence[str | os.PathLike] = (),
                    runs_dir: str | os.PathLike = RUNS_DIR, dataset: str | None = None
                    ) -> tuple[pd.DataFrame, dict[Path, str]]:
    """``table(model, data)`` for each of :func:`models_to_compare`, stacked, and the
    ``{activation file: label}`` that the CSV header names."""
    tables, used = [], {}
    for model, data in distinct_labels([open_model(chosen) for chosen in
                                        models_to_compare(inputs, runs_dir, dataset)]):
        used[model.path] = model.label
        tables.append(table(model, data))
    import pandas as pd

    return pd.concat(tables, ignore_index=True), used


def distinct_labels(opened: Sequence[tuple[ModelInput, xr.Dataset]]
                    ) -> list[tuple[ModelInput, xr.Dataset]]:
    """``opened`` with each model's label unique: models that share a name (two recordings
    both called ``activations``) are named by their files instead."""
    labels = [model.label for model, _ in opened]
    return [(dataclasses.replace(model, fusion_layer=None, name=str(model.path))
             if labels.count(model.label) > 1 else model, data) for model, data in opened]


def check_out_dir(out_dir: str | os.PathLike) -> None:
    """Check, creating nothing, that ``out_dir`` can be written (or made and written), so
    that a figure fails before its work rather than after; ValueError naming it otherwise."""
    out_dir = Path(out_dir)
    existing = out_dir
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"cannot write to output directory {out_dir}: {existing} is not a "
                         "directory")
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".write-test-"):
            pass
    except OSError as error:
        raise ValueError(f"cannot write to output directory {out_dir}: "
                         f"{error.strerror or error}") from None


def figure_parser(name: str, doc: str, examples: str, inputs_help: str, files: bool = True
                  ) -> argparse.ArgumentParser:
    """A figure's parser: described by its module ``doc``'s first paragraph, with positional
    ``inputs`` and the options every figure shares (where runs are, which dataset, where to
    write, verbosity, and with ``files`` activation files named by ``--files``); the figure
    adds its own."""
    parser = CommandParser(prog=command_prog(f"python -m repsim.figures {name}"),
                           description=doc.split("\n\n")[0], epilog=examples,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    add_version(parser)
    parser.add_argument("inputs", nargs="*", type=Path, help=inputs_help)
    shared = parser.add_argument_group("inputs and outputs")
    shared.add_argument("--runs-dir", default=RUNS_DIR, type=Path,
                        help=f"where to look for runs when no inputs are named "
                             f"(default: {RUNS_DIR})")
    shared.add_argument("--dataset", default=None,
                        help="only runs of this dataset (default: any; needed when "
                             "--runs-dir holds several)")
    shared.add_argument("--out-dir", default=FIGURES_DIR, type=Path,
                        help="where the figure (.png, .pdf) and its numbers (.csv) go "
                             f"(default: {FIGURES_DIR})")
    if files:
        shared.add_argument("--files", nargs="+", type=Path, default=[], metavar="FILE",
                            help="activation files to read, e.g. written by repsim.extract or "
                                 "repsim.record, after any positional inputs (default: none)")
    shared.add_argument("-v", "--verbose", action="store_true", help="log more detail")
    add_threads(shared)
    return parser


@user_errors_exit_2
def run_cli(parser: argparse.ArgumentParser, run: Callable[..., list[Path]],
            argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, call ``run`` with every option but ``verbose`` and ``threads`` (applied
    here) as a keyword, and end with one line naming what was written; a user error is one
    ``error:`` line, status 2. ``--files`` are inputs like the positional ones, unless ``run``
    takes ``files`` of its own."""
    options = vars(parser.parse_args(argv))
    setup_logging(options.pop("verbose"))
    if "files" not in inspect.signature(run).parameters:
        options["inputs"] = [*options["inputs"], *options.pop("files", [])]
    threads = options.pop("threads")
    if threads is not None:
        limit_threads(threads)
    written = run(**options)
    log.info("wrote %s", ", ".join(map(str, written)))
    return 0
