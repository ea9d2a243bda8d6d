"""The activation file's format: its marker, version, states, dims and stimulus coordinates.

File layout (``format = "repsim-activations"``, ``format_version = 4``)
-----------------------------------------------------------------------
One HDF5 file that is valid netCDF-4 (laid out by :mod:`repsim.activations.netcdf`), so that
``h5py.File(path)``, ``xarray.open_dataset(path, engine="h5netcdf")`` and netCDF-C tools read it.

- One variable per recorded layer and state, named ``"<layer>.<state>"`` (e.g.
  ``"audio.1.h"``, ``"fused.2.c"``, ``"encoder.layers.0.h"``), dims
  ``(stimulus, time, <feature dims>)``: ``(channel, y, x)`` for maps, ``(feature,)`` for
  vectors. State ``h`` is a layer's recorded output (a recurrent layer's hidden state), ``c``
  a recurrent layer's cell state. When recorded variables differ in an extent (e.g. pooled or
  narrower branches), that dim is named after its extent instead (``channel_16``, ``y_8``,
  ``feature_64``): netCDF needs one size per dim name. :func:`select` renames them back.
  Chunks are ``(k stimuli, 1 time step, <features>)`` so that one layer at one time step for
  all stimuli is a few large contiguous reads.
- Time: every variable's second dim. Layers may have time axes of different lengths (a
  per-step layer, a layer that pools over time, a head called once): the length most
  variables share is the dim ``time``, every other length ``L`` a dim ``time_L`` (e.g.
  ``time_1`` for the head) with its own index coordinate. :func:`select` renames it back to
  ``time``; :func:`time_steps` gives a layer's length.
- ``logits`` ``(stimulus, class)`` (or ``(stimulus, time, class)`` for per-step readouts),
  when the recording had a readout.
- ``stimulus``: the row number (0, 1, ...), the coordinate variable of the ``stimulus`` dim.
- Coordinates on ``stimulus`` (one row per stimulus; conditions are stacked along it):
  ``stimulus_id`` (equal across models and conditions) and ``condition`` always; a repsim
  probe set adds ``audio_digit``, ``visual_digit`` (datasets other than the digit ones:
  ``audio_class``, ``visual_class``, class indices whose names are the ``class_names`` of the
  ``probe_set`` attribute), ``congruent``, ``speaker``,
  ``audio_source``, ``visual_source``, ``audio_index``, ``visual_index``, ``audio_snr``,
  ``visual_snr`` (dB, ``inf`` = clean), ``removed`` (``"none"|"audio"|"visual"``) and
  ``prediction``; a user's stimulus table adds its own columns (strings, integers, floats or
  booleans). ``time`` and ``class`` have integer index coordinates.
- Every variable and coordinate has a ``long_name``; the SNRs have ``units = "dB"``.
- Global attributes: ``Conventions`` (``"repsim-activations-3"``: this layout; the file does
  not claim CF compliance), ``format``, ``format_version``, ``repsim_version``, ``created``
  (ISO 8601), ``layers`` and ``states`` (JSON lists, forward order), ``complete`` (1 only once
  every row is written) plus what the recorder adds: ``model_name`` (for titles, legends and
  CSVs; default the file's stem), ``model_class``, ``model_sha256`` (of the state dict),
  ``layer_patterns``, ``recorded_modules`` (which module and output made each variable, and
  how its time axis was read), ``layer_depths`` and ``layer_streams`` (``{layer: depth}``,
  1 = nearest the input, and ``{layer: stream}``: where figures draw each layer),
  ``conditions`` (JSON list) and ``condition_changes`` (``{condition: {"of": the intact
  condition, "input": the input changed, "change": "removed" or "noise", "snr_db": dB}}`` for
  every condition that removes an input or adds noise to it), ``versions``; and what
  ``repsim.extract`` adds (``checkpoint_sha256``, ``config``, ``probe_set``...). Dicts and
  lists are JSON strings.

Version 3 had one time dim, no ``model_name``, ``layer_depths``, ``layer_streams`` nor
``condition_changes`` (figures read depth and stream from ``<stream>.<depth>`` layer names,
and conditions from their names). Version 2 had feature dims ``(channel, y, x)`` only and no
recorder attributes; version 1
(before version 2) had no ``stimulus`` row coordinate, no ``Conventions``,
``long_name`` nor ``units``; :func:`repsim.activations.open` reads it as if it had them.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping

FORMAT = "repsim-activations"
"""The file's ``format`` attribute: what marks an activation file."""
FORMAT_VERSION = 4
"""The file's ``format_version``: the version this repsim writes and the newest it reads."""
CONVENTIONS = f"{FORMAT}-{FORMAT_VERSION}"
"""The netCDF ``Conventions`` attribute: the conventions a file follows, this module's. Not
"CF-1.x": the files are not checked against CF (booleans, for one, are int8 with a ``dtype``
attribute, as xarray writes them, not CF flag variables)."""
STATES = ("h", "c")
"""The states a layer may have recorded: its output ``h`` and a recurrent layer's cell ``c``."""
# Feature dims of a recorded variable: a map's, or a vector's.
SPATIAL_DIMS = ("channel", "y", "x")
VECTOR_DIMS = ("feature",)
DTYPES = ("float32", "float16")
"""The value types a file may store."""
COMPRESSIONS = ("none", "gzip", "lzf")
"""The compressions a file may use."""
# The dim along which stimuli (and conditions) are stacked, and its row-number coordinate.
STIMULUS_DIM = "stimulus"
TIME_DIM = "time"
"""The time dim: every variable's second dim (``time_<L>`` for other lengths)."""
# Names the file uses itself: no stimulus-table column may take them.
RESERVED_NAMES = (STIMULUS_DIM, TIME_DIM, "class", "logits", "prediction", *SPATIAL_DIMS,
                  *VECTOR_DIMS)
