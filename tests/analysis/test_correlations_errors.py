"""Standard errors by resampling the object states: exact identities and calibration (issue 13)."""

from __future__ import annotations

import numpy as np
import pytest

from caviar_napari.analysis import correlations as corr
from caviar_napari.analysis.correlation_errors import (
    Resampling,
    effective_dof,
    replicate,
    weighted_green,
)
from caviar_napari.errors import InputError


def _u(n_states=10, n_slices=1, n_dof=6, seed=0):
    rng = np.random.default_rng(seed)
    u = rng.standard_normal((n_states, n_slices, n_dof)) * np.linspace(0.5, 1.5, n_dof)
    return u - u.mean(axis=0)


def test_replica_weights():
    jack = Resampling().weights(5)
    assert jack.shape == (5, 5) and np.allclose(jack.sum(1), 1) and np.all(np.diag(jack) == 0)
    boot = Resampling("bootstrap", 50, seed=3).weights(7)
    assert boot.shape == (50, 7) and np.allclose(boot.sum(1), 1)
    assert np.all(np.isclose(boot * 7, np.round(boot * 7)))  # multiplicities / N
    np.testing.assert_array_equal(boot, Resampling("bootstrap", 50, seed=3).weights(7))
    assert not np.array_equal(boot, Resampling("bootstrap", 50, seed=4).weights(7))
    with pytest.raises(InputError, match="at least 3 object states"):
        Resampling().weights(2)
    with pytest.raises(InputError, match="error method"):
        Resampling("wishart")
    with pytest.raises(InputError, match="at least 2 replicas"):
        Resampling("bootstrap", 1)


def test_weighted_green_is_eq2_and_a_delete_one_replica():
    positions = _u(n_slices=3) + 5.0
    u = corr.state_displacements(positions.reshape(10, 3, 3, 2)).u_A
    n = u.shape[0]
    full = weighted_green(u, np.full(n, 1.0 / n))
    np.testing.assert_allclose(full, corr.green_tensor(positions.reshape(10, 3, 3, 2)).green_A2)
    # deleting state k re-centres on the other states' mean:
    # G_(k) = N/(N−1) G − N/(N−1)² mean_s u_ks u_ksᵀ
    w = np.full(n, 1.0 / (n - 1))
    w[4] = 0.0
    p4 = np.einsum("sd,se->de", u[4], u[4]) / u.shape[1]
    np.testing.assert_allclose(
        weighted_green(u, w), n / (n - 1) * full - n / (n - 1) ** 2 * p4, atol=1e-14
    )


def test_jackknife_error_of_the_tensor_is_the_closed_form():
    u = _u(n_states=9, n_slices=2)
    n = u.shape[0]
    rep = replicate(u, Resampling(), lambda g, w: {"green": g})
    p = np.einsum("nsd,nse->nde", u, u) / u.shape[1]  # per-state second moments
    closed = np.sqrt(n / (n - 1) ** 3 * ((p - p.mean(0)) ** 2).sum(0))
    np.testing.assert_allclose(rep.stderr["green"], closed, rtol=1e-10)
    assert rep.n_replicas == 9


def _calibration(resampling, n_sets=300, n_states=10, n_slices=1, seed=7):
    """Mean estimated variance / empirical variance of the four cross-covariance entries of a
    2 + 2 dof block, pooled over the entries (each entry's ratio alone has a Monte Carlo spread
    of ≈ 16 % with 300 datasets: products of normals have heavy tails)."""
    rng = np.random.default_rng(seed)
    sd = np.array([1.0, 0.5, 0.8, 1.3])
    values, variances = [], []
    for _ in range(n_sets):
        shared = rng.standard_normal((n_states, 1, 4)) * sd
        noise = 0.7 * rng.standard_normal((n_states, n_slices, 4)) * sd if n_slices > 1 else 0.0
        u = shared + noise
        u = u - u.mean(axis=0)
        rep = replicate(u, resampling, lambda g, w: {"cross": g[:2, 2:].ravel()})
        values.append(rep.values["cross"])
        variances.append(rep.stderr["cross"] ** 2)
    return float(np.mean(np.mean(variances, axis=0) / np.var(values, axis=0)))


def test_jackknife_and_bootstrap_calibration_with_ten_states():
    # Gaussian displacements, 10 states: the jackknife's variance is about 1.1 times the
    # sampling variance, the bootstrap's about 0.75 (module docstring); the margins allow for
    # the Monte Carlo spread of the pooled ratios (≈ 5 % with 1000 datasets, 8 % with 300)
    jack = _calibration(Resampling(), n_sets=1000)
    boot = _calibration(Resampling("bootstrap", 50, seed=1), n_sets=300)
    assert 0.95 < jack < 1.3, jack
    assert 0.55 < boot < 0.92, boot


def test_states_resampled_with_their_slices_stay_calibrated():
    # three slices share each state's motion and add their own noise: resampling states as
    # clusters keeps the error right whatever the correlation between slices
    ratio = _calibration(Resampling(), n_sets=1000, n_slices=3)
    assert 0.95 < ratio < 1.3, ratio


def test_effective_dof_between_identical_and_independent_slices():
    u = _u(n_states=10, n_slices=1, n_dof=40)
    assert effective_dof(u) == 9
    assert effective_dof(np.repeat(u, 4, axis=1)) == pytest.approx(9.0)
    independent = _u(n_states=10, n_slices=4, n_dof=400, seed=2)
    assert 30 < effective_dof(independent) <= 36


def test_non_finite_replicas_are_left_out_of_that_value():
    u = _u(n_states=6)

    def stat(g, w):  # undefined when state 0 is left out
        return {"x": np.array(np.nan if w[0] == 0 else g[0, 0]), "y": g[1, 1]}

    rep = replicate(u, Resampling(), stat)
    assert np.isfinite(rep.stderr["x"]) and np.isfinite(rep.stderr["y"])
    rep = replicate(u, Resampling(), lambda g, w: {"z": np.array(np.nan)})
    assert np.isnan(rep.stderr["z"])
