"""python -m repsim.record: a user's model file and batches function recorded from the
command line; bad inputs are one line and exit status 2, with nothing at the output path."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch
from paths import REPO_ROOT

from repsim import activations
from repsim.commands import main as repsim_main
from repsim.record.cli import load_function, main

USER_MODULE = '''
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(3, 4)
        self.rnn = nn.GRU(4, 5, batch_first=True)

    def forward(self, audio):
        return self.rnn(self.embed(audio))[0][:, -1]


def build():
    torch.manual_seed(0)
    return Net()


def batches():
    generator = torch.Generator().manual_seed(1)
    data = torch.randn(6, 2, 3, generator=generator)
    for start in range(0, 6, 4):
        yield {"audio": data[start:start + 4]}


def broken():
    raise RuntimeError("no weights here")
'''


@pytest.fixture
def user(tmp_path):
    """A model file and a stimulus table in tmp_path; returns the common arguments."""
    (tmp_path / "user_model.py").write_text(textwrap.dedent(USER_MODULE))
    (tmp_path / "stimuli.csv").write_text("stimulus_id,word\n" + "".join(
        f"clip{i},w{i % 2}\n" for i in range(6)))
    model = str(tmp_path / "user_model.py")
    return tmp_path, [f"{model}:build", "--stimuli", str(tmp_path / "stimuli.csv"),
                      "--batches", f"{model}:batches", "--out", str(tmp_path / "out.h5")]


def test_records_a_users_model_file_and_ends_with_a_summary(user, caplog):
    tmp_path, argv = user
    with caplog.at_level("INFO", logger="repsim"):
        assert main([*argv, "--layers", "embed", "rnn", "--time-dim", "1",
                     "--conditions", "clean", "audio_removed", "--no-progress"]) == 0
    assert "wrote " in caplog.records[-1].getMessage()
    assert "recording 2 layer(s): embed, rnn" in caplog.text
    ds = activations.open(tmp_path / "out.h5")
    build, batches = (load_function(f"{tmp_path / 'user_model.py'}:{name}")
                      for name in ("build", "batches"))
    model = build().eval()
    with torch.no_grad():  # the same batches (a GRU's sums depend on the batch size)
        for offset, condition in ((0, lambda x: x), (6, torch.zeros_like)):
            start = offset
            for batch in batches():
                embedded = model.embed(condition(batch["audio"]))
                rows = slice(start, start + len(embedded))
                assert np.array_equal(ds["embed.h"].values[rows], embedded.numpy())
                assert np.array_equal(ds["rnn.h"].values[rows], model.rnn(embedded)[0].numpy())
                start += len(embedded)
    assert list(ds["word"].values[:3]) == ["w0", "w1", "w0"]
    assert activations.condition_names(ds) == ["clean", "audio_removed"]


def test_time_dim_per_pattern_and_the_repsim_command(user):
    tmp_path, argv = user
    assert repsim_main(["record", *argv, "--layers", "embed", "rnn",
                        "--time-dim", "rnn=1", "embed=1", "--dtype", "float16"]) == 0
    ds = activations.open(tmp_path / "out.h5")
    assert ds["rnn.h"].shape == (6, 2, 5) and ds["rnn.h"].dtype == np.float16


def _one_line(capsys, status: int, *parts: str) -> None:
    assert status == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    for part in parts:
        assert part in err, err


@pytest.mark.parametrize("change, parts", [
    (lambda argv: [*argv, "--layers", "rnm"], ["matches no module", "closest", "rnn"]),
    (lambda argv: [argv[0].replace("build", "nothing"), *argv[1:], "--layers", "rnn"],
     ["has no function nothing"]),
    (lambda argv: ["no_such_module_here:build", *argv[1:], "--layers", "rnn"],
     ["cannot import no_such_module_here (ModuleNotFoundError"]),
    (lambda argv: [argv[0].replace(".py:", "_missing.py:"), *argv[1:], "--layers", "rnn"],
     ["does not exist"]),
    (lambda argv: [argv[0].replace("build", "broken"), *argv[1:], "--layers", "rnn"],
     ["raised RuntimeError: no weights here"]),
    (lambda argv: [*argv, "--layers", "rnn", "--time-dim", "4"],
     ["time_dim 4 is out of range"]),
    (lambda argv: [*argv, "--layers", "rnn", "--time-dim", "rnn=x"],
     ["--time-dim: expected an integer, got 'x'"]),
    (lambda argv: [*argv, "--layers", "rnn", "--dtype", "int8"], ["dtype must be one of"]),
    (lambda argv: [*argv, "--layers", "rnn", "--conditions", "video_removed"],
     ["acts on the keyword input 'video'"]),
])
def test_bad_inputs_are_one_line_exit_2_and_leave_nothing(user, capsys, change, parts):
    tmp_path, argv = user
    _one_line(capsys, main(change(argv)), *parts)
    assert not (tmp_path / "out.h5").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stimuli.csv", "user_model.py"]


def test_a_table_with_another_row_count_is_one_line(user, capsys):
    tmp_path, argv = user
    (tmp_path / "stimuli.csv").write_text("stimulus_id\n" + "".join(f"c{i}\n" for i in range(5)))
    _one_line(capsys, main([*argv, "--layers", "rnn"]),
              "the stimuli give more than the 5 rows of the stimulus table")
    assert not (tmp_path / "out.h5").exists()


def test_help_shows_a_complete_example_quickly_without_torch():
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    code = ("import sys, runpy; sys.argv = ['x', '--help']\n"
            "try:\n    runpy.run_module('repsim.record', run_name='__main__')\n"
            "except SystemExit:\n    pass\n"
            "print('torch' in sys.modules, 'h5py' in sys.modules)")
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=60, check=True)
    assert time.perf_counter() - started < 30
    for part in ("def build():", "def batches():", "stimulus_id", "--time-dim rnn=1",
                 "python -m repsim.record my_model.py:build --stimuli stimuli.csv"):
        assert part in done.stdout, part
    assert done.stdout.strip().endswith("False False")


def test_import_repsim_stays_light_and_repsim_record_is_callable():
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    code = ("import sys, repsim\nrecord = repsim.record\n"
            "print(callable(record), 'torch' in sys.modules)\n"
            "from repsim.record import record as function, Layer\n"
            "print(function.__module__, Layer.__module__)")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=120, check=True)
    assert done.stdout.split("\n")[:2] == ["True False", "repsim.record.api repsim.record.hooks"]


def _example_files(text: str, directory) -> list[str]:
    """Write the model file of a documented example (its ``def``/``class`` code block
    between ``import torch`` and the ``batches`` function's last line) with the weights and
    inputs it loads, and a stimulus table; return the example's command arguments."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "import torch")
    end = next(i for i, line in enumerate(lines) if "yield {\"audio\"" in line)
    code = textwrap.dedent("\n".join(lines[start:end + 1]))
    code = "\n".join(line.split("  #")[0].rstrip() for line in code.splitlines())
    (directory / "my_model.py").write_text(code + "\n")
    namespace: dict = {}
    exec(compile(code, "my_model.py", "exec"), namespace)
    torch.manual_seed(0)
    torch.save(namespace["Net"]().state_dict(), directory / "net.pt")
    torch.save(torch.randn(40, 6, 8, generator=torch.Generator().manual_seed(1)),
               directory / "audio.pt")
    (directory / "stimuli.csv").write_text("stimulus_id\n" + "".join(
        f"clip{i:03d}\n" for i in range(40)))
    command = " ".join(line.strip().rstrip("\\") for line in lines
                       if "my_model.py:build --stimuli" in line
                       or line.strip().startswith("--layers rnn head")
                       or line.strip() == "--out my_model.h5")
    return command.split()[command.split().index("my_model.py:build"):]


@pytest.mark.parametrize("source", ["help", "docs"])
def test_the_documented_example_records_a_per_step_layer_and_a_head(tmp_path, monkeypatch,
                                                                    source):
    from repsim.record.cli import EXAMPLE

    text = EXAMPLE if source == "help" else (REPO_ROOT / "docs" / "record.md").read_text()
    argv = _example_files(text, tmp_path)
    assert argv[argv.index("--time-dim") + 1] == "rnn=1" and "head" in argv
    monkeypatch.chdir(tmp_path)
    assert main([*argv, "--no-progress"]) == 0
    ds = activations.open(tmp_path / "my_model.h5")
    assert activations.time_steps(ds, "rnn") == 6 and activations.time_steps(ds, "head") == 1
    assert activations.condition_names(ds) == ["clean", "audio_snr0", "audio_removed"]
    assert ds.attrs["model_name"] == "my_model"


def test_list_layers_prints_every_module_with_shapes_and_calls(user, capsys):
    tmp_path, argv = user
    model, batches = argv[0], argv[argv.index("--batches") + 1]
    assert main([model, "--batches", batches, "--list-layers"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["name", "type", "calls", "places", "output"]
    assert out[1].split() == ["embed", "Linear", "1", "1", "(4,", "2,", "4)"]
    assert out[2].split()[:4] == ["rnn", "GRU", "1", "1"]
    assert not (tmp_path / "out.h5").exists()


EXITING_MODULE = '''
import sys
import torch


def build():
    sys.exit(0)


def batches():
    yield {"audio": torch.zeros(2, 2, 3)}
    raise RuntimeError("the disk with the clips went away")
'''


@pytest.mark.parametrize("change, parts", [
    (lambda argv, other: [*argv, "--layers", "rnn", "--device", "tpu"],
     ["device must be auto, cpu, cuda or cuda:N, got 'tpu'"]),
    (lambda argv, other: [f"{other}:build", *argv[1:], "--layers", "rnn"],
     ["called sys.exit(0) instead of returning"]),
    (lambda argv, other: [*argv[:3], "--batches", f"{other}:batches", *argv[5:],
                          "--layers", "rnn"],
     ["the stimuli raised RuntimeError: the disk with the clips went away while giving "
      "batch 1 of condition 'clean'"]),
    (lambda argv, other: [*argv, "--layers", "rnn", "--pool", "avg", "--pool-factor", "0"],
     ["pool_factor must be a positive integer, got 0"]),
    (lambda argv, other: [*argv, "--layers", "rnn", "--fold-time", "sideways"],
     ["--fold-time: expected BT or TB, got 'sideways'"]),
    (lambda argv, other: [*argv[:-2], "--layers", "rnn"], ["recording needs --out"]),
])
def test_mistakes_that_were_tracebacks_are_one_line(user, capsys, change, parts):
    tmp_path, argv = user
    other = tmp_path / "exiting.py"
    other.write_text(textwrap.dedent(EXITING_MODULE))
    _one_line(capsys, main(change(argv, other)), *parts)
    assert not (tmp_path / "out.h5").exists()
