"""Reading activation files: open one lazily as xarray, pick a layer, state, step and
condition, and align two models' files stimulus by stimulus (the layout is
[repsim.activations.format][]).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd
import xarray as xr

from repsim.activations.format import (
    FORMAT,
    FORMAT_VERSION,
    STIMULUS_DIM,
    TIME_DIM,
    feature_dims,
    variable_name,
)
from repsim.rundir import ACTIVATIONS_FILE


def open(path: str | os.PathLike, chunks: str | int | Mapping[str, Any] | None = None
         ) -> xr.Dataset:  # shadows the builtin on purpose
    """Open a complete activation file as a lazy ``xarray.Dataset``.

    Only the per-stimulus coordinates are read now; a layer's values are read when asked for,
    and only the part selected. ``stimulus_id`` is indexed: ``ds.sel(stimulus_id=...)`` picks a
    stimulus in every condition (a list of ids needs one condition, see
    [select][repsim.activations.reader.select], since ids repeat across conditions), and xarray
    aligns two selections by stimulus id. The ``stimulus`` coordinate is the row number (added
    for format version 1 files, which lack it), not an index.

    Parameters
    ----------
    path
        The activation file.
    chunks
        ``None`` reads values as NumPy when selected. Otherwise the layer states and logits are
        dask arrays, for computations larger than memory, and it means what it means to
        ``xarray.open_dataset``: ``{}`` the file's own chunks, ``"auto"``, ``-1`` one chunk per
        variable, a positive integer for every dim, or ``{dim: size}`` for dims of the file. It
        needs dask (``pip install -e '.[dask]'``).

    Returns
    -------
    xarray.Dataset
        One variable per recorded layer and state, with the stimulus coordinates and the
        file's attributes.

    Raises
    ------
    FileNotFoundError
        For a missing file.
    ValueError
        Naming the file when it is truncated, not an activation file, of a newer format
        version, or incomplete (``complete`` != 1), or naming what is wrong with ``chunks``.
    ImportError
        When ``chunks`` is given and dask is not installed.

    Examples
    --------
    ```python
    from repsim import activations

    ds = activations.open("runs/synthetic-f1-s0/activations.h5")
    activations.layer_names(ds)          # ['audio.1', 'visual.1', 'fused.2'] for k = 2
    h = activations.select(ds, "fused.2", time=-1, condition="clean")
    ```
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"activation file {path} does not exist")
    if path.is_dir():
        inside = path / ACTIVATIONS_FILE
        hint = f"; its run's activation file is {inside}" if inside.is_file() else ""
        raise ValueError(f"{path} is a directory, not an activation file{hint}")
    try:
        with h5py.File(path, "r") as handle:
            attrs = dict(handle.attrs)
    except OSError as error:
        raise ValueError(f"{path} is truncated or not an HDF5 file: {error}") from None
    if _attr_str(attrs.get("format")) != FORMAT:
        raise ValueError(f"{path} is not a repsim activation file (format attribute "
                         f"{_attr_str(attrs.get('format'))!r}, expected {FORMAT!r})")
    version = _attr_int(attrs.get("format_version"))
    if version is None or version > FORMAT_VERSION:
        raise ValueError(f"{path} has activation format version {version}; this repsim reads "
                         f"versions up to {FORMAT_VERSION}")
    if _attr_int(attrs.get("complete")) != 1:
        raise ValueError(f"{path} is incomplete: it was not fully written (complete flag is "
                         f"not 1); rerun the extraction")
    ds = xr.open_dataset(path, engine="h5netcdf")
    if chunks is not None:
        try:
            _check_chunks(chunks, {str(dim): size for dim, size in ds.sizes.items()})
        finally:
            ds.close()
        _require_dask()
        ds = xr.open_dataset(path, engine="h5netcdf", chunks=chunks)
    return _index_stimuli(ds)


def _check_chunks(chunks, sizes: Mapping[str, int]) -> None:
    """ValueError naming what is wrong with ``chunks`` (see :func:`open`); xarray would
    ignore unknown dims and take zero or ``True`` for sizes."""
    if not isinstance(chunks, Mapping):
        if not _is_chunk_size(chunks):
            raise ValueError(f"chunks={chunks!r} is not a chunk size: give a positive integer, "
                             "-1 (whole dims), 'auto', or a dict {dim: size}")
        return
    unknown = [dim for dim in chunks if dim not in sizes]
    if unknown:
        raise ValueError(f"chunks names dims {unknown} that this file does not have; its dims "
                         f"are: {', '.join(map(str, sizes))}")
    for dim, size in chunks.items():
        if size is None or _is_chunk_size(size):
            continue
        if isinstance(size, tuple) and all(_is_chunk_size(part) and part != -1
                                           for part in size) and sum(size) == sizes[dim]:
            continue
        raise ValueError(f"chunks[{dim!r}]={size!r} is not a chunk size: give a positive "
                         f"integer, -1 (the whole dim), 'auto', None, or a tuple of positive "
                         f"integers adding up to the dim's length {sizes[dim]}")


