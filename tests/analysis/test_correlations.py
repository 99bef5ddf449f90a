"""Correlations (eqs. 1–4): known covariances, hand-made arrows, LSM/CSM, unit-cell averages."""

from __future__ import annotations

import numpy as np
import pytest

from caviar_napari.analysis import correlations as corr
from caviar_napari.analysis.phonons import HarmonicLattice
from caviar_napari.errors import InputError
from caviar_napari.simulate import presets, thermal


def _random_spd(rng: np.random.Generator, n: int, scale: float = 1e-3) -> np.ndarray:
    a = rng.standard_normal((n, n))
    return scale * (a @ a.T / n + 0.2 * np.eye(n))


def _snapshots(rng, cov, n_states, n_slices, sites):
    """Positions (state, slice, atom, 2) = sites + displacements ~ N(0, cov) (dof 2i + a)."""
    u = rng.multivariate_normal(np.zeros(cov.shape[0]), cov, size=(n_states, n_slices))
    return sites + u.reshape(n_states, n_slices, -1, 2)


# --------------------------------------------------------------------------- eq. 1, eq. 2, B


def test_green_tensor_equals_numpy_biased_covariance_per_slice_and_averaged():
    rng = np.random.default_rng(0)
    n_atoms, n_states, n_slices = 5, 12, 3
    sites = rng.uniform(0, 10, (n_atoms, 2))
    pos = _snapshots(rng, _random_spd(rng, 2 * n_atoms), n_states, n_slices, sites)

    expected = [np.cov(pos[:, s].reshape(n_states, -1).T, bias=True) for s in range(n_slices)]
    one = corr.green_tensor(pos, slices=[1])
    np.testing.assert_allclose(one.green_A2, expected[1], rtol=0, atol=1e-15)
    both = corr.green_tensor(pos, slices=[0, 2])
    np.testing.assert_allclose(both.green_A2, (expected[0] + expected[2]) / 2, rtol=0, atol=1e-15)
    assert both.slices.tolist() == [0, 2] and both.n_states == n_states
    assert both.excluded_atoms.size == 0

    # a (state, atom, 2) array is one slice
    single = corr.green_tensor(pos[:, 1])
    np.testing.assert_array_equal(single.green_A2, one.green_A2)

    # B = 8π² (<u_y²> + <u_x²>) per atom, from the same covariance
    var = np.diagonal(expected[1]).reshape(n_atoms, 2)
    np.testing.assert_allclose(one.b_factor_A2, 8 * np.pi**2 * var.sum(axis=1), rtol=1e-14)


def test_green_tensor_converges_to_the_drawing_covariance():
    rng = np.random.default_rng(1)
    cov = _random_spd(rng, 6)
    pos = _snapshots(rng, cov, 20000, 1, np.zeros((3, 2)))
    g = corr.green_tensor(pos).green_A2
    # sampling error of a second moment ~ sqrt(2/N) of the scale
    assert np.max(np.abs(g - cov)) < 5 * np.sqrt(2 / 20000) * np.max(np.diag(cov))


def test_nan_atoms_are_excluded_and_reported():
    rng = np.random.default_rng(2)
    pos = _snapshots(rng, _random_spd(rng, 8), 10, 2, rng.uniform(0, 5, (4, 2)))
    pos[3, 1, 2, 0] = np.nan  # atom 2 fails in state 3 of slice 1 only

    used_0 = corr.green_tensor(pos, slices=[0])  # NaN not in the used slice
    assert used_0.excluded_atoms.size == 0

    g = corr.green_tensor(pos)
    assert g.excluded_atoms.tolist() == [2]
    assert g.valid.tolist() == [True, True, False, True]
    assert np.isnan(g.green_A2[4:6]).all() and np.isnan(g.green_A2[:, 4:6]).all()
    assert np.isnan(g.b_factor_A2[2]) and np.isfinite(g.b_factor_A2[[0, 1, 3]]).all()
    keep = [0, 1, 3]
    ref = corr.green_tensor(pos[:, :, keep]).green_A2
    dof = corr.dof_indices(keep)
    np.testing.assert_allclose(g.green_A2[np.ix_(dof, dof)], ref, atol=1e-16)


