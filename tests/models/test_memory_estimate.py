"""The memory estimate of a training batch (``batch_bytes``) against a hand count and
against what torch really takes, and the architecture bounds that keep it cheap."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from paths import REPO_ROOT

from repsim.models.config import MAX_HIDDEN, MAX_LAYERS, ModelConfig, batch_bytes

# One training step in a fresh process; prints the growth of its peak resident memory.
STEP = """
import sys, torch, torch.nn.functional as F
from repsim.models.config import ModelConfig
from repsim.models.fusion import FusionConvLSTM, final_logits

def peak():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM"))

k, hidden, batch = (int(word) for word in sys.argv[1:])
before = peak()
model = FusionConvLSTM(ModelConfig(layers=2, hidden=hidden, fusion_layer=k))
optimizer = torch.optim.AdamW(model.parameters())
audio, visual = torch.randn(batch, 10, 1, 28, 28), torch.randn(batch, 10, 1, 28, 28)
loss = F.cross_entropy(final_logits(model(audio, visual)), torch.zeros(batch, dtype=torch.long))
loss.backward()
optimizer.step()
print(peak() - before)
"""


def test_the_estimate_counts_weights_and_maps_by_hand():
    model = ModelConfig(layers=1, hidden=8, fusion_layer=1)
    parameters = 4 * 8 * (2 + 8) * 9 + 4 * 8 + 8 * 10 + 10  # one ConvLSTM layer, readout
    maps = (2 + 12 * 8) + 2  # the layer's maps, then the two inputs
    assert batch_bytes(model, 16, 3, 5, 7) == 4 * (4 * parameters + 16 * maps * 3 * 5 * 7)


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux's /proc")
def test_the_estimate_is_within_a_factor_of_two_of_what_torch_takes():
    """Late fusion: two branches of two layers, so every term of the estimate counts."""
    fusion_layer, hidden, batch = 3, 16, 32
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", STEP, str(fusion_layer), str(hidden),
                           str(batch)], capture_output=True, text=True, cwd=REPO_ROOT,
                          env=env, timeout=120, check=True)
    measured = int(done.stdout)
    estimate = batch_bytes(ModelConfig(layers=2, hidden=hidden, fusion_layer=fusion_layer),
                           batch, 10, 28, 28)
    assert 0.5 < estimate / measured < 2, (estimate, measured)


@pytest.mark.parametrize(("field", "value"), [("layers", MAX_LAYERS + 1),
                                              ("hidden", MAX_HIDDEN + 1),
                                              ("kernel", 33), ("branch_hidden", 10**8)])
def test_sizes_beyond_the_bounds_are_one_line(field, value):
    with pytest.raises(ValueError, match=f"model {field} must be at most"):
        ModelConfig(**{field: value})
