"""What ``--overwrite`` may replace (regular files only: never a device, FIFO, socket,
directory or a link out of the folder), and a disk that fills while recording: one line each,
exit status 2, and the thing at the path left as it was."""

from __future__ import annotations

import errno
import os
import shutil
import socket
import subprocess
import textwrap
from pathlib import Path

import pytest

from repsim import activations as act
from repsim.record.cli import main as record_main

MODEL = '''
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(3, 64)

    def forward(self, audio):
        return self.embed(audio)


def build():
    torch.manual_seed(0)
    return Net()


def batches():
    data = torch.randn(600, 20, 3, generator=torch.Generator().manual_seed(1))
    for start in range(0, 600, 50):
        yield {"audio": data[start:start + 50]}
'''


@pytest.fixture
def user(tmp_path) -> tuple[Path, list[str]]:
    """A model file and a stimulus table; the record command's arguments but --out."""
    (tmp_path / "user_model.py").write_text(textwrap.dedent(MODEL))
    (tmp_path / "stimuli.csv").write_text("stimulus_id\n" + "".join(f"c{i}\n"
                                                                   for i in range(600)))
    model = str(tmp_path / "user_model.py")
    return tmp_path, [f"{model}:build", "--stimuli", str(tmp_path / "stimuli.csv"),
                      "--batches", f"{model}:batches", "--layers", "embed", "--time-dim", "1",
                      "--no-progress"]


def fifo(folder: Path) -> Path:
    path = folder / "pipe.h5"
    os.mkfifo(path)
    return path


def unix_socket(folder: Path) -> Path:
    path = folder / "sock.h5"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.close()  # the socket file stays
    return path


def link_out_of_the_folder(folder: Path) -> Path:
    outside = folder / "elsewhere"
    outside.mkdir()
    (outside / "precious.h5").write_bytes(b"someone's file")
    (folder / "out").mkdir()
    path = folder / "out" / "link.h5"
    path.symlink_to(outside / "precious.h5")
    return path


def directory(folder: Path) -> Path:
    path = folder / "a_folder.h5"
    path.mkdir()
    return path


# what is at the path: (how to make it, what the one line calls it)
KINDS = {"fifo": (fifo, "is a FIFO (named pipe)"), "socket": (unix_socket, "is a socket"),
         "link": (link_out_of_the_folder, "is a symbolic link to"),
         "directory": (directory, "is a directory")}


def kind_of(path: Path) -> tuple:
    info = os.lstat(path)
    return info.st_mode, info.st_ino, info.st_size


@pytest.mark.parametrize("overwrite", [False, True])
@pytest.mark.parametrize("kind", list(KINDS))
def test_only_a_regular_file_may_be_replaced(tmp_path, kind, overwrite):
    make, words = KINDS[kind]
    path = make(tmp_path)
    with pytest.raises((ValueError, IsADirectoryError)) as error:
        act.check_output_path(path, overwrite=overwrite)
    message = str(error.value)
    assert message.startswith(f"output path {path} {words}") and "\n" not in message


def test_a_device_is_never_replaced():
    """/dev/null: checked, never written (the check alone decides)."""
    with pytest.raises(ValueError, match="output path /dev/null is a character device, not a "
                                         "regular file; --overwrite replaces regular files"):
        act.check_output_path("/dev/null", overwrite=True)


def test_a_link_inside_the_folder_and_a_regular_file_may_be_replaced(tmp_path):
    (tmp_path / "real.h5").write_bytes(b"old")
    (tmp_path / "link.h5").symlink_to(tmp_path / "real.h5")
    for path in (tmp_path / "real.h5", tmp_path / "link.h5"):
        with pytest.raises(FileExistsError, match="pass overwrite"):
            act.check_output_path(path)
        assert act.check_output_path(path, overwrite=True) == path


@pytest.mark.parametrize("kind", ["fifo", "socket", "link"])
def test_record_with_overwrite_leaves_the_thing_at_the_path_alone(user, capsys, kind):
    tmp_path, argv = user
    path = KINDS[kind][0](tmp_path)
    before = kind_of(path)
    assert record_main([*argv, "--out", str(path), "--overwrite"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: output path {path} {KINDS[kind][1]}")
    assert kind_of(path) == before
    if kind == "link":
        assert (tmp_path / "elsewhere" / "precious.h5").read_bytes() == b"someone's file"


# --- a disk that fills while recording -------------------------------------------------------

# What HDF5 (through h5py) says when a write finds the disk full: its time stamp ends in a
# newline (C's ctime), so the text is two lines.
HDF5_FULL_DISK = ("Can't write unprocessed chunk data (file write failed: time = Mon Dec  7 "
                  "16:16:42 2026\n, filename = '/x/.out.h5.tmp-5588', file descriptor = 4, "
                  "errno = 28, error message = 'No space left on device', buf = 0x7f953eb724e3, "
                  "total write size = 76589, bytes this sub-write = 76589, offset = 303104)")


def test_a_full_disk_while_recording_is_one_line(user, capsys, monkeypatch):
    """h5py raises HDF5's two-line text as an OSError (errno 28); the command prints one
    line and leaves nothing."""
    tmp_path, argv = user

    def full_disk(self, *args):
        raise OSError(errno.ENOSPC, HDF5_FULL_DISK)

    monkeypatch.setattr(act.ActivationWriter, "_write_steps", full_disk)
    out = tmp_path / "out" / "a.h5"
    out.parent.mkdir()
    assert record_main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (f"error: cannot write {out}: No space left on device; nothing was "
                       f"written there (a file already at that path is unchanged)"), err
    assert [line for line in err if line.startswith(("error", ","))] == err[-1:]
    assert list(out.parent.iterdir()) == []


@pytest.fixture
def small_disk(tmp_path):
    """A real 300 KB tmpfs, where this process may mount one (root with CAP_SYS_ADMIN)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=300k", "tmpfs", str(mount)],
            capture_output=True).returncode != 0:
        pytest.skip("no tmpfs can be mounted here")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_a_real_full_disk_while_recording_is_one_line(user, small_disk, capsys):
    tmp_path, argv = user
    out = small_disk / "a.h5"
    assert record_main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"error: cannot write {out}: No space left on device; "), err
    assert not [line for line in err[:-1] if not line.startswith("recording")], err
    assert list(small_disk.iterdir()) == []


def test_a_write_failure_reason_is_one_line_whatever_the_text():
    from repsim.provenance import output_error

    error = output_error("/x/a.h5", "first line\n  second line")
    assert str(error) == ("cannot write /x/a.h5: first line second line; nothing was written "
                          "there (a file already at that path is unchanged)")


def test_a_dangling_link_at_the_output_path_needs_overwrite(tmp_path):
    from repsim.activations import check_output_path

    link = tmp_path / "out.h5"
    link.symlink_to(tmp_path / "missing.h5")
    with pytest.raises(FileExistsError, match="exists; pass overwrite"):
        check_output_path(link)
    assert check_output_path(link, overwrite=True) == link
