"""``caviar correlations``: CORR file from an ATOMS file, LSM/CSM/ρ_nn against a ground truth."""

from __future__ import annotations

import argparse
import dataclasses
import json

import h5py
import numpy as np
import pytest

from caviar_napari.analysis import correlations as corr
from caviar_napari.cli import correlations as cli
from caviar_napari.errors import InputError
from caviar_napari.io.atoms_file import AtomsData, write_atoms
from caviar_napari.io.correlations_file import read_correlations
from caviar_napari.io.outputs import read_warnings

EXCLUDED = "excluded atoms (a NaN position, or the same position in every state): "


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
    assert "rho_nn: +" in text and EXCLUDED + "none" in text

    # all slices: atom 7 (NaN in slice 2) is excluded and reported
    assert cli.run(_parse([str(tmp_path / "atoms.h5"), "--out", str(out)])) == 0
    assert read_correlations(out).excluded_atoms.tolist() == [7]
    assert EXCLUDED + "7" in capsys.readouterr().out


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
    line = next(x for x in text.splitlines() if x.startswith("reconstruction: rms displacement"))
    rms, err = (float(v) for v in line.split("displacement ")[1].split(" pm")[0].split(" ± "))
    assert 4.0 < rms < 7.5 and 0 < err < 0.2 * rms


def test_cli_prints_and_stores_errors(tmp_path, capsys):
    _inputs(tmp_path)
    out = tmp_path / "c.h5"
    argv = [str(tmp_path / "atoms.h5"), "--out", str(out), "--slices", "0:2"]
    assert cli.run(_parse([*argv, "--ground-truth", str(tmp_path / "sim.h5")])) == 0
    text = capsys.readouterr().out
    assert "errors (±): delete-one jackknife over the 15 object states" in text
    assert "Wishart dof 14" in text  # two identical slices: no more dof than one
    for key in ("B factor", "rms displacement:", "rho_nn:", "uniform offset", "CSM (eq. 4"):
        line = next(x for x in text.splitlines() if x.startswith(key))
        assert " ± " in line, line
    assert "nearest-neighbour cross blocks significant at 2σ" in text
    assert "averaged over identical unit-cell pairs" in text
    data = read_correlations(out)
    assert data.green_stderr_A2.shape == data.green_A2.shape
    assert np.all(data.green_stderr_A2[np.isfinite(data.green_A2)] >= 0)
    assert data.b_factor_stderr_A2.shape == (16,) and data.uncertainty.method == "jackknife"
    assert data.uncertainty.green_dof == pytest.approx(14)
    assert data.truth_metrics.pairing == "paired" and data.truth_metrics.csm.value == 1.0
    assert data.rho_nn.stderr > 0 and data.offset.n_pairs == 120 and not data.offset.subtracted

    # a seeded bootstrap is reproducible; no errors at all on request
    boot = [*argv, "--errors", "bootstrap", "--bootstrap", "30", "--seed", "4", "--overwrite"]
    assert cli.run(_parse(boot)) == 0
    first = read_correlations(out).green_stderr_A2
    assert cli.run(_parse(boot)) == 0
    np.testing.assert_array_equal(read_correlations(out).green_stderr_A2, first)
    assert "bootstrap over object states (30 replicas, seed 4)" in capsys.readouterr().out
    assert cli.run(_parse([*argv, "--errors", "none"])) == 0
    none = read_correlations(out)
    assert none.green_stderr_A2 is None and none.uncertainty is None
    assert "errors: none computed" in capsys.readouterr().out


def test_cli_subtracts_the_uniform_offset(tmp_path, capsys):
    atoms, _ = _inputs(tmp_path)
    shift = np.random.default_rng(5).normal(0, 0.2, (15, 1, 1, 2))  # a rigid shift per state
    shifted = dataclasses.replace(atoms, positions_A=atoms.positions_A + shift)
    write_atoms(tmp_path / "shifted.h5", shifted)
    out = tmp_path / "c.h5"
    argv = [str(tmp_path / "shifted.h5"), "--out", str(out), "--slices", "0:2"]
    assert cli.run(_parse(argv)) == 0
    plain = read_correlations(out)
    assert cli.run(_parse([*argv, "--subtract-offset", "--offset-min-distance-A", "3"])) == 0
    text = capsys.readouterr().out
    assert "(distinct atoms at least 3 Å apart); subtracted from the tensor" in text
    sub = read_correlations(out)
    assert sub.offset.subtracted and sub.offset.min_distance_A == 3.0
    np.testing.assert_allclose(sub.offset.offset_A2, np.var(shift, axis=0).ravel(), rtol=0.2)
    np.testing.assert_allclose(
        sub.green_A2[0::2, 0::2], plain.green_A2[0::2, 0::2] - sub.offset.offset_A2[0]
    )
    np.testing.assert_allclose(sub.green_A2[0::2, 1::2], plain.green_A2[0::2, 1::2])


def test_cli_warns_when_the_states_did_not_separate(tmp_path, capsys):
    atoms, _ = _inputs(tmp_path)
    stuck = atoms.mean_positions_A + 0.001 * (atoms.positions_A - atoms.mean_positions_A)
    recon = tmp_path / "recon.h5"
    report = {"stage": "object states", "n_states": 15, "separated": False, "gain": 0.01}
    with h5py.File(recon, "w") as f:
        f.create_group("diagnostics").attrs["json"] = json.dumps({"separation": [report]})
    write_atoms(
        tmp_path / "stuck.h5",
        dataclasses.replace(atoms, positions_A=stuck, provenance={"reconstruction": str(recon)}),
    )
    out = tmp_path / "c.h5"
    assert cli.run(_parse([str(tmp_path / "stuck.h5"), "--out", str(out), "--slices", "0"])) == 0
    captured = capsys.readouterr()
    assert "states NOT separated" in captured.out
    assert "did not separate (its state-separation report)" in captured.err
    assert "displacements below any vibration" in captured.err  # 0.006 pm rms
    recorded = read_warnings(out)
    assert any("did not separate" in w for w in recorded)
    assert any("below any vibration" in w for w in recorded)
    # a floor given on the command line (e.g. a static control's rms)
    argv = [str(tmp_path / "atoms.h5"), "--out", str(out), "--slices", "0", "--overwrite"]
    assert cli.run(_parse([*argv, "--noise-floor-A", "0.06"])) == 0
    captured = capsys.readouterr()
    assert "noise floor: 6.00 pm per direction, given (--noise-floor-A)" in captured.out
    assert "displacements at the noise floor" in captured.err
    assert read_correlations(out).noise_floor.floor_A == 0.06
    assert cli.run(_parse([*argv, "--noise-floor-A", "0.01"])) == 0
    assert "noise floor" not in capsys.readouterr().err