# A dim named after its extent (time_4, channel_16): see _feature_dim_names and time_dims.
_EXTENT_DIM = re.compile(rf"^({'|'.join((TIME_DIM, *SPATIAL_DIMS, *VECTOR_DIMS))})_\d+$")
STIMULUS_COORDS = ("stimulus_id", "condition", "audio_digit", "visual_digit", "congruent",
                   "speaker", "audio_source", "visual_source", "audio_index", "visual_index",
                   "audio_snr", "visual_snr", "removed")
"""The per-stimulus coordinates a probe set gives (the writer adds ``prediction``), in file
order."""
# The heard and the seen label: digit datasets' files keep the digits' names; every other
# dataset's file holds class indices under the general names (the probe set names the classes).
DIGIT_COORDS = ("audio_digit", "visual_digit")
CLASS_COORDS = ("audio_class", "visual_class")
# The key under which the probe set record (and a run's summary) names a dataset's classes.
CLASS_NAMES = "class_names"
COORDINATE_ATTRS = {
    STIMULUS_DIM: {"long_name": "row of the activation file"},
    "stimulus_id": {"long_name": "stimulus identity (clip source|image source), the same "
                                 "across models and conditions"},
    "condition": {"long_name": "test condition"},
    "audio_digit": {"long_name": "digit spoken in the audio clip"},
    "visual_digit": {"long_name": "digit shown in the image"},
    "audio_class": {"long_name": "class of the audio clip (index into the class names)"},
    "visual_class": {"long_name": "class of the image (index into the class names)"},
    "congruent": {"long_name": "audio digit equals visual digit"},
    "speaker": {"long_name": "speaker of the audio clip"},
    "audio_source": {"long_name": "source file of the audio clip"},
    "visual_source": {"long_name": "source of the image"},
    "audio_index": {"long_name": "index of the audio clip in its dataset split"},
    "visual_index": {"long_name": "index of the image in its dataset split"},
    "audio_snr": {"long_name": "signal-to-noise ratio of the audio input (inf = clean)",
                  "units": "dB"},
    "visual_snr": {"long_name": "signal-to-noise ratio of the visual input (inf = clean)",
                   "units": "dB"},
    "removed": {"long_name": "modality removed from the input (none, audio or visual)"},
    "prediction": {"long_name": "predicted class (argmax of the last step's logits)"},
    "time": {"long_name": "time step (0 = first)"},
    "class": {"long_name": "output class (digit)"},
    "feature": {"long_name": "feature of a recorded vector"},
}
"""The netCDF attributes (``long_name``, ``units``) of the coordinates the format defines."""


def variable_name(layer: str, state: str) -> str:
    """The file variable holding one state of a layer.

    Parameters
    ----------
    layer
        The layer's name.
    state
        ``"h"`` or ``"c"``.

    Returns
    -------
    str
        ``"<layer>.<state>"``.
    """
    return f"{layer}.{state}"


def feature_dims(rank: int) -> tuple[str, ...]:
    """The feature dims of a recorded variable.

    Parameters
    ----------
    rank
        Its number of feature axes.

    Returns
    -------
    tuple of str
        ``(channel, y, x)`` for a map (3), ``(feature,)`` for a vector (1).

    Raises
    ------
    ValueError
        For any other rank.
    """
    if rank == len(SPATIAL_DIMS):
        return SPATIAL_DIMS
    if rank == len(VECTOR_DIMS):
        return VECTOR_DIMS
    raise ValueError(f"a recorded variable has (channel, y, x) or (feature,) feature dims, "
                     f"got {rank} feature axes")


def time_dims(lengths: Mapping[str, int]) -> dict[str, str]:
    """The time dim of each variable, given its number of steps.

    Parameters
    ----------
    lengths
        Variable name to its number of time steps.

    Returns
    -------
    dict of str to str
        ``time`` for the length most variables share (the longest among equally common ones),
        ``time_<L>`` for any other.
    """
    counts = Counter(lengths.values())
    main = max(counts, key=lambda length: (counts[length], length))
    return {name: TIME_DIM if length == main else f"{TIME_DIM}_{length}"
            for name, length in lengths.items()}


def check_column_names(names: Iterable[str], variables: Iterable[str] = ()) -> None:
    """Refuse stimulus-table columns that the file cannot hold.

    Parameters
    ----------
    names
        The column names.
    variables
        The recorded variables' names, which no column may take.

    Raises
    ------
    ValueError
        Naming a column that is empty, has a ``/`` (HDF5 would make a group of it), starts with
        ``_`` (netCDF reserves those), is one of the file's own names (``RESERVED_NAMES``,
        ``time_4``-like dims) or a recorded variable's name.
    """
    taken = set(variables)
    for name in names:
        why = ("it is empty" if not name else
               "HDF5 reads '/' as a group separator" if "/" in name else
               "netCDF reserves names starting with '_'" if name.startswith("_") else
               "the file uses that name itself" if name in RESERVED_NAMES
               or _EXTENT_DIM.match(name) else
               "a recorded layer has that name" if name in taken else None)
        if why is not None:
            raise ValueError(f"stimulus-table column {name!r} cannot be stored: {why}; "
                             f"rename it")


def coordinate_attrs(name: str) -> dict[str, str]:
    """The netCDF attributes of a coordinate.

    Parameters
    ----------
    name
        The coordinate's name.

    Returns
    -------
    dict of str to str
        The format's (see [COORDINATE_ATTRS][repsim.activations.format.COORDINATE_ATTRS]), or a
        ``long_name`` made from the name for a coordinate the format does not define.
    """
    return dict(COORDINATE_ATTRS.get(name, {"long_name": name.replace("_", " ")}))
