"""repsim.record: any model's layers per time step, checked against a plain forward of the
same weights (exactly, on the CPU); conditions, the stimulus table, the file's attributes."""

from __future__ import annotations

import hashlib
import json
import math
import zlib

import numpy as np
import pytest
import torch
from record_models import (
    AVTransformer,
    B,
    CellLoop,
    FrameCNN,
    LSTMNet,
    T,
    av_batches,
    seeded,
    table,
)

import repsim
from repsim import activations
from repsim.data.noise import derived_seed
from repsim.models.fusion import FusionConvLSTM, ModelConfig
from repsim.record import Layer, RecordBatch


def _batches(shape: tuple[int, ...], n_batches: int = 2, seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(B, *shape, generator=generator) for _ in range(n_batches)]


def _values(ds, name: str) -> np.ndarray:
    return ds[name].values


def test_a_cnn_run_per_frame_gives_one_step_per_call(tmp_path):
    model = seeded(FrameCNN)
    batches = _batches((T, 1, 6, 6))
    result = repsim.record(model, [(x,) for x in batches], ["body.0", "body.2"],
                           tmp_path / "cnn.h5", table=table(2 * B))
    ds = activations.open(result.path)
    assert activations.layer_names(ds) == ["body.0", "body.2"]
    assert ds["body.0.h"].dims == ("stimulus", "time", "channel_3", "y", "x")
    with torch.no_grad():  # the plain forward of the parts: conv before its in-place ReLU
        conv = torch.cat([torch.stack([model.body[0](x[:, t]) for t in range(T)], 1)
                          for x in batches])
        out = torch.cat([torch.stack([model.body(x[:, t]) for t in range(T)], 1)
                         for x in batches])
    assert (conv < 0).any()  # so a rectified copy would differ
    assert np.array_equal(_values(ds, "body.0.h"), conv.numpy())
    assert np.array_equal(_values(ds, "body.2.h"), out.numpy())
    selected = activations.select(ds, "body.0", time=-1, condition="clean")
    assert selected.dims == ("stimulus", "channel", "y", "x")
    assert list(ds["condition"].values) == ["clean"] * 2 * B
    assert list(ds["label"].values) == [i % 3 for i in range(2 * B)]


def test_outputs_copied_into_reused_memory_stay_exact_across_batches(tmp_path):
    """The hooks copy into the previous forward's memory where shapes agree, and into new
    memory where they do not (a smaller last batch, then a full one in the next condition):
    every value is the plain forward's, in-place ReLU after body.0 and all."""
    model = seeded(FrameCNN)
    generator = torch.Generator().manual_seed(1)
    batches = [torch.randn(size, T, 1, 6, 6, generator=generator) for size in (B, B, 2)]
    ds = activations.open(repsim.record(model, [{"frames": x} for x in batches],
                                        ["body.0", "body.2"], tmp_path / "cnn.h5",
                                        table=table(2 * B + 2),
                                        conditions=["clean", "frames_removed"]).path)
    with torch.no_grad():
        for condition, scale in (("clean", 1), ("frames_removed", 0)):
            rows = ds["condition"].values == condition
            for index, module in ((0, "body.0"), (2, "body.2")):
                part = model.body[:index + 1]
                expected = torch.cat([torch.stack([part(scale * x[:, t]) for t in range(T)], 1)
                                      for x in batches])
                assert np.array_equal(_values(ds, f"{module}.h")[rows], expected.numpy())
    assert (_values(ds, "body.0.h") < 0).any()  # so a rectified copy would differ


def test_an_lstm_gives_time_from_its_output_and_output_picks_a_tuple_element(tmp_path):
    model = seeded(LSTMNet)
    batches = _batches((T, 5))
    ds = activations.open(repsim.record(model, [(x,) for x in batches], ["lstm"],
                                        tmp_path / "lstm.h5", table=table(2 * B),
                                        time_dim=1).path)
    with torch.no_grad():
        expected = torch.cat([model.lstm(x)[0] for x in batches])
    assert ds["lstm.h"].dims == ("stimulus", "time", "feature")
    assert np.array_equal(_values(ds, "lstm.h"), expected.numpy())
    # the last step's hidden state, from (out, (h_n, c_n)): output (1, 0), one step, batch
    # on axis 1 of h_n (1, B, 7) is refused with the axes named
    with pytest.raises(ValueError, match=r"axis 0 should be the batch of 5 stimuli"):
        repsim.record(model, [(x,) for x in batches], ["lstm"], tmp_path / "hn.h5",
                      table=table(2 * B), output=(1, 0))
    assert not (tmp_path / "hn.h5").exists()


