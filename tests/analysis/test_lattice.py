"""Lattice vectors, cell and basis indices of honeycomb and rectangular lattices."""

from __future__ import annotations

import numpy as np
import pytest

from caviar_napari.analysis.lattice import (
    canonical_basis,
    ensure_lattice_index,
    estimate_lattice_vectors,
    index_lattice,
    species_by_strength,
)
from caviar_napari.errors import InputError
from caviar_napari.io.atoms_file import AtomsData


def rotation(theta):
    c, s = np.cos(theta), np.sin(theta)
    return np.array([[c, -s], [s, c]])


def crystal(lattice, basis_frac, n1, n2, theta, rng, noise=0.0, origin=(3.0, -2.0)):
    """Atoms of an ``n1 × n2`` crystal: positions, true cell index, true κ (shuffled)."""
    L = np.asarray(lattice, float) @ rotation(theta).T  # rows rotated
    basis = np.asarray(basis_frac, float) @ L
    l = np.stack(np.meshgrid(np.arange(n1), np.arange(n2), indexing="ij"), -1).reshape(-1, 2)
    pos = np.asarray(origin) + (l @ L)[:, None, :] + basis[None]
    k = np.tile(np.arange(len(basis)), len(l))
    l = np.repeat(l, len(basis), axis=0)
    pos = pos.reshape(-1, 2) + rng.normal(0, noise, (len(k), 2))
    perm = rng.permutation(len(k))
    return pos[perm], l[perm], k[perm], L


A_GRAPHENE = 2.46
HONEYCOMB = [[0.0, A_GRAPHENE], [A_GRAPHENE * np.sqrt(3) / 2, -A_GRAPHENE / 2]]
HONEYCOMB_BASIS = [[0, 0], [1 / 3, 2 / 3]]
RECTANGLE = [[0.0, 3.1], [4.7, 0.0]]
RECTANGLE_BASIS = [[0, 0], [0.5, 0.3]]


def assert_same_indexing(index, l_true, k_true, L_true):
    """Recovered indices equal the truth up to a unimodular change of cell basis and shifts."""
    L = index.lattice_vectors_A
    M = L @ np.linalg.inv(L_true)  # L = M @ L_true, M integer with |det| = 1
    np.testing.assert_allclose(M, np.rint(M), atol=0.02)
    assert abs(round(np.linalg.det(np.rint(M)))) == 1
    M = np.rint(M).astype(int)
    # the basis partition is the truth's, up to relabelling
    n_basis = index.n_basis
    assert n_basis == k_true.max() + 1
    pairs = set(zip(index.basis_index.tolist(), k_true.tolist()))
    assert len(pairs) == n_basis
    # for atoms of one basis site, cell differences map linearly: l_true = l_rec @ M
    for kappa in range(n_basis):  # loop over ≤ 2 basis sites
        sel = index.basis_index == kappa
        d_rec = index.cell_index[sel] - index.cell_index[sel][0]
        d_true = l_true[sel] - l_true[sel][0]
        np.testing.assert_array_equal(d_rec @ M, d_true)
    assert index.cell_index.min() == 0


@pytest.mark.parametrize("theta", [0.0, 0.37, -1.1])
def test_honeycomb_rotated(theta):
    rng = np.random.default_rng(7)
    pos, l, k, L = crystal(HONEYCOMB, HONEYCOMB_BASIS, 9, 8, theta, rng, noise=0.03)
    index = index_lattice(pos)
    assert_same_indexing(index, l, k, L)
    a1, a2 = index.lattice_vectors_A
    np.testing.assert_allclose(np.hypot(*a1), A_GRAPHENE, rtol=3e-3)
    np.testing.assert_allclose(np.hypot(*a2), A_GRAPHENE, rtol=3e-3)
    angle = np.degrees(np.arccos(a1 @ a2 / (np.hypot(*a1) * np.hypot(*a2))))
    assert angle == pytest.approx(120.0, abs=0.3)  # conventions §5: 120° basis
    # the ideal sites reproduce the positions to within the noise
    assert np.abs(index.ideal_positions_A() - pos).max() < 5 * 0.03
    assert np.hypot(*index.basis_A[1]) == pytest.approx(A_GRAPHENE / np.sqrt(3), rel=1e-2)


@pytest.mark.parametrize("theta", [0.0, 0.52, 2.0])
def test_rectangular_two_atom_basis_rotated(theta):
    rng = np.random.default_rng(3)
    pos, l, k, L = crystal(RECTANGLE, RECTANGLE_BASIS, 7, 6, theta, rng, noise=0.02)
    index = index_lattice(pos)
    assert_same_indexing(index, l, k, L)
    a1, a2 = index.lattice_vectors_A
    assert np.hypot(*a1) == pytest.approx(3.1, rel=2e-3)
    assert np.hypot(*a2) == pytest.approx(4.7, rel=2e-3)
    assert a1 @ a2 == pytest.approx(0.0, abs=0.02)


