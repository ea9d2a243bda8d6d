"""Checkpoints: round trip, plain torch.load(weights_only=True), and refusing what is not one."""

from __future__ import annotations

import builtins
import os
import pickle
import re

import pytest
import torch
from checkpoint_files import HAND_EDITS, hand_edit

from repsim.checkpoint import (
    FORMAT,
    FORMAT_VERSION,
    load_checkpoint,
    model_from_checkpoint,
    save_checkpoint,
)
from repsim.models.fusion import FusionConvLSTM, ModelConfig
from repsim.train.loop import _rng_state


def payload(model: FusionConvLSTM, **changes) -> dict:
    values = {"format": FORMAT, "format_version": FORMAT_VERSION,
              "config": {"model": model.config.to_dict(), "data": {"dataset": "synthetic"}},
              "model_state": model.state_dict(), "optimizer_state": {}, "epoch": 3,
              "metrics": {"clean_accuracy": 0.5}, "versions": {"torch": str(torch.__version__)},
              "data_fingerprint": "abc", "history": [], "complete": True,
              "rng_state": _rng_state(torch.Generator(), torch.Generator())}
    values.update(changes)
    return values


class CreatesFile:
    """Unpickling this object opens (creates) a marker file: code run by a pickle."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return builtins.open, (self.marker, "w")


class RunsCommand:
    """Unpickling this runs a shell command (``os.system``) that creates a marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


@pytest.fixture
def model():
    torch.manual_seed(0)
    return FusionConvLSTM(ModelConfig(layers=2, hidden=3, fusion_layer=2))


def test_round_trip_gives_the_same_model(tmp_path, model):
    path = save_checkpoint(tmp_path / "ckpt.pt", payload(model))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt"]  # no temporary left
    ckpt = load_checkpoint(path)
    assert ckpt["epoch"] == 3 and ckpt["metrics"] == {"clean_accuracy": 0.5}
    raw = torch.load(path, weights_only=True)  # loadable without repsim's loader
    assert raw["format"] == FORMAT
    restored = model_from_checkpoint(ckpt)
    assert not restored.training
    audio, visual = torch.randn(2, 3, 1, 5, 5), torch.randn(2, 3, 1, 5, 5)
    with torch.no_grad():
        assert torch.equal(restored(audio, visual), model.eval()(audio, visual))


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "nope.pt")


@pytest.mark.parametrize("content", [b"hello, not a checkpoint\n", b"", b"PK\x03\x04broken"])
def test_non_checkpoint_bytes(tmp_path, content):
    path = tmp_path / "file.pt"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="is not a repsim checkpoint"):
        load_checkpoint(path)


def test_torch_file_without_marker_or_keys(tmp_path, model):
    torch.save({"state_dict": model.state_dict()}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="is not a repsim checkpoint.*format"):
        load_checkpoint(tmp_path / "other.pt")
    incomplete = payload(model)
    del incomplete["metrics"]
    torch.save(incomplete, tmp_path / "incomplete.pt")
    with pytest.raises(ValueError, match="missing metrics"):
        load_checkpoint(tmp_path / "incomplete.pt")
    torch.save(payload(model, format_version=FORMAT_VERSION + 1), tmp_path / "newer.pt")
    with pytest.raises(ValueError, match="format version"):
        load_checkpoint(tmp_path / "newer.pt")


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("writer", ["pickle", "torch.save"])
def test_code_running_pickle_is_refused_without_running(tmp_path, model, writer):
    marker = tmp_path / "pwned"
    evil = payload(model, metrics=CreatesFile(marker))
    path = tmp_path / "evil.pt"
    if writer == "pickle":
        path.write_bytes(pickle.dumps(evil))
    else:
        torch.save(evil, path)
    with pytest.raises(ValueError, match="is not a repsim checkpoint"):
        load_checkpoint(path)
    assert not marker.exists()
    # The file really is dangerous: an unrestricted load runs the code.
    if writer == "pickle":
        pickle.loads(path.read_bytes())
    else:
        torch.load(path, weights_only=False)
    assert marker.exists()


def test_refusal_names_the_global_and_does_not_advise_an_unsafe_load(tmp_path, model):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save(payload(model, metrics=RunsCommand(marker)), path)
    with pytest.raises(ValueError) as refused:
        load_checkpoint(path)
    message = str(refused.value)
    assert f"{os.system.__module__}.system" in message  # posix.system on Linux
    assert "loading it unsafely (weights_only=False) would run code from the file" in message
    assert "will likely succeed" not in message and "\n" not in message
    assert not marker.exists()


