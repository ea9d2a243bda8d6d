"""A finished study run's records as the report reads them, checked before any number is used.

The report reads three records of a run: ``metrics.json`` (:class:`repsim.rundir.Metrics`),
``summary.json`` (:mod:`repsim.study.summary`) and ``log.csv``. A record that is not valid
JSON, or whose fields have the wrong type, is a ValueError naming the file and the field: the
report cannot be trusted past it. A record that holds a number that is not finite (NaN,
infinity, or null where a number belongs), out of its range (an accuracy, probe accuracy,
gate share or reliance index outside [0, 1], a noise entry outside [0, 1] by more than
:data:`CKA_SLACK`, a count below 1, a negative time) or that names another run than its
folder (seed, fusion layer, operator, dataset, protocol, data seed, run name) makes the run
*unusable*: the report names it at the top with one line naming the file and the field, and
leaves all of it out, so that no cell silently rests on fewer seeds than it says;
``--status`` shows it as :data:`UNUSABLE`.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from repsim.models.config import DEFAULT_FUSION_OP
from repsim.rundir import (
    LOG_FILE,
    METRICS_FILE,
    SUMMARY_FILE,
    Metrics,
    read_log,
    read_metrics,
    run_state,
)
from repsim.study.spec import Study, StudyRun

UNUSABLE = "unusable"  # the --status state of a finished run the report cannot use
CKA_SLACK = 1e-6  # how far float rounding may take 1 - CKA outside [0, 1]


@dataclass(frozen=True)
class RunRecords:
    """What the report reads of one finished run."""

    metrics: Metrics
    summary: dict
    log: list[dict]


def read_json(path: str | os.PathLike) -> object:
    """A JSON file's value; ValueError naming the file when it is not valid JSON."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        where = f" ({error.msg} at line {error.lineno})" if isinstance(
            error, json.JSONDecodeError) else ""
        raise ValueError(f"{path} is not valid JSON{where}; the file is incomplete or "
                         "corrupt") from None


def _is_number(value: object, nullable: bool = False) -> bool:
    return (value is None and nullable) or (
        isinstance(value, int | float) and not isinstance(value, bool))


def read_summary(run_dir: str | os.PathLike) -> dict:
    """A finished run's ``summary.json``, its fields the report reads checked for type
    (ValueError naming the file and the field)."""
    path = Path(run_dir) / SUMMARY_FILE
    summary = read_json(path)

    def refuse(field: str, expected: str, value: object) -> ValueError:
        return ValueError(f"{path}: {field} must be {expected}, got {value!r}"[:300])

    if not isinstance(summary, dict):
        raise refuse("the file", "a JSON object", summary)
    readout = summary.get("readout")
    if not isinstance(readout, dict):
        raise refuse("readout", "an object", readout)
    reliance = readout.get("reliance_cka")
    if (not isinstance(reliance, list) or not reliance
            or not all(_is_number(x, nullable=True) for x in reliance)):
        raise refuse("readout.reliance_cka", "a non-empty list of numbers", reliance)
    stimuli = readout.get("probe_stimuli")
    if not isinstance(stimuli, int) or isinstance(stimuli, bool) or stimuli < 1:
        raise refuse("readout.probe_stimuli", "a positive integer", stimuli)
    probes = readout.get("probe")
    if not isinstance(probes, dict) or not probes:
        raise refuse("readout.probe", "an object of probes", probes)
    for name, probe in probes.items():
        if not isinstance(probe, dict) or not _is_number(probe.get("accuracy"), nullable=True):
            value = probe.get("accuracy") if isinstance(probe, dict) else probe
            raise refuse(f"readout.probe.{name}.accuracy", "a number", value)
    try:
        for field, value, _ in mechanism_numbers(summary):
            if not _is_number(value, nullable=True):
                raise refuse(field, "a number", value)
    except (AttributeError, TypeError, KeyError, IndexError):
        raise refuse("mechanism", "an object of mechanism measures",
                     summary.get("mechanism")) from None
    return summary


