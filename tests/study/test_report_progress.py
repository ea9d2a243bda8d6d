"""python -m repsim.study --report tells how far it is: a log line as each stage begins, and a
progress bar on a terminal (or with --progress)."""

from __future__ import annotations

import logging
import shutil

from paths import REPO_ROOT

from repsim.study.cli import main
from repsim.study.report import REPORT_FILE, STAGES


def quick_study_records(folder):
    """The committed quick study's file and the records of four of its runs (k = 1, 3; seeds
    0, 1 of synthetic/clean): the report covers the finished runs it finds."""
    shutil.copy(REPO_ROOT / "studies" / "quick.toml", folder / "quick.toml")
    (folder / "quick").mkdir()
    shutil.copy(REPO_ROOT / "studies" / "quick" / "study.toml", folder / "quick" / "study.toml")
    for run in ("f1-s0", "f1-s1", "f3-s0", "f3-s1"):
        shutil.copytree(REPO_ROOT / "studies" / "quick" / "runs" / "synthetic" / "clean" / run,
                        folder / "quick" / "runs" / "synthetic" / "clean" / run)
    return folder / "quick.toml"


def test_report_logs_each_stage_and_draws_a_bar(tmp_path, caplog, capsys):
    """(Whether a bar is drawn at all follows --progress/--no-progress and the terminal, as
    in every command: tests/test_cli.py.)"""
    path = quick_study_records(tmp_path)
    with caplog.at_level(logging.INFO, logger="repsim"):
        assert main([str(path), "--report", "--progress"]) == 0
    stages = [record.getMessage() for record in caplog.records
              if record.getMessage().startswith("report quick: ")]
    assert stages == [f"report quick: {what} ({i}/{len(STAGES)})"
                      for i, what in enumerate(STAGES, start=1)]
    captured = capsys.readouterr()
    assert captured.out.strip() == f"wrote {tmp_path / 'quick' / REPORT_FILE}"
    assert "report quick: 100%" in captured.err and f"{len(STAGES)}/{len(STAGES)} [" in \
        captured.err  # the bar, drawn to its end
