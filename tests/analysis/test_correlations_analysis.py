"""The whole correlation analysis: uniform offset, LSM/CSM errors against a truth, noise floor,
arrows with significance (issues 12 and 13)."""

from __future__ import annotations

import numpy as np
import pytest

from caviar_napari.analysis import correlations as corr
from caviar_napari.analysis.correlation_analysis import (
    CorrelationConfig,
    TruthInput,
    analyse_correlations,
)
from caviar_napari.analysis.correlation_errors import Resampling
from caviar_napari.analysis.correlation_significance import arrow_significance
from caviar_napari.analysis.noise_floor import (
    assess_noise_floor,
    noise_floor_lines,
    noise_floor_warnings,
    slice_noise_A,
)
from caviar_napari.analysis.phonons import HarmonicLattice
from caviar_napari.analysis.truth import offset_A2
from caviar_napari.analysis.uniform_offset import offset_pairs, subtract_offset
from caviar_napari.data.ground_truth import GroundTruth
from caviar_napari.errors import InputError
from caviar_napari.io.atoms_file import AtomsData


@pytest.fixture(scope="module")
def supercell():
    return HarmonicLattice.honeycomb().supercell(6, 6)


def _atoms(sc, u, shift=None):
    """ATOMS data of snapshots ``u`` ``(N, atoms, 2)`` (+ a rigid shift per state)."""
    positions = sc.positions_A[None] + u + (0.0 if shift is None else shift[:, None, :])
    return AtomsData(
        positions_A=positions[:, None] + [3.0, 4.0],
        mean_positions_A=sc.positions_A + [3.0, 4.0],
        cell_index=sc.cell_index,
        basis_index=sc.basis_index,
        species=sc.species,
    )


def test_offset_of_a_rigid_shift_per_state_is_recovered_and_subtracted(supercell):
    sc = supercell
    u = sc.sample_snapshots(300.0, 10, 3)
    shift = np.random.default_rng(4).normal(0.0, [0.08, 0.05], (10, 2))  # PSC-like, ≫ thermal
    plain = analyse_correlations(_atoms(sc, u)).data
    shifted = analyse_correlations(_atoms(sc, u, shift)).data
    realised = np.var(shift, axis=0)  # the states' own shift variance (what they absorbed)
    # the thermal contribution to the estimate is the mean correlation of distinct atoms,
    # −⟨G_ii⟩/(N_atoms − 1) with the centre of mass fixed: tiny against the shift's variance
    np.testing.assert_allclose(shifted.offset.offset_A2, realised, rtol=0.05)
    assert abs(plain.offset.offset_A2).max() < 0.02 * np.nanmean(np.diag(plain.green_A2))
    assert shifted.offset.n_pairs == 72 * 71 // 2 and not shifted.offset.subtracted
    # its error is the sampling error of a 10-state variance: ≈ sqrt(2/9) of it
    rel = shifted.offset.stderr_A2 / shifted.offset.offset_A2
    assert np.all((rel > 0.2) & (rel < 0.8)), rel
    corrected = analyse_correlations(
        _atoms(sc, u, shift), CorrelationConfig(subtract_offset=True)
    ).data
    assert corrected.offset.subtracted
    # what is left are the finite-sample cross terms ⟨u_i s⟩ + ⟨s u_j⟩ of each atom's thermal
    # displacement with the shift, ~ sqrt(c ⟨u²⟩ / N) per entry: random between atoms, zero on
    # average over the pairs
    diff = corrected.green_A2 - plain.green_A2
    typical = np.sqrt(realised.mean() * np.nanmean(np.diag(plain.green_A2)) / 10)
    assert np.sqrt(np.nanmean(diff**2)) < 2 * typical
    pairs = offset_pairs(diff, sc.positions_A)
    assert np.all(np.abs(pairs.offset(diff)) < 0.05 * typical)
    np.testing.assert_allclose(
        corrected.b_factor_A2,
        shifted.b_factor_A2 - 8 * np.pi**2 * shifted.offset.offset_A2.sum(),
        rtol=1e-10,
    )


