"""repsim.extract: recorded states, probe-set stability, pooling, the CLI and its bad inputs."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from checkpoint_files import HAND_EDITS, hand_edit
from paths import REPO_ROOT
from test_probeset import H, T, W, tiny_dataset

from repsim import activations, extract
from repsim import checkpoint as checkpoint_module
from repsim.checkpoint import (
    FORMAT,
    FORMAT_VERSION,
    load_checkpoint,
    model_from_checkpoint,
    save_checkpoint,
)
from repsim.data.config import DataConfig
from repsim.models.fusion import FusionConvLSTM, ModelConfig
from repsim.probeset import ProbeSet
from repsim.provenance import Busy, claim, library_versions, sha256_file
from repsim.train import TrainConfig
from repsim.train.loop import _rng_state

REPO = REPO_ROOT


def make_checkpoint(path: Path, dataset, fusion_layer: int, seed: int = 0,
                    readout: str = "last") -> Path:
    """An untrained (seeded) 2-layer, 4-channel model saved as a real repsim checkpoint."""
    config = TrainConfig(model=ModelConfig(layers=2, hidden=4, fusion_layer=fusion_layer,
                                           readout=readout),
                         data=DataConfig(dataset="synthetic", timesteps=T, height=H, width=W),
                         seed=seed)
    torch.manual_seed(seed)
    model = FusionConvLSTM(config.model)
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_checkpoint(path, {
        "format": FORMAT, "format_version": FORMAT_VERSION, "config": config.to_dict(),
        "model_state": model.state_dict(), "optimizer_state": {}, "epoch": 0, "metrics": {},
        "versions": library_versions(), "data_fingerprint": dataset.fingerprint(),
        "history": [], "rng_state": _rng_state(torch.Generator(), torch.Generator()),
        "complete": True})


@pytest.fixture(scope="module")
def dataset():
    return tiny_dataset()


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, dataset) -> dict[str, Path]:
    """Early (k=1), middle (k=2) and late (k=3) fusion runs of one dataset."""
    root = tmp_path_factory.mktemp("runs")
    return {name: make_checkpoint(root / name / "ckpt.pt", dataset, k, seed=k)
            for name, k in (("early", 1), ("middle", 2), ("late", 3))}


@pytest.fixture
def recorded_inputs(monkeypatch) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Every (audio, visual) pair of tensors the model is called with during a test."""
    calls = []
    forward = FusionConvLSTM.forward

    def spy(self, audio, visual, record=False):
        calls.append((audio.clone(), visual.clone()))
        return forward(self, audio, visual, record=record)

    monkeypatch.setattr(FusionConvLSTM, "forward", spy)
    return calls


def _extract(checkpoint: Path, dataset, output: Path, **options) -> extract.ExtractResult:
    options = {"n_stimuli": 7, "batch_size": 5, "device": "cpu", **options}
    config = extract.ExtractConfig(checkpoint=str(checkpoint), output=str(output), **options)
    return extract.run(config, dataset=dataset)


def test_recorded_states_equal_a_direct_forward_pass(checkpoints, dataset, tmp_path):
    conditions = ("clean", "incongruent", "audio_snr0", "visual_removed")
    result = _extract(checkpoints["middle"], dataset, tmp_path / "a.h5", states=("h", "c"),
                      conditions=conditions, snrs=())
    ds = activations.open(result.path)
    assert result.layers == activations.layer_names(ds) == ["audio.1", "visual.1", "fused.2"]
    assert result.n_stimuli == ds.sizes["stimulus"] == 28
    assert ds.sizes["time"] == result.timesteps == T

    model = model_from_checkpoint(load_checkpoint(checkpoints["middle"]))
    probe = ProbeSet.build(dataset, conditions, n_stimuli=7, seed=0)
    seen = 0
    with torch.no_grad():
        for start, batch in probe.batches(5):
            logits, states = model(batch.audio, batch.visual, record=True)
            rows = slice(start, start + len(batch.audio))
            for layer, (h, c) in states.items():
                assert np.array_equal(ds[f"{layer}.h"].values[rows], h.numpy()), layer
                assert np.array_equal(ds[f"{layer}.c"].values[rows], c.numpy()), layer
            assert np.array_equal(ds["logits"].values[rows], logits.numpy())
            assert np.array_equal(ds["prediction"].values[rows], logits.argmax(1).numpy())
            seen += len(batch.audio)
    assert seen == 28
    assert ds.attrs["checkpoint_sha256"] == sha256_file(checkpoints["middle"])
    assert json.loads(ds.attrs["config"])["model"]["fusion_layer"] == 2
    assert json.loads(ds.attrs["probe_set"])["conditions"] == list(conditions)
    assert extract.ExtractConfig.from_json(ds.attrs["extract_config"]).states == ("h", "c")


