"""FusionConvLSTM: configuration, parameter counts, readout, recording and fusion wiring."""

from __future__ import annotations

import pytest
import torch

from repsim.models.fusion import (
    FusionConvLSTM,
    ModelConfig,
    final_logits,
    matched_branch_width,
    parameter_count,
)

LAYERS = 3


def inputs(seed: int = 0, batch: int = 2, steps: int = 4, size: int = 6):
    generator = torch.Generator().manual_seed(seed)
    shape = (batch, steps, 1, size, size)
    return (torch.randn(shape, generator=generator, dtype=torch.float64),
            torch.randn(shape, generator=generator, dtype=torch.float64))


def model_for(fusion_layer, **options) -> FusionConvLSTM:
    torch.manual_seed(0)
    config = ModelConfig(layers=LAYERS, hidden=4, fusion_layer=fusion_layer, **options)
    return FusionConvLSTM(config).double().eval()


@pytest.mark.parametrize("fusion_layer", [1, 2, 3, 4])
def test_layer_names_and_recorded_shapes(fusion_layer):
    model = model_for(fusion_layer)
    audio, visual = inputs()
    with torch.no_grad():
        logits, states = model(audio, visual, record=True)
        plain = model(audio, visual)
    expected = []
    for depth in range(1, fusion_layer):
        expected += [f"audio.{depth}", f"visual.{depth}"]
    expected += [f"fused.{depth}" for depth in range(fusion_layer, LAYERS + 1)]
    assert model.layer_names == expected
    assert list(states) == expected
    for h, c in states.values():
        assert h.shape == c.shape == (2, 4, 4, 6, 6)
    assert logits.shape == (2, 10)
    assert torch.equal(plain, logits)  # recording changes nothing


@pytest.mark.parametrize("fusion_layer", [1, 2, 4])
def test_readout_is_spatial_mean_of_last_step_then_linear(fusion_layer):
    model = model_for(fusion_layer)
    audio, visual = inputs(1)
    with torch.no_grad():
        logits, states = model(audio, visual, record=True)
    if fusion_layer == LAYERS + 1:  # late: the two final states side by side
        last = torch.cat([states[f"audio.{LAYERS}"][0], states[f"visual.{LAYERS}"][0]], dim=2)
    else:
        last = states[f"fused.{LAYERS}"][0]
    feature = last[:, -1].sum(dim=(-2, -1)) / (last.shape[-1] * last.shape[-2])
    expected = feature @ model.readout.weight.T + model.readout.bias
    torch.testing.assert_close(logits, expected, rtol=0, atol=1e-12)


def test_per_step_readout():
    model = model_for(2, readout="per_step")
    audio, visual = inputs(2)
    with torch.no_grad():
        logits, states = model(audio, visual, record=True)
    assert logits.shape == (2, 4, 10)
    h = states[f"fused.{LAYERS}"][0]
    expected = h.mean(dim=(-2, -1)) @ model.readout.weight.T + model.readout.bias
    torch.testing.assert_close(logits, expected, rtol=0, atol=1e-12)
    assert torch.equal(final_logits(logits), logits[:, -1])


def _changed_states(model, audio, visual, which: str) -> dict[str, torch.Tensor]:
    """Per layer and step: did the hidden state change when ``which`` input was perturbed?"""
    perturbed_audio, perturbed_visual = audio.clone(), visual.clone()
    target = perturbed_audio if which == "audio" else perturbed_visual
    target[:, 0] += torch.linspace(0.5, 1.5, target[:, 0].numel(),
                                   dtype=target.dtype).reshape(target[:, 0].shape)
    with torch.no_grad():
        _, before = model(audio, visual, record=True)
        _, after = model(perturbed_audio, perturbed_visual, record=True)
    return {name: (before[name][0] != after[name][0]).flatten(2).any(dim=2).all(dim=0)
            for name in before}  # (T,) per layer: changed at this step for every sample