def test_motionless_atoms_are_excluded():
    """An atom at the same position in every state (outside every cell of displaced-atom
    states) has no displacement to correlate: excluded, so that ρ and CSM stay defined."""
    rng = np.random.default_rng(4)
    pos = _snapshots(rng, _random_spd(rng, 8), 10, 2, rng.uniform(0, 5, (4, 2)))
    pos[:, 0, 1] = pos[0, 0, 1]  # atom 1 does not move in slice 0
    pos[:, :, 3] = pos[0, :, 3]  # atom 3 in no slice
    assert corr.green_tensor(pos, slices=[1]).excluded_atoms.tolist() == [3]
    g = corr.green_tensor(pos, slices=[0])
    assert g.excluded_atoms.tolist() == [1, 3]
    assert np.isfinite(g.b_factor_A2[[0, 2]]).all() and np.isnan(g.b_factor_A2[[1, 3]]).all()
    # the smallest thermal motion is kept
    pos[1:, 0, 3, 0] += 1e-6 * rng.standard_normal(9)
    assert corr.green_tensor(pos, slices=[0]).excluded_atoms.tolist() == [1]


def test_green_tensor_rejects_bad_input():
    with pytest.raises(InputError, match="state"):
        corr.green_tensor(np.zeros((1, 2, 3, 2)))
    with pytest.raises(InputError, match="shape"):
        corr.green_tensor(np.zeros((4, 3, 3)))
    with pytest.raises(InputError, match="slices"):
        corr.green_tensor(np.zeros((4, 2, 3, 2)), slices=[5])


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (None, [0, 1, 2, 3, 4]),
        ("", [0, 1, 2, 3, 4]),
        ("1:3", [1, 2]),
        ("2", [2]),
        ("-2:", [3, 4]),
        (":2", [0, 1]),
        ("-1", [4]),
    ],
)
def test_parse_slice_spec(spec, expected):
    assert corr.parse_slice_spec(spec, 5).tolist() == expected


@pytest.mark.parametrize("spec", ["a:b", "3:3", "7", "1:2:3x"])
def test_parse_slice_spec_errors_name_the_value(spec):
    with pytest.raises(InputError, match="slices"):
        corr.parse_slice_spec(spec, 5)


# --------------------------------------------------------------------------- arrows


def _three_atom_case():
    positions = np.array([[1.0, 1.0], [1.0, 3.0], [4.0, 2.0]])
    g = np.arange(36, dtype=float).reshape(6, 6) * 1e-4 + 1e-4
    return positions, g


def test_arrow_geometry_on_a_hand_made_three_atom_case():
    positions, g = _three_atom_case()
    scale = 50.0  # Å on screen per Å²
    ref, nbrs = 0, np.array([1, 2])
    arrows = corr.correlation_arrows(
        positions,
        [0, 1, 2],
        corr.pair_blocks(g, [[0, 0], [1, 1], [2, 2]]),
        nbrs,
        corr.pair_blocks(g, [[ref, 1], [ref, 2]]),
        scale,
    )
    assert arrows.data.shape == (10, 2, 2)
    kinds = [corr.ARROW_KINDS[k] for k in arrows.kind]
    assert kinds == ["self_y", "self_x"] * 3 + ["ref_y", "ref_x"] * 2
    assert arrows.atom.tolist() == [0, 0, 1, 1, 2, 2, 1, 1, 2, 2]
    # each vector starts at its atom
    np.testing.assert_array_equal(arrows.data[:, 0], positions[arrows.atom])
    # self arrows at atom j: rows of G_jj; reference arrows: rows of G_0j (by hand)
    expected_rows = [
        g[0, 0:2],
        g[1, 0:2],
        g[2, 2:4],
        g[3, 2:4],
        g[4, 4:6],
        g[5, 4:6],
        g[0, 2:4],
        g[1, 2:4],
        g[0, 4:6],
        g[1, 4:6],
    ]
    np.testing.assert_allclose(arrows.data[:, 1], np.array(expected_rows) * scale, rtol=1e-15)
    np.testing.assert_allclose(arrows.values_A2, expected_rows, rtol=1e-15)