def _is_chunk_size(size) -> bool:
    """A positive integer, -1 (the whole dim) or "auto"."""
    if isinstance(size, str):
        return size == "auto"
    return isinstance(size, int | np.integer) and not isinstance(size, bool) and bool(
        size > 0 or size == -1)


def _require_dask() -> None:
    try:
        import dask.array  # noqa: F401
    except ImportError:
        raise ImportError("opening activations with chunks needs dask: "
                          "pip install -e '.[dask]'") from None


def _index_stimuli(ds: xr.Dataset) -> xr.Dataset:
    """Per-stimulus coordinates in memory (every selection needs them; under dask they would
    be read again each time), ``stimulus_id`` indexed. The row number stays a plain
    coordinate: with an index of its own, xarray would refuse to align two conditions."""
    if STIMULUS_DIM not in ds.coords:  # format version 1
        ds = ds.assign_coords({STIMULUS_DIM: np.arange(ds.sizes[STIMULUS_DIM])})
    ds = ds.drop_indexes(STIMULUS_DIM)
    for name, coord in ds.coords.items():
        if coord.dims == (STIMULUS_DIM,):
            ds.variables[name].load()
    return ds.set_xindex("stimulus_id")


def layer_names(ds: xr.Dataset) -> list[str]:
    """The recorded layers in forward order.

    Parameters
    ----------
    ds
        An open activation file.

    Returns
    -------
    list of str
        E.g. ``["audio.1", "visual.1", "fused.2"]``.
    """
    return json.loads(ds.attrs["layers"])


# A layer named <stream>.<depth>, as repsim names its own (audio.1, fused.2).
_STREAM_DEPTH = re.compile(r"^(?P<stream>.+)\.(?P<depth>\d+)$")


def _old_file_places(ds: xr.Dataset) -> dict[str, tuple[int, str]] | None:
    """``{layer: (depth, stream)}`` read from names, for a file written before layers carried
    their places (format 3 or older) whose layers are all named ``<stream>.<depth>``."""
    matches = {layer: _STREAM_DEPTH.match(layer) for layer in layer_names(ds)}
    if "layer_depths" in ds.attrs or not all(matches.values()):
        return None
    return {layer: (int(match.group("depth")), match.group("stream"))
            for layer, match in matches.items() if match is not None}


def layer_depths(ds: xr.Dataset) -> dict[str, int]:
    """Each layer's depth, 1 = nearest the input, in the file's order.

    The file's ``layer_depths`` (what the model said, else the layer's position in the
    recording); in a file written before format 4, the ``<depth>`` of layers all named
    ``<stream>.<depth>``, else the position.

    Parameters
    ----------
    ds
        An open activation file.

    Returns
    -------
    dict of str to int
        Layer name to depth.
    """
    if "layer_depths" in ds.attrs:
        depths = json.loads(ds.attrs["layer_depths"])
        return {layer: int(depths[layer]) for layer in layer_names(ds)}
    old = _old_file_places(ds)
    if old is not None:
        return {layer: depth for layer, (depth, _) in old.items()}
    return {layer: position for position, layer in enumerate(layer_names(ds), start=1)}


def layer_streams(ds: xr.Dataset) -> dict[str, str]:
    """Each layer's stream, read as [layer_depths][repsim.activations.reader.layer_depths] reads
    depths.

    Parameters
    ----------
    ds
        An open activation file.

    Returns
    -------
    dict of str to str
        Layer name to stream (e.g. ``audio``, ``fused``; ``""``: the model did not say, one
        stream).
    """
    if "layer_streams" in ds.attrs:
        streams = json.loads(ds.attrs["layer_streams"])
        return {layer: str(streams[layer]) for layer in layer_names(ds)}
    old = _old_file_places(ds)
    if old is not None:
        return {layer: stream for layer, (_, stream) in old.items()}
    return dict.fromkeys(layer_names(ds), "")


def model_name(ds: xr.Dataset) -> str | None:
    """The name the recording gave the model.

    Parameters
    ----------
    ds
        An open activation file.

    Returns
    -------
    str or None
        The file's ``model_name``; ``None`` in older files.
    """
    name = ds.attrs.get("model_name")
    return None if name is None else str(name)


