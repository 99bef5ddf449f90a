"""ATOMS files with depth ranges (conventions §3, §6): one z-range in the usual schema, several
labelled ones in groups; files without z-ranges read unchanged."""

from __future__ import annotations

import dataclasses

import h5py
import numpy as np
import pytest

from caviar_napari.data.atoms import ZRange
from caviar_napari.errors import InputError
from caviar_napari.io.atoms_file import (
    AtomsData,
    atoms_zrange_labels,
    read_atoms,
    read_atoms_zranges,
    write_atoms,
    write_atoms_zranges,
)


def zr(label, start, stop, total=6, dz=20.0):
    return ZRange(label, start, stop, (dz,) * (stop - start), start * dz, total)


def atoms_of(rng, zrange, n=4):
    pos = rng.normal(0, 3, (3, zrange.n_slices if zrange else 2, n, 2))
    return AtomsData(
        pos,
        pos.mean(axis=(0, 1)),
        cell_index=rng.integers(0, 3, (n, 2)),
        basis_index=rng.integers(0, 2, n),
        lattice_vectors_A=rng.normal(0, 2, (2, 2)),
        source="recon.h5",
        zrange=zrange,
    )


def test_zrange_describes_its_depth():
    z = ZRange("lower", 2, 5, (20.0, 20.0, 30.0), 40.0, 6)
    assert z.spec == "2:5" and z.n_slices == 3
    assert z.z_extent_A == (40.0, 110.0)
    assert "slices 2:5 of 6" in z.describe()
    for bad in (
        dict(start=3, stop=3),
        dict(start=0, stop=7),
        dict(slice_thickness_A=(1.0,)),
        dict(label="a/b"),
    ):
        kw = {**dataclasses.asdict(z), **bad}
        with pytest.raises(InputError):
            ZRange(**kw)
    with pytest.raises(InputError, match="z-range 2:5 has 3"):
        AtomsData(np.zeros((2, 2, 1, 2)), np.zeros((1, 2)), zrange=z)


def test_one_zrange_round_trip_in_the_usual_schema(tmp_path):
    atoms = atoms_of(np.random.default_rng(0), zr("", 1, 3))
    path = tmp_path / "a.h5"
    write_atoms(path, atoms)
    with h5py.File(path) as f:
        assert "positions_A" in f  # the usual schema at the root
        assert f.attrs["slices"] == "1:3"
        np.testing.assert_allclose(f.attrs["z_range_A"], (20.0, 60.0))
        np.testing.assert_allclose(f.attrs["slice_thickness_A"], (20.0, 20.0))
    back = read_atoms(path)
    assert back.zrange == atoms.zrange
    np.testing.assert_array_equal(back.positions_A, atoms.positions_A)
    assert atoms_zrange_labels(path) == [""]
    assert list(read_atoms_zranges(path)) == [""]


def test_files_without_zranges_read_unchanged(tmp_path):
    atoms = atoms_of(np.random.default_rng(1), None)
    path = tmp_path / "a.h5"
    write_atoms(path, atoms)
    back = read_atoms(path)
    assert back.zrange is None
    with pytest.raises(InputError, match="holds one z-range .unnamed., not 'upper'"):
        read_atoms(path, zrange="upper")


def test_several_labelled_zranges(tmp_path):
    rng = np.random.default_rng(2)
    upper, lower = atoms_of(rng, zr("upper", 0, 2), 4), atoms_of(rng, zr("lower", 3, 6), 7)
    path = tmp_path / "a.h5"
    write_atoms_zranges(path, [upper, lower])
    assert atoms_zrange_labels(path) == ["upper", "lower"]
    ranges = read_atoms_zranges(path)
    assert list(ranges) == ["upper", "lower"]
    for got, want in zip(ranges.values(), (upper, lower)):
        assert got.zrange == want.zrange
        np.testing.assert_array_equal(got.positions_A, want.positions_A)
        np.testing.assert_array_equal(got.lattice_vectors_A, want.lattice_vectors_A)
        assert got.source == "recon.h5"
    np.testing.assert_array_equal(read_atoms(path, "lower").cell_index, lower.cell_index)
    with pytest.raises(InputError, match=r"holds 2 z-ranges \(upper, lower\); choose one"):
        read_atoms(path)
    with pytest.raises(InputError, match="no z-range 'middle'; it holds upper, lower"):
        read_atoms(path, "middle")


def test_multi_range_writer_needs_unique_labels(tmp_path):
    rng = np.random.default_rng(3)
    a, b = atoms_of(rng, zr("x", 0, 2)), atoms_of(rng, zr("x", 2, 4))
    with pytest.raises(InputError, match="unique"):
        write_atoms_zranges(tmp_path / "a.h5", [a, b])
    with pytest.raises(InputError, match="labelled"):
        write_atoms_zranges(tmp_path / "a.h5", [atoms_of(rng, None)])
    assert not (tmp_path / "a.h5").exists()
