"""Training: config round trip, determinism, exact resume, outputs, and every bad input."""

from __future__ import annotations

import builtins
import csv
import dataclasses
import errno
import json
import logging
import math
import os
import pickle
import re
import resource
import signal
import subprocess
import sys
import time

import pytest
import torch
from checkpoint_files import HAND_EDITS, hand_edit
from paths import REPO_ROOT
from train_files import TINY_DATA, config_file, tiny_config

from repsim.checkpoint import dataset_from_checkpoint, load_checkpoint, model_from_checkpoint
from repsim.cli import STOPPED_STATUS
from repsim.data.config import DataConfig
from repsim.evaluate import Condition, accuracy
from repsim.models.fusion import ModelConfig
from repsim.rundir import Metrics
from repsim.train import TrainConfig, TrainingDiverged, TrainResult, lr_at, run
from repsim.train.cli import build_parser, config_from_args, main, summary_line
from repsim.train.config import config_differences


def states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_config_json_round_trip():
    config = TrainConfig(model=ModelConfig(layers=3, fusion_layer="late", match_params=True),
                         data=DataConfig(dataset="avmnist", data_dir="/x",
                                         options={"clip_seconds": 0.75}),
                         augment="both", augment_snr=(-5, 5), noise_snrs=(3, -3))
    text = config.to_json()
    assert TrainConfig.from_json(text) == config
    assert json.loads(text)["model"]["fusion_layer"] == 4
    with pytest.raises(ValueError, match="unknown train config field.*epoch_count"):
        TrainConfig.from_dict({"epoch_count": 3})


def test_learning_rate_schedule():
    config = TrainConfig(epochs=2, lr=0.1, warmup_epochs=0.5)
    steps = [lr_at(config, step, 10) for step in range(20)]
    assert steps[:5] == pytest.approx([0.02, 0.04, 0.06, 0.08, 0.1])
    for step in range(5, 20):
        progress = (step - 5) / 15
        assert steps[step] == pytest.approx(0.05 * (1 + math.cos(math.pi * progress)))


def test_same_seed_same_weights_and_resume_is_exact(tmp_path, tiny_dataset):
    """Augmentation on, so the noise generator's state must be carried across a resume."""
    options = {"augment": "both", "epochs": 2}
    first = run(tiny_config(tmp_path, "a", **options), dataset=tiny_dataset)
    second = run(tiny_config(tmp_path, "b", **options), dataset=tiny_dataset)
    assert states_equal(first.model.state_dict(), second.model.state_dict())

    def interrupt(record, model):
        if record.epoch == 1:
            raise KeyboardInterrupt

    interrupted = tiny_config(tmp_path, "c", **options)
    with pytest.raises(KeyboardInterrupt):
        run(interrupted, dataset=tiny_dataset, on_epoch=interrupt)
    assert load_checkpoint(tmp_path / "c" / "ckpt.pt")["epoch"] == 1
    resumed = run(interrupted, dataset=tiny_dataset, resume=tmp_path / "c" / "ckpt.pt")
    assert states_equal(resumed.model.state_dict(), first.model.state_dict())
    final_a = load_checkpoint(first.checkpoint)
    final_c = load_checkpoint(resumed.checkpoint)
    assert final_a["optimizer_state"]["state"].keys() == final_c["optimizer_state"]["state"].keys()
    for key, state in final_a["optimizer_state"]["state"].items():
        assert states_equal(state, final_c["optimizer_state"]["state"][key])
    assert final_c["metrics"]["clean_accuracy"] == final_a["metrics"]["clean_accuracy"]
    assert [row["train_loss"] for row in final_c["history"]] == [
        row["train_loss"] for row in final_a["history"]]

    other_seed = run(tiny_config(tmp_path, "d", seed=1, **options), dataset=tiny_dataset)
    assert other_seed.history[0]["train_loss"] != first.history[0]["train_loss"]
    assert not states_equal(other_seed.model.state_dict(), first.model.state_dict())


