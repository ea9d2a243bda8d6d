"""ConvLSTM layer: equations against a float64 reference written out here, shapes, bad sizes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from repsim.models.convlstm import ConvLSTM, _CpuRecurrence


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


def _outputs_and_grads(layer: ConvLSTM, x: torch.Tensor, return_cells: bool):
    """Forward, a fixed random loss on h (and c), and the gradients of input and weights."""
    x = x.clone().requires_grad_(True)
    layer.zero_grad()
    h_seq, c_seq = layer(x, return_cells=return_cells)
    generator = torch.Generator().manual_seed(5)
    loss = (h_seq * torch.randn(h_seq.shape, generator=generator, dtype=h_seq.dtype)).sum()
    if return_cells:
        loss = loss + (c_seq * torch.randn(c_seq.shape, generator=generator,
                                           dtype=c_seq.dtype)).sum()
    loss.backward()
    grads = [x.grad] + [p.grad for p in layer.parameters()]
    return h_seq.detach(), grads


@pytest.mark.parametrize("return_cells", [True, False])
def test_cpu_recurrence_matches_autograd_loop_and_reference(monkeypatch, return_cells):
    """The hand-written backward through time gives autograd's gradients (float64)."""
    torch.manual_seed(3)
    layer = ConvLSTM(2, 3).double()
    x = torch.randn(2, 5, 2, 6, 5, dtype=torch.float64)
    h_fast, grads_fast = _outputs_and_grads(layer, x, return_cells)
    h_ref, _ = reference_convlstm(layer, x)
    torch.testing.assert_close(h_fast, h_ref, rtol=0, atol=1e-12)
    # the plain autograd loop is what runs on CUDA and under torch.compile
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    h_plain, grads_plain = _outputs_and_grads(layer, x, return_cells)
    torch.testing.assert_close(h_fast, h_plain, rtol=0, atol=1e-12)
    for fast, plain in zip(grads_fast, grads_plain, strict=True):
        torch.testing.assert_close(fast, plain, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("groups", [1, 3])
def test_cpu_recurrence_gradcheck(groups):
    """Finite differences against the hand-written backward, including a one-step sequence,
    for one layer and for three stacked as groups."""
    torch.manual_seed(4)
    for steps in (1, 3):
        x_gates = torch.randn(steps, 1, groups * 8, 3, 3, dtype=torch.float64,
                              requires_grad=True)  # small: finite differences per entry
        weight = torch.randn(groups * 8, 2, 3, 3, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(lambda g, w: _CpuRecurrence.apply(g, w, True, groups),
                                        (x_gates, weight))


def test_bf16_autocast_on_the_cpu_keeps_float32_weight_gradients():
    torch.manual_seed(6)
    layer = ConvLSTM(1, 4)
    x = torch.randn(2, 4, 1, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h_seq, _ = layer(x)
    assert h_seq.dtype == torch.bfloat16
    h_seq.float().sum().backward()
    assert all(p.grad.dtype == torch.float32 and torch.isfinite(p.grad).all()
               for p in layer.parameters())
    h_ref, _ = reference_convlstm(layer, x)
    torch.testing.assert_close(h_seq.double(), h_ref, rtol=0, atol=0.05)


def test_inference_without_grad_matches_training_forward():
    torch.manual_seed(7)
    layer = ConvLSTM(2, 3)
    x = torch.randn(3, 4, 2, 5, 5)
    h_train, c_train = layer(x)
    with torch.no_grad():
        h_eval, c_eval = layer(x)
    assert torch.equal(h_train, h_eval) and torch.equal(c_train, c_eval)


# torch's own inductor imports still use torch.jit.script_method
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
def test_torch_compile_runs_the_autograd_loop_and_matches_eager():
    """`--compile` traces the plain loop (inductor, C++ on the CPU); same numbers as eager."""
    from repsim.models.fusion import FusionConvLSTM, ModelConfig

    torch.manual_seed(8)
    model = FusionConvLSTM(ModelConfig(layers=1, hidden=3, fusion_layer=2))
    audio, visual = torch.randn(2, 3, 1, 6, 6), torch.randn(2, 3, 1, 6, 6)
    compiled = torch.compile(model)
    logits = compiled(audio, visual)
    logits.sum().backward()
    compiled_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    eager = model(audio, visual)
    eager.sum().backward()
    torch.testing.assert_close(logits, eager, rtol=1e-5, atol=1e-6)
    for compiled_grad, p in zip(compiled_grads, model.parameters(), strict=True):
        torch.testing.assert_close(compiled_grad, p.grad, rtol=1e-5, atol=1e-6)
