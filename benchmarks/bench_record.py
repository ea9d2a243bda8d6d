"""repsim.record's cost: time against a plain forward, peak memory for N and 4N stimuli, and
torchlens on the same model and layers when it is installed, for two models of a user's kind.

- ``gru``: a recurrent audio-visual network: a small CNN run on every video frame (32 x 32)
  in a Python loop, a linear audio embedding, and a GRU over the summed streams. 4 layers are
  recorded: the CNN's second convolution (32 x 16 x 16 maps) and its linear output, and the
  audio embedding, one step per call; the GRU along its time axis (about 0.3 MiB per
  stimulus).
- ``transformer``: a transformer encoder over audio frames with a per-frame CNN: the CNN runs
  on every video frame at once (the frames folded into the batch), its output is added to a
  linear embedding of the audio frames, and a two-layer transformer encoder reads the sum. 5
  layers are recorded: the CNN's second convolution and its linear output (``fold_time``),
  the audio embedding and both encoder layers (time along axis 1).

1. Time. The same batches go through a plain ``torch.no_grad()`` forward and through
   ``repsim.record`` (hooks, copies and the file written included), alternating, several
   rounds; the ratio of medians is printed (target <= 1.2x), with the part of it that is per
   file (from one batch), the floor a raw write of the same bytes sets, and the time with the
   states' chunk writes skipped (what overlapping the writes with the forward could at best
   reach).
2. Peak memory. Each size runs in a fresh subprocess that makes its inputs batch by batch and
   records them; peak RSS (``resource.getrusage``) for 4N stimuli over N (target <= 1.1x).
3. torchlens (``pip install torchlens``): ``torchlens.trace`` on the same batches, saving the
   same modules; its time over the plain forward's.

Timings depend on the machine and its load: take them on a quiet one.

    OMP_NUM_THREADS=2 python benchmarks/bench_record.py
    python benchmarks/bench_record.py --model transformer --stimuli 256 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

import numpy as np
import pandas as pd
import torch
from torch import nn

import repsim
from repsim.activations.writer import ActivationWriter

T, SIDE, BATCH, MELS = 8, 32, 32, 40


def frame_cnn() -> nn.Sequential:
    """The per-frame CNN both models share: one 32 x 32 frame to 64 features."""
    return nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(32, 32, 3, padding=1, stride=2), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(512, 64))


class FrameGRU(nn.Module):
    """A CNN per video frame and a linear audio embedding, summed, into a GRU."""

    def __init__(self) -> None:
        super().__init__()
        self.frame = frame_cnn()
        self.audio_embed = nn.Linear(MELS, 64)
        self.gru = nn.GRU(64, 64, batch_first=True)
        self.head = nn.Linear(64, 10)

    def forward(self, audio: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
        steps = [self.frame(visual[:, t]) + self.audio_embed(audio[:, t])
                 for t in range(visual.shape[1])]
        return self.head(self.gru(torch.stack(steps, 1))[0][:, -1])


class FrameTransformer(nn.Module):
    """A per-frame CNN (the frames folded into the batch) plus a linear embedding of the audio
    frames, read by a two-layer transformer encoder (batch first)."""

    def __init__(self) -> None:
        super().__init__()
        self.frame = frame_cnn()
        self.audio_embed = nn.Linear(MELS, 64)
        layer = nn.TransformerEncoderLayer(64, nhead=4, dim_feedforward=128, dropout=0.0,
                                           batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
        self.head = nn.Linear(64, 10)

    def forward(self, audio: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
        batch, steps = visual.shape[:2]
        frames = self.frame(visual.flatten(0, 1)).view(batch, steps, -1)
        return self.head(self.encoder(frames + self.audio_embed(audio))[:, -1])


@dataclass(frozen=True)
class Bench:
    """A model and what is recorded of it."""

    make: Callable[[], nn.Module]
    layers: list[str]
    options: dict = field(default_factory=dict)


MODELS = {
    "gru": Bench(FrameGRU, ["frame.2", "frame.6", "audio_embed", "gru"],
                 {"time_dim": {"gru": 1}}),
    "transformer": Bench(FrameTransformer, ["frame.2", "frame.6", "audio_embed",
                                            "encoder.layers.0", "encoder.layers.1"],
                         {"fold_time": {"frame.*": True}, "time_dim": {"audio_embed": 1,
                                                                       "encoder.layers.*": 1}}),
}


def model(name: str) -> nn.Module:
    torch.manual_seed(0)
    return MODELS[name].make().eval()


def batches(stimuli: int, seed: int = 0) -> Iterator[dict[str, torch.Tensor]]:
    """Inputs made batch by batch (never all held at once), the same for a seed."""
    generator = torch.Generator().manual_seed(seed)
    for start in range(0, stimuli, BATCH):
        count = min(BATCH, stimuli - start)
        yield {"audio": torch.randn(count, T, MELS, generator=generator),
               "visual": torch.rand(count, T, 1, SIDE, SIDE, generator=generator)}


def table(stimuli: int) -> pd.DataFrame:
    return pd.DataFrame({"stimulus_id": [f"s{i}" for i in range(stimuli)]})


def plain_seconds(net: nn.Module, inputs: list[dict]) -> float:
    started = time.perf_counter()
    with torch.no_grad():
        for batch in inputs:
            net(**batch)
    return time.perf_counter() - started


def record_seconds(name: str, net: nn.Module, inputs: list[dict], directory: Path) -> float:
    out = directory / "bench.h5"
    started = time.perf_counter()
    repsim.record(net, inputs, MODELS[name].layers, out,
                  table=table(sum(len(b["audio"]) for b in inputs)), overwrite=True,
                  **MODELS[name].options)
    seconds = time.perf_counter() - started
    out.unlink()
    return seconds


def raw_write_seconds(name: str, directory: Path, stimuli: int) -> float:
    """Seconds to write as many float32 bytes as the recording holds, with no metadata and
    no copy: what any recorder of these layers pays at least."""
    net, floats = model(name), 0
    bench = MODELS[name]
    with repsim.record.hooks.Hooks(net, repsim.record.hooks.select_layers(
            net, bench.layers, **bench.options)) as hooks, torch.no_grad():
        batch = next(batches(BATCH))
        net(**batch)
        floats = sum(value.numel() for value in hooks.take(BATCH).values())
    data = np.ones(floats * stimuli // BATCH, dtype=np.float32)
    started = time.perf_counter()
    data.tofile(directory / "raw.bin")
    seconds = time.perf_counter() - started
    (directory / "raw.bin").unlink()
    return seconds


def torchlens_seconds(name: str, net: nn.Module, inputs: list[dict]) -> float:
    import torchlens as tl

    layers = MODELS[name].layers
    selector = tl.module(layers[0])
    for layer in layers[1:]:
        selector = selector | tl.module(layer)
    started = time.perf_counter()
    for batch in inputs:
        tl.trace(net, input_kwargs=batch, save=selector)
    return time.perf_counter() - started


def child(name: str, directory: Path, stimuli: int) -> dict:
    """In a fresh subprocess: record ``stimuli`` stimuli of model ``name``; the peak RSS."""
    out = directory / f"rss-{stimuli}.h5"
    result = repsim.record(model(name), lambda: batches(stimuli), MODELS[name].layers, out,
                           table=table(stimuli), overwrite=True, **MODELS[name].options)
    out.unlink()
    return {"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "file_mib": result.size_bytes / 2**20, "seconds": result.seconds}


def _in_subprocess(*args: str) -> dict:
    done = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        raise RuntimeError(f"child {args} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(name: str, stimuli: int, rounds: int) -> None:
    """Time, memory and torchlens for model ``name`` (module docstring)."""
    net = model(name)
    bench = MODELS[name]
    inputs = list(batches(stimuli))
    with tempfile.TemporaryDirectory(prefix="bench-record-") as tmp:
        directory = Path(tmp)
        plain_seconds(net, inputs[:2])  # warm-up
        record_seconds(name, net, inputs[:1], directory)
        plain, recorded, unwritten = [], [], []
        for _ in range(rounds):  # the three alternate, so that the machine's drift hits all
            plain.append(plain_seconds(net, inputs))
            recorded.append(record_seconds(name, net, inputs, directory))
            with mock.patch.object(ActivationWriter, "_write_steps", lambda *args: None):
                unwritten.append(record_seconds(name, net, inputs, directory))
        base, total = statistics.median(plain), statistics.median(recorded)
        print(f"{name}: time, {stimuli} stimuli x {T} steps, {len(bench.layers)} layers "
              f"({', '.join(bench.layers)}), median of {rounds} alternating rounds, "
              f"{torch.get_num_threads()} threads: plain forward {base:.2f} s, repsim.record "
              f"{total:.2f} s, ratio {total / base:.2f} (target <= 1.20)")
        one = inputs[:1]  # one batch: mostly what a file costs whatever its size
        fixed = statistics.median(record_seconds(name, net, one, directory)
                                  - plain_seconds(net, one) for _ in range(rounds))
        print(f"  of which per file (layout of the netCDF metadata, provenance; from one "
              f"batch): {fixed:.3f} s; beyond it, per stimulus, ratio "
              f"{(total - fixed) / base:.2f}")
        floor = statistics.median(raw_write_seconds(name, directory, stimuli)
                                  for _ in range(rounds))
        print(f"  floor: the same bytes written raw to the same folder (numpy tofile) take "
              f"{floor:.3f} s; plain forward plus that, ratio {(base + floor) / base:.2f}")
        skipped = statistics.median(unwritten)
        print(f"  without the chunk writes (file laid out, states not written; in the same "
              f"rounds): {skipped:.2f} s, ratio {skipped / base:.2f}: the best that writing "
              f"on another thread, beside the forward, could reach")

        small = _in_subprocess("--child", name, str(directory), str(stimuli))
        large = _in_subprocess("--child", name, str(directory), str(4 * stimuli))
        print(f"  peak RSS, each in a fresh process: N={stimuli}: {small['peak_rss_mib']:.0f} "
              f"MiB ({small['file_mib']:.0f} MiB file); 4N={4 * stimuli}: "
              f"{large['peak_rss_mib']:.0f} MiB ({large['file_mib']:.0f} MiB file); ratio "
              f"{large['peak_rss_mib'] / small['peak_rss_mib']:.2f} (target <= 1.10)")

        try:
            import torchlens  # noqa: F401
        except ImportError:
            print("  torchlens: not installed (pip install torchlens); skipped")
            return
        lens = [torchlens_seconds(name, net, inputs) for _ in range(max(1, rounds // 2))]
        print(f"  torchlens.trace, same batches and modules: {statistics.median(lens):.2f} s, "
              f"ratio to the plain forward {statistics.median(lens) / base:.2f}; "
              f"repsim.record {total / base:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=(*MODELS, "all"), default="all",
                        help="which model to measure (default: all)")
    parser.add_argument("--stimuli", type=int, default=512,
                        help="stimuli per timed round, and N of the memory test")
    parser.add_argument("--rounds", type=int, default=5, help="alternating timed rounds")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        name, directory, stimuli = args.child
        print(json.dumps(child(name, Path(directory), int(stimuli))))
        return
    for name in MODELS if args.model == "all" else [args.model]:
        measure(name, args.stimuli, args.rounds)


if __name__ == "__main__":
    main()
