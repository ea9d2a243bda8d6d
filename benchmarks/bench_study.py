"""Study throughput: runs per hour of one tiny study with ``--jobs 2`` against ``--jobs 1``.

The same study file (synthetic data at the demo's grid with fewer pairs, the demo's 2-layer
network fused early and late, a few seeds, short training) runs from an empty folder once
with one worker (which gets every core) and once with two workers (an even share each), one
after the other. Prints the wall time and runs per hour of each, and their ratio (target >= 1.7x on
a 2-core machine). Run it alone: other processes on the cores change both numbers.

No study can gain more from two workers than its training step does, so the benchmark also
measures that ceiling in the same run: the samples/s of the study's model trained by two
one-thread processes side by side, against one process using every core.

    python benchmarks/bench_study.py
    python benchmarks/bench_study.py --seeds 4 --epochs 2
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from repsim.device import available_cores, limit_threads

STUDY = """
[study]
seeds = {seeds}
fusion_layers = [1, 3]

[model]
layers = 2
hidden = 16

[train]
epochs = {epochs}
batch_size = 32

[evaluation]
test_snrs = [10, 0, -10]
probe_stimuli = 50

[datasets.synthetic]
timesteps = 8
height = 16
width = 16

[datasets.synthetic.options]
repetitions = 2
train_pairs = 800
val_pairs = 100
test_pairs = 200
train_speakers = 6
val_speakers = 2
test_speakers = 4

[protocols.clean]
"""


def timed_study(folder: Path, text: str, jobs: int) -> float:
    """Wall seconds of ``python -m repsim.study`` with ``jobs`` workers from an empty folder."""
    path = folder / f"jobs{jobs}.toml"
    path.write_text(text)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "repsim.study", str(path), "--jobs", str(jobs)],
                   check=True, capture_output=True, text=True)
    return time.perf_counter() - started


STEP_BATCH = 32
STEPS = 40


def train_steps(threads: int) -> None:
    """Time STEPS training steps of the study's model on random input with ``threads`` threads;
    print the seconds (run in a child process by :func:`step_ceiling`)."""
    import torch
    from torch.nn.functional import cross_entropy

    from repsim.models.fusion import FusionConvLSTM, ModelConfig, final_logits

    limit_threads(threads)
    torch.manual_seed(0)
    model = FusionConvLSTM(ModelConfig(layers=2, hidden=16, fusion_layer=3, match_params=True))
    optimizer = torch.optim.Adam(model.parameters())
    audio, visual = torch.randn(2, STEP_BATCH, 8, 1, 16, 16)
    labels = torch.randint(0, 10, (STEP_BATCH,))

    def step() -> None:
        loss = cross_entropy(final_logits(model(audio, visual)), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    for _ in range(3):  # warm-up
        step()
    started = time.perf_counter()
    for _ in range(STEPS):
        step()
    print(time.perf_counter() - started)


def step_ceiling(cores: int) -> float:
    """Samples/s of ``cores`` one-thread trainers side by side over one trainer on every core."""
    def launch(threads: int) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, __file__, "--train-steps", str(threads)],
                                stdout=subprocess.PIPE, text=True)

    def seconds(process: subprocess.Popen) -> float:
        out, _ = process.communicate()
        if process.returncode:
            raise SystemExit(f"training-step child failed with status {process.returncode}")
        return float(out)

    alone = seconds(launch(cores))
    side_by_side = [seconds(p) for p in [launch(1) for _ in range(cores)]]
    return sum(1 / s for s in side_by_side) / (1 / alone)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="seeds per fusion layer")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--train-steps", type=int, metavar="THREADS", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.train_steps:
        train_steps(args.train_steps)
        return
    text = STUDY.format(seeds=list(range(args.seeds)), epochs=args.epochs)
    runs = 2 * args.seeds
    cores = available_cores()
    with tempfile.TemporaryDirectory() as tmp:
        seconds = {jobs: timed_study(Path(tmp), text, jobs) for jobs in (1, 2)}
    for jobs, value in seconds.items():
        print(f"--jobs {jobs}: {runs} runs in {value:.1f} s = {3600 * runs / value:.0f} runs/h")
    print(f"throughput ratio --jobs 2 / --jobs 1 on {cores} cores: "
          f"{seconds[1] / seconds[2]:.2f}x (target >= 1.7x)")
    print(f"ceiling set by the training step: {cores} one-thread trainers side by side / one "
          f"{cores}-thread trainer = {step_ceiling(cores):.2f}x")


if __name__ == "__main__":
    main()