@pytest.mark.parametrize("fusion_layer", [1, 2, 3, 4])
def test_wiring_by_input_perturbation(fusion_layer):
    """Branches see only their modality; every state from the fusion layer on sees both."""
    model = model_for(fusion_layer)
    audio, visual = inputs(3)
    for which in ("audio", "visual"):
        changed = _changed_states(model, audio, visual, which)
        for name, steps in changed.items():
            stream = name.split(".")[0]
            if stream == "fused" or stream == which:
                assert steps.all(), f"{name} should depend on the {which} input at every step"
            else:
                assert not steps.any(), f"{name} must not depend on the {which} input"


@pytest.mark.parametrize("fusion_layer", [1, 2, 4])
def test_wiring_by_autograd(fusion_layer):
    """Gradients of each recorded state with respect to each input: zero exactly where the
    wiring says the state cannot see that input, non-zero everywhere else."""
    model = model_for(fusion_layer)
    audio, visual = inputs(4)
    audio.requires_grad_(True)
    visual.requires_grad_(True)
    logits, states = model(audio, visual, record=True)
    for name, (h, c) in states.items():
        stream = name.split(".")[0]
        for state in (h, c):
            grads = torch.autograd.grad(state[:, -1].sum(), (audio, visual),
                                        retain_graph=True, allow_unused=True)
            reaches = [grad is not None and bool(grad.abs().sum() > 0) for grad in grads]
            assert reaches == [stream in ("audio", "fused"), stream in ("visual", "fused")], name
    grad_audio, grad_visual = torch.autograd.grad(logits.sum(), (audio, visual))
    assert grad_audio.abs().sum() > 0 and grad_visual.abs().sum() > 0


def test_parameter_count_formula_matches_module():
    for layers in (1, 2, 4):
        for fusion_layer in range(1, layers + 2):
            for options in ({}, {"match_params": True}, {"branch_hidden": 3}):
                config = ModelConfig(layers=layers, hidden=6, kernel=3,
                                     fusion_layer=fusion_layer, **options)
                model = FusionConvLSTM(config)
                assert model.parameter_count() == parameter_count(config) == sum(
                    p.numel() for p in model.parameters())


def test_match_params_brings_counts_close_to_early_fusion():
    early = parameter_count(ModelConfig(layers=4, hidden=32, fusion_layer=1))
    for fusion_layer in (2, 3, 4, 5):
        plain = parameter_count(ModelConfig(layers=4, hidden=32, fusion_layer=fusion_layer))
        matched_config = ModelConfig(layers=4, hidden=32, fusion_layer=fusion_layer,
                                     match_params=True)
        matched = parameter_count(matched_config)
        assert plain > early
        assert abs(matched - early) / early < 0.08
        assert abs(matched - early) < abs(plain - early)
        assert matched_branch_width(matched_config) < 32


def test_late_string_means_layers_plus_one_and_round_trip():
    config = ModelConfig(layers=3, hidden=4, fusion_layer="late", readout="per_step")
    assert config.fusion_layer == 4 and config.late
    assert ModelConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize("options", [{"fusion_layer": 0}, {"fusion_layer": 5},
                                     {"fusion_layer": "early"}, {"fusion_layer": 1.5}])
def test_fusion_layer_out_of_range(options):
    with pytest.raises(ValueError, match=r"fusion layer must be 1\.\.4"):
        ModelConfig(layers=3, **options)


@pytest.mark.parametrize("field", ["layers", "hidden", "kernel", "classes", "in_channels"])
@pytest.mark.parametrize("value", [0, -1])
def test_non_positive_sizes(field, value):
    with pytest.raises(ValueError, match=field):
        ModelConfig(**{field: value})


def test_other_bad_configs():
    with pytest.raises(ValueError, match="odd"):
        ModelConfig(kernel=4)
    with pytest.raises(ValueError, match="readout"):
        ModelConfig(readout="mean")
    with pytest.raises(ValueError, match="branch_hidden"):
        ModelConfig(branch_hidden=0, fusion_layer=2)
    with pytest.raises(ValueError, match="not both"):
        ModelConfig(branch_hidden=4, match_params=True)
    with pytest.raises(ValueError, match="unknown model config field.*depth"):
        ModelConfig.from_dict({"depth": 3})
    model = FusionConvLSTM(ModelConfig())
    with pytest.raises(ValueError, match="same shape"):
        model(torch.zeros(1, 2, 1, 4, 4), torch.zeros(1, 3, 1, 4, 4))
