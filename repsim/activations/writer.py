"""Writing activation files: streamed batch by batch and atomic.

Rows are buffered until a chunk's worth of stimuli is complete and then written, so memory
does not grow with the number of stimuli; the file lives under a hidden temporary name beside
the final path and is renamed only after ``complete`` is set. An interrupted write never
leaves a file at the final path; a new run restarts from scratch (there is no resume).
"""

from __future__ import annotations

import builtins
import contextlib
import datetime
import json
import math
import os
import stat
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np

import repsim
from repsim.activations.format import (
    COMPRESSIONS,
    CONVENTIONS,
    DTYPES,
    FORMAT,
    FORMAT_VERSION,
    STATES,
    STIMULUS_DIM,
    TIME_DIM,
    check_column_names,
    coordinate_attrs,
    feature_dims,
    time_dims,
    variable_name,
)
from repsim.activations.netcdf import NetCDFLayout
from repsim.provenance import (
    atomic_path,
    claim,
    output_error,
    remove_stale_temporaries,
    write_failure,
)

# What the long_name of a state variable calls it.
STATE_NAMES = {"h": "output (hidden state)", "c": "cell state"}
# Target size of one chunk (k stimuli x one time step) and cap on the rows buffered in memory.
CHUNK_BYTES = 1 << 20
BUFFER_BYTES = 64 << 20


