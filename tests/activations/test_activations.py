"""repsim.activations: the file format, the streaming atomic writer, and the lazy reader."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import xarray as xr
from activation_files import write_activations

from repsim import activations as act
from repsim.provenance import Busy, claim

N, T = 23, 3


def _states(rng: np.random.Generator, n: int = N) -> dict[str, dict[str, np.ndarray]]:
    """Three layers in forward order; fused.2 is wider, so its channel dim gets its own name."""
    def draw(c: int) -> np.ndarray:
        return rng.normal(size=(n, T, c, 5, 4)).astype(np.float32)

    return {"audio.1": {"h": draw(3), "c": draw(3)}, "visual.1": {"h": draw(3), "c": draw(3)},
            "fused.2": {"h": draw(6), "c": draw(6)}}


def _stimuli(n: int = N) -> dict[str, np.ndarray]:
    half = n // 2
    return {
        "stimulus_id": np.array([f"synth/{i % half}|img/{i % half}" for i in range(n)]),
        "condition": np.array(["clean"] * half + ["audio_snr-10"] * (n - half)),
        "audio_digit": np.arange(n) % 10,
        "congruent": np.arange(n) % 3 != 0,
        "audio_snr": np.where(np.arange(n) < half, np.inf, -10.0),
    }


def _write_in_batches(path: Path, states, stimuli, batch: int, **options) -> act.ActivationWriter:
    logits = np.arange(N * 10, dtype=np.float32).reshape(N, 10)
    writer = act.ActivationWriter(path, stimuli, attrs={"config": {"hidden": 3}}, **options)
    with writer:
        for start in range(0, N, batch):
            rows = slice(start, start + batch)
            writer.write({layer: {s: v[rows] for s, v in by_state.items()}
                          for layer, by_state in states.items()},
                         logits=logits[rows], prediction=logits[rows].argmax(axis=1))
    return writer


@pytest.fixture
def written(tmp_path):
    """A file written in batches of 5 into chunks of 2 rows: several flushes, a partial last."""
    states = _states(np.random.default_rng(0))
    path = tmp_path / "activations.h5"
    writer = _write_in_batches(path, states, _stimuli(), batch=5, chunk_bytes=2 * 6 * 20 * 4)
    assert writer._chunk_rows == 2
    return path, states


def test_roundtrip_values_coordinates_and_attributes(written):
    path, states = written
    ds = act.open(path)
    assert act.layer_names(ds) == ["audio.1", "visual.1", "fused.2"]
    assert act.state_names(ds) == ["h", "c"]
    assert act.condition_names(ds) == ["clean", "audio_snr-10"]
    for layer, by_state in states.items():
        for state, values in by_state.items():
            stored = ds[act.variable_name(layer, state)]
            assert stored.dtype == np.float32
            np.testing.assert_array_equal(stored.values, values)
    stimuli = _stimuli()
    for name, values in stimuli.items():
        np.testing.assert_array_equal(ds[name].values, values)
    assert ds["congruent"].dtype == bool
    assert ds["logits"].dims == ("stimulus", "class")
    np.testing.assert_array_equal(ds["prediction"].values, np.full(N, 9))
    assert ds.attrs["complete"] == 1
    assert ds.attrs["format"] == act.FORMAT
    assert json.loads(ds.attrs["config"]) == {"hidden": 3}
    # layers that differ in channel count get channel dims named after their extent
    assert ds["audio.1.h"].dims == ("stimulus", "time", "channel_3", "y", "x")
    assert ds["fused.2.h"].dims == ("stimulus", "time", "channel_6", "y", "x")


def test_xarray_and_h5py_views_agree(written):
    path, _ = written
    ds = act.open(path)
    with h5py.File(path, "r") as handle:
        for name in [*ds.data_vars, *ds.coords]:
            raw = handle[name][()]
            if ds[name].dtype.kind == "U":
                raw = np.array([item.decode() for item in raw])
            np.testing.assert_array_equal(ds[name].values, raw.astype(ds[name].dtype))
        assert handle["fused.2.h"].chunks == (2, 1, 6, 5, 4)
        assert np.ravel(handle.attrs["complete"]).tolist() == [1]


def test_open_is_lazy(written):
    path, _ = written
    ds = act.open(path)
    for name in ds.data_vars:
        assert not ds[name]._in_memory, name
    picked = act.select(ds, "fused.2", time=1, condition="clean")
    assert not picked._in_memory
    picked.values  # noqa: B018 - reading is what makes it load
    assert not ds["fused.2.h"]._in_memory  # only the selection was read


def test_select_time_condition_and_canonical_dims(written):
    path, states = written
    ds = act.open(path)
    picked = act.select(ds, "fused.2", "c", time=-1, condition="audio_snr-10")
    assert picked.dims == ("stimulus", "channel", "y", "x")
    half = N // 2
    np.testing.assert_array_equal(picked.values, states["fused.2"]["c"][half:, -1])
    assert set(picked["condition"].values) == {"audio_snr-10"}
    whole = act.select(ds, "audio.1")
    assert whole.dims == ("stimulus", "time", "channel", "y", "x")
    np.testing.assert_array_equal(whole.values, states["audio.1"]["h"])


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"layer": "fused.9"}, "unknown layer 'fused.9'"),
    ({"layer": "audio.1", "condition": "both_snr0"}, "unknown condition 'both_snr0'"),
    ({"layer": "audio.1", "time": T}, "time must be an integer step"),
    ({"layer": "audio.1", "time": 0.5}, "time must be an integer step"),
])
def test_select_refuses_unknown_names(written, kwargs, message):
    ds = act.open(written[0])
    with pytest.raises(ValueError, match=message):
        act.select(ds, **kwargs)


def test_select_refuses_unrecorded_state(tmp_path):
    states = {"fused.1": {"h": np.zeros((4, T, 2, 3, 3), np.float32)}}
    path = write_activations(tmp_path / "a.h5", states, {"stimulus_id": np.arange(4)})
    with pytest.raises(ValueError, match="state 'c' was not recorded"):
        act.select(act.open(path), "fused.1", "c")


def test_flatten_matches_numpy_reshape(written):
    path, states = written
    picked = act.select(act.open(path), "visual.1", time=2)
    flat = act.flatten(picked)
    assert flat.dims == ("stimulus", "feature")
    np.testing.assert_array_equal(flat.values, states["visual.1"]["h"][:, 2].reshape(N, -1))
    np.testing.assert_array_equal(flat["stimulus_id"].values, _stimuli()["stimulus_id"])
    whole = act.flatten(act.select(act.open(path), "visual.1"))
    assert whole.shape == (N, T * 3 * 5 * 4)
    with pytest.raises(ValueError, match="'stimulus' as the first dim"):
        act.flatten(picked.transpose("channel", ...))


@pytest.mark.parametrize(("dtype", "compression"), [("float32", "none"), ("float16", "none"),
                                                    ("float32", "gzip")])
def test_time_major_rows_written_straight_are_exact_and_free_to_reuse(tmp_path, dtype,
                                                                       compression):
    """States handed over as a (stimulus, time, ...) view of time-major memory, the way
    repsim.record keeps them, fill whole chunks from that memory: the values equal the
    input, also after the caller overwrites the memory for its next batch, and a batch that
    ends mid-chunk or a cast to float16 goes through the buffer as before."""
    rng = np.random.default_rng(3)
    states = _states(rng)
    block = {layer: {s: np.empty((T, 6, *v.shape[2:]), np.float32) for s, v in by.items()}
             for layer, by in states.items()}  # reused by every batch, as the hooks do
    writer = act.ActivationWriter(tmp_path / "a.h5", _stimuli(), dtype=dtype,
                                  compression=compression,
                                  chunk_bytes=2 * 6 * 20 * np.dtype(dtype).itemsize)
    with writer:
        for start in (0, 6, 12, 18):  # batches of 6 into chunks of 2; the last holds 5
            rows = slice(start, start + 6)
            for layer, by_state in states.items():
                for state, values in by_state.items():
                    part = block[layer][state][:, :len(values[rows])]
                    part[:] = np.swapaxes(values[rows], 0, 1)
            writer.write({layer: {s: np.swapaxes(block[layer][s][:, :len(v[rows])], 0, 1)
                                  for s, v in by_state.items()}
                          for layer, by_state in states.items()})
            for by_state in block.values():
                for memory in by_state.values():
                    memory.fill(np.nan)  # the next forward overwrites it
    assert writer._chunk_rows == 2
    opened = act.open(tmp_path / "a.h5")
    for layer, by_state in states.items():
        for state, values in by_state.items():
            np.testing.assert_array_equal(opened[f"{layer}.{state}"].values,
                                          values.astype(dtype))


def test_float16_gzip_and_per_step_logits(tmp_path):
    rng = np.random.default_rng(1)
    states = {"fused.1": {"h": rng.normal(size=(6, T, 2, 3, 3)).astype(np.float32)}}
    logits = rng.normal(size=(6, T, 10)).astype(np.float32)
    path = write_activations(tmp_path / "a.h5", states, {"stimulus_id": np.arange(6)},
                                 logits=logits, dtype="float16", compression="gzip")
    ds = act.open(path)
    assert ds["fused.1.h"].dtype == np.float16
    np.testing.assert_array_equal(ds["fused.1.h"].values,
                                  states["fused.1"]["h"].astype(np.float16))
    assert ds["logits"].dims == ("stimulus", "time", "class")
    np.testing.assert_array_equal(ds["logits"].values, logits)
    with h5py.File(path, "r") as handle:
        assert handle["fused.1.h"].compression == "gzip"


def test_open_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        act.open(tmp_path / "nothing.h5")


def test_open_a_directory_names_the_run_file_inside(written, tmp_path):
    path, _ = written
    run = tmp_path / "run"
    run.mkdir()
    with pytest.raises(ValueError) as refused:
        act.open(run)
    assert str(refused.value) == f"{run} is a directory, not an activation file"
    (run / "activations.h5").write_bytes(path.read_bytes())
    with pytest.raises(ValueError) as refused:
        act.open(run)
    assert str(refused.value) == (f"{run} is a directory, not an activation file; its run's "
                                  f"activation file is {run / 'activations.h5'}")


def test_open_truncated_file(written, tmp_path):
    path, _ = written
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match=f"{truncated}.*truncated"):
        act.open(truncated)


def test_open_incomplete_file(written):
    path, _ = written
    with h5py.File(path, "r+") as handle:
        handle.attrs["complete"] = 0
    with pytest.raises(ValueError, match=f"{path} is incomplete"):
        act.open(path)


def test_open_refuses_other_hdf5(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as handle:
        handle["x"] = np.arange(3)
    with pytest.raises(ValueError, match="not a repsim activation file"):
        act.open(path)


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_crash_mid_write_leaves_nothing(tmp_path, monkeypatch):
    """The second chunk written raises (as a full disk would): no final file, no temporary."""
    write_steps = act.ActivationWriter._write_steps
    calls = []

    def failing_write(self, *args):
        if calls:
            raise OSError("disk full (simulated)")
        calls.append(1)
        write_steps(self, *args)

    monkeypatch.setattr(act.ActivationWriter, "_write_steps", failing_write)
    with pytest.raises(OSError, match="simulated"):
        _write_in_batches(tmp_path / "a.h5", _states(np.random.default_rng(0)), _stimuli(),
                          batch=4, chunk_bytes=1)
    assert calls, "the first chunk must have been written"
    assert _leftovers(tmp_path) == []


def test_interrupt_and_short_write_leave_nothing(tmp_path):
    states = _states(np.random.default_rng(0))
    first = {layer: {s: v[:4] for s, v in by_state.items()} for layer, by_state in states.items()}
    with pytest.raises(KeyboardInterrupt), act.ActivationWriter(tmp_path / "a.h5",
                                                                 _stimuli()) as writer:
        writer.write(first)
        assert any(name.startswith(".a.h5.tmp-") for name in _leftovers(tmp_path))
        raise KeyboardInterrupt
    assert _leftovers(tmp_path) == []
    with pytest.raises(ValueError, match="only 4 of 23 stimuli were written"), \
            act.ActivationWriter(tmp_path / "a.h5", _stimuli()) as writer:
        writer.write(first)
    assert _leftovers(tmp_path) == []


def test_existing_output_needs_overwrite(written):
    path, _ = written
    before = path.read_bytes()
    states = _states(np.random.default_rng(5))
    with pytest.raises(FileExistsError, match="exists; pass overwrite"):
        write_activations(path, states, _stimuli())
    assert path.read_bytes() == before
    write_activations(path, states, _stimuli(), overwrite=True)
    np.testing.assert_array_equal(act.open(path)["fused.2.h"].values, states["fused.2"]["h"])


def test_unwritable_or_missing_output_directory(unwritable_dir, tmp_path):
    states, stimuli = _states(np.random.default_rng(0)), _stimuli()
    with pytest.raises(PermissionError, match=f"cannot write to output directory "
                                              f"{unwritable_dir}"):
        write_activations(unwritable_dir / "a.h5", states, stimuli)
    with pytest.raises(FileNotFoundError, match="output directory .* does not exist"):
        write_activations(tmp_path / "missing" / "a.h5", states, stimuli)


HOLD_CLAIM = """
import sys, time
from repsim.provenance import claim
with claim(sys.argv[1]):
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_second_writer_fails_at_once_naming_the_holder_and_leaves_its_temporary(tmp_path):
    """A writer in another process (as on another node: its PID means nothing here) holds
    the claim: a second writer fails at once, and the first one's temporary survives."""
    output = tmp_path / "a.h5"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_CLAIM, str(output)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        live = tmp_path / ".a.h5.tmp-999999"  # the holder's temporary, under any PID
        live.write_bytes(b"being written")
        with pytest.raises(Busy, match=f"being written by .* PID {holder.pid} since"):
            write_activations(output, _states(np.random.default_rng(0)), _stimuli())
        assert live.exists() and not output.exists()
    finally:
        holder.kill()
        holder.wait()