def condition_changes(ds: xr.Dataset) -> dict[str, dict[str, Any]]:
    """What each condition of the file does to which input.

    The file's ``condition_changes`` (format 4), else read from the condition names
    ([repsim.conditions.condition_change][]); conditions that change no named input are left out.

    Parameters
    ----------
    ds
        An open activation file.

    Returns
    -------
    dict
        Condition name to ``{input: change}``.
    """
    from repsim.conditions import condition_change

    if "condition_changes" in ds.attrs:
        return dict(json.loads(ds.attrs["condition_changes"]))
    changes = {name: condition_change(name) for name in condition_names(ds)}
    return {name: change for name, change in changes.items() if change is not None}


def state_names(ds: xr.Dataset) -> list[str]:
    """The recorded states.

    Parameters
    ----------
    ds
        An open activation file.

    Returns
    -------
    list of str
        A subset of ``["h", "c"]``.
    """
    return json.loads(ds.attrs["states"])


def condition_names(ds: xr.Dataset) -> list[str]:
    """The conditions present, in the order they first occur along ``stimulus``.

    Parameters
    ----------
    ds
        An open activation file.

    Returns
    -------
    list of str
        Condition names.

    Raises
    ------
    ValueError
        When the dataset has no ``condition`` coordinate.
    """
    if "condition" not in ds.coords:
        raise ValueError("this activation dataset has no 'condition' coordinate")
    values = ds["condition"].values
    _, first = np.unique(values, return_index=True)
    return [str(values[i]) for i in sorted(first)]


def select(ds: xr.Dataset, layer: str, state: str = "h", time: int | None = None,
           condition: str | None = None, order: np.ndarray | None = None) -> xr.DataArray:
    """One layer's state as a lazy DataArray.

    Parameters
    ----------
    ds
        An open activation file.
    layer
        A recorded layer (see [layer_names][repsim.activations.reader.layer_names]).
    state
        ``"h"`` (hidden state) or ``"c"`` (cell state), if recorded.
    time
        One step (negative counts from the end, ``-1`` = last); ``None`` keeps every step.
    condition
        Keep only the stimuli of this condition; ``None`` keeps all.
    order
        Stimulus ids of ``condition`` in the order wanted (to align two models stimulus by
        stimulus); ``None`` keeps file order.

    Returns
    -------
    xarray.DataArray
        Dims ``(stimulus, [time,] channel, y, x)`` (maps) or ``(stimulus, [time,] feature)``
        (vectors), with the per-stimulus coordinates.

    Raises
    ------
    ValueError
        For an unknown layer, state or condition, a time step out of range, or ``order``
        without a condition.
    """
    name = variable_name(layer, state)
    if name not in ds.data_vars:
        layers, states = layer_names(ds), state_names(ds)
        if layer not in layers:
            raise ValueError(f"unknown layer {layer!r}; this file has: {', '.join(layers)}")
        raise ValueError(f"state {state!r} was not recorded; this file has: {', '.join(states)}")
    da = ds[name]
    if da.dims[1] != TIME_DIM:  # a time axis of another length: time_<L> in the file
        da = da.rename({da.dims[1]: TIME_DIM})
    if order is not None and condition is None:
        raise ValueError("order needs a condition: stimulus ids repeat across conditions")
    if condition is not None:
        present = condition_names(ds)
        if condition not in present:
            raise ValueError(f"unknown condition {condition!r}; this file has: "
                             f"{', '.join(present)}")
        rows = np.flatnonzero(ds["condition"].values == condition)
        if order is not None:
            rows = rows[_alignment(ds["stimulus_id"].values[rows], order, condition)]
        da = da.isel({STIMULUS_DIM: rows})
    if time is not None:
        steps = da.sizes["time"]
        if not isinstance(time, (int, np.integer)) or not -steps <= time < steps:
            raise ValueError(f"time must be an integer step in [-{steps}, {steps}), got {time!r}")
        da = da.isel(time=int(time))
    spatial = [dim for dim in da.dims if dim not in (STIMULUS_DIM, "time")]
    return da.rename({dim: canonical for dim, canonical in zip(
        spatial, feature_dims(len(spatial)), strict=True) if dim != canonical})


def time_steps(ds: xr.Dataset, layer: str, state: str = "h") -> int:
    """How many time steps ``layer`` was recorded at.

    Layers may differ: a head called once has 1 (see the format's time dims).

    Parameters
    ----------
    ds
        An open activation file.
    layer
        A recorded layer.
    state
        ``"h"`` or ``"c"``.

    Returns
    -------
    int
        The number of steps.
    """
    name = variable_name(layer, state)
    if name not in ds.data_vars:
        select(ds, layer, state)  # names what is wrong
    return int(ds[name].shape[1])


