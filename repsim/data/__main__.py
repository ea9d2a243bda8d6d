"""``python -m repsim.data``: build a dataset, print what it holds, draw a few stimuli.

``--list`` lists every dataset name: repsim's own, installed plugins' (entry-point group
``repsim.datasets``), each with where it comes from. The summary lists the classes, and
pairs, clips and images per split and class, the speakers of each split,
the frame grid, the sample rate and the dataset fingerprint. ``--figure`` saves a picture of
a few test pairs: the audio as log-mel windows (one per time step) and the visual frames,
clean and with white noise at ``--snr`` dB. From Python: :func:`describe` and
:func:`stimuli_figure`.
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING

import numpy as np

from repsim.cli import (
    CommandParser,
    add_verbose,
    add_version,
    command_prog,
    key_value,
    setup_logging,
    user_errors_exit_2,
)
from repsim.conditions import CLEAN
from repsim.config import config_defaults
from repsim.data.config import DataConfig
from repsim.data.registry import build_dataset, dataset_builder, dataset_entries, dataset_names
from repsim.provenance import atomic_path

if TYPE_CHECKING:  # torch and matplotlib are imported where they are used: --help needs neither
    import torch
    from matplotlib.figure import Figure

    from repsim.data.base import AVDataset

FIGURE_FORMATS = ("png", "pdf", "svg")
GAP = 2  # blank columns between the time steps of a stimulus row in the figure
EXAMPLES = """examples:
  %(prog)s                                        # the synthetic dataset's summary
  %(prog)s --figure stimuli.png --snr -5          # and a few pairs, clean and noisy
  %(prog)s --dataset avmnist --data-dir ../shared/data
  %(prog)s --data-option distractor_snr=0 --figure talker.png
