"""Where a study's time goes: the seconds each run records by stage, and their totals.

Each run's ``summary.json`` records ``seconds``, what the call of
:func:`repsim.study.steps.complete_run` that finished it spent in each of
:data:`RUN_STAGES`:

- ``data``: getting the dataset (loading the study's shared copy, or building it);
- ``training``: the training steps (forward, backward, optimiser) of the epochs it trained;
- ``validation``: the validation accuracy after every epoch;
- ``checkpoints``: writing the checkpoint and ``log.csv`` after every epoch;
- ``evaluation``: the test grid (clean, every noise condition, each modality removed);
- ``extraction``: recording the probe set's activations;
- ``summary``: the representation summary (mechanism measures, probes);
- ``other``: the rest (starting the run, imports, building the model, writing records).

A run continued after an interruption records the call that finished it (its earlier
epochs' training steps are in ``log.csv``). Runs made before the stages were recorded have
none; ``--status`` and the report then say how many runs the totals cover.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping

from repsim.rundir import SUMMARY_FILE
from repsim.study.spec import StudyRun

RUN_STAGES = ("data", "training", "validation", "checkpoints", "evaluation", "extraction",
          "summary", "other")
SECONDS = "seconds"  # the summary.json key
TRAINING = "training"


def recorded_seconds(summary: Mapping) -> dict[str, float] | None:
    """A run summary's seconds by stage, or None when it has none (older runs) or they are
    not numbers."""
    seconds = summary.get(SECONDS)
    if not isinstance(seconds, dict):
        return None
    values = {stage: seconds.get(stage, 0.0) for stage in RUN_STAGES}
    if not all(isinstance(value, int | float) and not isinstance(value, bool) and value >= 0
               for value in values.values()):
        return None
    return {stage: float(value) for stage, value in values.items()}


def study_seconds(runs: Iterable[StudyRun]) -> tuple[dict[str, float], int]:
    """Seconds by stage summed over the finished ``runs`` that recorded them, and how many
    did (summaries that cannot be read count as not recorded)."""
    totals = dict.fromkeys(RUN_STAGES, 0.0)
    counted = 0
    for run in runs:
        try:
            summary = json.loads((run.run_dir / SUMMARY_FILE).read_text())
        except (OSError, ValueError):
            continue
        seconds = recorded_seconds(summary) if isinstance(summary, dict) else None
        if seconds is None:
            continue
        counted += 1
        for stage, value in seconds.items():
            totals[stage] += value
    return totals, counted


def time_line(totals: Mapping[str, float], counted: int, finished: int) -> str:
    """One line: the stages' total minutes and shares, and the share that is not training."""
    whole = sum(totals.values())
    if not counted or whole <= 0:
        return f"time by stage: not recorded by any of the {finished} finished runs"
    parts = ", ".join(f"{stage} {totals[stage] / 60:.1f} min ({100 * totals[stage] / whole:.0f} %)"
                      for stage in RUN_STAGES)
    other = whole - totals[TRAINING]
    covered = "" if counted == finished else f" (recorded by {counted} of {finished} finished " \
        f"runs)"
    return (f"time by stage over {counted} runs{covered}: {whole / 60:.1f} min of run time: "
            f"{parts}; not training: {100 * other / whole:.0f} %")
