"""Look inside your own network: record a two-input model per time step with repsim.record,
ask with CKA how much white noise on the audio (0 dB) changes each layer, and decode your own
table's column (``label``) from every layer and step.

    python examples/record_your_model.py [OUTPUT_DIR]     (default: the current directory)
"""

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

import repsim
from repsim import activations, plotting
from repsim.analysis import cka
from repsim.figures import probes_by_layer


class AVNet(nn.Module):  # audio (B, T, 16) and video frames (B, T, 1, 8, 8) -> 4 classes
    def __init__(self):
        super().__init__()
        self.audio = nn.Linear(16, 32)
        self.visual = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Flatten(),
                                    nn.Linear(512, 32))
        self.fusion = nn.GRU(64, 32, batch_first=True)
        self.head = nn.Linear(32, 4)

    def forward(self, audio, visual):
        frames = torch.stack([self.visual(visual[:, t]) for t in range(visual.shape[1])], 1)
        return self.head(self.fusion(torch.cat([self.audio(audio), frames], -1))[0][:, -1])


out = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
torch.manual_seed(0)
labels = torch.arange(96) % 4  # 96 stimuli of 4 classes, 6 time steps
audio = torch.randn(4, 1, 16)[labels] + 0.5 * torch.randn(96, 6, 16)
visual = torch.rand(4, 1, 1, 8, 8)[labels] + 0.3 * torch.rand(96, 6, 1, 8, 8)
batches = [{"audio": audio[i:i + 32], "visual": visual[i:i + 32]} for i in range(0, 96, 32)]
table = pd.DataFrame({"stimulus_id": [f"s{i}" for i in range(96)], "label": labels.numpy()})
repsim.record(AVNet().eval(), batches, ["audio", "visual.3", "fusion"], out / "avnet.h5",
              table=table, time_dim={"audio": 1, "fusion": 1},
              conditions=["clean", "audio_snr0"], overwrite=True)

ds = activations.open(out / "avnet.h5")
layers, steps = activations.layer_names(ds), ds.sizes["time"]
similarity = np.array([[cka(*(activations.flatten(activations.select(ds, layer, time=t,
                                                                     condition=condition))
                              for condition in ("clean", "audio_snr0")))
                        for t in range(steps)] for layer in layers])
with plotting.theme():
    fig, axes = plotting.new_figure(panel_size=(6.0, 2.6))
    plotting.heatmap(axes[0, 0], similarity, row_labels=layers,
                     col_labels=[str(t + 1) for t in range(steps)], cbar_label="linear CKA")
    axes[0, 0].set(xlabel="time step", title="CKA between clean and 0 dB audio noise")
    plotting.save_figure(fig, out, "record_your_model")
print(f"CKA of the fusion layer, clean vs 0 dB audio noise, last step: {similarity[-1, -1]:.3f}")

# your own question of your own file: how well does each layer give away the label?
probes_by_layer.run([out / "avnet.h5"], target=["label"], condition="clean", out_dir=out)
decoded = pd.read_csv(out / "probes_by_layer.csv", comment="#")
fusion = decoded[(decoded["layer"] == "fusion")]["accuracy"]
print(f"label decoded from the fusion layer: {fusion.min():.2f} to {fusion.max():.2f}")
