"""Hostile data files: one NaN sample, integer images of any width, headers that promise more
than the file holds or a documented limit allows. Each is one line naming the file, from the
reader, from a folder dataset's build and from the trainer (exit status 2), and never an
allocation of gigabytes. Every file is small and made here; only its header lies."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import numpy as np
import pytest
from folder_files import write_folder_dataset
from paths import REPO_ROOT
from scipy.io import wavfile

from repsim.data import build_dataset
from repsim.data.io import MAX_IMAGE_PIXELS, MAX_WAV_RATE, MAX_WAV_SECONDS, read_image, read_wav
from repsim.train.cli import main as train_main

GRID = {"timesteps": 2, "height": 4, "width": 4}
SMALL = {"a": (5, 5), "b": (5, 5)}
# The most memory a reader of one small hostile file may take, in the child that reads it.
ADDRESS_SPACE = 3 << 30


# --- the hostile files -------------------------------------------------------------------

def wav_with_nan(path: Path) -> Path:
    samples = np.sin(np.arange(800, dtype=np.float32) / 5)
    samples[317] = np.nan
    wavfile.write(path, 8000, samples)
    return path


def wav_with_inf(path: Path) -> Path:
    samples = np.zeros(800, dtype=np.float32)
    samples[5] = np.inf
    wavfile.write(path, 8000, samples)
    return path


def wav_at_one_hertz(path: Path) -> Path:
    """20,000 samples (40 KB) said to be 1 Hz: 5.6 hours, 160 million samples at 8 kHz."""
    wavfile.write(path, 1, np.zeros(20_000, dtype=np.int16))
    return path


def wav_at_two_gigahertz(path: Path) -> Path:
    """800 samples said to be 2**31 - 1 Hz: resampling filters would have billions of taps."""
    wavfile.write(path, 2**31 - 1, np.zeros(800, dtype=np.int16))
    return path


def npy_with_nan(path: Path) -> Path:
    image = np.full((6, 6), 0.5, dtype=np.float32)
    image[2, 3] = np.nan
    np.save(path, image)
    return path


def npy_int64_rgb(path: Path) -> Path:
    """(H, W, 3) int64 in 0..255, as numpy makes by default: it read as all white."""
    np.save(path, np.random.default_rng(0).integers(0, 256, size=(6, 6, 3)))
    return path


def npy_int16_grey(path: Path) -> Path:
    np.save(path, np.full((6, 6), 100, dtype=np.int16))
    return path


def npy_float_0_to_255(path: Path) -> Path:
    np.save(path, np.random.default_rng(0).uniform(0, 255, size=(6, 6)).astype(np.float32))
    return path


def npy_header_60000_squared(path: Path) -> Path:
    """A .npy header promising 60000 x 60000 float64 (26.8 GiB), then 1 KB."""
    with open(path, "wb") as handle:
        np.lib.format.write_array_header_1_0(handle, {"descr": "<f8", "fortran_order": False,
                                                      "shape": (60000, 60000)})
        handle.write(bytes(1024))
    return path


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def png(path: Path, width: int, height: int, rows: int) -> Path:
    """A grey PNG header of ``width`` x ``height`` and ``rows`` rows of zeros compressed."""
    squeeze = zlib.compressobj(9)
    row = bytes(width + 1)  # filter byte 0 and the pixels
    body = b"".join(squeeze.compress(row) for _ in range(rows)) + squeeze.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n"
                     + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
                     + _png_chunk(b"IDAT", body) + _png_chunk(b"IEND", b""))
    return path


def png_20000_squared(path: Path) -> Path:
    """A 20000 x 20000 PNG header (Pillow's DecompressionBombError) and one row: 90 bytes."""
    return png(path, 20000, 20000, 1)


def png_10000_squared(path: Path) -> Path:
    """A complete 10000 x 10000 PNG of zeros, 100 megapixels, in about 100 KB."""
    return png(path, 10000, 10000, 10000)


# name: (writer, file suffix, modality, what the one line says)
HOSTILE = {
    "wav_with_nan": (wav_with_nan, ".wav", "audio", "holds NaN or infinite samples"),
    "wav_with_inf": (wav_with_inf, ".wav", "audio", "holds NaN or infinite samples"),
    "wav_at_one_hertz": (wav_at_one_hertz, ".wav", "audio",
                         f"clips may last at most {MAX_WAV_SECONDS:g} s"),
    "wav_at_two_gigahertz": (wav_at_two_gigahertz, ".wav", "audio",
                             f"sample rates may be at most {MAX_WAV_RATE} Hz"),
    "npy_with_nan": (npy_with_nan, ".npy", "images", "holds NaN or infinite values"),
    "npy_int64_rgb": (npy_int64_rgb, ".npy", "images", "holds int64 values"),
    "npy_int16_grey": (npy_int16_grey, ".npy", "images", "holds int16 values"),
    "npy_float_0_to_255": (npy_float_0_to_255, ".npy", "images",
                           "holds floats outside [0, 1]"),
    "npy_header_60000_squared": (npy_header_60000_squared, ".npy", "images",
                                 "its header promises shape (60000, 60000)"),
    "png_20000_squared": (png_20000_squared, ".png", "images",
                          f"images may have at most {MAX_IMAGE_PIXELS:,} pixels"),
    "png_10000_squared": (png_10000_squared, ".png", "images",
                          f"images may have at most {MAX_IMAGE_PIXELS:,} pixels"),
}
NAMES = list(HOSTILE)


def hostile_file(folder: Path, name: str) -> Path:
    writer, suffix, _, _ = HOSTILE[name]
    folder.mkdir(parents=True, exist_ok=True)
    return writer(folder / f"{name}{suffix}")


def read(path: Path):
    return read_wav(path, 8000) if path.suffix == ".wav" else read_image(path)


def hostile_folder(root: Path, name: str) -> Path:
    """A good two-class folder dataset with one hostile file among class ``b``'s files."""
    write_folder_dataset(root, classes=SMALL)
    return hostile_file(root / HOSTILE[name][2] / "b", name)


# --- the tests ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_the_reader_refuses_with_one_line_naming_the_file(tmp_path, name):
    path = hostile_file(tmp_path, name)
    assert path.stat().st_size < 200_000
    with pytest.raises(ValueError) as error:
        read(path)
    message = str(error.value)
    assert message.startswith(str(path)) and HOSTILE[name][3] in message, message
    assert "\n" not in message


READ_IN_A_SMALL_PROCESS = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))
from repsim.data.io import read_image, read_wav
path = sys.argv[1]
try:
    read_wav(path, 8000) if path.endswith(".wav") else read_image(path)