def test_two_checkpoints_see_identical_stimuli(checkpoints, dataset, tmp_path,
                                               recorded_inputs):
    early = _extract(checkpoints["early"], dataset, tmp_path / "early.h5", seed=2, n_stimuli=4)
    early_inputs = list(recorded_inputs)
    recorded_inputs.clear()
    late = _extract(checkpoints["late"], dataset, tmp_path / "late.h5", batch_size=3, seed=2,
                    n_stimuli=4)
    ds_early, ds_late = activations.open(early.path), activations.open(late.path)
    assert ds_early.sizes["stimulus"] == 4 * 10  # default: 4 conditions + 3 noises x 2 SNRs
    for name in ds_early.coords:
        if name != "prediction":
            np.testing.assert_array_equal(ds_early[name].values, ds_late[name].values)
    assert activations.layer_names(ds_early) == ["fused.1", "fused.2"]
    assert activations.layer_names(ds_late) == ["audio.1", "visual.1", "audio.2", "visual.2"]
    # the very same inputs, noise included, although the batch sizes differ
    for modality in (0, 1):
        assert torch.equal(torch.cat([call[modality] for call in early_inputs]),
                           torch.cat([call[modality] for call in recorded_inputs]))


def test_removed_modality_conditions_zero_the_model_input(checkpoints, dataset, tmp_path,
                                                          recorded_inputs):
    result = _extract(checkpoints["late"], dataset, tmp_path / "a.h5",
                      conditions=("clean", "audio_removed", "visual_removed", "incongruent"),
                      snrs=())
    removed = activations.open(result.path)["removed"].values
    audio = torch.cat([call[0] for call in recorded_inputs])
    visual = torch.cat([call[1] for call in recorded_inputs])
    assert len(audio) == len(removed) == 28
    per_row = {"audio": audio.flatten(1).abs().amax(1), "visual": visual.flatten(1).abs().amax(1)}
    assert (per_row["audio"][removed == "audio"] == 0).all()
    assert (per_row["visual"][removed == "visual"] == 0).all()
    assert (per_row["audio"][removed != "audio"] > 0).all()
    assert (per_row["visual"][removed != "visual"] > 0).all()
    # zero input reaches the model's audio branch: its states equal those of an all-zero input
    ds = activations.open(result.path)
    branch = activations.select(ds, "audio.1", condition="audio_removed").values
    assert np.allclose(branch, branch[:1])


def test_pooling_dtype_and_layer_selection(checkpoints, dataset, tmp_path):
    full = activations.open(_extract(checkpoints["middle"], dataset, tmp_path / "full.h5",
                                     conditions=("clean",), snrs=()).path)
    pooled = activations.open(_extract(
        checkpoints["middle"], dataset, tmp_path / "avg.h5", conditions=("clean",), snrs=(),
        layers=("fused.2", "audio.1"), pool="avg", pool_factor=4).path)
    assert activations.layer_names(pooled) == ["audio.1", "fused.2"]
    values = full["fused.2.h"].values.astype(np.float64)  # (n, T, C, 6, 4)
    # 4 x 4 blocks over a 6 x 4 frame: rows 0-3 and the edge block of rows 4-5
    expected = np.stack([values[..., :4, :].mean(axis=(-2, -1)),
                         values[..., 4:, :].mean(axis=(-2, -1))], axis=-1)[..., None]
    assert pooled["fused.2.h"].shape == (7, T, 4, 2, 1)
    np.testing.assert_allclose(pooled["fused.2.h"].values, expected, rtol=1e-5, atol=1e-7)

    half = activations.open(_extract(checkpoints["middle"], dataset, tmp_path / "g16.h5",
                                     conditions=("clean",), snrs=(), pool="global",
                                     dtype="float16", compression="gzip").path)
    assert half["visual.1.h"].dtype == np.float16
    assert half["visual.1.h"].shape == (7, T, 4, 1, 1)
    np.testing.assert_allclose(half["visual.1.h"].values[..., 0, 0],
                               full["visual.1.h"].values.mean(axis=(-2, -1)), rtol=2e-3,
                               atol=2e-3)
    with h5py.File(tmp_path / "g16.h5") as handle:
        assert handle["visual.1.h"].compression == "gzip"


