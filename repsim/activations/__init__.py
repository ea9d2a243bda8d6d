"""Activation files: recorded layer states per stimulus and time step, as netCDF-4/HDF5, read
as xarray.

:mod:`~repsim.activations.format` defines the layout, :mod:`~repsim.activations.writer`
streams a file to disk atomically, :mod:`~repsim.activations.reader` opens it lazily and
selects and aligns what the analyses need.
"""

from typing import TYPE_CHECKING

from repsim.activations.format import (
    COMPRESSIONS,
    CONVENTIONS,
    COORDINATE_ATTRS,
    DTYPES,
    FORMAT,
    FORMAT_VERSION,
    STATES,
    STIMULUS_COORDS,
    TIME_DIM,
    check_column_names,
    coordinate_attrs,
    time_dims,
    variable_name,
)
from repsim.lazy import lazy_package

if TYPE_CHECKING:  # the reader needs xarray, the writer h5py: loaded on first use
    from repsim.activations.reader import (
        condition_changes,
        condition_names,
        flatten,
        layer_depths,
        layer_names,
        layer_states,
        layer_streams,
        model_name,
        open,
        select,
        state_names,
        stimulus_ids,
        stimulus_table,
        time_steps,
    )
    from repsim.activations.writer import ActivationWriter, check_output_path

__all__ = [
    "COMPRESSIONS",
    "CONVENTIONS",
    "COORDINATE_ATTRS",
    "DTYPES",
    "FORMAT",
    "FORMAT_VERSION",
    "STATES",
    "STIMULUS_COORDS",
    "TIME_DIM",
    "ActivationWriter",
    "check_column_names",
    "check_output_path",
    "condition_changes",
    "condition_names",
    "coordinate_attrs",
    "flatten",
    "layer_depths",
    "layer_names",
    "layer_states",
    "layer_streams",
    "model_name",
    "open",
    "select",
    "state_names",
    "stimulus_ids",
    "stimulus_table",
    "time_dims",
    "time_steps",
    "variable_name",
]

lazy_package(__name__)