def test_a_cell_loop_gives_time_from_calls_and_output_1_is_the_cell_state(tmp_path):
    model = seeded(CellLoop)
    batches = _batches((T, 5))
    ds = activations.open(repsim.record(
        model, [(x,) for x in batches], ["gru", "lstm"], tmp_path / "cells.h5",
        table=table(2 * B), output={"lstm": 1}).path)
    gru, cell = [], []
    with torch.no_grad():
        for x in batches:
            h, state, hs, cs = None, None, [], []
            for t in range(T):
                h = model.gru(x[:, t], h)
                state = model.lstm(h, state)
                hs.append(h)
                cs.append(state[1])
            gru.append(torch.stack(hs, 1))
            cell.append(torch.stack(cs, 1))
    assert np.array_equal(_values(ds, "gru.h"), torch.cat(gru).numpy())
    assert np.array_equal(_values(ds, "lstm.h"), torch.cat(cell).numpy())
    modules = json.loads(ds.attrs["recorded_modules"])
    assert modules["lstm.h"] == {"module": "lstm", "output": 1, "time": "calls, or one step"}


def _transformer_reference(model: AVTransformer, batch: dict) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        tokens = model.audio_embed(batch["audio"]) + model.visual_embed(
            batch["visual"].flatten(2))
        first = model.encoder.layers[0](tokens)
        return {"audio_embed": model.audio_embed(batch["audio"]),
                "encoder.layers.0": first, "encoder.layers.1": model.encoder.layers[1](first),
                "logits": model(**batch)}


def test_a_two_input_transformer_with_keyword_batches_and_logits(tmp_path):
    model = seeded(AVTransformer)
    batches = av_batches()
    result = repsim.record(model, batches, ["audio_embed", "encoder.layers.*"],
                           tmp_path / "av.h5", table=table(2 * B), time_dim=1,
                           logits=lambda out: out)
    ds = activations.open(result.path)
    assert result.layers == ["audio_embed", "encoder.layers.0", "encoder.layers.1"]
    references = [_transformer_reference(model, batch) for batch in batches]
    for name in result.layers:
        expected = torch.cat([reference[name] for reference in references])
        assert np.array_equal(_values(ds, f"{name}.h"), expected.numpy()), name
    logits = torch.cat([reference["logits"] for reference in references])
    assert np.array_equal(ds["logits"].values, logits.numpy())
    assert np.array_equal(ds["prediction"].values, logits.argmax(1).numpy())
    assert ds.sizes["time"] == T


def test_built_in_conditions_stack_along_stimulus_with_repsims_snr(tmp_path):
    model = seeded(AVTransformer)
    batches = av_batches()
    ds = activations.open(repsim.record(
        model, batches, ["audio_embed"], tmp_path / "cond.h5", table=table(2 * B),
        time_dim=1, conditions=["clean", "audio_removed", "visual_snr-5"], seed=3).path)
    assert activations.condition_names(ds) == ["clean", "audio_removed", "visual_snr-5"]
    assert list(ds["stimulus_id"].values[:2 * B]) == list(ds["stimulus_id"].values[2 * B:4 * B])
    values = _values(ds, "audio_embed.h")
    with torch.no_grad():
        clean = torch.cat([model.audio_embed(b["audio"]) for b in batches]).numpy()
        removed = torch.cat([model.audio_embed(torch.zeros_like(b["audio"]))
                             for b in batches]).numpy()
    assert np.array_equal(values[:2 * B], clean)
    assert np.array_equal(values[2 * B:4 * B], removed)
    assert np.array_equal(values[4 * B:], clean)  # noise on the video leaves audio alone

    seen = []  # the noisy video the model gets, against the SNR formula written out
    forward = AVTransformer.forward

    def spy(self, audio, visual):
        seen.append(visual.clone())
        return forward(self, audio, visual)

    AVTransformer.forward = spy
    try:
        repsim.record(model, batches, ["audio_embed"], tmp_path / "noisy.h5",
                      table=table(2 * B), time_dim=1, conditions=["visual_snr-5"], seed=3)
    finally:
        AVTransformer.forward = forward
    key = zlib.crc32(b"visual_snr-5")
    for index, (batch, noisy) in enumerate(zip(batches, seen, strict=True)):
        for i in range(B):
            row = index * B + i
            clean_image = batch["visual"][i].double()
            generator = torch.Generator().manual_seed(derived_seed(3, key, row))
            noise = torch.randn(clean_image.shape, generator=generator, dtype=torch.float32)
            power = float(clean_image.pow(2).mean())
            scale = math.sqrt(power / 10 ** (-5 / 10))
            np.testing.assert_allclose(noisy[i].numpy(), (clean_image + scale * noise.double())
                                       .numpy(), rtol=0, atol=1e-6)


