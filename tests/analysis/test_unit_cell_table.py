"""Unit-cell averages with errors and significance (``caviar correlations``' table, CORR file).

Known truth: a rectangular lattice (a1 = 2.0 Å, a2 = 3.2 Å) turned by θ, one atom per cell.
Each state displaces atom i by ``e_par (s1 z_i + sc w_l2(i)) + e_perp s2 y_i`` with ``z, y``
independent per atom and ``w`` shared by the atoms of one chain along a1 (same l2).  Expected,
in the local frame (x along the a1 bond, the nearest-neighbour class):

* self class: G_xx = s1² + sc², G_yy = s2², G_xy = 0;
* Δl = (±1, 0) (along a chain): G_xx = sc², the rest 0;
* Δl = (0, ±1) (across chains): 0.
"""

from __future__ import annotations

import numpy as np
import pytest

from caviar_napari.analysis import correlations as corr
from caviar_napari.analysis.correlation_analysis import CorrelationConfig, analyse_correlations
from caviar_napari.data.atoms import AtomsData
from caviar_napari.io.correlations_file import read_correlations, write_correlations
from caviar_napari.workflows.correlations import unit_cell_lines

A1, A2 = 2.0, 3.2
S1, SC, S2 = 0.05, 0.04, 0.03
L1, L2 = 8, 6
N_STATES = 200


def _lattice_atoms(theta_deg: float, seed: int = 7) -> AtomsData:
    t = np.radians(theta_deg)
    e_par = np.array([np.sin(t), np.cos(t)])  # (y, x)
    e_perp = np.array([np.cos(t), -np.sin(t)])
    l1, l2 = np.meshgrid(np.arange(L1), np.arange(L2), indexing="ij")
    cells = np.stack([l1.ravel(), l2.ravel()], axis=1)
    sites = 5.0 + cells[:, :1] * A1 * e_par + cells[:, 1:] * A2 * e_perp
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((N_STATES, cells.shape[0]))
    y = rng.standard_normal((N_STATES, cells.shape[0]))
    w = rng.standard_normal((N_STATES, L2))[:, cells[:, 1]]
    u = (S1 * z + SC * w)[..., None] * e_par + (S2 * y)[..., None] * e_perp
    return AtomsData(
        positions_A=(sites + u)[:, None],
        mean_positions_A=sites,
        cell_index=cells,
        basis_index=np.zeros(cells.shape[0], dtype=int),
        species=np.full(cells.shape[0], "Si"),
        lattice_vectors_A=np.array([A1 * e_par, A2 * e_perp]),
    )


def _row(table, key):
    found = np.flatnonzero((table.keys == key).all(axis=1))
    assert found.size == 1, f"class {key} listed {found.size} times"
    return int(found[0])


