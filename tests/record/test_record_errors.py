"""repsim.record's bad inputs: each one ValueError of one line, and nothing at the output path
(no file, no temporary)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from record_models import B, CellLoop, LSTMNet, T, seeded, table
from torch import nn

import repsim
from repsim import activations
from repsim.provenance import Busy, claim
from repsim.record import RecordingStopped


def _batches(steps: tuple[int, ...] = (T, T)) -> list[tuple[torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    return [(torch.randn(B, t, 5, generator=generator),) for t in steps]


def _fails(tmp_path, message: str, model: nn.Module | None = None, stimuli=None,
           layers=("lstm",), **options) -> str:
    """Record with ``options``; check the one-line error and that nothing was written."""
    out = tmp_path / "out.h5"
    options = {"table": table(2 * B), "time_dim": 1, **options}
    with pytest.raises(ValueError, match=message) as error:
        repsim.record(seeded(LSTMNet) if model is None else model,
                      _batches() if stimuli is None else stimuli, list(layers), out, **options)
    text = str(error.value)
    assert "\n" not in text, text
    assert list(tmp_path.iterdir()) == [], "something was left at the output path"
    return text


def test_a_pattern_matching_no_module_names_the_closest(tmp_path):
    text = _fails(tmp_path, "layer pattern 'lstmm' matches no module of LSTMNet",
                  layers=["lstmm"])
    assert "closest module names: lstm" in text


def test_a_module_never_called(tmp_path):
    _fails(tmp_path, "'unused'.* was never called during the forward", model=seeded(CellLoop),
           layers=["gru", "unused"], time_dim=None)


def test_an_output_shape_that_changes_between_batches(tmp_path):
    _fails(tmp_path, r"layer 'lstm' gave \(time, features\) \(4, 7\) on batch 1 of condition "
                     r"'clean', but \(3, 7\) before", stimuli=_batches((T, 4)))


@pytest.mark.parametrize("ids, message", [
    (["a", "b", "a", "c", "d", "e", "f", "g", "h", "i"], "repeats stimulus_id 'a'"),
    (["a", None, "c", "d", "e", "f", "g", "h", "i", "j"], "lacks a stimulus_id in 1 row"),
    (["a", "", "c", "d", "e", "f", "g", "h", "i", "j"], "lacks a stimulus_id in 1 row"),
])
def test_duplicate_or_missing_stimulus_ids(tmp_path, ids, message):
    _fails(tmp_path, message, table=pd.DataFrame({"stimulus_id": ids}))


def test_a_table_without_stimulus_ids(tmp_path):
    _fails(tmp_path, "no 'stimulus_id' column", table=pd.DataFrame({"label": np.arange(2 * B)}))


@pytest.mark.parametrize("rows, message", [
    (2 * B + 1, "has 11 rows but the stimuli gave 10"),
    (2 * B - 1, "the stimuli give more than the 9 rows of the stimulus table"),
])
def test_a_table_whose_rows_are_not_the_stimuli(tmp_path, rows, message):
    _fails(tmp_path, message, table=table(rows))


def test_a_table_that_does_not_fit_a_dataset_is_refused_before_any_forward(tmp_path):
    dataset = torch.utils.data.TensorDataset(torch.randn(7, T, 5))
    _fails(tmp_path, "the stimulus table has 10 rows but the dataset holds 7 stimuli",
           stimuli=dataset)


class Refuses(nn.Module):
    """Raises on an input that is all zeros (as a condition that removes it makes)."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(5, 3, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not x.any():
            raise RuntimeError("an empty input\nwith a second line")
        return self.lstm(x)[0]


def test_calls_that_disagree_in_shape_within_one_forward(tmp_path):
    class Growing(nn.Module):
        """A module called on ever longer slices: its steps cannot be stacked."""

        def __init__(self) -> None:
            super().__init__()
            self.cell = nn.Identity()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.cat([self.cell(x[:, :t + 1, 0]) for t in range(x.shape[1])], 1)

    _fails(tmp_path, r"layer 'cell' \(module 'cell'\) gave outputs of \(5, 1\) torch.float32, "
                     r"\(5, 2\) torch.float32, \(5, 3\) torch.float32 in one forward; calls",
           model=Growing(), layers=["cell"], time_dim=None)