def test_arrows_in_a_rotated_frame_are_rows_of_R_G():
    positions, g = _three_atom_case()
    rot = corr.frame_rotation([1.0, 1.0])
    block = corr.pair_blocks(g, [[0, 2]])
    arrows = corr.correlation_arrows(positions, [], np.empty((0, 2, 2)), [2], block, 1.0, rot)
    np.testing.assert_allclose(arrows.data[:, 1], rot @ block[0], rtol=1e-14)
    assert [corr.ARROW_KINDS[k] for k in arrows.kind] == ["ref_y", "ref_x"]


def test_arrows_skip_nan_blocks():
    positions, g = _three_atom_case()
    g[4:6, :] = np.nan
    arrows = corr.correlation_arrows(
        positions, [0, 2], corr.pair_blocks(g, [[0, 0], [2, 2]]), [], np.empty((0, 2, 2)), 1.0
    )
    assert arrows.atom.tolist() == [0, 0]


# --------------------------------------------------------------------------- LSM / CSM


def test_lsm_csm_hand_computed_cases():
    rng = np.random.default_rng(3)
    gt = _random_spd(rng, 8)
    pairs = np.array([[0, 0], [0, 1], [0, 2], [1, 3]])

    same = corr.similarity(gt, gt, pairs)
    assert same.csm == pytest.approx(1.0, abs=1e-14)
    assert same.lsm_mean == pytest.approx(1.0, abs=1e-14)
    assert same.lsm_sum == pytest.approx(8.0, abs=1e-13)  # eq. 3 as printed: 4 pairs × 2 rows
    assert (same.n_pairs, same.n_vectors) == (4, 8)

    double = corr.similarity(2 * gt, gt, pairs)
    assert double.lsm_mean == pytest.approx(2.0, abs=1e-14)
    assert double.lsm_sum == pytest.approx(16.0, abs=1e-13)
    assert double.csm == pytest.approx(1.0, abs=1e-14)

    flipped = corr.similarity(-gt, gt, pairs)
    assert flipped.csm == pytest.approx(-1.0, abs=1e-14)
    assert flipped.lsm_mean == pytest.approx(1.0, abs=1e-14)


def test_lsm_csm_on_a_single_hand_worked_block():
    gt = np.zeros((4, 4))
    rec = np.zeros((4, 4))
    gt[0:2, 2:4] = [[1.0, 0.0], [0.0, 1.0]]
    rec[0:2, 2:4] = [[0.0, 2.0], [1.0, 0.0]]
    s = corr.similarity(rec, gt, [[0, 1]])
    # |(0, 2)| / |(1, 0)| + |(1, 0)| / |(0, 1)| = 2 + 1
    assert s.lsm_sum == pytest.approx(3.0) and s.lsm_mean == pytest.approx(1.5)
    assert s.csm == pytest.approx(0.0)  # (1·0 + 0·2 + 0·1 + 1·0) / (√2 √5)
    rec[0:2, 2:4] = [[1.0, 1.0], [0.0, 1.0]]
    s = corr.similarity(rec, gt, [[0, 1]])
    assert s.csm == pytest.approx(2.0 / np.sqrt(2.0 * 3.0))
    assert s.lsm_mean == pytest.approx((np.sqrt(2.0) + 1.0) / 2)


def test_similarity_skips_zero_truth_vectors_and_reports_them():
    gt = np.zeros((4, 4))
    gt[0, 2:4] = [1.0, 0.0]  # row y of G_01; row x is zero
    rec = gt.copy()
    s = corr.similarity(rec, gt, [[0, 1]])
    assert (s.n_vectors, s.skipped_vectors) == (1, 1)
    with pytest.raises(InputError):
        corr.similarity(rec, np.zeros((4, 4)), [[0, 1]])


