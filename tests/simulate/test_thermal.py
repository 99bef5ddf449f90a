"""Thermal ensembles: the correlated sampler converges to the exact model covariance, Einstein
has no off-diagonal correlation, static has no motion at all."""

from __future__ import annotations

import numpy as np
import pytest

from caviar_napari.analysis.phonons import HarmonicLattice
from caviar_napari.errors import InputError
from caviar_napari.simulate.thermal import (
    correlated_ensemble,
    einstein_ensemble,
    matched_einstein_rms_A,
    realised_green,
    static_ensemble,
)


@pytest.fixture(scope="module")
def supercell():
    return HarmonicLattice.honeycomb().supercell(3, 3)  # 18 atoms, 36 dof


def _z_scores(g_hat: np.ndarray, g: np.ndarray, n: int) -> np.ndarray:
    """(Ĝ − G) / sd with sd² = (G_ij² + G_ii G_jj) / N, the sampling variance of a Gaussian
    sample covariance (upper triangle, diagonal included)."""
    d = np.diag(g)
    sd = np.sqrt((g**2 + np.outer(d, d)) / n)
    iu = np.triu_indices_from(g)
    return ((g_hat - g) / sd)[iu]


def test_realised_green_is_eq2_of_mean_subtracted_displacements():
    rng = np.random.default_rng(1)
    d = rng.normal(size=(7, 3, 3)) + 5.0  # an offset mean must not matter (eq. 1)
    g = realised_green(d)
    u = d[:, :, :2] - d[:, :, :2].mean(axis=0)
    expected = np.einsum("nia,njb->iajb", u, u).reshape(6, 6) / 7
    np.testing.assert_allclose(g, expected, rtol=1e-12)
    # dof order 2i + a: element (2*1+0, 2*2+1) is <u_1y u_2x>
    assert g[2, 5] == pytest.approx(np.mean(u[:, 1, 0] * u[:, 2, 1]))


def test_correlated_sampler_converges_to_model_covariance(supercell):
    n = 4000
    ens = correlated_ensemble(supercell, 300.0, n, rng=7)
    g = supercell.green_tensor(300.0)
    np.testing.assert_array_equal(ens.green_model_A2, g)
    assert np.all(ens.displacements_A[:, :, 2] == 0)  # in-plane model
    z = _z_scores(ens.green_realised_A2, g, n)
    # 666 independent-ish z-scores: |z| < 5 everywhere and their mean square ≈ 1
    assert np.max(np.abs(z)) < 5.0
    assert 0.8 < np.mean(z**2) < 1.25
    # the error shrinks like 1/sqrt(N): 16x fewer snapshots -> about 4x larger error
    small = correlated_ensemble(supercell, 300.0, n // 16, rng=8).green_realised_A2
    err_big = np.linalg.norm(ens.green_realised_A2 - g)
    err_small = np.linalg.norm(small - g)
    assert 2.5 < err_small / err_big < 6.5
    # and the off-diagonal (correlation) structure is real: nearest neighbours correlate
    assert np.max(np.abs(g - np.diag(np.diag(g)))) > 0.1 * np.max(np.diag(g))


def test_correlated_ensemble_maps_periodic_images(supercell):
    idx = np.array([3, 0, 3])
    ens = correlated_ensemble(supercell, 300.0, 5, rng=2, atom_map=idx)
    np.testing.assert_array_equal(ens.displacements_A[:, 0], ens.displacements_A[:, 2])
    g = supercell.green_tensor(300.0).reshape(18, 2, 18, 2)
    np.testing.assert_allclose(ens.green_model_A2.reshape(3, 2, 3, 2)[0, :, 1], g[3, :, 0])
    with pytest.raises(InputError, match="atom_map"):
        correlated_ensemble(supercell, 300.0, 2, atom_map=[18])


def test_einstein_has_no_off_diagonal_correlation():
    species = np.array(["B", "N"] * 10)
    rms = {"B": 0.08, "N": 0.06}
    n = 3000
    ens = einstein_ensemble(species, rms, n, rng=3)
    sigma2 = np.repeat([rms[s] ** 2 for s in species], 2)
    np.testing.assert_allclose(ens.green_model_A2, np.diag(sigma2))
    z = _z_scores(ens.green_realised_A2, ens.green_model_A2, n)
    assert np.max(np.abs(z)) < 5.0
    off = ens.green_realised_A2 - np.diag(np.diag(ens.green_realised_A2))
    # off-diagonal elements are pure sampling noise of size sigma^2 / sqrt(N)
    assert np.sqrt(np.mean(off[off != 0] ** 2)) < 2.0 * 0.08**2 / np.sqrt(n)
    # isotropic: z has the same variance as y and x
    np.testing.assert_allclose(
        ens.displacements_A[:, species == "B", 2].std(), 0.08, rtol=3 * 0.08 / np.sqrt(n) / 0.08
    )
    with pytest.raises(InputError, match=r"\['N'\]"):
        einstein_ensemble(species, {"B": 0.1}, 2)


def test_static_has_no_motion_at_all():
    ens = static_ensemble(12, 3)
    assert ens.n_configs == 3 and ens.n_atoms == 12
    assert not np.any(ens.displacements_A)
    assert not np.any(ens.green_model_A2)
    assert not np.any(ens.green_realised_A2)
    with pytest.raises(InputError, match="n_configs"):
        static_ensemble(12, 0)


def test_matched_einstein_rms_is_the_harmonic_diagonal(supercell):
    rms = matched_einstein_rms_A(supercell, 300.0)
    g = np.diag(supercell.green_tensor(300.0)).reshape(-1, 2)
    for s in ("B", "N"):
        assert rms[s] ** 2 == pytest.approx(g[supercell.species == s].mean())
    assert rms["B"] > rms["N"]  # the lighter atom moves more
    assert 0.01 < rms["N"] < 0.1  # classical room-temperature scale, Å
    # classical: <u^2> ∝ T
    assert matched_einstein_rms_A(supercell, 600.0)["B"] == pytest.approx(rms["B"] * np.sqrt(2))
