"""The workflow functions as the view-models and the study call them: typed options in, a
summary with the data, report lines and warnings out; species from a truth."""

from __future__ import annotations

import numpy as np
import pytest

from caviar_napari.analysis.truth import species_from_truth
from caviar_napari.errors import InputError
from caviar_napari.io.atoms_file import AtomsData, write_atoms
from caviar_napari.workflows.correlations import CorrelationsOptions, run_correlations
from caviar_napari.workflows.inputs import read_checked_atoms


def _lattice_atoms(n_states=12, seed=0):
    """Atoms of a 4 × 4 square lattice, spacing 2 Å, with random displacements."""
    y, x = np.meshgrid(np.arange(4) * 2.0, np.arange(4) * 2.0, indexing="ij")
    sites = np.stack([y.ravel(), x.ravel()], axis=1)
    rng = np.random.default_rng(seed)
    positions = sites + rng.normal(0, 0.05, (n_states, 1, 16, 2))
    return AtomsData(positions_A=positions, mean_positions_A=sites, source="r.h5")


def test_correlations_workflow_returns_data_and_report(tmp_path):
    write_atoms(tmp_path / "a.h5", _lattice_atoms())
    summary = run_correlations(CorrelationsOptions(tmp_path / "a.h5", tmp_path / "c.h5"))
    assert summary.out == tmp_path / "c.h5" and summary.warnings == []
    assert summary.data.n_atoms == 16 and np.isfinite(summary.data.b_factor_A2).all()
    assert summary.lines[0].startswith("atoms: 16 (16 used)") and "wrote" in summary.lines[-1]
    assert summary.comparison is None  # no ground truth given


def test_infinite_and_nan_positions_are_excluded_consistently(tmp_path):
    atoms = _lattice_atoms()
    atoms.positions_A[2, 0, 3] = [np.inf, 0.0]
    atoms.mean_positions_A[9] = [-np.inf, 1.0]
    atoms.positions_A[5, 0, 7] = np.nan  # a failed refinement
    write_atoms(tmp_path / "a.h5", atoms)
    checked = read_checked_atoms(tmp_path / "a.h5")
    assert checked.infinite_atoms.tolist() == [3, 9]
    assert not np.isinf(checked.atoms.positions_A).any()
    assert np.isnan(checked.atoms.positions_A[:, :, [3, 9]]).all()
    summary = run_correlations(CorrelationsOptions(tmp_path / "a.h5", tmp_path / "c.h5"))
    assert summary.data.excluded_atoms.tolist() == [3, 7, 9]
    assert summary.lines[0].startswith("atoms: 16 (13 used)")
    assert (
        summary.n_infinite == 2 and "2 atoms excluded: non-finite position" in summary.warnings[0]
    )


def test_all_atoms_excluded_is_an_error_and_writes_nothing(tmp_path):
    atoms = _lattice_atoms()
    atoms.positions_A[0] = np.nan
    write_atoms(tmp_path / "a.h5", atoms)
    with pytest.raises(InputError, match="every atom is excluded"):
        run_correlations(CorrelationsOptions(tmp_path / "a.h5", tmp_path / "c.h5"))
    assert not (tmp_path / "c.h5").exists()


def test_species_from_truth_by_nearest_site_and_by_basis():
    sites = np.array([[0.0, 0.0], [0.0, 1.4], [2.4, 0.0], [2.4, 1.4], [4.8, 0.0], [4.8, 1.4]])
    names = np.array(["B", "N"] * 3)
    shifted = sites[::-1] + [0.05, -0.03]  # another order, a small global shift
    got = species_from_truth(shifted, sites, names)
    assert got.species.tolist() == names[::-1].tolist() and got.n_matched == 6
    # with a basis index every atom of a basis site gets its majority species, the unmatched
    # one included; a mislabelled truth site is counted as disagreeing
    rec = np.vstack([sites, [[9.0, 9.0]]])
    basis = np.array([0, 1, 0, 1, 0, 1, 1])
    wrong = names.copy()
    wrong[3] = "B"
    got = species_from_truth(rec, sites, wrong, basis)
    assert got.by_basis == {0: "B", 1: "N"} and got.n_disagreeing == 1
    assert got.species.tolist() == ["B", "N", "B", "N", "B", "N", "N"]
    with pytest.raises(InputError, match="no atom lies within"):
        species_from_truth(np.full((3, 2), np.nan), sites, names)
