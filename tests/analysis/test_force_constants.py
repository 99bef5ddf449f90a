"""Force-constant model and its maximum-likelihood fit (issue 14) against exact harmonic truth."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from caviar_napari.analysis import force_constant_likelihood as fcl
from caviar_napari.analysis import force_constants as fc
from caviar_napari.analysis.dispersion_truth import coverage, dispersion_accuracy
from caviar_napari.analysis.phonons import KB_EV_PER_K, HarmonicLattice, Spring
from caviar_napari.errors import InputError

T = 300.0
KT = KB_EV_PER_K * T


def model_of(lattice: HarmonicLattice, shells: int = 2) -> fc.ForceConstantModel:
    return fc.ForceConstantModel.build(
        lattice.lattice_vectors_A, lattice.basis_A, lattice.species, shells
    )


def truth_of(model: fc.ForceConstantModel, lattice: HarmonicLattice) -> np.ndarray:
    b = lattice.bonds
    theta, residual = model.parameters_of(b.source, b.target, b.offset, b.K)
    assert residual < 1e-10  # the truth is inside the fitted family
    return theta


def block_stats(lattice: HarmonicLattice, cells: int, states: int, seed: int):
    sc = lattice.supercell(cells, cells)
    u = sc.sample_snapshots(T, states, seed)
    return fc.displacement_statistics(u.reshape(states, 1, cells, cells, lattice.n_basis, 2))


@pytest.fixture(scope="module")
def hbn():
    lattice = HarmonicLattice.honeycomb()
    model = model_of(lattice)
    return lattice, model, truth_of(model, lattice)


def test_honeycomb_model_holds_the_presets_springs(hbn):
    lattice, model, truth = hbn
    assert model.parameter_names == (
        "shell 1 B–N longitudinal",
        "shell 1 B–N transverse",
        "shell 2 B–B longitudinal",
        "shell 2 B–B transverse",
        "shell 2 N–N longitudinal",
        "shell 2 N–N transverse",
    )
    np.testing.assert_allclose(truth, [20, 6, 4, 0, 4, 0], atol=1e-12)
    assert len(model.operations) == 6  # p3m1: B and N differ
    assert [o.multiplicity for o in model.orbits] == [3, 3, 3]  # bonds per cell
    # Φ̃(q; θ_true) is the lattice's own, at any q (acoustic sum rule included)
    q = np.random.default_rng(0).uniform(-1, 1, (20, 2))
    np.testing.assert_allclose(
        model.force_constants_q(truth, q), lattice.force_constants_q(q), atol=1e-12
    )
    np.testing.assert_allclose(
        model.frequencies_THz(truth, q, lattice.masses_amu), lattice.frequencies_THz(q), atol=1e-9
    )
    np.testing.assert_allclose(
        model.force_constants_q(truth, [0.0, 0.0]) @ np.tile([1, 0], 2), 0, atol=1e-12
    )


def test_symmetry_decides_the_tensor_components():
    # graphene-like (B = N): 12 operations, one NNN orbit; the 3rd shell too
    lattice = HarmonicLattice.honeycomb(species=("C", "C"))
    model = model_of(lattice, 3)
    assert len(model.operations) == 12
    assert [o.shell for o in model.orbits] == [1, 2, 3]
    assert all(o.components == ("longitudinal", "transverse") for o in model.orbits)
    # an oblique lattice: only the identity and the inversion; bonds may shear
    oblique = HarmonicLattice(
        lattice_vectors_A=np.array([[0.0, 3.0], [2.0, 1.1]]),
        basis_A=np.zeros((1, 2)),
        species=("C",),
        masses_amu=np.array([12.0]),
        springs=(Spring(3.0, 5.0, 1.0),),
    )
    m = model_of(oblique, 3)  # bonds of 2.28, 2.76 and 3.00 Å
    assert len(m.operations) == 2
    assert [o.shell for o in m.orbits] == [1, 2, 3]
    assert all(o.components == fc.COMPONENTS for o in m.orbits)
    # a sheared bond tensor is held exactly (the truth here has none, but the family does)
    b = oblique.bonds
    K = b.K.copy()
    K[:, 0, 1] += 0.7
    K[:, 1, 0] += 0.7
    _, residual = m.parameters_of(b.source, b.target, b.offset, K)
    assert residual < 1e-12


def test_coinciding_basis_atoms_are_refused():
    with pytest.raises(InputError, match="coincide in projection"):
        fc.ForceConstantModel.build(np.eye(2) * 3, np.zeros((2, 2)), ("Si", "Si"), 1)


def _fd_check(lik, theta, hessian):
    f, grad, _ = lik.evaluate(theta)
    for p in range(theta.size):
        h = 1e-5 * max(1.0, abs(theta[p]))
        e = np.zeros_like(theta)
        e[p] = h
        fd = (lik.evaluate(theta + e, False)[0] - lik.evaluate(theta - e, False)[0]) / (2 * h)
        assert fd == pytest.approx(grad[p], rel=1e-6, abs=1e-6 * abs(f) / 1e3)
        g_fd = (lik.evaluate(theta + e)[1] - lik.evaluate(theta - e)[1]) / (2 * h)
        np.testing.assert_allclose(
            hessian[:, p], g_fd, rtol=1e-5, atol=1e-6 * np.abs(hessian).max()
        )


def test_likelihood_gradients_match_finite_differences(hbn):
    lattice, model, truth = hbn
    stats = block_stats(lattice, 4, 6, 3)
    theta = truth * 1.1 + np.array([0, 0.3, 0, 0.2, 0, -0.1])
    periodic = fcl.PeriodicLikelihood(model, stats, KT)
    _fd_check(periodic, theta, periodic.observed_hessian(theta))
    window = fc.displacement_statistics(stats.block_displacements()[:, :, :3, :3])
    opened = fcl.OpenLikelihood(model, window, KT, (12, 12))
    _fd_check(opened, theta, opened.observed_hessian(theta))
    irregular = irregular_window(lattice.supercell(4, 4), stats.u, 3.2)
    opened = fcl.OpenLikelihood(model, irregular, KT, (12, 12))
    _fd_check(opened, theta, opened.observed_hessian(theta))


def irregular_window(sc, u, radius_A: float, seed: int = 0) -> fc.DisplacementStatistics:
    """The atoms of ``sc`` within ``radius_A`` of its centre (no whole-cell block), shuffled."""
    centre = sc.positions_A.mean(axis=0)
    inside = np.flatnonzero(np.linalg.norm(sc.positions_A - centre, axis=1) <= radius_A)
    inside = np.random.default_rng(seed).permutation(inside)
    return fc.window_statistics(
        u[:, :, inside], sc.cell_index[inside], sc.basis_index[inside], sc.lattice.n_basis
    )


def test_likelihoods_equal_the_gaussian_density_of_the_supercell(hbn):
    # −2 log L of both boundaries against the Wishart density from Supercell.green_tensor,
    # with the rigid translations of the window projected out — computed in real space
    lattice, model, truth = hbn
    crystal = lattice.supercell(6, 6)
    u = crystal.sample_snapshots(T, 7, 2)  # (7, 72 atoms, 2)
    G = crystal.green_tensor(T).reshape(72, 2, 72, 2)

    def brute(atoms):
        x = u[:, atoms].reshape(7, -1)
        x = x - x.mean(axis=0)
        Gw = G[atoms][:, :, atoms].reshape(x.shape[1], x.shape[1])
        n = x.shape[1]
        Tm = np.zeros((n, 2))
        Tm[0::2, 0] = Tm[1::2, 1] = 1 / math.sqrt(n / 2)
        Q = np.linalg.qr(np.concatenate([Tm, np.eye(n)], axis=1))[0][:, 2:n]
        S = Q.T @ x.T @ x @ Q
        Sig = Q.T @ Gw @ Q
        return 6 * np.linalg.slogdet(Sig)[1] + np.trace(np.linalg.solve(Sig, S))

    def value(lik):
        return lik.evaluate(truth, False)[0] + lik.offset

    whole = fc.displacement_statistics(u.reshape(7, 1, 6, 6, 2, 2))
    per = fcl.PeriodicLikelihood(model, whole, KT)
    assert value(per) == pytest.approx(brute(np.arange(72)), rel=1e-10)
    block = np.arange(72).reshape(6, 6, 2)[:4, :4].ravel()  # a 4 × 4 block of whole cells
    window = fc.displacement_statistics(u[:, block].reshape(7, 1, 4, 4, 2, 2))
    assert value(fcl.OpenLikelihood(model, window, KT, (6, 6))) == pytest.approx(
        brute(block), rel=1e-10
    )
    # any set of atoms, in any order (a disc of the sample: no block of whole cells)
    disc = irregular_window(crystal, u[:, None], 3.5, seed=5)
    centre = crystal.positions_A.mean(axis=0)
    inside = np.random.default_rng(5).permutation(
        np.flatnonzero(np.linalg.norm(crystal.positions_A - centre, axis=1) <= 3.5)
    )
    assert disc.n_sites == inside.size and 6 < inside.size < 72
    assert value(fcl.OpenLikelihood(model, disc, KT, (6, 6))) == pytest.approx(
        brute(inside), rel=1e-10
    )


def test_open_boundary_on_the_whole_crystal_is_the_periodic_fit(hbn):
    lattice, model, _ = hbn
    stats = block_stats(lattice, 5, 8, 4)
    a = fc.fit_force_constants(stats, model, T, boundary="periodic", test_next_shell=False)
    b = fc.fit_force_constants(
        stats, model, T, boundary="open", crystal_cells=(5, 5), test_next_shell=False
    )
    np.testing.assert_allclose(b.theta, a.theta, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(b.covariance, a.covariance, rtol=1e-7)
    assert b.neg2_log_likelihood == pytest.approx(a.neg2_log_likelihood, rel=1e-10)


def test_few_states_recovered_without_bias(hbn):
    # issue 14, must-show 1: 6 × 6 cells, 300 K, 10 states, 20 seeds
    lattice, model, truth = hbn
    q = lattice.supercell(6, 6).q_frac
    exact = lattice.frequencies_THz(q)
    rms, bias, thetas, errs = [], [], [], []
    for seed in range(20):
        stats = block_stats(lattice, 6, 10, 100 + seed)
        fit = fc.fit_force_constants(stats, model, T, boundary="periodic", test_next_shell=False)
        acc = dispersion_accuracy(model.frequencies_THz(fit.theta, q, lattice.masses_amu), exact)
        rms.append(acc.rms)
        bias.append(acc.branch_bias)
        thetas.append(fit.theta)
        errs.append(fit.err_fisher)
    assert np.mean(rms) <= 0.08
    assert np.all(np.abs(np.mean(bias, axis=0)) <= 0.05)
    truths = np.broadcast_to(truth, np.shape(thetas))
    one, two = (coverage(thetas, errs, truths, k) for k in (1, 2))
    assert two >= 0.90  # within 2 stated standard errors
    assert 0.5 <= one <= 0.85  # standard errors neither inflated nor too small (68 % expected)


def test_many_states_are_exact(hbn):
    # issue 14, must-show 2 (force constants; green in test_dispersion_estimators)
    lattice, model, truth = hbn
    stats = block_stats(lattice, 6, 2000, 7)
    fit = fc.fit_force_constants(stats, model, T, boundary="periodic", test_next_shell=False)
    q = lattice.supercell(6, 6).q_frac
    acc = dispersion_accuracy(
        model.frequencies_THz(fit.theta, q, lattice.masses_amu), lattice.frequencies_THz(q)
    )
    assert acc.max_abs <= 0.02
    assert np.all(np.abs(fit.theta - truth) <= 3 * fit.err_fisher)


def test_third_neighbours_are_flagged_and_a_sufficient_model_is_not(hbn):
    # issue 14, must-show 3
    base, model, _ = hbn
    third = dataclasses.replace(
        base, springs=(*base.springs, Spring(2.504 * 2 / math.sqrt(3.0), 4.0, 0.0))
    )
    for seed in range(3):
        flagged = fc.fit_force_constants(
            block_stats(third, 6, 50, seed), model, T, boundary="periodic"
        ).shell_test
        assert flagged.more_shells_needed and flagged.dof == 2, flagged.summary()
        assert "refit with --shells 3" in flagged.summary()
        null = fc.fit_force_constants(block_stats(base, 6, 50, seed), model, T, boundary="periodic")
        assert not null.shell_test.more_shells_needed, null.shell_test.summary()
        assert null.shell_test.p_value > 0.01


def test_window_of_a_larger_crystal_needs_the_open_boundary(hbn):
    lattice, model, truth = hbn
    crystal = lattice.supercell(12, 12)
    u = crystal.sample_snapshots(T, 30, 9).reshape(30, 1, 12, 12, 2, 2)
    stats = fc.displacement_statistics(u[:, :, 3:9, 2:8])  # a 6 × 6 window
    auto = fc.fit_force_constants(stats, model, T, crystal_cells=(12, 12), test_next_shell=False)
    assert auto.boundary == "open" and auto.boundary_comparison > 50
    assert np.all(np.abs(auto.theta - truth) <= 3 * auto.err_fisher)
    periodic = fc.fit_force_constants(stats, model, T, boundary="periodic", test_next_shell=False)
    assert periodic.theta[0] < truth[0] - 3 * periodic.err_fisher[0]  # the wrong model: soft
    # the whole periodic block: auto keeps periodic
    whole = fc.fit_force_constants(block_stats(lattice, 6, 10, 1), model, T, test_next_shell=False)
    assert whole.boundary == "periodic" and whole.boundary_comparison < -20


def test_bootstrap_errors_agree_with_fisher(hbn):
    lattice, model, _ = hbn
    stats = block_stats(lattice, 6, 40, 5)
    for boundary in ("periodic", "open"):
        fit = fc.fit_force_constants(
            stats, model, T, boundary=boundary, bootstrap=60, seed=1, test_next_shell=False
        )
        assert fit.theta_bootstrap.shape == (60, 6)
        ratio = fit.err_bootstrap / fit.err_fisher  # each ±20 % from 60 replicas of 40 states
        assert np.all((ratio > 0.5) & (ratio < 2.0)), ratio
        assert 0.8 < np.mean(ratio) < 1.25, ratio


def test_fit_errors_name_the_problem(hbn):
    lattice, model, _ = hbn
    stats = block_stats(lattice, 6, 5, 0)
    with pytest.raises(InputError, match="boundary"):
        fc.fit_force_constants(stats, model, T, boundary="torus")
    with pytest.raises(InputError, match="temperature"):
        fc.fit_force_constants(stats, model, -3.0)
    with pytest.raises(InputError, match="crystal_cells"):
        fc.fit_force_constants(stats, model, T, boundary="open", crystal_cells=(3, 3))
    with pytest.raises(InputError, match="at least 2 states"):
        fc.displacement_statistics(stats.block_displacements()[:1])
    R = np.zeros((4, 1, 3, 2))
    with pytest.raises(InputError, match="share a cell index"):
        fc.window_statistics(R, [[0, 0], [1, 0], [1, 0]], [0, 1, 1], 2)
    with pytest.raises(InputError, match=r"basis indices must be 0 … 1, got \[0, 2\]"):
        fc.window_statistics(R, [[0, 0], [1, 0], [2, 0]], [0, 2, 0], 2)
    with pytest.raises(InputError, match=r"not the whole cells of an 1 × 2 block"):
        fc.window_statistics(R, [[0, 1], [0, 0], [0, 0]], [0, 0, 1], 2, block=(1, 2))
    with pytest.raises(InputError, match="needs a block of whole cells"):
        fcl.PeriodicLikelihood(
            model, fc.window_statistics(R, [[0, 0], [1, 0], [2, 0]], [0, 1, 0], 2), KT
        )
    with pytest.raises(InputError, match="shells"):
        model_of(lattice, 0)
    # a 2 × 2 block cannot tell apart bonds that wrap onto the same pairs
    with pytest.raises(InputError, match="not determined"):
        fc.fit_force_constants(
            block_stats(lattice, 2, 10, 0), model_of(lattice, 3), T, boundary="periodic"
        )
