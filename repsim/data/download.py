"""Finding the MNIST and FSDD files on disk, and downloading them (verified) when they are not.

Where data lives (the *data root*), first match wins:

1. the ``data_dir`` argument (``--data-dir`` on the command line);
2. the environment variable ``REPSIM_DATA_DIR``;
3. :func:`default_data_dir`: ``data/`` of the source checkout repsim is imported from, or,
   for an installed package, the per-user cache ``pooch.os_cache("repsim")``
   (``~/.cache/repsim`` on Linux).

Inside the root, MNIST is read from the first of ``mnist/``, ``mnist-official/``,
``mnist-mini/`` that holds all four IDX files (each gzipped or not), and FSDD from
``fsdd/recordings/*.wav``. Downloads go to ``mnist/`` and ``fsdd/recordings/``. Files
already on disk are used as they are (a local copy may be a deliberate subset); downloads
are verified: MNIST by the official MD5s, FSDD after extraction by the SHA-256 of its
sorted ``sha256sum`` listing, whatever archive it came from. A file that fails verification
is removed and a ValueError raised.

``REPSIM_MIRROR`` (an http(s) base URL) replaces the upstream hosts: files are fetched
as ``<mirror>/<file name>``, i.e. the four MNIST ``.gz`` names and
``free-spoken-digit-dataset-1.0.10.tar.gz`` (GitHub's v1.0.10 source archive).
``REPSIM_OFFLINE=1`` forbids downloading, like ``download=False``.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import shutil
import tarfile
import tomllib
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pooch
import requests

logger = logging.getLogger(__name__)

ENV_DATA_DIR = "REPSIM_DATA_DIR"
ENV_MIRROR = "REPSIM_MIRROR"
ENV_OFFLINE = "REPSIM_OFFLINE"
DISTRIBUTION = "repsim-av"  # the project's name in pyproject.toml: how a checkout is recognised

MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
MNIST_FILES = tuple(MNIST_MD5)
MNIST_DIRS = ("mnist", "mnist-official", "mnist-mini")

FSDD_URL = ("https://github.com/Jakobovski/free-spoken-digit-dataset/archive/refs/tags/"
            "v1.0.10.tar.gz")
FSDD_ARCHIVE = "free-spoken-digit-dataset-1.0.10.tar.gz"
# SHA-256 of `sha256sum` over every FSDD v1.0.10 clip, sorted by file name.
FSDD_SET_SHA256 = "1801eae019c063377d98f831d3f93574f259475df7332bb0e3d1b080fb5e6959"
FSDD_RECORDINGS = Path("fsdd", "recordings")

# Seconds to wait for a connection and then between received bytes: a mirror that does not
# answer fails in seconds, a slow but live one still completes.
TIMEOUT = (10, 60)
CHUNK_SIZE = 1 << 16  # bytes per read while streaming a download (pooch's default is 1 KiB)
_FALSE = ("", "0", "false", "no", "off")


@dataclass(frozen=True)
class AVMnistFiles:
    """Where the raw avmnist data was found: the MNIST folder and the FSDD recordings."""

    mnist_dir: Path
    recordings_dir: Path


def _project_name(pyproject: Path) -> str | None:
    """``[project] name`` of a ``pyproject.toml``, or None when it is missing or unreadable."""
    try:
        with pyproject.open("rb") as file:
            project = tomllib.load(file).get("project")
    except (OSError, tomllib.TOMLDecodeError):
        return None
    return project.get("name") if isinstance(project, dict) else None


def default_data_dir(package_dir: str | os.PathLike | None = None) -> Path:
    """Where data go when neither ``data_dir`` nor ``$REPSIM_DATA_DIR`` says.

    ``package_dir`` is the ``repsim`` package folder (default: the one imported). When its
    parent is a checkout of this project (its ``pyproject.toml`` names ``repsim-av``), the
    checkout's ``data/``; otherwise (an installed package) the per-user cache
    ``pooch.os_cache("repsim")``. Neither depends on the current directory, so every command
    finds the same files wherever it is started.
    """
    package = Path(package_dir) if package_dir is not None else Path(__file__).parents[1]
    checkout = package.resolve().parent
    if _project_name(checkout / "pyproject.toml") == DISTRIBUTION:
        return checkout / "data"
    return Path(pooch.os_cache("repsim"))


def data_root(data_dir: str | os.PathLike | None = None) -> Path:
    """The data root: ``data_dir`` if given, else ``$REPSIM_DATA_DIR``, else the default."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    from_env = os.environ.get(ENV_DATA_DIR, "").strip()
    return Path(from_env).expanduser() if from_env else default_data_dir()


