"""Test helpers that write small MNIST-style and FSDD-style data folders from scratch.

The IDX writer follows the format description (two zero bytes, type code, rank, big-endian
uint32 sizes, big-endian data) with ``struct``, independently of ``repsim.data.io``.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
from scipy.io import wavfile

IDX_CODES = {np.dtype("u1"): 0x08, np.dtype("i1"): 0x09, np.dtype("i2"): 0x0B,
             np.dtype("i4"): 0x0C, np.dtype("f4"): 0x0D, np.dtype("f8"): 0x0E}


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding of ``array``."""
    array = np.asarray(array)
    header = struct.pack(">BBBB", 0, 0, IDX_CODES[array.dtype], array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx(path: Path, array: np.ndarray, gzipped: bool) -> Path:
    """Write ``array`` as an IDX file, gzip-compressed or raw."""
    data = idx_bytes(array)
    path.write_bytes(gzip.compress(data) if gzipped else data)
    return path


def write_mini_avmnist(root: Path, n_train: int = 100, n_test: int = 50,
                       speakers: tuple[str, ...] = ("alice", "bob"), clips_per_pair: int = 12,
                       seed: int = 0) -> Path:
    """A tiny avmnist data root: ``mnist/`` (train gzipped, t10k raw) and FSDD-named clips.

    Images are random 28x28 uint8 with labels cycling 0-9; clips are 8 kHz int16 noise
    bursts of 0.3-1.3 s (so both cropping and padding happen), one per digit, speaker and
    index 0..clips_per_pair-1.
    """
    rng = np.random.default_rng(seed)
    mnist = root / "mnist"
    mnist.mkdir(parents=True)
    for prefix, n, gzipped in (("train", n_train, True), ("t10k", n_test, False)):
        suffix = ".gz" if gzipped else ""
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        write_idx(mnist / f"{prefix}-images-idx3-ubyte{suffix}", images, gzipped)
        write_idx(mnist / f"{prefix}-labels-idx1-ubyte{suffix}", labels, gzipped)
    recordings = root / "fsdd" / "recordings"
    recordings.mkdir(parents=True)
    for digit in range(10):
        for speaker in speakers:
            for index in range(clips_per_pair):
                n_samples = int(rng.integers(2400, 10400))
                samples = (rng.normal(0, 3000 + 300 * digit, n_samples)).astype(np.int16)
                wavfile.write(recordings / f"{digit}_{speaker}_{index}.wav", 8000, samples)
    return root
