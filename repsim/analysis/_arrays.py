"""Turning user inputs into checked float64 matrices, lining up stimuli by id, and labelling
results.

Every analysis accepts NumPy arrays, torch tensors or xarray DataArrays with stimuli on the
first axis (for a DataArray: the ``stimulus`` dim, wherever it is). Every other axis is
flattened into features. When two labelled inputs both carry a ``stimulus_id`` coordinate,
they are matched by id (Brain-Score style) instead of by position.

xarray in, xarray out (:func:`labelled_like`): when any input is a DataArray, a matrix result
comes back as a DataArray whose axes carry the inputs' labels. An axis over stimuli is
``stimulus`` with the stimulus coordinates (ids, digits, condition...); an axis over a list
or dict of representations is ``representation``, labelled by the dict's keys or the
DataArrays' names, with the scalar coordinates they share (e.g. ``time``). A dim that occurs
twice gets a trailing underscore the second time, on its coordinates too: an RDM is
``(stimulus, stimulus_)`` with ``stimulus_id`` and ``stimulus_id_``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import torch
import xarray as xr

STIMULUS_DIM = "stimulus"
ID_COORD = "stimulus_id"
REPRESENTATION_DIM = "representation"
SECOND = "_"  # marks the second of two axes over the same things: (stimulus, stimulus_)

Axis = tuple[str, dict[str, np.ndarray]]  # an output dim and its 1-D coordinates


def as_matrix(x, name: str = "X") -> np.ndarray:
    """``x`` as a finite float64 ``(n_stimuli, n_features)`` array (a copy only when needed).

    Axis 0 (or the ``stimulus`` dim of a DataArray) indexes stimuli; all other axes are
    flattened in C order. Raises ValueError naming ``name`` for empty, non-numeric or
    non-finite (NaN, inf) input.
    """
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        x = (x.double() if x.dtype != torch.float64 else x).numpy()
    elif isinstance(x, xr.DataArray):
        if STIMULUS_DIM in x.dims:
            x = x.transpose(STIMULUS_DIM, ...)
        x = x.values
    array = np.asarray(x)
    if array.dtype.kind not in "biuf":
        raise ValueError(f"{name} must hold real numbers, got dtype {array.dtype}")
    if array.ndim == 0:
        raise ValueError(f"{name} must have a stimulus axis, got a scalar")
    array = array.reshape(array.shape[0], -1) if array.ndim != 2 else array
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {array.shape}: stimuli x features)")
    array = np.asarray(array, dtype=np.float64)
    check_finite(array, name)
    return array


def check_finite(array: np.ndarray, name: str) -> None:
    """ValueError naming ``name`` and counting the offending entries if any is NaN or inf."""
    finite = np.isfinite(array)
    if not finite.all():
        bad = array[~finite]
        raise ValueError(f"{name} contains {int(np.isnan(bad).sum())} NaN and "
                         f"{int(np.isinf(bad).sum())} infinite values")


def n_stimuli(x) -> int:
    """The number of stimuli of an input, without converting (or loading) it."""
    if isinstance(x, xr.DataArray) and STIMULUS_DIM in x.dims:
        return x.sizes[STIMULUS_DIM]
    shape = x.shape if hasattr(x, "shape") else np.shape(x)
    if len(shape) == 0:
        raise ValueError("an input must have a stimulus axis, got a scalar")
    return int(shape[0])


def stimulus_ids(x) -> np.ndarray | None:
    """The ``stimulus_id`` coordinate of a DataArray as strings, else None."""
    if isinstance(x, xr.DataArray) and ID_COORD in x.coords \
            and x.coords[ID_COORD].dims == (STIMULUS_DIM,):
        return np.asarray(x.coords[ID_COORD].values).astype(str)
    return None


def stimulus_positions(inputs: Sequence, names: Sequence[str]) -> list[np.ndarray | None]:
    """For each input, the rows that put its stimuli in the first input's order.

    Inputs that all carry stimulus ids are matched by id (None = already in order); otherwise
    they are matched by position and must have equal stimulus counts. Raises ValueError naming
    the inputs when counts differ, ids are duplicated, or the id sets differ.
    """
    counts = [n_stimuli(x) for x in inputs]
    found = [stimulus_ids(x) for x in inputs]
    ids = [i for i in found if i is not None]
    if len(ids) < len(found):
        for count, name in zip(counts[1:], names[1:], strict=True):
            if count != counts[0]:
                raise ValueError(f"different numbers of stimuli: {names[0]} has {counts[0]}, "
                                 f"{name} has {count}")
        return [None] * len(inputs)
    reference = ids[0]
    lookup = _id_lookup(reference, names[0])
    positions: list[np.ndarray | None] = [None]
    for other, name in zip(ids[1:], names[1:], strict=True):
        if np.array_equal(other, reference):
            positions.append(None)
            continue
        other_lookup = _id_lookup(other, name)
        missing = [i for i in reference if i not in other_lookup]
        extra = [i for i in other if i not in lookup]
        if missing or extra:
            raise ValueError(f"mismatched stimulus ids between {names[0]} and {name}: "
                             f"{len(missing)} of {names[0]}'s ids are missing from {name} "
                             f"(e.g. {missing[:2]}) and {len(extra)} of {name}'s are not in "
                             f"{names[0]} (e.g. {extra[:2]})")
        positions.append(np.array([other_lookup[i] for i in reference]))
    return positions


def _id_lookup(ids: np.ndarray, name: str) -> dict[str, int]:
    lookup = {value: row for row, value in enumerate(ids)}
    if len(lookup) != len(ids):
        values, counts = np.unique(ids, return_counts=True)
        raise ValueError(f"{name} has duplicated stimulus ids (e.g. {values[counts > 1][:2]})")
    return lookup


def take_rows(x, rows: np.ndarray | None):
    """``x`` restricted to (or reordered by) ``rows`` along the stimulus axis, lazily for
    xarray; ``rows=None`` returns ``x`` unchanged."""
    if rows is None:
        return x
    if isinstance(x, xr.DataArray) and STIMULUS_DIM in x.dims:
        return x.isel({STIMULUS_DIM: rows})
    return x[torch.as_tensor(rows)] if isinstance(x, torch.Tensor) else np.asarray(x)[rows]


def aligned_matrices(inputs: Sequence, names: Sequence[str]) -> list[np.ndarray]:
    """Each input as a checked float64 matrix with its rows in the first input's order."""
    positions = stimulus_positions(inputs, names)
    return [as_matrix(take_rows(x, rows), name)
            for x, rows, name in zip(inputs, positions, names, strict=True)]


