"""Command-line plumbing: the malloc setting that keeps freed memory for reuse, and the
KEY=VALUE option type."""

from __future__ import annotations

import argparse
import importlib
import platform
import subprocess
import sys

import pytest

import repsim
from repsim.cli import key_value

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


@pytest.mark.parametrize("module", ["repsim.train.cli", "repsim.extract", "repsim.data.__main__",
                                    "repsim.study.cli", "repsim.report"])
def test_every_command_has_version(module, capsys):
    main = importlib.import_module(module).main
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert f"(repsim {repsim.__version__})" in capsys.readouterr().out
