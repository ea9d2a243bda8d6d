"""Dataset plugins: a package on the path with a ``repsim.datasets`` entry point is found by
name, any module by ``MODULE:FUNCTION``; clashes and broken entry points are one line.

The plugin is the complete example of ``docs/datasets.md``, copied from the page, so the
documented contract is the one tested. Packages are "installed" the way pip leaves them: a
module plus a ``<name>.dist-info`` folder with ``METADATA`` and ``entry_points.txt``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from paths import REPO_ROOT

from repsim.data import build_dataset, dataset_names
from repsim.data.config import DataConfig
from repsim.study.spec import load_study
from repsim.train.cli import main as train_main

DOC = REPO_ROOT / "docs" / "datasets.md"


def documented_plugin() -> str:
    """The Python block under "A complete plugin" in docs/datasets.md."""
    text = DOC.read_text().split("### A complete plugin", 1)[1]
    return re.search(r"```python\n(.*?)```", text, re.S).group(1)


def install(site: Path, distribution: str, entry_points: dict[str, str],
            modules: dict[str, str]) -> None:
    """Write ``modules`` into ``site`` and a dist-info declaring ``entry_points``."""
    for name, source in modules.items():
        (site / f"{name}.py").write_text(source)
    info = site / f"{distribution.replace('-', '_')}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {distribution}\n"
                                   f"Version: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[repsim.datasets]\n" + "".join(f"{k} = {v}\n" for k, v in entry_points.items()))


@pytest.fixture
def site(tmp_path, monkeypatch) -> Path:
    """A site directory on sys.path holding the documented plugin, installed as acme-av."""
    folder = tmp_path / "site"
    folder.mkdir()
    install(folder, "acme-av", {"acme": "acme_av:build"}, {"acme_av": documented_plugin()})
    monkeypatch.syspath_prepend(str(folder))
    yield folder
    for name in ("acme_av", "other_av", "broken_av"):
        sys.modules.pop(name, None)


def test_an_installed_plugin_is_found_by_name_and_builds(site):
    assert {"acme", "avmnist", "folder", "synthetic"} <= set(dataset_names())
    dataset = build_dataset("acme", seed=3, timesteps=2, height=6, width=6, per_class=4)
    assert dataset.name == "acme" and dataset.class_names == ["low", "high"]
    assert dataset.splits["train"].audio_clean.shape == (8, 2, 1, 6, 6)
    for split in dataset.splits.values():
        assert torch.equal(split.clip_digit[split.pair_audio],
                           split.image_digit[split.pair_visual])


def test_module_function_names_the_same_builder_without_an_entry_point(site):
    by_name = build_dataset("acme", seed=1, per_class=3)
    by_path = build_dataset("acme_av:build", seed=1, per_class=3)
    assert by_path.fingerprint() == by_name.fingerprint()


def test_the_plugins_check_options_runs_when_the_config_is_made(site):
    with pytest.raises(ValueError, match="per_class must be at least 2, got 1"):
        DataConfig(dataset="acme", options={"per_class": 1})
    with pytest.raises(ValueError, match="per_class must be at least 2, got 1"):
        DataConfig(dataset="acme_av:build", options={"per_class": 1})
    with pytest.raises(ValueError, match="has no option.*colour"):
        DataConfig(dataset="acme", options={"colour": 1})


def test_a_study_file_accepts_a_plugin_name_and_module_function(site, tmp_path):
    path = tmp_path / "plug.toml"
    path.write_text('[study]\nseeds = [0]\nfusion_layers = [1]\n[model]\nlayers = 1\n'
                    '[datasets.byname]\ndataset = "acme"\n'
                    '[datasets.bypath]\ndataset = "acme_av:build"\n'
                    'options = { per_class = 3 }\n[protocols.clean]\n')
    study = load_study(path)
    assert sorted(run.config.data.dataset for run in study.runs) == ["acme", "acme_av:build"]


def test_a_name_two_packages_register_is_refused_naming_both(site):
    install(site, "other-av", {"acme": "other_av:build"}, {"other_av": documented_plugin()})
    with pytest.raises(ValueError) as error:
        build_dataset("acme")
    message = str(error.value)
    assert "dataset 'acme' is registered by more than one package" in message
    assert "acme-av (acme_av:build)" in message and "other-av (other_av:build)" in message
    assert "MODULE:FUNCTION" in message
    assert build_dataset("other_av:build", per_class=2).class_names == ["low", "high"]


def test_an_entry_point_that_fails_to_import_shows_its_error(site, tmp_path, capsys):
    install(site, "broken-av", {"broken": "broken_av:build"},
            {"broken_av": "raise ImportError('needs libacme 2')\n"})
    with pytest.raises(ValueError, match=r"^dataset 'broken': cannot import broken_av "
                                         r"\(ImportError: needs libacme 2\)$"):
        build_dataset("broken")
    assert train_main(["--dataset", "broken", "--out-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: dataset 'broken': cannot import broken_av (ImportError: needs "
                   "libacme 2)"]
    assert not (tmp_path / "run").exists()


def test_module_function_errors_are_one_line():
    with pytest.raises(ValueError, match="cannot import no_such_module_xyz "
                                         r"\(ModuleNotFoundError: .*no_such_module_xyz"):
        build_dataset("no_such_module_xyz:build")
    with pytest.raises(ValueError, match="module repsim.data.folder has no function nope"):
        build_dataset("repsim.data.folder:nope")
    with pytest.raises(ValueError, match="its builder returned int, not an AVDataset"):
        build_dataset(f"{__name__}:_int_builder")


def _int_builder(**_) -> int:
    """A "builder" that breaks the contract by returning a number."""
    return 3


def test_the_data_command_lists_plugins_and_their_errors(site):
    install(site, "broken-av", {"broken": "broken_av:build"},
            {"broken_av": "raise ImportError('needs libacme 2')\n"})
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(site), str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-m", "repsim.data", "--list"],
                            capture_output=True, text=True, cwd=REPO_ROOT, env=env,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line for line in result.stdout.splitlines()}
    assert {"acme", "avmnist", "broken", "folder", "synthetic"} <= set(rows)
    assert rows["acme"].split()[1:3] == ["acme-av", "acme_av:build"]
    assert "acme_av: a repsim dataset plugin" in rows["acme"]
    assert rows["folder"].split()[1:3] == ["repsim", "repsim.data.folder:build"]
    assert rows["broken"].endswith("error: dataset 'broken': cannot import broken_av "
                                   "(ImportError: needs libacme 2)")
