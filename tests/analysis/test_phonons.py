"""Tests of the harmonic lattice-dynamics model against analytic cases and exact identities."""

from __future__ import annotations

import math

import numpy as np
import pytest

from caviar_napari.analysis.phonons import (
    KB_EV_PER_K,
    THZ_PER_SQRT_EIGENVALUE,
    HarmonicLattice,
    Spring,
    commensurate_q_frac,
    eigenvalues_to_THz,
    standard_mass_amu,
)
from caviar_napari.errors import InputError


def test_unit_constant_matches_spec():
    # conventions §5: ν[THz] = 15.6333 sqrt(k_BT / (m G)); 12 amu, 1e-3 Å², 300 K → 22.9 THz
    assert THZ_PER_SQRT_EIGENVALUE == pytest.approx(15.6333, abs=1e-4)
    nu = THZ_PER_SQRT_EIGENVALUE * math.sqrt(KB_EV_PER_K * 300.0 / (12.0 * 1e-3))
    assert nu == pytest.approx(22.95, abs=0.01)


def test_eigenvalues_to_THz_keeps_sign():
    nu = eigenvalues_to_THz([-4.0, 0.0, 4.0])
    np.testing.assert_allclose(nu, [-2 * THZ_PER_SQRT_EIGENVALUE, 0, 2 * THZ_PER_SQRT_EIGENVALUE])


