"""Dataset plugins that misbehave: raise, leave out a split, pair indices past the end,
return NaN or images outside [0, 1]. Each is one line naming the plugin and what is wrong,
from the library (ValueError) and from the trainer (exit status 2, nothing written).

The plugins wrap the complete plugin of ``docs/datasets.md`` (see ``test_plugins.py``)."""

from __future__ import annotations

import sys
import textwrap

import pytest
from test_plugins import documented_plugin

from repsim.data import build_dataset
from repsim.train.cli import main as train_main

HOSTILE = '''
import torch
import acme_av


def raises(**options):
    raise RuntimeError("the archive server is down\\nretry later")


def no_val(**options):
    dataset = acme_av.build(**options)
    del dataset.splits["val"]
    return dataset


def pairs_past_the_end(**options):
    dataset = acme_av.build(**options)
    dataset.splits["test"].pair_visual[3] = 1000
    return dataset


def negative_pairs(**options):
    dataset = acme_av.build(**options)
    dataset.splits["train"].pair_audio[0] = -1
    return dataset


def nan_audio(**options):
    dataset = acme_av.build(**options)
    dataset.splits["val"].waveforms[2, 17] = float("nan")
    return dataset


def infinite_frames(**options):
    dataset = acme_av.build(**options)
    dataset.splits["train"].audio_clean[0, 0, 0, 1, 1] = float("inf")
    return dataset


def bright_images(**options):
    dataset = acme_av.build(**options)
    dataset.splits["train"].images.mul_(255)
    return dataset


def frames_of_another_size(**options):
    dataset = acme_av.build(**options)
    split = dataset.splits["test"]
    split.images = torch.zeros(len(split.images), 3, 3)
    return dataset
'''

# plugin function: what the one line says after "dataset 'hostile_av:<function>': "
CASES = {
    "raises": "its builder raised RuntimeError: the archive server is down",
    "no_val": "it has no val split; a dataset has a train, a val and a test split",
    "pairs_past_the_end": "the test split pairs image 1000, but it has 12 images",
    "negative_pairs": "the train split pairs clip -1, but it has 12 clips",
    "nan_audio": "the val split's waveforms hold NaN or infinite values",
    "infinite_frames": "the train split's audio_clean hold NaN or infinite values",
    "bright_images": "the train split's images lie outside [0, 1]",
    "frames_of_another_size": "the test split's images are 3 x 3, but the frames are 8 x 8",
}


@pytest.fixture
def plugins(tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    (site / "acme_av.py").write_text(documented_plugin())
    (site / "hostile_av.py").write_text(textwrap.dedent(HOSTILE))
    monkeypatch.syspath_prepend(str(site))
    yield site
    for name in ("acme_av", "hostile_av"):
        sys.modules.pop(name, None)


@pytest.mark.parametrize("function", list(CASES))
def test_the_library_names_the_plugin_and_the_problem_in_one_line(plugins, function):
    with pytest.raises(ValueError) as error:
        build_dataset(f"hostile_av:{function}", per_class=6)
    message = str(error.value)
    assert message.startswith(f"dataset 'hostile_av:{function}': {CASES[function]}"), message
    assert "\n" not in message


@pytest.mark.parametrize("function", ["raises", "no_val", "pairs_past_the_end", "nan_audio"])
def test_the_trainer_exits_2_in_one_line_and_writes_nothing(plugins, tmp_path, capsys,
                                                           function):
    code = train_main(["--dataset", f"hostile_av:{function}", "--out-dir",
                       str(tmp_path / "runs" / "x"), "--device", "cpu", "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith(f"error: dataset 'hostile_av:{function}': {CASES[function]}")
    assert not (tmp_path / "runs").exists()


def test_the_documented_plugin_itself_passes_every_check(plugins):
    dataset = build_dataset("acme_av:build", per_class=6)
    assert sorted(dataset.splits) == ["test", "train", "val"]


def test_the_commands_say_that_a_plugin_or_py_file_runs_its_code(capsys):
    """Naming a plugin, or a .py file to repsim.record, runs its code: --help says so."""
    from repsim.record.cli import build_parser as record_parser
    from repsim.train.cli import build_parser as train_parser

    record = " ".join(record_parser().format_help().split())
    train = " ".join(train_parser().format_help().split())
    assert "A .py file is run when it is loaded" in record and "only files you trust" in record
    assert "a plugin is imported, which runs its code" in train
