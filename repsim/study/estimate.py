"""How long a study will take here: a few timed training steps of each distinct model.

For each distinct (model, data, batch size, precision) among the runs, the dataset is built
once and a few training steps and one evaluation batch are timed on this machine, with the
threads one worker would get. Data sets that differ only in their seed (a study with
``data_seeds``) have the same sizes and cost the same, so one of them stands for all. A
run's estimate is its training steps, its per-epoch validation, the test grid and the
probe-set extraction at those rates.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence

from repsim.conditions import grid_conditions, probe_condition_names
from repsim.study.spec import Study, StudyRun

TIMED_STEPS = 3


def _data_key(run: StudyRun) -> str:
    """The run's data config without its seed (module docstring)."""
    data = run.config.data.to_dict()
    data.pop("seed")
    return json.dumps(data, sort_keys=True)


def _key(run: StudyRun) -> str:
    config = run.config
    return json.dumps({"model": config.model.to_dict(), "data": _data_key(run),
                       "batch": config.batch_size, "precision": config.precision}, sort_keys=True)


def _time_model(run: StudyRun, dataset) -> tuple[float, float]:
    """Seconds per training step and per evaluated sample of ``run``'s model."""
    import torch
    import torch.nn.functional as F

    from repsim.data.base import make_batch
    from repsim.models.fusion import FusionConvLSTM, final_logits

    config = run.config
    model = FusionConvLSTM(config.model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr)
    split = dataset.splits["train"]
    index = torch.arange(min(config.batch_size, len(split)))
    batch = make_batch(split, dataset.features, split.pair_audio[index],
                       split.pair_visual[index])

    def step() -> None:
        loss = F.cross_entropy(final_logits(model(batch.audio, batch.visual)),
                               batch.audio_digit)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    step()  # warm-up
    started = time.perf_counter()
    for _ in range(TIMED_STEPS):
        step()
    train_step = (time.perf_counter() - started) / TIMED_STEPS
    with torch.no_grad():
        started = time.perf_counter()
        model(batch.audio, batch.visual)
        per_sample = (time.perf_counter() - started) / len(index)
    return train_step, per_sample


def estimate_seconds(study: Study, runs: Sequence[StudyRun], threads: int) -> dict[str, float]:
    """Estimated seconds of each run (by key) on this machine with ``threads`` threads."""
    from repsim.device import limit_threads

    limit_threads(threads)
    rates, datasets, sizes = {}, {}, {}
    for run in runs:
        key = _key(run)
        if key in rates:
            continue
        data_key = _data_key(run)
        if data_key not in datasets:
            datasets[data_key] = run.config.data.build()
            dataset = datasets[data_key]
            sizes[data_key] = {name: len(split) for name, split in dataset.splits.items()}
        rates[key] = _time_model(run, datasets[data_key])
    evaluation = study.evaluation
    probe_rows = evaluation.probe_stimuli * len(probe_condition_names(
        evaluation.probe_conditions, evaluation.probe_snrs))
    estimates = {}
    for run in runs:
        config = run.config
        train_step, per_sample = rates[_key(run)]
        size = sizes[_data_key(run)]
        steps = math.ceil(size["train"] / config.batch_size)
        grid = len(grid_conditions(config.noise_snrs))
        estimates[run.key] = (config.epochs * (steps * train_step + size["val"] * per_sample)
                              + (grid * size["test"] + probe_rows) * per_sample)
    return estimates
