"""Readers for the raw file formats behind the real datasets: IDX (MNIST), WAV (FSDD, a
user's clips) and images (PNG, JPEG, ``.npy``: a user's pictures).

Every reader takes every size from the file itself and refuses a damaged file with a
ValueError that names it, so a bad download is reported where it is, not as a shape error
somewhere downstream. What a header promises is checked against the file's size and the
limits below before anything of that size is allocated, and NaN or infinite values are
refused: one such sample would turn every feature it touches into NaN.
"""

from __future__ import annotations

import gzip
import math
import os
import re
import warnings
import zlib
from typing import Literal

import numpy as np
from scipy.io import wavfile
from scipy.signal import resample_poly

# Luma weights (ITU-R BT.601, as Pillow's "L" conversion uses) for RGB arrays read from .npy.
_LUMA = np.array([0.299, 0.587, 0.114])
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".npy")
# Limits on what a file may hold (documented in docs/datasets.md): a clip's length and sample
# rate (resampling allocates in proportion to both), and an image's pixels (Pillow's own
# default limit, a quarter gigabyte of 24-bit colour).
MAX_WAV_SECONDS = 600.0
MAX_WAV_RATE = 768_000
MAX_IMAGE_PIXELS = 89_478_485

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
    uint32 per dimension.

    Parameters
    ----------
    path
        The file (MNIST's ``*-ubyte`` or ``*-ubyte.gz``).

    Returns
    -------
    numpy.ndarray

    Raises
    ------
    FileNotFoundError
        For a missing file.
    ValueError
        Naming the file, for a bad magic number, a truncated body, trailing bytes or a damaged
        gzip stream.
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


def _missing_audio_bytes(name: str) -> tuple[int, int] | None:
    """``(promised, present)`` bytes of the ``data`` chunk of a RIFF/RIFX WAV whose header
    promises more sample bytes than the file holds (a clip cut short in a copy or a
    download, which scipy reads without a word), else ``None``. Reads chunk headers only."""
    size = os.path.getsize(name)
    with open(name, "rb") as handle:
        head = handle.read(12)
        if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX") or head[8:12] != b"WAVE":
            return None  # not a form this check knows; scipy judges it
        order: Literal["little", "big"] = "little" if head[:4] == b"RIFF" else "big"
        offset = 12
        while offset + 8 <= size:
            handle.seek(offset)
            chunk = handle.read(8)
            length = int.from_bytes(chunk[4:], order)
            if chunk[:4] == b"data":
                present = size - offset - 8
                # 0xFFFFFFFF: "length unknown", written by recorders that stream to a pipe
                return (length, present) if present < length < 0xFFFFFFFF else None
            offset += 8 + length + (length & 1)
    return None


def read_wav(path: str | os.PathLike, sample_rate: int) -> np.ndarray:
    """Read a WAV file as a mono float32 waveform in [-1, 1].

    Integer PCM is scaled by its type's range (float PCM is taken as is); several channels are
    averaged; another sample rate is converted with polyphase resampling
    (``scipy.signal.resample_poly``); the result is clipped to [-1, 1].

    Parameters
    ----------
    path
        The file.
    sample_rate
        The rate wanted, in Hz.

    Returns
    -------
    numpy.ndarray

    Raises
    ------
    FileNotFoundError
        For a missing file.
    ValueError
        Naming the file, when it is not readable audio, is truncated (its header promises
        more samples than it holds), holds no samples, NaN or infinite ones,
        lasts longer than ``MAX_WAV_SECONDS`` (600 s) or is sampled faster than
        ``MAX_WAV_RATE`` (768 kHz).
    """
    name = os.fspath(path)
    if not 0 < sample_rate <= MAX_WAV_RATE:
        raise ValueError(f"sample_rate must be positive and at most {MAX_WAV_RATE} Hz, "
                         f"got {sample_rate}")
    if not os.path.isfile(name):
        raise FileNotFoundError(f"no such WAV file: {name}")
    missing = _missing_audio_bytes(name)
    if missing is not None:
        raise ValueError(f"{name} is truncated: its header promises {missing[0]:,} bytes of "
                         f"samples and the file holds {missing[1]:,}")
    try:
        with warnings.catch_warnings():
            # Unknown chunks (e.g. LIST metadata) are skipped by scipy; they are not errors.
            warnings.simplefilter("ignore", wavfile.WavFileWarning)
            rate, samples = wavfile.read(name)
    except UnboundLocalError as error:  # scipy's failure on a WAVE without a "fmt " chunk
        raise ValueError(f"{name} is not a readable WAV file (no 'fmt ' chunk)") from error
    except (ValueError, EOFError, OSError, IndexError) as error:
        raise ValueError(f"{name} is not a readable WAV file ({error})") from error
    if samples.size == 0:
        raise ValueError(f"{name} holds no audio samples")
    if rate <= 0:
        raise ValueError(f"{name} has an invalid sample rate {rate}")
    if rate > MAX_WAV_RATE:
        raise ValueError(f"{name} says it is sampled at {rate:,} Hz; sample rates may be at "
                         f"most {MAX_WAV_RATE} Hz")
    seconds = len(samples) / rate
    if seconds > MAX_WAV_SECONDS:
        raise ValueError(f"{name} lasts {seconds:,.0f} s ({len(samples):,} samples at {rate} Hz, "
                         f"as its header says); clips may last at most {MAX_WAV_SECONDS:g} s")
    if samples.dtype.kind == "f" and not np.isfinite(samples).all():
        raise ValueError(f"{name} holds NaN or infinite samples")
    waveform = _to_float(samples)
    if waveform.ndim == 2:
        waveform = waveform.mean(axis=1, dtype=np.float32)
    if rate != sample_rate:
        divisor = math.gcd(int(rate), int(sample_rate))
        waveform = resample_poly(waveform, sample_rate // divisor, int(rate) // divisor)
    return np.clip(waveform, -1.0, 1.0).astype(np.float32)


def _grey_from_array(array: np.ndarray, name: str) -> np.ndarray:
    """A ``.npy`` array (H, W) grey or (H, W, 3|4) RGB(A) as grey float in [0, 1]: unsigned
    integers are scaled by their type's maximum, floats must lie in [0, 1]; signed integers
    (which have no pixel range: numpy's default int64 of 0..255 would read as black or
    white) and NaN or infinite values are refused."""
    rgb = array.ndim == 3 and array.shape[2] in (3, 4)
    if array.ndim != 2 and not rgb:
        raise ValueError(f"{name} holds an array of shape {array.shape}, not an image "
                         f"(height, width) or (height, width, 3 or 4)")
    if array.dtype.kind not in "ufb":
        raise ValueError(f"{name} holds {array.dtype} values; images are unsigned integers "
                         f"(scaled by their type's maximum, 255 for uint8) or floats in "
                         f"[0, 1]: convert it, e.g. with array.astype(numpy.uint8)")
    scale = float(np.iinfo(array.dtype).max) if array.dtype.kind == "u" else 1.0
    values = array[..., :3] if rgb else array
    if array.dtype.kind == "f":
        if not np.isfinite(values).all():
            raise ValueError(f"{name} holds NaN or infinite values")
        low, high = float(values.min()), float(values.max())
        if low < 0 or high > 1:
            raise ValueError(f"{name} holds floats outside [0, 1] (from {low:g} to {high:g}); "
                             f"scale them to [0, 1], or store unsigned integers")
    grey = values.astype(np.float64) / scale
    if rgb:
        grey = grey @ _LUMA
    return np.clip(np.asarray(grey, dtype=np.float32), 0.0, 1.0)


def _read_npy(name: str) -> np.ndarray:
    """A ``.npy`` file's array, read once its header's promise fits the file's size and
    :data:`MAX_IMAGE_PIXELS` (a header may promise gigabytes in a file of a few bytes)."""
    try:
        with open(name, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            if version not in ((1, 0), (2, 0)):
                raise ValueError(f"format version {version} is not supported")
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, _, dtype = read_header(handle)
            body = os.fstat(handle.fileno()).st_size - handle.tell()
    except (ValueError, EOFError, OSError) as error:
        raise ValueError(f"{name} is not a readable .npy array ({error})") from error
    promised = math.prod(shape) * dtype.itemsize
    if promised > body:
        raise ValueError(f"{name} is truncated: its header promises shape {shape} of {dtype} "
                         f"({promised:,} bytes), the file holds {body:,}")
    if len(shape) >= 2 and shape[0] * shape[1] > MAX_IMAGE_PIXELS:
        raise ValueError(f"{name}: its header promises {shape[0]} x {shape[1]} pixels; "
                         f"images may have at most {MAX_IMAGE_PIXELS:,} pixels")
    try:
        return np.load(name, allow_pickle=False)
    except (ValueError, EOFError, OSError) as error:
        raise ValueError(f"{name} is not a readable .npy array ({error})") from error


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read a PNG or JPEG (any size and mode, with Pillow) or a ``.npy`` array as a grey float32
    image in [0, 1].

    Colour is converted to grey with Pillow's "L" luma (alpha is ignored); 16-bit grey is
    scaled by 65535; a ``.npy`` array's unsigned integers are scaled by their type's maximum and
    its floats must lie in [0, 1] (signed integers, NaN and infinity are refused).

    Parameters
    ----------
    path
        The file.

    Returns
    -------
    numpy.ndarray
        ``(height, width)``.

    Raises
    ------
    FileNotFoundError
        For a missing file.
    ValueError
        Naming the file and the reason, when it cannot be decoded or holds more than
        ``MAX_IMAGE_PIXELS`` pixels.
    """
    name = os.fspath(path)
    if not os.path.isfile(name):
        raise FileNotFoundError(f"no such image file: {name}")
    if name.lower().endswith(".npy"):
        grey = _grey_from_array(_read_npy(name), name)
    else:
        from PIL import Image, UnidentifiedImageError  # Pillow: only when reading images

        try:
            with warnings.catch_warnings():  # the size is checked below, in one line
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                image = Image.open(name)
        except Image.DecompressionBombError as error:
            found = re.search(r"\((\d+) pixels\)", str(error))
            pixels = f"{int(found.group(1)):,}" if found else "too many"
            raise ValueError(f"{name} holds {pixels} pixels; images may have at most "
                             f"{MAX_IMAGE_PIXELS:,} pixels") from None
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
            raise ValueError(f"{name} is not a readable image ({error})") from error
        width, height = image.size
        if width * height > MAX_IMAGE_PIXELS:
            image.close()
            raise ValueError(f"{name} holds {width * height:,} pixels ({width} x {height}); "
                             f"images may have at most {MAX_IMAGE_PIXELS:,} pixels")
        try:
            with image:
                image.load()
                if image.mode.startswith("I"):  # 16-bit grey ("I;16", or "I" once decoded)
                    grey = np.clip(np.asarray(image, dtype=np.float32) / 65535.0, 0.0, 1.0)
                elif image.mode == "F":
                    grey = np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0)
                else:
                    grey = np.asarray(image.convert("L"), dtype=np.float32) / 255.0
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
            raise ValueError(f"{name} is not a readable image ({error})") from error
    if grey.size == 0:
        raise ValueError(f"{name} holds an empty image")
    return np.ascontiguousarray(grey, dtype=np.float32)
