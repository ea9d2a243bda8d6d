"""The documentation's code runs: every tutorial script, on small settings."""

import importlib.util

import numpy as np
import pytest
from paths import REPO_ROOT

from repsim.data.config import DataConfig

TUTORIALS = REPO_ROOT / "docs" / "tutorials"
STIMULI = 200  # per condition: enough of every digit for the probes' five folds


def script(path):
    """A Python file of docs/ loaded as a module."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tutorial(name: str):
    return script(TUTORIALS / f"{name}.py")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[dict, str]:
    run_dir = tmp_path_factory.mktemp("tutorial") / "run"
    small = DataConfig(timesteps=4, height=8, width=8,
                       options={"train_pairs": 200, "val_pairs": 50, "test_pairs": 200})
    found = tutorial("train_and_look_inside").main(str(run_dir), epochs=1, n_stimuli=STIMULI,
                                                    data=small)
    return found, str(run_dir / "activations.h5")


def test_every_tutorial_script_has_a_page_that_includes_it():
    pages = "".join(page.read_text() for page in TUTORIALS.glob("*.md"))
    for script in TUTORIALS.glob("*.py"):
        assert f'--8<-- "docs/tutorials/{script.name}"' in pages, script.name


def test_train_and_look_inside(trained):
    found, _ = trained
    assert 0.0 <= found["cka"] <= 1.0 + 1e-9
    assert 0.0 <= found["heard"] <= 1.0
    assert 0.0 <= found["reliance"] <= 1.0


def test_read_activations(trained):
    pytest.importorskip("rsatoolbox")
    _, path = trained
    found = tutorial("read_activations").main(path)
    assert found["complete"] == 1
    assert found["rdm"].shape == (STIMULI, STIMULI)  # the clean stimuli of the probe set
    np.testing.assert_allclose(found["back"].values, found["rdm"].values, atol=1e-12)


def test_run_a_study(monkeypatch):
    monkeypatch.chdir(REPO_ROOT)
    audio = tutorial("run_a_study").main()
    assert set(audio["measure"]) == {"auc_audio"}
    assert len(audio) == 8  # 2 datasets x 2 protocols x k = 2, 3


def test_the_readme_fits_on_two_screens():
    lines = (REPO_ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; move the detail to docs/"


def test_the_commands_reference_covers_every_command():
    hook = script(REPO_ROOT / "docs" / "hooks" / "generated.py")
    documented = {module for _, module in hook.COMMANDS}
    parsers = {".".join(path.relative_to(REPO_ROOT).with_suffix("").parts)
               for path in (REPO_ROOT / "repsim").rglob("*.py")
               if "\ndef main(" in path.read_text()}
    assert parsers <= documented, f"commands missing from the reference: {parsers - documented}"
    reference = hook.commands_reference()
    assert reference.count("usage:") == len(hook.COMMANDS)


def test_time_resolved(trained):
    _, path = trained
    found = tutorial("time_resolved").main(path, permutations=4)  # runs; a real test: 100+
    for layer, onset in found["onsets"].items():
        scores = found[f"{layer} generalization"]
        assert scores.shape == (4, 4) and ((0 <= scores) & (scores <= 1)).all()
        assert onset is None or 1 <= onset <= 4
    assert found["movie"].shape == (4, 10, 10)  # a 10 x 10 digit RDM per step
    np.testing.assert_allclose(np.diagonal(found["movie"], axis1=1, axis2=2), 0.0, atol=1e-12)
    assert found["across"].shape == (4, 4)
    assert ((-1 <= found["across"]) & (found["across"] <= 1)).all()