def test_a_dead_holders_lock_file_names_the_new_holder_alone(tmp_path):
    """A lock file left by a killed holder (the kernel dropped its lock) is taken over: its
    record is replaced by the new holder's, not appended to."""
    lock = tmp_path / ".a.h5.lock"
    lock.write_text("deadhost PID 1 since 2026-01-01T00:00:00 and more text than a record\n")
    with claim(tmp_path / "a.h5"):
        record = lock.read_text()
    assert record.count("PID") == 1 and f"PID {os.getpid()} since" in record
    assert not lock.exists()


def test_temporaries_of_a_killed_writer_are_removed_by_the_next_one(tmp_path):
    """Once nobody holds the claim, every temporary left beside the output is abandoned,
    whatever PID it names (a live PID may belong to another host's writer long dead)."""
    stale = tmp_path / f".a.h5.tmp-{os.getppid()}"
    stale.write_bytes(b"half a file")
    write_activations(tmp_path / "a.h5", _states(np.random.default_rng(0)), _stimuli())
    assert not stale.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.h5"]  # no lock file left


def test_writer_refuses_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="stimulus_id"):
        act.ActivationWriter(tmp_path / "a.h5", {"condition": np.array(["clean"])})
    with pytest.raises(ValueError, match="one entry per stimulus"):
        act.ActivationWriter(tmp_path / "a.h5", {"stimulus_id": np.arange(3),
                                                 "audio_digit": np.arange(4)})
    with pytest.raises(ValueError, match="dtype must be one of"):
        act.ActivationWriter(tmp_path / "a.h5", {"stimulus_id": np.arange(3)}, dtype="int8")
    with pytest.raises(ValueError, match="compression must be one of"):
        act.ActivationWriter(tmp_path / "a.h5", {"stimulus_id": np.arange(3)}, compression="zip")
    with pytest.raises(ValueError, match="too many rows"):
        write_activations(tmp_path / "a.h5", _states(np.random.default_rng(0)),
                              _stimuli(N - 1))
    assert _leftovers(tmp_path) == []


