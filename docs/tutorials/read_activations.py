"""Read one activation file with repsim/xarray, h5py and rsatoolbox."""

import h5py
import numpy as np
import xarray as xr

from repsim import activations
from repsim.analysis import rdm
from repsim.interop import from_rsatoolbox, to_rsatoolbox


def main(path: str = "runs/tutorial-f1/activations.h5") -> dict:
    # xarray through repsim: lazy, checked complete, indexed by stimulus id.
    ds = activations.open(path)
    layer = activations.select(ds, "fused.2", time=-1, condition="clean")
    print(layer.dims, dict(layer.sizes))

    # xarray alone: the file is valid netCDF-4.
    plain = xr.open_dataset(path, engine="h5netcdf")
    print("variables:", sorted(map(str, plain.data_vars)))

    # h5py: variables are HDF5 datasets, attributes HDF5 attributes
    # (stored as 1-element arrays).
    with h5py.File(path, "r") as file:
        shape = file["fused.2.h"].shape
        complete = int(np.ravel(file.attrs["complete"])[0])
    print("fused.2.h", shape, "complete:", complete)

    # rsatoolbox: a labelled RDM goes across and comes back labelled.
    dissimilarity = rdm(activations.flatten(layer), metric="correlation")
    rdms = to_rsatoolbox(dissimilarity)
    back = from_rsatoolbox(rdms)
    print("rsatoolbox:", rdms.dissimilarity_measure, rdms.n_cond, "stimuli")
    return {"shape": shape, "complete": complete,
            "rdm": dissimilarity, "back": back}


if __name__ == "__main__":
    main()