def test_per_step_readout_logits(dataset, tmp_path):
    checkpoint = make_checkpoint(tmp_path / "ckpt.pt", dataset, 1, readout="per_step")
    ds = activations.open(_extract(checkpoint, dataset, tmp_path / "a.h5",
                                   conditions=("clean",), snrs=()).path)
    assert ds["logits"].dims == ("stimulus", "time", "class")
    np.testing.assert_array_equal(ds["prediction"].values,
                                  ds["logits"].values[:, -1].argmax(axis=1))


def test_crash_mid_extraction_leaves_nothing(checkpoints, dataset, tmp_path, monkeypatch):
    write = activations.ActivationWriter.write
    calls = []

    def failing_write(self, *args, **kwargs):
        if calls:
            raise RuntimeError("crash after the first batch (simulated)")
        calls.append(1)
        write(self, *args, **kwargs)

    monkeypatch.setattr(activations.ActivationWriter, "write", failing_write)
    with pytest.raises(RuntimeError, match="simulated"):
        _extract(checkpoints["early"], dataset, tmp_path / "a.h5")
    assert calls and sorted(os.listdir(tmp_path)) == []


def test_dataset_of_another_fingerprint_is_refused(checkpoints, tmp_path):
    with pytest.raises(ValueError, match="not the one .* was trained on"):
        _extract(checkpoints["early"], tiny_dataset(seed=1), tmp_path / "a.h5")


def test_the_same_dataset_mirrored_or_reversed_is_refused(checkpoints, dataset, tmp_path):
    """Each item keeps its sums of |x| and x^2, which the old fingerprint summed."""
    for field, change in (("images", lambda x: x.flip(-1)),
                          ("waveforms", lambda x: -x.flip(-1))):
        changed = dataclasses.replace(dataset, splits={
            name: dataclasses.replace(split, **{field: change(getattr(split, field))})
            for name, split in dataset.splits.items()})
        with pytest.raises(ValueError, match="not the one .* was trained on: its clips, audio "
                                             "frames or images differ"):
            _extract(checkpoints["early"], changed, tmp_path / "a.h5")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("kept", [5_000, 20_000, 40_000])
