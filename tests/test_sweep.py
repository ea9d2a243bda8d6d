"""The sweep: planning, skipping finished runs, and the SLURM job array it writes."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys

import pytest

from repsim import sweep
from repsim.train.cli import build_parser, config_from_args


def test_plan_makes_one_validated_run_per_fusion_layer_and_seed(tmp_path):
    jobs = sweep.plan(["--layers", "2", "--epochs", "1"], ["1", "late"], [0, 3], tmp_path)
    got = [(job.config.model.fusion_layer, job.config.seed, job.run_dir) for job in jobs]
    assert got == [(1, 0, tmp_path / "synthetic-f1-s0"), (1, 3, tmp_path / "synthetic-f1-s3"),
                   (3, 0, tmp_path / "synthetic-f3-s0"), (3, 3, tmp_path / "synthetic-f3-s3")]
    assert all(job.config.epochs == 1 and job.config.model.layers == 2 for job in jobs)


@pytest.mark.parametrize(("train_args", "layers", "message"), [
    (["--out-dir", "x"], ["1"], "--out-dir"),
    (["--layers", "1"], ["2", "late"], "share a run directory"),
    (["--layers", "2"], ["4"], "fusion"),
])
def test_plan_refuses_bad_sweeps(tmp_path, train_args, layers, message):
    with pytest.raises(ValueError, match=message):
        sweep.plan(train_args, layers, [0], tmp_path)


def test_run_local_skips_finished_runs(tmp_path, monkeypatch):
    jobs = sweep.plan(["--epochs", "1"], ["1", "2"], [0], tmp_path)
    jobs[0].run_dir.mkdir(parents=True)
    (jobs[0].run_dir / "metrics.json").write_text(json.dumps({"clean_accuracy": 1.0}))
    trained = []
    monkeypatch.setattr(sweep, "run", lambda config, **_: trained.append(config) or config)
    monkeypatch.setattr(sweep, "summary_line", lambda result: "")
    assert sweep.run_local(jobs, progress=False) == [jobs[1].config]
    assert trained == [jobs[1].config]


def test_slurm_array_runs_the_planned_training_command(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    jobs = sweep.plan(["--epochs", "2", "--hidden", "8"], ["1", "3"], [0, 1], "runs")
    fake_python = tmp_path / "fake-python"
    fake_python.write_text('#!/bin/bash\nprintf "%s\\n" "$@" > "$ARGS_FILE"\n')
    fake_python.chmod(0o755)
    script = sweep.write_slurm_script(jobs, "runs/sweep", sweep.SlurmOptions(
        partition="gpu", gpus=1, max_parallel=2, python=str(fake_python)))
    text = script.read_text()
    assert "#SBATCH --array=0-3%2" in text and "#SBATCH --gres=gpu:1" in text
    assert "#SBATCH --partition=gpu" in text
    parser = build_parser()
    for task, job in enumerate(jobs):
        args_file = tmp_path / f"args-{task}.txt"
        env = dict(os.environ, SLURM_ARRAY_TASK_ID=str(task), ARGS_FILE=str(args_file))
        subprocess.run(["bash", str(script.resolve())], check=True, env=env, cwd="/")
        argv = args_file.read_text().split("\n")[:-1]
        assert argv[:2] == ["-m", "repsim.train"]
        assert tuple(argv[2:]) == job.argv
        assert config_from_args(parser.parse_args(argv[2:])) == job.config
    assert [shlex.split(line) for line in (tmp_path / "runs/sweep/jobs.txt").read_text()
            .splitlines()] == [list(job.argv) for job in jobs]


def test_cli_dry_run_lists_runs_and_bad_input_exits_2(tmp_path):
    command = [sys.executable, "-m", "repsim.sweep", "--fusion-layers", "1", "2",
               "--runs-dir", str(tmp_path), "--dry-run", "--", "--epochs", "1"]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert f"{tmp_path}/synthetic-f1-s0 (to run)" in done.stdout
    assert f"{tmp_path}/synthetic-f2-s0 (to run)" in done.stdout
    bad = subprocess.run([*command[:4], "9", *command[5:]], capture_output=True, text=True,
                         check=False)
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1 and bad.stderr.startswith("error: ")


def test_submit_without_sbatch_names_the_command(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="sbatch"):
        sweep.submit(tmp_path / "sweep.sbatch")
