"""Peak memory of ``cka_by_layer --minibatch`` for N and 4N stimuli, and without it.

The benchmark writes its own activation files: for N and for 4N stimuli, two models (two
seeds of one architecture: the same layers, time steps and features, random float32 states,
clean condition only; the 4N files hold hundreds of MiB). Each measurement runs
``repsim.figures.cka_by_layer.run`` on one pair in a fresh subprocess and reports its peak
RSS (``resource.getrusage``), next to the RSS after the imports, before any work. With
``--minibatch B`` memory should not grow with the stimuli (target: peak(4N) <= 1.3 x
peak(N)); for contrast, the same figure without ``--minibatch`` builds n x n Gram matrices.

    OMP_NUM_THREADS=1 python benchmarks/bench_memory.py
    python benchmarks/bench_memory.py --stimuli 1000 --minibatch 250 --skip-full-4n
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from repsim import activations

# Per stimulus and model: 2 layers x T=4 x 16 channels x 8 x 8 float32 = 32 KiB.
LAYERS = ("fused.1", "fused.2")
STATE_SHAPE = (4, 16, 8, 8)
BATCH = 256


def write_model(path: Path, stimuli: int, seed: int) -> int:
    """Stream ``stimuli`` rows of random states into ``path``; its size in bytes."""
    rng = np.random.default_rng(seed)
    ids = np.array([f"clip{i}|image{i}" for i in range(stimuli)])
    coordinates = {"stimulus_id": ids, "condition": np.full(stimuli, "clean")}
    config = {"model": {"fusion_layer": 1, "layers": len(LAYERS)}, "seed": seed}
    with activations.ActivationWriter(path, coordinates, attrs={"config": config}) as writer:
        for start in range(0, stimuli, BATCH):
            count = min(BATCH, stimuli - start)
            writer.write({layer: {"h": rng.standard_normal((count, *STATE_SHAPE),
                                                           dtype=np.float32)}
                          for layer in LAYERS})
    return path.stat().st_size


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def child(first: Path, second: Path, out_dir: Path, minibatch: int | None) -> dict:
    """Run in a subprocess: the figure on one pair of files; peak RSS and seconds."""
    from repsim.figures import cka_by_layer

    imported = _rss_mib()
    started = time.perf_counter()
    cka_by_layer.run([first, second], out_dir=out_dir, minibatch=minibatch)
    return {"imports_mib": imported, "peak_rss_mib": _rss_mib(),
            "seconds": time.perf_counter() - started}


def _in_subprocess(*args: str) -> dict:
    completed = subprocess.run([sys.executable, __file__, "--child", *args],
                               capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"child {args} failed:\n{completed.stderr}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def _line(label: str, runs: dict[int, dict]) -> str:
    (n, small), (n4, large) = runs.items()
    text = (f"{label}: N={n}: {small['peak_rss_mib']:.0f} MiB ({small['seconds']:.0f} s); "
            f"4N={n4}: {large['peak_rss_mib']:.0f} MiB ({large['seconds']:.0f} s); ratio "
            f"{large['peak_rss_mib'] / small['peak_rss_mib']:.2f}")
    grown = (large["peak_rss_mib"] - large["imports_mib"]) / max(
        small["peak_rss_mib"] - small["imports_mib"], 1.0)
    return text + f" (above the imports' {small['imports_mib']:.0f} MiB: {grown:.2f}x)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stimuli", type=int, default=2000,
                        help="N; the larger files hold 4N stimuli (default: 2000)")
    parser.add_argument("--minibatch", type=int, default=500,
                        help="stimuli per minibatch (default: 500)")
    parser.add_argument("--skip-full-4n", action="store_true",
                        help="measure the figure without --minibatch on N stimuli only (with "
                             "4N its Gram matrices take minutes and GiBs)")
    parser.add_argument("--dir", type=Path, default=None,
                        help="where to write (default: a temporary directory in the repo)")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:  # one measurement, run in a fresh process
        first, second, out_dir, minibatch = args.child
        print(json.dumps(child(Path(first), Path(second), Path(out_dir),
                               None if minibatch == "none" else int(minibatch))))
        return

    with tempfile.TemporaryDirectory(dir=args.dir or Path(__file__).resolve().parents[1],
                                     prefix=".bench-memory-") as tmp:
        directory = Path(tmp)
        files, sizes = {}, {}
        for n in (args.stimuli, 4 * args.stimuli):
            files[n] = [directory / f"model{seed}-{n}.h5" for seed in (0, 1)]
            sizes[n] = sum(write_model(path, n, seed) for seed, path in enumerate(files[n]))
        print(f"activation files: {len(LAYERS)} layers x {STATE_SHAPE} float32 per stimulus, "
              f"two models; N={args.stimuli}: {sizes[args.stimuli] / 2**20:.0f} MiB, "
              f"4N={4 * args.stimuli}: {sizes[4 * args.stimuli] / 2**20:.0f} MiB")

        def measure(n: int, minibatch: int | None) -> dict:
            return _in_subprocess(*map(str, files[n]), str(directory / f"out-{n}"),
                                  str(minibatch or "none"))

        batched = {n: measure(n, args.minibatch) for n in files}
        print("peak RSS, " + _line(f"cka_by_layer --minibatch {args.minibatch}", batched)
              + "; target <= 1.30")
        full_sizes = [args.stimuli] if args.skip_full_4n else list(files)
        full = {n: measure(n, None) for n in full_sizes}
        if len(full) == 2:
            print("peak RSS, " + _line("cka_by_layer without --minibatch", full))
        else:
            print(f"peak RSS, cka_by_layer without --minibatch: N={args.stimuli}: "
                  f"{full[args.stimuli]['peak_rss_mib']:.0f} MiB "
                  f"({full[args.stimuli]['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
