"""A study file and the runs it stands for.

A study is a TOML file (read with the standard library's ``tomllib``):

```toml
[study]
name = "quick"                    # default: the file's stem
seeds = [0, 1, 2, 3, 4]
fusion_layers = [1, 2, 3]         # default: every one, 1..layers+1
fusion_ops = ["concat", "gated"]  # default: ["concat"]
data_seeds = "per_seed"           # default "shared"; or one data seed per seed

[model]                           # ModelConfig fields except fusion_layer
layers = 2
hidden = 16
match_params = true

[train]                           # training options of every run
epochs = 8

[evaluation]
test_snrs = [20, 10, 5, 0, -5, -10]
probe_conditions = ["clean", "incongruent", "audio_removed", "visual_removed"]
probe_snrs = []
probe_stimuli = 200

[datasets.distractor]             # the study's name for a dataset
dataset = "synthetic"             # registry name (default: the table's name)
options = { distractor_snr = 0 }  # builder options
train = { epochs = 15 }           # training options for this dataset's runs

[protocols.clean]                 # a protocol is a set of training options
[protocols.noisy]
augment = "both"

[analysis]                        # how the report judges (repsim.study.settings)
equivalence_margin = 2.0
```

Training options are [repsim.train.TrainConfig][] fields (``epochs``, ``lr``,
``augment``, ``modality_dropout``, ``device``...); a protocol's override the dataset's, which
override ``[train]``. Every run is ``dataset x protocol x fusion operator x fusion layer x
seed``; its directory is given by ``repsim.rundir.study_run_dir`` (the operator appears
in run names and keys only when it is not the default, so studies from before operators keep
their folders).

``data_seeds`` says which data set each seed's networks see: ``"shared"`` (every run the
dataset's ``seed``, 0 by default: seeds vary the initialisation and the order of the
examples only, and all share one test set), ``"per_seed"`` (each seed's runs get a data set
of their own, data seed = training seed: their own stimuli, pairs and test set), or a list
of data seeds, one per entry of ``seeds``. With either of the last two a dataset may not set
its own ``seed``.

Names of the study, its datasets and its protocols become folder names, so they are
identifiers: letters, digits, ``-``, ``_`` and ``.``, but not ``.`` or ``..`` alone. Every
field's type is checked when the file is loaded, and sizes are bounded before anything is
built (so a typo cannot allocate gigabytes): grids up to ``MAX_GRID_SIZE`` pixels a side,
``MAX_TIMESTEPS`` time steps, ``MAX_SEEDS`` seeds (each in 0..``MAX_SEED``),
``MAX_PROBE_STIMULI`` probe stimuli and ``MAX_RUNS`` runs in all (fusion operators
counted), in a file of at most ``MAX_STUDY_FILE_BYTES`` bytes; the model's layers, width
and kernel and a dataset's own sizes are bounded by their configs
(``repsim.models.config``, the dataset's ``check_options``), and every run's training
batch is estimated (``repsim.models.config.batch_bytes``) and refused above
``MAX_BATCH_BYTES``.
"""

from __future__ import annotations

import dataclasses
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from repsim.conditions import PROBE_CONDITIONS, TEST_SNRS, probe_condition_names
from repsim.config import check_int, check_positive_int
from repsim.data.config import DEFAULT_SIZE, DEFAULT_TIMESTEPS, DataConfig
from repsim.models.config import (
    DEFAULT_FUSION_OP,
    FUSION_OPS,
    ModelConfig,
    check_batch_memory,
    operator_tag,
)
from repsim.rundir import STUDY_FILE, study_run_dir
from repsim.study.settings import Analysis, parse_analysis
from repsim.train.config import TrainConfig

# Training options a study may set; the others are set by the study itself.
TRAIN_OPTIONS = tuple(f.name for f in dataclasses.fields(TrainConfig)
                      if f.name not in ("model", "data", "seed", "noise_snrs", "out_dir"))
MODEL_OPTIONS = tuple(f.name for f in dataclasses.fields(ModelConfig)
                      if f.name not in ("fusion_layer", "fusion_op"))
DATA_OPTIONS = ("dataset", "data_dir", "seed", "timesteps", "height", "width", "options",
                "train")
EVALUATION_OPTIONS = ("test_snrs", "probe_conditions", "probe_snrs", "probe_stimuli")
STUDY_OPTIONS = ("name", "description", "seeds", "fusion_layers", "fusion_ops", "data_seeds")
TOP_LEVEL = ("study", "model", "train", "evaluation", "datasets", "protocols", "analysis")
SHARED_DATA, PER_SEED_DATA = "shared", "per_seed"  # the named values of study.data_seeds

