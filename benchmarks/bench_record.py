"""repsim.record's cost: time against a plain forward, peak memory for N and 4N stimuli, and
torchlens on the same model and layers when it is installed.

The model is a user's kind of recurrent audio-visual network: a small CNN run on every video
frame (32 x 32), a linear audio embedding, and a GRU over the summed streams. 4 layers are
recorded: the CNN's second convolution (32 x 16 x 16 maps) and its linear output, and the
audio embedding, one step per call; the GRU along its time axis (about 0.3 MiB per stimulus).

1. Time. The same batches go through a plain ``torch.no_grad()`` forward and through
   ``repsim.record`` (hooks, copies and the file written included), alternating, several
   rounds; the ratio of medians is printed (target <= 1.3x).
2. Peak memory. Each size runs in a fresh subprocess that makes its inputs batch by batch and
   records them; peak RSS (``resource.getrusage``) for 4N stimuli over N (target <= 1.1x).
3. torchlens (``pip install torchlens``): ``torchlens.trace`` on the same batches, saving the
   same 4 modules; its time over the plain forward's.

Timings depend on the machine and its load: take them on a quiet one.

    OMP_NUM_THREADS=1 python benchmarks/bench_record.py
    python benchmarks/bench_record.py --stimuli 256 --rounds 3
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
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

import repsim

T, SIDE, BATCH = 8, 32, 32
LAYERS = ["frame.2", "frame.6", "audio_embed", "gru"]
TIME_DIM = {"gru": 1}


class FrameGRU(nn.Module):
    """A CNN per video frame and a linear audio embedding, summed, into a GRU."""

    def __init__(self) -> None:
        super().__init__()
        self.frame = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(),
                                   nn.Conv2d(32, 32, 3, padding=1, stride=2), nn.ReLU(),
                                   nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(512, 64))
        self.audio_embed = nn.Linear(40, 64)
        self.gru = nn.GRU(64, 64, batch_first=True)
        self.head = nn.Linear(64, 10)

    def forward(self, audio: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
        steps = [self.frame(visual[:, t]) + self.audio_embed(audio[:, t])
                 for t in range(visual.shape[1])]
        return self.head(self.gru(torch.stack(steps, 1))[0][:, -1])


def model() -> FrameGRU:
    torch.manual_seed(0)
    return FrameGRU().eval()


def batches(stimuli: int, seed: int = 0) -> Iterator[dict[str, torch.Tensor]]:
    """Inputs made batch by batch (never all held at once), the same for a seed."""
    generator = torch.Generator().manual_seed(seed)
    for start in range(0, stimuli, BATCH):
        count = min(BATCH, stimuli - start)
        yield {"audio": torch.randn(count, T, 40, generator=generator),
               "visual": torch.rand(count, T, 1, SIDE, SIDE, generator=generator)}


def table(stimuli: int) -> pd.DataFrame:
    return pd.DataFrame({"stimulus_id": [f"s{i}" for i in range(stimuli)]})


def plain_seconds(net: nn.Module, inputs: list[dict]) -> float:
    started = time.perf_counter()
    with torch.no_grad():
        for batch in inputs:
            net(**batch)
    return time.perf_counter() - started


def record_seconds(net: nn.Module, inputs: list[dict], directory: Path) -> float:
    out = directory / "bench.h5"
    started = time.perf_counter()
    repsim.record(net, inputs, LAYERS, out, table=table(sum(len(b["audio"]) for b in inputs)),
                  time_dim=TIME_DIM, overwrite=True)
    seconds = time.perf_counter() - started
    out.unlink()
    return seconds


def raw_write_seconds(directory: Path, stimuli: int) -> float:
    """Seconds to write as many float32 bytes as the recording holds, with no metadata and
    no copy: what any recorder of these layers pays at least."""
    net, floats = model(), 0
    with repsim.record.hooks.Hooks(net, repsim.record.hooks.select_layers(
            net, LAYERS, time_dim=TIME_DIM)) as hooks, torch.no_grad():
        batch = next(batches(BATCH))
        net(**batch)
        floats = sum(value.numel() for value in hooks.take(BATCH).values())
    data = np.ones(floats * stimuli // BATCH, dtype=np.float32)
    started = time.perf_counter()
    data.tofile(directory / "raw.bin")
    seconds = time.perf_counter() - started
    (directory / "raw.bin").unlink()
    return seconds


def torchlens_seconds(net: nn.Module, inputs: list[dict]) -> float:
    import torchlens as tl

    selector = tl.module(LAYERS[0])
    for layer in LAYERS[1:]:
        selector = selector | tl.module(layer)
    started = time.perf_counter()
    for batch in inputs:
        tl.trace(net, input_kwargs=batch, save=selector)
    return time.perf_counter() - started


def child(directory: Path, stimuli: int) -> dict:
    """In a fresh subprocess: record ``stimuli`` stimuli; the peak RSS."""
    out = directory / f"rss-{stimuli}.h5"
    result = repsim.record(model(), lambda: batches(stimuli), LAYERS, out,
                           table=table(stimuli), time_dim=TIME_DIM, overwrite=True)
    out.unlink()
    return {"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "file_mib": result.size_bytes / 2**20, "seconds": result.seconds}


def _in_subprocess(*args: str) -> dict:
    done = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        raise RuntimeError(f"child {args} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stimuli", type=int, default=512,
                        help="stimuli per timed round, and N of the memory test")
    parser.add_argument("--rounds", type=int, default=5, help="alternating timed rounds")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(Path(args.child[0]), int(args.child[1]))))
        return

    net = model()
    inputs = list(batches(args.stimuli))
    with tempfile.TemporaryDirectory(prefix="bench-record-") as tmp:
        directory = Path(tmp)
        plain_seconds(net, inputs[:2])  # warm-up
        plain, recorded = [], []
        for _ in range(args.rounds):
            plain.append(plain_seconds(net, inputs))
            recorded.append(record_seconds(net, inputs, directory))
        base = statistics.median(plain)
        print(f"time, {args.stimuli} stimuli x {T} steps, {len(LAYERS)} layers "
              f"({', '.join(LAYERS)}), median of {args.rounds} alternating rounds: plain "
              f"forward {base:.2f} s, repsim.record {statistics.median(recorded):.2f} s, "
              f"ratio {statistics.median(recorded) / base:.2f} (target <= 1.30)")
        one = inputs[:1]  # one batch: mostly what a file costs whatever its size
        fixed = statistics.median(record_seconds(net, one, directory) - plain_seconds(net, one)
                                  for _ in range(args.rounds))
        print(f"  of which per file (layout of the netCDF metadata, provenance; from one "
              f"batch): {fixed:.3f} s; beyond it, per stimulus, ratio "
              f"{(statistics.median(recorded) - fixed) / base:.2f}")
        floor = statistics.median(raw_write_seconds(directory, args.stimuli)
                                  for _ in range(args.rounds))
        print(f"  floor: the same bytes written raw to the same folder (numpy tofile) take "
              f"{floor:.3f} s; plain forward plus that, ratio {(base + floor) / base:.2f}")

        n = args.stimuli
        small = _in_subprocess("--child", str(directory), str(n))
        large = _in_subprocess("--child", str(directory), str(4 * n))
        print(f"peak RSS, each in a fresh process: N={n}: {small['peak_rss_mib']:.0f} MiB "
              f"({small['file_mib']:.0f} MiB file); 4N={4 * n}: "
              f"{large['peak_rss_mib']:.0f} MiB ({large['file_mib']:.0f} MiB file); ratio "
              f"{large['peak_rss_mib'] / small['peak_rss_mib']:.2f} (target <= 1.10)")

        try:
            import torchlens  # noqa: F401
        except ImportError:
            print("torchlens: not installed (pip install torchlens); skipped")
            return
        lens = [torchlens_seconds(net, inputs) for _ in range(max(1, args.rounds // 2))]
        print(f"torchlens.trace, same batches and modules: {statistics.median(lens):.2f} s, "
              f"ratio to the plain forward {statistics.median(lens) / base:.2f}; "
              f"repsim.record {statistics.median(recorded) / base:.2f}")


if __name__ == "__main__":
    main()
