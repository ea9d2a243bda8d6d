"""Bad folders: each is one line naming the file or folder, exit status 2 from the trainer,
before training, with nothing written where the run would go."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest
from folder_files import write_folder_dataset
from paths import REPO_ROOT

from repsim.data import build_dataset
from repsim.train.cli import main as train_main

SMALL = {"a": (5, 5), "b": (5, 5)}


def _metadata(root: Path, rows: list[dict]) -> None:
    with open(root / "metadata.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _all_files(root: Path) -> list[str]:
    return [p.relative_to(root).as_posix() for p in sorted(root.glob("*/*/*"))]


def empty_folder(root: Path) -> str:
    root.mkdir()
    return str(root)


def audio_without_images(root: Path) -> str:
    write_folder_dataset(root, classes=SMALL)
    (root / "audio" / "c").mkdir()
    (root / "audio" / "a" / "a_0.wav").rename(root / "audio" / "c" / "c_0.wav")
    return str(root / "audio" / "c")


def images_without_audio(root: Path) -> str:
    write_folder_dataset(root, classes=SMALL)
    (root / "images" / "c").mkdir()
    (root / "images" / "a" / "a_0.png").rename(root / "images" / "c" / "c_0.png")
    return str(root / "images" / "c")


def unreadable_wav(root: Path) -> str:
    write_folder_dataset(root, classes=SMALL)
    (root / "audio" / "b" / "b_3.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunkjunk")
    return str(root / "audio" / "b" / "b_3.wav") + " is not a readable WAV file ("


def zero_length_wav(root: Path) -> str:
    write_folder_dataset(root, classes=SMALL)
    (root / "audio" / "a" / "a_1.wav").write_bytes(b"")
    return str(root / "audio" / "a" / "a_1.wav")


def unreadable_image(root: Path) -> str:
    write_folder_dataset(root, classes=SMALL)
    (root / "images" / "b" / "b_2.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    return str(root / "images" / "b" / "b_2.png") + " is not a readable image ("


def zero_length_image(root: Path) -> str:
    write_folder_dataset(root, classes=SMALL)
    (root / "images" / "a" / "a_4.png").write_bytes(b"")
    return str(root / "images" / "a" / "a_4.png")


def unknown_column(root: Path) -> str:
    write_folder_dataset(root, classes=SMALL)
    _metadata(root, [{"file": f, "split": "train", "label": "x"} for f in _all_files(root)])
    return f"{root / 'metadata.csv'} has unknown column(s) label"


def metadata_not_text(root: Path) -> str:
    write_folder_dataset(root, classes=SMALL)
    (root / "metadata.csv").write_bytes(b"file,split\n\xff\xfe\x00bad,train\n")
    return f"{root / 'metadata.csv'} is not a readable UTF-8 CSV file ("


def missing_file(root: Path) -> str:
    write_folder_dataset(root, classes=SMALL)
    _metadata(root, [{"file": "audio/a/a_99.wav", "split": "test"}])
    return f"{root / 'metadata.csv'} line 2: no data file 'audio/a/a_99.wav'"


def group_in_two_splits(root: Path) -> str:
    write_folder_dataset(root, classes=SMALL)
    files = _all_files(root)
    _metadata(root, [{"file": f, "split": ("train", "val", "test")[i % 3],
                      "group": "alice" if f.startswith("audio") else ""}
                     for i, f in enumerate(files)])
    return f"{root / 'metadata.csv'}: group 'alice' is in more than one split"


def empty_split(root: Path) -> str:
    write_folder_dataset(root, classes=SMALL)
    _metadata(root, [{"file": f, "split": "test" if f.endswith("_0.wav") or f.endswith(
        "_0.png") else "train"} for f in _all_files(root)])
    return f"the val split of {root} would be empty"


def file_outside_a_class_folder(root: Path) -> str:
    write_folder_dataset(root, classes=SMALL)
    (root / "audio" / "a" / "a_0.wav").rename(root / "audio" / "loose.wav")
    return str(root / "audio" / "loose.wav")


CASES = [empty_folder, audio_without_images, images_without_audio, unreadable_wav,
         zero_length_wav, unreadable_image, zero_length_image, unknown_column,
         metadata_not_text, missing_file, group_in_two_splits, empty_split,
         file_outside_a_class_folder]


@pytest.mark.parametrize("case", CASES, ids=[case.__name__ for case in CASES])
def test_the_library_refuses_with_one_line_naming_the_problem(tmp_path, case):
    expected = case(tmp_path / "data")
    with pytest.raises(ValueError) as error:
        build_dataset("folder", data_dir=tmp_path / "data", timesteps=2, height=4, width=4)
    message = str(error.value)
    assert expected in message and "\n" not in message


@pytest.mark.parametrize("case", CASES, ids=[case.__name__ for case in CASES])
def test_the_trainer_exits_2_before_training_and_writes_nothing(tmp_path, capsys, case):
    expected = case(tmp_path / "data")
    run_dir = tmp_path / "runs" / "mine"
    code = train_main(["--dataset", "folder", "--data-dir", str(tmp_path / "data"),
                       "--timesteps", "2", "--height", "4", "--width", "4",
                       "--out-dir", str(run_dir), "--device", "cpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("error: ") and expected in err[0]
    assert not (tmp_path / "runs").exists()


def test_a_missing_data_dir_is_named_and_none_at_all_is_asked_for(tmp_path, capsys):
    assert train_main(["--dataset", "folder", "--data-dir", str(tmp_path / "nope"),
                       "--out-dir", str(tmp_path / "run")]) == 2
    assert f"no such folder: {tmp_path / 'nope'}" in capsys.readouterr().err
    assert train_main(["--dataset", "folder", "--out-dir", str(tmp_path / "run")]) == 2
    assert "needs a data_dir (--data-dir DIR)" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_the_command_line_prints_no_traceback(tmp_path):
    expected = unreadable_wav(tmp_path / "data")
    result = subprocess.run(
        [sys.executable, "-m", "repsim.train", "--dataset", "folder", "--data-dir",
         str(tmp_path / "data"), "--out-dir", str(tmp_path / "run")],
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if not line.startswith("building")]
    assert errors == [f"error: {expected}no 'fmt ' chunk)"], result.stderr
    assert not (tmp_path / "run").exists()
