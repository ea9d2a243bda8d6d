"""The activation file's format: its marker, version, states, dims and stimulus coordinates.

File layout (``format = "repsim-activations"``, ``format_version = 1``)
-----------------------------------------------------------------------
One HDF5 file that is valid netCDF-4, written with h5netcdf, so that both
``h5py.File(path)`` and ``xarray.open_dataset(path, engine="h5netcdf")`` read it.

- One variable per recorded layer and state, named ``"<layer>.<state>"`` (e.g.
  ``"audio.1.h"``, ``"fused.2.c"``), dims ``(stimulus, time, channel, y, x)``. When recorded
  variables differ in an extent (e.g. pooled or narrower branches), that dim is named after its
  extent instead (``channel_16``, ``y_8``): netCDF needs one size per dim name. :func:`select`
  renames them back to ``channel``/``y``/``x``. Chunks are ``(k stimuli, 1 time step, C, H, W)``
  so that one layer at one time step for all stimuli is a few large contiguous reads.
- ``logits`` ``(stimulus, class)`` (or ``(stimulus, time, class)`` for per-step readouts).
- Coordinates on ``stimulus`` (one row per stimulus; conditions are stacked along it):
  ``stimulus_id`` (``"<clip source>|<image source>"``, equal across models and conditions),
  ``condition``, ``audio_digit``, ``visual_digit``, ``congruent``, ``speaker``,
  ``audio_source``, ``visual_source``, ``audio_index``, ``visual_index``, ``audio_snr``,
  ``visual_snr`` (dB, ``inf`` = clean), ``removed`` (``"none"|"audio"|"visual"``) and
  ``prediction``. ``time`` and ``class`` have integer index coordinates.
- Global attributes: ``format``, ``format_version``, ``repsim_version``, ``created`` (ISO 8601),
  ``layers`` and ``states`` (JSON lists, forward order), ``complete`` (1 only once every row is
  written) plus whatever the writer adds (``checkpoint_sha256``, ``config``, ``probe_set``...;
  dicts and lists are stored as JSON strings).
"""

from __future__ import annotations

FORMAT = "repsim-activations"
FORMAT_VERSION = 1
STATES = ("h", "c")
SPATIAL_DIMS = ("channel", "y", "x")
DTYPES = ("float32", "float16")
COMPRESSIONS = ("none", "gzip", "lzf")
# Per-stimulus coordinates a probe set gives (the writer adds ``prediction``), in file order.
STIMULUS_COORDS = ("stimulus_id", "condition", "audio_digit", "visual_digit", "congruent",
                   "speaker", "audio_source", "visual_source", "audio_index", "visual_index",
                   "audio_snr", "visual_snr", "removed")


def variable_name(layer: str, state: str) -> str:
    """The file variable holding ``state`` ("h" or "c") of ``layer``: ``"<layer>.<state>"``."""
    return f"{layer}.{state}"
