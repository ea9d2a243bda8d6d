"""python -m repsim.study: study files, restart-safe runs, local workers, submitit arrays."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from paths import REPO_ROOT

from repsim.checkpoint import load_checkpoint
from repsim.rundir import (
    CHECKPOINT_FILE,
    METRICS_FILE,
    RUN_LOG_FILE,
    STUDY_FILE,
    SUMMARY_FILE,
    run_state,
)
from repsim.study import cli as study_cli
from repsim.study.cli import main
from repsim.study.spec import load_study
from repsim.study.steps import complete_run

TINY = """
[study]
seeds = [0, 1]
fusion_layers = [1, 2]

[model]
layers = 1
hidden = 4

[train]
epochs = {epochs}
batch_size = 16

[evaluation]
test_snrs = [0]
probe_stimuli = 20

[datasets.synthetic]
timesteps = 3
height = 8
width = 8
[datasets.synthetic.options]
repetitions = 1
train_pairs = 64
val_pairs = 16
test_pairs = 40
train_speakers = 4
val_speakers = 2
test_speakers = 2

[protocols.clean]
"""


def tiny_study(folder: Path, epochs: int = 1, text: str | None = None,
               name: str = "tiny") -> Path:
    path = folder / f"{name}.toml"
    path.write_text(TINY.format(epochs=epochs) if text is None else text)
    return path


def run_cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "repsim.study", *args], capture_output=True,
                          text=True, cwd=REPO_ROOT, env=env, timeout=timeout)


def test_a_tiny_study_completes_with_two_jobs_and_a_rerun_trains_nothing(tmp_path, capsys):
    """Every call is the command's ``main`` in this process (an interpreter each would add
    its start-up and nothing else; the stopping tests run the command itself)."""
    path = tiny_study(tmp_path)
    assert main([str(path), "--jobs", "2", "--no-progress"]) == 0, capsys.readouterr().err
    study = load_study(path)
    assert len(study.runs) == 4
    assert [run_state(run.run_dir) for run in study.runs] == ["done"] * 4
    assert (study.folder / STUDY_FILE).read_text() == path.read_text()
    assert (study.folder / "results.csv").is_file()
    report = (study.folder / "report.md").read_text()
    assert "not tested (2 paired seeds)" in report and "Incomplete" not in report
    stamps = {run.key: (run.run_dir / CHECKPOINT_FILE).stat().st_mtime_ns for run in study.runs}
    capsys.readouterr()
    assert main([str(path), "--jobs", "2", "--no-progress"]) == 0
    assert "0 of 0 runs finished, 0 failed, 4 were already done" in capsys.readouterr().out
    assert stamps == {run.key: (run.run_dir / CHECKPOINT_FILE).stat().st_mtime_ns
                      for run in study.runs}
    assert main([str(path), "--status"]) == 0
    assert capsys.readouterr().out.count(" done ") == 4
    edited = study.runs[0].run_dir / METRICS_FILE  # a run changed after the fact
    original = edited.read_text()
    edited.write_text(original.replace('"lr": 0.01', '"lr": 0.02'))
    assert main([str(path), "--report"]) == 2
    refused = capsys.readouterr().err
    assert "synthetic/clean/f1-s0" in refused
    assert "lr: 0.02 (checkpoint) vs 0.01 (now)" in refused
    edited.write_text(original)
    (study.runs[1].run_dir / SUMMARY_FILE).unlink()  # a run that has not finished
    assert main([str(path), "--report", "--no-progress"]) == 0, capsys.readouterr().err
    report = (study.folder / "report.md").read_text()
    lines = report.splitlines()  # it opens with the failed runs (one-epoch runs may fail)
    assert lines[2].startswith(("No run failed to train", "**Failed to train: "))
    assert next(line for line in lines if line.startswith("**Incomplete")) == (
        "**Incomplete: 1 of 4 runs have not finished** (synthetic/clean/f1-s1). Every number "
        "below comes from the finished runs only, and every cell says how many seeds it "
        "rests on.")
    assert "not tested (1 paired seeds)" in report and "3 finished runs" in report


def test_a_run_killed_midway_is_finished_with_the_uninterrupted_weights(tmp_path):
    # the kill comes at the first checkpoint this test sees; on a loaded machine that can be
    # several epochs in (it once saw the 4th of 4), so the run has epochs to spare
    epochs = 8
    text = TINY.format(epochs=epochs).replace("seeds = [0, 1]", "seeds = [0]").replace(
        "fusion_layers = [1, 2]", "fusion_layers = [2]")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    killed, whole = tiny_study(tmp_path / "a", text=text), tiny_study(tmp_path / "b", text=text)
    run = load_study(killed).runs[0]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    child = subprocess.Popen([sys.executable, "-m", "repsim.study", str(killed)], cwd=REPO_ROOT,
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        checkpoint = run.run_dir / CHECKPOINT_FILE
        if checkpoint.is_file() and not load_checkpoint(checkpoint)["complete"]:
            break
        time.sleep(0.05)
    os.killpg(child.pid, signal.SIGKILL)
    child.wait()
    assert run_state(run.run_dir) == "partial"
    epoch = load_checkpoint(run.run_dir / CHECKPOINT_FILE)["epoch"]
    assert 1 <= epoch < epochs
    assert main([str(killed), "--no-progress"]) == 0  # the same command, in this process
    reference = load_study(whole)  # the uninterrupted run, here (no worker, no report)
    assert complete_run(reference, reference.runs[0]) == "done"
    resumed = load_checkpoint(run.run_dir / CHECKPOINT_FILE)
    uninterrupted = load_checkpoint(reference.runs[0].run_dir / CHECKPOINT_FILE)
    assert resumed["epoch"] == uninterrupted["epoch"] == epochs
    for key, value in uninterrupted["model_state"].items():
        assert torch.equal(resumed["model_state"][key], value), key


BAD_STUDIES = [
    ("[study\nseeds = [0]", "is not valid TOML"),
    (TINY.format(epochs=1).replace("[protocols.clean]", "[protocols.clean]\nfoo = 1"),
     "unknown key protocols.clean.foo"),
    (TINY.format(epochs=1).replace("layers = 1\n", "layers = 1\ndepth = 3\n"),
     "unknown key model.depth"),
    (TINY.format(epochs=1) + "\n[datasets.other]\ndataset = \"cifar\"\n",
     "unknown dataset 'cifar'"),
    (TINY.format(epochs=1).replace("repetitions = 1\n", "repetitions = 1\ncolor = 2\n"),
     "has no option(s) color"),
    (TINY.format(epochs=1).replace("repetitions = 1\n", "repetitions = 1\nheight = 6\n"),
     "data option 'height' is a field of the data config itself"),
    (TINY.format(epochs=1).replace("repetitions = 1\n", "repetitions = 1\ndistractor_snr = 90\n"),
     "distractor_snr must be None or a number of dB in [-20, 60], got 90"),
    (TINY.format(epochs=1).replace("batch_size = 16", "batch_size = 16\nbatchsize = 8"),
     "unknown key train.batchsize"),
    (TINY.format(epochs=1).replace("fusion_layers = [1, 2]", "fusion_layers = [1, 3]"),
     "3 is out of range for a 1-layer model"),
    (TINY.format(epochs=1).replace("seeds = [0, 1]", "seeds = []"),
     "study.seeds must be a non-empty list"),
    (TINY.format(epochs=1) + "\n[protocols.clean]\n", "given twice"),
    (TINY.format(epochs=1).replace("seeds = [0, 1]", "seeds = [0, -1]"),
     "study.seeds must be non-negative, got -1"),
    (TINY.format(epochs=1).replace("epochs = 1", "epochs = 0"), "epochs must be a positive"),
]
# Hostile names, wrong types and sizes beyond the limits (issue 25, items 8-10).
_TINY = TINY.format(epochs=1)
HOSTILE_STUDIES = [
    ("[study]\nname = \"..\"\n" + _TINY.replace("[study]\n", ""),
     "study.name must be a name of letters, digits"),
    (_TINY.replace("[datasets.synthetic]", '[datasets."../../../escape"]\ndataset = "synthetic"'),
     "a [datasets] name must be a name of letters, digits, '-', '_' and '.' (not '.' or "
     "'..' alone), got '../../../escape'"),
    (_TINY.replace("[protocols.clean]", '[protocols."../../pwn"]'), "../../pwn"),
    (_TINY.replace("[protocols.clean]", '[protocols."/abs/path"]'), "'/abs/path'"),
    (_TINY.replace("[protocols.clean]", '[protocols."new\\nline"]'), "'new\\nline'"),
    (_TINY.replace("[protocols.clean]", '[protocols."nul\\u0000"]'), "'nul\\x00'"),
    (_TINY.replace("[protocols.clean]", '[protocols."."]'), "(not '.' or '..' alone), got '.'"),
    (_TINY.replace("test_snrs = [0]", "test_snrs = 5"),
     "evaluation.test_snrs must be a list of finite numbers (dB), got 5"),
    (_TINY.replace("test_snrs = [0]", "test_snrs = [true]"),
     "evaluation.test_snrs must be a list of finite numbers (dB), got [True]"),
    (_TINY.replace("test_snrs = [0]", "test_snrs = [0]\nprobe_conditions = 5"),
     "evaluation.probe_conditions must be a list of condition names, got 5"),
    (_TINY.split("[datasets.synthetic.options]")[0] + "options = 5\n[protocols.clean]\n",
     "datasets.synthetic.options must be a table, got 5"),
    (_TINY.replace("timesteps = 3", "timesteps = 3\ndata_dir = 5"),
     "datasets.synthetic.data_dir must be a string, got 5"),
    (_TINY.replace("seeds = [0, 1]", "seeds = [0, 9223372036854775807]"),
     "study.seeds must be at most 4294967295, got 9223372036854775807"),
    (_TINY.replace("seeds = [0, 1]", 'seeds = [0, "1"]'), "study.seeds must be an integer"),
    (_TINY.replace("[study]", '[study]\ndescription = 3'), "study.description must be a string"),
    (_TINY.replace("hidden = 4", 'hidden = "4"'), "model:"),
    (_TINY.replace("height = 8", "height = 100000"),
     "datasets.synthetic.height must be in 1..256, got 100000"),
    (_TINY.replace("timesteps = 3", "timesteps = 5000"),
     "datasets.synthetic.timesteps must be in 1..100, got 5000"),
    (_TINY.replace("seeds = [0, 1]", f"seeds = {list(range(1001))}"),
     "study.seeds has 1001 seeds; at most 1000 are allowed"),
    (_TINY.replace("seeds = [0, 1]", f"seeds = {list(range(1000))}").replace(
        "[protocols.clean]", "\n".join(f"[protocols.p{i}]" for i in range(6))),
     "the study has 12000 runs"),
    (_TINY.replace("probe_stimuli = 20", "probe_stimuli = 10000000"),
     "evaluation.probe_stimuli must be at most 100000"),
    (_TINY + "#" * 1_000_001, "a study file may have at most 1000000"),
]


@pytest.mark.parametrize(("text", "message"), BAD_STUDIES)
def test_bad_study_files_are_one_line_and_exit_2_and_create_nothing(tmp_path, capsys, text,
                                                                   message):
    path = tiny_study(tmp_path, text=text)
    assert main([str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


@pytest.mark.parametrize(("text", "message"), HOSTILE_STUDIES,
                         ids=[message[:40] for _, message in HOSTILE_STUDIES])
def test_hostile_names_wrong_types_and_huge_sizes_are_refused_at_load(tmp_path, capsys, text,
                                                                     message):
    """--status only loads the file (it builds nothing, so an unchecked size cannot hang the
    test before the fix); every other mode loads it the same way first."""
    path = tiny_study(tmp_path, text=text)
    started = time.monotonic()
    assert main([str(path), "--status"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert time.monotonic() - started < 5
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_a_huge_grid_fails_a_dry_run_at_once(tmp_path, capsys):
    path = tiny_study(tmp_path, text=_TINY.replace("height = 8", "height = 100000"))
    assert main([str(path), "--dry-run"]) == 2
    assert "height must be in 1..256" in capsys.readouterr().err


def test_a_folder_of_another_study_jobs_0_and_missing_submitit_are_refused(tmp_path, capsys,
                                                                          monkeypatch):
    path = tiny_study(tmp_path)
    folder = tmp_path / "tiny"
    folder.mkdir()
    (folder / STUDY_FILE).write_text(TINY.format(epochs=3))
    assert main([str(path)]) == 2
    err = capsys.readouterr().err
    assert "holds a different study" in err and "train.epochs" in err
    (folder / STUDY_FILE).unlink()
    folder.rmdir()
    assert main([str(path), "--jobs", "0"]) == 2
    assert "--jobs must be at least 1" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "submitit", None)
    assert main([str(path), "--slurm"]) == 2
    assert "pip install submitit" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_dry_run_lists_every_run_with_an_estimate_and_creates_nothing(tmp_path):
    path = tiny_study(tmp_path)
    done = run_cli(str(path), "--dry-run", "--jobs", "2")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert sum("not started" in line and " min " in line for line in lines) == 4
    assert "4 runs, 4 to do" in lines[-1] and "with --jobs 2" in lines[-1]
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_more_jobs_than_cores_is_warned(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(study_cli, "available_cores", lambda: 2)
    path = tiny_study(tmp_path)
    assert main([str(path), "--dry-run", "--jobs", "3"]) == 0
    assert "--jobs 3 is more than the 2 cores here" in caplog.text
    caplog.clear()
    assert main([str(path), "--dry-run", "--jobs", "2"]) == 0
    assert "more than the" not in caplog.text


def test_report_before_any_run_finished_is_one_line(tmp_path, capsys):
    path = tiny_study(tmp_path)
    assert main([str(path), "--report"]) == 2
    assert "nothing to report" in capsys.readouterr().err


FAKE_SBATCH = """#!/bin/sh
cp "$1" "{record}/$(date +%s%N).sbatch"
echo "Submitted batch job 4242"
"""


def test_slurm_submission_carries_the_requested_resources(tmp_path, monkeypatch):
    record = tmp_path / "record"
    record.mkdir()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    sbatch, srun = bin_dir / "sbatch", bin_dir / "srun"  # srun's presence marks a cluster
    sbatch.write_text(FAKE_SBATCH.format(record=record))
    srun.write_text("#!/bin/sh\nexit 1\n")
    for tool in (sbatch, srun):
        tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    path = tiny_study(tmp_path)
    assert main([str(path), "--slurm", "--cluster", "slurm", "--partition", "gpu", "--gpus", "1",
                 "--cpus", "6", "--mem-gb", "12", "--time-min", "90", "--parallel", "3",
                 "--slurm-option", "account=lab"]) == 0
    scripts = sorted(record.glob("*.sbatch"))
    assert len(scripts) == 2
    array, report = (script.read_text() for script in scripts)
    for line in ("#SBATCH --partition=gpu", "#SBATCH --gpus-per-node=1",
                 "#SBATCH --cpus-per-task=6", "#SBATCH --mem=12GB", "#SBATCH --time=90",
                 "#SBATCH --array=0-3%3", "#SBATCH --account=lab", "#SBATCH --signal=USR2"):
        assert line in array, line
    assert "#SBATCH --dependency=afterany:4242" in report
    assert "--array" not in report


def _task_pids(slurm_folder: Path) -> list[int]:
    """Processes running a submitit task of ``slurm_folder`` (read from /proc)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError):
            continue
        if "submitit.core._submit" in command and str(slurm_folder) in command:
            pids.append(int(entry.name))
    return pids


