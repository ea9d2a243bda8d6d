"""Fusion operators: their equations (against float64 formulas written out here), parameter
counts, the recorded gate, matched parameter counts, old checkpoints and bad input."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from train_files import TINY_DATA_CONFIG, tiny_config

from repsim.checkpoint import load_checkpoint, model_from_checkpoint
from repsim.models.fusion import FusionConvLSTM, ModelConfig, parameter_count
from repsim.models.operators import FUSION_OPS, FiLM, Gated, make_operator, operator_parameters
from repsim.train import run
from repsim.train.config import config_differences


def streams(channels: int, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    shape = (2, 3, channels, 4, 5)
    return (torch.randn(shape, generator=generator, dtype=torch.float64),
            torch.randn(shape, generator=generator, dtype=torch.float64))


def pointwise(conv: torch.nn.Conv2d, x: np.ndarray) -> np.ndarray:
    """A 1 x 1 convolution written out: ``W x + b`` at every (b, t, y, x)."""
    weight = conv.weight.detach().numpy()[:, :, 0, 0]
    return np.einsum("oc,btcyx->btoyx", weight, x) + conv.bias.detach().numpy()[
        None, None, :, None, None]


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


@pytest.mark.parametrize("channels", [1, 3])
def test_concat_joins_along_channels(channels):
    a, v = streams(channels)
    out = make_operator("concat", channels)(a, v)
    np.testing.assert_array_equal(out[:, :, :channels].numpy(), a.numpy())
    np.testing.assert_array_equal(out[:, :, channels:].numpy(), v.numpy())


@pytest.mark.parametrize("channels", [1, 3])
def test_gated_is_the_gmu_formula(channels):
    torch.manual_seed(1)
    gated = Gated(channels).double()
    a, v = streams(channels)
    out = gated(a, v).detach().numpy()
    a64, v64 = a.numpy(), v.numpy()
    h_a = np.tanh(pointwise(gated.audio_transform, a64))
    h_v = np.tanh(pointwise(gated.visual_transform, v64))
    z = sigmoid(pointwise(gated.gate.conv, np.concatenate([a64, v64], axis=2)))
    np.testing.assert_allclose(out, z * h_a + (1 - z) * h_v, rtol=1e-12, atol=1e-12)
    assert out.shape == (2, 3, 2 * channels, 4, 5)
    np.testing.assert_allclose(gated.gate(a, v).detach().numpy(), z, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("channels", [1, 3])
def test_film_is_feature_wise_modulation_both_ways(channels):
    torch.manual_seed(2)
    film = FiLM(channels).double()
    a, v = streams(channels)
    out = film(a, v).detach().numpy()
    a64, v64 = a.numpy(), v.numpy()
    from_v, from_a = pointwise(film.from_visual, v64), pointwise(film.from_audio, a64)
    c = channels
    expected_a = (1 + from_v[:, :, :c]) * a64 + from_v[:, :, c:]
    expected_v = (1 + from_a[:, :, :c]) * v64 + from_a[:, :, c:]
    np.testing.assert_allclose(out, np.concatenate([expected_a, expected_v], axis=2),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", FUSION_OPS)
@pytest.mark.parametrize("channels", [1, 2, 16])
def test_operator_parameter_formula(name, channels):
    module = make_operator(name, channels)
    assert operator_parameters(name, channels) == sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("name", FUSION_OPS)
@pytest.mark.parametrize("layers", [1, 2, 3])
def test_model_parameter_count_matches_module_for_every_operator(name, layers):
    for fusion_layer in range(1, layers + 2):
        for options in ({}, {"match_params": True}, {"branch_hidden": 3}):
            config = ModelConfig(layers=layers, hidden=6, fusion_layer=fusion_layer,
                                 fusion_op=name, **options)
            assert FusionConvLSTM(config).parameter_count() == parameter_count(config)


def deviation(config: ModelConfig, target: int, width: int | None = None) -> float:
    return abs(parameter_count(config, width) - target) / target


@pytest.mark.parametrize("layers,hidden,kernel", [(2, 16, 3), (2, 8, 3), (3, 16, 3),
                                                  (3, 32, 3), (4, 32, 3), (2, 16, 5),
                                                  (1, 16, 3), (2, 32, 3)])
def test_match_params_within_five_percent_of_concat_at_k1(layers, hidden, kernel):
    """Every (operator, k) within 5 % of concat at k = 1, unless no branch width reaches it
    (then the match is the closest width: the branch width is the only knob)."""
    target = parameter_count(ModelConfig(layers=layers, hidden=hidden, kernel=kernel))
    for name in FUSION_OPS:
        for fusion_layer in range(1, layers + 2):
            config = ModelConfig(layers=layers, hidden=hidden, kernel=kernel,
                                 fusion_layer=fusion_layer, fusion_op=name, match_params=True)
            closest = min(deviation(config, target, w) for w in range(1, 2 * hidden + 1))
            assert deviation(config, target) == pytest.approx(closest)
            if closest <= 0.05 or fusion_layer == 1:
                assert deviation(config, target) <= 0.05, (name, fusion_layer)


def test_match_params_default_model_gated_and_film_within_five_percent():
    """The study's model (2 layers, 16 channels): both new operators match at every k."""
    target = parameter_count(ModelConfig(layers=2, hidden=16))
    for name in ("gated", "film"):
        for fusion_layer in (1, 2, 3):
            config = ModelConfig(layers=2, hidden=16, fusion_layer=fusion_layer,
                                 fusion_op=name, match_params=True)
            assert deviation(config, target) <= 0.05