# Size limits, checked before anything is built (see the module docstring).
MAX_GRID_SIZE = 256
MAX_TIMESTEPS = 100
MAX_SEEDS = 1000
MAX_SEED = 2**32 - 1
MAX_PROBE_STIMULI = 100_000
MAX_RUNS = 10_000
MAX_STUDY_FILE_BYTES = 1_000_000
NAME_PATTERN = re.compile(r"[A-Za-z0-9._-]+")


@dataclass(frozen=True)
class Evaluation:
    """What every run is tested on: the test grid, and the probe set it records.

    Parameters
    ----------
    test_snrs
        The SNRs (dB) of the test grid ([TEST_SNRS][repsim.conditions.TEST_SNRS] by default).
    probe_conditions
        The probe set's conditions
        ([PROBE_CONDITIONS][repsim.conditions.PROBE_CONDITIONS] by default).
    probe_snrs
        The SNRs at which the probe set adds audio, visual and both noise.
    probe_stimuli
        Stimuli per probe condition.
    """

    test_snrs: tuple[float, ...] = TEST_SNRS
    probe_conditions: tuple[str, ...] = PROBE_CONDITIONS
    probe_snrs: tuple[float, ...] = ()
    probe_stimuli: int = 200


@dataclass(frozen=True)
class StudyRun:
    """One run of a study.

    Parameters
    ----------
    dataset
        The study's name for the dataset.
    protocol
        The training protocol's name.
    fusion_layer
        The fusion layer k.
    seed
        The training seed.
    config
        The run's full training configuration.
    fusion_op
        The fusion operator.
    """

    dataset: str
    protocol: str
    fusion_layer: int
    seed: int
    config: TrainConfig
    fusion_op: str = DEFAULT_FUSION_OP

    @property
    def key(self) -> str:
        """The run's name within its study: ``<dataset>/<protocol>/f<k>-s<seed>``
        (``.../<operator>-f<k>-s<seed>`` for an operator other than the default).
        """
        return "/".join(self.run_dir.parts[-3:])

    @property
    def run_dir(self) -> Path:
        """The run's directory (its config's ``run_dir``)."""
        return self.config.run_dir


@dataclass(frozen=True)
class Study:
    """A parsed, checked study file: its runs (in a fixed order) and where they go.

    Parameters
    ----------
    name
        The study's name (a folder name).
    path
        The study file.
    folder
        Where its runs and report go.
    values
        The file's TOML, as read.
    runs
        Every run, in a fixed order.
    evaluation
        The test grid and the probe set.
    model
        The model of every run, but its fusion layer and operator.
    fusion_ops
        The fusion operators.
    analysis
        How the report judges (the ``[analysis]`` table).
    data_seeds
        ``"shared"``, ``"per_seed"`` or one data seed per seed.
    """

    name: str
    path: Path
    folder: Path
    values: dict
    runs: tuple[StudyRun, ...]
    evaluation: Evaluation
    model: ModelConfig
    fusion_ops: tuple[str, ...] = (DEFAULT_FUSION_OP,)
    analysis: Analysis = field(default_factory=Analysis)
    data_seeds: str | tuple[int, ...] = SHARED_DATA

    def run(self, key: str) -> StudyRun:
        """The run named ``key``.

        Parameters
        ----------
        key
            A run's [key][repsim.study.spec.StudyRun.key].

        Returns
        -------
        StudyRun

        Raises
        ------
        ValueError
            For a key of no run of the study.
        """
        for run in self.runs:
            if run.key == key:
                return run
        raise ValueError(f"study {self.name!r} has no run {key!r}")


def _check_keys(table, allowed, where: str) -> dict:
    if not isinstance(table, dict):
        raise ValueError(f"{where} must be a table, got {type(table).__name__}")
    unknown = [key for key in table if key not in allowed]
    if unknown:
        path = f"{where}." if where else ""
        raise ValueError(f"unknown key {path}{unknown[0]} (allowed here: {', '.join(allowed)})")
    return table


