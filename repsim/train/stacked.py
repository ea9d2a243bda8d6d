"""Training the seeds of a cell as one stacked network: ``repsim.train.stacked.run(configs)``.

``configs`` are runs that differ in their seed and directory only (a study's cell with
``[train] stack_seeds = true``). Each run keeps everything of its own: its initialisation
(``torch.manual_seed(seed)`` before its model is made, as alone), the order of its examples
and its augmentation noise (its own generators, drawn in the same order as alone), its
optimiser state, and its run directory, written by the same code as a run alone
(:class:`repsim.train.loop._Run`: validation, checkpoints, ``log.csv``, the final
evaluation, ``metrics.json``). Only the training steps are shared: the runs' batches go
through one network with every seed's parameters side by side
(:mod:`repsim.models.stacked`), the loss is the sum of the seeds' losses (so each seed's
gradient is its own), each seed's gradient norm is clipped on its own, and one AdamW step
updates every seed's parameters as its own AdamW would. Each run's files are those of the
run alone to float32 tolerance, and its ``metrics.json`` says it was stacked (``stacked``:
how many seeds trained together). A run's ``epoch_seconds`` is its share of the stacked
epoch.

A seed whose loss stops being finite stops alone: it is left out of the stack from the next
epoch, its checkpoint of the last good epoch stays, and its result is the
:class:`~repsim.train.loop.TrainingDiverged` it would have raised alone; a seed that
reaches its plateau (``stop_at_plateau``) also stops alone. Runs that start from different
epochs (some resumed) are stacked with the runs at the same epoch; a run alone trains as
:func:`repsim.train.run` does. Finished runs are returned as they are.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Callable, Sequence

import torch

from repsim.data.base import AVDataset, make_batch
from repsim.models.fusion import FusionConvLSTM
from repsim.models.stacked import (
    clip_seed_grad_norms,
    seed_optimizer_state,
    seed_state,
    stack_optimizer_state,
    stack_state,
)
from repsim.provenance import claim, remove_stale_temporaries
from repsim.rundir import RUN_FILES, prepare_run_dir
from repsim.train.config import TrainConfig, config_differences
from repsim.train.loop import (
    EpochRecord,
    TrainingDiverged,
    TrainResult,
    _augment_snrs,
    _drop_modality,
    _loss,
    _prepare,
    _Run,
    diverged,
    lr_at,
)
from repsim.train.loop import run as train_alone

Outcome = TrainResult | TrainingDiverged


def check_stackable(configs: Sequence[TrainConfig]) -> None:
    """ValueError unless ``configs`` differ in their seed and run directory only, with
    distinct seeds and directories."""
    if not configs:
        raise ValueError("no runs to stack")
    seeds = [config.seed for config in configs]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"stacked runs need distinct seeds, got {seeds}")
    if len({config.run_dir.resolve() for config in configs}) != len(configs):
        raise ValueError("stacked runs need a run directory each")
    first = dataclasses.replace(configs[0], seed=0, out_dir=None).to_dict()
    for config in configs[1:]:
        differences = config_differences(
            first, dataclasses.replace(config, seed=0, out_dir=None).to_dict(),
            saved_as=f"seed {configs[0].seed}")
        if differences:
            raise ValueError(f"only runs that differ in their seed can be stacked; seed "
                             f"{config.seed} differs in {'; '.join(differences)}")


def run(configs: Sequence[TrainConfig], dataset: AVDataset,
        should_stop: Callable[[], bool] | None = None) -> list[Outcome]:
    """Train ``configs`` (module docstring) on ``dataset``, every run resumed from its
    checkpoint where it has one (``resume="auto"``); returns each run's
    :class:`~repsim.train.loop.TrainResult`, or the ``TrainingDiverged`` of a run whose
    loss stopped being finite, in the order of ``configs``. ``should_stop`` stops every
    run before its next step (:class:`~repsim.train.loop.TrainingStopped`)."""
    check_stackable(configs)
    outcomes: dict[int, Outcome] = {}
    groups: dict[int, dict[int, tuple]] = {}  # start epoch -> index -> what _prepare gave
    for index, config in enumerate(configs):
        got = _prepare(config, "auto", False, dataset)
        if isinstance(got, TrainResult):
            outcomes[index] = got
        else:
            ckpt = got[1]
            groups.setdefault(0 if ckpt is None else int(ckpt["epoch"]), {})[index] = got
    for members in groups.values():  # runs at the same epoch train together
        if len(members) == 1:
            (index, _), = members.items()
            outcomes[index] = train_alone(configs[index], resume="auto", dataset=dataset,
                                          should_stop=should_stop)
            continue
        with contextlib.ExitStack() as stack:
            runs: dict[int, _Run] = {}
            for index, (config, ckpt, resume, data) in members.items():
                run_dir = prepare_run_dir(config.run_dir, resume=resume is not None,
                                          overwrite=False)
                stack.enter_context(claim(run_dir))
                for name in RUN_FILES:
                    remove_stale_temporaries(run_dir / name)
                runs[index] = _Run(config, run_dir, ckpt, resume, data, should_stop,
                                   keep_global_rng=True)
            outcomes.update(_train_together(runs))
    return [outcomes[index] for index in range(len(configs))]


def _train_together(runs: dict[int, _Run]) -> dict[int, Outcome]:
    """Train ``runs`` (claimed, at the same epoch) stacked until each has finished, stopped
    at its plateau or diverged; then evaluate each."""
    outcomes: dict[int, Outcome] = {}
    active = dict(runs)
    first = next(iter(runs.values()))
    config = first.config
    for state in runs.values():
        state.stacked = len(runs)
    for epoch in range(first.start_epoch, config.epochs):
        active = {index: state for index, state in active.items() if not state.at_plateau()}
        if not active:
            break
        records = _stacked_epoch(list(active.values()), epoch)
        for (index, state), record in zip(list(active.items()), records, strict=True):
            if isinstance(record, TrainingDiverged):
                outcomes[index] = record
                del active[index]
            elif state.end_epoch(record):
                del active[index]
    for index, state in runs.items():
        if index not in outcomes:
            outcomes[index] = state.finish()
    return outcomes


def _stacked_epoch(runs: list[_Run], epoch: int) -> list[EpochRecord | TrainingDiverged]:
    """One epoch of ``runs``' training steps through one stacked network; each run's model
    and optimiser hold its own state before and after."""
    seeds, first = len(runs), runs[0]
    config, device = first.config, first.device
    started = time.perf_counter()
    model = FusionConvLSTM(config.model, seeds=seeds).to(device)
    model.load_state_dict(stack_state([state.model.state_dict() for state in runs]))
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr,
                                  weight_decay=config.weight_decay)
    if first.optimizer.state:
        optimizer.load_state_dict(stack_optimizer_state([state.optimizer.state_dict()
                                                         for state in runs]))
    forward = torch.compile(model) if config.compile else model
    model.train()
    orders = [torch.randperm(len(state.train_split), generator=state.shuffle_generator)
              .to(device) for state in runs]
    loss_sums = torch.zeros(seeds, dtype=torch.float64, device=device)
    lr = config.lr
    for step in range(first.steps_per_epoch):
        first.stop(f"in epoch {epoch + 1}")
        lr = lr_at(config, epoch * first.steps_per_epoch + step, first.steps_per_epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        batches = []
        for state, order in zip(runs, orders, strict=True):
            index = order[step * config.batch_size:(step + 1) * config.batch_size]
            audio_snr, visual_snr = (
                _augment_snrs(config, len(index), device, state.noise_generator)
                if config.augment != "none" else (math.inf, math.inf))
            split = state.train_split
            batch = make_batch(split, state.features, split.pair_audio[index],
                               split.pair_visual[index], audio_snr=audio_snr,
                               visual_snr=visual_snr, generator=state.noise_generator)
            if config.modality_dropout > 0:
                batch = _drop_modality(config, batch, state.noise_generator)
            batches.append(batch)
        audio = torch.cat([batch.audio for batch in batches], dim=2)
        visual = torch.cat([batch.visual for batch in batches], dim=2)
        with first.amp:
            logits = forward(audio, visual)
        logits = logits.float().unflatten(-1, (seeds, -1))  # (B[, T], seeds, classes)
        losses = torch.stack([_loss(logits.select(-2, s), batch.audio_digit)
                              for s, batch in enumerate(batches)])
        optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()
        if config.grad_clip > 0:
            clip_seed_grad_norms(model.parameters(), seeds, config.grad_clip)
        optimizer.step()
        loss_sums += losses.detach().double() * len(batches[0].audio)
    seconds = (time.perf_counter() - started) / seeds
    stacked_state, stacked_optimizer = model.state_dict(), optimizer.state_dict()
    records: list[EpochRecord | TrainingDiverged] = []
    for s, state in enumerate(runs):
        state.model.load_state_dict(seed_state(stacked_state, seeds, s))
        state.optimizer.load_state_dict(seed_optimizer_state(stacked_optimizer, seeds, s))
        mean_loss = float(loss_sums[s]) / len(state.train_split)
        if not math.isfinite(mean_loss):
            records.append(diverged(state.config, epoch, mean_loss))
            continue
        records.append(EpochRecord(epoch=epoch + 1, train_loss=mean_loss,
                                   val_accuracy=math.nan, lr=lr, epoch_seconds=seconds,
                                   elapsed_seconds=math.nan))
    return records
