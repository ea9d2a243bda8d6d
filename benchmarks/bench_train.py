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
    python benchmarks/bench_train.py --config paper   # 28x28, T=10, 4 layers, 32 ch, batch 256
"""

from __future__ import annotations

import argparse
import contextlib
import time
from dataclasses import dataclass, replace

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


CONFIGS = {
    "quick": BenchConfig(batch=32, timesteps=8, size=16, layers=2, hidden=16),
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
        channels = 1
        self.audio, self.visual = nn.ModuleList(), nn.ModuleList()
        for _ in range(1, k):
            self.audio.append(TextbookLayer(channels, hidden, kernel))
            self.visual.append(TextbookLayer(channels, hidden, kernel))
            channels = hidden
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
    args = parser.parse_args(argv)

    config = replace(CONFIGS[args.config], **{key: getattr(args, key) for key in
                                              ("batch", "timesteps", "size", "layers", "hidden")
                                              if getattr(args, key) is not None})
    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
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
    layers = {"both": (1, config.layers + 1), "early": (1,), "late": (config.layers + 1,)}
    for fusion_layer in layers[args.fusion]:
        model_config = ModelConfig(layers=config.layers, hidden=config.hidden,
                                   kernel=config.kernel, fusion_layer=fusion_layer)
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


if __name__ == "__main__":
    main()
