"""python -m repsim.study against a careless or hostile user: an --out-dir that holds someone's
files, study files whose sizes would take gigabytes or hours before any check, a --status that
needs none of the study's plugins, and a busy study told apart from a finished one."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from paths import REPO_ROOT
from test_study import TINY, tiny_study

from repsim.cli import BUSY_STATUS
from repsim.models.config import MAX_BATCH_BYTES
from repsim.provenance import claim
from repsim.study.cli import main
from repsim.study.spec import MAX_RUNS, load_study


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in "\n".join(err), err
    return errors[0]


# --- an --out-dir that holds someone's files ----------------------------------------------

def a_users_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "mine"
    (folder / "figures").mkdir(parents=True)
    for name, text in (("report.md", "# my notes\n"), ("results.csv", "a,b\n1,2\n"),
                       ("answer.md", "42\n"), ("figures/plot.png", "not really a png")):
        (folder / name).write_text(text)
    return folder


def snapshot(folder: Path) -> dict[str, bytes]:
    return {path.relative_to(folder).as_posix(): path.read_bytes()
            for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.mark.parametrize("what", [[], ["--report"]])
def test_out_dir_onto_a_folder_of_someone_s_files_is_refused(tmp_path, capsys, what):
    folder = a_users_folder(tmp_path)
    before = snapshot(folder)
    assert main([str(tiny_study(tmp_path)), "--out-dir", str(folder), *what,
                 "--no-progress"]) == 2
    line = one_error_line(capsys)
    assert f"{folder} holds files that are not a study" in line and "--overwrite" in line
    assert "report.md" in line
    assert snapshot(folder) == before


def test_overwrite_takes_the_folder(tmp_path, capsys):
    folder = a_users_folder(tmp_path)
    path = tiny_study(tmp_path)
    # no run has finished, so the report stops after the folder is taken
    assert main([str(path), "--out-dir", str(folder), "--report", "--overwrite"]) == 2
    assert "no run of study 'tiny' has finished yet" in one_error_line(capsys)
    assert (folder / "study.toml").read_text() == path.read_text()


def test_status_and_dry_run_of_such_a_folder_write_nothing(tmp_path, capsys):
    folder = a_users_folder(tmp_path)
    before = snapshot(folder)
    assert main([str(tiny_study(tmp_path)), "--out-dir", str(folder), "--status"]) == 0
    assert "not started" in capsys.readouterr().out
    assert snapshot(folder) == before


# --- a busy study is not a finished one ----------------------------------------------------

def test_a_study_whose_runs_another_process_holds_exits_with_the_busy_status(tmp_path, capsys):
    path = tiny_study(tmp_path, text=TINY.format(epochs=1).replace("fusion_layers = [1, 2]",
                                                                   "fusion_layers = [1]"))
    runs = load_study(path).runs
    for run in runs:
        run.run_dir.mkdir(parents=True)
    with claim(runs[0].run_dir), claim(runs[1].run_dir):
        status = main([str(path), "--no-progress"])
    assert status == BUSY_STATUS and status not in (0, 1, 2)
    assert "2 busy (held by another live process" in capsys.readouterr().out


def test_help_documents_the_exit_statuses(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    words = " ".join(capsys.readouterr().out.split())
    assert f"{BUSY_STATUS} runs another process holds were left for later" in words
    assert "--overwrite" in words


# --- --status needs none of the study's plugins --------------------------------------------

PLUGIN = '''
from pathlib import Path

Path(__file__).with_name("imported").write_text("the plugin ran on import")


def build(**options):
    raise RuntimeError("never built by --status")
'''


def test_status_imports_no_dataset_plugin(tmp_path, capsys, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    (site / "marker_av.py").write_text(textwrap.dedent(PLUGIN))
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, "marker_av", raising=False)
    text = TINY.format(epochs=1).replace("[datasets.synthetic]",
                                         '[datasets.mine]\ndataset = "marker_av:build"')
    text = text.replace("[datasets.synthetic.options]", "[datasets.mine.options]")
    text = text.split("[datasets.mine.options]")[0] + "[protocols.clean]\n"
    path = tiny_study(tmp_path, text=text)
    assert main([str(path), "--status"]) == 0
    assert capsys.readouterr().out.count("not started") == 4
    assert not (site / "imported").exists()
    assert "marker_av" not in sys.modules


# --- sizes that would take gigabytes or hours before any check -------------------------------

HUGE = {
    "hidden": ("[model]\nlayers = 1\nhidden = 4", "[model]\nlayers = 1\nhidden = 100000000",
               "model hidden must be at most"),
    "layers": ("[model]\nlayers = 1\nhidden = 4", "[model]\nlayers = 1000000\nhidden = 4",
               "model layers must be at most"),
    "train_pairs": ("train_pairs = 64", "train_pairs = 100000000000",
                    "train_pairs must be at most"),
    "batch": ("batch_size = 16", "batch_size = 10000000",
              "a training batch needs about"),
}
# The most memory the study command may take while it refuses such a file.
ADDRESS_SPACE = 3 << 30


@pytest.mark.parametrize("size", list(HUGE))
def test_a_huge_size_is_refused_at_load_in_one_line(tmp_path, size):
    """In a child allowed 3 GiB and 60 s: before, hidden = 1e8 asked for 28.8 GB in --dry-run
    and layers = 1e6 or train_pairs = 1e11 ran for minutes."""
    before, after, message = HUGE[size]
    text = TINY.format(epochs=1)
    assert before in text
    path = tiny_study(tmp_path, text=text.replace(before, after))
    script = (f"import resource, sys\n"
              f"resource.setrlimit(resource.RLIMIT_AS, ({ADDRESS_SPACE}, {ADDRESS_SPACE}))\n"
              f"from repsim.study.cli import main\n"
              f"sys.exit(main([{str(path)!r}, '--dry-run']))\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=REPO_ROOT, env=env, timeout=60)
    err = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(err) == 1, done.stderr[-3000:]
    assert err[0].startswith("error: ") and message in err[0], err


def test_the_memory_limit_is_named_with_the_estimate(tmp_path):
    text = TINY.format(epochs=1).replace("batch_size = 16", "batch_size = 10000000")
    with pytest.raises(ValueError) as error:
        load_study(tiny_study(tmp_path, text=text))
    message = str(error.value)
    assert message.startswith("datasets.synthetic with protocols.clean: a training batch")
    assert f"at most {MAX_BATCH_BYTES / 2**30:g} GiB" in message
    assert "batch_size 10000000, 3 x 8 x 8 frames" in message


def test_runs_are_counted_with_their_fusion_operators(tmp_path):
    """12 seeds x 2 layers x 3 operators x N protocols: the operators multiply the runs."""
    protocols = MAX_RUNS // (12 * 2 * 3) + 1
    text = TINY.format(epochs=1).replace("seeds = [0, 1]", f"seeds = {list(range(12))}")
    text = text.replace("fusion_layers = [1, 2]",
                        'fusion_layers = [1, 2]\nfusion_ops = ["concat", "gated", "film"]')
    text = text.replace("[protocols.clean]\n", "".join(f"[protocols.p{i}]\n"
                                                      for i in range(protocols)))
    count = 12 * 2 * 3 * protocols
    assert count > MAX_RUNS >= 12 * 2 * protocols
    with pytest.raises(ValueError, match=f"the study has {count} runs .*; at most {MAX_RUNS}"):
        load_study(tiny_study(tmp_path, text=text))
