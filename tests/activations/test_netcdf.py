"""The netCDF-4 layout repsim writes with h5py, held to two independent references: h5netcdf
writing the same dimensions, variables and attributes, and the netCDF-C library reading the
file (netCDF4-python)."""

from __future__ import annotations

from pathlib import Path

import h5netcdf
import h5py
import netCDF4
import numpy as np
import pytest

from repsim import activations as act

N, T = 7, 3


@pytest.fixture
def written(tmp_path) -> Path:
    """An activation file with every kind of object the writer makes: string, integer, float
    and boolean coordinates, maps of two widths (suffixed dims), a vector, gzip, logits."""
    rng = np.random.default_rng(0)
    states = {"audio.1": {"h": rng.normal(size=(N, T, 3, 4, 2)).astype("f4"),
                          "c": rng.normal(size=(N, T, 3, 4, 2)).astype("f4")},
              "fused.2": {"h": rng.normal(size=(N, T, 5, 4, 2)).astype("f4")},
              "readout": {"h": rng.normal(size=(N, T, 6)).astype("f4")}}
    stimuli = {"stimulus_id": np.array([f"s{i}" for i in range(N)]),
               "condition": np.array(["clean", "audio_snr-10"] * 3 + ["clean"]),
               "audio_digit": np.arange(N) % 10, "congruent": np.arange(N) % 2 == 0,
               "audio_snr": np.where(np.arange(N) % 2, -10.0, np.inf)}
    logits = rng.normal(size=(N, 10)).astype("f4")
    path = tmp_path / "a.h5"
    with act.ActivationWriter(path, stimuli, attrs={"model_sha256": "ab" * 32, "n": 4,
                                                    "snrs": [0.0, -10.0]},
                              compression="gzip", chunk_bytes=2 * 5 * 8 * 4) as writer:
        for rows in (slice(0, 4), slice(4, N)):
            writer.write({layer: {s: v[rows] for s, v in by.items()} for layer, by in
                          states.items()}, logits=logits[rows],
                         prediction=logits[rows].argmax(axis=1))
    return path


def _same_with_h5netcdf(path: Path, reference: Path) -> None:
    """Write what ``path`` holds (dims in id order, then variables in file order, with their
    types, chunks, filters and attributes, then the global attributes) with h5netcdf."""
    with h5netcdf.File(path, "r") as source, h5netcdf.File(reference, "w") as copy:
        copy.dimensions = {name: dim.size for name, dim in source.dimensions.items()}
        for name, variable in source.variables.items():
            stored = variable._h5ds
            options = {"chunks": stored.chunks, "compression": stored.compression,
                       "compression_opts": stored.compression_opts, "shuffle": stored.shuffle}
            made = copy.create_variable(name, variable.dimensions, dtype=stored.dtype,
                                        **{k: v for k, v in options.items() if v})
            made[...] = stored[...]
            made.attrs.update(variable.attrs)
        copy.attrs.update(source.attrs)


def _objects(path: Path) -> dict[str, tuple]:
    """Every HDF5 object of the file: its kind, storage and attributes (references as the
    names they point to), and the root's attributes under "/"."""
    def attribute(handle, owner, key):
        value = owner.attrs[key]
        if key == "DIMENSION_LIST":
            value = [[handle[ref].name for ref in refs] for refs in value]
        elif key == "REFERENCE_LIST":
            value = sorted((handle[ref].name, int(axis)) for ref, axis in value)
        elif key == "_NCProperties":  # names the writer: "h5netcdf=..." or "repsim=..."
            value = value.split(b",")[0]
        elif isinstance(value, np.ndarray):
            value = (value.dtype.str, value.tolist())
        kind = owner.attrs.get_id(key).dtype
        return key, (str(kind) if key != "_NCProperties" else "fixed ascii",
                     owner.attrs.get_id(key).shape, repr(value))

    found = {}
    with h5py.File(path, "r") as handle:
        found["/"] = ("group", sorted(attribute(handle, handle, key) for key in handle.attrs))

        def visit(name, obj):
            create = obj.id.get_create_plist()
            found[name] = (type(obj).__name__, obj.shape, obj.dtype.str, obj.chunks,
                           obj.compression, obj.compression_opts, obj.shuffle,
                           repr(obj.fillvalue), create.get_fill_time(),
                           create.get_alloc_time(), create.get_attr_creation_order(),
                           h5py.check_string_dtype(obj.dtype),
                           sorted(attribute(handle, obj, key) for key in obj.attrs))
        handle.visititems(visit)
    return found


def test_the_layout_is_the_one_h5netcdf_writes(written, tmp_path):
    reference = tmp_path / "reference.h5"
    _same_with_h5netcdf(written, reference)
    ours, theirs = _objects(written), _objects(reference)
    theirs["/"][1][:] = [item for item in theirs["/"][1] if item[0] != "complete"]
    ours["/"][1][:] = [item for item in ours["/"][1] if item[0] != "complete"]
    assert list(ours) == list(theirs)
    for name in ours:
        assert ours[name] == theirs[name], name
    with h5netcdf.File(written, "r") as mine, h5netcdf.File(reference, "r") as other:
        assert list(mine.variables) == list(other.variables)
        assert {name: dim.size for name, dim in mine.dimensions.items()} == {
            name: dim.size for name, dim in other.dimensions.items()}


def test_netcdf_c_reads_the_file(written):
    with netCDF4.Dataset(written) as nc, h5py.File(written, "r") as h5:
        assert nc.data_model == "NETCDF4"
        assert {name: len(dim) for name, dim in nc.dimensions.items()} == {
            "stimulus": N, "time": T, "channel_3": 3, "y": 4, "x": 2, "channel_5": 5,
            "feature": 6, "class": 10}
        assert nc["fused.2.h"].dimensions == ("stimulus", "time", "channel_5", "y", "x")
        assert nc["readout.h"].dimensions == ("stimulus", "time", "feature")
        assert nc["logits"].dimensions == ("stimulus", "class")
        for name in ("audio.1.h", "audio.1.c", "fused.2.h", "readout.h", "logits",
                     "prediction", "audio_digit", "congruent", "audio_snr", "stimulus"):
            np.testing.assert_array_equal(np.asarray(nc[name][...]), h5[name][...], name)
        assert list(nc["stimulus_id"][...]) == [f"s{i}" for i in range(N)]
        assert nc["audio_snr"].units == "dB"
        assert nc["congruent"].dtype == np.int8 and nc["congruent"].getncattr("dtype") == "bool"
        assert nc.getncattr("format") == "repsim-activations"
        assert nc.getncattr("format_version") == act.FORMAT_VERSION
        assert nc.getncattr("complete") == 1 and nc.getncattr("n") == 4
        assert nc.getncattr("model_sha256") == "ab" * 32
        assert nc.getncattr("snrs") == "[0.0, -10.0]"