def mechanism_numbers(summary: dict) -> Iterator[tuple[str, object, float]]:
    """``(field, value, slack)`` of every mechanism number the report reads (the last step of
    each noise entry; every probe accuracy and gate share), with how far rounding may take it
    outside [0, 1]. Raises AttributeError/TypeError/KeyError on a malformed structure."""
    mechanism = summary.get("mechanism") or {}
    for condition, entry in mechanism.get("noise_entry", {}).items():
        yield (f"mechanism.noise_entry.{condition}.readout.cka", entry["readout"]["cka"][-1],
               CKA_SLACK)
        for layer, values in entry["cka"].items():
            yield f"mechanism.noise_entry.{condition}.cka.{layer}", values[-1], CKA_SLACK
    for condition, decoded in mechanism.get("survival", {}).items():
        for name, accuracy in decoded.items():
            yield f"mechanism.survival.{condition}.{name}", accuracy, 0.0
    for condition, share in mechanism.get("gate", {}).get("audio_share", {}).items():
        yield f"mechanism.gate.audio_share.{condition}", share, 0.0
    for condition, kinds in mechanism.get("fused", {}).get("probes", {}).items():
        for kind, views in kinds.items():
            for view, decoded in views.items():
                for name, accuracy in decoded.items():
                    yield (f"mechanism.fused.probes.{condition}.{kind}.{view}.{name}", accuracy,
                           0.0)


def read_records(run_dir: str | os.PathLike) -> RunRecords:
    """The checked ``metrics.json``, ``summary.json`` and ``log.csv`` of a finished run."""
    run_dir = Path(run_dir)
    log = read_log(run_dir)
    if not log:
        raise ValueError(f"{run_dir / LOG_FILE} has no epochs")
    return RunRecords(read_metrics(run_dir / METRICS_FILE), read_summary(run_dir), log)


def problem(records: RunRecords, run: StudyRun) -> str | None:
    """Why the report cannot use ``run``'s records (module docstring), as one line naming the
    file and the field; None when it can."""
    return not_finite(records) or out_of_range(records) or not_its_run(records, run)


def not_finite(records: RunRecords) -> str | None:
    """The first number the report reads that is not finite, as ``"<file> <field>"``; None
    when every one is."""
    metrics, readout = records.metrics, records.summary["readout"]
    numbers = [(METRICS_FILE, "clean_accuracy", metrics.clean_accuracy),
               (METRICS_FILE, "train_seconds", metrics.train_seconds),
               *((METRICS_FILE, f"removed.{name}", value)
                 for name, value in metrics.removed.items()),
               *((METRICS_FILE, f"noise ({kind} at {snr:g} dB)", value)
                 for (kind, snr), value in metrics.noise_accuracy.items()),
               (SUMMARY_FILE, "readout.reliance_cka (last step)", readout["reliance_cka"][-1]),
               *((SUMMARY_FILE, f"readout.probe.{name}.accuracy", probe["accuracy"])
                 for name, probe in readout["probe"].items()),
               *((LOG_FILE, f"val_accuracy of epoch {row['epoch']}", row["val_accuracy"])
                 for row in records.log)]
    for file, field, value in numbers:
        if value is None or not math.isfinite(value):
            return f"{file} {field} is {value}"
    return None