def flatten(da: xr.DataArray) -> xr.DataArray:
    """``da`` with every non-stimulus dim flattened into ``feature``.

    A dask-backed ``da`` (from ``open(path, chunks=...)``) stays lazy. Any other is read, since
    a reshape needs its values: flatten one layer at one step (``select(..., time=t)``), not a
    whole layer.

    Parameters
    ----------
    da
        A DataArray whose first dim is ``stimulus``.

    Returns
    -------
    xarray.DataArray
        ``(stimulus, feature)``, with the stimulus coordinates (and their index) and the scalar
        coordinates kept.

    Raises
    ------
    ValueError
        When ``stimulus`` is not the first dim.
    """
    if not da.dims or da.dims[0] != STIMULUS_DIM:
        raise ValueError(f"flatten needs 'stimulus' as the first dim, got dims {da.dims}")
    values = da.data if da.chunks is not None else np.asarray(da.values)
    kept = da.drop_vars([name for name, coord in da.coords.items()
                         if not set(coord.dims) <= {STIMULUS_DIM}])
    return xr.DataArray(values.reshape(values.shape[0], -1), dims=(STIMULUS_DIM, "feature"),
                        coords=kept.coords, name=da.name, attrs=da.attrs)


def _attr_str(value) -> str | None:
    if isinstance(value, bytes | np.bytes_):
        return value.decode()
    return None if value is None else str(value)


def _attr_int(value) -> int | None:
    try:
        return int(np.asarray(value).reshape(-1)[0])
    except (TypeError, ValueError, IndexError):
        return None


def layer_states(data: xr.Dataset, layer: str, condition: str, *, state: str = "h",
                 time: int | None = None, order: np.ndarray | None = None) -> np.ndarray:
    """One layer's states on one condition as a float32 array.

    Parameters
    ----------
    data
        An open activation file.
    layer
        A recorded layer.
    condition
        The condition whose stimuli to take.
    state
        ``"h"`` or ``"c"``.
    time
        One step; ``None`` keeps every step.
    order
        Stimulus ids in the order wanted (to align two models stimulus by stimulus); ``None``
        keeps file order.

    Returns
    -------
    numpy.ndarray
        ``(stimuli, [time,] features)``.

    Raises
    ------
    ValueError
        When a stimulus of ``order`` is missing from the file or the file holds stimuli
        ``order`` lacks.
    """
    da = select(data, layer, state=state, time=time, condition=condition, order=order)
    values = np.asarray(da.values, dtype=np.float32)
    return values.reshape(values.shape[0], -1) if time is not None else \
        values.reshape(*values.shape[:2], -1)


def stimulus_ids(data: xr.Dataset, condition: str) -> np.ndarray:
    """The stimulus ids of ``condition``, in file order.

    Parameters
    ----------
    data
        An open activation file.
    condition
        A condition of the file.

    Returns
    -------
    numpy.ndarray
        The ids.

    Raises
    ------
    ValueError
        When the condition has no stimuli or repeats ids.
    """
    ids = np.asarray(data["stimulus_id"].values[data["condition"].values == condition], dtype=str)
    if ids.size == 0:
        present = ", ".join(condition_names(data))
        raise ValueError(f"no stimuli of condition {condition!r}; this file has: {present}")
    if len(np.unique(ids)) != ids.size:
        raise ValueError(f"condition {condition!r} repeats stimulus ids; cannot align models")
    return ids


def stimulus_table(data: xr.Dataset, condition: str) -> pd.DataFrame:
    """The per-stimulus coordinates of ``condition``, in file order.

    Parameters
    ----------
    data
        An open activation file.
    condition
        A condition of the file.

    Returns
    -------
    pandas.DataFrame
        One row per stimulus: digits, ids and every other stimulus coordinate.
    """
    stimulus_ids(data, condition)  # refuses an absent condition
    keep = data["condition"].values == condition
    columns = {name: np.asarray(coord.values)[keep] for name, coord in data.coords.items()
               if coord.dims == ("stimulus",)}
    return pd.DataFrame(columns)


def _alignment(ids: np.ndarray, order: np.ndarray, condition: str) -> np.ndarray:
    """Row indices that put ``ids`` in the order of ``order`` (same set required)."""
    position = {stimulus: i for i, stimulus in enumerate(np.asarray(ids, dtype=str))}
    missing = [stimulus for stimulus in np.asarray(order, dtype=str) if stimulus not in position]
    if missing or len(position) != len(order):
        raise ValueError(f"the activation files hold different stimuli for condition "
                         f"{condition!r} ({len(missing)} of {len(order)} ids not found, "
                         f"{len(position)} vs {len(order)} stimuli); extract both from the "
                         "same dataset and probe set")
    return np.array([position[stimulus] for stimulus in np.asarray(order, dtype=str)])
