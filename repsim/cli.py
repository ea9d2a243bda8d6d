"""What every repsim command line shares: user errors become one line and exit status 2,
a parser that names a positional argument swallowed by a many-valued option and the option
meant by a misspelt one, usage lines that name what the user typed, the options spelled alike
in every command (progress bars, device, threads, verbose logging), plain log lines, and a
malloc that keeps freed memory for reuse."""

from __future__ import annotations

import argparse
import contextlib
import contextvars
import ctypes
import difflib
import functools
import json
import logging
import os
import shlex
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import NoReturn

import repsim
from repsim.provenance import OutputError

# Exit status of a command stopped by SIGTERM (a cluster's preemption), as a shell reports a
# process ended by that signal: a scheduler tells it from a crash (1) and a user error (2).
STOPPED_STATUS = 128 + signal.SIGTERM
INTERRUPTED_STATUS = 128 + signal.SIGINT  # Ctrl-C, as a shell reports it
# Exit status of a command whose work another live process holds (sysexits.h's EX_TEMPFAIL,
# "try again later"): a script tells "someone else is on it" from done (0), failed (1) and a
# user error (2).
BUSY_STATUS = 75
# Errors that mean "the user asked for something we cannot do", not "repsim has a bug".
USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, PermissionError,
               IsADirectoryError, NotADirectoryError, OutputError)


# What the user typed to start the running command ("repsim train"), set by a command that
# hands over to another (repsim.commands, repsim.figures); unset when run as its own module.
_INVOKED_AS: contextvars.ContextVar[str | None] = contextvars.ContextVar("repsim_invoked_as",
                                                                         default=None)


def command_prog(own: str) -> str:
    """A parser's ``prog``: what the user typed when another command handed over to this one
    (``repsim train``), else ``own``, how the command runs by itself (``python -m
    repsim.train``)."""
    return _INVOKED_AS.get() or own


@contextlib.contextmanager
def invoked_as(prog: str) -> Iterator[None]:
    """Within this block, :func:`command_prog` answers ``prog`` (the command handed over to)."""
    token = _INVOKED_AS.set(prog)
    try:
        yield
    finally:
        _INVOKED_AS.reset(token)


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
            return INTERRUPTED_STATUS

    return wrapped


class _ParseFailed(Exception):
    """Raised instead of exiting while :class:`CommandParser` tries an argument order."""


class CommandParser(argparse.ArgumentParser):
    """argparse's parser, except that a positional argument taken as a value by an option
    that accepts several (``nargs`` "+" or "*") is one line naming the problem, exit status 2,
    and an unknown option is answered with the closest known one ("did you mean ...?").

    ``python -m repsim.extract --snrs runs/x/ckpt.pt`` gives ``--snrs`` the checkpoint (and
    fails on it); the diagnosis is made only when moving that word to the front of the command
    makes it parse, so every other mistake keeps argparse's own message.
    """

    _mode = None  # "parse": errors raise _ParseFailed; "try": so does everything else

    def parse_known_args(  # type: ignore[override]  # argparse's overloads by namespace type
            self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        argv = list(sys.argv[1:] if args is None else args)
        if self._mode is not None:
            return super().parse_known_args(argv, namespace)
        try:
            self._mode = "parse"
            return super().parse_known_args(argv, namespace)
        except _ParseFailed as failed:
            message = str(failed)
            self._mode = "try"
            fixed = self._reordered(argv)
        finally:
            self._mode = None
        if fixed is not None:
            option, value, command = fixed
            self.exit(2, f"error: {option} takes every word up to the next option, so it took "
                         f"{value!r} as a value; put {value!r} first: {self.prog} "
                         f"{shlex.join(command)}\n")
        self.error(message)

    def error(self, message: str) -> NoReturn:
        if self._mode is not None:
            raise _ParseFailed(message)
        super().error(self._with_suggestion(message))

    def _with_suggestion(self, message: str) -> str:
        """``message`` about unrecognized arguments, with the option closest to the first
        unknown ``--word`` that resembles one (``--fusionlayer``: ``--fusion-layer``)."""
        prefix = "unrecognized arguments: "
        if not message.startswith(prefix):
            return message
        known = [name for action in self._actions if action.help != argparse.SUPPRESS
                 for name in action.option_strings if name.startswith("--")]
        for word in message[len(prefix):].split():
            if word.startswith("--"):
                close = difflib.get_close_matches(word.split("=", 1)[0], known, n=1)
                if close:
                    return f"{message} (did you mean {close[0]}?)"
        return message

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if self._mode == "try":
            raise _ParseFailed(message or "")
        super().exit(status, message)

    def _print_message(self, message, file=None):
        if self._mode != "try":
            super()._print_message(message, file)

    def _reordered(self, argv: list[str]) -> tuple[str, str, list[str]] | None:
        """``(option, word, argv with word first)`` for the first many-valued option whose
        last value, moved to the front, makes ``argv`` parse; None when there is none."""
        many = {name for action in self._actions if action.nargs in ("+", "*")
                for name in action.option_strings}
        end = argv.index("--") if "--" in argv else len(argv)
        for i, word in enumerate(argv[:end]):
            if word not in many:
                continue
            last = i
            while last + 1 < end and not _looks_like_option(argv[last + 1]):
                last += 1
            if last == i:
                continue
            command = [argv[last], *argv[:last], *argv[last + 1:]]
            try:
                _, unknown = super().parse_known_args(command, None)
            except _ParseFailed:
                continue
            if not unknown:
                return word, argv[last], command
        return None


def _looks_like_option(word: str) -> bool:
    """Whether argparse would read ``word`` as an option rather than a value (roughly; the
    caller checks its guess by parsing)."""
    if not word.startswith("-") or word == "-":
        return False
    try:
        float(word)  # a negative number is a value
    except ValueError:
        return True
    return False


def add_version(parser: argparse.ArgumentParser) -> None:
    """``--version``: the command and repsim's version, then exit 0."""
    parser.add_argument("--version", action="version",
                        version=f"%(prog)s (repsim {repsim.__version__})")


def add_progress(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--progress/--no-progress``: force tqdm bars on or off (see :func:`show_progress`)."""
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="show progress bars, or not (default: only when stderr is a "
                             "terminal); the one-line log messages are printed either way")


def show_progress(choice: bool | None) -> bool:
    """Whether a command shows progress bars: as ``--progress/--no-progress`` says, else only
    when stderr is a terminal (a log file or a pipe gets no bar redraws)."""
    if choice is not None:
        return choice
    return sys.stderr.isatty()


def add_device(parser: argparse.ArgumentParser | argparse._ArgumentGroup,
               default: str | None = None) -> None:
    """``--device``: where the model runs (one wording in every command)."""
    parser.add_argument("--device", default=default,
                        help="auto (CUDA when available, else the CPU; the default), cpu, cuda "
                             "or cuda:N")


def add_threads(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--threads``: how many CPU threads the command computes with."""
    parser.add_argument("--threads", type=int, metavar="N",
                        help="CPU threads for torch, OpenMP and BLAS in each process that "
                             "computes (default: OMP_NUM_THREADS if set, else every core, shared "
                             "evenly among a study's workers; give each of several processes on "
                             "one machine its share, or their threads wait on each other)")


def add_verbose(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``-v/--verbose``: repsim's debug log lines too."""
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")


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