except ValueError as error:
    print("refused:", error)
"""


@pytest.mark.parametrize("name", ["wav_at_one_hertz", "wav_at_two_gigahertz",
                                  "npy_header_60000_squared", "png_20000_squared"])
def test_a_lying_header_costs_no_memory(tmp_path, name):
    """Read in a process allowed 3 GiB of address space: what the header promises would need
    from 1.3 to 50 GB, and would end in a MemoryError traceback."""
    path = hostile_file(tmp_path, name)
    script = textwrap.dedent(READ_IN_A_SMALL_PROCESS.format(limit=ADDRESS_SPACE))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True,
                          text=True, cwd=REPO_ROOT, env=env, timeout=120)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert done.stdout.startswith(f"refused: {path}"), done.stdout


@pytest.mark.parametrize("name", ["wav_with_nan", "npy_int64_rgb", "npy_with_nan",
                                  "png_20000_squared"])
def test_a_folder_dataset_with_one_hostile_file_is_refused_naming_it(tmp_path, name):
    path = hostile_folder(tmp_path / "data", name)
    with pytest.raises(ValueError) as error:
        build_dataset("folder", data_dir=tmp_path / "data", **GRID)
    assert str(error.value).startswith(str(path)) and "\n" not in str(error.value)


@pytest.mark.parametrize("name", ["wav_with_nan", "npy_float_0_to_255"])
def test_the_trainer_exits_2_before_training_and_writes_nothing(tmp_path, capsys, name):
    path = hostile_folder(tmp_path / "data", name)
    code = train_main(["--dataset", "folder", "--data-dir", str(tmp_path / "data"),
                       "--timesteps", "2", "--height", "4", "--width", "4",
                       "--out-dir", str(tmp_path / "runs" / "mine"), "--device", "cpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith(f"error: {path}"), err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(("dtype", "scale"), [("uint8", 255), ("uint16", 65535),
                                              ("uint32", 2**32 - 1)])
def test_unsigned_integer_images_are_scaled_by_their_range(tmp_path, dtype, scale):
    """Grey and RGB alike, against luma weights written out here (ITU-R BT.601)."""
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, np.iinfo(dtype).max, size=(5, 7, 3), dtype=np.uint64).astype(dtype)
    np.save(tmp_path / "rgb.npy", rgb)
    np.save(tmp_path / "grey.npy", rgb[..., 0])
    luma = (0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]) / scale
    np.testing.assert_allclose(read_image(tmp_path / "rgb.npy"), luma, rtol=1e-6)
    np.testing.assert_allclose(read_image(tmp_path / "grey.npy"), rgb[..., 0] / scale,
                               rtol=1e-6)


def test_float_images_in_range_are_kept_as_they_are(tmp_path):
    image = np.random.default_rng(2).uniform(0, 1, size=(4, 9)).astype(np.float32)
    image[0, 0], image[0, 1] = 0.0, 1.0
    np.save(tmp_path / "ok.npy", image)
    np.testing.assert_array_equal(read_image(tmp_path / "ok.npy"), image)
