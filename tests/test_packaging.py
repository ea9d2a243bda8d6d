"""The wheel as a researcher installs it: built without network, installed into a fresh venv,
and used through its ``repsim`` command from a folder outside the checkout.

The wheel is built from a copy of the checkout's package files (building in place would write
``build/`` and ``*.egg-info`` into the checkout, and a stale ``build/lib`` can put deleted
modules into the wheel). The fresh venv sees the test environment's site-packages through a
``.pth`` line, so torch and the other dependencies need no download; such a line adds the
folder but runs none of its ``.pth`` files, so the test environment's editable repsim stays out.
POSIX paths (``venv/bin``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pooch
import pytest
from paths import REPO_ROOT

import repsim
from repsim import activations

# What the build reads: pyproject.toml names README.md (readme) and LICENSE (license-files).
BUILD_INPUTS = ("pyproject.toml", "README.md", "LICENSE")
TINY_RUN = ["--device", "cpu", "--epochs", "1", "--layers", "1", "--hidden", "3",
            "--fusion-layer", "2", "--timesteps", "3", "--height", "8", "--width", "8",
            "--batch-size", "8", "--snrs", "0", "--no-progress",
            *(arg for option in ("train_speakers=4", "val_speakers=2", "test_speakers=2",
                                 "repetitions=1", "train_pairs=32", "val_pairs=20",
                                 "test_pairs=20") for arg in ("--data-option", option))]
# pip reads no config file, asks nothing and never checks PyPI for a newer pip
PIP_ENV = {"PIP_CONFIG_FILE": os.devnull, "PIP_NO_INPUT": "1",
           "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


def run(*command: str | Path, cwd: Path) -> subprocess.CompletedProcess:
    """Run ``command`` in ``cwd``, offline, with no PYTHONPATH; fail showing its output."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("PYTHONPATH", "PYTHONHOME", "REPSIM_DATA_DIR")}
    env.update(PIP_ENV, REPSIM_OFFLINE="1")
    done = subprocess.run([str(part) for part in command], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{command} failed:\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel built from a copy of this checkout, without build isolation or an index."""
    tmp = tmp_path_factory.mktemp("build")
    source = tmp / "source"
    shutil.copytree(REPO_ROOT / "repsim", source / "repsim",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in BUILD_INPUTS:
        shutil.copy(REPO_ROOT / name, source / name)
    run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
        "--no-index", "--wheel-dir", tmp / "dist", source, cwd=tmp)
    (built,) = (tmp / "dist").glob("*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    """A fresh venv with the wheel installed (by pip from the test environment, run by the
    venv's own python so that the console script points at it)."""
    venv = tmp_path_factory.mktemp("install") / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=venv.parent)
    python = venv / "bin" / "python"
    site_packages = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_path("
                             "'purelib'))", cwd=venv.parent).stdout.strip())
    ours = [path for path in sys.path if Path(path).name in ("site-packages", "dist-packages")]
    (site_packages / "test_environment.pth").write_text("\n".join(ours) + "\n")
    run(python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
        "--ignore-installed", "--no-compile", wheel, cwd=venv.parent)
    return venv


@pytest.fixture
def outside(tmp_path) -> Path:
    """A working folder outside the checkout."""
    assert REPO_ROOT not in tmp_path.parents
    return tmp_path


def test_the_wheel_holds_the_package_its_type_marker_command_and_urls(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        info = wheel.name.split("-")[0] + "-" + repsim.__version__ + ".dist-info"
        entry_points = archive.read(f"{info}/entry_points.txt").decode()
        metadata = archive.read(f"{info}/METADATA").decode()
    assert {"repsim/py.typed", "repsim/commands.py", "repsim/__main__.py",
            "repsim/figures/cka_by_layer.py"} <= names
    assert not any(name.startswith(("tests/", "analyses/", "studies/")) for name in names)
    assert "[console_scripts]\nrepsim = repsim.commands:main" in entry_points
    assert f"Version: {repsim.__version__}\n" in metadata
    for label in ("Homepage", "Source", "Issues", "Documentation"):
        assert f"Project-URL: {label}, https://github.com/repsim-av/repsim" in metadata


def test_the_installed_package_comes_from_the_venv_and_keeps_data_in_the_user_cache(venv,
                                                                                    outside):
    done = run(venv / "bin" / "python", "-c", "import repsim, repsim.data.download as d; "
               "print(repsim.__file__); print(d.default_data_dir())", cwd=outside)
    module, data_dir = done.stdout.splitlines()
    assert venv in Path(module).parents
    assert Path(data_dir) == Path(pooch.os_cache("repsim"))


def test_repsim_version(venv, outside):
    assert run(venv / "bin" / "repsim", "--version", cwd=outside).stdout == (
        f"repsim {repsim.__version__}\n")


def test_train_extract_and_draw_a_figure_with_the_installed_command(venv, outside):
    repsim_command = venv / "bin" / "repsim"
    run(repsim_command, "train", "--out-dir", "run", *TINY_RUN, cwd=outside)
    metrics = json.loads((outside / "run" / "metrics.json").read_text())
    assert metrics["epochs"] == 1 and 0.0 <= metrics["clean_accuracy"] <= 1.0

    run(repsim_command, "extract", "run/ckpt.pt", "--device", "cpu", "--stimuli", "10",
        "--conditions", "clean", "audio_removed", "visual_removed", "--snrs", cwd=outside)
    with activations.open(outside / "run" / "activations.h5") as data:
        assert activations.layer_names(data) == ["audio.1", "visual.1"]
        assert data.sizes["stimulus"] == 30

    run(repsim_command, "figure", "ablation_sensitivity", "run/activations.h5",
        "--out-dir", "figures", cwd=outside)
    figure = outside / "figures" / "ablation_sensitivity"
    assert figure.with_suffix(".png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert figure.with_suffix(".pdf").read_bytes().startswith(b"%PDF")
    assert "run/activations.h5" in figure.with_suffix(".csv").read_text()