def test_custom_conditions_and_a_map_style_dataset(tmp_path):
    model = seeded(LSTMNet)
    data = torch.randn(7, T, 5)
    dataset = torch.utils.data.TensorDataset(data)
    ds = activations.open(repsim.record(
        model, dataset, ["lstm"], tmp_path / "ds.h5", table=table(7), time_dim=1,
        batch_size=3, conditions={"clean": None, "reversed": lambda xs: (xs[0].flip(1),)}).path)
    with torch.no_grad():
        assert np.array_equal(_values(ds, "lstm.h")[:7], model.lstm(data)[0].numpy())
        assert np.array_equal(_values(ds, "lstm.h")[7:], model.lstm(data.flip(1))[0].numpy())


def test_columns_given_with_each_batch_make_the_table(tmp_path):
    model = seeded(LSTMNet)
    batches = _batches((T, 5))
    stimuli = [RecordBatch((x,), {"stimulus_id": [f"b{i}-{j}" for j in range(B)],
                                  "speaker": ["ann"] * B}) for i, x in enumerate(batches)]
    ds = activations.open(repsim.record(model, stimuli, ["lstm"], tmp_path / "cols.h5",
                                        time_dim=1).path)
    assert list(ds["stimulus_id"].values) == [f"b{i}-{j}" for i in range(2) for j in range(B)]
    assert set(ds["speaker"].values) == {"ann"}


def test_attributes_name_the_model_its_weights_and_the_patterns(tmp_path):
    model = seeded(LSTMNet)
    ds = activations.open(repsim.record(model, [(x,) for x in _batches((T, 5))], ["ls*"],
                                        tmp_path / "a.h5", table=table(2 * B),
                                        time_dim=1).path)
    digest = hashlib.sha256()
    for name, value in model.state_dict().items():
        digest.update(f"{name}|{value.dtype}|{tuple(value.shape)}|".encode())
        digest.update(value.numpy().tobytes())
    assert ds.attrs["model_sha256"] == digest.hexdigest()
    assert ds.attrs["model_class"] == "record_models.LSTMNet"
    assert json.loads(ds.attrs["layer_patterns"]) == ["ls*"]
    assert ds.attrs["format_version"] == activations.FORMAT_VERSION == 4
    assert "torch" in json.loads(ds.attrs["versions"])


def test_float16_avg_pooling_and_the_models_mode_is_restored(tmp_path):
    model = seeded(FrameCNN).train()
    batches = _batches((T, 1, 6, 6))
    ds = activations.open(repsim.record(model, [(x,) for x in batches], ["body.2"],
                                        tmp_path / "p.h5", table=table(2 * B), pool="avg",
                                        dtype="float16").path)
    assert model.training
    with torch.no_grad():
        maps = torch.cat([torch.stack([model.body(x[:, t]) for t in range(T)], 1)
                          for x in batches])
    pooled = torch.nn.functional.avg_pool2d(maps.flatten(0, 1), 2, ceil_mode=True)
    assert np.array_equal(_values(ds, "body.2.h"),
                          pooled.reshape(2 * B, T, 4, 3, 3).half().numpy())


# --------------------------------------------------------------------- repsim's own model


def test_repsims_fusion_convlstm_through_patterns_equals_its_recorded_states(tmp_path):
    torch.manual_seed(0)
    model = FusionConvLSTM(ModelConfig(layers=2, hidden=4, fusion_layer=2)).eval()
    generator = torch.Generator().manual_seed(1)
    batches = [{"audio": torch.randn(B, T, 1, 6, 4, generator=generator),
                "visual": torch.randn(B, T, 1, 6, 4, generator=generator)} for _ in range(2)]
    ds = activations.open(repsim.record(model, batches, ["audio.*", "visual.*", "fused.*"],
                                        tmp_path / "f.h5", table=table(2 * B),
                                        time_dim=1).path)
    assert activations.layer_names(ds) == ["audio.0", "visual.0", "fused.0"]
    with torch.no_grad():
        states = [model(**batch, record=True)[1] for batch in batches]
    for module, layer in [("audio.0", "audio.1"), ("visual.0", "visual.1"),
                          ("fused.0", "fused.2")]:
        expected = torch.cat([state[layer][0] for state in states])
        assert np.array_equal(_values(ds, f"{module}.h"), expected.numpy()), layer
    assert model.recorded_modules() == {"audio.1": "audio.0", "visual.1": "visual.0",
                                        "fused.2": "fused.0"}
    both = model.recorded_layers(("h", "c"), ["fused.2"])
    assert both == [  # with where figures draw it
        Layer("fused.2", "fused.0", output=0, state="h", time_dim=1, depth=2, stream="fused"),
        Layer("fused.2", "fused.0", output=1, state="c", time_dim=1, depth=2, stream="fused")]
