"""Small models of the kinds people record, built in the tests (no downloads), each with the
plain forward of its parts that a recording must equal: a CNN run frame by frame, an
nn.LSTM, a GRUCell/LSTMCell loop, and a two-input audio-visual transformer."""

from __future__ import annotations

import pandas as pd
import torch
from torch import nn

B, T = 5, 3  # stimuli per batch, time steps


class FrameCNN(nn.Module):
    """A small CNN applied to each frame of ``(B, T, 1, 6, 6)`` in a Python loop; the ReLU is
    in place, so a recorder that kept the convolution's output without copying would see it
    rectified."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(inplace=True),
                                  nn.Conv2d(3, 4, 3, padding=1))
        self.head = nn.Linear(4, 10)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        maps = [self.body(frames[:, t]) for t in range(frames.shape[1])]
        return self.head(maps[-1].mean(dim=(-2, -1)))


class LSTMNet(nn.Module):
    """nn.LSTM over ``(B, T, 5)``, batch first: time from its output."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(5, 7, batch_first=True)
        self.head = nn.Linear(7, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)
        return self.head(out[:, -1])


class CellLoop(nn.Module):
    """A GRUCell and an LSTMCell stepped in a Python loop over ``(B, T, 5)``: time from calls."""

    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRUCell(5, 6)
        self.lstm = nn.LSTMCell(6, 4)
        self.unused = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = None
        state = None
        for t in range(x.shape[1]):
            h = self.gru(x[:, t], h)
            state = self.lstm(h, state)
        return state[0]


class AVTransformer(nn.Module):
    """Audio ``(B, T, 4)`` and video ``(B, T, 1, 4, 4)`` embedded per step, summed, and read by
    a two-layer transformer encoder (batch first): time along axis 1 of every output."""

    def __init__(self) -> None:
        super().__init__()
        self.audio_embed = nn.Linear(4, 8)
        self.visual_embed = nn.Linear(16, 8)
        layer = nn.TransformerEncoderLayer(8, nhead=2, dim_feedforward=16, dropout=0.0,
                                           batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
        self.head = nn.Linear(8, 10)

    def forward(self, audio: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
        tokens = self.audio_embed(audio) + self.visual_embed(visual.flatten(2))
        return self.head(self.encoder(tokens)[:, -1])


def av_batches(n_batches: int = 2, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """Keyword batches for :class:`AVTransformer`."""
    generator = torch.Generator().manual_seed(seed)
    return [{"audio": torch.randn(B, T, 4, generator=generator),
             "visual": torch.rand(B, T, 1, 4, 4, generator=generator)}
            for _ in range(n_batches)]


def table(n: int, prefix: str = "s") -> pd.DataFrame:
    """A stimulus table of ``n`` rows: unique ids and a label."""
    return pd.DataFrame({"stimulus_id": [f"{prefix}{i}" for i in range(n)],
                         "label": [i % 3 for i in range(n)]})


def seeded(model_class: type[nn.Module], seed: int = 0) -> nn.Module:
    """``model_class()`` with weights from ``seed``, in eval mode."""
    torch.manual_seed(seed)
    return model_class().eval()


class LSTMWithHead(nn.Module):
    """nn.LSTM over ``(B, 4, 5)`` (time from axis 1), a module that halves time by averaging
    neighbouring steps, and a head called once: three time axes (4, 2 and 1 steps)."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(5, 7, batch_first=True)
        self.down = HalveTime()
        self.head = nn.Linear(7, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)
        return self.head(self.down(out)[:, -1])


class HalveTime(nn.Module):
    """``(B, T, D)`` -> ``(B, T // 2, D)``: the mean of each pair of steps."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], x.shape[1] // 2, 2, x.shape[2]).mean(dim=2)


class BasicBlock(nn.Module):
    """A ResNet basic block whose one ``relu`` module is called at two places per forward."""

    def __init__(self, channels: int = 3) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.conv1(x))
        return self.relu(self.conv2(out) + x)


class PerFrameResNet(nn.Module):
    """A ResNet-style CNN run on each frame of ``(B, T, 3, 6, 6)`` in a Python loop."""

    def __init__(self) -> None:
        super().__init__()
        self.block = BasicBlock()
        self.head = nn.Linear(3, 10)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        maps = [self.block(frames[:, t]) for t in range(frames.shape[1])]
        return self.head(maps[-1].mean(dim=(-2, -1)))


class FoldedCNN(nn.Module):
    """A per-frame CNN that sees time folded into the batch, ``(B*T, 1, 6, 6)`` (``time_major``
    False: batch-major, as ``flatten(0, 1)`` of ``(B, T, ...)``; True: time-major)."""

    def __init__(self, time_major: bool = False) -> None:
        super().__init__()
        self.time_major = time_major
        self.body = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(3, 10)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        batch, steps = frames.shape[:2]
        if self.time_major:
            folded = frames.transpose(0, 1).flatten(0, 1)
        else:
            folded = frames.flatten(0, 1)
        maps = self.body(folded)
        shape = (steps, batch) if self.time_major else (batch, steps)
        maps = maps.reshape(*shape, *maps.shape[1:])
        last = maps[-1] if self.time_major else maps[:, -1]
        return self.head(last.mean(dim=(-2, -1)))


class LabelledClips(torch.utils.data.Dataset):
    """A map-style Dataset whose items carry metadata beside the input ``x`` of
    :class:`LSTMNet`: ``{"x": (T, 5), "stimulus_id": "clip007", "label": int}``."""

    def __init__(self, n: int = 7, seed: int = 0) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, T, 5, generator=generator)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> dict:
        return {"x": self.x[index], "stimulus_id": f"clip{index:03d}", "label": index % 4}
