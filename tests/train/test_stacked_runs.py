"""Stacked seeds: each run's directory as its run alone writes it (to float32 tolerance),
marked stacked; a diverging seed stops alone; only runs that differ in their seed stack."""

import json

import pytest
import torch
from train_files import tiny_config

from repsim.checkpoint import load_checkpoint, save_checkpoint
from repsim.rundir import CHECKPOINT_FILE, CONFIG_FILE, METRICS_FILE, read_log
from repsim.train import run as train
from repsim.train.loop import TrainingDiverged, TrainingStopped
from repsim.train.stacked import check_stackable
from repsim.train.stacked import run as train_stacked

SEEDS = (0, 1, 2)
OPTIONS = {"epochs": 2, "augment": "both", "modality_dropout": 0.2, "stack_seeds": True,
           "grad_clip": 0.5}


def _configs(tmp_path, where, **changes):
    return [tiny_config(tmp_path / where, f"s{seed}", seed=seed, **{**OPTIONS, **changes})
            for seed in SEEDS]


def test_stacked_runs_write_what_each_run_alone_writes(tmp_path, tiny_dataset):
    stacked = train_stacked(_configs(tmp_path, "stacked"), tiny_dataset)
    alone = [train(config, dataset=tiny_dataset) for config in _configs(tmp_path, "alone")]
    for mine, theirs in zip(stacked, alone, strict=True):
        assert sorted(p.name for p in mine.run_dir.iterdir()) == sorted(
            p.name for p in theirs.run_dir.iterdir())
        config = json.loads((mine.run_dir / CONFIG_FILE).read_text())
        assert config.pop("out_dir").endswith(mine.run_dir.name)
        expected = json.loads((theirs.run_dir / CONFIG_FILE).read_text())
        expected.pop("out_dir")
        assert config == expected
        metrics = json.loads((mine.run_dir / METRICS_FILE).read_text())
        other = json.loads((theirs.run_dir / METRICS_FILE).read_text())
        assert (metrics.pop("stacked"), other.pop("stacked")) == (len(SEEDS), None)
        for record in (metrics, other):
            for key in ("train_seconds", "versions", "config"):
                record.pop(key)
        assert metrics == other  # every accuracy, the same stimuli right and wrong
        mine_log, their_log = read_log(mine.run_dir), read_log(theirs.run_dir)
        for a, b in zip(mine_log, their_log, strict=True):
            assert a["val_accuracy"] == b["val_accuracy"] and a["lr"] == b["lr"]
            assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
        mine_ckpt, their_ckpt = (load_checkpoint(r.checkpoint) for r in (mine, theirs))
        assert mine_ckpt["epoch"] == their_ckpt["epoch"] and mine_ckpt["complete"]
        for key, value in their_ckpt["model_state"].items():
            torch.testing.assert_close(mine_ckpt["model_state"][key], value, rtol=1e-3,
                                       atol=1e-4)
        for generator in ("shuffle", "noise", "torch"):  # its own random streams, as alone
            assert torch.equal(mine_ckpt["rng_state"][generator],
                               their_ckpt["rng_state"][generator]), generator
        states = their_ckpt["optimizer_state"]["state"]
        for index, entry in states.items():
            for key, value in entry.items():
                torch.testing.assert_close(mine_ckpt["optimizer_state"]["state"][index][key],
                                           value, rtol=1e-3, atol=1e-5)
    again = train_stacked(_configs(tmp_path, "stacked"), tiny_dataset)  # finished: as it is
    assert [r.metrics.clean_accuracy for r in again] == [r.metrics.clean_accuracy
                                                          for r in stacked]


def test_a_diverging_seed_stops_alone(tmp_path, tiny_dataset):
    """Seed 1 resumed from a checkpoint whose optimiser state makes its weights NaN at the
    next step: its loss is NaN, it fails as alone (its last good checkpoint kept), and the
    other seeds finish as they would have without it."""
    first = _configs(tmp_path, "poisoned", epochs=3)
    reference = _configs(tmp_path, "clean", epochs=3)
    for configs in (first, reference):  # one epoch (4 steps of 8 pairs) stacked, stopped
        with pytest.raises(TrainingStopped, match="stopped in epoch 2"):
            train_stacked(configs, tiny_dataset, should_stop=_after_steps(4))
    path = first[1].run_dir / CHECKPOINT_FILE
    ckpt = load_checkpoint(path)
    assert ckpt["epoch"] == 1
    for entry in ckpt["optimizer_state"]["state"].values():
        entry["exp_avg_sq"].fill_(-1.0)  # its next AdamW step makes its weights NaN
    save_checkpoint(path, ckpt)
    outcomes = train_stacked(first, tiny_dataset)
    finished = train_stacked(reference, tiny_dataset)
    assert isinstance(outcomes[1], TrainingDiverged)
    assert "training diverged" in str(outcomes[1]) and str(path) in str(outcomes[1])
    assert load_checkpoint(path)["epoch"] == 1 and len(read_log(first[1].run_dir)) == 1
    for s in (0, 2):
        assert outcomes[s].metrics.clean_accuracy == finished[s].metrics.clean_accuracy
        assert [row["val_accuracy"] for row in outcomes[s].history] == [
            row["val_accuracy"] for row in finished[s].history]


def _after_steps(steps):
    count = {"n": 0}

    def stop():
        count["n"] += 1
        return count["n"] > steps
    return stop


def test_only_runs_that_differ_in_their_seed_stack(tmp_path):
    configs = _configs(tmp_path, "x")
    with pytest.raises(ValueError, match="seed 1 differs in lr"):
        check_stackable([configs[0], tiny_config(tmp_path / "x", "s1", seed=1,
                                                 **{**OPTIONS, "lr": 0.1})])
    with pytest.raises(ValueError, match="distinct seeds"):
        check_stackable([configs[0], configs[0]])
    check_stackable(configs)