def test_submitit_local_array_requeue_continues_and_aggregation_runs_after(tmp_path):
    from repsim.study.execute import SlurmOptions, StudyTask, submit, submitit_executor

    epochs = 12  # preempted after its first checkpoint: epochs left to spare
    text = TINY.format(epochs=epochs).replace("seeds = [0, 1]", "seeds = [0]")
    path = tiny_study(tmp_path, text=text)
    study = load_study(path)
    folder = study.folder
    folder.mkdir()
    copy = folder / STUDY_FILE
    copy.write_text(path.read_text())
    first = study.runs[0]
    executor = submitit_executor(folder / "slurm", SlurmOptions(cpus=1, time_min=10), "local",
                                 "requeue")
    job = executor.submit(StudyTask(str(copy), str(folder), threads=1), first.key)
    deadline = time.monotonic() + 240
    checkpoint = first.run_dir / CHECKPOINT_FILE
    while time.monotonic() < deadline and not (
            checkpoint.is_file() and 1 <= load_checkpoint(checkpoint)["epoch"] < epochs // 2):
        time.sleep(0.02)
    for pid in _task_pids(folder / "slurm"):  # the preemption signal SLURM would send
        os.kill(pid, signal.SIGUSR2)
    assert job.result() == "done"
    history = load_checkpoint(first.run_dir / CHECKPOINT_FILE)["history"]
    assert [row["epoch"] for row in history] == list(range(1, epochs + 1))
    log = (first.run_dir / RUN_LOG_FILE).read_text()
    assert log.count(f"study tiny, run {first.key}") == 2 and "resuming" in log  # requeued
    # the array and its aggregation, through submitit's debug executor (in this process:
    # the same submission code, without an interpreter start-up for each job)
    jobs, report = submit(study, copy, study.runs, SlurmOptions(cpus=1), cluster="debug")
    assert [job.result() for job in jobs] == ["already done", "done"]
    assert report.result() == str(folder / "report.md")
    assert all((run.run_dir / SUMMARY_FILE).is_file() and (run.run_dir / METRICS_FILE).is_file()
               for run in study.runs)


@pytest.mark.parametrize("flags", [[], ["--dry-run"]])
def test_a_device_this_machine_lacks_is_refused_before_anything_starts(tmp_path, capsys,
                                                                      monkeypatch, flags):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    text = TINY.format(epochs=1).replace("batch_size = 16", 'batch_size = 16\ndevice = "cuda"')
    path = tiny_study(tmp_path, text=text)
    assert main([str(path), *flags]) == 2
    err = capsys.readouterr().err
    assert "CUDA is not available here" in err and "--slurm" in err and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]
    assert main([str(path), "--status"]) == 0


