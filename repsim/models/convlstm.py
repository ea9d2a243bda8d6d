"""A convolutional LSTM layer that runs over a whole sequence.

Standard ConvLSTM equations (Shi et al., 2015, without peephole connections): one
convolution over ``[x_t, h_{t-1}]`` makes all four gates, ``i, f, o = sigmoid(...)``,
``g = tanh(...)``, ``c_t = f * c_{t-1} + i * g``, ``h_t = o * tanh(c_t)``.

The convolution over the concatenation is the sum of a convolution over ``x_t`` and one over
``h_{t-1}``. The input half does not depend on the recurrence, so it runs for all T steps in
one batched call; only the recurrent half (``4C`` output channels in one call) loops over time.

On the CPU the recurrence is a hand-written autograd function (``_CpuRecurrence``):
eager autograd spends a quarter of a CPU training step outside the convolutions, copying
gradients between gate slices and per-step tensors. The function writes every step into
preallocated time-major buffers, back-propagates through time with the gate derivatives
written in place, and computes the recurrent weight gradient in one call over all steps.
On CUDA and under ``torch.compile`` the plain autograd loop runs (cuDNN and inductor handle
it well); both paths compute the same function and gradients (tested).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn import grad as conv_grad


class ConvLSTM(nn.Module):
    """ConvLSTM layer: ``(B, T, Cin, H, W)`` -> hidden and cell states ``(B, T, C, H, W)``.

    Gates are stacked along channels in the order ``i, f, o, g``. The bias lives in the
    input convolution (forget-gate bias starts at 1). States start at zero.
    Returned sequences may be views of time-major storage (not contiguous).

    Parameters
    ----------
    in_channels
        Cin, the input channels (each group's).
    hidden
        C, the channels of the hidden and cell states (each group's).
    kernel
        The kernel size of both convolutions; odd, and ``padding = kernel // 2`` keeps H x W.
    groups
        How many independent layers of this shape run as one; more than one are the seeds of
        a stacked network (``repsim.models.stacked``): grouped convolutions, inputs
        ``(B, T, groups * Cin, H, W)`` and states ``(B, T, groups * C, H, W)``, group by
        group. Group ``s``'s parameters are the rows ``s`` of each parameter split into
        ``groups`` along its first axis.

    Raises
    ------
    ValueError
        For a size that is not positive, or an even kernel.
    """

    def __init__(self, in_channels: int, hidden: int, kernel: int = 3, groups: int = 1) -> None:
        super().__init__()
        for name, value in (("in_channels", in_channels), ("hidden", hidden),
                            ("kernel", kernel), ("groups", groups)):
            if value <= 0:
                raise ValueError(f"ConvLSTM {name} must be positive, got {value}")
        if kernel % 2 == 0:
            raise ValueError(f"ConvLSTM kernel must be odd to keep the frame size, got {kernel}")
        self.in_channels, self.hidden, self.kernel, self.groups = (in_channels, hidden, kernel,
                                                                   groups)
        self.input_conv = nn.Conv2d(groups * in_channels, groups * 4 * hidden, kernel,
                                    padding=kernel // 2, groups=groups)
        self.hidden_conv = nn.Conv2d(groups * hidden, groups * 4 * hidden, kernel,
                                     padding=kernel // 2, bias=False, groups=groups)
        bias = self.input_conv.bias
        assert bias is not None  # nn.Conv2d has a bias unless bias=False
        with torch.no_grad():  # forget-gate bias 1: remember by default (Jozefowicz et al. 2015)
            bias.view(groups, 4, hidden)[:, 1].fill_(1.0)

    def forward(self, x: torch.Tensor, return_cells: bool = True
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Run the sequence.

        Parameters
        ----------
        x
            The inputs ``(B, T, groups * Cin, H, W)``.
        return_cells
            Whether to return the cell states too.

        Returns
        -------
        tuple
            ``(h_seq, c_seq)``, each ``(B, T, groups * C, H, W)``; ``c_seq`` None if not
            ``return_cells``.

        Raises
        ------
        ValueError
            For an input of another shape.
        """
        channels = self.groups * self.in_channels
        if x.dim() != 5 or x.shape[2] != channels:
            raise ValueError(f"ConvLSTM expects (B, T, {channels}, H, W) input, "
                             f"got {tuple(x.shape)}")
        batch, steps, _, height, width = x.shape
        # Input half of the gate convolution for every step at once, rows in time-major
        # order so that each step's slice is contiguous.
        frames = x.transpose(0, 1).reshape(steps * batch, *x.shape[2:])
        x_gates = self.input_conv(frames).view(steps, batch, self.groups * 4 * self.hidden,
                                               height, width)
        if x.device.type == "cpu" and not torch.compiler.is_compiling():
            weight = self.hidden_conv.weight
            keep = torch.is_grad_enabled() and (x_gates.requires_grad or weight.requires_grad)
            h_seq, c_seq = _CpuRecurrence.apply(x_gates, weight, keep, self.groups)
        else:
            h_seq, c_seq = self._autograd_recurrence(x_gates, return_cells)
        return h_seq.transpose(0, 1), c_seq.transpose(0, 1) if return_cells else None

    def _autograd_recurrence(self, x_gates: torch.Tensor, return_cells: bool
                             ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The time loop in plain autograd ops: time-major ``(T, B, C, H, W)`` h and c."""
        hidden, groups = self.hidden, self.groups
        _, batch, _, height, width = x_gates.shape
        h_list: list[torch.Tensor] = []
        c_list: list[torch.Tensor] = []
        h = c = None
        # unbind/split (not indexing): their backward assembles one gradient, instead of a
        # full-size zero tensor per step.
        for x_t in x_gates.unbind(dim=0):
            # At t = 0 the previous state is zero, so the recurrent half contributes nothing.
            gates = x_t if h is None else x_t + self.hidden_conv(h)
            sig, g = gates.view(batch, groups, 4 * hidden, height, width).split(
                [3 * hidden, hidden], dim=2)
            i, f, o = torch.sigmoid(sig).chunk(3, dim=2)
            g = torch.tanh(g)
            c = i * g if c is None else torch.addcmul(i * g, f, c)
            h = (o * torch.tanh(c)).view(batch, groups * hidden, height, width)
            h_list.append(h)
            if return_cells:
                c_list.append(c.view(batch, groups * hidden, height, width))
        return torch.stack(h_list), torch.stack(c_list) if return_cells else None


def _tanh_into(x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``out = tanh(x)`` as ``2 sigmoid(2x) - 1``: torch's CPU tanh kernel is several times
    slower than its sigmoid, and four cheap passes beat it (absolute error ~1e-7 in float32)."""
    torch.mul(x, 2.0, out=out)
    return out.sigmoid_().mul_(2.0).sub_(1.0)


class _CpuRecurrence(torch.autograd.Function):
    """The ConvLSTM time loop with back-propagation through time written out.

    ``forward(x_gates (T, B, G 4C, H, W), weight (G 4C, C, k, k), keep, groups G)`` returns
    time-major ``h_seq, c_seq`` ``(T, B, G C, H, W)``; ``keep`` says whether a backward will
    follow, so that inference does not store every step's gates. Each group's gates are
    ``i, f, o, g`` in turn (a stacked network's seeds: ``ConvLSTM``'s ``groups``); every
    step works on ``(B, G, C, H, W)`` views, the same operations for one group as for many.
    All tensors have ``x_gates``'s dtype (bf16 under autocast, as in the autograd loop); the
    weight gradient has the weight's. Not twice-differentiable.
    """

    @staticmethod
    def forward(ctx, x_gates: torch.Tensor, weight: torch.Tensor, keep: bool, groups: int):
        steps, batch, gate_channels, height, width = x_gates.shape
        hidden = gate_channels // (4 * groups)
        padding = weight.shape[-1] // 2
        w = weight.to(x_gates.dtype)
        # Activated gates and tanh(c) are kept for every step only when a backward will
        # need them; otherwise one step's worth is reused.
        kept = steps if keep else 1
        gates = x_gates.new_empty(kept, batch, gate_channels, height, width)
        tanh_c = x_gates.new_empty(kept, batch, groups * hidden, height, width)
        h_seq = x_gates.new_empty(steps, batch, groups * hidden, height, width)
        c_seq = torch.empty_like(h_seq)
        grouped = (batch, groups, 4 * hidden, height, width)
        state = (batch, groups, hidden, height, width)
        for t in range(steps):
            k = t if keep else 0
            if t == 0:  # zero initial state: the recurrent half contributes nothing
                pre = x_gates[0]
            else:
                pre = F.conv2d(h_seq[t - 1], w, padding=padding, groups=groups).add_(x_gates[t])
            pre, act = pre.view(grouped), gates[k].view(grouped)
            torch.sigmoid(pre[:, :, : 3 * hidden], out=act[:, :, : 3 * hidden])
            _tanh_into(pre[:, :, 3 * hidden:], act[:, :, 3 * hidden:])
            i, f, o, g = act.chunk(4, dim=2)
            c = c_seq[t].view(state)
            torch.mul(i, g, out=c)
            if t > 0:
                c.addcmul_(f, c_seq[t - 1].view(state))
            torch.mul(o, _tanh_into(c, tanh_c[k].view(state)), out=h_seq[t].view(state))
        if keep:
            ctx.save_for_backward(gates, tanh_c, h_seq, c_seq, w)
            ctx.weight_dtype, ctx.padding, ctx.groups = weight.dtype, padding, groups
        ctx.set_materialize_grads(False)
        return h_seq, c_seq

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_h: torch.Tensor | None, grad_c: torch.Tensor | None):
        gates, tanh_c, h_seq, c_seq, w = ctx.saved_tensors
        groups, padding = ctx.groups, ctx.padding
        steps, batch, gate_channels, height, width = gates.shape
        hidden = gate_channels // (4 * groups)
        grouped = (batch, groups, 4 * hidden, height, width)
        state = (batch, groups, hidden, height, width)
        grad_gates = torch.empty_like(gates)
        dh_carry = dc_carry = None  # gradients reaching step t from step t + 1
        # aten's fused derivative kernels, in place: sigmoid_backward(d, s) = d s (1 - s),
        # tanh_backward(d, y) = d (1 - y^2).
        sigmoid_backward = torch.ops.aten.sigmoid_backward.grad_input
        tanh_backward = torch.ops.aten.tanh_backward.grad_input
        for t in reversed(range(steps)):
            step_gates, step_grads = gates[t].view(grouped), grad_gates[t].view(grouped)
            i, f, o, g = step_gates.chunk(4, dim=2)
            di, df, do, dg = step_grads.chunk(4, dim=2)
            tanh_t = tanh_c[t].view(state)
            dh = None if grad_h is None else grad_h[t].view(state)
            if dh_carry is not None:  # a fresh tensor, free to add into
                dh = dh_carry if dh is None else dh_carry.add_(dh)
            if dh is None:
                dh = torch.zeros_like(tanh_t)
            # through h = o * tanh(c)
            torch.mul(dh, tanh_t, out=do)
            dc = dh * o
            tanh_backward(dc, tanh_t, grad_input=dc)
            for d in (None if grad_c is None else grad_c[t].view(state), dc_carry):
                if d is not None:
                    dc.add_(d)
            # through c = f * c_prev + i * g, then the gate nonlinearities
            torch.mul(dc, g, out=di)
            if t > 0:
                torch.mul(dc, c_seq[t - 1].view(state), out=df)
            else:
                df.zero_()
            sig_grad = step_grads[:, :, : 3 * hidden]  # i, f, o
            sigmoid_backward(sig_grad, step_gates[:, :, : 3 * hidden], grad_input=sig_grad)
            tanh_backward(dc * i, g, grad_input=dg)
            if t > 0:
                dc_carry = dc.mul_(f)
                dh_carry = conv_grad.conv2d_input(h_seq[t - 1].shape, w, grad_gates[t],
                                                  padding=padding, groups=groups).view(state)
        grad_weight = None
        if ctx.needs_input_grad[1] and steps > 1:
            # One weight-gradient call over all steps: h_{t-1} against the gate gradient of t.
            grad_weight = conv_grad.conv2d_weight(
                h_seq[:-1].flatten(0, 1), w.shape, grad_gates[1:].flatten(0, 1),
                padding=padding, groups=groups).to(ctx.weight_dtype)
        elif ctx.needs_input_grad[1]:
            grad_weight = torch.zeros(w.shape, dtype=ctx.weight_dtype, device=w.device)
        return grad_gates, grad_weight, None, None