@pytest.mark.parametrize("edit", HAND_EDITS)
def test_hand_edited_checkpoint_gives_one_clear_error(tmp_path, model, edit):
    path = save_checkpoint(tmp_path / "ckpt.pt", payload(model))
    message = hand_edit(path, path, edit)
    with pytest.raises(ValueError) as damaged:
        load_checkpoint(path)
    assert str(path) in str(damaged.value) and message in str(damaged.value)
    assert "\n" not in str(damaged.value)


@pytest.mark.parametrize(("changes", "message"), [
    ({"epoch": -1}, "epoch must be non-negative"),
    ({"epoch": True}, "epoch must be of type int, got bool"),
    ({"complete": 1}, "complete must be of type bool"),
    ({"data_fingerprint": None}, "data_fingerprint must be of type str"),
    ({"history": {}}, "history must be of type list"),
    ({"config": {"model": {"layers": 2, "hidden": 3, "fusion_layer": 2}}},
     "config.data is not a valid data configuration"),
    ({"config": {"model": {"hidden": "3"}, "data": {}}}, "config.model is not a valid"),
    ({"model_state": {"readout.weight": [0.0]}}, "model_state['readout.weight'] must be of type "
                                                 "Tensor"),
])
def test_schema_problems_are_named(tmp_path, model, changes, message):
    path = tmp_path / "ckpt.pt"
    torch.save(payload(model, **changes), path)
    with pytest.raises(ValueError, match=f"{path} is a damaged repsim checkpoint: .*"
                                         + re.escape(message)):
        load_checkpoint(path)


def test_weights_of_another_model_are_named(tmp_path, model):
    state = dict(model.state_dict())
    state["extra.weight"] = torch.zeros(1)
    torch.save(payload(model, model_state=state), tmp_path / "extra.pt")
    with pytest.raises(ValueError, match="'extra.weight', which the model of config.model"):
        load_checkpoint(tmp_path / "extra.pt")
    del state["extra.weight"], state["readout.bias"]
    torch.save(payload(model, model_state=state), tmp_path / "fewer.pt")
    with pytest.raises(ValueError, match="lacks 'readout.bias'"):
        load_checkpoint(tmp_path / "fewer.pt")


def test_save_refuses_bad_payloads_and_leaves_nothing(tmp_path, model):
    bad = payload(model)
    del bad["data_fingerprint"]
    with pytest.raises(ValueError, match="data_fingerprint"):
        save_checkpoint(tmp_path / "ckpt.pt", bad)
    with pytest.raises(ValueError, match="format"):
        save_checkpoint(tmp_path / "ckpt.pt", payload(model, format="other"))
    with pytest.raises(ValueError, match="unsupported global torch.*TorchVersion"):
        save_checkpoint(tmp_path / "ckpt.pt", payload(model, versions=torch.__version__))
    assert list(tmp_path.iterdir()) == []


def test_failed_overwrite_keeps_the_previous_checkpoint(tmp_path, model):
    path = save_checkpoint(tmp_path / "ckpt.pt", payload(model, epoch=1))
    with pytest.raises(ValueError, match="refuses"):
        save_checkpoint(path, payload(model, epoch=2, metrics=CreatesFile(tmp_path / "m")))
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]


@pytest.mark.parametrize("kept", [100, 5_000, 12_345, 25_000, 40_000])
def test_a_truncated_checkpoint_is_one_line_saying_so(tmp_path, kept):
    """A copy cut short anywhere (an interrupted scp, a full disk under another tool): no
    OSError traceback from torch's zip reader."""
    torch.manual_seed(0)
    wider = FusionConvLSTM(ModelConfig(layers=2, hidden=8, fusion_layer=2))
    whole = save_checkpoint(tmp_path / "whole.pt", payload(wider)).read_bytes()
    assert len(whole) > 40_000 and whole.startswith(b"PK\x03\x04")
    cut = tmp_path / "cut.pt"
    cut.write_bytes(whole[:kept])
    with pytest.raises(ValueError) as error:
        load_checkpoint(cut)
    message = str(error.value)
    assert message.startswith(f"{cut} is not a repsim checkpoint, or one cut short")
    assert f"ends after {kept:,} bytes" in message
    assert "\n" not in message

