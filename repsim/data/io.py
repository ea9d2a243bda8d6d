"""Readers for the raw file formats behind the real datasets: IDX (MNIST) and WAV (FSDD).

Both readers take every size from the file itself and refuse a damaged file with a
ValueError that names it, so a bad download is reported where it is, not as a shape error
somewhere downstream.
"""

from __future__ import annotations

import gzip
import math
import os
import warnings
import zlib

import numpy as np
from scipy.io import wavfile
from scipy.signal import resample_poly

# IDX type codes (third byte of the magic number) and the big-endian dtypes they stand for.
_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


def _read_maybe_gzipped(path: str | os.PathLike) -> bytes:
    """The file's bytes, decompressed when it is gzip (recognised by content, not by name)."""
    with open(path, "rb") as handle:
        raw = handle.read()
    if not raw.startswith(_GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as error:
        raise ValueError(f"{os.fspath(path)} is a damaged gzip file ({error})") from error


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (gzipped or raw) into an array of the shape and type its header gives.

    The header is two zero bytes, a type code, the number of dimensions, then one big-endian
    uint32 per dimension. A missing file raises FileNotFoundError; a bad magic number, a
    truncated body or trailing bytes raise ValueError naming the file.
    """
    name = os.fspath(path)
    data = _read_maybe_gzipped(path)
    if len(data) < 4:
        raise ValueError(f"{name} is not an IDX file: only {len(data)} bytes")
    zero0, zero1, type_code, ndim = data[:4]
    if zero0 or zero1 or type_code not in _IDX_DTYPES or ndim == 0:
        magic = int.from_bytes(data[:4], "big")
        raise ValueError(f"{name} is not an IDX file: bad magic number {magic:#010x}")
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise ValueError(f"{name} is truncated: the IDX header needs {header_size} bytes, "
                         f"the file has {len(data)}")
    shape = tuple(int(n) for n in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = _IDX_DTYPES[type_code]
    expected = header_size + math.prod(shape) * dtype.itemsize
    if len(data) < expected:
        raise ValueError(f"{name} is truncated: its header promises shape {shape} "
                         f"({expected} bytes) but the file has {len(data)} bytes")
    if len(data) > expected:
        raise ValueError(f"{name} is corrupt: {len(data) - expected} bytes after the "
                         f"{shape} array its header describes")
    array = np.frombuffer(data, dtype=dtype, offset=header_size).reshape(shape)
    return array.astype(dtype.newbyteorder("="))


def _to_float(samples: np.ndarray) -> np.ndarray:
    """PCM samples of any WAV sample type as float32, full scale at +-1."""
    if samples.dtype == np.uint8:  # 8-bit WAV is unsigned, centred on 128
        return ((samples.astype(np.float32) - 128.0) / 128.0).astype(np.float32)
    if np.issubdtype(samples.dtype, np.signedinteger):
        # scipy left-justifies 24-bit samples in int32, so the container width is the scale.
        scale = float(-np.iinfo(samples.dtype).min)
        return (samples.astype(np.float64) / scale).astype(np.float32)
    return samples.astype(np.float32)


def read_wav(path: str | os.PathLike, sample_rate: int) -> np.ndarray:
    """Read a WAV file as a mono float32 waveform in [-1, 1] at ``sample_rate`` Hz.

    Integer PCM is scaled by its type's range (float PCM is taken as is); several channels
    are averaged; another sample rate is converted with polyphase resampling
    (``scipy.signal.resample_poly``); the result is clipped to [-1, 1]. A file that is not
    readable audio, or holds no samples, raises ValueError naming it; a missing file raises
    FileNotFoundError.
    """
    name = os.fspath(path)
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    if not os.path.isfile(name):
        raise FileNotFoundError(f"no such WAV file: {name}")
    try:
        with warnings.catch_warnings():
            # Unknown chunks (e.g. LIST metadata) are skipped by scipy; they are not errors.
            warnings.simplefilter("ignore", wavfile.WavFileWarning)
            rate, samples = wavfile.read(name)
    except (ValueError, EOFError, OSError, IndexError) as error:
        raise ValueError(f"{name} is not a readable WAV file ({error})") from error
    if samples.size == 0:
        raise ValueError(f"{name} holds no audio samples")
    if rate <= 0:
        raise ValueError(f"{name} has an invalid sample rate {rate}")
    waveform = _to_float(samples)
    if waveform.ndim == 2:
        waveform = waveform.mean(axis=1, dtype=np.float32)
    if rate != sample_rate:
        divisor = math.gcd(int(rate), int(sample_rate))
        waveform = resample_poly(waveform, sample_rate // divisor, int(rate) // divisor)
    return np.clip(waveform, -1.0, 1.0).astype(np.float32)