def test_offset_pairs_and_the_distance_cut():
    rng = np.random.default_rng(0)
    positions = rng.uniform(0, 10, (12, 2))
    g = rng.standard_normal((24, 24))
    g = g @ g.T
    g[4:6] = np.nan
    g[:, 4:6] = np.nan  # atom 2 excluded
    allp = offset_pairs(g, positions)
    valid = [i for i in range(12) if i != 2]
    yy = [g[2 * i, 2 * j] for i in valid for j in valid if i < j]
    xx = [g[2 * i + 1, 2 * j + 1] for i in valid for j in valid if i < j]
    np.testing.assert_allclose(allp.offset(g), [np.mean(yy), np.mean(xx)])
    assert allp.n_pairs == 55 and offset_A2(g) == pytest.approx(np.mean(allp.offset(g)))
    far = offset_pairs(g, positions, 4.0)
    d = {(i, j): np.linalg.norm(positions[i] - positions[j]) for i in valid for j in valid}
    keep = [(i, j) for (i, j), r in d.items() if i < j and r >= 4.0]
    assert far.n_pairs == len(keep)
    np.testing.assert_allclose(far.offset(g)[0], np.mean([g[2 * i, 2 * j] for i, j in keep]))
    sub = subtract_offset(g, [1.0, 2.0])
    assert sub[0, 2] == g[0, 2] - 1.0 and sub[1, 3] == g[1, 3] - 2.0 and sub[0, 1] == g[0, 1]
    assert np.isnan(sub[4, 0])
    with pytest.raises(InputError, match="no pair"):
        offset_pairs(g, positions, 100.0)
    with pytest.raises(InputError, match="≥ 0"):
        offset_pairs(g, positions, -1.0)


def _truth(sc, u):
    configs = sc.positions_A[None] + u + [3.0, 4.0]
    d = u.reshape(u.shape[0], -1) - u.reshape(u.shape[0], -1).mean(0)
    return GroundTruth(
        positions_A=configs,
        mean_positions_A=sc.positions_A + [3.0, 4.0],
        green_realised_A2=d.T @ d / u.shape[0],
        green_model_A2=None,
        cell_index=sc.cell_index,
        basis_index=sc.basis_index,
        species=sc.species,
        lattice_vectors_A=None,
    )


def test_lsm_csm_errors_paired_with_the_configurations(supercell):
    sc = supercell
    u = sc.sample_snapshots(300.0, 10, 8)
    truth = TruthInput(_truth(sc, u), label="sim.h5")
    # states in another order: assigned back to their configurations, paired: exact, no error
    perfect = analyse_correlations(_atoms(sc, u[::-1]), truth=truth).data.truth_metrics
    assert perfect.pairing == "paired"
    assert perfect.csm.value == pytest.approx(1.0) and perfect.csm.stderr < 1e-9
    assert perfect.lsm_mean.value == pytest.approx(1.0) and perfect.lsm_mean.stderr < 1e-9
    # noisy positions: CSM below 1 by more than its error, LSM above 1 (noise adds variance)
    noisy = u + np.random.default_rng(2).normal(0, 0.02, u.shape)
    m = analyse_correlations(_atoms(sc, noisy), truth=truth).data.truth_metrics
    assert 0 < m.csm.stderr < 0.1 and m.csm.value < 1 - 2 * m.csm.stderr
    # LSM divides by the truth's vectors, some of which are nearly zero in a replica: its
    # error is large (the metric is unstable), but finite
    assert m.lsm_mean.value > 1 and 0 < m.lsm_mean.stderr < np.inf
    assert m.lsm_sum.value == pytest.approx(m.lsm_mean.value * m.n_vectors)
    # fewer states than configurations: the truth is held fixed
    fixed = analyse_correlations(_atoms(sc, u[:8]), truth=truth).data.truth_metrics
    assert fixed.pairing == "truth fixed" and fixed.csm.stderr > 0
    with pytest.raises(InputError, match="reference atom 999"):
        analyse_correlations(_atoms(sc, u), truth=TruthInput(_truth(sc, u), reference_atom=999))