def test_rectangular_one_atom_basis_with_missing_atoms():
    rng = np.random.default_rng(11)
    pos, l, k, L = crystal(RECTANGLE, [[0, 0]], 8, 7, 0.2, rng, noise=0.02)
    keep = rng.random(len(pos)) > 0.1  # 10 % vacancies
    index = index_lattice(pos[keep])
    assert_same_indexing(index, l[keep], k[keep], L)


def test_given_vectors_are_used_as_given():
    rng = np.random.default_rng(5)
    pos, l, k, L = crystal(HONEYCOMB, HONEYCOMB_BASIS, 5, 5, 0.3, rng, noise=0.0)
    index = index_lattice(pos, L)
    np.testing.assert_array_equal(index.lattice_vectors_A, L)
    assert_same_indexing(index, l, k, L)  # with M = identity
    np.testing.assert_allclose(index.ideal_positions_A(), pos, atol=1e-9)


def test_nan_positions_get_minus_one():
    rng = np.random.default_rng(2)
    pos, *_ = crystal(RECTANGLE, [[0, 0]], 5, 5, 0.0, rng)
    pos[3] = np.nan
    index = index_lattice(pos)
    assert index.basis_index[3] == -1 and tuple(index.cell_index[3]) == (-1, -1)
    assert np.isnan(index.ideal_positions_A()[3]).all()
    assert (np.delete(index.basis_index, 3) == 0).all()


def test_wrong_basis_count_is_an_error():
    rng = np.random.default_rng(2)
    pos, *_ = crystal(HONEYCOMB, HONEYCOMB_BASIS, 6, 6, 0.0, rng)
    with pytest.raises(InputError, match="n_basis=1"):
        index_lattice(pos, n_basis=1)


def test_estimate_rejects_honeycomb_bonds_as_translations():
    rng = np.random.default_rng(9)
    pos, *_ = crystal(HONEYCOMB, HONEYCOMB_BASIS, 8, 8, 0.0, rng)
    L = estimate_lattice_vectors(pos)
    assert np.hypot(*L.T).min() == pytest.approx(A_GRAPHENE, rel=1e-6)  # not the 1.42 Å bond


def test_canonical_basis_rules():
    hexagonal = canonical_basis([[0.0, 2.0], [np.sqrt(3), 1.0]])  # 60° input
    a1, a2 = hexagonal
    assert a1 @ a2 == pytest.approx(-2.0)  # 120°
    assert a1[1] > 0 and abs(a1[0]) < 1e-12  # along +x
    assert a1[1] * a2[0] - a1[0] * a2[1] > 0  # right-handed
    rect = canonical_basis([[5.0, 0.0], [3.0, 3.0]])  # reduces to (3, 3) and (2, -3)...
    assert abs(np.linalg.det(rect)) == pytest.approx(15.0)
    assert rect[0] @ rect[1] <= 1e-9
    with pytest.raises(InputError, match="collinear"):
        canonical_basis([[1.0, 0.0], [2.0, 0.0]])


def test_species_by_strength():
    kappa = np.array([0, 1, 0, 1, 1, -1])
    strength = np.array([0.9, 0.5, 1.1, 0.55, 0.45, np.nan])  # κ 0 strong, κ 1 weak
    species = species_by_strength(strength, kappa, ["B", "N"])
    assert species.tolist() == ["N", "B", "N", "B", "B", ""]
    assert species_by_strength(strength, kappa, ["C"]).tolist() == ["C"] * 5 + [""]
    with pytest.raises(InputError, match="3 species"):
        species_by_strength(strength, kappa, ["a", "b", "c"])


def test_ensure_lattice_index_keeps_given_and_fills_missing():
    rng = np.random.default_rng(4)
    pos, l, k, L = crystal(RECTANGLE, RECTANGLE_BASIS, 5, 5, 0.1, rng)
    stack = np.broadcast_to(pos, (2, 1, *pos.shape))
    given = AtomsData(stack, pos, cell_index=l * 0 + 7, basis_index=k)
    assert ensure_lattice_index(given) is given
    filled = ensure_lattice_index(AtomsData(stack, pos, lattice_vectors_A=L))
    np.testing.assert_array_equal(filled.lattice_vectors_A, L)
    assert_same_indexing(index_lattice(pos, L), l, k, L)
    np.testing.assert_array_equal(filled.cell_index, index_lattice(pos, L).cell_index)
    np.testing.assert_array_equal(filled.basis_index, index_lattice(pos, L).basis_index)


def test_too_few_atoms():
    with pytest.raises(InputError, match="at least 6"):
        index_lattice(np.zeros((3, 2)))
