"""A finished study run's records as the report reads them, checked before any number is used.

The report reads three records of a run: ``metrics.json`` (:class:`repsim.rundir.Metrics`),
``summary.json`` (:mod:`repsim.study.summary`) and ``log.csv``. A record that is not valid
JSON, or whose fields have the wrong type, is a ValueError naming the file and the field: the
report cannot be trusted past it. A record whose numbers are not finite (NaN, infinity, or
null where a number belongs) makes the run *unusable*: the report names it at the top and
leaves all of it out, so that no cell silently rests on fewer seeds than it says, and
``--status`` shows it as :data:`UNUSABLE`.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

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

UNUSABLE = "unusable"  # the --status state of a finished run whose numbers are not finite


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
    return summary


def read_records(run_dir: str | os.PathLike) -> RunRecords:
    """The checked ``metrics.json``, ``summary.json`` and ``log.csv`` of a finished run."""
    run_dir = Path(run_dir)
    log = read_log(run_dir)
    if not log:
        raise ValueError(f"{run_dir / LOG_FILE} has no epochs")
    return RunRecords(read_metrics(run_dir / METRICS_FILE), read_summary(run_dir), log)


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


def study_run_state(run_dir: str | os.PathLike) -> tuple[str, str | None]:
    """A study run's state for ``--status``: :func:`repsim.rundir.run_state`, except that a
    finished run whose records are broken or not finite is :data:`UNUSABLE`; with the reason."""
    state = run_state(run_dir)
    if state != "done":
        return state, None
    try:
        reason = not_finite(read_records(run_dir))
    except (ValueError, FileNotFoundError) as error:
        reason = str(error)
    return (UNUSABLE, reason) if reason else (state, None)


def finished_runs(study: Study) -> tuple[list[tuple[StudyRun, RunRecords]], dict[str, str]]:
    """The finished runs of ``study`` whose numbers are all finite, with their records, and
    the unusable ones: ``{run key: what is not finite}``. Broken records raise ValueError."""
    usable, unusable = [], {}
    for run in study.runs:
        if not (run.run_dir / SUMMARY_FILE).is_file():
            continue
        records = read_records(run.run_dir)
        reason = not_finite(records)
        if reason:
            unusable[run.key] = reason
        else:
            usable.append((run, records))
    return usable, unusable
