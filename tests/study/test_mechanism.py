"""The fusion operator's output as a recordable layer (``join.<k>``): the module call that a
hook on ``join`` sees is the operator's output, for every operator and fusion layer, in a
recording forward too; and it is recorded only on request."""

import pytest
import torch
import torch.nn.functional as F

from repsim.models.fusion import FusionConvLSTM, ModelConfig, join_name


def written_out(model: FusionConvLSTM, a: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The operator's output from its weights, written out (docs/fusion_ops.md)."""
    op = model.config.fusion_op

    def conv(module, x):  # a 1 x 1 convolution at every step and position
        weight = module.weight[:, :, 0, 0]
        return torch.einsum("oc,btchw->btohw", weight, x) + module.bias[:, None, None]

    if op == "concat":
        return torch.cat([a, v], dim=2)
    join = model.join
    if op == "gated":
        h_a, h_v = torch.tanh(conv(join.audio_transform, a)), torch.tanh(
            conv(join.visual_transform, v))
        z = torch.sigmoid(conv(join.gate.conv, torch.cat([a, v], dim=2)))
        return z * h_a + (1 - z) * h_v
    scale_a, shift_a = conv(join.from_visual, v).chunk(2, dim=2)
    scale_v, shift_v = conv(join.from_audio, a).chunk(2, dim=2)
    return torch.cat([(1 + scale_a) * a + shift_a, (1 + scale_v) * v + shift_v], dim=2)


@pytest.mark.parametrize("op", ["concat", "gated", "film"])
@pytest.mark.parametrize("k", [1, 2, 3])
def test_the_join_module_call_is_the_operator_output_in_a_recording_forward(op, k):
    torch.manual_seed(0)
    model = FusionConvLSTM(ModelConfig(layers=2, hidden=4, fusion_layer=k, fusion_op=op)).eval()
    audio, visual = torch.randn(3, 4, 1, 5, 5), torch.randn(3, 4, 1, 5, 5)
    seen = []
    model.join.register_forward_hook(lambda module, args, output: seen.append(output))
    with torch.no_grad():
        _, states = model(audio, visual, record=True)
        a, v = (audio, visual) if k == 1 else (states[f"audio.{k - 1}"][0],
                                                states[f"visual.{k - 1}"][0])
        expected = written_out(model, a, v)
    output = seen[0][0] if isinstance(seen[0], tuple) else seen[0]  # gated: (out, z)
    torch.testing.assert_close(output, expected, rtol=1e-5, atol=1e-6)
    if k <= 2:  # what the first fused layer reads is that output
        with torch.no_grad():
            first, _ = model.fused[0](expected)
        torch.testing.assert_close(states[f"fused.{k}"][0], first, rtol=1e-5, atol=1e-6)
    name = join_name(k)
    assert name not in model.layer_names and name in model.recordable_layer_names
    assert [layer.name for layer in model.recorded_layers(layers=[name])] == [name]
    assert name not in [layer.name for layer in model.recorded_layers()]


def test_late_concat_join_is_the_two_branch_states_side_by_side():
    """What the readout reads at late fusion by concatenation: [audio.L; visual.L] (so the
    readout's spatial mean over it is the two branch means)."""
    torch.manual_seed(1)
    model = FusionConvLSTM(ModelConfig(layers=1, hidden=3, fusion_layer=2)).eval()
    audio, visual = torch.randn(2, 3, 1, 4, 4), torch.randn(2, 3, 1, 4, 4)
    seen = []
    model.join.register_forward_hook(lambda module, args, output: seen.append(output))
    with torch.no_grad():
        logits, states = model(audio, visual, record=True)
    joined = seen[0]
    assert torch.equal(joined, torch.cat([states["audio.1"][0], states["visual.1"][0]], 2))
    torch.testing.assert_close(logits, F.linear(joined[:, -1].mean(dim=(-2, -1)),
                                                model.readout.weight, model.readout.bias))
