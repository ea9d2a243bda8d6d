"""The recorder asks instead of guessing: each case here was once recorded silently wrong (or
not at all). Layers with different time axes, modules called at several places, option patterns
that match nothing or overlap, time folded into the batch, a batch axis that is not 0, Dataset
items with metadata, ids kept as written, float16 overflow, NaN outputs, unstorable columns."""

from __future__ import annotations

import inspect
import logging

import numpy as np
import pandas as pd
import pytest
import torch
from record_models import (
    B,
    FoldedCNN,
    LabelledClips,
    LSTMNet,
    LSTMWithHead,
    PerFrameResNet,
    T,
    seeded,
    table,
)

import repsim
from repsim import activations
from repsim.record import Layer


def _randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _nothing_left(tmp_path) -> None:
    assert list(tmp_path.iterdir()) == [], "something was left at the output path"


# -- one file, several time axes


def test_layers_with_different_time_axes_record_into_one_file(tmp_path):
    model = seeded(LSTMWithHead)
    x = _randn(2 * B, 4, 5)
    result = repsim.record(model, [(x[:B],), (x[B:],)], ["lstm", "down", "head"],
                           tmp_path / "mixed.h5", table=table(2 * B),
                           time_dim={"lstm": 1, "down": 1})
    assert result.timesteps == 4
    assert result.time_axes == {"lstm": 4, "down": 2, "head": 1}
    assert "down: 2, head: 1" in result.summary()

    ds = activations.open(tmp_path / "mixed.h5")
    with torch.no_grad():  # the plain forward of the same batches
        outs = [model.lstm(part)[0] for part in (x[:B], x[B:])]
        downs = [model.down(part) for part in outs]
        out, down = torch.cat(outs), torch.cat(downs)
        head = torch.cat([model.head(part[:, -1]) for part in downs])
    expected = {"lstm": out, "down": down, "head": head[:, None]}
    for layer, values in expected.items():
        assert activations.time_steps(ds, layer) == values.shape[1]
        selected = activations.select(ds, layer)
        assert selected.dims == ("stimulus", "time", "feature")
        np.testing.assert_array_equal(selected.values, values.numpy())
    last = activations.select(ds, "down", time=-1)
    np.testing.assert_array_equal(last.values, down[:, -1].numpy())
    # the netCDF view has one dim per distinct length
    assert ds["down.h"].dims[1] == "time_2" and ds["head.h"].dims[1] == "time_1"
    assert ds["lstm.h"].dims[1] == "time"


# -- modules called at several places


def test_a_module_called_at_two_places_per_step_is_refused_not_interleaved(tmp_path):
    frames = _randn(B, T, 3, 6, 6)
    with pytest.raises(ValueError, match=r"module 'block.relu' is called at 2 places in one "
                                         r"forward \(6 calls;") as error:
        repsim.record(seeded(PerFrameResNet), [(frames,)], ["block.relu"], tmp_path / "o.h5",
                      table=table(B))
    assert "\n" not in str(error.value)
    assert "record_models.py:" in str(error.value)  # where the calls are
    _nothing_left(tmp_path)


def test_a_module_called_at_one_place_in_a_loop_still_gives_steps(tmp_path):
    frames = _randn(B, T, 3, 6, 6)
    model = seeded(PerFrameResNet)
    repsim.record(model, [(frames,)], ["block.conv1"], tmp_path / "o.h5", table=table(B))
    with torch.no_grad():
        expected = torch.stack([model.block.conv1(frames[:, t]) for t in range(T)], 1)
    np.testing.assert_array_equal(
        activations.open(tmp_path / "o.h5")["block.conv1.h"].values, expected.numpy())


# -- option patterns


def test_a_time_dim_pattern_that_matches_no_chosen_layer_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"time_dim pattern 'lstn' matches none of the chosen "
                                         r"layers \(lstm, head\)"):
        repsim.record(seeded(LSTMNet), [(_randn(B, T, 5),)], ["lstm", "head"],
                      tmp_path / "o.h5", table=table(B), time_dim={"lstn": 1})
    _nothing_left(tmp_path)


def test_the_most_specific_pattern_wins_and_a_tie_is_named(tmp_path):
    model = seeded(LSTMNet)
    x = _randn(B, T, 5)
    # '*' chooses lstm too: its time axis comes from the exact name, not from the first pattern
    repsim.record(model, [(x,)], ["*", "lstm"], tmp_path / "o.h5", table=table(B),
                  time_dim={"lstm": 1, "*": None})
    ds = activations.open(tmp_path / "o.h5")
    assert activations.time_steps(ds, "lstm") == T
    assert activations.time_steps(ds, "head") == 1
    with pytest.raises(ValueError, match=r"time_dim patterns 'l\*' and '\*m' both match "
                                         r"layer 'lstm'"):
        repsim.record(model, [(x,)], ["lstm"], tmp_path / "p.h5", table=table(B),
                      time_dim={"l*": 1, "*m": 0})


