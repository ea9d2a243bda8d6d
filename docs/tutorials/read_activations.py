"""Read one activation file three ways: repsim/xarray, plain h5py, and rsatoolbox."""

import h5py
import numpy as np
import xarray as xr

from repsim import activations
from repsim.analysis import rdm
from repsim.interop import from_rsatoolbox, to_rsatoolbox


def main(path: str = "runs/tutorial-f1/activations.h5") -> dict[str, object]:
    # xarray, through repsim: lazy, checked complete, indexed by stimulus id.
    ds = activations.open(path)
    layer = activations.select(ds, "fused.2", time=-1, condition="clean")
    print(layer.dims, dict(layer.sizes))

    # xarray alone: the file is valid netCDF-4.
    plain = xr.open_dataset(path, engine="h5netcdf")
    print("variables:", sorted(name for name in plain.data_vars if name != "logits"))

    # h5py: every variable is an HDF5 dataset, every attribute an HDF5 attribute.
    with h5py.File(path, "r") as file:
        shape = file["fused.2.h"].shape
        complete = int(np.ravel(file.attrs["complete"])[0])  # attributes are 1-element arrays
    print("fused.2.h", shape, "complete:", complete)

    # rsatoolbox: a labelled RDM goes across and comes back with its stimulus labels.
    dissimilarity = rdm(activations.flatten(layer), metric="correlation")
    rdms = to_rsatoolbox(dissimilarity)
    back = from_rsatoolbox(rdms)
    print("rsatoolbox measure:", rdms.dissimilarity_measure, "patterns:", rdms.n_cond)
    return {"shape": shape, "complete": complete, "rdm": dissimilarity, "back": back}


if __name__ == "__main__":
    main()
