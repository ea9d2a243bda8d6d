"""Finding and downloading avmnist data: a local HTTP mirror on 127.0.0.1, never the internet."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import io
import os
import shutil
import socket
import tarfile
import threading
import time
from pathlib import Path

import pooch
import pytest
from paths import REPO_ROOT

from repsim.data import download
from repsim.data.download import (
    ENV_DATA_DIR,
    ENV_MIRROR,
    ENV_OFFLINE,
    FSDD_ARCHIVE,
    MNIST_FILES,
    fetch_fsdd,
    fetch_mnist,
    fsdd_set_digest,
    locate_avmnist,
)

T10K = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        pass


@pytest.fixture
def serve(monkeypatch):
    """``serve(folder)`` serves the folder on 127.0.0.1 and makes it the REPSIM_MIRROR."""
    servers = []

    def start(folder: Path) -> str:
        handler = functools.partial(_QuietHandler, directory=str(folder))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        monkeypatch.setenv(ENV_MIRROR, url)
        return url

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture(autouse=True)
def _no_ambient_settings(monkeypatch):
    for name in (ENV_DATA_DIR, ENV_MIRROR, ENV_OFFLINE):
        monkeypatch.delenv(name, raising=False)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _fsdd_archive(shared_data: Path, folder: Path, tamper: str | None = None,
                  limit: int | None = None) -> Path:
    """The shared clips (the first ``limit`` of them by name, or all) as an upstream-style
    tar.gz (top folder, recordings/, a README), with the clip named ``tamper`` altered."""
    folder.mkdir(parents=True, exist_ok=True)
    top = "free-spoken-digit-dataset-1.0.10"
    with tarfile.open(folder / FSDD_ARCHIVE, "w:gz", compresslevel=1) as tar:
        readme = b"Free Spoken Digit Dataset\n"
        info = tarfile.TarInfo(f"{top}/README.md")
        info.size = len(readme)
        tar.addfile(info, io.BytesIO(readme))
        for path in sorted((shared_data / "fsdd" / "recordings").glob("*.wav"))[:limit]:
            data = path.read_bytes()
            if path.name == tamper:
                data = data[:-1] + bytes([data[-1] ^ 1])
            info = tarfile.TarInfo(f"{top}/recordings/{path.name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return folder / FSDD_ARCHIVE


@pytest.fixture(scope="module")
def fsdd_archive(shared_data, tmp_path_factory) -> Path:
    """An untampered upstream-style FSDD archive, in a folder of its own."""
    return _fsdd_archive(shared_data, tmp_path_factory.mktemp("fsdd-mirror"))


def test_mnist_from_a_mirror_passes_the_official_checksums(shared_data, serve, tmp_path):
    official = shared_data / "mnist-official"
    serve(official)
    target = fetch_mnist(tmp_path / "mnist", names=T10K)
    for name in T10K:
        assert (target / name).read_bytes() == (official / name).read_bytes()
        assert _md5(target / name) == download.MNIST_MD5[name]
    assert sorted(p.name for p in target.iterdir()) == sorted(T10K)  # no temporary leftovers


def test_corrupted_mirror_copy_is_rejected_and_removed(shared_data, serve, tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    data = bytearray((shared_data / "mnist-official" / T10K[1]).read_bytes())
    data[100] ^= 0xFF
    (mirror / T10K[1]).write_bytes(bytes(data))
    serve(mirror)
    target = tmp_path / "mnist"
    with pytest.raises(ValueError, match=f"checksum mismatch for {T10K[1]}"):
        fetch_mnist(target, names=(T10K[1],))
    assert not target.exists() or not any(target.iterdir())


def test_fsdd_archive_is_extracted_and_verified_by_its_whole_set_digest(shared_data, serve,
                                                                        fsdd_archive, tmp_path):
    serve(fsdd_archive.parent)
    recordings = fetch_fsdd(tmp_path / "data" / "fsdd")
    assert recordings == tmp_path / "data" / "fsdd" / "recordings"
    names = sorted(p.name for p in recordings.iterdir())
    assert names == sorted(p.name for p in (shared_data / "fsdd" / "recordings").iterdir())
    # The digest written out: sha256 of the `sha256sum` listing, as the shared README defines.
    listing = (shared_data / "fsdd" / "SHA256SUMS").read_bytes()
    assert fsdd_set_digest(recordings) == hashlib.sha256(listing).hexdigest()
    assert sorted(os.listdir(recordings.parent)) == ["recordings"]  # archive removed


@pytest.mark.parametrize("tamper", [None, "0_george_1.wav"])
def test_tampered_fsdd_archive_is_rejected_and_removed(shared_data, serve, tmp_path, tamper):
    """A 100-clip archive checked against the digest of those 100 genuine clips, computed
    from the first 100 lines of the shared SHA256SUMS: only the tampered copy fails."""
    listing = (shared_data / "fsdd" / "SHA256SUMS").read_bytes().splitlines(keepends=True)
    expected = hashlib.sha256(b"".join(listing[:100])).hexdigest()
    archive = _fsdd_archive(shared_data, tmp_path / "mirror", tamper=tamper, limit=100)
    serve(archive.parent)
    fsdd_dir = tmp_path / "data" / "fsdd"
    if tamper is None:
        assert len(list(fetch_fsdd(fsdd_dir, expected_sha256=expected).glob("*.wav"))) == 100
        return
    with pytest.raises(ValueError, match="failed verification: the whole-set SHA-256"):
        fetch_fsdd(fsdd_dir, expected_sha256=expected)
    assert os.listdir(fsdd_dir) == []


def test_a_mirror_that_does_not_answer_fails_fast_and_clearly(monkeypatch, tmp_path):
    url = f"http://127.0.0.1:{_closed_port()}"
    monkeypatch.setenv(ENV_MIRROR, url)
    start = time.perf_counter()
    with pytest.raises(FileNotFoundError, match=f"could not download {T10K[0]} from {url}/"):
        fetch_mnist(tmp_path / "mnist", names=T10K[:1])
    assert time.perf_counter() - start < 5


def test_a_mirror_without_the_file_is_a_clear_error(serve, tmp_path):
    empty = tmp_path / "empty-mirror"
    empty.mkdir()
    serve(empty)
    with pytest.raises(FileNotFoundError, match=f"could not download {T10K[1]}.*404"):
        fetch_mnist(tmp_path / "mnist", names=T10K[1:])


def test_mirror_must_be_a_url(monkeypatch, tmp_path):
    monkeypatch.setenv(ENV_MIRROR, "/some/folder")
    with pytest.raises(ValueError, match=f"{ENV_MIRROR} must be an http"):
        fetch_mnist(tmp_path, names=T10K[:1])


def test_offline_and_missing_is_one_message_naming_files_folder_and_variables(tmp_path):
    with pytest.raises(FileNotFoundError) as caught:
        locate_avmnist(tmp_path, download=False)
    message = str(caught.value)
    for name in MNIST_FILES:
        assert f"mnist/{name}" in message
    assert "fsdd/recordings/*.wav" in message and str(tmp_path) in message
    assert "download=False" in message
    for variable in (ENV_DATA_DIR, ENV_MIRROR, ENV_OFFLINE):
        assert variable in message


def test_offline_variable_forbids_downloads(monkeypatch, tmp_path):
    monkeypatch.setenv(ENV_OFFLINE, "1")
    monkeypatch.setenv(ENV_MIRROR, f"http://127.0.0.1:{_closed_port()}")
    with pytest.raises(FileNotFoundError, match=f"Downloads are off \\({ENV_OFFLINE} is set\\)"):
        locate_avmnist(tmp_path)


def test_failed_download_gives_the_missing_data_message(monkeypatch, tmp_path):
    monkeypatch.setenv(ENV_MIRROR, f"http://127.0.0.1:{_closed_port()}")
    with pytest.raises(FileNotFoundError, match=r"missing mnist/train-images.*Download failed"):
        locate_avmnist(tmp_path)


def test_first_use_downloads_everything_missing(shared_data, serve, fsdd_archive, monkeypatch,
                                                tmp_path):
    """End to end with mnist-mini standing in for MNIST (its MD5s replace the official ones)."""
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    shutil.copy(fsdd_archive, mirror / FSDD_ARCHIVE)
    for name in MNIST_FILES:
        shutil.copy(shared_data / "mnist-mini" / name, mirror / name)
        monkeypatch.setitem(download.MNIST_MD5, name, _md5(mirror / name))
    serve(mirror)
    root = tmp_path / "data"
    files = locate_avmnist(root)
    assert files.mnist_dir == root / "mnist" and files.recordings_dir == root / "fsdd/recordings"
    assert sorted(p.name for p in files.mnist_dir.iterdir()) == sorted(MNIST_FILES)
    assert len(list(files.recordings_dir.glob("*.wav"))) == 3000
    assert locate_avmnist(root, download=False) == files  # second use: found, nothing fetched


def test_data_root_rule_argument_then_variable_then_default(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # the current directory plays no part
    assert download.data_root() == REPO_ROOT / "data"  # repsim is imported from this checkout
    monkeypatch.setenv(ENV_DATA_DIR, str(tmp_path / "env"))
    assert download.data_root() == tmp_path / "env"
    assert download.data_root(tmp_path / "arg") == tmp_path / "arg"


def test_default_data_dir_of_a_checkout_is_its_data_folder(tmp_path):
    (tmp_path / "repsim").mkdir()
    (tmp_path / "pyproject.toml").write_text(f'[project]\nname = "{download.DISTRIBUTION}"\n')
    assert download.default_data_dir(tmp_path / "repsim") == tmp_path / "data"
    assert download.default_data_dir() == REPO_ROOT / "data"


@pytest.mark.parametrize("pyproject", [None, '[project]\nname = "another-project"\n',
                                       'project = "repsim-av"\n', "not toml ["])
def test_default_data_dir_of_an_installed_package_is_the_user_cache(pyproject, tmp_path):
    site_packages = tmp_path / "site-packages"
    (site_packages / "repsim").mkdir(parents=True)
    if pyproject is not None:  # another project's, or a broken, file is not a checkout
        (site_packages / "pyproject.toml").write_text(pyproject)
    cache = download.default_data_dir(site_packages / "repsim")
    assert cache == Path(pooch.os_cache("repsim"))
    assert tmp_path not in cache.parents


def test_shared_layout_uses_mnist_mini_and_mnist_comes_first(shared_data, tmp_path):
    files = locate_avmnist(shared_data, download=False)
    assert files.mnist_dir == shared_data / "mnist-mini"  # mnist-official lacks train files
    assert files.recordings_dir == shared_data / "fsdd" / "recordings"
    (tmp_path / "fsdd").mkdir()
    (tmp_path / "fsdd" / "recordings").symlink_to(files.recordings_dir)
    for folder in ("mnist", "mnist-mini"):
        shutil.copytree(shared_data / "mnist-mini", tmp_path / folder)
    packed = tmp_path / "mnist" / MNIST_FILES[0]  # a raw (not gzipped) copy is accepted too
    packed.with_suffix("").write_bytes(gzip.decompress(packed.read_bytes()))
    packed.unlink()
    assert locate_avmnist(tmp_path, download=False).mnist_dir == tmp_path / "mnist"