def test_two_layer_objects_with_one_name_are_refused(tmp_path):
    layers = [Layer("state", "lstm", time_dim=1), Layer("state", "head")]
    with pytest.raises(ValueError, match=r"two layers are named 'state'"):
        repsim.record(seeded(LSTMNet), [(_randn(B, T, 5),)], layers, tmp_path / "o.h5",
                      table=table(B))
    _nothing_left(tmp_path)


def test_a_sequence_output_recorded_without_time_dim_is_logged(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="repsim.record"):
        repsim.record(seeded(LSTMNet), [(_randn(B, T, 5),)], ["lstm"], tmp_path / "o.h5",
                      table=table(B))
    lines = [r.getMessage() for r in caplog.records if "time_dim" in r.getMessage()]
    assert len(lines) == 1, caplog.text
    assert "'lstm'" in lines[0] and f"({B}, {T}, 7)" in lines[0]
    assert activations.time_steps(activations.open(tmp_path / "o.h5"), "lstm") == 1


# -- time folded into the batch, batch axis not 0


@pytest.mark.parametrize("time_major, fold", [(False, True), (False, "BT"), (True, "TB")])
def test_time_folded_into_the_batch(tmp_path, time_major, fold):
    model = FoldedCNN(time_major)
    torch.manual_seed(0)
    model = model.eval()
    frames = _randn(B, T, 1, 6, 6)
    repsim.record(model, [(frames,)], ["body.0"], tmp_path / "o.h5", table=table(B),
                  fold_time=fold)
    with torch.no_grad():
        expected = torch.stack([model.body[0](frames[:, t]) for t in range(T)], 1)
    np.testing.assert_allclose(activations.open(tmp_path / "o.h5")["body.0.h"].values,
                               expected.numpy(), rtol=1e-6, atol=1e-6)


class _Odd(torch.nn.Module):
    """Folds time into the batch but keeps only 7 of the B * T rows."""

    def __init__(self) -> None:
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 1))

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.body(frames.flatten(0, 1)[:7])


def test_a_folded_output_that_does_not_divide_by_the_batch_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"fold_time.*'body.0'.*7 rows.*batch of 5"):
        repsim.record(_Odd(), [(_randn(B, T, 1, 6, 6),)], ["body.0"], tmp_path / "o.h5",
                      table=table(B), fold_time=True)
    _nothing_left(tmp_path)


def test_an_lstms_final_state_with_its_batch_on_axis_1(tmp_path):
    model = seeded(LSTMNet)
    x = _randn(B, T, 5)
    repsim.record(model, [(x,)], ["lstm"], tmp_path / "o.h5", table=table(B),
                  output=(1, 0), batch_dim=1)
    with torch.no_grad():
        _, (h_n, _) = model.lstm(x)
    stored = activations.open(tmp_path / "o.h5")["lstm.h"].values
    np.testing.assert_array_equal(stored, h_n.transpose(0, 1).reshape(B, 1, -1).numpy())


# -- Dataset items with metadata


def test_dataset_items_with_metadata_give_the_stimulus_table(tmp_path):
    model = seeded(LSTMNet)
    clips = LabelledClips(n=7)
    repsim.record(model, clips, ["lstm"], tmp_path / "o.h5", time_dim=1, batch_size=3)
    ds = activations.open(tmp_path / "o.h5")
    assert list(ds["stimulus_id"].values) == [f"clip{i:03d}" for i in range(7)]
    assert list(ds["label"].values) == [i % 4 for i in range(7)]
    with torch.no_grad():
        expected, _ = model.lstm(clips.x)
    np.testing.assert_allclose(ds["lstm.h"].values, expected.numpy(), rtol=1e-6, atol=1e-7)


# -- ids as written, colliding ids


def test_stimulus_ids_from_a_csv_stay_as_written(tmp_path):
    ids = ["000", "001", "20", "3.50", "0x1"]
    (tmp_path / "t.csv").write_text("stimulus_id,note\n" + "".join(
        f"{i},{'' if n == 2 else n}\n" for n, i in enumerate(ids)))
    out = tmp_path / "out" / "o.h5"
    out.parent.mkdir()
    repsim.record(seeded(LSTMNet), [(_randn(B, T, 5),)], ["head"], out,
                  table=tmp_path / "t.csv")
    assert list(activations.open(out)["stimulus_id"].values) == ids