def is_constant(matrix: np.ndarray) -> bool:
    """True when every stimulus has exactly the same pattern (no stimulus information)."""
    return bool((matrix == matrix[0]).all())


def check_choice(value: str, choices: Sequence[str], what: str) -> None:
    """ValueError ``unknown <what> 'value'; choose one of ...`` unless ``value`` is allowed."""
    if value not in choices:
        raise ValueError(f"unknown {what} {value!r}; choose one of {', '.join(choices)}")


def labels_of(labels, x=None, name: str = "labels") -> np.ndarray:
    """A 1-D label array: given directly, or the name of a stimulus coordinate of ``x``."""
    if isinstance(labels, str):
        if not isinstance(x, xr.DataArray) or labels not in x.coords:
            raise ValueError(f"{name} {labels!r} names no stimulus coordinate of the input")
        labels = x.coords[labels].values
    elif isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    elif isinstance(labels, xr.DataArray):
        labels = labels.values
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one label per stimulus), got shape {labels.shape}")
    return labels


def matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b``; CPU tensors go through NumPy's BLAS (OpenBLAS multiplied our float32 and
    float64 matrices 1.5-2x faster than torch's MKL on the AMD CPUs we measured), any other
    device through torch."""
    if a.device.type == "cpu":
        return torch.from_numpy(np.matmul(a.numpy(), b.numpy()))
    return a @ b


@contextlib.contextmanager
def single_threaded_torch(device: torch.device) -> Iterator[None]:
    """On the CPU, run torch's own (elementwise) work on one thread; restored on exit.

    The analyses leave the large products to NumPy's multi-threaded BLAS (:func:`matmul`);
    what torch does itself is small and memory-bound, and with several intra-op threads on a
    busy machine every such step waits for the slowest thread (we measured 7-10x slowdowns
    on 2 shared cores). This is a process-wide torch setting while the block runs.
    """
    if device.type != "cpu":
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def as_list(reps, name: str) -> list:
    """A list or dict (values, in order) of representations as a non-empty list."""
    reps = list(reps.values()) if isinstance(reps, Mapping) else list(reps)
    if not reps:
        raise ValueError(f"{name} holds no representations")
    return reps


def as_rdm_stack(rdms, name: str) -> tuple[np.ndarray, bool]:
    """RDM input (an (n, n) matrix, a (k, n, n) stack, or a list of matrices) as a finite
    float64 ``(k, n, n)`` stack, and whether it was a single RDM. ValueError naming ``name``
    for any other shape."""
    if isinstance(rdms, list | tuple):
        stack = np.stack([as_matrix(r, f"{name}[{i}]") for i, r in enumerate(rdms)])
        single = False
    else:
        stack = np.asarray(rdms.values if isinstance(rdms, xr.DataArray) else rdms,
                           dtype=np.float64)
        single = stack.ndim == 2
        stack = stack[None] if single else stack
    if stack.ndim != 3 or stack.shape[1] != stack.shape[2]:
        raise ValueError(f"{name} must be a square (n, n) RDM or a (k, n, n) stack, got "
                         f"shape {stack.shape}")
    check_finite(stack, name)
    return stack, single


def coords_along(x: xr.DataArray, dim: str) -> dict[str, np.ndarray]:
    """The coordinates of ``x`` that run along ``dim`` alone, by name."""
    return {str(name): coord.values for name, coord in x.coords.items() if coord.dims == (dim,)}


def scalar_labels(x) -> dict:
    """What labels one representation as a whole: a DataArray's scalar coordinates (e.g.
    ``time`` after picking a step) and its name as ``representation``; nothing otherwise."""
    if not isinstance(x, xr.DataArray):
        return {}
    labels = {name: coord.values[()] for name, coord in x.coords.items() if coord.ndim == 0}
    if x.name is not None:
        labels[REPRESENTATION_DIM] = x.name
    return labels


def stimulus_axis(x) -> Axis:
    """An output axis over the stimuli of ``x``, with its stimulus coordinates."""
    if not isinstance(x, xr.DataArray):
        return STIMULUS_DIM, {}
    return STIMULUS_DIM, coords_along(x, STIMULUS_DIM if STIMULUS_DIM in x.dims else str(x.dims[0]))


def representation_axis(reps) -> Axis:
    """An output axis over a list or dict of representations: labelled by the dict's keys,
    else by the DataArrays' names (positions when any is unnamed), plus every scalar
    coordinate all of them carry (one value per representation)."""
    items = list(reps.values()) if isinstance(reps, Mapping) else list(reps)
    labels = [scalar_labels(x) for x in items]
    coords = {name: np.array([label[name] for label in labels])
              for name in labels[0] if all(name in label for label in labels)}
    if isinstance(reps, Mapping):
        coords[REPRESENTATION_DIM] = np.array(list(reps))
    coords.setdefault(REPRESENTATION_DIM, np.arange(len(items)))
    return REPRESENTATION_DIM, coords


def label(values: np.ndarray, axes: Sequence[Axis], scalars: dict | None = None,
          attrs: dict | None = None) -> xr.DataArray:
    """``values`` as a DataArray with one ``(dim, coords)`` per axis (a dim named a second
    time, and its coordinates, get the ``_`` suffix), scalar coordinates and attributes."""
    dims: list[str] = []
    coords = dict(scalars or {})
    for dim, along in axes:
        suffix = SECOND if dim in dims else ""
        dims.append(dim + suffix)
        for name, value in along.items():
            if name + suffix in coords:
                raise ValueError(f"the coordinate {name + suffix!r} would label two axes")
            coords[name + suffix] = (dim + suffix, value)
    return xr.DataArray(values, dims=dims, coords=coords, attrs=dict(attrs or {}))


def labelled_like(inputs: Sequence, values: np.ndarray, axes: Sequence[Axis],
                  scalars: dict | None = None, attrs: dict | None = None
                  ) -> np.ndarray | xr.DataArray:
    """xarray in, xarray out: ``values`` labelled (see :func:`label`) when any of ``inputs``
    (or any item of a list or dict among them) is a DataArray, else ``values`` unchanged."""
    def has_labels(x) -> bool:
        if isinstance(x, Mapping):
            x = list(x.values())
        if isinstance(x, list | tuple):
            return any(isinstance(item, xr.DataArray) for item in x)
        return isinstance(x, xr.DataArray)

    if not any(has_labels(x) for x in inputs):
        return values
    return label(values, axes, scalars, attrs)