"""


def _count_table(dataset: AVDataset) -> list[str]:
    """Rows ``split kind total n_0 .. n_k`` for pairs, clips and images, one column per class
    (headed by the digit or the class name)."""
    import torch

    labels = dataset.label_names
    width = max(5, *(len(label) for label in labels))
    header = f"{'split':<6} {'kind':<7} {'total':>6} " + " ".join(f"{c:>{width}}"
                                                                for c in labels)
    rows = [header]
    for name, split in dataset.splits.items():
        for kind, classes in (("pairs", split.clip_digit[split.pair_audio]),
                              ("clips", split.clip_digit), ("images", split.image_digit)):
            counts = torch.bincount(classes, minlength=len(labels)).tolist()
            rows.append(f"{name:<6} {kind:<7} {len(classes):>6} "
                        + " ".join(f"{c:>{width}}" for c in counts))
    return rows


def list_datasets() -> str:
    """One line per dataset name: where it comes from, and the first line of its module's
    docstring (else its builder's), or the one-line error that loading it gives (what
    ``--list`` prints)."""
    lines = []
    for entry in dataset_entries():
        try:
            builder = dataset_builder(entry.name)
            doc = (inspect.getdoc(inspect.getmodule(builder)) or inspect.getdoc(builder)
                   or "").split("\n")[0]
        except ValueError as error:
            doc = f"error: {error}"
        lines.append(f"{entry.name:<12} {entry.source:<12} {entry.target:<32} {doc}")
    return "\n".join(lines)


def describe(dataset: AVDataset) -> str:
    """A plain-text summary of a built dataset (what ``python -m repsim.data`` prints)."""
    from repsim.data.fingerprint import content_digest

    t, (h, w) = dataset.timesteps, dataset.frame_shape
    first = next(iter(dataset.splits.values()))
    seconds = first.waveforms.shape[1] / dataset.sample_rate
    lines = [
        f"dataset {dataset.name}: {len(dataset.splits)} splits, sample rate "
        f"{dataset.sample_rate} Hz, clips of {first.waveforms.shape[1]} samples "
        f"({seconds:.2f} s)",
        f"frames: T={t} steps of {h}x{w}; audio and visual batches are (B, {t}, 1, {h}, {w})",
        f"{dataset.n_classes} classes: {', '.join(dataset.label_names)}",
        "counts per split and class:",
        *("  " + row for row in _count_table(dataset)),
        "speakers per split:",
    ]
    for name, split in dataset.splits.items():
        lines.append(f"  {name:<6} {len(split.speakers):>3}: {', '.join(split.speakers)}")
    lines += [f"options: {json.dumps(dataset.config, sort_keys=True)}",
              f"fingerprint: {content_digest(dataset.fingerprint())}"]
    return "\n".join(lines)


def _example_pairs(dataset: AVDataset, split: str, count: int) -> torch.Tensor:
    """Indices of the first ``count`` pairs of ``split`` with different classes."""
    import torch

    chosen, seen = [], set()
    for i, digit in enumerate(dataset.splits[split].clip_digit[dataset.splits[split]
                                                              .pair_audio].tolist()):
        if digit not in seen:
            chosen.append(i)
            seen.add(digit)
        if len(chosen) == count:
            break
    return torch.tensor(chosen, dtype=torch.int64)


def _strip(frames: torch.Tensor) -> np.ndarray:
    """(T, 1, H, W) frames side by side, GAP blank (NaN) columns apart: (H, T * (W + GAP))."""
    steps, _, height, width = frames.shape
    row = np.full((height, steps * (width + GAP) - GAP), np.nan)
    for t in range(steps):
        row[:, t * (width + GAP): t * (width + GAP) + width] = frames[t, 0].numpy()
    return row


def stimuli_figure(dataset: AVDataset, *, split: str = "test", examples: int = 3,
                   snr_db: float = 0.0, seed: int = 0) -> Figure:
    """Audio (log-mel windows) and visual frame sequences of a few pairs, clean and noisy.

    One column per example pair; rows: audio clean, audio at ``snr_db``, visual clean,
    visual at ``snr_db`` (white noise drawn afresh per step). Each panel shows the T time
    steps left to right. Audio colours are the standardised log-mel values on one scale for
    clean and noisy; within a window, low mel bands are at the bottom.
    """
    import torch
    from matplotlib.layout_engine import ConstrainedLayoutEngine

    from repsim.data.base import make_batch
    from repsim.plotting import new_figure, theme  # seaborn and pandas: only when drawing

    if split not in dataset.splits:
        raise ValueError(f"no split {split!r}; the dataset has {', '.join(dataset.splits)}")
    if examples < 1:
        raise ValueError(f"examples must be at least 1, got {examples}")
    if math.isnan(snr_db):
        raise ValueError("snr_db must be a number of dB or inf, not NaN")
    data = dataset.splits[split]
    pairs = _example_pairs(dataset, split, examples)
    audio_index, visual_index = data.pair_audio[pairs], data.pair_visual[pairs]
    clean = make_batch(data, dataset.features, audio_index, visual_index)
    noisy = make_batch(data, dataset.features, audio_index, visual_index, audio_snr=snr_db,
                       visual_snr=snr_db, generator=torch.Generator().manual_seed(seed))
    noise = f"{snr_db:g} dB SNR"
    views = [("audio", CLEAN, clean.audio), ("audio", noise, noisy.audio),
             ("visual", CLEAN, clean.visual), ("visual", noise, noisy.visual)]
    both = torch.cat([clean.audio, noisy.audio])
    audio_range = (float(both.min()), float(both.max()))

    steps, (height, width) = dataset.timesteps, dataset.frame_shape
    panel_height = 0.55
    panel_width = panel_height * (steps * (width + GAP) - GAP) / height
    with theme():
        fig, axes = new_figure(len(pairs) * len(views), 1,
                               panel_size=(panel_width + 1.2, panel_height + 0.12))
        for e in range(len(pairs)):
            speaker = (data.speakers[int(data.clip_speaker[audio_index[e]])]
                       if data.speakers else "unknown speaker")
            for v, (modality, condition, values) in enumerate(views):
                ax = axes[e * len(views) + v, 0]
                if modality == "audio":
                    ax.imshow(_strip(values[e]), cmap="magma", origin="lower",
                              vmin=audio_range[0], vmax=audio_range[1],
                              interpolation="nearest")
                else:
                    ax.imshow(_strip(values[e]), cmap="gray", vmin=0.0, vmax=1.0,
                              interpolation="nearest")
                ax.set_xticks([t * (width + GAP) + (width - 1) / 2 for t in range(steps)])
                ax.set_xticklabels([f"t={t + 1}" for t in range(steps)] if e + v == 0 else [])
                ax.xaxis.set_ticks_position("top")
                ax.tick_params(length=0, labelsize=7, pad=1)
                ax.set_yticks([])
                ax.grid(False)
                for side in ax.spines.values():
                    side.set_visible(False)
                label = f"{modality}, {condition}"
                if v == 0:
                    heard = int(clean.audio_digit[e])
                    what = (f"digit {heard}" if dataset.class_names is None
                            else dataset.class_names[heard])
                    label = f"{what} ({speaker})\n{label}"
                ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
        engine = fig.get_layout_engine()
        assert isinstance(engine, ConstrainedLayoutEngine)  # the figure is made constrained
        engine.set(h_pad=0.01, hspace=0.0)
        fig.suptitle(f"{dataset.name} {split} stimuli, clean and with white noise at {noise}\n"
                     f"audio: log-mel, {height} bands x {width} frames per step "
                     f"(low bands at the bottom)\nvisual: the image at every step",
                     fontsize=8)
    return fig


def _figure_format(path: str | Path) -> str:
    """The image format named by ``path``'s suffix, or ValueError."""
    fmt = Path(path).suffix.lstrip(".").lower()
    if fmt not in FIGURE_FORMATS:
        raise ValueError(f"cannot tell the figure format of {path}: use a name ending in "
                         f"{', '.join('.' + f for f in FIGURE_FORMATS)}")
    return fmt


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` to ``path`` (format from the suffix) atomically, creating its folder."""
    path = Path(path)
    fmt = _figure_format(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, dpi=150, metadata={"Software": "repsim"}
                    if fmt == "png" else None)
    return path


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m repsim.data`` argument parser."""
    defaults = SimpleNamespace(**config_defaults(DataConfig))  # no dataset module imported
    p = CommandParser(
        prog=command_prog("python -m repsim.data"), epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Build a dataset, print what it holds, and optionally draw a few stimuli.")
    add_version(p)
    p.add_argument("--list", action="store_true",
                   help="list every dataset (repsim's and installed plugins') and exit")
    p.add_argument("--dataset", default=defaults.dataset, metavar="NAME",
                   help=f"dataset name ({', '.join(dataset_names())}, a plugin's, or "
                        f"MODULE:FUNCTION; default {defaults.dataset})")
    p.add_argument("--data-dir", default=None,
                   help="where the dataset's files are (avmnist, folder)")
    p.add_argument("--data-seed", type=int, default=defaults.seed,
                   help=f"dataset seed (default {defaults.seed})")
    p.add_argument("--seed", type=int, dest="data_seed", help=argparse.SUPPRESS)  # old name
    p.add_argument("--timesteps", type=int, default=None,
                   help="time steps T (default: the dataset's)")
    p.add_argument("--height", type=int, default=None,
                   help="frame height in mel bands and pixels (default: the dataset's)")
    p.add_argument("--width", type=int, default=None,
                   help="frame width in spectrogram frames and pixels (default: the dataset's)")
    p.add_argument("--data-option", type=key_value, action="append", default=[],
                   metavar="KEY=VALUE",
                   help="any other builder option, e.g. --data-option repetitions=3 (repeatable)")
    p.add_argument("--option", type=key_value, action="append", dest="data_option",
                   help=argparse.SUPPRESS)  # old name of --data-option
    p.add_argument("--figure", default=None, metavar="PATH",
                   help="save a picture of a few stimuli here (.png, .pdf or .svg)")
    p.add_argument("--snr", type=float, default=0.0,
                   help="SNR in dB of the noisy stimuli in the figure (default 0)")
    p.add_argument("--examples", type=int, default=3, help="pairs in the figure (default 3)")
    add_verbose(p)
    return p


@user_errors_exit_2
def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m repsim.data``."""
    args = build_parser().parse_args(argv)
    log = setup_logging(args.verbose)
    if args.list:
        print(list_datasets())
        return 0
    if args.figure:  # refuse a bad figure request before the work of building
        _figure_format(args.figure)
        if args.examples < 1:
            raise ValueError(f"--examples must be at least 1, got {args.examples}")
    started = time.perf_counter()
    dataset = build_dataset(args.dataset, data_dir=args.data_dir, seed=args.data_seed,
                            timesteps=args.timesteps, height=args.height, width=args.width,
                            **dict(args.data_option))
    seconds = time.perf_counter() - started
    print(describe(dataset))
    written = ""
    if args.figure:
        fig = stimuli_figure(dataset, examples=args.examples, snr_db=args.snr)
        written = f"; stimuli figure written to {save_figure(fig, args.figure)}"
    pairs = "/".join(str(len(split)) for split in dataset.splits.values())
    log.info("built %s (%s pairs in %s) in %.1f s%s", dataset.name, pairs,
             "/".join(dataset.splits), seconds, written)
    return 0


if __name__ == "__main__":
    sys.exit(main())
