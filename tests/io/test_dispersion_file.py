"""DISP file (conventions §6): round trip, atomic write, and errors that name the item."""

from __future__ import annotations

import dataclasses

import h5py
import numpy as np
import pytest

from caviar_napari.analysis.dispersion import DispersionConfig, compute_dispersion
from caviar_napari.analysis.phonons import HarmonicLattice
from caviar_napari.data.dispersion import DispersionData
from caviar_napari.errors import InputError
from caviar_napari.io.dispersion_file import read_dispersion, write_dispersion


@pytest.fixture(scope="module")
def result() -> DispersionData:
    lat = HarmonicLattice.honeycomb()
    sc = lat.supercell(3, 3)
    pos = sc.positions_A[None] + sc.sample_snapshots(300.0, 20, 0)
    cfg = DispersionConfig(300.0, masses_amu={"B": 11.0}, bootstrap=30)
    return compute_dispersion(
        pos, sc.cell_index, sc.basis_index, lat.lattice_vectors_A, cfg, sc.species, "x.h5"
    )


def test_round_trip(tmp_path, result):
    path = tmp_path / "disp.h5"
    write_dispersion(path, result)
    back = read_dispersion(path)
    for f in dataclasses.fields(DispersionData):
        a, b = getattr(result, f.name), getattr(back, f.name)
        if isinstance(a, np.ndarray):
            np.testing.assert_array_equal(a, b, err_msg=f.name)
        else:
            assert a == b, f.name
    assert back.path_labels == ("Γ", "M", "K", "Γ")
    assert back.masses_amu == {"B": 11.0, "N": 14.007}
    assert np.all(np.isfinite(back.frequencies_err_THz[1:]))
    with h5py.File(path) as f:  # conventions §6 names
        for key in (
            "q_frac",
            "frequencies_THz",
            "path_labels",
            "path_q_frac",
            "path_frequencies_THz",
            "branch_average_THz",
        ):
            assert key in f
        assert f.attrs["temperature_K"] == 300.0 and "masses_amu" in f.attrs
    assert [p.name for p in tmp_path.iterdir()] == ["disp.h5"]  # no temporary left behind


def test_failed_write_leaves_nothing(tmp_path, result):
    bad = dataclasses.replace(result, masses_amu={"B": object()}, basis_species=("B", "N"))
    path = tmp_path / "disp.h5"
    with pytest.raises(TypeError):
        write_dispersion(path, bad)
    assert list(tmp_path.iterdir()) == []


def test_read_errors_name_the_item(tmp_path, result):
    with pytest.raises(InputError, match=r"missing\.h5: file not found"):
        read_dispersion(tmp_path / "missing.h5")
    path = tmp_path / "disp.h5"
    write_dispersion(path, result)
    with h5py.File(path, "a") as f:
        del f["branch_average_THz"]
    with pytest.raises(InputError, match="branch_average_THz"):
        read_dispersion(path)
    write_dispersion(path, result)
    with h5py.File(path, "a") as f:
        del f.attrs["temperature_K"]
    with pytest.raises(InputError, match="temperature_K"):
        read_dispersion(path)
    write_dispersion(path, result)
    with h5py.File(path, "a") as f:
        del f["path_frequencies_THz"]
        f["path_frequencies_THz"] = np.zeros((2, 4))
    with pytest.raises(InputError, match="path_frequencies_THz: shape"):
        read_dispersion(path)