def test_reference_pair_set_and_bootstrap_are_reproducible(supercell):
    sc = supercell
    u = sc.sample_snapshots(300.0, 10, 9)
    truth = TruthInput(_truth(sc, u), reference_atom=20, neighbours=3)
    cfg = CorrelationConfig(resampling=Resampling("bootstrap", 40, seed=5))
    a = analyse_correlations(_atoms(sc, u), cfg, truth)
    b = analyse_correlations(_atoms(sc, u), cfg, truth)
    assert a.data.truth_metrics.n_pairs == 3 + 4  # 3 cross pairs and 4 self blocks
    np.testing.assert_array_equal(a.data.green_stderr_A2, b.data.green_stderr_A2)
    assert a.data.rho_nn == b.data.rho_nn and a.data.uncertainty.seed == 5
    assert a.data.uncertainty.replicas == 40 and a.data.uncertainty.method == "bootstrap"
    none = analyse_correlations(_atoms(sc, u), CorrelationConfig(resampling=None)).data
    assert none.green_stderr_A2 is None and none.uncertainty is None
    assert none.rho_nn.value == pytest.approx(a.data.rho_nn.value)


def test_noise_floor_between_slices():
    rng = np.random.default_rng(3)
    motion = rng.normal(0, 0.03, (12, 1, 200))
    noise = rng.normal(0, 0.01, (12, 4, 200))
    u = motion + noise
    u -= u.mean(axis=0)
    assert slice_noise_A(u) == pytest.approx(0.01, rel=0.05)
    assert slice_noise_A(u[:, :1]) is None
    rms = float(np.sqrt(np.mean(u**2)))
    ok = assess_noise_floor(rms, slice_noise=slice_noise_A(u))
    assert ok.noise_fraction == pytest.approx(0.01**2 / (0.03**2 + 0.01**2), rel=0.1)
    assert noise_floor_warnings(ok) == [] and "between the slices" in noise_floor_lines(ok)[0]
    # states that did not separate: the slices differ by as much as the states
    stuck = rng.normal(0, 0.001, (12, 4, 200))
    stuck -= stuck.mean(axis=0)
    bad = assess_noise_floor(float(np.sqrt(np.mean(stuck**2))), slice_noise=slice_noise_A(stuck))
    assert bad.noise_fraction > 0.9 and "at the noise floor" in noise_floor_warnings(bad)[0]
    given = assess_noise_floor(0.0008, given_A=0.001, given_source="static control")
    assert given.method == "given (static control)" and noise_floor_warnings(given)
    unknown = assess_noise_floor(0.03)
    assert np.isnan(unknown.floor_A) and noise_floor_warnings(unknown) == []
    assert "--noise-floor-A" in noise_floor_lines(unknown)[0]


def test_arrows_carry_their_significance(supercell):
    sc = supercell
    u = sc.sample_snapshots(300.0, 10, 1)
    g = corr.green_tensor(u).green_A2
    ref = 14
    nbrs = corr.neighbours(sc.positions_A, ref, n_nearest=3)
    pairs = np.column_stack([np.full(3, ref), nbrs])
    r = corr.local_frame(sc.positions_A, ref)
    sigma = arrow_significance(g, pairs, 9, r)
    arrows = corr.correlation_arrows(
        sc.positions_A,
        [ref],
        corr.pair_blocks(g, [[ref, ref]]),
        nbrs,
        corr.pair_blocks(g, pairs),
        1.0,
        r,
        reference_sigma=sigma,
    )
    assert arrows.sigma.shape == (8,) and np.all(arrows.sigma[:2] == np.inf)
    np.testing.assert_array_equal(arrows.sigma[2:], sigma.ravel())
    with pytest.raises(InputError, match="two rows each"):
        corr.correlation_arrows(
            sc.positions_A, [], np.empty((0, 2, 2)), nbrs, corr.pair_blocks(g, pairs), 1.0,
            reference_sigma=sigma[:2],
        )  # fmt: skip
