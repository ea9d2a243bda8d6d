"""A convolutional LSTM layer that runs over a whole sequence.

Standard ConvLSTM equations (Shi et al., 2015, without peephole connections): one
convolution over ``[x_t, h_{t-1}]`` makes all four gates, ``i, f, o = sigmoid(...)``,
``g = tanh(...)``, ``c_t = f * c_{t-1} + i * g``, ``h_t = o * tanh(c_t)``.

The convolution over the concatenation is the sum of a convolution over ``x_t`` and one over
``h_{t-1}``. The input half does not depend on the recurrence, so it runs for all T steps in
one batched call; only the recurrent half (``4C`` output channels in one call) loops over time.
"""

from __future__ import annotations

import torch
from torch import nn


class ConvLSTM(nn.Module):
    """ConvLSTM layer: ``(B, T, Cin, H, W)`` -> hidden and cell states ``(B, T, C, H, W)``.

    Gates are stacked along channels in the order ``i, f, o, g``. The bias lives in the
    input convolution (forget-gate bias starts at 1). States start at zero.
    ``padding = kernel // 2`` keeps H x W.
    """

    def __init__(self, in_channels: int, hidden: int, kernel: int = 3) -> None:
        super().__init__()
        for name, value in (("in_channels", in_channels), ("hidden", hidden),
                            ("kernel", kernel)):
            if value <= 0:
                raise ValueError(f"ConvLSTM {name} must be positive, got {value}")
        if kernel % 2 == 0:
            raise ValueError(f"ConvLSTM kernel must be odd to keep the frame size, got {kernel}")
        self.in_channels, self.hidden, self.kernel = in_channels, hidden, kernel
        self.input_conv = nn.Conv2d(in_channels, 4 * hidden, kernel, padding=kernel // 2)
        self.hidden_conv = nn.Conv2d(hidden, 4 * hidden, kernel, padding=kernel // 2, bias=False)
        with torch.no_grad():  # forget-gate bias 1: remember by default (Jozefowicz et al. 2015)
            self.input_conv.bias[hidden: 2 * hidden].fill_(1.0)

    def forward(self, x: torch.Tensor, return_cells: bool = True
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Run the sequence; return ``(h_seq, c_seq)``, ``c_seq`` None if not ``return_cells``.

        Skipping the cell sequence saves one stacked copy per layer when nobody reads it.
        """
        if x.dim() != 5 or x.shape[2] != self.in_channels:
            raise ValueError(f"ConvLSTM expects (B, T, {self.in_channels}, H, W) input, "
                             f"got {tuple(x.shape)}")
        batch, steps, _, height, width = x.shape
        hidden = self.hidden
        # Input half of the gate convolution for every step at once.
        x_gates = self.input_conv(x.reshape(batch * steps, *x.shape[2:]))
        x_gates = x_gates.reshape(batch, steps, 4 * hidden, height, width)
        h_list: list[torch.Tensor] = []
        c_list: list[torch.Tensor] = []
        h = c = None
        # unbind/split (not indexing): their backward assembles one gradient, instead of a
        # full-size zero tensor per step.
        for x_t in x_gates.unbind(dim=1):
            # At t = 0 the previous state is zero, so the recurrent half contributes nothing.
            gates = x_t if h is None else x_t + self.hidden_conv(h)
            sig, g = gates.split([3 * hidden, hidden], dim=1)
            i, f, o = torch.sigmoid(sig).chunk(3, dim=1)
            g = torch.tanh(g)
            c = i * g if c is None else torch.addcmul(i * g, f, c)
            h = o * torch.tanh(c)
            h_list.append(h)
            if return_cells:
                c_list.append(c)
        h_seq = torch.stack(h_list, dim=1)
        c_seq = torch.stack(c_list, dim=1) if return_cells else None
        return h_seq, c_seq