def downloads_allowed(download: bool = True) -> bool:
    """False when the caller or ``REPSIM_OFFLINE`` says not to download."""
    return download and os.environ.get(ENV_OFFLINE, "").strip().lower() in _FALSE


def source_url(upstream: str, name: str) -> str:
    """Where to fetch ``name``: ``<$REPSIM_MIRROR>/<name>`` when a mirror is set, else upstream."""
    mirror = os.environ.get(ENV_MIRROR, "").strip()
    if not mirror:
        return upstream
    if not mirror.startswith(("http://", "https://")):
        raise ValueError(f"{ENV_MIRROR} must be an http:// or https:// base URL, got {mirror!r}")
    return f"{mirror.rstrip('/')}/{name}"


def fetch(url: str, directory: str | os.PathLike, name: str, known_hash: str | None) -> Path:
    """Download ``url`` (http or https) to ``directory/name`` unless it is there; verify it.

    ``known_hash`` is pooch's ``"md5:..."``/``"sha256:..."`` form, or None for no check. A
    mismatch discards the download and raises ValueError; a host that cannot be reached or
    answers with an error raises FileNotFoundError naming the URL.
    """
    downloader = pooch.HTTPDownloader(timeout=TIMEOUT, chunk_size=CHUNK_SIZE)
    pooch_logger = pooch.get_logger()  # pooch's own logger writes to stderr: keep it quiet
    level = pooch_logger.level
    pooch_logger.setLevel(logging.WARNING)
    try:
        if not (Path(directory) / name).is_file():
            logger.info("downloading %s from %s", name, url)
        return Path(pooch.retrieve(url, known_hash, fname=name, path=directory,
                                   downloader=downloader))
    except requests.RequestException as error:
        raise FileNotFoundError(f"could not download {name} from {url}: {error}") from error
    except ValueError as error:  # pooch's hash check; URLs are http(s), so nothing else
        raise ValueError(f"checksum mismatch for {name} downloaded from {url}; the download "
                         f"was discarded ({error})") from error
    finally:
        pooch_logger.setLevel(level)


def mnist_file(directory: Path, name: str) -> Path | None:
    """``directory/name`` (gzipped) or the same name without ``.gz``, whichever exists."""
    for candidate in (directory / name, directory / name.removesuffix(".gz")):
        if candidate.is_file():
            return candidate
    return None


def find_mnist(root: Path) -> Path | None:
    """The first of ``root/{mnist,mnist-official,mnist-mini}`` that holds all four files."""
    for folder in MNIST_DIRS:
        if all(mnist_file(root / folder, name) for name in MNIST_FILES):
            return root / folder
    return None


def fetch_mnist(directory: str | os.PathLike, names: tuple[str, ...] = MNIST_FILES) -> Path:
    """Download the MNIST files ``names`` missing from ``directory``, MD5-checked."""
    directory = Path(directory)
    for name in names:
        if name not in MNIST_MD5:
            raise ValueError(f"unknown MNIST file {name!r}; known: {', '.join(MNIST_FILES)}")
        if mnist_file(directory, name) is None:
            fetch(source_url(MNIST_URL + name, name), directory, name, f"md5:{MNIST_MD5[name]}")
    return directory


