"""ATOMS file (conventions §6) and CSV position lists: round trips and errors that name the item."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from caviar_napari.errors import InputError
from caviar_napari.io.atoms_file import (
    AtomsData,
    read_atoms,
    read_positions_csv,
    write_atoms,
    write_positions_csv,
)


def make_atoms(rng, full=True):
    pos = rng.normal(0, 3, (3, 2, 5, 2))
    pos[1, 0, 2] = np.nan
    extra = {}
    if full:
        extra = {
            "cell_index": rng.integers(0, 4, (5, 2)),
            "basis_index": rng.integers(0, 2, 5),
            "species": np.array(["B", "N", "B", "N", "B"]),
            "lattice_vectors_A": np.array([[0.0, 2.5], [2.165, -1.25]]),
            "status": np.where(np.isnan(pos[..., 0]), 1, 0).astype(np.int8),
            "provenance": {"radius_A": 0.5, "method": "centre of mass"},
        }
    return AtomsData(pos, np.nanmean(pos, axis=(0, 1)), source="recon.h5", **extra)


def test_round_trip_full(tmp_path):
    atoms = make_atoms(np.random.default_rng(0))
    path = tmp_path / "atoms.h5"
    write_atoms(path, atoms)
    back = read_atoms(path)
    np.testing.assert_array_equal(back.positions_A, atoms.positions_A)  # NaN kept
    np.testing.assert_array_equal(back.mean_positions_A, atoms.mean_positions_A)
    np.testing.assert_array_equal(back.cell_index, atoms.cell_index)
    np.testing.assert_array_equal(back.basis_index, atoms.basis_index)
    np.testing.assert_array_equal(back.species, atoms.species)
    np.testing.assert_array_equal(back.lattice_vectors_A, atoms.lattice_vectors_A)
    np.testing.assert_array_equal(back.status, atoms.status)
    assert back.source == "recon.h5"
    assert back.provenance == atoms.provenance
    assert back.n_failed == 1
    with h5py.File(path) as f:  # conventions §6 names and dtypes
        assert f["positions_A"].shape == (3, 2, 5, 2)
        assert f["cell_index"].dtype.kind == "i"
        assert f.attrs["lattice_vectors_A"].shape == (2, 2)


def test_round_trip_minimal(tmp_path):
    atoms = make_atoms(np.random.default_rng(1), full=False)
    write_atoms(tmp_path / "a.h5", atoms)
    back = read_atoms(tmp_path / "a.h5")
    assert back.cell_index is None and back.species is None and back.lattice_vectors_A is None


def test_missing_item_is_named(tmp_path):
    path = tmp_path / "bad.h5"
    with h5py.File(path, "w") as f:
        f["positions_A"] = np.zeros((1, 1, 3, 2))
    with pytest.raises(
        InputError, match=r"bad\.h5: missing dataset 'mean_positions_A' \(not an ATOMS file\?\)"
    ):
        read_atoms(path)
    with pytest.raises(InputError, match=r"absent\.h5: file not found"):
        read_atoms(tmp_path / "absent.h5")
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(InputError, match=r"text\.h5: cannot be read as an HDF5 file"):
        read_atoms(tmp_path / "text.h5")


def test_shape_mismatch_is_named(tmp_path):
    path = tmp_path / "shape.h5"
    with h5py.File(path, "w") as f:
        f["positions_A"] = np.zeros((1, 1, 3, 2))
        f["mean_positions_A"] = np.zeros((3, 2))
        f["basis_index"] = np.zeros(4, int)
    with pytest.raises(InputError, match=r"shape\.h5: basis_index"):
        read_atoms(path)


def test_failed_write_leaves_no_file(tmp_path):
    atoms = make_atoms(np.random.default_rng(2))
    atoms.provenance["bad"] = object()  # not JSON serialisable: the write fails midway
    with pytest.raises(TypeError):
        write_atoms(tmp_path / "x.h5", atoms)
    assert list(tmp_path.iterdir()) == []


def test_csv_round_trip(tmp_path):
    pos = np.array([[1.25, -3.0], [np.pi, 1e-3], [np.nan, 2.0]])
    write_positions_csv(tmp_path / "p.csv", pos, ["C", "N", "B"])
    assert (tmp_path / "p.csv").read_text().splitlines()[0] == "y_A,x_A,species"
    back, species = read_positions_csv(tmp_path / "p.csv")
    np.testing.assert_array_equal(back, pos)  # exact (repr of floats)
    assert species.tolist() == ["C", "N", "B"]
    write_positions_csv(tmp_path / "q.csv", pos[:2])
    back, species = read_positions_csv(tmp_path / "q.csv")
    assert species is None and back.shape == (2, 2)


def test_csv_columns_any_order_and_errors(tmp_path):
    path = tmp_path / "hand.csv"
    path.write_text("x_A,note,y_A\n1.0,a,2.0\n3.5,b,4.5\n")
    pos, species = read_positions_csv(path)
    np.testing.assert_array_equal(pos, [[2.0, 1.0], [4.5, 3.5]])
    path.write_text("x,y\n1,2\n")
    with pytest.raises(InputError, match=r"hand\.csv.*y_A"):
        read_positions_csv(path)
    path.write_text("y_A,x_A\n1.0,2.0\n1.0,abc\n")
    with pytest.raises(InputError, match="line 3"):
        read_positions_csv(path)
