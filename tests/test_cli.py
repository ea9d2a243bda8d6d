"""Command-line plumbing: the malloc setting that keeps freed memory for reuse, the KEY=VALUE
option type, and the manners every command shares (help texts, option spellings, when
progress bars show)."""

from __future__ import annotations

import argparse
import importlib
import platform
import re
import subprocess
import sys
from pathlib import Path

import pytest

import repsim
from repsim.cli import key_value, show_progress

# Prints the bytes malloc holds in mmapped blocks while a 16 MiB tensor is alive, after
# keep_freed_memory() or without it (in a fresh process: the setting is process-wide).
MAPPED_BYTES = """
import ctypes, sys
import torch
from repsim.cli import keep_freed_memory

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost"
                .split()]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
if sys.argv[1] == "keep":
    assert keep_freed_memory()
before = libc.mallinfo2().hblkhd
tensor = torch.ones(4 * 2**20)
print(libc.mallinfo2().hblkhd - before)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_keep_freed_memory_puts_large_tensors_on_the_heap():
    def mapped(mode: str) -> int:
        out = subprocess.run([sys.executable, "-c", MAPPED_BYTES, mode], check=True,
                             capture_output=True, text=True).stdout
        return int(out)

    size = 16 * 2**20
    assert mapped("default") >= size  # mapped afresh, page-faulted on first write
    assert mapped("keep") < size  # from the heap, whose freed pages stay with the process


def test_key_value_reads_json_values_and_keeps_text():
    assert key_value("distractor_snr=0") == ("distractor_snr", 0)
    assert key_value("lr=1e-3") == ("lr", 0.001)
    assert key_value("flag=true") == ("flag", True)
    assert key_value("none=null") == ("none", None)
    assert key_value("name=fsdd/recordings") == ("name", "fsdd/recordings")
    assert key_value("empty=") == ("empty", "")
    assert key_value("expr=a=b") == ("expr", "a=b")
    for bad in ("novalue", "=3"):
        with pytest.raises(argparse.ArgumentTypeError, match="expected KEY=VALUE"):
            key_value(bad)


COMMANDS = ["repsim.train.cli", "repsim.extract", "repsim.data.__main__", "repsim.study.cli",
            "repsim.report", "repsim.record.cli"]
WITH_PROGRESS = ["repsim.train.cli", "repsim.extract", "repsim.study.cli",
                 "repsim.record.cli"]  # the long ones
# A Python list or tuple printed as a default: [20, 10, 5], ['clean', ...], ('h',), []
LIST_REPR = re.compile(r"[\[(]\s*(['\"]|-?\d[\d.e+-]*\s*,)|\[\]|\(\)")


def options(module: str) -> dict[str, tuple[argparse.Action, str]]:
    """``{option string: (action, its help as printed)}`` of a command's visible options."""
    parser = importlib.import_module(module).build_parser()
    formatter = parser._get_formatter()
    return {name: (action, formatter._expand_help(action)) for action in parser._actions
            if action.help != argparse.SUPPRESS for name in action.option_strings}


@pytest.mark.parametrize("module", COMMANDS)
def test_every_option_has_help_with_plain_defaults(module):
    for name, (_, text) in options(module).items():
        assert text.strip(), f"{module} {name} has no help"
        assert not LIST_REPR.search(text), f"{module} {name}: {text}"


def test_one_spelling_and_one_help_for_options_shared_by_commands():
    every = {module: options(module) for module in COMMANDS}
    for old in ("--quiet", "--folder", "--output-dir", "--outdir", "--no-progress-bar"):
        assert not [module for module in COMMANDS if old in every[module]], old
    study = importlib.import_module("repsim.study.cli").build_parser()
    assert study.parse_args(["s.toml", "--folder", "f"]).out_dir == Path("f")  # old name works
    for module in WITH_PROGRESS:
        action, _ = every[module]["--progress"]
        assert "--no-progress" in action.option_strings and action.default is None
    for name in ("--progress", "--device", "--verbose"):  # one meaning, so one help text
        texts = {every[module][name][1] for module in COMMANDS if name in every[module]}
        assert len(texts) == 1, (name, texts)


@pytest.mark.parametrize(("choice", "terminal", "shown"), [
    (None, True, True), (None, False, False), (True, False, True), (False, True, False)])
def test_progress_bars_show_on_a_terminal_unless_told(monkeypatch, choice, terminal, shown):
    class Stderr:
        def isatty(self) -> bool:
            return terminal

    monkeypatch.setattr(sys, "stderr", Stderr())
    assert show_progress(choice) is shown


@pytest.mark.parametrize(("module", "argv"), [("repsim.train.cli", []),
                                              ("repsim.extract", ["ckpt.pt"])])
def test_train_and_extract_pass_the_progress_choice_to_run(monkeypatch, module, argv):
    command = importlib.import_module(module)
    asked = []

    def fake_run(config, *, progress, **options):
        asked.append(progress)
        raise ValueError("stop here")

    monkeypatch.setattr(command, "run", fake_run)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    for flags in ([], ["--progress"], ["--no-progress"]):
        assert command.main([*argv, *flags]) == 2
    assert asked == [False, True, False]


@pytest.mark.parametrize("module", COMMANDS)
def test_every_command_has_version(module, capsys):
    main = importlib.import_module(module).main
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert f"(repsim {repsim.__version__})" in capsys.readouterr().out
