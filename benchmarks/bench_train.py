"""Training speed of repsim's FusionConvLSTM against a textbook ConvLSTM, in the same run.

The peer is the ConvLSTM as usually written from the equations: per time step, a separate
convolution for each gate on the input and another on the hidden state (8 convolutions),
float32, no compilation, wired into the same fusion network (branches, fused layers,
readout). repsim's layer makes all four gates with one convolution, runs the input half for
all time steps in one call and skips the recurrent half at t = 0; on CUDA it trains as
``repsim.train`` does (bf16 autocast, channels_last). On a CPU with bf16 instructions it is
also timed with ``--precision bf16`` (bf16 autocast), the textbook staying in float32.

Both models train on the same random batches (AdamW step included) on the same device; timed
rounds alternate between them and the best round of each counts. Prints samples/s, the ratio,
and on CUDA the bf16 TFLOP/s achieved in convolutions (forward + two backward products)
against the GPU's dense bf16 peak.

    python benchmarks/bench_train.py                  # quick CPU-sized configuration
    python benchmarks/bench_train.py --config study   # the quick study's sizes (8x8, T=8)
    python benchmarks/bench_train.py --config paper   # 28x28, T=10, 4 layers, 32 ch, batch 256
    python benchmarks/bench_train.py --config study --against cfc1345   # two versions

On the CPU it also prints the arithmetic the step achieves: the GFLOP/s of its
convolutions (forward and both backward products, as executed) beside those of one
convolution of the step's largest shape trained alone (forward, input and weight gradient)
and of the core's float32 matrix multiply (2048 x 2048), all measured in the same run. A
step near the single convolution's rate spends little outside its convolutions.

``--against REV`` times repsim's model of another git revision beside this checkout's, each
in its own child process, rounds alternating, both on this machine in this run: a slowdown
between versions shows there, and not as two numbers measured on different days.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from repsim.cli import keep_freed_memory
from repsim.models.convlstm import ConvLSTM
from repsim.models.fusion import FusionConvLSTM, ModelConfig


@dataclass(frozen=True)
class BenchConfig:
    """Input and model sizes of one benchmark."""

    batch: int
    timesteps: int
    size: int
    layers: int
    hidden: int
    kernel: int = 3
    match_params: bool = False


CONFIGS = {
    "quick": BenchConfig(batch=32, timesteps=8, size=16, layers=2, hidden=16),
    "study": BenchConfig(batch=32, timesteps=8, size=8, layers=2, hidden=16,
                         match_params=True),
    "paper": BenchConfig(batch=256, timesteps=10, size=28, layers=4, hidden=32),
}
# Dense bf16 tensor-core peaks (TFLOP/s, without sparsity) from NVIDIA's data sheets.
BF16_PEAK_TFLOPS = {"H100 PCIe": 756.0, "H100": 989.0, "H200": 989.0, "A100": 312.0,
                    "L4": 121.0, "A10": 125.0}


class TextbookConvLSTMCell(nn.Module):
    """One ConvLSTM step with a convolution per gate for the input and for the hidden state."""

    def __init__(self, in_channels: int, hidden: int, kernel: int) -> None:
        super().__init__()
        pad = kernel // 2
        self.hidden = hidden
        self.x_convs = nn.ModuleList(nn.Conv2d(in_channels, hidden, kernel, padding=pad)
                                     for _ in range(4))
        self.h_convs = nn.ModuleList(nn.Conv2d(hidden, hidden, kernel, padding=pad, bias=False)
                                     for _ in range(4))

    def forward(self, x, h, c):
        i = torch.sigmoid(self.x_convs[0](x) + self.h_convs[0](h))
        f = torch.sigmoid(self.x_convs[1](x) + self.h_convs[1](h))
        o = torch.sigmoid(self.x_convs[2](x) + self.h_convs[2](h))
        g = torch.tanh(self.x_convs[3](x) + self.h_convs[3](h))
        c = f * c + i * g
        return o * torch.tanh(c), c


class TextbookLayer(nn.Module):
    """A textbook cell looped over the sequence from zero states."""

    def __init__(self, in_channels: int, hidden: int, kernel: int) -> None:
        super().__init__()
        self.cell = TextbookConvLSTMCell(in_channels, hidden, kernel)

    def forward(self, x):
        batch, steps, _, height, width = x.shape
        h = x.new_zeros(batch, self.cell.hidden, height, width)
        c = torch.zeros_like(h)
        outputs = []
        for t in range(steps):
            h, c = self.cell(x[:, t], h, c)
            outputs.append(h)
        return torch.stack(outputs, dim=1)


class TextbookFusion(nn.Module):
    """The same fusion wiring as FusionConvLSTM, built from textbook layers."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        k, hidden, kernel = config.fusion_layer, config.hidden, config.kernel
        width = config.branch_width()  # the branches' width, as repsim's model has them
        channels = 1
        self.audio, self.visual = nn.ModuleList(), nn.ModuleList()
        for _ in range(1, k):
            self.audio.append(TextbookLayer(channels, width, kernel))
            self.visual.append(TextbookLayer(channels, width, kernel))
            channels = width
        channels *= 2
        self.fused = nn.ModuleList()
        for _ in range(k, config.layers + 1):
            self.fused.append(TextbookLayer(channels, hidden, kernel))
            channels = hidden
        self.readout = nn.Linear(channels, 10)

    def forward(self, audio, visual):
        for audio_layer, visual_layer in zip(self.audio, self.visual, strict=True):
            audio, visual = audio_layer(audio), visual_layer(visual)
        h = torch.cat([audio, visual], dim=2)
        for layer in self.fused:
            h = layer(h)
        return self.readout(h[:, -1].mean(dim=(-2, -1)))


