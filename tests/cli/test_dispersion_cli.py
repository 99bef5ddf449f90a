"""``caviar dispersion`` end to end on an ATOMS file of exact harmonic snapshots."""

from __future__ import annotations

import numpy as np
import pytest

from caviar_napari import cli
from caviar_napari.analysis.phonons import HarmonicLattice
from caviar_napari.cli import main
from caviar_napari.io.atoms_file import AtomsData, write_atoms
from caviar_napari.io.dispersion_file import read_dispersion
from caviar_napari.io.outputs import read_warnings


@pytest.fixture(autouse=True)
def only_dispersion(monkeypatch):
    # the parser is built from this sub-command alone: the test does not depend on the others
    monkeypatch.setattr(cli, "SUBCOMMANDS", ("dispersion",))


def write_harmonic_atoms(
    path, n_states=400, L=(6, 4), species=("B", "N"), seed=0, scale=1.0, slice_noise_A=0.001
):
    lat = HarmonicLattice.honeycomb(species=species, masses_amu=(10.81, 14.007))
    sc = lat.supercell(*L)
    u = scale * sc.sample_snapshots(300.0, n_states, seed)
    pos = (sc.positions_A[None] + u)[:, None] + [5.0, 7.0]  # (state, slice, atom, 2)
    pos = np.concatenate(
        [pos, pos + slice_noise_A * np.random.default_rng(1).standard_normal(pos.shape)], axis=1
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
            "--estimator",
            "green",
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
            "--estimator",
            "green",
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


def _args(tmp_path, *extra):
    return [
        "dispersion",
        str(tmp_path / "atoms.h5"),
        "--out",
        str(tmp_path / "d.h5"),
        "--temperature-K",
        "300",
        "--bootstrap",
        "0",
        "--overwrite",
        *extra,
    ]


def test_cli_force_constants_by_default_and_green_warns_with_few_states(tmp_path, capsys):
    lat = write_harmonic_atoms(tmp_path / "atoms.h5", n_states=10)
    assert main(_args(tmp_path, "--slices", "0")) == 0
    captured = capsys.readouterr()
    d = read_dispersion(tmp_path / "d.h5")
    assert d.estimator == "force-constants" and d.shells == 2 and d.boundary == "periodic"
    assert "Force constants (2 shells, periodic boundary" in captured.out
    assert "dense path" in captured.out and "green estimator" not in captured.err
    assert read_warnings(tmp_path / "d.h5") == []
    exact = lat.frequencies_THz(d.dense_path.q_frac)
    moving = exact > 1.0  # THz: Γ's acoustic modes left out
    rel = np.abs(d.dense_path.frequencies_THz - exact)[moving] / exact[moving]
    assert rel.max() < 0.3  # 10 states, 6 × 4 cells
    # green with 10 states: biased, and said so on stderr and in the file
    assert main(_args(tmp_path, "--slices", "0", "--estimator", "green")) == 0
    err = capsys.readouterr().err
    assert "caviar dispersion: warning: green estimator with 10 states" in err
    assert "use --estimator force-constants" in err
    assert any("green estimator" in w for w in read_warnings(tmp_path / "d.h5"))


def test_cli_force_constant_options_are_recorded(tmp_path, capsys):
    write_harmonic_atoms(tmp_path / "atoms.h5", n_states=30)
    extra = ["--shells", "1", "--boundary", "open", "--crystal-cells", "6", "4"]
    assert main(_args(tmp_path, "--slices", "0", *extra)) == 0
    d = read_dispersion(tmp_path / "d.h5")
    assert d.shells == 1 and d.boundary == "open"
    assert "Force constants (1 shells, open boundary" in capsys.readouterr().out
    assert main(_args(tmp_path, "--shells", "0")) == 2
    assert "shells must be an integer ≥ 1" in capsys.readouterr().err
    assert main(_args(tmp_path, "--noise-floor-A", "-1")) == 2
    assert "--noise-floor-A" in capsys.readouterr().err


def test_cli_warns_at_the_noise_floor_and_for_unphysical_frequencies(tmp_path, capsys):
    # states 100 times too close together: frequencies 100 times too high, displacements far
    # below any zero-point motion, and the two slices differ by more than the states do
    write_harmonic_atoms(tmp_path / "atoms.h5", n_states=10, scale=0.01, slice_noise_A=0.002)
    assert main(_args(tmp_path)) == 0
    captured = capsys.readouterr()
    assert "pm per direction, spread between the slices of each state (exact" in captured.out
    recorded = read_warnings(tmp_path / "d.h5")
    for text in (
        "displacements at the noise floor",
        "displacements below any vibration",
        "more than any solid reaches",
    ):
        assert text in captured.err and any(text in w for w in recorded), text
