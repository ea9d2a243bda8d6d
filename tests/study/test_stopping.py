"""The local study runner stops cleanly (issue 25, items 1-4): workers end with their parent,
SIGTERM stops them and says how to continue, a run held by another process is busy (not
failed), and --slurm needs SLURM. Real processes, a tiny study."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from paths import REPO_ROOT
from test_study import TINY, tiny_study

from repsim.checkpoint import load_checkpoint
from repsim.cli import BUSY_STATUS
from repsim.provenance import claim
from repsim.rundir import CHECKPOINT_FILE, FAILED_FILE, SUMMARY_FILE, run_state
from repsim.study.cli import main
from repsim.study.execute import submit_at_most
from repsim.study.spec import load_study

LONG = 300  # epochs: the runs are still training when the signal comes


def _workers(parent: int) -> list[int]:
    """The spawned worker processes of ``parent`` (from /proc)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            command = (entry / "cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue
        if ppid == parent and b"spawn_main" in command:
            pids.append(int(entry.name))
    return pids


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting to be reaped has ended)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _start_training_study(path: Path) -> tuple[subprocess.Popen, list]:
    """The study running with --jobs 2, once both workers train (each has a checkpoint)."""
    runs = load_study(path).runs[:2]
    child = subprocess.Popen(
        [sys.executable, "-m", "repsim.study", str(path), "--jobs", "2", "--no-progress"],
        cwd=REPO_ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 180
    while not all((run.run_dir / CHECKPOINT_FILE).is_file() for run in runs):
        assert child.poll() is None and time.monotonic() < deadline, child.stderr.read()
        time.sleep(0.05)
    return child, runs


def _stopped_cleanly(runs) -> None:
    """Each run kept a checkpoint of an unfinished training, no failed.txt, and its locks are
    free (a rerun can take it)."""
    for run in runs:
        assert run_state(run.run_dir) == "partial"
        assert not (run.run_dir / FAILED_FILE).exists()
        assert 1 <= load_checkpoint(run.run_dir / CHECKPOINT_FILE)["epoch"] < LONG
        with claim(run.run_dir), claim(run.run_dir / SUMMARY_FILE):
            pass


def test_sigterm_stops_the_workers_waits_for_them_and_says_how_to_continue(tmp_path):
    path = tiny_study(tmp_path, epochs=LONG)
    child, runs = _start_training_study(path)
    try:
        workers = _workers(child.pid)
        assert len(workers) == 2
        child.send_signal(signal.SIGTERM)
        _, err = child.communicate(timeout=120)
    finally:
        os.killpg(child.pid, signal.SIGKILL)  # only if a test assertion failed above
    assert child.returncode == 143, err
    assert err.strip().splitlines()[-1] == (
        f"study tiny stopped by SIGTERM: 0 of 4 runs finished, 2 stopped (each keeps its last "
        f"complete epoch), 2 not started; to continue, run the same command again: "
        f"python -m repsim.study {path} --jobs 2 --no-progress")
    assert not any(_alive(pid) for pid in workers)
    _stopped_cleanly(runs)


def test_workers_end_when_their_parent_is_killed_and_leave_their_runs_free(tmp_path):
    path = tiny_study(tmp_path, epochs=LONG)
    child, runs = _start_training_study(path)
    try:
        workers = _workers(child.pid)
        assert len(workers) == 2
        child.kill()  # SIGKILL to the parent alone
        child.communicate()
        deadline = time.monotonic() + 60
        while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(pid) for pid in workers)
    finally:
        os.killpg(child.pid, signal.SIGKILL)
    _stopped_cleanly(runs)


TWO_RUNS = TINY.format(epochs=1).replace("fusion_layers = [1, 2]", "fusion_layers = [1]")


def test_a_run_held_by_another_live_process_is_busy_and_gets_no_failed_txt(tmp_path, capsys):
    """The holders are this test process, holding the lock a training holds (run 0's
    directory) and the one another study's worker holds (run 1's summary, while its last
    attempt's failed.txt is still there); the study's worker is another process."""
    path = tiny_study(tmp_path, text=TWO_RUNS)
    training, studied = load_study(path).runs
    for run in (training, studied):
        run.run_dir.mkdir(parents=True)
    (studied.run_dir / FAILED_FILE).write_text("the holder's last attempt\n")
    with claim(training.run_dir), claim(studied.run_dir / SUMMARY_FILE):
        assert main([str(path), "--no-progress"]) == BUSY_STATUS
    out = capsys.readouterr().out
    assert out.splitlines()[-1] == (
        f"study tiny: 0 of 2 runs finished, 0 failed, 2 busy (held by another live process; "
        f"run the same command again once it is done), 0 were already done; "
        f"{tmp_path / 'tiny'}")
    assert not (training.run_dir / FAILED_FILE).exists()
    assert (studied.run_dir / FAILED_FILE).read_text() == "the holder's last attempt\n"


def test_slurm_without_sbatch_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch):
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    path = tiny_study(tmp_path)
    assert main([str(path), "--slurm"]) == 2
    err = capsys.readouterr().err
    assert err == ("error: --slurm needs SLURM's sbatch on the PATH and there is none here; "
                   "run the study here with --jobs N instead\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bin", path.name]


class _Job:
    """A job that finishes after being asked twice whether it is done."""

    running: set = set()
    most = 0

    def __init__(self, key):
        self.key, self.polls = key, 0
        _Job.running.add(key)
        _Job.most = max(_Job.most, len(_Job.running))

    def done(self) -> bool:
        self.polls += 1
        if self.polls >= 2:
            _Job.running.discard(self.key)
        return self.polls >= 2

    def wait(self) -> None:
        _Job.running.discard(self.key)


class _Executor:
    def submit(self, task, key):
        return _Job(task(key))


@pytest.mark.parametrize("at_once", [1, 2, 3])
def test_a_local_executor_never_runs_more_than_at_once(at_once):
    _Job.running, _Job.most = set(), 0
    jobs = submit_at_most(_Executor(), str.upper, ["a", "b", "c", "d", "e"], at_once)
    assert [job.key for job in jobs] == ["A", "B", "C", "D", "E"]
    assert _Job.most == at_once and not _Job.running