def fsdd_set_digest(recordings_dir: str | os.PathLike) -> str:
    """SHA-256 of the ``sha256sum`` listing of every ``*.wav`` in the folder, sorted by name.

    Equal for any copy of the same clips, whatever archive or folder they came from.
    """
    lines = []
    for path in sorted(Path(recordings_dir).glob("*.wav"), key=lambda p: p.name):
        lines.append(f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {path.name}\n")
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def _extract_recordings(archive: Path, target: Path) -> int:
    """Write the archive's ``<top>/recordings/*.wav`` members flat into ``target``."""
    count = 0
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                parts = PurePosixPath(member.name).parts
                if (member.isfile() and len(parts) == 3 and parts[1] == "recordings"
                        and parts[2].endswith(".wav")):
                    source = tar.extractfile(member)
                    if source is None:  # a regular file always has data; never for isfile()
                        raise tarfile.ExtractError(f"{member.name} has no data")
                    (target / parts[2]).write_bytes(source.read())
                    count += 1
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as error:
        raise ValueError(f"{archive} is not a readable tar archive ({error})") from error
    return count


def fetch_fsdd(fsdd_dir: str | os.PathLike, expected_sha256: str = FSDD_SET_SHA256) -> Path:
    """Download the FSDD archive, extract its clips to ``fsdd_dir/recordings``, verify them.

    The clips are extracted to a temporary folder and moved into place only when their
    whole-set digest (:func:`fsdd_set_digest`) equals ``expected_sha256``; otherwise they are
    removed and ValueError is raised. The archive is removed either way.
    """
    fsdd_dir = Path(fsdd_dir)
    url = source_url(FSDD_URL, FSDD_ARCHIVE)
    archive = fetch(url, fsdd_dir, FSDD_ARCHIVE, known_hash=None)
    recordings = fsdd_dir / "recordings"
    staging = fsdd_dir / f".recordings.tmp-{os.getpid()}"
    try:
        staging.mkdir(parents=True, exist_ok=True)
        if _extract_recordings(archive, staging) == 0:
            raise ValueError(f"the archive from {url} holds no <top>/recordings/*.wav clips")
        digest = fsdd_set_digest(staging)
        if digest != expected_sha256:
            raise ValueError(f"FSDD from {url} failed verification: the whole-set SHA-256 of "
                             f"its clips is {digest}, expected {expected_sha256}; the archive "
                             f"and extracted clips were removed")
        if not recordings.is_dir():  # another process may have finished first
            os.replace(staging, recordings)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        archive.unlink(missing_ok=True)
    return recordings


def _has_wavs(folder: Path) -> bool:
    return folder.is_dir() and any(folder.glob("*.wav"))


def _missing_message(root: Path, missing: list[str], reason: str) -> str:
    return (f"avmnist data not found: missing {', '.join(missing)} in {root} (MNIST looked for "
            f"in {', '.join(f'{root / d}/' for d in MNIST_DIRS)}; FSDD in "
            f"{root / FSDD_RECORDINGS}/). {reason}. Pass data_dir (--data-dir) or set "
            f"{ENV_DATA_DIR} to a folder holding mnist/ (or mnist-mini/) and fsdd/recordings/, "
            f"or allow downloads (download=True, {ENV_OFFLINE} unset; {ENV_MIRROR}=<base URL> "
            f"fetches from a mirror)")


def locate_avmnist(data_dir: str | os.PathLike | None = None, *,
                   download: bool = True) -> AVMnistFiles:
    """Find MNIST and FSDD under the data root, downloading what is missing if allowed.

    Raises FileNotFoundError with one message naming every missing file, the folders looked
    in and the environment variables that change them, when the data is missing and cannot
    be downloaded; ValueError when a download fails verification.
    """
    root = data_root(data_dir)
    mnist_dir = find_mnist(root)
    recordings = root / FSDD_RECORDINGS
    missing_mnist = () if mnist_dir else tuple(
        name for name in MNIST_FILES if mnist_file(root / MNIST_DIRS[0], name) is None)
    missing = [f"{MNIST_DIRS[0]}/{name}" for name in missing_mnist]
    if not _has_wavs(recordings):
        missing.append(f"{FSDD_RECORDINGS.as_posix()}/*.wav")
    if missing and not downloads_allowed(download):
        reason = "Downloads are off (" + ("download=False" if not download
                                          else f"{ENV_OFFLINE} is set") + ")"
        raise FileNotFoundError(_missing_message(root, missing, reason))
    try:
        if mnist_dir is None:
            mnist_dir = fetch_mnist(root / MNIST_DIRS[0], missing_mnist)
        if not _has_wavs(recordings):
            fetch_fsdd(root / FSDD_RECORDINGS.parent)
    except FileNotFoundError as error:
        message = _missing_message(root, missing, f"Download failed: {error}")
        raise FileNotFoundError(message) from error
    logger.info("avmnist data: MNIST from %s, FSDD from %s", mnist_dir, recordings)
    return AVMnistFiles(mnist_dir=mnist_dir, recordings_dir=recordings)
