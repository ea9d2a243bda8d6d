"""Training against what a careless or hostile user does: data changed under a checkpoint,
output folders that hold someone's files, truncated checkpoints, models too big to build."""

from __future__ import annotations

import contextlib
import dataclasses
import logging

import pytest
import torch
from train_files import config_file, tiny_config

from repsim.checkpoint import load_checkpoint, save_checkpoint
from repsim.cli import invoked_as
from repsim.data.fingerprint import is_legacy, legacy_fingerprint
from repsim.models.config import ModelConfig
from repsim.rundir import Metrics
from repsim.train import TrainConfig, TrainResult, run
from repsim.train.cli import main, summary_line


def cli_error(capsys, argv) -> str:
    """Run the train command, expecting one error line and exit status 2."""
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("error: ") and len(err.splitlines()) == 1, err
    return err


def interrupted_run(tmp_path, dataset):
    """A two-epoch run stopped after its first epoch; returns its config."""
    def interrupt(record, model):
        raise KeyboardInterrupt

    config = tiny_config(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        run(config, dataset=dataset, on_epoch=interrupt)
    return config


# --- the data under a checkpoint -------------------------------------------------------------

@pytest.mark.parametrize("change", ["mirrored images", "reversed and negated clips"])
def test_resuming_on_mirrored_or_reversed_data_is_refused(tmp_path, tiny_dataset, change):
    config = interrupted_run(tmp_path, tiny_dataset)
    field, function = {"mirrored images": ("images", lambda x: x.flip(-1)),
                       "reversed and negated clips": ("waveforms", lambda x: -x.flip(-1))}[change]
    changed = dataclasses.replace(tiny_dataset, splits={
        name: dataclasses.replace(split, **{field: function(getattr(split, field))})
        for name, split in tiny_dataset.splits.items()})
    checkpoint = tmp_path / "run" / "ckpt.pt"
    before = checkpoint.read_bytes()
    with pytest.raises(ValueError, match="trained on different data; its clips, audio frames "
                                         "or images differ"):
        run(config, dataset=changed, resume=checkpoint)
    assert checkpoint.read_bytes() == before


def test_a_checkpoint_from_before_content_digests_resumes_with_a_warning(tmp_path, tiny_dataset,
                                                                       caplog):
    config = interrupted_run(tmp_path, tiny_dataset)
    checkpoint = tmp_path / "run" / "ckpt.pt"
    old = load_checkpoint(checkpoint)
    old["data_fingerprint"] = legacy_fingerprint(tiny_dataset)
    save_checkpoint(checkpoint, old)
    with caplog.at_level(logging.WARNING, logger="repsim"):
        result = run(config, dataset=tiny_dataset, resume=checkpoint)
    assert "predates content digests" in caplog.text
    stored = load_checkpoint(result.checkpoint)["data_fingerprint"]
    assert not is_legacy(stored) and stored == tiny_dataset.fingerprint()
    assert torch.equal(next(iter(result.model.state_dict().values())),
                       next(iter(load_checkpoint(result.checkpoint)["model_state"].values())))


def test_resume_auto_from_the_command_line_refuses_changed_data(tmp_path, tiny_dataset, capsys,
                                                                monkeypatch):
    config = interrupted_run(tmp_path, tiny_dataset)
    mirrored = dataclasses.replace(tiny_dataset, splits={
        name: dataclasses.replace(split, images=split.images.flip(-1))
        for name, split in tiny_dataset.splits.items()})
    monkeypatch.setattr(type(config.data), "build", lambda self: mirrored)
    err = cli_error(capsys, ["--config", config_file(tmp_path, config), "--resume", "auto",
                             "--no-progress"])
    assert "trained on different data" in err


# --- checkpoints cut short ---------------------------------------------------------------------

def test_resume_auto_from_a_truncated_checkpoint_is_one_line(tmp_path, tiny_dataset, capsys):
    config = interrupted_run(tmp_path, tiny_dataset)
    checkpoint = tmp_path / "run" / "ckpt.pt"
    whole = checkpoint.read_bytes()
    checkpoint.write_bytes(whole[:len(whole) // 2])
    err = cli_error(capsys, ["--config", config_file(tmp_path, config), "--resume", "auto",
                             "--no-progress"])
    assert f"{checkpoint} is not a repsim checkpoint, or one cut short" in err
    assert checkpoint.read_bytes() == whole[:len(whole) // 2]


# --- an output folder that holds someone's files --------------------------------------------

def users_folder(tmp_path):
    """A folder of a user's own config.json and log.csv (not a repsim run)."""
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "config.json").write_text('{"learning_rate": 3, "note": "my settings"}\n')
    (folder / "log.csv").write_text("day,hours\nmonday,3\n")
    return folder


def contents(folder):
    return {path.name: path.read_bytes() for path in folder.iterdir()}


@pytest.mark.parametrize("resume", [None, "auto"])
def test_out_dir_onto_a_users_files_is_refused_without_overwrite(tmp_path, capsys, resume):
    folder = users_folder(tmp_path)
    before = contents(folder)
    config = tiny_config(tmp_path, "mine")
    err = cli_error(capsys, ["--config", config_file(tmp_path, config), "--out-dir",
                             str(folder), "--no-progress",
                             *(["--resume", resume] if resume else [])])
    assert f"{folder} holds files that are not a run of this configuration" in err
    assert "config.json" in err and "--overwrite" in err
    assert contents(folder) == before


def test_out_dir_onto_a_run_of_another_configuration_is_refused(tmp_path, tiny_dataset):
    first = run(tiny_config(tmp_path, epochs=1), dataset=tiny_dataset)
    other = tiny_config(tmp_path, epochs=1, lr=5e-3)
    checkpoint = (first.run_dir / "ckpt.pt").read_bytes()
    (first.run_dir / "ckpt.pt").unlink()  # even without a checkpoint, its files stay
    with pytest.raises(ValueError, match="not a run of this configuration .* lr: 0.01 "
                                         r"\(there\) vs 0.005 \(now\)"):
        run(other, dataset=tiny_dataset)
    assert not (first.run_dir / "ckpt.pt").exists()
    assert checkpoint


def test_out_dir_that_is_empty_or_a_run_of_this_configuration_is_fine(tmp_path, tiny_dataset):
    empty = tmp_path / "run"
    empty.mkdir()
    (empty / ".lock").write_text("")  # hidden files (locks, temporaries) do not count
    config = tiny_config(tmp_path, epochs=1)
    result = run(config, dataset=tiny_dataset)
    assert result.run_dir == empty
    (result.run_dir / "ckpt.pt").unlink()  # killed before its checkpoint: started again
    again = run(config, dataset=tiny_dataset, resume="auto")
    assert again.metrics.epochs == 1


def test_overwrite_replaces_a_users_files(tmp_path, tiny_dataset):
    folder = users_folder(tmp_path)
    config = tiny_config(tmp_path, "mine", epochs=1)
    assert run(config, dataset=tiny_dataset, overwrite=True).run_dir == folder
    assert TrainConfig.from_json((folder / "config.json").read_text()) == config
    assert (folder / "log.csv").read_text().startswith("epoch,train_loss")


# --- a model too big to build -----------------------------------------------------------------

def test_a_model_whose_training_batch_exceeds_the_limit_is_refused_before_it_is_built(
        tmp_path, tiny_dataset, monkeypatch):
    """4096 channels in 8 layers: about 155 GB of weights and optimizer state alone."""
    def built(*args, **kwargs):
        raise AssertionError("the model was built")

    monkeypatch.setattr("repsim.train.loop.FusionConvLSTM", built)
    config = tiny_config(tmp_path, model=ModelConfig(layers=8, hidden=4096, fusion_layer=2))
    with pytest.raises(ValueError, match=r"a training batch needs about \d[\d,]* GiB .*at most "
                                         r"64 GiB is allowed"):
        run(config, dataset=tiny_dataset)
    assert not (tmp_path / "run").exists()


# --- the command's words ----------------------------------------------------------------------

@pytest.mark.parametrize(("fusion_layer", "layers", "words"), [
    (2, 1, "trained synthetic late fusion (k=2, after 1 layer) by concat"),
    (3, 2, "trained synthetic late fusion (k=3, after 2 layers) by concat"),
    (1, 2, "trained synthetic fusion layer 1 of 2 by concat"),
    (2, 3, "trained synthetic fusion layer 2 of 3 by concat"),
])
def test_the_summary_line_never_says_fusion_layer_2_of_1(tmp_path, fusion_layer, layers,
                                                         words):
    metrics = Metrics(run="r", dataset="synthetic", fusion_layer=fusion_layer, layers=layers,
                      seed=0, parameters=900, branch_hidden=None, clean_accuracy=0.5, noise=[],
                      removed={}, val_accuracy=0.5, epochs=1, train_seconds=3.0, config={},
                      versions={})
    line = summary_line(TrainResult(run_dir=tmp_path, checkpoint=tmp_path / "ckpt.pt",
                                    metrics=metrics, model=None, history=[]))
    assert line.startswith(words + " (900 parameters)"), line


@pytest.mark.parametrize(("typed", "report"), [(None, "python -m repsim.report"),
                                               ("repsim train", "repsim report"),
                                               ("python -m repsim train",
                                                "python -m repsim report")])
def test_help_names_the_report_command_as_the_user_types_commands(capsys, typed, report):
    with invoked_as(typed) if typed else contextlib.nullcontext(), \
            pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    last = out.strip().splitlines()[-1].strip()
    assert last.startswith(f"{report} runs/synthetic-f1-s0 runs/late"), last
    assert "runs its code" in " ".join(out.split())