def test_a_forward_that_raises_names_the_batch_and_condition(tmp_path):
    stimuli = [{"x": x} for (x,) in _batches()]
    text = _fails(tmp_path, "the model's forward raised RuntimeError: an empty input on batch 0 "
                            r"\(stimuli 0-4\) of condition 'x_removed'", model=Refuses(),
                  stimuli=stimuli, conditions=["clean", "x_removed"])
    assert "second line" not in text


@pytest.mark.parametrize("time_dim", [3, -4])
def test_a_time_axis_out_of_range(tmp_path, time_dim):
    _fails(tmp_path, f"time_dim {time_dim} is out of range for layer 'lstm'.* shape "
                     r"\(5, 3, 7\) \(3 axes\)", time_dim=time_dim)


def test_a_time_axis_on_a_module_called_in_a_loop(tmp_path):
    _fails(tmp_path, "'gru'.* was called 3 times in one forward and has time_dim=1",
           model=seeded(CellLoop), layers=["gru"])


def test_a_condition_on_an_input_the_batches_lack(tmp_path):
    _fails(tmp_path, "condition 'audio_removed' acts on the keyword input 'audio', but the "
                     "batches give inputs: positional only", conditions=["audio_removed"])


def test_an_unknown_condition_name(tmp_path):
    _fails(tmp_path, "unknown condition 'noisy'", conditions=["noisy"])


def test_an_output_index_that_does_not_exist(tmp_path):
    _fails(tmp_path, r"output 5 of module 'lstm' does not exist \(it returned a tuple of 2\)",
           output=5)


def test_an_existing_output_needs_overwrite(tmp_path):
    out = tmp_path / "out.h5"
    out.write_bytes(b"keep me")
    with pytest.raises(FileExistsError, match="exists; pass overwrite"):
        repsim.record(seeded(LSTMNet), _batches(), ["lstm"], out, table=table(2 * B),
                      time_dim=1)
    assert out.read_bytes() == b"keep me"


def test_a_one_shot_iterator_cannot_serve_two_conditions(tmp_path):
    stimuli = iter([{"x": x} for (x,) in _batches()])
    _fails(tmp_path, "one-shot iterator", model=Refuses(), stimuli=stimuli,
           conditions=["clean", "x_snr0"])


def test_a_second_writer_of_the_same_path_fails_at_once(tmp_path):
    out = tmp_path / "out.h5"
    with claim(out), pytest.raises(Busy, match=f"{out} is being written by"):
        repsim.record(seeded(LSTMNet), _batches(), ["lstm"], out, table=table(2 * B),
                      time_dim=1)
    assert not out.exists()


def test_a_stop_request_between_batches_keeps_nothing(tmp_path):
    asked = []

    def stop() -> bool:
        asked.append(True)
        return len(asked) > 1  # after the first batch

    with pytest.raises(RecordingStopped, match="nothing was written"):
        repsim.record(seeded(LSTMNet), _batches(), ["lstm"], tmp_path / "out.h5",
                      table=table(2 * B), time_dim=1, should_stop=stop)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name, content, message", [
    ("missing.csv", None, "stimulus table .*missing.csv does not exist"),
    ("stimuli.txt", "stimulus_id\na\n", "must be a .csv or .parquet or .pq file"),
    ("stimuli.csv", "label\n1\n", "no 'stimulus_id' column"),
])
def test_a_bad_table_file_is_named(tmp_path, name, content, message):
    path = tmp_path / "tables" / name
    path.parent.mkdir()
    if content is not None:
        path.write_text(content)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    _fails(out_dir, message, table=path)


def test_a_table_from_a_csv_path(tmp_path):
    path = tmp_path / "stimuli.csv"
    path.write_text("stimulus_id,speaker\n" + "".join(f"{i},p{i % 2}\n" for i in range(2 * B)))
    result = repsim.record(seeded(LSTMNet), _batches(), ["lstm"], tmp_path / "out.h5",
                           table=path, time_dim=1)
    ds = activations.open(result.path)
    assert list(ds["stimulus_id"].values) == [str(i) for i in range(2 * B)]  # ids as text
    assert list(ds["speaker"].values[:2]) == ["p0", "p1"]