def test_reads_in_plain_xarray(written):
    """The file is ordinary netCDF-4 for xarray: no repsim needed to read it."""
    path, states = written
    with xr.open_dataset(path, engine="h5netcdf") as ds:
        np.testing.assert_array_equal(ds["visual.1.c"].values, states["visual.1"]["c"])
        assert list(ds["time"].values) == list(range(T))


# ----------------------------------------------------------------------------- metadata


def test_file_metadata_names_every_variable_and_the_snr_units(written):
    path, _ = written
    with xr.open_dataset(path, engine="h5netcdf") as plain:
        assert plain.attrs["Conventions"] == act.CONVENTIONS == "repsim-activations-4"
        assert plain.attrs["format_version"] == act.FORMAT_VERSION == 4
        for name in [*plain.data_vars, *plain.coords]:
            assert plain[name].attrs.get("long_name"), name
        for name in ("audio_snr",):  # the fixture has no visual_snr
            assert plain[name].attrs["units"] == "dB"
        np.testing.assert_array_equal(plain["stimulus"].values, np.arange(N))
    with h5py.File(path, "r") as handle:  # netCDF attributes, not only xarray's view
        assert handle["audio_snr"].attrs["units"] == "dB"
    assert set(act.STIMULUS_COORDS) <= set(act.COORDINATE_ATTRS)
    assert act.coordinate_attrs("visual_snr")["units"] == "dB"
    assert act.coordinate_attrs("my_label") == {"long_name": "my label"}


