"""Activation-file writing: throughput against a raw sequential write, and peak memory.

1. Throughput. The same bytes (random float32 layer states, written batch by batch) go
   (a) through :class:`repsim.activations.ActivationWriter` (uncompressed, chunked netCDF-4,
   temporary file + rename) and (b) with ``numpy.ndarray.tofile`` into one plain file on the
   same disk. Both end with ``fsync``, so the disk, not the page cache, is measured. Rounds
   alternate; the best and the median round of each are reported with their ratio (target
   >= 0.5). On a shared, busy machine the median is noisy: the writer does one extra copy in
   user space (time-major chunks), which suffers most when CPUs are oversubscribed.
2. Peak memory. Each measurement runs in a fresh subprocess and reports its peak RSS
   (``resource.getrusage``) for N and 4N stimuli (target: RSS(4N) <= 1.2 x RSS(N)):
   the writer alone on the same random states, and the whole ``repsim.extract.run``
   pipeline on the synthetic dataset with an untrained model saved as a checkpoint.

    python benchmarks/bench_extract.py                # ~1 GiB per throughput round
    python benchmarks/bench_extract.py --mib 256 --rounds 3 --dir /some/disk
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from repsim import activations

# Per stimulus: 4 layers x T=10 x 32 channels x 16 x 16 float32 = 1.25 MiB (a late-fusion
# model of the paper's size on the synthetic grid).
LAYERS = ("audio.1", "visual.1", "audio.2", "visual.2")
STATE_SHAPE = (10, 32, 16, 16)
BATCH = 64


def _batch(rng: np.random.Generator) -> dict[str, dict[str, np.ndarray]]:
    return {layer: {"h": rng.standard_normal((BATCH, *STATE_SHAPE), dtype=np.float32)}
            for layer in LAYERS}


def _stimuli(n: int) -> dict[str, np.ndarray]:
    return {"stimulus_id": np.array([f"clip{i}|image{i}" for i in range(n)]),
            "condition": np.array(["clean"] * n)}


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_raw(path: Path, batches: int, states) -> float:
    """Seconds to write ``batches`` batches with ``tofile`` and fsync them."""
    started = time.perf_counter()
    with open(path, "wb") as handle:
        for _ in range(batches):
            for by_state in states.values():
                by_state["h"].tofile(handle)
        handle.flush()
        os.fsync(handle.fileno())
    return time.perf_counter() - started


def write_activation_file(path: Path, batches: int, states) -> float:
    """Seconds to stream the same batches through ActivationWriter, rename, and fsync."""
    started = time.perf_counter()
    with activations.ActivationWriter(path, _stimuli(batches * BATCH),
                                      overwrite=True) as writer:
        for _ in range(batches):
            writer.write(states)
    _fsync(path)
    return time.perf_counter() - started


def throughput(directory: Path, mib: int, rounds: int) -> dict:
    """Median MB/s of the writer and of the raw write over alternating rounds."""
    states = _batch(np.random.default_rng(0))
    batch_bytes = sum(s["h"].nbytes for s in states.values())
    batches = max(1, round(mib * 2**20 / batch_bytes))
    total = batches * batch_bytes
    times = {"raw": [], "writer": []}
    for round_ in range(rounds):
        for name, function, path in (("raw", write_raw, directory / "raw.bin"),
                                     ("writer", write_activation_file, directory / "a.h5")):
            times[name].append(function(path, batches, states))
            if round_ < rounds - 1 or name == "raw":
                path.unlink()
    # for information: one layer at one time step for all stimuli (warm page cache)
    with activations.open(directory / "a.h5") as ds:
        started = time.perf_counter()
        picked = activations.select(ds, LAYERS[-1], time=STATE_SHAPE[0] // 2).values
        read_s = time.perf_counter() - started
    (directory / "a.h5").unlink()
    result = {"bytes": total, "stimuli": batches * BATCH,
              "slice_mib": picked.nbytes / 2**20, "slice_ms": 1e3 * read_s}
    for summary, pick in (("best", min), ("median", statistics.median)):
        raw, writer = (total / 1e6 / pick(times[name]) for name in ("raw", "writer"))
        result[summary] = {"raw_mb_s": raw, "writer_mb_s": writer, "ratio": writer / raw}
    return result


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def child_writer(directory: Path, stimuli: int) -> dict:
    """Run in a subprocess: stream ``stimuli`` rows through the writer; report peak RSS."""
    states = _batch(np.random.default_rng(0))
    path = directory / f"rss-{stimuli}.h5"
    with activations.ActivationWriter(path, _stimuli(stimuli)) as writer:
        for start in range(0, stimuli, BATCH):
            count = min(BATCH, stimuli - start)
            writer.write({layer: {"h": s["h"][:count]} for layer, s in states.items()})
    size = path.stat().st_size
    path.unlink()
    return {"peak_rss_mib": _peak_rss_mib(), "file_mib": size / 2**20}


def _make_checkpoint(directory: Path, fusion_layer: int) -> Path:
    """An untrained model on the default synthetic dataset, saved as a repsim checkpoint."""
    import dataclasses

    import torch

    from repsim.checkpoint import FORMAT, FORMAT_VERSION, save_checkpoint
    from repsim.models.fusion import FusionConvLSTM
    from repsim.provenance import library_versions
    from repsim.train import TrainConfig
    from repsim.train.loop import _rng_state

    defaults = TrainConfig()
    config = dataclasses.replace(defaults, model=dataclasses.replace(defaults.model,
                                                                   fusion_layer=fusion_layer))
    dataset = config.data.build()
    torch.manual_seed(0)
    model = FusionConvLSTM(config.model)
    return save_checkpoint(directory / "ckpt.pt", {
        "format": FORMAT, "format_version": FORMAT_VERSION, "config": config.to_dict(),
        "model_state": model.state_dict(), "optimizer_state": {}, "epoch": 0, "metrics": {},
        "versions": library_versions(), "data_fingerprint": dataset.fingerprint(),
        "history": [], "rng_state": _rng_state(torch.Generator(), torch.Generator()),
        "complete": True})


def child_extract(directory: Path, stimuli: int, checkpoint: Path) -> dict:
    """Run in a subprocess: the whole extraction with ``stimuli`` pairs per condition."""
    from repsim import extract

    output = directory / f"extract-{stimuli}.h5"
    result = extract.run(extract.ExtractConfig(checkpoint=str(checkpoint), output=str(output),
                                               n_stimuli=stimuli, device="cpu",
                                               overwrite=True))
    output.unlink()
    return {"peak_rss_mib": _peak_rss_mib(), "file_mib": result.size_bytes / 2**20,
            "stimuli": result.n_stimuli, "seconds": result.seconds}


def _in_subprocess(*args: str) -> dict:
    completed = subprocess.run([sys.executable, __file__, *args], capture_output=True,
                               text=True, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"child {args} failed:\n{completed.stderr}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=1024, help="MiB per throughput round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rss-stimuli", type=int, default=512,
                        help="N for the writer's memory test (N and 4N rows)")
    parser.add_argument("--extract-stimuli", type=int, default=20,
                        help="N pairs per condition for the pipeline's memory test")
    parser.add_argument("--dir", type=Path, default=None,
                        help="where to write (default: a temporary directory in the repo)")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:  # one memory measurement, run in a fresh process
        kind, directory, stimuli, *rest = args.child
        if kind == "writer":
            result = child_writer(Path(directory), int(stimuli))
        else:
            result = child_extract(Path(directory), int(stimuli), Path(rest[0]))
        print(json.dumps(result))
        return

    with tempfile.TemporaryDirectory(dir=args.dir or Path(__file__).resolve().parents[1],
                                     prefix=".bench-extract-") as tmp:
        directory = Path(tmp)
        speed = throughput(directory, args.mib, args.rounds)
        print(f"throughput, {speed['bytes'] / 2**20:.0f} MiB ({speed['stimuli']} stimuli x "
              f"{len(LAYERS)} layers x {STATE_SHAPE}), {args.rounds} alternating rounds, fsync "
              f"included:")
        for summary in ("best", "median"):
            numbers = speed[summary]
            print(f"  {summary:6s} round: raw numpy tofile {numbers['raw_mb_s']:7.1f} MB/s, "
                  f"ActivationWriter {numbers['writer_mb_s']:7.1f} MB/s, ratio "
                  f"{numbers['ratio']:.2f} (target >= 0.50)")
        print(f"  reading one layer at one time step for all stimuli ({speed['slice_mib']:.0f} "
              f"MiB, page cache warm): {speed['slice_ms']:.0f} ms")

        n = args.rss_stimuli
        small = _in_subprocess("--child", "writer", str(directory), str(n))
        large = _in_subprocess("--child", "writer", str(directory), str(4 * n))
        print(f"peak RSS, writer alone: N={n}: {small['peak_rss_mib']:.0f} MiB "
              f"({small['file_mib']:.0f} MiB file); 4N={4 * n}: {large['peak_rss_mib']:.0f} MiB "
              f"({large['file_mib']:.0f} MiB file); ratio "
              f"{large['peak_rss_mib'] / small['peak_rss_mib']:.2f} (target <= 1.20)")

        checkpoint = _make_checkpoint(directory, fusion_layer=3)
        n = args.extract_stimuli
        small = _in_subprocess("--child", "extract", str(directory), str(n), str(checkpoint))
        large = _in_subprocess("--child", "extract", str(directory), str(4 * n),
                               str(checkpoint))
        print(f"peak RSS, python -m repsim.extract (synthetic, late fusion, default "
              f"conditions): {small['stimuli']} stimuli: {small['peak_rss_mib']:.0f} MiB "
              f"({small['file_mib']:.0f} MiB file, {small['seconds']:.1f} s); "
              f"{large['stimuli']} stimuli: {large['peak_rss_mib']:.0f} MiB "
              f"({large['file_mib']:.0f} MiB file, {large['seconds']:.1f} s); ratio "
              f"{large['peak_rss_mib'] / small['peak_rss_mib']:.2f} (target <= 1.20)")


if __name__ == "__main__":
    main()
