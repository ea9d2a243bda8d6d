"""The netCDF-4 conventions of an activation file, laid out directly with h5py.

A netCDF-4 file is HDF5 with conventions that the netCDF-C library reads:

- every dimension is an HDF5 dimension scale with an id (``_Netcdf4Dimid``, in creation
  order): its coordinate variable, a dataset of the dim's name, or else an empty dataset whose
  scale name says it is "a netCDF dimension but not a netCDF variable";
- every variable has its dims attached as scales, their ids in ``_Netcdf4Coordinates``, and
  the first one's id in ``_Netcdf4Dimid`` (as netCDF-C itself writes);
- numeric attributes are 1-D arrays; ``_NCProperties`` on the root names the writer;
- link and attribute creation order are tracked.

h5netcdf writes the same objects, but its bookkeeping looks objects up again and again (some
1600 HDF5 lookups for one activation file): 40-50 ms per file, more than the recording of a few
hundred stimuli costs beyond the forward. :class:`NetCDFLayout` makes each object once. The
tests hold it to h5netcdf's layout object by object and open its files with netCDF-C.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import h5py
import numpy as np

import repsim

# The scale name of a dimension without a coordinate variable, as netCDF-C writes it (the
# dim's size follows, right-aligned in 10 characters).
NOT_A_VARIABLE = b"This is a netCDF dimension but not a netCDF variable."


def netcdf_attribute(value: Any) -> Any:
    """``value`` as netCDF stores an attribute: numbers as 1-D arrays, strings as they are."""
    if isinstance(value, str | bytes) or np.ndim(value) > 0:
        return value
    return np.atleast_1d(value)


class NetCDFLayout:
    """Dimensions, coordinate variables and variables of a netCDF-4 file, written into the
    root group of ``h5``, an h5py file created with ``track_order=True``."""

    def __init__(self, h5: h5py.File) -> None:
        self.h5 = h5
        self._scales: dict[str, h5py.Dataset] = {}  # each dimension's, in id order

    def dimension(self, name: str, size: int) -> None:
        """A dimension with no coordinate variable."""
        scale = self.h5.create_dataset(name, (size,), dtype=">f4", track_order=True)
        self._make_scale(scale, name, NOT_A_VARIABLE + f"{size:10}".encode("ascii"))

    def coordinate(self, name: str, data: np.ndarray,
                   attrs: Mapping[str, Any] | None = None) -> h5py.Dataset:
        """A dimension and its coordinate variable of the same name, holding ``data``."""
        variable = self.h5.create_dataset(name, data=data, track_order=True)
        self._make_scale(variable, name, name)
        variable.attrs["_Netcdf4Coordinates"] = np.array([list(self._scales).index(name)],
                                                         "int32")
        self.set_attrs(variable, attrs or {})
        return variable

    def variable(self, name: str, dims: Sequence[str], dtype: Any, *,
                 data: np.ndarray | None = None, attrs: Mapping[str, Any] | None = None,
                 **options: Any) -> h5py.Dataset:
        """A variable over ``dims`` (made before), holding ``data`` if given; ``options`` go
        to ``h5py.Group.create_dataset`` (chunks, compression, shuffle)."""
        scales = [self._scales[dim] for dim in dims]
        variable = self.h5.create_dataset(name, tuple(scale.shape[0] for scale in scales),
                                          dtype=dtype, data=data, track_order=True, **options)
        for axis, scale in enumerate(scales):
            variable.dims[axis].attach_scale(scale)
        ids = np.array([list(self._scales).index(dim) for dim in dims], "int32")
        variable.attrs["_Netcdf4Coordinates"] = ids
        variable.attrs["_Netcdf4Dimid"] = ids[0]
        self.set_attrs(variable, attrs or {})
        return variable

    @staticmethod
    def set_attrs(target: h5py.HLObject, attrs: Mapping[str, Any]) -> None:
        """Attributes of a variable or the file, stored as netCDF stores them."""
        for key, value in attrs.items():
            target.attrs[key] = netcdf_attribute(value)

    def finish(self) -> None:
        """Name the writer in ``_NCProperties`` (netCDF-C reads its ``version=2``)."""
        properties = (f"version=2,repsim={repsim.__version__},"
                      f"hdf5={h5py.version.hdf5_version},h5py={h5py.__version__}")
        self.h5.attrs["_NCProperties"] = np.array(
            properties, dtype=h5py.string_dtype("ascii", len(properties)))

    def _make_scale(self, scale: h5py.Dataset, name: str, scale_name: str | bytes) -> None:
        scale.attrs["_Netcdf4Dimid"] = np.array(len(self._scales), "int32")
        scale.make_scale(scale_name)
        self._scales[name] = scale