# --------------------------------------------------------------------------- unit-cell averages


def _kronecker_lattice(L1=4, L2=5, xi=3.0):
    """Honeycomb-like lattice with G[(l,κ,a),(l',κ',b)] = T(r_l − r_l') · B[(κ,a),(κ',b)]."""
    a = np.array([[0.0, 2.5], [2.5 * np.sqrt(3) / 2, -1.25]])
    basis = np.array([[0.0, 0.0], (2 * a[0] + a[1]) / 3])
    l1, l2 = np.meshgrid(np.arange(L1), np.arange(L2), indexing="ij")
    cells = np.repeat(np.stack([l1.ravel(), l2.ravel()], 1), 2, axis=0)
    kappa = np.tile([0, 1], L1 * L2)
    positions = cells @ a + basis[kappa]
    origin = cells @ a
    d2 = ((origin[:, None] - origin[None]) ** 2).sum(-1)
    t = np.exp(-d2 / xi**2)  # (atoms, atoms), translation invariant, positive definite
    rng = np.random.default_rng(4)
    b = _random_spd(rng, 4, 1e-2)  # (2κ, 2κ)
    bk = b.reshape(2, 2, 2, 2)  # (κ, a, κ', b)
    # bk[κ_i, :, κ_j, :] -> (i, j, a, b) -> (i, a, j, b)
    g = t[:, None, :, None] * bk[kappa[:, None], :, kappa[None, :], :].transpose(0, 2, 1, 3)
    g = g.reshape(2 * len(kappa), 2 * len(kappa))
    return a, cells, kappa, positions, g, bk, origin


def test_unit_cell_averages_return_a_known_periodic_covariance():
    a, cells, kappa, positions, g, bk, origin = _kronecker_lattice()
    assert np.linalg.eigvalsh(g).min() > -1e-12  # a genuine covariance
    rot = corr.local_frame(positions, 0)  # x towards atom 0's nearest neighbour
    avg = corr.unit_cell_averages(g, cells, kappa, positions, rot)

    for c, (d1, d2, k, kp) in enumerate(avg.keys):
        r = d1 * a[0] + d2 * a[1]
        expected_lab = np.exp(-(r @ r) / 3.0**2) * bk[k, :, kp, :]
        np.testing.assert_allclose(avg.lab_blocks_A2[c], expected_lab, atol=1e-15)
        np.testing.assert_allclose(avg.blocks_A2[c], rot @ expected_lab @ rot.T, atol=1e-15)
        assert avg.counts[c] == (4 - abs(d1)) * (5 - abs(d2))
    assert avg.counts.sum() == len(kappa) ** 2
    # the frame: local x points to the nearest neighbour, R is a proper rotation
    bond = positions[corr.neighbours(positions, 0, n_nearest=1)[0]] - positions[0]
    np.testing.assert_allclose(rot @ bond, [0.0, np.linalg.norm(bond)], atol=1e-14)
    np.testing.assert_allclose(rot @ rot.T, np.eye(2), atol=1e-15)
    assert np.linalg.det(rot) == pytest.approx(1.0)
    # the self class (0, 0, κ, κ) and its separation
    c00 = np.flatnonzero((avg.keys == [0, 0, 1, 1]).all(axis=1))[0]
    np.testing.assert_allclose(avg.separation_A[c00], 0.0, atol=1e-15)
    # class lookup of atom pairs
    pairs = np.array([[0, 1], [2, 9], [5, 5]])
    found = avg.class_of(cells, kappa, pairs)
    for (i, j), c in zip(pairs, found):
        np.testing.assert_allclose(avg.lab_blocks_A2[c], g[2 * i : 2 * i + 2, 2 * j : 2 * j + 2])


