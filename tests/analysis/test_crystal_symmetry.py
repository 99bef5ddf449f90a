"""Space groups of 2D crystals and the star average of covariances (issue 14's pooling)."""

from __future__ import annotations

import numpy as np
import pytest

from caviar_napari.analysis.crystal_symmetry import space_group, star_average
from caviar_napari.analysis.phonons import KB_EV_PER_K, HarmonicLattice, commensurate_q_frac


@pytest.mark.parametrize(
    ("lattice", "n_ops"),
    [
        (HarmonicLattice.honeycomb(), 6),  # hBN: p3m1 (B ≠ N)
        (HarmonicLattice.honeycomb(species=("C", "C")), 12),  # graphene: p6mm
        (HarmonicLattice.square(3.0, t_nn=1.0), 8),  # p4mm
        (HarmonicLattice.rectangular(2.0, 3.0, k_diag=1.0), 4),  # p2mm
    ],
)
def test_space_group_sizes(lattice, n_ops):
    ops = space_group(lattice.lattice_vectors_A, lattice.basis_A, lattice.species)
    assert len(ops) == n_ops and ops[0].is_identity
    for op in ops:  # every operation maps the crystal onto itself
        R = op.rotation
        np.testing.assert_allclose(R @ R.T, np.eye(2), atol=1e-12)
        image = lattice.basis_A @ R.T + op.translation_A
        target = lattice.basis_A[op.permutation] + op.cell_shift @ lattice.lattice_vectors_A
        np.testing.assert_allclose(image, target, atol=1e-9)


def test_symmetry_survives_distorted_mean_positions():
    lattice = HarmonicLattice.honeycomb()
    noisy = lattice.basis_A + np.array([[0.02, -0.01], [-0.015, 0.03]])
    assert len(space_group(lattice.lattice_vectors_A, noisy, lattice.species, 0.1)) == 6
    assert len(space_group(lattice.lattice_vectors_A, noisy, lattice.species, 0.01)) == 1
    # atoms that coincide in projection (a projected 3D crystal): no symmetry is used
    assert len(space_group(np.eye(2) * 3, np.zeros((2, 2)), ("Si", "Si"))) == 1


@pytest.mark.parametrize("species", [("B", "N"), ("C", "C")])
def test_star_average_keeps_an_exact_covariance(species):
    # C(q) = k_B T Φ̃(q)⁻¹ has the crystal's symmetry: pooling must return it unchanged,
    # which checks every rotation, permutation and phase of U_g(q)
    lattice = HarmonicLattice.honeycomb(species=species, k_nnn=3.0, t_nnn=1.0)
    ops = space_group(lattice.lattice_vectors_A, lattice.basis_A, lattice.species)
    q = commensurate_q_frac(6, 6)
    C = np.zeros((36, 4, 4), complex)
    C[1:] = KB_EV_PER_K * 300 * np.linalg.inv(lattice.force_constants_q(q[1:]))
    pooled, n_used = star_average(C, q, (6, 6), ops)
    assert n_used == len(ops)
    np.testing.assert_allclose(pooled, C, atol=1e-15 * np.abs(C).max() * 1e3)
    # a covariance that breaks the symmetry is changed, and pooling is a projection
    broken = C.copy()
    broken[5, 0, 0] *= 1.5
    once = star_average(broken, q, (6, 6), ops)[0]
    assert np.abs(once - broken).max() > 1e-3 * np.abs(C).max()
    np.testing.assert_allclose(star_average(once, q, (6, 6), ops)[0], once, atol=1e-15)


def test_only_operations_that_keep_the_grid_are_used():
    lattice = HarmonicLattice.honeycomb()
    ops = space_group(lattice.lattice_vectors_A, lattice.basis_A, lattice.species)
    q = commensurate_q_frac(6, 4)  # not hexagonal: the 3-fold axis maps it off the grid
    C = np.zeros((24, 4, 4), complex)
    C[1:] = np.linalg.inv(lattice.force_constants_q(q[1:]))
    pooled, n_used = star_average(C, q, (6, 4), ops)
    assert 1 <= n_used < len(ops)
    np.testing.assert_allclose(pooled, C, atol=1e-14)
