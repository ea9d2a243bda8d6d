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

``--stacked`` measures stacked seeds instead (``[train] stack_seeds``): the same study with
its seeds stacked against unstacked, both with ``--jobs 1``, in runs per hour; and the
training step alone, S seeds as one stacked network against S networks one after the other,
in samples per second on ``--device`` (on CUDA also the share of the card's dense bf16 peak,
in bf16 autocast). On the CPU expect at most 1x: the step is bound by memory traffic there;
on a GPU, where one small network leaves the card idle, S = 10 or more is the point.

    python benchmarks/bench_study.py --stacked --seeds 3 --epochs 1
    python benchmarks/bench_study.py --stacked --device cuda --step-seeds 16
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


def stacked_step(seeds: int, device_name: str, steps: int, batch: int) -> None:
    """Samples/s of ``seeds`` study-sized networks trained as one stacked network against the
    same networks trained one after the other (AdamW steps included); on CUDA in bf16
    autocast, with the stacked step's share of the card's dense bf16 peak."""
    import torch
    from torch.nn.functional import cross_entropy

    from repsim.models.fusion import FusionConvLSTM, ModelConfig
    from repsim.models.stacked import stack_state

    sys.path.insert(0, str(Path(__file__).parent))
    from bench_train import BenchConfig, bf16_peak, conv_flops

    device = torch.device(device_name)
    cuda = device.type == "cuda"
    config = ModelConfig(layers=2, hidden=16, fusion_layer=1, match_params=True)
    shape = BenchConfig(batch=batch, timesteps=8, size=8, layers=2, hidden=16)
    torch.manual_seed(0)
    models = [FusionConvLSTM(config).to(device) for _ in range(seeds)]
    stacked = FusionConvLSTM(config, seeds=seeds).to(device)
    stacked.load_state_dict(stack_state([model.state_dict() for model in models]))
    audio, visual = torch.randn(2, batch, 8, seeds, 8, 8, device=device)
    labels = torch.randint(0, 10, (seeds, batch), device=device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda)

    def trainer(model, inputs, loss_of):
        optimizer = torch.optim.AdamW(model.parameters())

        def step():
            with autocast:
                logits = model(*inputs)
            loss = loss_of(logits.float())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        return step

    def stacked_loss(logits):
        logits = logits.unflatten(-1, (seeds, -1))
        return sum(cross_entropy(logits[:, s], labels[s]) for s in range(seeds))

    alone = [trainer(model, (audio[:, :, s:s + 1], visual[:, :, s:s + 1]),
                     lambda logits, s=s: cross_entropy(logits, labels[s]))
             for s, model in enumerate(models)]
    together = trainer(stacked, (audio, visual), stacked_loss)
    sync = torch.cuda.synchronize if cuda else (lambda: None)

    def seconds(run) -> float:
        run()
        sync()
        started = time.perf_counter()
        for _ in range(steps):
            run()
        sync()
        return (time.perf_counter() - started) / steps

    one_by_one = min(seconds(lambda: [step() for step in alone]) for _ in range(3))
    stack = min(seconds(together) for _ in range(3))
    print(f"training step, {seeds} seeds x batch {batch} (8 x 8, T=8, 2 layers x 16) on "
          f"{torch.cuda.get_device_name(device) if cuda else 'the CPU'}: one after the other "
          f"{seeds * batch / one_by_one:.0f} samples/s, stacked {seeds * batch / stack:.0f} "
          f"samples/s: {one_by_one / stack:.2f}x")
    if cuda:
        peak = bf16_peak(device, None)
        tflops = seeds * conv_flops(models[0], shape) / stack / 1e12
        share = f", {100 * tflops / peak:.2f} % of its dense bf16 peak" if peak else ""
        print(f"  stacked: {tflops:.2f} TFLOP/s in its convolutions{share}")


def timed_study(folder: Path, text: str, jobs: int, name: str = "jobs") -> float:
    """Wall seconds of ``python -m repsim.study`` with ``jobs`` workers from an empty folder."""
    path = folder / f"{name}{jobs}.toml"
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
    parser.add_argument("--stacked", action="store_true",
                        help="stacked seeds against unstacked (study and training step)")
    parser.add_argument("--device", default="cpu", help="--stacked: the training step's device")
    parser.add_argument("--step-seeds", type=int, default=10,
                        help="--stacked: seeds in the training-step comparison (default 10)")
    parser.add_argument("--step-batch", type=int, default=32,
                        help="--stacked: each seed's batch in the training-step comparison")
    parser.add_argument("--steps", type=int, default=10,
                        help="--stacked: timed training steps per round")
    parser.add_argument("--train-steps", type=int, metavar="THREADS", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.train_steps:
        train_steps(args.train_steps)
        return
    text = STUDY.format(seeds=list(range(args.seeds)), epochs=args.epochs)
    runs = 2 * args.seeds
    if args.stacked:
        with tempfile.TemporaryDirectory() as tmp:
            plain = timed_study(Path(tmp), text, 1)
            stacked = timed_study(Path(tmp), text.replace(
                "batch_size = 32", "batch_size = 32\nstack_seeds = true"), 1, "stacked")
        for name, value in (("unstacked", plain), ("stacked", stacked)):
            print(f"{name}, --jobs 1: {runs} runs in {value:.1f} s = {3600 * runs / value:.0f} "
                  f"runs/h")
        print(f"stacked / unstacked runs per hour: {plain / stacked:.2f}x (on the CPU expected "
              f"at or below 1x)")
        stacked_step(args.step_seeds, args.device, args.steps, args.step_batch)
        return
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
