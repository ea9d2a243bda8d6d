"""Provenance for artifacts: library versions, file digests, atomic writes, and the claim a
writer holds on its output.

Where ``fcntl`` does not exist (Windows), outputs are written without the claim's lock, with a
warning: everything else works, but nothing stops two processes writing one output at once."""

from __future__ import annotations

import contextlib
import datetime
import errno
import functools
import hashlib
import os
import platform
import re
import socket
import warnings
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no advisory locks
    fcntl = None  # type: ignore[assignment]

_TRACKED = ("torch", "numpy", "scipy", "scikit-learn", "xarray", "h5py", "h5netcdf")


def library_versions() -> dict[str, str]:
    """Versions of repsim, Python and the libraries that shape its numbers."""
    return dict(_library_versions())


@functools.cache
def _library_versions() -> dict[str, str]:
    """Looked up once per process: reading package metadata costs tens of milliseconds, and
    the versions of the running process do not change."""
    import repsim

    versions = {"repsim": repsim.__version__, "python": platform.python_version()}
    for name in _TRACKED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


# errno values that mean "this output cannot be written here" rather than a bug: a full disk
# or quota, a file-size limit, a read-only or forbidden folder, an I/O failure.
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES,
                          errno.EPERM, errno.EIO})


class OutputError(OSError):
    """An output could not be written; the message names the path and what was kept."""

    def __str__(self) -> str:
        return str(self.strerror)


def output_error(final: str | os.PathLike, reason: str, code: int = errno.EIO) -> OutputError:
    """The :class:`OutputError` for ``final``: nothing was written there, and any file of that
    name was left as it was. ``reason`` is made one line."""
    return OutputError(code, f"cannot write {final}: {' '.join(reason.split())}; nothing was "
                             f"written there (a file already at that path is unchanged)")


# How HDF5 (through h5py) names the system error under a failed write, in its own text.
_HDF5_ERRNO = re.compile(r"errno = (\d+), error message = '([^']*)'")


def write_failure(error: BaseException) -> tuple[int, str] | None:
    """``(errno, reason)`` when ``error`` says the disk refused a write (full, size limit,
    read-only: :data:`WRITE_ERRNOS`), from HDF5's "errno = N, error message = '...'" in its
    text (several lines, which say where in HDF5 it failed) or from an OSError's errno; None
    for any other error, and for an :class:`OutputError`, which already says so."""
    if isinstance(error, OutputError):
        return None
    found = _HDF5_ERRNO.search(str(error))
    if found and int(found.group(1)) in WRITE_ERRNOS:
        return int(found.group(1)), found.group(2)
    if isinstance(error, OSError) and error.errno in WRITE_ERRNOS:
        return error.errno, error.strerror or str(error)
    return None


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; rename it to ``final`` only on success.

    On any exception (Ctrl-C included) the temporary file is removed and ``final`` is left
    as it was, so a reader never sees a half-written file under the final name. A failure to
    write (full disk, file-size limit, read-only folder: :data:`WRITE_ERRNOS`) becomes an
    :class:`OutputError` naming ``final``.
    """
    final = Path(final)
    tmp = final.with_name(f"{_temporary_prefix(final)}{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, final)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        failure = write_failure(error)
        if failure is not None:
            raise output_error(final, failure[1], failure[0]) from error
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _temporary_prefix(final: Path) -> str:
    return f".{final.name}.tmp-"


class Busy(ValueError):
    """Another process holds the claim on an output (it is writing it right now)."""


@contextlib.contextmanager
def claim(target: str | os.PathLike) -> Iterator[Path]:
    """Hold an advisory lock (``fcntl.flock``) on ``target`` while writing it or into it.

    The lock file is ``<target>/.lock`` for a directory and ``.<name>.lock`` beside a file;
    it records the holder (host, PID, start time) and is removed on release. A second writer
    gets :class:`Busy` at once, naming the holder. The kernel drops the lock when its holder
    dies (SIGKILL included), so a stale lock file never blocks anyone.
    """
    target = Path(target)
    lock_path = target / ".lock" if target.is_dir() else \
        target.with_name(f".{target.name}.lock")
    while True:
        handle = open(lock_path, "a+")
        try:
            _lock(handle, target)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise Busy(f"{target} is being written by {holder}; wait for it to finish or "
                       f"choose another output") from None
        try:  # the file we locked must still be the one at lock_path (its holder removes it)
            current = os.stat(lock_path).st_ino
        except FileNotFoundError:
            current = None
        if current == os.fstat(handle.fileno()).st_ino:
            break
        handle.close()
    try:
        if os.fstat(handle.fileno()).st_size:  # a dead holder's record; truncating an
            handle.seek(0)  # empty file would make ext4 write it back at close (3 ms)
            handle.truncate()
        handle.write(f"{socket.gethostname()} PID {os.getpid()} since "
                     f"{datetime.datetime.now().isoformat(timespec='seconds')}\n")
        handle.flush()
    except OSError as error:  # e.g. a full disk: nothing is claimed, nothing is left behind
        lock_path.unlink(missing_ok=True)
        _close_releasing(handle)
        if error.errno in WRITE_ERRNOS:
            raise output_error(target, error.strerror or str(error), error.errno) from None
        raise
    try:
        yield lock_path
    finally:
        lock_path.unlink(missing_ok=True)
        _close_releasing(handle)


def _close_releasing(handle) -> None:
    """Close a lock file, which releases its lock; a flush that fails again on the way (the
    disk is still full) does not matter, since the descriptor is closed either way."""
    with contextlib.suppress(OSError):
        handle.close()


def _lock(handle, target: Path) -> None:
    """Take the exclusive lock on the open lock file ``handle`` without waiting
    (BlockingIOError when another process holds it); without ``fcntl``, warn instead."""
    if fcntl is None:
        warnings.warn(f"{target} is not locked while it is written (no fcntl on this "
                      f"platform): make sure no other process writes it at the same time",
                      RuntimeWarning, stacklevel=4)
        return
    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)


def remove_stale_temporaries(final: str | os.PathLike) -> list[Path]:
    """Delete every temporary of ``final`` left by :func:`atomic_path`. Call it while holding
    the :func:`claim` on ``final`` (or on its directory): then no other writer is alive, so
    what is left was abandoned (a killed writer, on any host or PID namespace). Returns the
    removed paths."""
    final = Path(final)
    removed = []
    for candidate in final.parent.glob(f"{_temporary_prefix(final)}*"):
        candidate.unlink(missing_ok=True)
        removed.append(candidate)
    return removed