def test_unit_cell_table_recovers_the_known_blocks_with_errors_and_significance():
    atoms = _lattice_atoms(30.0)
    table = analyse_correlations(atoms, CorrelationConfig()).data.unit_cell_averages
    # one row per class and its reverse, ordered by shell: self, a1 bond (2.0 Å), a2 (3.2 Å)
    assert table.keys.tolist() == [[0, 0, 0, 0], [-1, 0, 0, 0], [0, -1, 0, 0]]
    assert table.shell.tolist() == [0, 1, 2]
    assert table.counts.tolist() == [L1 * L2, (L1 - 1) * L2, L1 * (L2 - 1)]
    np.testing.assert_allclose(table.distance_A, [0.0, A1, A2], atol=1e-12)
    assert table.max_distance_A == pytest.approx(1.8 * A1)
    # the frame: x along the a1 bond (either sense), a proper rotation
    assert table.frame_key.tolist() == [-1, 0, 0, 0]
    assert abs(table.frame_angle_deg) % 180 == pytest.approx(150.0)  # −a1 at 30° − 180°
    e_par = np.array([np.sin(np.radians(30)), np.cos(np.radians(30))])
    np.testing.assert_allclose(np.abs(table.rotation @ e_par), [0.0, 1.0], atol=1e-12)

    # exactly the class means of the realised tensor (eq. 2), turned into the frame
    u = atoms.positions_A[:, 0] - atoms.positions_A[:, 0].mean(axis=0)
    g = np.einsum("na,nb->ab", u.reshape(N_STATES, -1), u.reshape(N_STATES, -1)) / N_STATES
    for c, (d1, d2, _, _) in enumerate(table.keys):
        target = atoms.cell_index + [d1, d2]
        i = np.flatnonzero(np.all((target >= 0) & (target < [L1, L2]), axis=1))
        j = i + d1 * L2 + d2  # the atom at l_i + Δl (cells in row-major order)
        blocks = corr.pair_blocks(g, np.stack([i, j], axis=1)).mean(axis=0)
        np.testing.assert_allclose(
            table.blocks_A2[c], table.rotation @ blocks @ table.rotation.T, atol=1e-12
        )

    # against the model: every entry within 4 standard errors (local (y, x) rows/columns)
    expected = np.zeros((3, 2, 2))
    expected[0] = [[S2**2, 0.0], [0.0, S1**2 + SC**2]]
    expected[1, 1, 1] = SC**2
    err = table.stderr_A2
    assert np.all(np.isfinite(err)) and np.all(err > 0)
    assert np.all(np.abs(table.blocks_A2 - expected) < 4 * err), (table.blocks_A2, err)
    assert err[0, 1, 1] < 0.1 * expected[0, 1, 1]  # 200 states: a few % on the variances
    # the chain correlation is found, the absent one is not
    assert np.isinf(table.block_sigma[0])
    assert table.block_sigma[1] > 8 and table.arrow_sigma[1, 1] > 8  # the x row carries it
    assert table.block_sigma[2] < 3


def test_unit_cell_table_is_the_same_for_a_turned_lattice():
    """The same displacements in the lattice frame, the whole crystal turned by 47°: the table
    (in each one's own local frame) does not change — a twisted layer compares class by class."""
    one = analyse_correlations(_lattice_atoms(30.0), CorrelationConfig()).data
    two = analyse_correlations(_lattice_atoms(77.0), CorrelationConfig()).data
    a, b = one.unit_cell_averages, two.unit_cell_averages
    np.testing.assert_array_equal(a.keys, b.keys)
    np.testing.assert_allclose(a.blocks_A2, b.blocks_A2, atol=1e-12)
    np.testing.assert_allclose(a.stderr_A2, b.stderr_A2, atol=1e-12)
    assert b.frame_angle_deg - a.frame_angle_deg == pytest.approx(47.0)


def test_unit_cell_table_in_the_corr_file_and_the_report(tmp_path):
    data = analyse_correlations(_lattice_atoms(30.0), CorrelationConfig()).data
    table = data.unit_cell_averages
    path = tmp_path / "corr.h5"
    write_correlations(path, data)
    back = read_correlations(path).unit_cell_averages
    for key in ("keys", "shell", "counts", "separation_A", "blocks_A2", "stderr_A2",
                "block_sigma", "arrow_sigma", "rotation", "frame_key"):  # fmt: skip
        np.testing.assert_array_equal(getattr(back, key), getattr(table, key), err_msg=key)
    assert back.max_distance_A == table.max_distance_A
    lines = unit_cell_lines(table, ["Si"])
    assert "x along the Si → Si bond Δl = (-1, 0)" in lines[0]
    self_row, bond, across = lines[2:]
    # pm²: the self x–x variance s1² + sc² = 41 pm² (realised within its error)
    xx = float(self_row.split()[8])  # shell, Δl1, Δl2, κ, →, κ', r, pairs, G_xx
    assert xx == pytest.approx(1e4 * table.blocks_A2[0, 1, 1], abs=0.006)
    assert self_row.rstrip().endswith("self") and bond.rstrip().endswith("*")
    assert not across.rstrip().endswith("*")


def test_no_table_without_lattice_indices():
    atoms = _lattice_atoms(0.0)
    plain = AtomsData(positions_A=atoms.positions_A, mean_positions_A=atoms.mean_positions_A)
    assert analyse_correlations(plain, CorrelationConfig()).data.unit_cell_averages is None