# What an output path may be besides a regular file, each refused even with --overwrite.
_NOT_FILES = ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
              (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"))


def check_output_path(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Refuse an output path that exists (unless ``overwrite``) or whose directory is unwritable.

    Called before any expensive work so that a user's mistake costs nothing. The directory is
    tried by creating and removing a hidden probe file in it.

    Parameters
    ----------
    path
        The file to be written.
    overwrite
        Allow replacing what is at ``path``: a regular file only (or a symbolic link to one in
        the path's folder or below it). A device, FIFO, socket or directory at the path, or
        a link to anything outside the path's folder, is refused whatever ``overwrite`` says
        (replacing ``/dev/null`` as root would turn the device into a file).

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    ValueError
        For a symbolic link to something outside the path's folder, or a character or block
        device, a FIFO or a socket at the path.
    IsADirectoryError
        For a directory at the path.
    FileExistsError
        For an existing file without ``overwrite``.
    FileNotFoundError
        When the output directory does not exist.
    PermissionError
        When the output directory cannot be written to.
    """
    path = Path(path)
    if path.is_symlink():
        target = path.resolve()
        if not target.is_relative_to(path.parent.resolve()):
            raise ValueError(f"output path {path} is a symbolic link to {target}, outside "
                             f"{path.parent}; --overwrite replaces regular files only: give "
                             f"the path itself, or another file name")
    if path.is_dir():
        raise IsADirectoryError(f"output path {path} is a directory; give a file name")
    if path.exists():
        mode = path.stat().st_mode
        for test, kind in _NOT_FILES:
            if test(mode):
                raise ValueError(f"output path {path} is {kind}, not a regular file; "
                                 f"--overwrite replaces regular files only: give a file name")
    if (path.exists() or path.is_symlink()) and not overwrite:  # a dangling link too
        raise FileExistsError(f"output file {path} exists; pass overwrite (--overwrite) to "
                              f"replace it")
    directory = path.parent
    if not directory.is_dir():
        raise FileNotFoundError(f"output directory {directory} does not exist")
    probe = directory / f".{path.name}.probe-{os.getpid()}"
    try:
        with builtins.open(probe, "xb"):
            pass
    except OSError as error:
        raise PermissionError(f"cannot write to output directory {directory}: "
                              f"{error.strerror or error}") from None
    probe.unlink()
    return path


def _storage_kind(values: np.ndarray) -> str:
    """How a 1-D coordinate is stored: "str", "bool", "int" or "float"."""
    if values.dtype.kind in "USO":
        return "str"
    if values.dtype.kind == "b":
        return "bool"
    if values.dtype.kind in "iu":
        return "int"
    if values.dtype.kind == "f":
        return "float"
    raise ValueError(f"cannot store a coordinate of dtype {values.dtype}")


class ActivationWriter:
    """Stream recorded states into an activation file; a context manager.

    Each [write][repsim.activations.writer.ActivationWriter.write] appends the next rows. The
    first lays the file out (dims, coordinates, chunked variables: all the netCDF-4
    metadata); data then goes in through h5py, whole chunks at a time (uncompressed chunks
    are written directly, bypassing HDF5's chunk cache).

    Entering the ``with`` block checks ``path``
    ([check_output_path][repsim.activations.writer.check_output_path]) and, unless
    ``claimed``, takes the claim on it (``repsim.provenance.claim``), held while open: a
    second writer fails at once. On a clean exit every row must have been written; then
    ``complete`` is set to 1 and the temporary file is renamed to ``path``. On any exception
    (Ctrl-C included) the temporary is deleted and ``path`` is untouched.

    Parameters
    ----------
    path
        The activation file to write.
    stimuli
        The per-stimulus coordinates known up front: 1-D, all of one length, which is the
        number of stimuli (at least one). ``stimulus_id`` is required; ``stimulus`` (the row
        number, which the writer adds) is not allowed.
    attrs
        Added to the file's global attributes (strings and numbers as they are, anything
        else, booleans included, as JSON text).
    dtype
        The stored type of the states: ``"float32"`` or ``"float16"`` (``float16`` files read
        fine in h5py/xarray but not in netCDF-C tools).
    compression
        ``"none"``, ``"gzip"`` (with shuffle, at ``compression_level``) or ``"lzf"`` (fast,
        but only HDF5 readers know it: netCDF-C tools do not).
    compression_level
        The gzip level, 1-9.
    overwrite
        Replace an existing file at ``path`` (a regular file only).
    claimed
        The caller already holds the claim on ``path``.
    chunk_bytes
        Target size of one chunk (k stimuli x one time step).
    buffer_bytes
        Cap, in bytes, on the rows buffered in memory (one chunk's rows of every variable;
        at least one row whatever the cap).

    Raises
    ------
    ValueError
        For an unknown ``dtype`` or ``compression``, a gzip level outside 1-9, ``stimuli``
        without ``stimulus_id`` or with ``stimulus``, a column the file cannot hold
        ([check_column_names][repsim.activations.format.check_column_names]), coordinates
        that are not 1-D of one length, or no stimuli. Entering the block raises as
        [check_output_path][repsim.activations.writer.check_output_path] does, and a
        ValueError when another writer holds ``path``; leaving it cleanly with rows missing
        raises ValueError and discards the file.
    OSError
        On leaving the block, when the disk refused a write (full, size limit, read-only):
        one naming ``path``, where nothing was written.
    """

    def __init__(self, path: str | os.PathLike, stimuli: Mapping[str, np.ndarray], *,
                 attrs: Mapping | None = None, dtype: str = "float32",
                 compression: str = "none", compression_level: int = 4,
                 overwrite: bool = False, claimed: bool = False,
                 chunk_bytes: int = CHUNK_BYTES, buffer_bytes: int = BUFFER_BYTES) -> None:
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
        if compression not in COMPRESSIONS:
            raise ValueError(f"compression must be one of {', '.join(COMPRESSIONS)}, "
                             f"not {compression!r}")
        if compression == "gzip" and not 1 <= compression_level <= 9:
            raise ValueError(f"gzip compression level must be 1..9, got {compression_level}")
        if "stimulus_id" not in stimuli:
            raise ValueError("stimuli needs a 'stimulus_id' entry (the key that aligns models)")
        if STIMULUS_DIM in stimuli:
            raise ValueError(f"stimuli must not have a {STIMULUS_DIM!r} entry: that is the row "
                             "number, which the writer adds")
        check_column_names(stimuli)
        self.stimuli = {name: np.asarray(values) for name, values in stimuli.items()}
        lengths = {name: values.shape for name, values in self.stimuli.items()}
        self.n_stimuli = len(self.stimuli["stimulus_id"])
        if any(shape != (self.n_stimuli,) for shape in lengths.values()):
            raise ValueError(f"every stimulus coordinate must be 1-D with one entry per "
                             f"stimulus; got shapes {lengths}")
        if self.n_stimuli == 0:
            raise ValueError("an activation file needs at least one stimulus")
        self.path = Path(path)
        self.attrs = dict(attrs or {})
        self.dtype = np.dtype(dtype)
        self.compression, self.compression_level = compression, compression_level
        self.overwrite = overwrite
        self.claimed = claimed
        self.chunk_bytes, self.buffer_bytes = chunk_bytes, buffer_bytes
        self.rows_written = 0  # rows handed to write()
        self._stack: contextlib.ExitStack | None = None
        self._temporary: Path | None = None
        self._h5: h5py.File | None = None  # open for data once the layout exists
        self._datasets: dict[str, h5py.Dataset] = {}  # each state variable, looked up once
        self._variables: list[str] = []  # layer-state variables, forward order
        self._buffers: dict[str, np.ndarray] = {}  # (T, chunk rows, *features) per variable
        self._chunk_rows = 0
        self._buffered = 0  # rows waiting in the buffers
        self._flushed = 0  # rows on disk
        self._has_logits = self._has_prediction = False
        self._time_dims: dict[str, str] = {}  # each variable's time dim (and the logits')

    # -- context management

    def __enter__(self) -> ActivationWriter:
        check_output_path(self.path, self.overwrite)
        stack = contextlib.ExitStack()
        if not self.claimed:  # a second writer of this path fails here
            stack.enter_context(claim(self.path))
        remove_stale_temporaries(self.path)
        self._temporary = stack.enter_context(atomic_path(self.path))
        self._stack = stack
        return self

    def __exit__(self, exc_type, exc, traceback) -> bool:
        try:
            return self._exit(exc_type, exc, traceback)
        except (OSError, RuntimeError) as error:  # HDF5 reports a full disk as either
            failure = write_failure(error)
            if failure is None:
                raise
            raise output_error(self.path, failure[1], failure[0]) from error

    def _exit(self, exc_type, exc, traceback) -> bool:
        assert self._stack is not None, "ActivationWriter exited without being entered"
        stack, self._stack = self._stack, None
        if exc_type is None:
            try:
                self._finish()
            except BaseException:
                if not stack.__exit__(*sys.exc_info()):
                    raise
                return False
        return bool(stack.__exit__(exc_type, exc, traceback))

    # -- writing

    def write(self, states: Mapping[str, Mapping[str, np.ndarray]],
              logits: np.ndarray | None = None, prediction: np.ndarray | None = None) -> None:
        """Append the next ``b`` rows of every variable.

        Parameters
        ----------
        states
            ``states[layer][state]`` (state ``"h"`` or ``"c"``): arrays of shape
            ``(b, T, C, H, W)`` (maps) or ``(b, T, F)`` (vectors), the same layers and states
            every call, in forward order (their ``T`` may differ: see the format's time
            dims); stored as the writer's ``dtype``.
        logits
            ``(b, classes)`` or ``(b, T, classes)``; on every write or on none.
        prediction
            ``(b,)``; on every write or on none.

        Raises
        ------
        RuntimeError
            Outside the ``with`` block.
        ValueError
            For no layer state, an unknown state, an array that is neither 5-D nor 3-D,
            other variables or row shapes than the first write's, arrays of different row
            counts, more rows than stimuli, ``logits`` or ``prediction`` given on some writes
            only or of the wrong number of rows, a ``prediction`` not of shape ``(b,)``, or a
            recorded variable whose name a stimulus column takes.
        """
        if self._stack is None:
            raise RuntimeError("use ActivationWriter as a context manager: `with ... as w:`")
        arrays = {variable_name(layer, state): np.asarray(values)
                  for layer, by_state in states.items() for state, values in by_state.items()}
        if self._h5 is None:
            self._lay_out(states, arrays, logits, prediction)
        elif list(arrays) != self._variables:
            raise ValueError(f"write() got variables {list(arrays)}, expected "
                             f"{self._variables}")
        rows = {value.shape[0] for value in arrays.values()}
        if len(rows) != 1:
            raise ValueError(f"all states of one write must have the same number of rows, "
                             f"got {sorted(rows)}")
        count = rows.pop()
        if self.rows_written + count > self.n_stimuli:
            raise ValueError(f"too many rows: {self.rows_written} written + {count} > "
                             f"{self.n_stimuli} stimuli")
        for name, value in arrays.items():
            expected = self._buffers[name].shape[:1] + self._buffers[name].shape[2:]
            if value.shape[1:] != expected:
                raise ValueError(f"{name}: rows of shape {value.shape[1:]}, expected {expected}")
        self._write_small(logits, prediction, count)
        offset = 0
        while offset < count:
            take = min(count - offset, self._chunk_rows - self._buffered)
            if take == self._chunk_rows:
                self._write_whole_chunks(arrays, offset)
            else:
                stop = self._buffered + take
                for name, value in arrays.items():
                    # buffer layout (T, rows, *features): one time step of a chunk is contiguous
                    self._buffers[name][:, self._buffered:stop] = np.swapaxes(
                        value[offset:offset + take], 0, 1)
                self._buffered = stop
                if self._buffered == self._chunk_rows:
                    self._flush()
            offset += take
        self.rows_written += count

    # -- internals

    def _lay_out(self, states, arrays, logits, prediction) -> None:
        """Lay out the netCDF-4 file (``repsim.activations.netcdf.NetCDFLayout``) in
        memory and write it out with plain file I/O, then reopen the file with h5py for data.

        In memory because HDF5 cannot recover from a write that fails while it lays out a
        file: its handles stay open and the interpreter crashes at exit. A full disk at this
        point is an ordinary OSError instead.
        """
        shapes = _state_shapes(states, arrays)
        check_column_names(self.stimuli, arrays)
        lengths = {name: shape[0] for name, shape in shapes.items()}
        if logits is not None and np.ndim(logits) == 3:
            lengths["logits"] = np.shape(logits)[1]
        self._time_dims = time_dims(lengths)
        self._chunk_rows = self._rows_per_chunk(shapes)
        self._has_logits, self._has_prediction = logits is not None, prediction is not None
        # in memory under a name no other live writer has (HDF5 refuses a second open file of
        # the same name, also in memory)
        with h5py.File(f"{self.path}.layout-{id(self)}", "w", driver="core",
                       backing_store=False, track_order=True) as memory:
            layout = NetCDFLayout(memory)
            self._write_coordinates(layout, lengths)
            coordinates = " ".join([*self.stimuli, *(["prediction"] if prediction is not None
                                                      else [])])
            self._create_state_variables(layout, shapes, coordinates)
            self._create_output_variables(layout, logits, prediction, coordinates)
            self._variables = list(arrays)
            layout.set_attrs(memory, {
                "layers": json.dumps(list(dict.fromkeys(name.rsplit(".", 1)[0]
                                                        for name in arrays))),
                "states": json.dumps([s for s in STATES if any(name.endswith(f".{s}")
                                                               for name in arrays)])})
            layout.finish()
            memory.flush()
            image = memory.id.get_file_image()
        stack, temporary = self._stack, self._temporary
        assert stack is not None and temporary is not None  # write() runs inside `with` only
        temporary.write_bytes(image)
        self._h5 = stack.enter_context(h5py.File(temporary, "r+"))
        self._datasets = {name: self._h5[name] for name in self._buffers}

    def _rows_per_chunk(self, shapes: Mapping[str, tuple[int, ...]]) -> int:
        """Stimuli per chunk: one chunk (one time step) near ``chunk_bytes``, and the buffer of
        every variable's chunk rows within ``buffer_bytes``."""
        row_bytes = {name: math.prod(shape) * self.dtype.itemsize
                     for name, shape in shapes.items()}
        per_step_bytes = max(row_bytes[name] // shapes[name][0] for name in shapes)
        return min(self.n_stimuli, max(1, self.chunk_bytes // per_step_bytes),
                   max(1, self.buffer_bytes // sum(row_bytes.values())))

    def _create_state_variables(self, layout: NetCDFLayout,
                                shapes: Mapping[str, tuple[int, ...]], coordinates: str) -> None:
        """One chunked variable per layer state, and its in-memory chunk buffer."""
        dim_names = _feature_dim_names({name: shape[1:] for name, shape in shapes.items()})
        made: set[str] = set()
        for name, dims in dim_names.items():
            for dim, size in zip(dims, shapes[name][1:], strict=True):
                if dim not in made:
                    layout.dimension(dim, size)
                    made.add(dim)
        options: dict[str, Any] = {}
        if self.compression == "gzip":
            options = {"compression": "gzip", "compression_opts": self.compression_level,
                       "shuffle": True}
        elif self.compression == "lzf":
            options = {"compression": "lzf", "shuffle": True}
        for name, shape in shapes.items():
            layer, state = name.rsplit(".", 1)
            layout.variable(
                name, (STIMULUS_DIM, self._time_dims[name], *dim_names[name]), self.dtype,
                chunks=(self._chunk_rows, 1, *shape[1:]), **options,
                attrs={"layer": layer, "state": state, "stream": layer.split(".")[0],
                       "coordinates": coordinates,
                       "long_name": f"{STATE_NAMES[state]} of layer {layer}"})
            self._buffers[name] = np.zeros((shape[0], self._chunk_rows, *shape[1:]),
                                           dtype=self.dtype)

    def _create_output_variables(self, layout: NetCDFLayout, logits, prediction,
                                 coordinates: str) -> None:
        """The ``logits`` and ``prediction`` variables (filled batch by batch)."""
        if logits is not None:
            logits = np.asarray(logits)
            layout.coordinate("class", np.arange(logits.shape[-1], dtype="i8"),
                              coordinate_attrs("class"))
            dims = ((STIMULUS_DIM, "class") if logits.ndim == 2
                    else (STIMULUS_DIM, self._time_dims["logits"], "class"))
            layout.variable("logits", dims, "f4", attrs={
                "coordinates": coordinates, "long_name": "model output before softmax"})
        if prediction is not None:
            layout.variable("prediction", (STIMULUS_DIM,), "i8",
                            attrs=coordinate_attrs("prediction"))

    def _write_coordinates(self, layout: NetCDFLayout, lengths: Mapping[str, int]) -> None:
        """Dims, per-stimulus coordinates, the time axes and the global attributes."""
        sizes = {STIMULUS_DIM: self.n_stimuli}
        for name, dim in sorted(self._time_dims.items(), key=lambda item: item[1] != TIME_DIM):
            sizes.setdefault(dim, lengths[name])
        for name, size in sizes.items():
            layout.coordinate(name, np.arange(size, dtype="i8"),
                              coordinate_attrs(TIME_DIM if name.startswith(TIME_DIM) else name))
        for name, values in self.stimuli.items():
            kind = _storage_kind(values)
            attrs = coordinate_attrs(name)
            if kind == "str":
                data, dtype = values.astype(str).astype(object), h5py.string_dtype()
            elif kind == "bool":  # xarray decodes int8 + dtype=bool to booleans
                data, dtype, attrs = values.astype("i1"), "i1", {"dtype": "bool", **attrs}
            else:
                data, dtype = values, "i8" if kind == "int" else "f8"
            layout.variable(name, (STIMULUS_DIM,), dtype, data=data, attrs=attrs)
        file_attrs = {"Conventions": CONVENTIONS, "format": FORMAT,
                      "format_version": FORMAT_VERSION, "repsim_version": repsim.__version__,
                      "created": datetime.datetime.now(datetime.UTC).isoformat(
                          timespec="seconds"),
                      **self.attrs, "complete": 0}
        layout.set_attrs(layout.h5, {key: _attribute(value)
                                     for key, value in file_attrs.items()})

    def _write_small(self, logits, prediction, count: int) -> None:
        """Logits and predictions are small: written straight through, batch by batch."""
        if (logits is not None) != self._has_logits:
            raise ValueError("pass logits on every write() or on none")
        if (prediction is not None) != self._has_prediction:
            raise ValueError("pass prediction on every write() or on none")
        start, stop = self.rows_written, self.rows_written + count
        h5 = self._h5
        assert h5 is not None  # the first write() laid the file out
        if logits is not None:
            logits = np.asarray(logits, dtype="f4")
            if logits.shape[0] != count:
                raise ValueError(f"logits have {logits.shape[0]} rows, states {count}")
            h5["logits"][start:stop] = logits
        if prediction is not None:
            prediction = np.asarray(prediction)
            if prediction.shape != (count,):
                raise ValueError(f"prediction must have shape ({count},), got {prediction.shape}")
            h5["prediction"][start:stop] = prediction

    def _write_whole_chunks(self, arrays: Mapping[str, np.ndarray], offset: int) -> None:
        """Write rows ``offset:offset + chunk rows`` of every variable as whole chunks, with
        nothing buffered: straight from the caller's memory where each time step's rows lie
        contiguous in it (states kept time-major, as ``repsim.record.hooks`` keeps them)."""
        rows = slice(offset, offset + self._chunk_rows)
        for name, value in arrays.items():
            steps = np.swapaxes(value[rows], 0, 1)
            if steps.dtype != self.dtype or not steps[0].flags.c_contiguous:
                steps = self._buffers[name]
                steps[:] = np.swapaxes(value[rows], 0, 1)
            self._write_steps(name, steps, self._chunk_rows)
        self._flushed += self._chunk_rows

    def _flush(self) -> None:
        """Write the buffered rows: one chunk per variable and time step."""
        for name, buffer in self._buffers.items():
            if self._buffered < self._chunk_rows:  # the last, partial chunk: no stale rows
                buffer[:, self._buffered:] = 0
            self._write_steps(name, buffer, self._buffered)
        self._flushed, self._buffered = self._flushed + self._buffered, 0

    def _write_steps(self, name: str, steps: np.ndarray, rows: int) -> None:
        """Write the chunk at row ``self._flushed`` of variable ``name`` from ``steps``, its
        ``(T, chunk rows, *features)`` of which the first ``rows`` are stimuli."""
        dataset, start = self._datasets[name], self._flushed
        for step in range(steps.shape[0]):
            if self.compression == "none":  # raw bytes of a whole (edge) chunk
                origin = (start, step) + (0,) * (steps.ndim - 2)
                dataset.id.write_direct_chunk(origin, steps[step])
            else:
                dataset[start:start + rows, step] = steps[step, :rows]

    def _finish(self) -> None:
        if self._h5 is None or self.rows_written != self.n_stimuli:
            raise ValueError(f"{self.path}: only {self.rows_written} of {self.n_stimuli} "
                             f"stimuli were written; the file is discarded")
        if self._buffered:
            self._flush()
        self._h5.attrs["complete"] = np.array([1], dtype="i8")  # netCDF attributes are 1-D


def _attribute(value):
    """Strings and numbers are stored as they are; anything else as a JSON string."""
    if isinstance(value, str | int | float | np.integer | np.floating) \
            and not isinstance(value, bool):
        return value
    return json.dumps(value)


def _feature_dim_names(shapes: Mapping[str, tuple[int, ...]]) -> dict[str, tuple[str, ...]]:
    """Dim names per variable: plain ``channel``/``y``/``x``/``feature`` where all variables
    with that dim agree on its extent, else suffixed with it (``channel_16``), since a netCDF
    dim has one size."""
    canonical = {name: feature_dims(len(shape)) for name, shape in shapes.items()}
    extents: dict[str, set[int]] = {}
    for name, shape in shapes.items():
        for dim, size in zip(canonical[name], shape, strict=True):
            extents.setdefault(dim, set()).add(size)
    return {name: tuple(dim if len(extents[dim]) == 1 else f"{dim}_{size}"
                        for dim, size in zip(canonical[name], shape, strict=True))
            for name, shape in shapes.items()}


def _state_shapes(states, arrays) -> dict[str, tuple[int, ...]]:
    """``(T, *features)`` per variable of the first write, after checking names and dims."""
    if not arrays:
        raise ValueError("write() needs at least one layer state")
    for layer, by_state in states.items():
        for state in by_state:
            if state not in STATES:
                raise ValueError(f"{layer}: unknown state {state!r}; states are {STATES}")
    shapes = {}
    for name, value in arrays.items():
        if value.ndim not in (3, 5):
            raise ValueError(f"{name} must be (stimuli, time, channel, y, x) or (stimuli, time, "
                             f"feature), got shape {value.shape}")
        shapes[name] = value.shape[1:]
    return shapes
