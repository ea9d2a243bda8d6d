"""ConvLSTM layer: equations against a float64 reference written out here, shapes, bad sizes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from repsim.models.convlstm import ConvLSTM


def reference_convlstm(layer: ConvLSTM, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Textbook ConvLSTM in float64: one conv over the concatenation [x_t, h_{t-1}] per step."""
    weight = torch.cat([layer.input_conv.weight, layer.hidden_conv.weight], dim=1).double()
    bias = layer.input_conv.bias.double()
    batch, steps, _, height, width = x.shape
    hidden = layer.hidden
    h = torch.zeros(batch, hidden, height, width, dtype=torch.float64)
    c = torch.zeros_like(h)
    hs, cs = [], []
    for t in range(steps):
        z = F.conv2d(torch.cat([x[:, t].double(), h], dim=1), weight, bias,
                     padding=layer.kernel // 2)
        zi, zf, zo, zg = z.split(hidden, dim=1)
        c = torch.sigmoid(zf) * c + torch.sigmoid(zi) * torch.tanh(zg)
        h = torch.sigmoid(zo) * torch.tanh(c)
        hs.append(h)
        cs.append(c)
    return torch.stack(hs, dim=1), torch.stack(cs, dim=1)


@pytest.mark.parametrize("kernel", [1, 3, 5])
def test_matches_float64_reference(kernel):
    torch.manual_seed(0)
    layer = ConvLSTM(3, 5, kernel).double()
    x = torch.randn(2, 4, 3, 6, 7, dtype=torch.float64)
    h_seq, c_seq = layer(x)
    h_ref, c_ref = reference_convlstm(layer, x)
    assert h_seq.shape == c_seq.shape == (2, 4, 5, 6, 7)
    torch.testing.assert_close(h_seq, h_ref, rtol=0, atol=1e-12)
    torch.testing.assert_close(c_seq, c_ref, rtol=0, atol=1e-12)


def test_float32_close_to_reference_and_cells_optional():
    torch.manual_seed(1)
    layer = ConvLSTM(1, 4)
    x = torch.randn(3, 5, 1, 8, 8)
    h_seq, c_seq = layer(x)
    h_only, none = layer(x, return_cells=False)
    assert none is None
    assert torch.equal(h_only, h_seq)
    h_ref, c_ref = reference_convlstm(layer, x)
    torch.testing.assert_close(h_seq.double(), h_ref, rtol=0, atol=1e-5)
    torch.testing.assert_close(c_seq.double(), c_ref, rtol=0, atol=1e-5)


def test_forget_gate_bias_starts_at_one():
    layer = ConvLSTM(2, 3)
    bias = layer.input_conv.bias.detach()
    assert torch.equal(bias[3:6], torch.ones(3))
    assert layer.hidden_conv.bias is None


def test_state_is_causal():
    """Changing the input at step t changes no state before t."""
    torch.manual_seed(2)
    layer = ConvLSTM(1, 3)
    x = torch.randn(2, 6, 1, 5, 5)
    changed = x.clone()
    changed[:, 3] += 1.0
    h1, _ = layer(x)
    h2, _ = layer(changed)
    assert torch.equal(h1[:, :3], h2[:, :3])
    assert not torch.allclose(h1[:, 3:], h2[:, 3:])


@pytest.mark.parametrize(("args", "word"), [((0, 4), "in_channels"), ((1, 0), "hidden"),
                                            ((1, -2), "hidden"), ((1, 4, 0), "kernel"),
                                            ((1, 4, 2), "odd")])
def test_bad_sizes_raise(args, word):
    with pytest.raises(ValueError, match=word):
        ConvLSTM(*args)


def test_wrong_input_shape_raises():
    layer = ConvLSTM(2, 3)
    with pytest.raises(ValueError, match=r"\(B, T, 2, H, W\)"):
        layer(torch.zeros(1, 4, 1, 5, 5))
    with pytest.raises(ValueError, match="ConvLSTM expects"):
        layer(torch.zeros(4, 2, 5, 5))
