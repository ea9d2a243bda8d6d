"""What every repsim command line shares: user errors become one line and exit status 2,
plain log lines, and a malloc that keeps freed memory for reuse."""

from __future__ import annotations

import argparse
import ctypes
import functools
import json
import logging
import os
import signal
import sys
from collections.abc import Callable

import repsim
from repsim.provenance import OutputError

# Exit status of a command stopped by SIGTERM (a cluster's preemption), as a shell reports a
# process ended by that signal: a scheduler tells it from a crash (1) and a user error (2).
STOPPED_STATUS = 128 + signal.SIGTERM
# Errors that mean "the user asked for something we cannot do", not "repsim has a bug".
USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, PermissionError,
               IsADirectoryError, NotADirectoryError, OutputError)


def user_errors_exit_2(main: Callable[..., int | None]) -> Callable[..., int]:
    """Wrap a CLI ``main``: a user error prints ``error: <message>`` and returns 2.

    Set ``REPSIM_DEBUG=1`` to see the full traceback instead.
    """

    @functools.wraps(main)
    def wrapped(*args, **kwargs) -> int:
        try:
            return main(*args, **kwargs) or 0
        except USER_ERRORS as error:
            if os.environ.get("REPSIM_DEBUG"):
                raise
            message = str(error)
            if isinstance(error, OSError) and error.filename and str(error.filename) not in message:
                message = f"{error.strerror or error}: {error.filename}"
            print(f"error: {message}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130

    return wrapped


def add_version(parser: argparse.ArgumentParser) -> None:
    """``--version``: the command and repsim's version, then exit 0."""
    parser.add_argument("--version", action="version",
                        version=f"%(prog)s (repsim {repsim.__version__})")


def key_value(text: str) -> tuple[str, object]:
    """An argparse type for ``KEY=VALUE`` options: VALUE is read as JSON when it parses
    (numbers, true, null), else kept as text."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def setup_logging(verbose: bool = False) -> logging.Logger:
    """Plain message lines on stderr for CLIs: repsim's own at INFO (DEBUG with ``verbose``),
    other libraries' only from WARNING; the library itself never prints."""
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    logger = logging.getLogger("repsim")
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    return logger


# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def keep_freed_memory() -> bool:
    """Have glibc's malloc keep freed memory for reuse; False (and nothing done) elsewhere.

    By default every CPU tensor above malloc's mmap threshold is mapped afresh and each of its
    pages faults on first write; with the threshold and the heap trim threshold raised, a
    recurring allocation reuses warm pages instead. Measured on this project's CPU machine:
    the demo's noise-grid evaluation takes 28 s instead of 56 s. Process-wide, so only the
    command lines call it, never the library.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (macOS, Windows, musl without mallopt)
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, 2**30)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
