"""``repsim COMMAND``: help, version, dispatch to each command line, and bad commands."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys

import pytest
from paths import REPO_ROOT

import repsim
from repsim.commands import COMMANDS, main


def run_module(*args: str, cwd=None) -> subprocess.CompletedProcess:
    """``python -m repsim ARGS`` with repsim imported from this checkout."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run([sys.executable, "-m", "repsim", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_help_lists_every_command_with_its_line(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    for name, (_, line) in COMMANDS.items():
        assert f"  {name:<9} {line}\n" in out


def test_version(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out == f"repsim {repsim.__version__}\n"


@pytest.mark.parametrize(("argv", "message"), [
    ([], "no command given"), (["trian"], "unknown command 'trian'"),
    (["--verbose"], "unknown command '--verbose'")])
def test_a_bad_command_is_one_line_and_exit_2(argv, message, capsys):
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (f"error: {message}; choose one of {', '.join(COMMANDS)} "
                            "(repsim --help)\n")


@pytest.mark.parametrize("name", COMMANDS)
def test_each_command_hands_the_rest_to_its_main_and_returns_its_status(name, monkeypatch):
    seen = []

    def fake_main(argv):
        seen.append(argv)
        return 7

    monkeypatch.setattr(importlib.import_module(COMMANDS[name][0]), "main", fake_main)
    assert main([name, "--flag", "value", name]) == 7
    assert seen == [["--flag", "value", name]]


def test_statuses_of_the_real_commands_pass_through(tmp_path, capsys):
    assert main(["report", str(tmp_path / "no-run")]) == 2
    assert capsys.readouterr().err.startswith("error: no metrics file at")
    with pytest.raises(SystemExit) as done:
        main(["train", "--epochs", "many"])
    assert done.value.code == 2
    assert main(["figure", "no_such_figure"]) == 2


def test_python_dash_m_repsim_is_the_same_command(tmp_path):
    done = run_module("--version", cwd=tmp_path)
    assert (done.returncode, done.stdout) == (0, f"repsim {repsim.__version__}\n")
    done = run_module("trian", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"error: unknown command 'trian'; choose one of {', '.join(COMMANDS)} (repsim --help)"]


def test_help_starts_without_torch():
    code = ("import sys\nfrom repsim.commands import main\ntry:\n    main(['--help'])\n"
            "except SystemExit:\n    pass\nassert 'torch' not in sys.modules, 'torch imported'")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