def test_unit_cell_averages_with_a_distance_cut_and_noise_average_out():
    a, cells, kappa, positions, g, bk, origin = _kronecker_lattice(6, 6)
    rng = np.random.default_rng(5)
    noise = rng.normal(0, 1e-4, g.shape)
    avg = corr.unit_cell_averages(g + noise, cells, kappa, positions, max_distance_A=2.6)
    nn = np.flatnonzero((avg.keys == [0, 0, 0, 1]).all(axis=1))[0]
    assert avg.counts[nn] == 36
    np.testing.assert_allclose(avg.lab_blocks_A2[nn], bk[0, :, 1, :], atol=4 * 1e-4 / 6)
    assert np.max(np.linalg.norm(avg.separation_A, axis=1)) <= 2.6


# --------------------------------------------------------------------------- pair sets, ρ_nn


def _square(n=4, d=2.0):
    y, x = np.meshgrid(np.arange(n) * d, np.arange(n) * d, indexing="ij")
    return np.stack([y.ravel(), x.ravel()], axis=1)


def test_pair_sets_on_a_square_lattice():
    pos = _square()
    assert corr.nearest_neighbour_distance(pos) == pytest.approx(2.0)
    assert len(corr.nearest_neighbour_pairs(pos)) == 2 * 4 * 3  # 24 bonds of a 4×4 grid
    nb = corr.neighbours(pos, 5, n_nearest=4)
    assert sorted(nb.tolist()) == [1, 4, 6, 9]
    nb = corr.neighbours(pos, 5, radius_A=2.9)  # 4 NN + 4 diagonal
    assert len(nb) == 8 and set(nb[:4].tolist()) == {1, 4, 6, 9}
    pairs = corr.reference_pairs(5, [1, 4])
    assert pairs.tolist() == [[5, 5], [1, 1], [4, 4], [5, 1], [5, 4]]
    within = corr.pairs_within_radius(pos, 2.1)
    assert len(within) == 16 + 24 and (within[:, 0] <= within[:, 1]).all()
    pos_nan = pos.copy()
    pos_nan[6] = np.nan
    assert 6 not in corr.neighbours(pos_nan, 5, n_nearest=4)
    with pytest.raises(InputError):
        corr.neighbours(pos, 5)


def test_rho_nn_on_a_known_case():
    pos = _square()
    n = len(pos)
    rho0, a, b = 0.3, 2e-3, 1e-3
    g = np.zeros((2 * n, 2 * n))
    g[0::2, 0::2][np.diag_indices(n)] = a
    g[1::2, 1::2][np.diag_indices(n)] = b
    for i, j in corr.nearest_neighbour_pairs(pos):
        block = rho0 * (a + b) / 2 * np.eye(2)
        g[2 * i : 2 * i + 2, 2 * j : 2 * j + 2] = block
        g[2 * j : 2 * j + 2, 2 * i : 2 * i + 2] = block
    r = corr.nearest_neighbour_correlation(g, pos)
    assert r.mean == pytest.approx(rho0, abs=1e-14) and r.std < 1e-14
    assert len(r.values) == 24 and r.distance_A == pytest.approx(2.0)


def test_rho_nn_strong_for_correlated_and_near_zero_for_einstein_snapshots():
    cell = HarmonicLattice.honeycomb().supercell(6, 6)
    pos = cell.positions_A
    u = cell.sample_snapshots(300.0, 20, rng=7)
    rho_corr = corr.nearest_neighbour_correlation(corr.green_tensor(pos + u).green_A2, pos)
    rng = np.random.default_rng(8)
    sigma = np.sqrt(np.diag(cell.green_tensor(300.0))).reshape(-1, 2)
    einstein = rng.standard_normal(u.shape) * sigma
    rho_ein = corr.nearest_neighbour_correlation(corr.green_tensor(pos + einstein).green_A2, pos)
    assert rho_corr.mean > 0.3
    assert abs(rho_ein.mean) < 0.08  # ~ 1/sqrt(20 states · 91 pairs) noise