def out_of_range(records: RunRecords) -> str | None:
    """The first number the report reads that lies outside its range (module docstring), as
    ``"<file> <field> is <value>, outside <range>"``; None when every one is inside."""
    metrics, summary = records.metrics, records.summary
    unit = [(METRICS_FILE, "clean_accuracy", metrics.clean_accuracy, 0.0),
            *((METRICS_FILE, f"removed.{name}", value, 0.0)
              for name, value in metrics.removed.items()),
            *((METRICS_FILE, f"noise ({kind} at {snr:g} dB)", value, 0.0)
              for (kind, snr), value in metrics.noise_accuracy.items()),
            *((METRICS_FILE, "val_accuracy", metrics.val_accuracy, 0.0)
              for _ in [0] if metrics.val_accuracy is not None),
            *((LOG_FILE, f"val_accuracy of epoch {row['epoch']}", row["val_accuracy"], 0.0)
              for row in records.log),
            (SUMMARY_FILE, "readout.reliance_cka (last step)",
             summary["readout"]["reliance_cka"][-1], 0.0),
            *((SUMMARY_FILE, f"readout.probe.{name}.accuracy", probe["accuracy"], 0.0)
              for name, probe in summary["readout"]["probe"].items()),
            *((SUMMARY_FILE, field, value, slack)
              for field, value, slack in mechanism_numbers(summary) if value is not None)]
    for file, field, value, slack in unit:
        if not -slack <= value <= 1 + slack:
            return f"{file} {field} is {value}, outside [0, 1]"
    counts = [("test_items", metrics.test_items), ("epochs", metrics.epochs),
              ("parameters", metrics.parameters), ("layers", metrics.layers)]
    for field, count in counts:
        if count is not None and count < 1:
            return f"{METRICS_FILE} {field} is {count}, below 1"
    if metrics.train_seconds < 0:
        return f"{METRICS_FILE} train_seconds is {metrics.train_seconds}, below 0"
    return None


def not_its_run(records: RunRecords, run: StudyRun) -> str | None:
    """The first field of ``run``'s records that names another run than its folder, as
    ``"<file> <field> is <value>, not the run folder's <expected>"``; None when all agree."""
    metrics, summary = records.metrics, records.summary
    config, data = metrics.config, metrics.config.get("data", {})
    model = config.get("model", {})
    absent = "absent"
    fields = [
        (METRICS_FILE, "run", metrics.run, run.run_dir.name),
        (METRICS_FILE, "seed", metrics.seed, run.seed),
        (METRICS_FILE, "config.seed", config.get("seed", absent), run.seed),
        (METRICS_FILE, "fusion_layer", metrics.fusion_layer, run.fusion_layer),
        (METRICS_FILE, "layers", metrics.layers, run.config.model.layers),
        (METRICS_FILE, "config.model.fusion_op", model.get("fusion_op", DEFAULT_FUSION_OP),
         run.fusion_op),
        (METRICS_FILE, "dataset", metrics.dataset, run.config.data.dataset),
        (METRICS_FILE, "config.data.seed", data.get("seed", absent), run.config.data.seed),
        (SUMMARY_FILE, "run", summary.get("run", absent), run.key),
        (SUMMARY_FILE, "dataset", summary.get("dataset", absent), run.dataset),
        (SUMMARY_FILE, "protocol", summary.get("protocol", absent), run.protocol),
        (SUMMARY_FILE, "fusion_layer", summary.get("fusion_layer", absent), run.fusion_layer),
        (SUMMARY_FILE, "seed", summary.get("seed", absent), run.seed)]
    for file, field, value, expected in fields:
        if value != expected or isinstance(value, bool):
            return f"{file} {field} is {value!r}, not the run folder's {expected!r}"
    return None


def study_run_state(run: StudyRun) -> tuple[str, str | None]:
    """A study run's state for ``--status``: :func:`repsim.rundir.run_state`, except that a
    finished run whose records are broken or unusable (module docstring) is
    :data:`UNUSABLE`; with the reason."""
    state = run_state(run.run_dir)
    if state != "done":
        return state, None
    try:
        reason = problem(read_records(run.run_dir), run)
    except (ValueError, FileNotFoundError) as error:
        reason = str(error)
    return (UNUSABLE, reason) if reason else (state, None)


def finished_runs(study: Study) -> tuple[list[tuple[StudyRun, RunRecords]], dict[str, str]]:
    """The finished runs of ``study`` the report can use, with their records, and the
    unusable ones: ``{run key: why}`` (:func:`problem`). Broken records raise ValueError."""
    usable, unusable = [], {}
    for run in study.runs:
        if not (run.run_dir / SUMMARY_FILE).is_file():
            continue
        records = read_records(run.run_dir)
        reason = problem(records, run)
        if reason:
            unusable[run.key] = reason
        else:
            usable.append((run, records))
    return usable, unusable
