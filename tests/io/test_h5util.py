"""The shared io helpers: JSON of numpy values and paths, HDF5 strings, item messages."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from caviar_napari.errors import InputError
from caviar_napari.io._h5util import (
    as_strings,
    as_text,
    get_dataset,
    json_default,
    open_h5,
    read_attr,
    read_dataset,
)


def test_json_default_stores_numpy_values_and_paths_as_python_values():
    value = {
        "int": np.int64(7),
        "uint": np.uint64(2**63 + 1),  # beyond int64: kept exactly as a Python int
        "float": np.float32(0.5),
        "bool": np.bool_(True),
        "str": np.str_("hBN"),
        "array": np.arange(3, dtype=np.int16),
        "nested": [np.float64(1.25), {"path": Path("a") / "b.h5"}],
    }
    text = json.dumps(value, default=json_default, sort_keys=True)
    assert json.loads(text) == {
        "array": [0, 1, 2],
        "bool": True,
        "float": 0.5,
        "int": 7,
        "nested": [1.25, {"path": str(Path("a") / "b.h5")}],
        "str": "hBN",
        "uint": 2**63 + 1,
    }


@pytest.mark.parametrize("bad", [object(), {1, 2}, np.complex64(1 + 2j)])
def test_json_default_rejects_what_json_cannot_store(bad):
    with pytest.raises(TypeError):
        json.dumps({"x": bad}, default=json_default)


def test_rng_state_json_is_unchanged():
    """The reconstruction file's resume/rng_state: PCG64 state of Python ints, byte-identical."""
    state = np.random.default_rng(3).bit_generator.state
    assert json.dumps(state, default=json_default) == json.dumps(state)


def test_strings_from_hdf5(tmp_path):
    path = tmp_path / "s.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("names", data=[["B", "N"], ["N", "B"]], dtype=h5py.string_dtype())
        f.attrs["source"] = "r.h5"
        f.attrs["raw"] = np.bytes_(b"caf\xe9")  # not UTF-8: replaced, not an error
    with open_h5(path) as f:
        names = as_strings(read_dataset(f, "s.h5", "names"))
        assert names.shape == (2, 2) and names.tolist() == [["B", "N"], ["N", "B"]]
        assert as_text(f.attrs["source"]) == "r.h5"
        assert as_text(f.attrs["raw"]) == "caf\ufffd"
    assert as_text(np.array(b"x")) == "x" and as_strings(None) is None


def test_missing_items_and_files_are_named(tmp_path):
    path = tmp_path / "f.h5"
    with h5py.File(path, "w") as f:
        f.create_group("grp")
        f["data"] = np.zeros(2)
    with open_h5(path) as f:
        with pytest.raises(InputError, match=r"^f: missing dataset 'x' \(hint\)$"):
            read_dataset(f, "f", "x", hint=" (hint)")
        assert read_dataset(f, "f", "x", required=False) is None
        with pytest.raises(InputError, match=r"^f: 'grp' is not a dataset$"):
            get_dataset(f, "f", "grp")
        with pytest.raises(InputError, match=r"^f: missing attribute 'a'$"):
            read_attr(f, "f", "a")
    with pytest.raises(InputError, match=r"none\.h5: file not found$"):
        open_h5(tmp_path / "none.h5")
    with pytest.raises(InputError, match="not a regular file"):
        open_h5(tmp_path)
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(InputError, match=r"text\.h5: cannot be read as an HDF5 file"):
        open_h5(tmp_path / "text.h5")
