"""python -m repsim.data: the summary it prints, the stimuli figure it writes, and one-line
errors with exit status 2."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest
from paths import REPO_ROOT

from repsim.data import build_dataset
from repsim.data.__main__ import main
from repsim.data.fingerprint import content_digest

REPO = REPO_ROOT
SMALL_OPTIONS = {"train_speakers": 2, "val_speakers": 1, "test_speakers": 2, "repetitions": 1,
                 "train_pairs": 40, "val_pairs": 10, "test_pairs": 20}
SMALL = [arg for key, value in SMALL_OPTIONS.items() for arg in ("--option", f"{key}={value}")]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_an_unknown_dataset_exits_2_with_one_line():
    result = subprocess.run([sys.executable, "-m", "repsim.data", "--dataset", "mnist"],
                            capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert lines == ["error: unknown dataset 'mnist'; choose one of: avmnist, folder, "
                     "synthetic (or give MODULE:FUNCTION)"]


def test_summary_and_figure(tmp_path, capsys, caplog):
    caplog.set_level(logging.INFO, logger="repsim")
    figure = tmp_path / "figures" / "stimuli.png"
    assert main(["--seed", "2", "--figure", str(figure), *SMALL]) == 0
    out = capsys.readouterr().out
    assert "dataset synthetic" in out and "sample rate 8000 Hz" in out
    assert "T=8 steps of 16x16" in out
    rows = {tuple(line.split()[:2]): line.split()[2:] for line in out.splitlines()
            if line.strip().startswith(("train", "val", "test"))}
    assert rows[("train", "pairs")][0] == "40"  # total, then ten per-digit counts
    assert rows[("test", "clips")] == ["20"] + ["2"] * 10
    assert len(rows[("train", "images")]) == 11
    assert "test     2: spk03, spk04" in out
    expected = build_dataset("synthetic", seed=2, **SMALL_OPTIONS).fingerprint()
    assert f"fingerprint: {content_digest(expected)}" in out.splitlines()
    assert f"stimuli figure written to {figure}" in caplog.text
    data = figure.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 10_000
    assert [p.name for p in figure.parent.iterdir()] == ["stimuli.png"]  # no leftovers


@pytest.mark.parametrize(("argv", "message"), [
    (["--option", "no_such_option=3"], "no_such_option"),
    (["--option", "repetitions=0"], "repetitions must be a positive integer"),
    (["--figure", "stimuli.bmp"], "cannot tell the figure format"),
    (["--examples", "0", "--figure", "x.png"], "examples must be at least 1"),
])
def test_user_errors_are_one_line_and_exit_2(tmp_path, capsys, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    assert main([*SMALL, *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]
    assert list(tmp_path.iterdir()) == []  # nothing written