def test_stimulus_id_is_an_index(written):
    path, states = written
    ds = act.open(path)
    assert "stimulus_id" in ds.indexes and "stimulus" not in ds.indexes  # a plain row number
    np.testing.assert_array_equal(ds["stimulus"].values, np.arange(N))
    assert set(_stimuli()) <= set(ds.coords)  # the file's coordinates are all kept
    one = ds.sel(stimulus_id="synth/3|img/3")  # in every condition
    assert one["condition"].values.tolist() == ["clean", "audio_snr-10"]
    np.testing.assert_array_equal(one["stimulus"].values, [3, 14])
    clean = act.select(ds, "fused.2", time=0, condition="clean")
    picked = clean.sel(stimulus_id=["synth/4|img/4", "synth/1|img/1"])
    np.testing.assert_array_equal(picked.values, states["fused.2"]["h"][[4, 1], 0])


def test_xarray_aligns_two_selections_by_stimulus_id(tmp_path):
    """Rows stored in another order in another condition still meet by id."""
    ids = np.array([f"s{i}" for i in range(4)])
    values = np.arange(4 * 2 * 8, dtype=np.float32).reshape(4, 2, 2, 2, 2)
    stimuli = {"stimulus_id": np.r_[ids, ids[::-1]],
               "condition": np.array(["clean"] * 4 + ["audio_removed"] * 4)}
    path = write_activations(tmp_path / "a.h5",
                             {"fused.1": {"h": np.concatenate([values, values[::-1]])}},
                             stimuli)
    ds = act.open(path)
    clean, removed = (act.select(ds, "fused.1", time=1, condition=condition)
                      for condition in ("clean", "audio_removed"))
    assert (clean - removed).sizes["stimulus"] == 4
    np.testing.assert_array_equal((clean - removed).values, 0)
    aligned = act.select(ds, "fused.1", time=1, condition="audio_removed", order=ids)
    np.testing.assert_array_equal(aligned.values, clean.values)
    with pytest.raises(ValueError, match="order needs a condition"):
        act.select(ds, "fused.1", order=ids)
    with pytest.raises(ValueError, match="different stimuli"):
        act.select(ds, "fused.1", condition="clean", order=ids[:3])


