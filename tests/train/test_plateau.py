"""stop_at_plateau: the rule, the epoch a run stops at, the best epoch's model kept (also
across a resume), off by default; and the seconds a run reports by stage."""

import json

import pytest
import torch
from train_files import tiny_config

from repsim.checkpoint import load_checkpoint, model_from_checkpoint
from repsim.evaluate import accuracy
from repsim.rundir import CHECKPOINT_FILE, METRICS_FILE, read_log
from repsim.train import TrainConfig, TrainingStopped
from repsim.train import run as train
from repsim.train.cli import build_parser, config_from_args
from repsim.train.loop import TRAIN_STAGES, at_plateau


def _history(values):
    return [{"val_accuracy": value} for value in values]


@pytest.mark.parametrize(("values", "patience", "gain", "expected"), [
    ([0.5, 0.7, 0.70, 0.705], 2, 0.01, True),  # 0.705 <= 0.70 + 0.01
    ([0.5, 0.7, 0.70, 0.75], 2, 0.01, False),  # 0.75 > 0.71
    ([0.5, 0.6, 0.65, 0.70], 2, 0.01, False),
    ([0.8, 0.7, 0.75], 2, 0.0, True),  # neither of the last two beats 0.8
    ([0.8, 0.7], 2, 0.0, False),  # too few epochs to tell
    ([0.5, 0.5], 1, 0.0, True)])
def test_the_plateau_rule(values, patience, gain, expected):
    config = TrainConfig(stop_at_plateau=True, plateau_patience=patience, plateau_gain=gain)
    # the rule written out: the best of the last `patience` epochs gains at most `gain`
    # over the best before them
    by_hand = len(values) > patience and (max(values[-patience:]) - max(values[:-patience])
                                          <= gain + 1e-12)
    assert at_plateau(_history(values), config) is expected is by_hand


def test_off_by_default_and_refused_values():
    config = TrainConfig()
    assert (config.stop_at_plateau, config.stack_seeds) == (False, False)
    with pytest.raises(ValueError, match="plateau_gain must be a number in"):
        TrainConfig(plateau_gain=1.5)
    with pytest.raises(ValueError, match="plateau_patience must be a positive"):
        TrainConfig(plateau_patience=0)
    with pytest.raises(ValueError, match="stop_at_plateau must be true or false"):
        TrainConfig(stop_at_plateau="yes")
    args = build_parser().parse_args(["--stop-at-plateau", "--plateau-patience", "3",
                                      "--plateau-gain", "0.02"])
    parsed = config_from_args(args)
    assert (parsed.stop_at_plateau, parsed.plateau_patience, parsed.plateau_gain) == (
        True, 3, 0.02)


def test_a_run_stops_at_its_plateau_and_keeps_its_best_epoch(tmp_path, tiny_dataset):
    """No gain of 50 points within one epoch: the run stops after its second epoch and keeps
    the better of its two epochs (the first of equals); it trains those epochs exactly as a
    run without the option does."""
    snapshots = {}

    def keep(record, model):
        snapshots[record.epoch] = {k: v.clone() for k, v in model.state_dict().items()}

    config = tiny_config(tmp_path, "plateau", epochs=6, stop_at_plateau=True,
                         plateau_patience=1, plateau_gain=0.5)
    result = train(config, dataset=tiny_dataset, on_epoch=keep)
    log = read_log(config.run_dir)
    values = [row["val_accuracy"] for row in log]
    best = values.index(max(values)) + 1
    metrics = json.loads((config.run_dir / METRICS_FILE).read_text())
    assert len(log) == 2 and metrics["stopped_epoch"] == 2 and metrics["epochs"] == 6
    assert metrics["best_epoch"] == best and metrics["val_accuracy"] == values[best - 1]
    ckpt = load_checkpoint(config.run_dir / CHECKPOINT_FILE)
    assert ckpt["complete"] and ckpt["epoch"] == 2
    for key, value in ckpt["model_state"].items():
        assert torch.equal(value, snapshots[best][key]), key
    kept = model_from_checkpoint(ckpt)
    assert accuracy(kept, tiny_dataset.splits["val"], tiny_dataset.features,
                    seed=config.seed) == values[best - 1]
    assert set(result.seconds) == set(TRAIN_STAGES)
    assert result.seconds["training"] == pytest.approx(log[-1]["elapsed_seconds"])
    assert all(value > 0 for value in result.seconds.values())
    plain = train(tiny_config(tmp_path, "plain", epochs=6), dataset=tiny_dataset)
    assert [row["val_accuracy"] for row in plain.history[:2]] == values
    assert plain.metrics.stopped_epoch is None and plain.metrics.best_epoch is None


def test_a_plateau_run_resumed_keeps_the_best_epoch_of_before_the_interruption(
        tmp_path, tiny_dataset):
    """Stopped in its third epoch and resumed: the same log, metrics and kept weights as the
    run that was not interrupted (the best epoch's weights travel in the checkpoint)."""
    options = {"epochs": 5, "stop_at_plateau": True, "plateau_patience": 3,
               "plateau_gain": 0.5}
    whole = train(tiny_config(tmp_path, "whole", **options), dataset=tiny_dataset)
    config = tiny_config(tmp_path, "resumed", **options)
    steps = {"n": 0}

    def stop_in_epoch_three():
        steps["n"] += 1
        return steps["n"] > 2 * 4 + 1  # 4 steps an epoch (32 pairs, batch 8)

    with pytest.raises(TrainingStopped):
        train(config, dataset=tiny_dataset, should_stop=stop_in_epoch_three)
    resumed = train(config, resume="auto", dataset=tiny_dataset)
    assert resumed.history == [{**row, "epoch_seconds": r["epoch_seconds"],
                                "elapsed_seconds": r["elapsed_seconds"]}
                               for row, r in zip(whole.history, resumed.history, strict=True)]
    assert resumed.metrics.stopped_epoch == whole.metrics.stopped_epoch == 4
    assert resumed.metrics.best_epoch == whole.metrics.best_epoch
    assert resumed.metrics.clean_accuracy == whole.metrics.clean_accuracy
    mine = load_checkpoint(config.run_dir / CHECKPOINT_FILE)["model_state"]
    for key, value in load_checkpoint(whole.checkpoint)["model_state"].items():
        assert torch.equal(mine[key], value), key
