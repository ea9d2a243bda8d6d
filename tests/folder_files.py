"""Test helper: a small folder dataset written from scratch (WAVs with scipy, PNGs with Pillow).

Three classes with uneven counts; clips at mixed rates (8, 16, 11.025 kHz), mono and stereo,
int16, int32, uint8 and float32; images of mixed sizes in modes L, RGB, RGBA and P.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from scipy.io import wavfile

CLASSES = {"cat": (7, 6), "dog": (5, 8), "owl": (9, 5)}  # class: (clips, images), uneven
RATES = (8000, 16000, 11025)
SIZES = ((12, 12), (20, 15), (9, 31))
MODES = ("L", "RGB", "RGBA", "P")


def _samples(rng: np.random.Generator, kind: int, n: int, pitch: float, rate: int) -> np.ndarray:
    """A tone in noise in one of four sample types, mono or stereo by ``kind``."""
    t = np.arange(n) / rate
    wave = 0.5 * np.sin(2 * np.pi * pitch * t) + 0.05 * rng.normal(size=n)
    wave = np.clip(wave, -1, 1)
    if kind % 4 == 0:
        data = (wave * 32767).astype(np.int16)
    elif kind % 4 == 1:
        data = (wave * 2**31 * 0.99).astype(np.int32)
    elif kind % 4 == 2:
        data = (wave * 127 + 128).astype(np.uint8)
    else:
        data = wave.astype(np.float32)
    return np.stack([data, data], axis=1) if kind % 2 else data


def write_folder_dataset(root: Path, classes: dict[str, tuple[int, int]] = CLASSES,
                         seed: int = 0) -> Path:
    """Write ``root/audio/<class>/*.wav`` and ``root/images/<class>/*.png``; returns root.

    Each class has its own tone pitch and its own bright quadrant, so a tiny model can learn.
    """
    rng = np.random.default_rng(seed)
    for label, (name, (n_clips, n_images)) in enumerate(classes.items()):
        audio, images = root / "audio" / name, root / "images" / name
        audio.mkdir(parents=True)
        images.mkdir(parents=True)
        for i in range(n_clips):
            rate = RATES[i % len(RATES)]
            n = int(rate * rng.uniform(0.3, 1.2))
            wavfile.write(audio / f"{name}_{i}.wav", rate,
                          _samples(rng, i, n, 300.0 * (label + 1), rate))
        for i in range(n_images):
            height, width = SIZES[i % len(SIZES)]
            pixels = rng.uniform(0, 60, size=(height, width))
            pixels[: height // 2 if label != 1 else height,
                   : width // 2 if label != 2 else width] += 180
            grey = Image.fromarray(pixels.clip(0, 255).astype(np.uint8), mode="L")
            mode = MODES[i % len(MODES)]
            picture = grey if mode == "L" else grey.convert(mode)
            picture.save(images / f"{name}_{i}.png")
    return root