def _v1_contents() -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The states and logits in data/format-v1.h5, drawn again (data/README.md)."""
    rng = np.random.default_rng(0)
    states = {"audio.1.h": rng.normal(size=(6, 2, 2, 2, 2)).astype(np.float32),
              "fused.2.h": rng.normal(size=(6, 2, 3, 2, 2)).astype(np.float32)}
    return states, rng.normal(size=(6, 10)).astype(np.float32)


def test_reads_format_version_1():
    path = Path(__file__).parent / "data" / "format-v1.h5"
    ds = act.open(path)
    assert ds.attrs["format_version"] == 1 and "Conventions" not in ds.attrs
    states, logits = _v1_contents()
    for name, values in states.items():
        np.testing.assert_array_equal(ds[name].values, values)
    np.testing.assert_array_equal(ds["logits"].values, logits)
    np.testing.assert_array_equal(ds["stimulus"].values, np.arange(6))  # added on reading
    assert "stimulus_id" in ds.indexes and "stimulus" not in ds.indexes
    assert ds.sel(stimulus_id="clip1|img1")["condition"].values.tolist() == [
        "clean", "audio_snr-10"]
    assert ds["congruent"].dtype == bool
    picked = act.select(act.open(path, chunks={}), "fused.2", time=1, condition="clean")
    np.testing.assert_array_equal(picked.values, states["fused.2.h"][:3, 1])


def test_a_newer_format_version_is_refused(written):
    path, _ = written
    with h5py.File(path, "r+") as handle:
        handle.attrs["format_version"] = act.FORMAT_VERSION + 1
    with pytest.raises(ValueError, match=f"version {act.FORMAT_VERSION + 1}; this repsim reads "
                                         f"versions up to {act.FORMAT_VERSION}"):
        act.open(path)


def test_the_row_number_is_the_writers(tmp_path):
    with pytest.raises(ValueError, match="'stimulus' entry: that is the row number"):
        act.ActivationWriter(tmp_path / "a.h5", {"stimulus_id": np.arange(3),
                                                 "stimulus": np.arange(3)})


# ----------------------------------------------------------------------------- dask


def test_chunks_give_dask_arrays_with_the_files_chunks(written):
    import dask.array

    path, states = written
    ds = act.open(path, chunks={})
    stored = ds["fused.2.h"]
    assert isinstance(stored.data, dask.array.Array)
    assert stored.chunks == ((2,) * 11 + (1,), (1,) * T, (6,), (5,), (4,))  # as on disk
    assert isinstance(ds["stimulus_id"].data, np.ndarray)  # coordinates are in memory
    picked = act.select(ds, "fused.2", "c", time=-1, condition="audio_snr-10")
    flat = act.flatten(picked)
    assert isinstance(flat.data, dask.array.Array)  # still lazy
    assert list(flat.indexes) == ["stimulus_id"]
    np.testing.assert_array_equal(flat.values, states["fused.2"]["c"][N // 2:, -1]
                                  .reshape(N - N // 2, -1))
    with pytest.warns(UserWarning, match="separate the stored chunks"):  # xarray's advice
        by_dim = act.open(path, chunks={"stimulus": 5, "time": -1})
        assert by_dim["audio.1.h"].chunks[:2] == ((5, 5, 5, 5, 3), (T,))
        assert act.open(path, chunks={"stimulus": (20, 3)})["audio.1.h"].chunks[0] == (20, 3)
    for whole in ("auto", -1):
        np.testing.assert_array_equal(act.open(path, chunks=whole)["visual.1.c"].values,
                                      states["visual.1"]["c"])


def test_without_chunks_nothing_is_dask(written):
    path, _ = written
    flat = act.flatten(act.select(act.open(path), "fused.2", time=0))
    assert isinstance(flat.data, np.ndarray)
    assert act.open(path)["fused.2.h"].chunks is None


@pytest.mark.parametrize(("chunks", "message"), [
    ({"stimuli": 4}, r"chunks names dims \['stimuli'\] that this file does not have; its "
                     r"dims are: stimulus, time"),
    (0, "chunks=0 is not a chunk size"),
    (True, "chunks=True is not a chunk size"),
    ("fast", "chunks='fast' is not a chunk size"),
    ((4,), r"chunks=\(4,\) is not a chunk size"),
    ({"stimulus": -2}, r"chunks\['stimulus'\]=-2 is not a chunk size"),
    ({"stimulus": (20, 2)}, r"adding up to the dim's length 23"),
    ({"time": 1.5}, r"chunks\['time'\]=1.5 is not a chunk size"),
])
def test_bad_chunks_are_named(written, chunks, message):
    with pytest.raises(ValueError, match=message):
        act.open(written[0], chunks=chunks)


def test_chunks_without_dask_say_how_to_install_it(written, monkeypatch):
    path, states = written
    monkeypatch.setitem(sys.modules, "dask", None)  # `import dask...` now fails
    monkeypatch.setitem(sys.modules, "dask.array", None)
    with pytest.raises(ImportError, match=r"pip install -e '.\[dask\]'"):
        act.open(path, chunks={})
    np.testing.assert_array_equal(act.open(path)["fused.2.h"].values, states["fused.2"]["h"])


def test_writers_in_threads_lay_out_files_of_the_same_name(tmp_path):
    """Files of one name in different folders, laid out by writers in parallel threads (each
    lays its file out in memory first): every one is complete and holds its own values."""
    from concurrent.futures import ThreadPoolExecutor

    def write(index: int) -> Path:
        folder = tmp_path / f"run{index}"
        folder.mkdir()
        states = {"fused.1": {"h": np.full((N, T, 2, 3, 3), index, np.float32)}}
        return write_activations(folder / "activations.h5", states, _stimuli())

    with ThreadPoolExecutor(max_workers=4) as pool:
        paths = list(pool.map(write, range(12)))
    for index, path in enumerate(paths):
        assert (act.open(path)["fused.1.h"].values == index).all()