def test_concat_model_has_no_operator_weights_and_joins_by_cat():
    torch.manual_seed(0)
    model = FusionConvLSTM(ModelConfig(layers=2, hidden=4, fusion_layer=2)).double().eval()
    assert not any(key.startswith("join.") for key in model.state_dict())
    audio, visual = streams(1, seed=3)
    logits, states = model(audio, visual, record=True)
    h, _ = model.fused[0](torch.cat([states["audio.1"][0], states["visual.1"][0]], dim=2))
    np.testing.assert_array_equal(logits.detach().numpy(),
                                  model.readout(h[:, -1].mean(dim=(-2, -1))).detach().numpy())


@pytest.mark.parametrize("fusion_layer", [1, 2, 3])
def test_gate_is_recorded_as_gate_k(fusion_layer):
    torch.manual_seed(0)
    model = FusionConvLSTM(ModelConfig(layers=2, hidden=4, fusion_layer=fusion_layer,
                                       fusion_op="gated")).double().eval()
    name = f"gate.{fusion_layer}"
    assert name in model.layer_names
    hooked = []
    model.join.gate.register_forward_hook(lambda module, args, output: hooked.append(output))
    audio, visual = streams(1, seed=4)
    logits, states = model(audio, visual, record=True)
    assert list(states) == model.layer_names
    gate, cell = states[name]
    assert cell is None and ((gate > 0) & (gate < 1)).all()
    np.testing.assert_array_equal(gate.detach().numpy(), hooked[-1].detach().numpy())
    np.testing.assert_array_equal(logits.detach().numpy(),
                                  model(audio, visual).detach().numpy())
    if fusion_layer == 3:  # late: the gated join of the final states feeds the readout
        joined = model.join(states["audio.2"][0], states["visual.2"][0])
        np.testing.assert_allclose(
            logits.detach().numpy(),
            model.readout(joined[:, -1].mean(dim=(-2, -1))).detach().numpy(), rtol=1e-12)


def test_film_and_concat_record_no_gate():
    for name in ("concat", "film"):
        model = FusionConvLSTM(ModelConfig(layers=2, hidden=4, fusion_op=name))
        assert not any(layer.startswith("gate.") for layer in model.layer_names)


def test_fusion_op_round_trips_and_old_configs_mean_concat():
    config = ModelConfig(layers=2, fusion_layer=2, fusion_op="film")
    assert ModelConfig.from_dict(config.to_dict()) == config
    old = ModelConfig().to_dict()
    del old["fusion_op"]
    assert ModelConfig.from_dict(old).fusion_op == "concat"


def test_checkpoint_written_before_operators_loads_as_concat(tmp_path):
    config = tiny_config(tmp_path, epochs=1)
    run(config, dataset=TINY_DATA_CONFIG.build())
    path = config.run_dir / "ckpt.pt"
    ckpt = torch.load(path, weights_only=True)
    del ckpt["config"]["model"]["fusion_op"]  # as written before operators existed
    old = tmp_path / "old.pt"
    torch.save(ckpt, old)
    model = model_from_checkpoint(load_checkpoint(old))
    assert model.config.fusion_op == "concat"
    # and a run from before operators resumes without a configuration difference
    assert config_differences(ckpt["config"], config.to_dict()) == []


@pytest.mark.parametrize("options,message", [
    ({"fusion_op": "sum"}, "unknown fusion operator 'sum'; choose one of concat, gated, film"),
    ({"fusion_op": 1}, "unknown fusion operator 1; choose one of concat, gated, film"),
    ({"fusion_op": "gated", "fusion_layer": 4},
     r"fusion layer must be 1\.\.3 \(or 'late'\) for a 2-layer model with the 'gated' "
     r"operator"),
])
def test_bad_operator_configs(options, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(layers=2, **options)


@pytest.mark.parametrize("argv,message", [
    (["--fusion-op", "sum"], "unknown fusion operator 'sum'; choose one of concat, gated, film"),
    (["--fusion-op", "film", "--fusion-layer", "4"],
     "fusion layer must be 1..3 (or 'late') for a 2-layer model with the 'film' operator"),
])
def test_train_cli_refuses_bad_operator_before_training(tmp_path, argv, message):
    result = subprocess.run([sys.executable, "-m", "repsim.train", *argv, "--out-dir",
                             str(tmp_path / "run")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert not (tmp_path / "run").exists()