def read_study_file(path: str | Path) -> dict:
    """The study file's TOML as a dict.

    Parameters
    ----------
    path
        The study file.

    Returns
    -------
    dict

    Raises
    ------
    FileNotFoundError
        For a missing file.
    ValueError
        For a file larger than ``MAX_STUDY_FILE_BYTES`` or invalid TOML.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"study file not found: {path}")
    size = path.stat().st_size
    if size > MAX_STUDY_FILE_BYTES:
        raise ValueError(f"{path} has {size} bytes; a study file may have at most "
                         f"{MAX_STUDY_FILE_BYTES}")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        detail = str(error)
        if "Cannot declare" in detail or "Cannot overwrite" in detail:
            detail += " (a name, e.g. a protocol's, is given twice)"
        raise ValueError(f"{path} is not valid TOML: {detail}") from None


def load_study(path: str | Path, folder: str | Path | None = None) -> Study:
    """Parse and check a study file; every run's config is built (and so validated) here.

    Parameters
    ----------
    path
        The study file.
    folder
        Where the study's runs go; ``None``: ``<file's directory>/<name>``.

    Returns
    -------
    Study

    Raises
    ------
    FileNotFoundError
        For a missing file.
    ValueError
        Naming the field, for anything the module docstring does not allow: unknown keys,
        wrong types, names that cannot be folders, sizes above the bounds, a training batch
        estimated above ``MAX_BATCH_BYTES``.

    Examples
    --------
    ```python
    from repsim.study.spec import load_study

    study = load_study("studies/quick.toml")
    len(study.runs), study.runs[0].key      # (60, 'synthetic/clean/f1-s0')
    ```
    """
    path = Path(path)
    values = read_study_file(path)
    _check_keys(values, TOP_LEVEL, "")
    study = _check_keys(values.get("study", {}), STUDY_OPTIONS, "study")
    # the copy in a study folder is named study.toml: the folder then names the study
    name = check_name("study.name", study.get(
        "name", path.parent.name if path.name == STUDY_FILE else path.stem))
    if not isinstance(study.get("description", ""), str):
        raise ValueError(f"study.description must be a string, got {study['description']!r}")
    folder = Path(folder) if folder is not None else path.parent / name
    model = _build(ModelConfig, _check_keys(values.get("model", {}), MODEL_OPTIONS, "model"),
                   "model")
    layers = model.layers
    seeds = _int_list(study.get("seeds"), "study.seeds")
    if len(seeds) > MAX_SEEDS:
        raise ValueError(f"study.seeds has {len(seeds)} seeds; at most {MAX_SEEDS} are allowed")
    if min(seeds) < 0:
        raise ValueError(f"study.seeds must be non-negative, got {min(seeds)}")
    if max(seeds) > MAX_SEED:
        raise ValueError(f"study.seeds must be at most {MAX_SEED}, got {max(seeds)}")
    fusion_layers = _int_list(study.get("fusion_layers", list(range(1, layers + 2))),
                              "study.fusion_layers")
    bad = [k for k in fusion_layers if not 1 <= k <= layers + 1]
    if bad:
        raise ValueError(f"study.fusion_layers: {bad[0]} is out of range for a {layers}-layer "
                         f"model (1..{layers + 1})")
    fusion_ops = _fusion_ops(study.get("fusion_ops", [DEFAULT_FUSION_OP]))
    data_seeds = _data_seeds(study.get("data_seeds", SHARED_DATA), seeds)
    analysis = parse_analysis(values.get("analysis", {}))
    evaluation = _evaluation(values.get("evaluation", {}))
    train = _check_keys(values.get("train", {}), TRAIN_OPTIONS, "train")
    datasets = _named_tables(values, "datasets")
    protocols = _named_tables(values, "protocols")
    count = len(datasets) * len(protocols) * len(fusion_ops) * len(fusion_layers) * len(seeds)
    if count > MAX_RUNS:
        raise ValueError(f"the study has {count} runs (datasets x protocols x fusion operators "
                         f"x fusion layers x seeds); at most {MAX_RUNS} are allowed")
    for dataset_name, dataset in datasets.items():  # every size checked before any build
        _check_data_fields(dataset, f"datasets.{dataset_name}")
        if data_seeds != SHARED_DATA and "seed" in dataset:
            raise ValueError(f"datasets.{dataset_name}.seed and study.data_seeds both set the "
                             f"data seed; keep one")
    runs = []
    checked: set[str] = set()  # memory estimates made (the seeds of a cell share one)
    for dataset_name, dataset in datasets.items():
        where = f"datasets.{dataset_name}"
        dataset = dict(dataset)
        dataset_train = _check_keys(dataset.pop("train", {}), TRAIN_OPTIONS, f"{where}.train")
        dataset.setdefault("dataset", dataset_name)
        data = _build(DataConfig, dataset, where)
        for protocol_name, protocol in protocols.items():
            where_protocol = f"protocols.{protocol_name}"
            options = {**train, **dataset_train,
                       **_check_keys(protocol, TRAIN_OPTIONS, where_protocol)}
            for fusion_op in fusion_ops:
                for fusion_layer in fusion_layers:
                    for seed, data_seed in zip(seeds, _run_data_seeds(data_seeds, seeds),
                                               strict=True):
                        run_dir = study_run_dir(folder, dataset_name, protocol_name,
                                                fusion_layer, seed, operator_tag(fusion_op))
                        run_model = dataclasses.replace(model, fusion_layer=fusion_layer,
                                                        fusion_op=fusion_op)
                        run_data = data if data_seed is None else \
                            dataclasses.replace(data, seed=data_seed)
                        config = _build(TrainConfig, {
                            **options, "model": run_model, "data": run_data, "seed": seed,
                            "noise_snrs": evaluation.test_snrs, "out_dir": str(run_dir)},
                            f"{where} with {where_protocol}")
                        _check_memory(config, f"{where} with {where_protocol}", checked)
                        runs.append(StudyRun(dataset_name, protocol_name, fusion_layer, seed,
                                             config, fusion_op))
    return Study(name=name, path=path, folder=folder, values=values, runs=tuple(runs),
                 evaluation=evaluation, model=model, fusion_ops=tuple(fusion_ops),
                 analysis=analysis, data_seeds=data_seeds)


def _check_memory(config: TrainConfig, where: str, checked: set[str]) -> None:
    """ValueError naming ``where`` when a training batch of ``config`` would need more than
    :data:`~repsim.models.config.MAX_BATCH_BYTES` (a grid left to the dataset counts as
    avmnist's); each model, batch size and grid is estimated once."""
    data = config.data
    grid = (data.timesteps or DEFAULT_TIMESTEPS, data.height or DEFAULT_SIZE,
            data.width or DEFAULT_SIZE)
    key = f"{config.model.to_json()}{config.batch_size}{grid}"
    if key not in checked:
        checked.add(key)
        try:
            check_batch_memory(config.model, config.batch_size, *grid)
        except ValueError as error:
            raise ValueError(f"{where}: {error}") from None


def _build(cls, values: dict, where: str):
    try:
        return cls(**values)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{where}: {error}") from None


def check_name(where: str, name: object) -> str:
    """A name that can name a folder of the study.

    Parameters
    ----------
    where
        What the name names, for the message.
    name
        The name.

    Returns
    -------
    str
        ``name``.

    Raises
    ------
    ValueError
        Naming ``where``, unless ``name`` is letters, digits, ``-``, ``_`` and ``.``, not ``.``
        or ``..`` alone.
    """
    if (not isinstance(name, str) or not NAME_PATTERN.fullmatch(name)
            or name in (".", "..")):
        raise ValueError(f"{where} must be a name of letters, digits, '-', '_' and '.' (not "
                         f"'.' or '..' alone), got {name!r}")
    return name


def _named_tables(values: dict, key: str) -> dict:
    tables = values.get(key)
    if not isinstance(tables, dict) or not tables:
        raise ValueError(f"the study needs at least one entry under [{key}] "
                         f"(e.g. [{key}.{'synthetic' if key == 'datasets' else 'noisy'}])")
    for name, table in tables.items():
        check_name(f"a [{key}] name", name)
        _check_keys(table, DATA_OPTIONS if key == "datasets" else TRAIN_OPTIONS,
                    f"{key}.{name}")
    return tables


def _check_data_fields(dataset: dict, where: str) -> None:
    """The types and sizes of a [datasets.NAME] table's own fields (ValueError naming the
    field), before a dataset config is built from them."""
    prefix = f"{where}."
    for name in ("dataset", "data_dir"):
        if name in dataset and not isinstance(dataset[name], str):
            raise ValueError(f"{prefix}{name} must be a string, got {dataset[name]!r}")
    for name in ("options", "train"):
        if name in dataset and not isinstance(dataset[name], dict):
            raise ValueError(f"{prefix}{name} must be a table, got {dataset[name]!r}")
    limits = {"timesteps": MAX_TIMESTEPS, "height": MAX_GRID_SIZE, "width": MAX_GRID_SIZE,
              "seed": MAX_SEED}
    for name, limit in limits.items():
        value = dataset.get(name)
        if value is None:
            continue
        check_int(f"{prefix}{name}", value)
        if not (0 if name == "seed" else 1) <= value <= limit:
            raise ValueError(f"{prefix}{name} must be in {0 if name == 'seed' else 1}..{limit}, "
                             f"got {value}")


def _fusion_ops(values) -> list[str]:
    """``study.fusion_ops``: a non-empty list of distinct operator names."""
    if (not isinstance(values, list) or not values
            or not all(isinstance(value, str) and value in FUSION_OPS for value in values)):
        raise ValueError(f"study.fusion_ops must be a non-empty list of operator names from "
                         f"{', '.join(FUSION_OPS)}, got {values!r}")
    if len(set(values)) != len(values):
        raise ValueError(f"study.fusion_ops repeats a value: {values}")
    return list(values)


def _data_seeds(value, seeds: list[int]) -> str | tuple[int, ...]:
    """``study.data_seeds`` (module docstring): a named value, or one data seed per seed."""
    if value in (SHARED_DATA, PER_SEED_DATA):
        return value
    if not isinstance(value, list):
        raise ValueError(f"study.data_seeds must be {SHARED_DATA!r}, {PER_SEED_DATA!r} or a "
                         f"list of data seeds, one per seed, got {value!r}")
    for seed in value:  # repeats allowed: seeds may share a data set
        check_int("study.data_seeds", seed)
    listed = list(value)
    if len(listed) != len(seeds):
        raise ValueError(f"study.data_seeds lists {len(listed)} data seeds for "
                         f"{len(seeds)} seeds; give one per seed")
    bad = [seed for seed in listed if not 0 <= seed <= MAX_SEED]
    if bad:
        raise ValueError(f"study.data_seeds must be in 0..{MAX_SEED}, got {bad[0]}")
    return tuple(listed)


def _run_data_seeds(data_seeds: str | tuple[int, ...], seeds: list[int]) -> list[int | None]:
    """The data seed of each seed's runs (None: the dataset's own)."""
    if isinstance(data_seeds, tuple):
        return list(data_seeds)
    return [None] * len(seeds) if data_seeds == SHARED_DATA else list(seeds)


def _int_list(values, where: str) -> list[int]:
    if values is None or not isinstance(values, list) or not values:
        raise ValueError(f"{where} must be a non-empty list of integers")
    for value in values:
        check_int(where, value)
    if len(set(values)) != len(values):
        raise ValueError(f"{where} repeats a value: {values}")
    return list(values)


def _numbers(values, where: str) -> tuple[float, ...]:
    """A list of finite numbers (bools refused) as floats; ValueError naming ``where``."""
    if not isinstance(values, list | tuple) or not all(
            isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)
            for x in values):
        raise ValueError(f"{where} must be a list of finite numbers (dB), got {values!r}")
    return tuple(float(x) for x in values)