def test_square_lattice_matches_analytic_dispersion():
    k, t, m = 10.0, 2.5, 12.011
    lat = HarmonicLattice.square(3.0, "C", k_nn=k, t_nn=t)
    rng = np.random.default_rng(0)
    q = rng.uniform(-0.5, 0.5, size=(50, 2))
    c1, c2 = 1 - np.cos(2 * np.pi * q[:, 0]), 1 - np.cos(2 * np.pi * q[:, 1])
    d_yy = 2 / m * (k * c1 + t * c2)
    d_xx = 2 / m * (k * c2 + t * c1)
    D = lat.dynamical_matrix(q)
    np.testing.assert_allclose(D[:, 0, 0].real, d_yy, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(D[:, 1, 1].real, d_xx, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(D[:, 0, 1], 0, atol=1e-14)
    expected = np.sort(eigenvalues_to_THz(np.stack([d_yy, d_xx], -1)), axis=-1)
    np.testing.assert_allclose(lat.frequencies_THz(q), expected, rtol=1e-10, atol=1e-9)


def test_honeycomb_gamma_acoustic_zero_and_optical_analytic():
    lat = HarmonicLattice.honeycomb(k_nn=20.0, t_nn=6.0, k_nnn=4.0)
    nu = lat.frequencies_THz([0.0, 0.0])
    assert nu[0] == 0.0 and nu[1] == 0.0
    # optical at Γ: ω² = (3/2)(k + t)(1/m_B + 1/m_N), doubly degenerate
    mb, mn = standard_mass_amu("B"), standard_mass_amu("N")
    nu_opt = THZ_PER_SQRT_EIGENVALUE * math.sqrt(1.5 * 26.0 * (1 / mb + 1 / mn))
    np.testing.assert_allclose(nu[2:], [nu_opt, nu_opt], rtol=1e-12)
    assert 30 < nu_opt < 45  # hBN-like: tens of THz
    # D(q) Hermitian, D(-q) = conj D(q)
    q = np.array([[0.13, 0.41], [1 / 3, 1 / 3], [0.5, 0.0]])
    D = lat.dynamical_matrix(q)
    np.testing.assert_allclose(D, np.conj(np.swapaxes(D, -1, -2)), atol=1e-13)
    np.testing.assert_allclose(lat.dynamical_matrix(-q), np.conj(D), atol=1e-13)
    # periodic in the reciprocal lattice
    np.testing.assert_allclose(lat.dynamical_matrix(q + [1, -2]), D, atol=1e-12)


def test_reciprocal_vectors_and_geometry():
    lat = HarmonicLattice.honeycomb(a_A=2.504)
    np.testing.assert_allclose(
        lat.lattice_vectors_A @ lat.reciprocal_vectors_invA.T, np.eye(2), atol=1e-15
    )
    nn = np.linalg.norm(lat.basis_A[1] - lat.basis_A[0])
    assert nn == pytest.approx(2.504 / math.sqrt(3))
    # 3 NN per atom (listed from both ends: 6) + 6 NNN per atom (12)
    assert lat.bonds.source.size == 18


def test_supercell_green_tensor_symmetric_psd_and_com_fixed():
    lat = HarmonicLattice.honeycomb()
    sc = lat.supercell(4, 3)
    G = sc.green_tensor(300.0)
    assert G.shape == (2 * sc.n_atoms, 2 * sc.n_atoms)
    np.testing.assert_allclose(G, G.T, atol=1e-18)
    w = np.linalg.eigvalsh(G)
    assert w.min() > -1e-15 * w.max()
    # exactly two zero eigenvalues of M^½ G M^½: the mass-weighted translations are excluded
    sqm = np.repeat(np.sqrt(sc.masses_amu), 2)
    wm = np.linalg.eigvalsh(G * sqm[:, None] * sqm[None, :])
    assert np.sum(wm < 1e-12 * wm.max()) == 2
    # centre of mass fixed: Σ m_i u_i = 0 in G
    m = sc.masses_amu
    com = np.einsum("i,iajb->ajb", m, G.reshape(sc.n_atoms, 2, sc.n_atoms, 2))
    assert np.abs(com).max() < 1e-12 * np.abs(G).max()
    # linear in T
    np.testing.assert_allclose(sc.green_tensor(600.0), 2 * G, rtol=1e-12)


def test_supercell_green_tensor_matches_reciprocal_space():
    # (1/L) Σ_{l,l'} G(l,l') e^{-iq·r_l} e^{+iq·r_l'} = k_B T Φ̃(q)^{-1} at every q ≠ 0
    lat = HarmonicLattice.honeycomb()
    sc = lat.supercell(3, 4)
    T = 250.0
    G = sc.green_tensor(T).reshape(sc.n_cells, 4, sc.n_cells, 4)
    cells = sc.cell_index[:: lat.n_basis]
    q = sc.q_frac[1:]
    ph = np.exp(-2j * np.pi * q @ cells.T)
    C = np.einsum("ql,lamb,qm->qab", ph, G, ph.conj()) / sc.n_cells
    expected = KB_EV_PER_K * T * np.linalg.inv(lat.force_constants_q(q))
    np.testing.assert_allclose(C, expected, atol=1e-12 * np.abs(expected).max())
    # and the supercell's normal modes are exactly the Bloch frequencies on the q grid
    bloch = np.sort(lat.frequencies_THz(sc.q_frac).ravel())[2:]
    np.testing.assert_allclose(sc.mode_frequencies_THz(), bloch, rtol=1e-9)


def test_sample_covariance_converges_to_green_tensor():
    sc = HarmonicLattice.honeycomb().supercell(3, 3)
    G = sc.green_tensor(300.0)
    errs = []
    for n in (500, 8000):
        u = sc.sample_snapshots(300.0, n, np.random.default_rng(1))
        assert u.shape == (n, sc.n_atoms, 2)
        # centre of mass fixed in every snapshot
        np.testing.assert_allclose(np.einsum("i,nia->na", sc.masses_amu, u), 0, atol=1e-12)
        flat = u.reshape(n, -1)
        errs.append(np.abs(flat.T @ flat / n - G).max() / np.abs(G).max())
    assert errs[1] < 0.06
    assert errs[1] < errs[0] / 2.5  # ~1/sqrt(n): factor 4 expected


def test_supercell_indices_and_positions():
    lat = HarmonicLattice.honeycomb()
    sc = lat.supercell(2, 3)
    i = (1 * 3 + 2) * 2 + 1  # l = (1, 2), b = 1
    np.testing.assert_array_equal(sc.cell_index[i], [1, 2])
    assert sc.basis_index[i] == 1 and sc.species[i] == "N"
    np.testing.assert_allclose(
        sc.positions_A[i], lat.lattice_vectors_A[0] + 2 * lat.lattice_vectors_A[1] + lat.basis_A[1]
    )
    np.testing.assert_allclose(commensurate_q_frac(2, 3)[4], [1 / 2, 1 / 3])


def test_errors():
    with pytest.raises(InputError, match="unstable"):
        HarmonicLattice.square(3.0, k_nn=10.0).supercell(3, 3).green_tensor(300.0)
    with pytest.raises(InputError, match="2.0000 Å"):
        HarmonicLattice.square(3.0).__class__(
            lattice_vectors_A=np.eye(2) * 3,
            basis_A=np.zeros((1, 2)),
            species=("C",),
            masses_amu=[12.0],
            springs=(Spring(2.0, 1.0),),
        )
    with pytest.raises(InputError, match="Xx"):
        standard_mass_amu("Xx")
    with pytest.raises(InputError, match="temperature"):
        HarmonicLattice.honeycomb().supercell(2, 2).green_tensor(-1.0)
    with pytest.raises(InputError, match="masses_amu"):
        HarmonicLattice.honeycomb(masses_amu=[10.0, -1.0])
