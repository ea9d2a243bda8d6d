"""Provenance for artifacts: library versions, file digests, and atomic writes."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import platform
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

_TRACKED = ("torch", "numpy", "scipy", "scikit-learn", "xarray", "h5py", "h5netcdf")


def library_versions() -> dict[str, str]:
    """Versions of repsim, Python and the libraries that shape its numbers."""
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
    name was left as it was."""
    return OutputError(code, f"cannot write {final}: {reason}; nothing was written there (a "
                             f"file already at that path is unchanged)")


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
        if error.errno in WRITE_ERRNOS and not isinstance(error, OutputError):
            raise output_error(final, error.strerror, error.errno) from error
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _temporary_prefix(final: Path) -> str:
    return f".{final.name}.tmp-"


def remove_stale_temporaries(final: str | os.PathLike) -> list[Path]:
    """Delete temporaries of ``final`` whose writing process no longer exists.

    Only SIGKILL lets a temporary of :func:`atomic_path` outlive its writer; temporaries of
    live processes are left alone. Returns the removed paths.
    """
    final = Path(final)
    prefix = _temporary_prefix(final)
    removed = []
    for candidate in final.parent.glob(f"{prefix}*"):
        pid = candidate.name[len(prefix):]
        if pid.isdigit() and not _process_alive(int(pid)):
            candidate.unlink(missing_ok=True)
            removed.append(candidate)
    return removed


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
