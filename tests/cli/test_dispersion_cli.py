"""``caviar dispersion`` end to end on an ATOMS file of exact harmonic snapshots."""

from __future__ import annotations

import numpy as np
import pytest

from caviar_napari import cli
from caviar_napari.analysis.phonons import HarmonicLattice
from caviar_napari.cli import main
from caviar_napari.io.atoms_file import AtomsData, write_atoms
from caviar_napari.io.dispersion_file import read_dispersion


@pytest.fixture(autouse=True)
def only_dispersion(monkeypatch):
    # the parser is built from this sub-command alone: the test does not depend on the others
    monkeypatch.setattr(cli, "SUBCOMMANDS", ("dispersion",))


def write_harmonic_atoms(path, n_states=400, L=(6, 4), species=("B", "N"), seed=0):
    lat = HarmonicLattice.honeycomb(species=species, masses_amu=(10.81, 14.007))
    sc = lat.supercell(*L)
    u = sc.sample_snapshots(300.0, n_states, seed)
    pos = (sc.positions_A[None] + u)[:, None] + [5.0, 7.0]  # (state, slice, atom, 2)
    pos = np.concatenate(
        [pos, pos + 0.001 * np.random.default_rng(1).standard_normal(pos.shape)], axis=1
    )  # two slices
    write_atoms(
        path,
        AtomsData(
            positions_A=pos,
            mean_positions_A=pos.mean(axis=(0, 1)),
            cell_index=sc.cell_index,
            basis_index=sc.basis_index,
            species=sc.species,
            lattice_vectors_A=lat.lattice_vectors_A,
            source="harmonic",
        ),
    )
    return lat


def test_cli_writes_disp_and_prints_table(tmp_path, capsys):
    lat = write_harmonic_atoms(tmp_path / "atoms.h5")
    out = tmp_path / "disp.h5"
    rc = main(
        [
            "dispersion",
            str(tmp_path / "atoms.h5"),
            "--out",
            str(out),
            "--temperature-K",
            "300",
            "--slices",
            "0:1",
            "--bootstrap",
            "20",
        ]
    )
    assert rc == 0
    text = capsys.readouterr().out
    assert "6 × 4 block" in text and "Γ–M–K–Γ" in text and "± (THz)" in text
    d = read_dispersion(out)
    assert d.masses_amu == {"B": 10.81, "N": 14.007} and d.n_bootstrap == 20
    np.testing.assert_array_equal(d.slices, [0])
    exact = lat.frequencies_THz(d.q_frac)
    rel = np.abs(d.frequencies_THz[1:] - exact[1:]) / exact[1:]
    assert rel.max() < 0.15  # 400 states
    for line in text.splitlines()[-6:-2]:  # the table rows print the averages
        b, v, e = line.split()
        assert float(v) == pytest.approx(d.branch_average_THz[int(b) - 1], abs=0.006)


def test_cli_masses_single_mass_and_path(tmp_path, capsys):
    write_harmonic_atoms(tmp_path / "atoms.h5", n_states=30)
    out = tmp_path / "disp.h5"
    rc = main(
        [
            "dispersion",
            str(tmp_path / "atoms.h5"),
            "--out",
            str(out),
            "--temperature-K",
            "250",
            "--mass",
            "B=11",
            "--mass",
            "N=14",
            "--single-mass",
            "--bootstrap",
            "0",
            "--path",
            "G=0,0; K=1/3,1/3",
        ]
    )
    assert rc == 0
    d = read_dispersion(out)
    assert d.single_mass and d.masses_amu == {"B": 11.0, "N": 14.0}
    assert d.temperature_K == 250.0 and d.path_labels == ("Γ", "K")
    assert np.all(np.isnan(d.branch_average_err_THz))


def test_cli_errors(tmp_path, capsys):
    write_harmonic_atoms(tmp_path / "atoms.h5", n_states=30, species=("B", "Qx"))
    args = [
        "dispersion",
        str(tmp_path / "atoms.h5"),
        "--out",
        str(tmp_path / "d.h5"),
        "--temperature-K",
        "300",
    ]
    assert main(args) == 2
    assert "no mass for species 'Qx'" in capsys.readouterr().err
    assert main([*args, "--mass", "Qx"]) == 2
    assert "SPECIES=AMU" in capsys.readouterr().err
    assert main([*args, "--mass", "Qx=14", "--path", "G=0"]) == 2
    assert "LABEL=f1,f2" in capsys.readouterr().err
    assert main([*args[:-1], "-5", "--mass", "Qx=14"]) == 2
    assert "temperature_K" in capsys.readouterr().err
    assert not (tmp_path / "d.h5").exists()