def test_run_directory_contents(tmp_path):
    config = tiny_config(tmp_path)
    result = run(config)
    files = sorted(p.name for p in result.run_dir.iterdir())
    assert files == ["ckpt.pt", "config.json", "log.csv", "metrics.json"]
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    for key in ("run", "dataset", "fusion_layer", "layers", "seed", "parameters",
                "clean_accuracy", "noise", "removed", "val_accuracy", "epochs",
                "train_seconds", "config", "versions"):
        assert key in metrics, key
    assert metrics["run"] == "run" and metrics["fusion_layer"] == 2
    assert metrics["parameters"] == result.model.parameter_count()
    assert [(e["noise"], e["snr_db"]) for e in metrics["noise"]] == [
        ("audio", 0.0), ("visual", 0.0), ("both", 0.0)]
    assert TrainConfig.from_dict(metrics["config"]) == config
    assert TrainConfig.from_json((result.run_dir / "config.json").read_text()) == config

    raw = torch.load(result.checkpoint, weights_only=True)
    assert raw["epoch"] == 2 and raw["metrics"] == metrics
    dataset = dataset_from_checkpoint(raw)
    assert dataset.fingerprint() == raw["data_fingerprint"]
    model = model_from_checkpoint(raw)
    test = dataset.splits["test"]
    assert metrics["clean_accuracy"] == accuracy(model, test, dataset.features)
    assert metrics["removed"]["audio"] == accuracy(model, test, dataset.features,
                                                   condition=Condition(remove="audio"))
    with open(result.run_dir / "log.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert float(rows[-1]["val_accuracy"]) == metrics["val_accuracy"]


def test_bf16_precision_on_the_cpu_trains_and_evaluates_in_bf16(tmp_path, tiny_dataset,
                                                                caplog):
    with caplog.at_level(logging.INFO, logger="repsim"):
        bf16 = run(tiny_config(tmp_path, "bf16", precision="bf16"), dataset=tiny_dataset)
    assert "device cpu, bf16 autocast" in caplog.text
    float32 = run(tiny_config(tmp_path, "f32"), dataset=tiny_dataset)
    assert float32.run_dir != bf16.run_dir
    assert not states_equal(bf16.model.state_dict(), float32.model.state_dict())
    assert all(v.dtype == torch.float32 for v in bf16.model.state_dict().values())
    test = tiny_dataset.splits["test"]
    condition = Condition(noise="audio", snr_db=0.0)
    assert bf16.metrics.noise[0]["accuracy"] == accuracy(
        bf16.model, test, tiny_dataset.features, condition=condition, amp=True)
    assert bf16.metrics.val_accuracy == accuracy(
        bf16.model, tiny_dataset.splits["val"], tiny_dataset.features, amp=True)


def test_cli_trains_and_prints_summary(tmp_path, capsys, caplog):
    config = tiny_config(tmp_path, epochs=1, model=ModelConfig(layers=1, hidden=2))
    out = tmp_path / "cli"
    with caplog.at_level(logging.INFO, logger="repsim"):
        code = main(["--config", config_file(tmp_path, config), "--fusion-layer", "late",
                     "--out-dir", str(out), "--no-progress", "--snrs", "inf", "-10"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert f"wrote {out}/" in captured.out
    assert "late fusion (k=2, after 1 layer)" in captured.out
    metrics = json.loads((out / "metrics.json").read_text())
    assert [e["snr_db"] for e in metrics["noise"]] == [-10.0, -10.0, -10.0]
    assert "epoch 1/1  train loss" in caplog.text and "val accuracy" in caplog.text


def test_data_options_join_those_of_the_config_file(tmp_path):
    config = tiny_config(tmp_path)
    args = build_parser().parse_args(["--config", config_file(tmp_path, config),
                                      "--data-option", "distractor_snr=3",
                                      "--data-option", "repetitions=2"])
    options = config_from_args(args).data.options
    assert options == {**TINY_DATA, "distractor_snr": 3, "repetitions": 2}


def test_help_shows_examples(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "examples:" in capsys.readouterr().out


def cli_error(capsys, argv) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("error: ") and "Traceback" not in err
    return err


@pytest.mark.parametrize(("argv", "message"), [
    (["--layers", "2", "--fusion-layer", "4"], r"fusion layer must be 1\.\.3"),
    (["--fusion-layer", "0"], "fusion layer must be"),
    (["--hidden", "0"], "hidden must be a positive integer"),
    (["--layers", "-1"], "layers must be a positive integer"),
    (["--epochs", "0"], "epochs must be a positive integer"),
    (["--batch-size", "-4"], "batch_size must be a positive integer"),
    (["--timesteps", "0"], "timesteps must be a positive integer"),
    (["--lr", "0"], "lr must be positive"),
    (["--data-option", "no_such=1"], r"dataset 'synthetic' has no option\(s\) no_such"),
    (["--threads", "0"], "threads must be at least 1, got 0"),
])
def test_bad_sizes_and_fusion_layer(tmp_path, capsys, argv, message):
    err = cli_error(capsys, [*argv, "--out-dir", str(tmp_path / "x"), "--no-progress"])
    assert re.search(message, err)
    assert not (tmp_path / "x").exists()


def test_unwritable_output_directory(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    config = config_file(tmp_path, tiny_config(tmp_path))
    err = cli_error(capsys, ["--config", config, "--out-dir", str(blocker / "run"),
                             "--no-progress"])
    assert "cannot write to output directory" in err and str(blocker / "run") in err


def test_existing_run_needs_resume_or_overwrite(tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "ckpt.pt").write_bytes(b"old")
    config = config_file(tmp_path, tiny_config(tmp_path))
    err = cli_error(capsys, ["--config", config, "--no-progress"])
    assert "already holds a checkpoint" in err and "--resume" in err
    assert (run_dir / "ckpt.pt").read_bytes() == b"old"


def test_resume_with_another_configuration_names_fields(tmp_path, capsys):
    config = tiny_config(tmp_path, epochs=1)
    run(config)
    changed = config_file(tmp_path, tiny_config(tmp_path, epochs=1, lr=5e-3,
                                                model=ModelConfig(layers=1, hidden=4,
                                                                  fusion_layer=2)))
    err = cli_error(capsys, ["--config", changed, "--no-progress", "--device", "cpu",
                             "--resume", str(tmp_path / "run" / "ckpt.pt")])
    assert "differing fields" in err and "model.hidden: 3 (checkpoint) vs 4 (now)" in err
    assert "lr: 0.01 (checkpoint) vs 0.005 (now)" in err
    assert "device" not in config_differences(config.to_dict(),
                                              tiny_config(tmp_path, device="cpu").to_dict())


def test_resume_from_a_file_that_is_not_a_checkpoint(tmp_path, capsys):
    bogus = tmp_path / "notes.pt"
    bogus.write_text("epoch 3 looked good\n")
    config = config_file(tmp_path, tiny_config(tmp_path))
    err = cli_error(capsys, ["--config", config, "--no-progress", "--resume", str(bogus)])
    assert f"{bogus} is not a repsim checkpoint" in err
    err = cli_error(capsys, ["--config", config, "--no-progress", "--resume",
                             str(tmp_path / "missing.pt")])
    assert "checkpoint not found" in err
    assert not (tmp_path / "run").exists()  # nothing is created before the checks pass


@pytest.mark.parametrize("edit", HAND_EDITS)
def test_resume_from_a_hand_edited_checkpoint(tmp_path, capsys, tiny_dataset, edit):
    config = tiny_config(tmp_path, epochs=1)
    run(config, dataset=tiny_dataset)
    edited = tmp_path / "edited.pt"
    message = hand_edit(tmp_path / "run" / "ckpt.pt", edited, edit)
    err = cli_error(capsys, ["--config", config_file(tmp_path, config), "--no-progress",
                             "--resume", str(edited)])
    assert len(err.splitlines()) == 1 and str(edited) in err and message in err


@pytest.mark.parametrize("recorded", ["more", "same", "absent"])
def test_resume_with_another_thread_count_warns(tmp_path, caplog, tiny_dataset, recorded):
    """CPU weights depend on the thread count; an older checkpoint (no count) gives no
    warning."""
    def interrupt(record, model):
        raise KeyboardInterrupt

    config = tiny_config(tmp_path, epochs=2)
    with pytest.raises(KeyboardInterrupt):
        run(config, dataset=tiny_dataset, on_epoch=interrupt)
    ckpt = torch.load(tmp_path / "run" / "ckpt.pt", weights_only=True)
    threads = torch.get_num_threads()
    assert ckpt["torch_threads"] == threads and isinstance(ckpt["cpu"], str)
    if recorded == "more":
        ckpt["torch_threads"] = threads + 1
    elif recorded == "absent":
        del ckpt["torch_threads"], ckpt["cpu"]
    edited = tmp_path / "edited.pt"
    torch.save(ckpt, edited)
    caplog.set_level(logging.INFO, logger="repsim.train")
    run(config, dataset=tiny_dataset, resume=edited)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    if recorded == "more":
        assert len(warnings) == 1 and "\n" not in warnings[0]
        assert f"trained with {threads + 1} torch threads, this run has {threads}" in warnings[0]
        assert "bitwise equality with an uninterrupted run is not guaranteed" in warnings[0]
        assert f"OMP_NUM_THREADS={threads + 1}" in warnings[0]
    else:
        assert warnings == []


class CreatesFile:
    """Unpickling this opens (creates) a marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return builtins.open, (self.marker, "w")


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_resume_from_a_code_running_pickle_is_refused(tmp_path, capsys):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"format": "repsim-checkpoint", "x": CreatesFile(marker)}))
    config = config_file(tmp_path, tiny_config(tmp_path))
    err = cli_error(capsys, ["--config", config, "--no-progress", "--resume", str(evil)])
    assert "is not a repsim checkpoint" in err
    assert not marker.exists()


def test_divergence_keeps_last_good_checkpoint(tmp_path, tiny_dataset):
    def poison(record, model):
        if record.epoch == 1:
            with torch.no_grad():
                model.readout.bias.fill_(math.nan)

    config = tiny_config(tmp_path, epochs=3)
    with pytest.raises(TrainingDiverged, match="diverged.*epoch 2.*last good checkpoint "
                                               r"\(epoch 1\)"):
        run(config, dataset=tiny_dataset, on_epoch=poison)
    ckpt = load_checkpoint(tmp_path / "run" / "ckpt.pt")
    assert ckpt["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in ckpt["model_state"].values())
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [
        "ckpt.pt", "config.json", "log.csv"]


def test_divergence_from_the_cli_exits_2(tmp_path, capsys):
    config = config_file(tmp_path, tiny_config(tmp_path, epochs=1, grad_clip=0.0))
    err = cli_error(capsys, ["--config", config, "--no-progress", "--lr", "1e37"])
    assert "training diverged" in err and "no checkpoint was written" in err
    assert not (tmp_path / "run" / "ckpt.pt").exists()
    assert not [p for p in (tmp_path / "run").iterdir() if p.name.startswith(".")]


def test_bad_config_values():
    with pytest.raises(ValueError, match="unknown dataset"):
        DataConfig(dataset="imagenet")
    with pytest.raises(ValueError, match="'seed' is a field of the data config itself"):
        DataConfig(options={"seed": 3})
    with pytest.raises(ValueError, match="augment must be"):
        TrainConfig(augment="video")
    with pytest.raises(ValueError, match="augment_snr"):
        TrainConfig(augment_snr=(10, -10))
    with pytest.raises(ValueError, match="noise_snrs"):
        TrainConfig(noise_snrs=(math.inf,))
    with pytest.raises(ValueError, match="device"):
        TrainConfig(device="tpu")
    with pytest.raises(ValueError, match="precision must be one of"):
        TrainConfig(precision="fp16")


def test_sigterm_keeps_the_last_epoch_says_so_and_resume_auto_finishes(tmp_path):
    # the signal goes at the first checkpoint: 40 epochs leave the child seconds to spare
    config = tiny_config(tmp_path, epochs=40)
    path = config_file(tmp_path, config)
    command = [sys.executable, "-m", "repsim.train", "--config", path, "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    child = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    checkpoint = tmp_path / "run" / "ckpt.pt"
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    child.send_signal(signal.SIGTERM)
    _, err = child.communicate(timeout=120)
    assert child.returncode == STOPPED_STATUS == 143
    lines = [line for line in err.splitlines() if line.startswith("stopped")]
    assert len(lines) == 1 and "stopped by SIGTERM" in lines[0]
    assert f"kept in {checkpoint}" in lines[0] and "--resume auto" in lines[0]
    epoch = load_checkpoint(checkpoint)["epoch"]
    assert 1 <= epoch < 40
    done = subprocess.run([*command, "--resume", "auto"], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert f"resuming {checkpoint} at epoch {epoch}" in done.stderr
    assert load_checkpoint(checkpoint)["complete"]


def test_threads_option_trains_on_that_many_torch_threads(tmp_path):
    path = config_file(tmp_path, tiny_config(tmp_path, epochs=1))
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    done = subprocess.run([sys.executable, "-m", "repsim.train", "--config", path, "--threads",
                           "1", "--no-progress"], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert load_checkpoint(tmp_path / "run" / "ckpt.pt")["torch_threads"] == 1


def _file_size_limit(limit: int):
    """A child-process hook that caps the size of any file it writes (a full disk)."""
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def test_a_full_disk_is_one_line_and_exit_2(tmp_path):
    """The file-size limit stands in for a full disk: the checkpoint cannot be written."""
    path = config_file(tmp_path, tiny_config(tmp_path, epochs=1))
    done = subprocess.run([sys.executable, "-m", "repsim.train", "--config", path, "--no-progress"],
                          cwd=REPO_ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"},
                          capture_output=True, text=True, timeout=300,
                          preexec_fn=_file_size_limit(20_000))
    assert done.returncode == 2, done.stderr
    error = done.stderr.strip().splitlines()[-1]
    assert error.startswith("error: cannot write ") and "ckpt.pt: File too large" in error
    assert "Traceback" not in done.stderr
    assert not list((tmp_path / "run").glob(".ckpt.pt.tmp-*"))


def test_a_second_training_in_the_same_directory_fails_at_once_naming_the_first(tmp_path):
    config = tiny_config(tmp_path, epochs=300)
    path = config_file(tmp_path, config)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen([sys.executable, "-m", "repsim.train", "--config", path,
                              "--no-progress"], cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "run" / "ckpt.pt").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        first.send_signal(signal.SIGSTOP)  # alive and holding the run, its core left free
        second = subprocess.run([sys.executable, "-m", "repsim.train", "--config", path,
                                 "--no-progress", "--overwrite"], cwd=REPO_ROOT, env=env,
                                capture_output=True, text=True, timeout=120)
        assert second.returncode == 2
        error = second.stderr.strip().splitlines()[-1]
        assert error.startswith(f"error: {tmp_path / 'run'} is being written by ")
        assert f"PID {first.pid} since" in error
        assert first.poll() is None  # the first run goes on
    finally:
        first.kill()
        first.wait()


def test_summary_line_says_when_there_is_no_validation_accuracy(tmp_path):
    metrics = Metrics(run="r", dataset="synthetic", fusion_layer=1, layers=2, seed=0,
                      parameters=28_000, branch_hidden=None, clean_accuracy=0.5, noise=[],
                      removed={}, val_accuracy=None, epochs=1, train_seconds=3.0, config={},
                      versions={})
    result = TrainResult(run_dir=tmp_path, checkpoint=tmp_path / "ckpt.pt", metrics=metrics,
                         model=None, history=[])
    assert "clean test accuracy 50.0% (val none); wrote" in summary_line(result)
    result.metrics = dataclasses.replace(metrics, val_accuracy=0.25)
    assert "clean test accuracy 50.0% (val 25.0%); wrote" in summary_line(result)


class _FullDiskFile:
    """A text file on a full file system, as Python's buffered files behave there: ``write``
    fills the buffer, and ``flush`` (or ``close``, which flushes) fails with ENOSPC while the
    buffer holds anything; ``close`` closes the descriptor either way."""

    def __init__(self, handle):
        self._handle, self._pending = handle, ""

    def __getattr__(self, name):
        return getattr(self._handle, name)

    def write(self, text: str) -> int:
        self._pending += text
        return len(text)

    def flush(self) -> None:
        if self._pending:
            raise OSError(errno.ENOSPC, "No space left on device")

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._handle.close()


def test_a_full_disk_at_the_run_lock_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch):
    """The lock file's holder line is the first thing training writes (provenance.claim)."""
    from repsim import provenance

    def full_disk_open(path, mode="r", *args, **kwargs):
        handle = builtins.open(path, mode, *args, **kwargs)
        return _FullDiskFile(handle) if "a" in mode else handle

    monkeypatch.setattr(provenance, "open", full_disk_open, raising=False)
    config = config_file(tmp_path, tiny_config(tmp_path, epochs=1))
    assert main(["--config", config, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err == (f"error: cannot write {tmp_path / 'run'}: No space left on device; nothing "
                   f"was written there (a file already at that path is unchanged)\n")
    assert not (tmp_path / "run" / ".lock").exists()
    monkeypatch.undo()  # the disk has room again: the lock is free and training runs
    assert main(["--config", config, "--no-progress"]) == 0
