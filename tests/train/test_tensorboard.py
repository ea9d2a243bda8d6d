"""TensorBoard logging through ``on_epoch``: what TensorBoard's own reader gets back, no
duplicate epochs after a resume or a restart, and a missing package refused before training."""

from __future__ import annotations

import csv
import json
import sys

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2
from train_files import config_file, tiny_config

from repsim.study.spec import load_study
from repsim.train import TensorBoardLogger, run
from repsim.train.cli import main
from repsim.train.tensorboard import HPARAMS_RUN, SCALARS


def read_events(folder):
    events = EventAccumulator(str(folder))
    events.Reload()
    return events


def logged(run_dir) -> dict[str, list[tuple[int, float]]]:
    """``{tag: [(step, value), ...]}`` of the run's per-epoch scalars, as TensorBoard reads
    them (purged events left out)."""
    events = read_events(run_dir / "tensorboard")
    return {tag: [(event.step, event.value) for event in events.Scalars(tag)]
            for tag in events.Tags()["scalars"]}


def log_csv(run_dir) -> dict[str, list[tuple[int, float]]]:
    """The same shape from ``log.csv``, values rounded to float32 as TensorBoard stores them."""
    with open(run_dir / "log.csv") as handle:
        rows = list(csv.DictReader(handle))
    return {tag: [(int(row["epoch"]), float(np.float32(row[tag]))) for row in rows]
            for tag in SCALARS}


def hparams_sessions(run_dir) -> list:
    """Every hyper-parameter record (session start) in the run's hparams folder."""
    folder = run_dir / "tensorboard" / HPARAMS_RUN
    sessions = []
    for path in sorted(folder.iterdir()):
        content = read_events(path).PluginTagToContent("hparams")
        if "_hparams_/session_start_info" in content:
            data = plugin_data_pb2.HParamsPluginData.FromString(
                content["_hparams_/session_start_info"])
            sessions.append(data.session_start_info.hparams)
    return sessions


def test_a_one_epoch_run_logs_the_values_of_log_csv_and_its_hyperparameters(tmp_path, capsys):
    config = tiny_config(tmp_path, epochs=1)
    code = main(["--config", config_file(tmp_path, config), "--logger", "tensorboard",
                 "--no-progress"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    run_dir = config.run_dir
    assert captured.out.rstrip().endswith(f"; TensorBoard events in {run_dir}/tensorboard/")
    assert logged(run_dir) == log_csv(run_dir)
    assert set(logged(run_dir)) == {"train_loss", "val_accuracy", "lr"}

    (hparams,) = hparams_sessions(run_dir)
    assert hparams["model.hidden"].number_value == 3
    assert hparams["data.dataset"].string_value == "synthetic"
    assert hparams["data.options.train_pairs"].number_value == 32
    assert hparams["noise_snrs"].string_value == "0"
    assert hparams["compile"].string_value == "false"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    final = read_events(run_dir / "tensorboard" / HPARAMS_RUN)
    values = {tag: final.Scalars(tag)[0].value for tag in final.Tags()["scalars"]}
    expected = {"accuracy/clean": metrics["clean_accuracy"],
                "accuracy/val": metrics["val_accuracy"],
                "accuracy/audio_removed": metrics["removed"]["audio"],
                "accuracy/visual_removed": metrics["removed"]["visual"],
                **{f"accuracy/{kind}_snr0": next(entry["accuracy"] for entry in metrics["noise"]
                                                 if entry["noise"] == kind)
                   for kind in ("audio", "visual", "both")}}
    assert values == {tag: float(np.float32(value)) for tag, value in expected.items()}


def test_resume_restart_and_a_finished_run_log_every_epoch_once(tmp_path, tiny_dataset):
    config = tiny_config(tmp_path, epochs=2)

    def train(**options):
        with TensorBoardLogger(config) as logger:
            result = run(config, dataset=tiny_dataset, on_epoch=logger, **options)
            logger.finish(result.metrics)

    def stop_after_first_epoch(record, model):
        logger(record, model)
        if record.epoch == 1:
            raise KeyboardInterrupt

    with TensorBoardLogger(config) as logger, pytest.raises(KeyboardInterrupt):
        run(config, dataset=tiny_dataset, on_epoch=stop_after_first_epoch)
    assert [step for step, _ in logged(config.run_dir)["train_loss"]] == [1]

    train(resume="auto")  # continues at epoch 2
    first = logged(config.run_dir)
    assert first == log_csv(config.run_dir)
    assert [step for step, _ in first["train_loss"]] == [1, 2]
    train(resume="auto")  # already finished: nothing trained, the record replaced
    assert logged(config.run_dir) == first
    assert len(hparams_sessions(config.run_dir)) == 1

    (config.run_dir / "ckpt.pt").unlink()
    train(overwrite=True)  # trained again from epoch 1: the old events are purged
    assert logged(config.run_dir) == log_csv(config.run_dir) == first
    assert len(hparams_sessions(config.run_dir)) == 1


def test_without_tensorboard_the_cli_says_how_to_install_it_before_training(
        tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # import tensorboard fails
    config = tiny_config(tmp_path, epochs=1)
    with pytest.raises(ImportError, match=r"pip install -e '\.\[tensorboard\]'"):
        TensorBoardLogger(config)
    code = main(["--config", config_file(tmp_path, config), "--logger", "tensorboard"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err == ["error: TensorBoard logging needs the tensorboard package: "
                   "pip install -e '.[tensorboard]'"]
    assert not config.run_dir.exists()  # nothing was trained


def test_an_unknown_logger_is_one_line_and_exit_2(tmp_path, capsys):
    config = tiny_config(tmp_path, epochs=1)
    with pytest.raises(SystemExit) as exited:
        main(["--config", config_file(tmp_path, config), "--logger", "wandb"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exited.value.code == 2
    assert "argument --logger: invalid choice: 'wandb'" in err[-1]
    assert not config.run_dir.exists()


def test_a_study_refuses_a_logger_among_its_training_options(tmp_path):
    study = tmp_path / "s.toml"
    study.write_text('[study]\nseeds = [0]\n[train]\nlogger = "tensorboard"\n'
                     '[datasets.synthetic]\n[protocols.clean]\n')
    with pytest.raises(ValueError, match=r"unknown key train\.logger \(allowed here: epochs"):
        load_study(study)