def test_dry_run_keeps_the_users_omp_num_threads_unless_threads_says_otherwise(
        tmp_path, monkeypatch, capsys):
    """The estimate times each run with the threads a worker would get: ``--threads``, else
    the user's OMP_NUM_THREADS, else an even share of the cores."""
    from repsim.device import THREAD_VARIABLES
    from repsim.study import estimate, execute

    for variable in THREAD_VARIABLES:  # restored after the test, whatever --threads sets
        monkeypatch.setenv(variable, "3")
    monkeypatch.setattr(execute, "available_cores", lambda: 8)
    monkeypatch.setattr(study_cli, "available_cores", lambda: 8)
    asked = []

    def fake_estimate(study, runs, threads):
        asked.append(threads)
        return {run.key: 60.0 for run in runs}

    monkeypatch.setattr(estimate, "estimate_seconds", fake_estimate)
    path = tiny_study(tmp_path)
    torch_threads = torch.get_num_threads()
    try:
        assert main([str(path), "--dry-run"]) == 0
        assert main([str(path), "--dry-run", "--threads", "2"]) == 0
        monkeypatch.delenv("OMP_NUM_THREADS")
        assert main([str(path), "--dry-run", "--jobs", "2"]) == 0
    finally:
        torch.set_num_threads(torch_threads)
    assert asked == [3, 2, 4]
    summaries = [line for line in capsys.readouterr().out.splitlines() if "runs, " in line]
    assert [line.rsplit("(", 1)[1] for line in summaries] == [
        "3 threads each)", "2 threads each)", "4 threads each)"]