def test_a_truncated_checkpoint_is_one_line_and_exit_2(checkpoints, tmp_path, capsys, kept):
    cut = tmp_path / "cut.pt"
    cut.write_bytes(checkpoints["late"].read_bytes()[:kept])
    status = extract.main([str(cut), "-o", str(tmp_path / "a.h5"), "--device", "cpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1, err
    assert err[0].startswith(f"error: {cut} is not a repsim checkpoint, or one cut short")
    assert sorted(os.listdir(tmp_path)) == ["cut.pt"]


def test_overwrite_leaves_a_fifo_at_the_output_alone(checkpoints, tmp_path, capsys):
    """--overwrite replaces regular files only (the writer is shared with repsim.record)."""
    pipe = tmp_path / "pipe.h5"
    os.mkfifo(pipe)
    status = extract.main([str(checkpoints["late"]), "-o", str(pipe), "--overwrite",
                           "--device", "cpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1, err
    assert err[0].startswith(f"error: output path {pipe} is a FIFO (named pipe), not a "
                             f"regular file")
    assert stat.S_ISFIFO(os.lstat(pipe).st_mode) and os.listdir(tmp_path) == ["pipe.h5"]


def test_config_round_trips_through_json(tmp_path):
    config = extract.ExtractConfig(checkpoint="runs/x/ckpt.pt", layers=("fused.1",),
                                   states=("c", "h"), snrs=(5, -5), n_stimuli=None)
    again = extract.ExtractConfig.from_json(config.to_json())
    assert again == config and again.states == ("h", "c")
    assert config.output_path == Path("runs/x/activations.h5")
    with pytest.raises(ValueError, match="unknown extract config field"):
        extract.ExtractConfig.from_dict({"checkpoint": "x", "pooling": "avg"})


# ----------------------------------------------------------------------------- the CLI


@pytest.fixture
def cli(monkeypatch, dataset):
    """``main(argv) -> (exit status, stderr)``, with the checkpoint's dataset rebuilt as the
    tiny one (the real builders are tested elsewhere)."""
    built = []

    def fake_rebuild(ckpt, data_dir=None):
        built.append(ckpt)
        return dataset

    monkeypatch.setattr(checkpoint_module, "dataset_from_checkpoint", fake_rebuild)

    def call(capsys, *argv):
        status = extract.main([*argv, "--stimuli", "4", "--device", "cpu"])
        return status, capsys.readouterr().err, built

    return call


def test_cli_writes_beside_the_checkpoint_and_summarises(cli, capsys, caplog, checkpoints):
    caplog.set_level(logging.INFO, logger="repsim")
    status, _, _ = cli(capsys, str(checkpoints["late"]), "--snrs", "--states", "h", "c")
    output = checkpoints["late"].with_name("activations.h5")
    assert status == 0 and output.is_file()
    summary = caplog.records[-1].getMessage()
    assert summary.startswith(f"wrote {output} (") and "16 stimuli" in summary
    assert f"{T} time steps" in summary and "audio.1, visual.1, audio.2, visual.2" in summary
    ds = activations.open(output)
    assert activations.state_names(ds) == ["h", "c"]
    assert activations.condition_names(ds) == ["clean", "incongruent", "audio_removed",
                                               "visual_removed"]
    # existing output: refused without --overwrite, replaced with it
    status, err, _ = cli(capsys, str(checkpoints["late"]), "--snrs")
    assert status == 2 and err.strip() == (f"error: output file {output} exists; pass "
                                           f"overwrite (--overwrite) to replace it")
    status, _, _ = cli(capsys, str(checkpoints["late"]), "--snrs", "--overwrite",
                       "--conditions", "clean")
    assert status == 0 and activations.open(output).sizes["stimulus"] == 4
    output.unlink()


def _one_error_line(status: int, err: str, *parts: str) -> None:
    lines = err.strip().splitlines()
    assert status == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    for part in parts:
        assert part in lines[0], (part, lines[0])


@pytest.mark.parametrize(("argv", "option"), [
    (["--snrs", "runs/x/ckpt.pt"], "--snrs"),
    (["--overwrite", "--layers", "fused.1", "runs/x/ckpt.pt"], "--layers"),
    (["--conditions", "clean", "--snrs", "0", "runs/x/ckpt.pt", "--overwrite"], "--snrs"),
])
def test_cli_a_checkpoint_taken_by_a_many_valued_option_is_one_line(capsys, argv, option):
    with pytest.raises(SystemExit) as exit_info:
        extract.main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(err) == 1, err
    assert err[0].startswith(f"error: {option} takes every word up to the next option, so it "
                             f"took 'runs/x/ckpt.pt' as a value; put 'runs/x/ckpt.pt' first: "
                             f"python -m repsim.extract runs/x/ckpt.pt ")


def test_cli_snrs_without_values_means_no_noise_and_other_mistakes_keep_argparse_words(
        capsys):
    args = extract.build_parser().parse_args(["runs/x/ckpt.pt", "--snrs", "--overwrite"])
    assert args.snrs == [] and args.checkpoint == "runs/x/ckpt.pt" and args.overwrite
    for argv, message in ((["ckpt.pt", "--snrs", "loud"], "invalid float value: 'loud'"),
                          (["--layers", "fused.1"], "arguments are required: checkpoint")):
        with pytest.raises(SystemExit) as exit_info:
            extract.main(argv)
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err


def test_cli_missing_checkpoint(cli, capsys, tmp_path):
    status, err, built = cli(capsys, str(tmp_path / "nope.pt"), "-o", str(tmp_path / "a.h5"))
    _one_error_line(status, err, "checkpoint not found", "nope.pt")
    assert not built


def test_cli_not_a_repsim_checkpoint(cli, capsys, tmp_path):
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, foreign)
    status, err, built = cli(capsys, str(foreign))
    _one_error_line(status, err, str(foreign), "is not a repsim checkpoint")
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint at all")
    status, err, _ = cli(capsys, str(text))
    _one_error_line(status, err, str(text), "is not a repsim checkpoint")
    assert not built


@pytest.mark.parametrize("edit", HAND_EDITS)
def test_cli_hand_edited_checkpoint(cli, capsys, checkpoints, tmp_path, edit):
    edited = tmp_path / "edited.pt"
    message = hand_edit(checkpoints["early"], edited, edit)
    status, err, built = cli(capsys, str(edited), "-o", str(tmp_path / "a.h5"))
    _one_error_line(status, err, str(edited), message)
    assert not built and not (tmp_path / "a.h5").exists()


def test_cli_unknown_layer(cli, capsys, checkpoints, tmp_path):
    status, err, built = cli(capsys, str(checkpoints["early"]), "-o", str(tmp_path / "a.h5"),
                             "--layers", "fused.1", "audio.1")
    _one_error_line(status, err, "unknown layer(s) 'audio.1'", "fused.1, fused.2")
    assert not built and not (tmp_path / "a.h5").exists()


def test_cli_unknown_condition(cli, capsys, checkpoints, tmp_path):
    status, err, built = cli(capsys, str(checkpoints["early"]), "-o", str(tmp_path / "a.h5"),
                             "--conditions", "clean", "audio_snr_low")
    _one_error_line(status, err, "unknown condition 'audio_snr_low'", "audio_snr{X}")
    assert not built


def test_cli_unwritable_output_directory(cli, capsys, checkpoints, tmp_path):
    directory = tmp_path / "read-only"
    directory.mkdir(mode=0o555)
    if os.access(directory, os.W_OK):  # root ignores mode bits; /sys refuses even root
        directory = Path("/sys")
    status, err, built = cli(capsys, str(checkpoints["early"]), "-o",
                             str(directory / "a.h5"))
    _one_error_line(status, err, f"cannot write to output directory {directory}")
    assert not built


def test_cli_ctrl_c_leaves_nothing(cli, capsys, checkpoints, tmp_path, monkeypatch):
    write = activations.ActivationWriter.write
    calls = []

    def interrupted(self, *args, **kwargs):
        if calls:
            assert any(p.name.startswith(".a.h5.tmp-") for p in tmp_path.iterdir())
            raise KeyboardInterrupt
        calls.append(1)
        write(self, *args, **kwargs)

    monkeypatch.setattr(activations.ActivationWriter, "write", interrupted)
    status, err, _ = cli(capsys, str(checkpoints["early"]), "-o", str(tmp_path / "a.h5"),
                         "--batch-size", "2")
    assert status == 130 and "interrupted" in err
    assert calls and os.listdir(tmp_path) == []


def test_sigterm_during_extraction_leaves_nothing(checkpoints, tmp_path):
    """A real process killed with SIGTERM mid-write: no output, no temporary."""
    script = f"""
import sys, time
sys.path.insert(0, {str(REPO / "tests")!r})
from test_probeset import tiny_dataset
from repsim import activations, extract
from repsim import checkpoint as checkpoint_module
write = activations.ActivationWriter.write
def slow_write(self, *args, **kwargs):
    write(self, *args, **kwargs)
    time.sleep(0.5)
activations.ActivationWriter.write = slow_write
checkpoint_module.dataset_from_checkpoint = lambda ckpt, data_dir=None: tiny_dataset()
sys.exit(extract.main([{str(checkpoints['early'])!r}, "-o", {str(tmp_path / "a.h5")!r},
                       "--batch-size", "1", "--stimuli", "10", "--device", "cpu"]))
"""
    child = subprocess.Popen([sys.executable, "-c", script], cwd=REPO,
                             stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not any(p.name.startswith(".a.h5.tmp-") for p in tmp_path.iterdir()):
        assert child.poll() is None and time.monotonic() < deadline, child.stderr.read()
        time.sleep(0.05)
    child.send_signal(signal.SIGTERM)
    assert child.wait(timeout=30) == 128 + signal.SIGTERM
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("fraction", [0.5, 0.01], ids=["data", "layout"])
def test_a_full_disk_is_one_line_and_exit_2_and_leaves_nothing(checkpoints, tmp_path, fraction):
    """A file-size limit on a real process stands in for a full disk: half the size of the
    complete file (the layout is written, the data are not), or a hundredth (the disk fills
    while the layout is written)."""
    complete = tmp_path / "complete.h5"
    extract.run(extract.ExtractConfig(checkpoint=str(checkpoints["late"]), output=str(complete),
                                      states=("h", "c"), n_stimuli=4, device="cpu"),
                dataset=tiny_dataset())
    limit = int(complete.stat().st_size * fraction)
    complete.unlink()
    output = tmp_path / "full.h5"
    script = f"""
import resource, sys
sys.path.insert(0, {str(REPO / "tests")!r})
from test_probeset import tiny_dataset
from repsim import checkpoint as checkpoint_module
from repsim import extract
checkpoint_module.dataset_from_checkpoint = lambda ckpt, data_dir=None: tiny_dataset()
resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))
sys.exit(extract.main([{str(checkpoints['late'])!r}, "-o", {str(output)!r}, "--states", "h",
                       "c", "--stimuli", "4", "--device", "cpu"]))
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    error = done.stderr.strip().splitlines()[-1]
    assert done.returncode == 2, done.stderr
    assert error.startswith(f"error: cannot write {output}: File too large; nothing was written")
    assert os.listdir(tmp_path) == []


def test_an_output_being_written_is_refused_before_the_dataset_is_rebuilt(checkpoints,
                                                                          tmp_path,
                                                                          monkeypatch):
    """A second extraction to the same path fails at once, not after the slow rebuild."""
    def rebuild(*args, **kwargs):
        raise AssertionError("the dataset was rebuilt for an output that is being written")

    monkeypatch.setattr(checkpoint_module, "dataset_from_checkpoint", rebuild)
    output = tmp_path / "a.h5"
    with claim(output):  # another writer (another open file description: flock refuses)
        with pytest.raises(Busy, match=f"{output} is being written by"):
            extract.run(extract.ExtractConfig(checkpoint=str(checkpoints["late"]),
                                              output=str(output), device="cpu"))
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_gated_checkpoint_records_its_gate_without_a_cell_state(dataset, tmp_path):
    path = make_checkpoint(tmp_path / "gated" / "ckpt.pt", dataset, 2)
    ckpt = torch.load(path, weights_only=True)
    model_config = ModelConfig(layers=2, hidden=4, fusion_layer=2, fusion_op="gated")
    ckpt["config"]["model"] = model_config.to_dict()
    torch.manual_seed(0)
    model = FusionConvLSTM(model_config)
    ckpt["model_state"] = model.state_dict()
    save_checkpoint(path, ckpt)
    result = _extract(path, dataset, tmp_path / "g.h5", states=("h", "c"),
                      conditions=("clean", "audio_snr0"), snrs=())
    ds = activations.open(result.path)
    assert activations.layer_names(ds) == ["audio.1", "visual.1", "gate.2", "fused.2"]
    assert "gate.2.h" in ds and "gate.2.c" not in ds and "fused.2.c" in ds
    probe = ProbeSet.build(dataset, ("clean", "audio_snr0"), n_stimuli=7, seed=0)
    with torch.no_grad():
        for start, batch in probe.batches(5):
            _, states = model.eval()(batch.audio, batch.visual, record=True)
            rows = slice(start, start + len(batch.audio))
            assert np.array_equal(ds["gate.2.h"].values[rows], states["gate.2"][0].numpy())