def conv_flops(model: nn.Module, config: BenchConfig) -> float:
    """FLOPs (2 per multiply-add) of one training step's convolutions, as executed: the
    forward pass and the two backward products (input and weight gradients) of equal size.

    repsim runs its input convolution on all T steps and its recurrent one on T - 1 (the
    state is zero at t = 0); the textbook cell runs all eight convolutions at every step.
    """
    pixels = config.batch * config.size * config.size

    def calls(conv: nn.Conv2d, times: int) -> float:
        return 3.0 * times * 2.0 * pixels * conv.out_channels * conv.in_channels \
            * conv.kernel_size[0] * conv.kernel_size[1]

    total = 0.0
    model = getattr(model, "_orig_mod", model)  # a compiled module wraps the original
    for module in model.modules():
        if isinstance(module, ConvLSTM):
            total += calls(module.input_conv, config.timesteps)
            total += calls(module.hidden_conv, config.timesteps - 1)
        elif isinstance(module, TextbookConvLSTMCell):
            total += sum(calls(conv, config.timesteps)
                         for conv in (*module.x_convs, *module.h_convs))
    return total


def time_training(model: nn.Module, config: BenchConfig, device: torch.device, amp: bool,
                  steps: int) -> float:
    """Seconds per training step (forward, backward, AdamW step) over ``steps`` steps."""
    generator = torch.Generator().manual_seed(0)
    shape = (config.batch, config.timesteps, 1, config.size, config.size)
    audio = torch.randn(shape, generator=generator).to(device)
    visual = torch.randn(shape, generator=generator).to(device)
    target = torch.randint(0, 10, (config.batch,), generator=generator).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    autocast = (torch.autocast(device_type=device.type, dtype=torch.bfloat16) if amp
                else contextlib.nullcontext())

    def step() -> None:
        with autocast:
            logits = model(audio, visual)
        loss = F.cross_entropy(logits.float(), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    step()
    sync()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    return (time.perf_counter() - started) / steps


def largest_conv(model: nn.Module, config: BenchConfig) -> tuple[nn.Conv2d, int]:
    """The convolution of ``model`` with the most FLOPs per call, and the rows (batch) it is
    called with: an input convolution runs over all T steps at once, a recurrent one per
    step."""
    calls = []
    for module in model.modules():
        if isinstance(module, ConvLSTM):
            calls += [(module.input_conv, config.batch * config.timesteps),
                      (module.hidden_conv, config.batch)]
    return max(calls, key=lambda call: call[1] * call[0].in_channels * call[0].out_channels)


def conv_gflops(conv: nn.Conv2d, rows: int, config: BenchConfig, repeats: int) -> float:
    """GFLOP/s of one convolution of ``conv``'s shape trained alone: forward, input gradient
    and weight gradient, as a training step runs it."""
    x = torch.randn(rows, conv.in_channels, config.size, config.size)
    weight = conv.weight.detach().clone()
    grad = torch.randn(rows, conv.out_channels, config.size, config.size)
    padding = conv.padding

    def once() -> None:
        F.conv2d(x, weight, padding=padding)
        torch.nn.grad.conv2d_input(x.shape, weight, grad, padding=padding)
        torch.nn.grad.conv2d_weight(x, weight.shape, grad, padding=padding)

    once()
    started = time.perf_counter()
    for _ in range(repeats):
        once()
    seconds = (time.perf_counter() - started) / repeats
    flops = 3 * 2.0 * rows * config.size * config.size * conv.out_channels * conv.in_channels \
        * conv.kernel_size[0] * conv.kernel_size[1]
    return flops / seconds / 1e9


def matmul_gflops(size: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of a float32 ``size`` x ``size`` matrix multiply: what the core's BLAS does."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2.0 * size**3 * repeats / (time.perf_counter() - started) / 1e9


def model_config_of(config: BenchConfig, fusion_layer: int) -> ModelConfig:
    """The benchmark's model at ``fusion_layer`` (``match_params`` where this repsim has it)."""
    options = {"layers": config.layers, "hidden": config.hidden, "kernel": config.kernel,
               "fusion_layer": fusion_layer}
    if config.match_params:
        options["match_params"] = True
    return ModelConfig(**options)


def child_times(config: BenchConfig, fusion_layers: list[int], steps: int) -> dict:
    """In a child process (``--against``): ms per training step of this repsim's model at
    each fusion layer, on the CPU (memory kept as ``python -m repsim.train`` keeps it)."""
    keep_freed_memory()
    torch.optim.AdamW([torch.zeros(1, requires_grad=True)])  # its first use imports dynamo
    result = {}
    for fusion_layer in fusion_layers:
        torch.manual_seed(0)
        model = FusionConvLSTM(model_config_of(config, fusion_layer))
        used = time.process_time()
        wall = time_training(model, config, torch.device("cpu"), False, steps)
        cpu = (time.process_time() - used) / (steps + 1)  # the warm-up step included
        result[fusion_layer] = [1000 * wall, 1000 * cpu]
    return result


def against(revision: str, config: BenchConfig, fusion_layers: list[int], steps: int,
            rounds: int, threads: int) -> None:
    """Time this checkout's model and ``revision``'s, each in child processes, rounds
    alternating; print the best ms/step of each and their ratio."""
    root = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        archive = subprocess.run(["git", "-C", str(root), "archive", revision, "repsim"],
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        trees = {"this checkout": str(root), revision: tmp}
        best: dict[str, dict[int, list[float]]] = {name: {} for name in trees}
        request = json.dumps({"config": dataclasses.asdict(config), "fusion": fusion_layers,
                              "steps": steps})
        for _ in range(rounds):
            for name, tree in trees.items():
                env = {**os.environ, "PYTHONPATH": tree, "OMP_NUM_THREADS": str(threads)}
                done = subprocess.run([sys.executable, __file__, "--child", request],
                                      capture_output=True, text=True, env=env, check=False)
                if done.returncode:
                    raise SystemExit(f"the child for {name} failed:\n{done.stderr}")
                times = json.loads(done.stdout.strip().splitlines()[-1])
                for key, values in times.items():
                    kept = best[name].get(int(key), [math.inf, math.inf])
                    best[name][int(key)] = [min(a, b) for a, b in zip(kept, values, strict=True)]
    for fusion_layer in fusion_layers:
        (now, now_cpu), (then, then_cpu) = (best["this checkout"][fusion_layer],
                                            best[revision][fusion_layer])
        print(f"k={fusion_layer}: this checkout {now:.2f} ms/step, {revision} {then:.2f} "
              f"ms/step: {then / now:.2f}x; in CPU time (what one thread spends, whatever else "
              f"runs) {now_cpu:.2f} and {then_cpu:.2f} ms/step: {then_cpu / now_cpu:.2f}x "
              f"({threads} thread{'s' if threads > 1 else ''}, best of {rounds} alternating "
              f"rounds)")


def bf16_peak(device: torch.device, override: float | None) -> float | None:
    """Dense bf16 peak in TFLOP/s for the GPU, from the table or ``--peak-tflops``."""
    if override is not None:
        return override
    name = torch.cuda.get_device_name(device)
    for key in sorted(BF16_PEAK_TFLOPS, key=len, reverse=True):
        if key in name:
            return BF16_PEAK_TFLOPS[key]
    return None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=sorted(CONFIGS), default="quick")
    parser.add_argument("--batch", type=int)
    parser.add_argument("--timesteps", type=int)
    parser.add_argument("--size", type=int)
    parser.add_argument("--layers", type=int)
    parser.add_argument("--hidden", type=int)
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--steps", type=int, default=5, help="training steps per round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; best counts")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--peak-tflops", type=float, help="bf16 peak of the GPU, if unknown")
    parser.add_argument("--fusion", choices=("both", "early", "late"), default="both",
                        help="time k=1, late fusion, or both (default)")
    parser.add_argument("--compile", action="store_true",
                        help="also time repsim's model under torch.compile")
    parser.add_argument("--against", metavar="REV",
                        help="time repsim's model of git revision REV beside this checkout's "
                             "(CPU, child processes, rounds alternating)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        request = json.loads(args.child)
        print(json.dumps(child_times(BenchConfig(**request["config"]), request["fusion"],
                                     request["steps"])))
        return

    config = replace(CONFIGS[args.config], **{key: getattr(args, key) for key in
                                              ("batch", "timesteps", "size", "layers", "hidden")
                                              if getattr(args, key) is not None})
    layers = {"both": (1, config.layers + 1), "early": (1,), "late": (config.layers + 1,)}
    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.against:
        if args.threads:
            torch.set_num_threads(args.threads)
        print(f"config {args.config}: {config}; CPU, {torch.get_num_threads()} threads")
        against(args.against, config, list(layers[args.fusion]), args.steps, args.rounds,
                torch.get_num_threads())
        return
    keep_freed_memory()  # as `python -m repsim.train` does; the peer runs in the same process
    cuda = device.type == "cuda"
    threads = torch.get_num_threads()
    where = torch.cuda.get_device_name(device) if cuda else f"CPU, {threads} threads"
    print(f"config {args.config}: {config}; device {where}; torch {torch.__version__}")
    if cuda:
        print(f"textbook: float32 (cudnn.allow_tf32={torch.backends.cudnn.allow_tf32}); "
              f"repsim: bf16 autocast + channels_last")
    peak = bf16_peak(device, args.peak_tflops) if cuda else None
    # `repsim.train --precision bf16` on the CPU; timed only where the CPU has bf16 arithmetic.
    cpu_bf16 = not cuda and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    if not cuda:
        print("repsim: float32 (the CPU default)"
              + ("; repsim bf16: bf16 autocast (--precision bf16)" if cpu_bf16 else
                 "; this CPU has no bf16 instructions, so bf16 is not timed"))

    print(f"{'fusion':>8} {'model':>16} {'params':>8} {'samples/s':>10} {'ms/step':>8}"
          + ("  conv TFLOP/s (% of bf16 peak)" if cuda else ""))
    for fusion_layer in layers[args.fusion]:
        model_config = model_config_of(config, fusion_layer)
        torch.manual_seed(0)
        ours = FusionConvLSTM(model_config).to(device)
        if cuda:
            ours = ours.to(memory_format=torch.channels_last)
        textbook = TextbookFusion(model_config).to(device)
        # (name, module, bf16 autocast). "repsim" trains as `repsim.train` does by default
        # (bf16 on CUDA, float32 on the CPU); the other precision is timed too, to show how
        # much of the gain is the layer's structure and how much is bf16.
        variants = [("repsim", ours, cuda)]
        if cuda:
            variants.append(("repsim float32", ours, False))
        elif cpu_bf16:
            variants.append(("repsim bf16", ours, True))
        if args.compile:
            variants.append(("repsim compiled", torch.compile(ours), cuda))
        variants.append(("textbook", textbook, False))
        best = {name: float("inf") for name, _, _ in variants}
        for _ in range(args.rounds):
            for name, model, amp in variants:
                best[name] = min(best[name], time_training(model, config, device, amp,
                                                           args.steps))
        label = "1" if fusion_layer == 1 else f"{fusion_layer} late"
        for name, model, amp in variants:
            seconds = best[name]
            line = (f"{label:>8} {name:>16} {sum(p.numel() for p in model.parameters()):>8,} "
                    f"{config.batch / seconds:>10.1f} {1000 * seconds:>8.2f}")
            if cuda:
                tflops = conv_flops(model, config) / seconds / 1e12
                share = f" ({100 * tflops / peak:.1f}% of {peak:.0f})" if peak and amp else ""
                line += f"  {tflops:.1f}{share}"
            print(line, flush=True)
        for name, _, _ in variants[:-1]:
            print(f"{label:>8} {'ratio':>16} {name} / textbook = "
                  f"{best['textbook'] / best[name]:.2f}x samples/s", flush=True)
        if not cuda:
            conv, rows = largest_conv(ours, config)
            alone = max(conv_gflops(conv, rows, config, 3 * args.steps)
                        for _ in range(args.rounds))
            step = conv_flops(ours, config) / best["repsim"] / 1e9
            print(f"{label:>8} {'arithmetic':>16} step {step:.1f} GFLOP/s in its convolutions "
                  f"({conv_flops(ours, config) / 1e9:.2f} GFLOP a step); one "
                  f"{conv.in_channels}->{conv.out_channels} {conv.kernel_size[0]}x"
                  f"{conv.kernel_size[1]} convolution on {rows} x {config.size}x{config.size} "
                  f"trained alone {alone:.1f} GFLOP/s; step / that = {step / alone:.2f}",
                  flush=True)
    if not cuda:
        print(f"{'':>8} {'matmul':>16} float32 2048 x 2048: "
              f"{max(matmul_gflops() for _ in range(args.rounds)):.1f} GFLOP/s "
              f"({threads} thread{'s' if threads > 1 else ''})", flush=True)


if __name__ == "__main__":
    main()
