"""``caviar correlations``: CORR file from an ATOMS file, LSM/CSM/ρ_nn against a ground truth."""

from __future__ import annotations

import argparse

import h5py
import numpy as np
import pytest

from caviar_napari.analysis import correlations as corr
from caviar_napari.cli import correlations as cli
from caviar_napari.errors import InputError
from caviar_napari.io.atoms_file import AtomsData, write_atoms
from caviar_napari.io.correlations_file import read_correlations


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="caviar")
    cli.add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["correlations", *argv])


def _square_lattice(n=4, d=2.0):
    y, x = np.meshgrid(np.arange(n) * d, np.arange(n) * d, indexing="ij")
    sites = np.stack([y.ravel(), x.ravel()], axis=1) + 1.0
    cells = np.stack([(y.ravel() / d).astype(int), (x.ravel() / d).astype(int)], axis=1)
    return sites, cells


def _inputs(tmp_path, noise_A=0.0):
    """ATOMS file (3 slices; atom 7 fails in slice 2) and a simulated file with its truth."""
    sites, cells = _square_lattice()
    n_states = 15
    rng = np.random.default_rng(0)
    shared = rng.normal(0, 0.04, (n_states, 1, 2))
    truth = sites + shared + rng.normal(0, 0.04, (n_states, len(sites), 2))  # correlated
    measured = np.repeat(truth[:, None], 3, axis=1)
    measured = measured + rng.normal(0, noise_A, measured.shape) if noise_A else measured
    measured[4, 2, 7] = np.nan
    atoms = AtomsData(
        positions_A=measured,
        mean_positions_A=sites,
        cell_index=cells,
        basis_index=np.zeros(len(sites), dtype=int),
        lattice_vectors_A=np.eye(2) * 2.0,
        source="recon.h5",
    )
    write_atoms(tmp_path / "atoms.h5", atoms)
    u = (truth - truth.mean(0)).reshape(n_states, -1)
    with h5py.File(tmp_path / "sim.h5", "w") as f:
        f["intensities"] = np.zeros((2, 2, 4, 4), dtype=np.float32)
        g = f.create_group("ground_truth")
        g["positions_A"] = truth
        g["mean_positions_A"] = sites
        g["green_realised_A2"] = u.T @ u / n_states
        g["green_model_A2"] = 3.2e-3 * np.eye(u.shape[1])
    return atoms, truth


def test_cli_writes_corr_for_a_slice_range(tmp_path, capsys):
    atoms, _ = _inputs(tmp_path)
    out = tmp_path / "corr.h5"
    assert cli.run(_parse([str(tmp_path / "atoms.h5"), "--out", str(out), "--slices", "0:2"])) == 0
    data = read_correlations(out)
    expected = corr.green_tensor(atoms.positions_A, [0, 1])
    np.testing.assert_allclose(data.green_A2, expected.green_A2, atol=1e-16)
    np.testing.assert_allclose(data.b_factor_A2, expected.b_factor_A2)
    assert data.slices.tolist() == [0, 1] and data.excluded_atoms.size == 0
    assert data.cell_index.shape == (16, 2) and data.source.endswith("atoms.h5")
    text = capsys.readouterr().out
    assert "rho_nn: +" in text and "excluded atoms (NaN positions): none" in text

    # all slices: atom 7 (NaN in slice 2) is excluded and reported
    assert cli.run(_parse([str(tmp_path / "atoms.h5"), "--out", str(out)])) == 0
    assert read_correlations(out).excluded_atoms.tolist() == [7]
    assert "excluded atoms (NaN positions): 7" in capsys.readouterr().out


def test_cli_compares_with_the_realised_truth(tmp_path, capsys):
    _inputs(tmp_path)
    argv = [str(tmp_path / "atoms.h5"), "--out", str(tmp_path / "c.h5"), "--slices", "0:2"]
    assert cli.run(_parse([*argv, "--ground-truth", str(tmp_path / "sim.h5")])) == 0
    text = capsys.readouterr().out
    # identical positions: LSM mean 1, CSM 1; 16 self blocks + 24 NN pairs = 40 pairs
    assert "LSM (mean per vector, 1 = equal length): 1.0000" in text
    assert "CSM (eq. 4, mean over 40 pairs): +1.0000" in text
    assert "LSM (eq. 3 as printed, sum over 80 vectors): 80.0000" in text
    assert "matched atoms: 16 of 16" in text

    argv += ["--ground-truth", str(tmp_path / "sim.h5"), "--reference-atom", "5"]
    assert cli.run(_parse([*argv, "--neighbours", "4"])) == 0
    text = capsys.readouterr().out
    assert "reference atom 5 and its 4 nearest neighbours" in text
    assert "CSM (eq. 4, mean over 9 pairs): +1.0000" in text


def test_cli_with_noisy_positions_reports_lower_similarity(tmp_path, capsys):
    _inputs(tmp_path, noise_A=0.03)
    argv = [str(tmp_path / "atoms.h5"), "--out", str(tmp_path / "c.h5"), "--slices", "0"]
    assert cli.run(_parse([*argv, "--ground-truth", str(tmp_path / "sim.h5")])) == 0
    text = capsys.readouterr().out
    csm = float(text.split("CSM (eq. 4, mean over 40 pairs): ")[1].split()[0])
    lsm = float(text.split("LSM (mean per vector, 1 = equal length): ")[1].split()[0])
    assert 0.3 < csm < 0.99  # noise decorrelates the off-diagonal blocks
    assert lsm > 1.05  # independent noise adds variance


def test_cli_errors_name_the_input(tmp_path):
    _inputs(tmp_path)
    with pytest.raises(InputError, match="missing.h5"):
        cli.run(_parse([str(tmp_path / "missing.h5"), "--out", str(tmp_path / "c.h5")]))
    with pytest.raises(InputError, match="--reference-atom"):
        cli.run(
            _parse(
                [str(tmp_path / "atoms.h5"), "--out", str(tmp_path / "c.h5"),
                 "--reference-atom", "3"]
            )
        )  # fmt: skip
    with pytest.raises(InputError, match="slices"):
        cli.run(_parse([str(tmp_path / "atoms.h5"), "--out", str(tmp_path / "c.h5"),
                        "--slices", "5:9"]))  # fmt: skip
    assert not (tmp_path / "c.h5").exists()


def test_cli_against_a_static_truth_reports_the_artefact(tmp_path, capsys):
    _inputs(tmp_path)
    with h5py.File(tmp_path / "sim.h5", "r+") as f:
        f["ground_truth/green_realised_A2"][...] = 0.0
    argv = [str(tmp_path / "atoms.h5"), "--out", str(tmp_path / "c.h5"), "--slices", "0:2"]
    assert cli.run(_parse([*argv, "--ground-truth", str(tmp_path / "sim.h5")])) == 0
    text = capsys.readouterr().out
    assert "LSM/CSM undefined: the ground truth has no displacements" in text
    # the reconstructed positions move by 0.04 Å (shared) + 0.04 Å (own) per direction
    rms = float(text.split("rms displacement ")[1].split(" pm")[0])
    assert 4.0 < rms < 7.5