@pytest.mark.parametrize(
    ("preset", "low", "high"), [("hbn-correlated", 0.25, 1.0), ("hbn-einstein", -0.1, 0.1)]
)
def test_preset_ground_truth_configurations(preset, low, high):
    """The presets' own thermal configurations: eq. 2 equals their realised tensor, and ρ_nn
    is strong for correlated vibrations and near zero for Einstein ones."""
    config = presets.preset_config(preset)
    structure = presets.build_structure(config)
    rng = np.random.default_rng(11)
    if config.thermal_model == "einstein":
        rms = thermal.matched_einstein_rms_A(structure.supercell, config.temperature_K)
        ensemble = thermal.einstein_ensemble(structure.species, rms, config.n_configs, rng)
    else:
        ensemble = thermal.correlated_ensemble(
            structure.supercell, config.temperature_K, config.n_configs, rng, structure.atom_map
        )
    sites = structure.positions_A[:, :2]
    g = corr.green_tensor(sites + ensemble.displacements_A[:, :, :2])
    np.testing.assert_allclose(g.green_A2, ensemble.green_realised_A2, rtol=0, atol=1e-15)
    rho = corr.nearest_neighbour_correlation(g.green_A2, sites)
    assert low < rho.mean < high
    # LSM / CSM of the realised tensor against the model over the NN pairs
    s = corr.similarity(g.green_A2, ensemble.green_model_A2, corr.pairs_within_radius(sites, 1.6))
    assert 0.5 < s.lsm_mean < 2.0


# --------------------------------------------------------------------------- matching


def test_match_atoms_with_shift_permutation_and_unmatched_atoms():
    truth = _square()
    rng = np.random.default_rng(9)
    perm = rng.permutation(len(truth))[:12]
    rec = truth[perm] + [0.3, -0.2] + rng.normal(0, 0.02, (12, 2))
    rec = np.concatenate([rec, [[50.0, 50.0], [np.nan, np.nan]]])
    m = corr.match_atoms(rec, truth, tolerance_A=0.2)
    assert m.truth_index[:12].tolist() == perm.tolist()
    assert m.unmatched_reconstructed.tolist() == [12, 13]
    assert sorted(m.unmatched_truth.tolist()) == sorted(set(range(16)) - set(perm.tolist()))
    np.testing.assert_allclose(m.shift_A, [0.3, -0.2], atol=0.03)
    unaligned = corr.match_atoms(rec, truth, tolerance_A=0.2, align=False)
    assert (unaligned.truth_index[:12] < 0).all()


def test_match_atoms_is_one_to_one():
    truth = np.array([[0.0, 0.0], [0.0, 5.0]])
    rec = np.array([[0.1, 0.0], [0.05, 0.0], [0.0, 5.0]])
    m = corr.match_atoms(rec, truth, 0.5, align=False)
    assert m.truth_index.tolist() == [-1, 0, 1]


def test_compare_to_truth_reindexes_the_truth_tensor():
    rng = np.random.default_rng(10)
    truth_pos = _square(3)
    g_truth = _random_spd(rng, 18)
    perm = rng.permutation(9)
    rec_pos = truth_pos[perm]
    g_rec = 2 * corr.reindex_green(g_truth, perm)
    pairs = corr.reference_pairs(4, corr.neighbours(rec_pos, 4, n_nearest=4))
    cmp = corr.compare_to_truth(g_rec, rec_pos, g_truth, truth_pos, pairs)
    assert cmp.similarity.lsm_mean == pytest.approx(2.0)
    assert cmp.similarity.csm == pytest.approx(1.0)
    assert cmp.match.truth_index.tolist() == perm.tolist()
    np.testing.assert_allclose(cmp.rho_nn_reconstructed.values, cmp.rho_nn_truth.values)
    idx = corr.reindex_green(g_truth, [2, -1])
    assert np.isnan(idx[2:]).all() and np.array_equal(idx[:2, :2], g_truth[4:6, 4:6])
