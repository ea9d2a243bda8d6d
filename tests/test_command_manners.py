"""Manners every command shares: the usage line names what the user typed, every command has
examples, ``--threads`` limits every command's compute threads, a misspelt option is answered
with the option meant, and the fusion layer may be named ``early`` or ``late``."""

from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys

import pytest
import torch
from paths import REPO_ROOT

from repsim import commands
from repsim.figures import FIGURES

# command of ``repsim COMMAND`` -> how its own module is run
MODULE_PROGS = {"train": "python -m repsim.train", "extract": "python -m repsim.extract",
                "study": "python -m repsim.study", "data": "python -m repsim.data",
                "report": "python -m repsim.report", "figure": "python -m repsim.figures",
                "record": "python -m repsim.record"}
# Each command with arguments that fail (exit 2) only after its options took effect.
THREADED = {
    "repsim.extract": ["missing/ckpt.pt"],
    "repsim.report": ["missing-run"],
    "repsim.study.cli": ["missing.toml", "--report"],
    **{f"repsim.figures.{name}": ["missing-early.h5", "missing-late.h5"] for name in FIGURES},
}


def help_text(capsys, main, argv) -> str:
    """What ``main(argv)`` prints, checking that it ends with status 0 (returned or raised)."""
    try:
        status = main(argv)
    except SystemExit as done:
        status = done.code
    assert status == 0
    return capsys.readouterr().out


def test_every_command_is_listed_with_its_own_prog():
    assert set(MODULE_PROGS) == set(commands.COMMANDS)


@pytest.mark.parametrize("name", sorted(MODULE_PROGS))
def test_usage_names_the_installed_command(name, capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["/venv/bin/repsim", name, "--help"])
    usage = help_text(capsys, commands.main, [name, "--help"]).splitlines()[0]
    assert usage.startswith(f"usage: repsim {name} "), usage
    module = importlib.import_module(commands.COMMANDS[name][0])
    alone = help_text(capsys, module.main, ["--help"]).splitlines()[0]
    assert alone.startswith(f"usage: {MODULE_PROGS[name]} "), alone


def test_usage_of_a_figure_and_of_python_dash_m_repsim(capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["/venv/bin/repsim"])
    usage = help_text(capsys, commands.main, ["figure", "cka_by_layer", "--help"])
    assert usage.startswith("usage: repsim figure cka_by_layer ")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run([sys.executable, "-m", "repsim", "train", "--help"], env=env,
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
    assert done.stdout.startswith("usage: python -m repsim train ")


@pytest.mark.parametrize("name", sorted(MODULE_PROGS))
def test_every_command_has_examples_that_parse(name, capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["/venv/bin/repsim"])
    text = help_text(capsys, commands.main, [name, "--help"])
    assert "examples:" in text or "example:" in text, text
    examples = text.split("example", 1)[1].splitlines()[1:]
    assert [line for line in examples if line.strip().startswith(f"repsim {name}")], text


@pytest.mark.parametrize("module", sorted(THREADED))
def test_threads_limits_the_command_before_its_work(module, capsys, monkeypatch):
    """``--threads 3`` reaches torch's pool and the variables child libraries read, then the
    command fails on its missing input (one line, exit 2)."""
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        monkeypatch.setenv(variable, "1")
    before = torch.get_num_threads()
    try:
        assert importlib.import_module(module).main([*THREADED[module], "--threads", "3"]) == 2
        assert torch.get_num_threads() == 3
        assert os.environ["OMP_NUM_THREADS"] == "3"
    finally:
        torch.set_num_threads(before)
    assert "missing" in capsys.readouterr().err


def test_threads_has_one_spelling_and_help_everywhere():
    def threads_help(parser: argparse.ArgumentParser) -> str:
        action = next(a for a in parser._actions if "--threads" in a.option_strings)
        return parser._get_formatter()._expand_help(action)

    from repsim.figures.base import figure_parser
    from repsim.train.cli import build_parser

    expected = threads_help(build_parser())
    for module in ("repsim.extract", "repsim.report", "repsim.study.cli"):
        assert threads_help(importlib.import_module(module).build_parser()) == expected
    assert threads_help(figure_parser("x", "doc", "", "inputs")) == expected


@pytest.mark.parametrize(("module", "argv", "meant"), [
    ("repsim.train.cli", ["--fusionlayer", "2"], "--fusion-layer"),
    ("repsim.extract", ["ckpt.pt", "--stimulus", "4"], "--stimuli"),
    ("repsim.study.cli", ["s.toml", "--dryrun"], "--dry-run"),
    ("repsim.report", ["run", "--thraeds", "2"], "--threads"),
    ("repsim.figures.cka_by_layer", ["--kernal", "rbf"], "--kernel"),
])
def test_a_misspelt_option_is_answered_with_the_option_meant(module, argv, meant, capsys):
    with pytest.raises(SystemExit) as done:
        importlib.import_module(module).main(argv)
    assert done.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    misspelt = next(word for word in argv if word.startswith("--"))
    assert "unrecognized arguments: " in last and misspelt in last, last
    assert last.endswith(f" (did you mean {meant}?)"), last


def test_an_unrelated_word_gets_no_suggestion(capsys):
    from repsim.train.cli import main

    with pytest.raises(SystemExit):
        main(["--zzzz"])
    assert "did you mean" not in capsys.readouterr().err


@pytest.mark.parametrize(("word", "layers", "expected"), [
    ("early", 2, 1), ("late", 2, 3), ("late", 4, 5), ("2", 2, 2)])
def test_fusion_layer_early_and_late(word, layers, expected):
    from repsim.train.cli import build_parser, config_from_args

    args = build_parser().parse_args(["--fusion-layer", word, "--layers", str(layers)])
    assert config_from_args(args).model.fusion_layer == expected