def _evaluation(table) -> Evaluation:
    table = _check_keys(table, EVALUATION_OPTIONS, "evaluation")
    defaults = Evaluation()
    test_snrs = _numbers(table.get("test_snrs", list(defaults.test_snrs)),
                         "evaluation.test_snrs")
    if not test_snrs:
        raise ValueError("evaluation.test_snrs must be a non-empty list of finite dB values "
                         "(clean is always tested)")
    conditions = table.get("probe_conditions", list(defaults.probe_conditions))
    if not isinstance(conditions, list | tuple) or not all(isinstance(c, str)
                                                           for c in conditions):
        raise ValueError(f"evaluation.probe_conditions must be a list of condition names, "
                         f"got {conditions!r}")
    conditions = tuple(conditions)
    probe_snrs = _numbers(table.get("probe_snrs", list(defaults.probe_snrs)),
                          "evaluation.probe_snrs")
    probe_condition_names(conditions, probe_snrs)  # unknown names: ValueError
    stimuli = table.get("probe_stimuli", defaults.probe_stimuli)
    check_positive_int("evaluation.probe_stimuli", stimuli)
    if stimuli > MAX_PROBE_STIMULI:
        raise ValueError(f"evaluation.probe_stimuli must be at most {MAX_PROBE_STIMULI}, "
                         f"got {stimuli}")
    return Evaluation(test_snrs, conditions, probe_snrs, stimuli)


def differing_keys(a: dict, b: dict, prefix: str = "") -> list[str]:
    """The keys whose values differ between two nested dicts.

    Parameters
    ----------
    a, b
        The dicts.
    prefix
        Put before every path.

    Returns
    -------
    list of str
        Dotted paths.
    """
    keys = []
    for key in sorted(set(a) | set(b)):
        left, right = a.get(key), b.get(key)
        if isinstance(left, dict) and isinstance(right, dict):
            keys += differing_keys(left, right, f"{prefix}{key}.")
        elif left != right:
            keys.append(f"{prefix}{key}")
    return keys