def test_ids_that_collide_as_text_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"stimulus_id '1' twice.*as text"):
        repsim.record(seeded(LSTMNet), [(_randn(B, T, 5),)], ["head"], tmp_path / "o.h5",
                      table={"stimulus_id": [1, "1", 2, 3, 4]})
    _nothing_left(tmp_path)


# -- values the file cannot hold


class _Loud(torch.nn.Module):
    """A linear layer whose inputs are scaled far beyond float16's range."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Linear(5, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale(x * 1e6)


def test_float16_overflow_is_refused(tmp_path):
    torch.manual_seed(0)
    with pytest.raises(ValueError, match=r"layer 'scale'.*beyond float16's range.*65504"):
        repsim.record(_Loud(), [(_randn(B, 5),)], ["scale"], tmp_path / "o.h5",
                      table=table(B), dtype="float16")
    _nothing_left(tmp_path)


def test_nan_in_an_output_is_one_warning_naming_layer_and_condition(tmp_path, caplog):
    model = seeded(LSTMNet)
    x = _randn(B, T, 5)
    x[2, 1, 0] = float("nan")
    with caplog.at_level(logging.WARNING, logger="repsim.record"):
        repsim.record(model, [(x,)], ["lstm"], tmp_path / "o.h5", table=table(B), time_dim=1)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "'lstm'" in warnings[0] and "'clean'" in warnings[0] and "NaN" in warnings[0]


@pytest.mark.parametrize("column", ["a/b", "time", "prediction", "lstm.h", "time_3", ""])
def test_a_column_name_the_file_cannot_hold_is_named(tmp_path, column):
    frame = table(B).assign(**{column: 1})
    with pytest.raises(ValueError, match=r"column .* cannot be stored") as error:
        repsim.record(seeded(LSTMNet), [(_randn(B, T, 5),)], ["lstm"], tmp_path / "o.h5",
                      table=frame, time_dim=1)
    assert repr(column) in str(error.value)
    _nothing_left(tmp_path)


# -- mistakes that were tracebacks or raw errors


@pytest.mark.parametrize("options, message", [
    ({"pool": "avg", "pool_factor": 0}, "pool_factor must be a positive integer"),
    ({"time_dim": "1"}, "time_dim must be an integer axis or None, got '1'"),
    ({"batch_dim": 1.5}, "batch_dim must be an integer axis or None, got 1.5"),
    ({"fold_time": "sideways"}, "fold_time must be"),
])
def test_bad_option_values_are_value_errors(tmp_path, options, message):
    with pytest.raises(ValueError, match=message):
        repsim.record(seeded(LSTMNet), [(_randn(B, T, 5),)], ["lstm"], tmp_path / "o.h5",
                      table=table(B), **options)
    _nothing_left(tmp_path)


def test_noise_on_an_integer_input_is_a_value_error(tmp_path):
    class Tokens(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(10, 3)

        def forward(self, tokens):
            return self.embed(tokens)

    with pytest.raises(ValueError, match=r"condition 'tokens_snr0'.*integer input 'tokens'"):
        repsim.record(Tokens(), [{"tokens": torch.arange(B)[:, None]}], ["embed"],
                      tmp_path / "o.h5", table=table(B), conditions=["tokens_snr0"])
    _nothing_left(tmp_path)


# -- the signature and the layer list


def test_repsim_record_shows_its_real_signature_and_docstring():
    parameters = inspect.signature(repsim.record).parameters
    assert list(parameters)[:4] == ["model", "stimuli", "layers", "out"]
    assert "fold_time" in parameters and "model_name" in parameters
    assert "Record ``layers`` of ``model``" in repsim.record.__doc__
    assert "Record ``layers`` of ``model``" in inspect.getdoc(repsim.record)


def test_layers_lists_every_module_with_output_shapes_and_calls():
    listed = repsim.record.layers(seeded(PerFrameResNet), (_randn(B, T, 3, 6, 6),))
    assert isinstance(listed, pd.DataFrame)
    rows = listed.set_index("name")
    assert list(listed["name"]) == ["block", "block.conv1", "block.conv2", "block.relu",
                                    "head"]
    assert rows.loc["block.relu", "type"] == "ReLU"
    assert rows.loc["block.relu", "calls"] == 2 * T
    assert rows.loc["block.relu", "places"] == 2
    assert rows.loc["block.conv1", "calls"] == T and rows.loc["block.conv1", "places"] == 1
    assert rows.loc["block.conv1", "output"] == f"({B}, 3, 6, 6)"
    assert rows.loc["head", "output"] == f"({B}, 10)"
    tuple_out = repsim.record.layers(seeded(LSTMNet), (_randn(B, T, 5),)).set_index("name")
    assert tuple_out.loc["lstm", "output"] == f"(({B}, {T}, 7), ((1, {B}, 7), (1, {B}, 7)))"
