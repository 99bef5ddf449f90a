"""Dispersion from correlations (conventions §5) against the exact harmonic lattice model."""

from __future__ import annotations

import math

import numpy as np
import pytest

from caviar_napari.analysis.dispersion import (
    BrillouinPath,
    DispersionConfig,
    compute_dispersion,
    crop_to_cells,
    default_path,
    dynamical_matrix_from_covariance,
    format_branch_table,
    fourier_displacements,
    frequencies_from_covariance,
    harmonic_mean_mass,
    parse_masses,
    parse_path,
    path_points,
)
from caviar_napari.analysis.phonons import (
    KB_EV_PER_K,
    THZ_PER_SQRT_EIGENVALUE,
    HarmonicLattice,
    commensurate_q_frac,
)
from caviar_napari.errors import InputError

T = 300.0


def exact_covariance(lat: HarmonicLattice, q_frac: np.ndarray) -> np.ndarray:
    """⟨ũũ^H⟩(q) = k_B T Φ̃(q)^{-1}; at Γ: k_B T M^{-1/2} D(0)^+ M^{-1/2} (centre of mass fixed)."""
    kT = KB_EV_PER_K * T
    C = np.empty((q_frac.shape[0], lat.n_branches, lat.n_branches), complex)
    C[1:] = kT * np.linalg.inv(lat.force_constants_q(q_frac[1:]))
    inv_sqrt_m = np.repeat(1 / np.sqrt(lat.masses_amu), 2)
    D0 = lat.dynamical_matrix(q_frac[0])
    C[0] = kT * inv_sqrt_m[:, None] * np.linalg.pinv(D0, rcond=1e-10) * inv_sqrt_m[None, :]
    return C


def snapshots(lat, L, n, seed):
    sc = lat.supercell(L, L)
    u = sc.sample_snapshots(T, n, np.random.default_rng(seed))
    return sc, sc.positions_A[None] + u


# ------------------------------------------------------------------ exact formulas


def test_exact_covariance_gives_exact_frequencies_per_atom_masses():
    lat = HarmonicLattice.honeycomb()
    q = commensurate_q_frac(6, 6)
    nu = frequencies_from_covariance(exact_covariance(lat, q), lat.masses_amu, T)
    np.testing.assert_allclose(nu, lat.frequencies_THz(q), rtol=1e-9, atol=1e-9)
    assert np.all(nu[0, :2] == 0.0)  # acoustic at Γ exactly zero
    # and the dynamical matrix itself: D = k_B T M^-½ C^-1 M^-½
    D = dynamical_matrix_from_covariance(exact_covariance(lat, q), lat.masses_amu, T)
    np.testing.assert_allclose(D[1:], lat.dynamical_matrix(q[1:]), atol=1e-9)
    np.testing.assert_allclose(D[0], lat.dynamical_matrix(q[0]), atol=1e-9)


def test_single_mass_only_right_for_equal_masses():
    q = commensurate_q_frac(6, 6)
    # unequal masses: the single harmonic-mean mass distorts the dispersion
    lat = HarmonicLattice.honeycomb(masses_amu=(10.0, 30.0))
    C = exact_covariance(lat, q)
    exact = lat.frequencies_THz(q)
    single = frequencies_from_covariance(C, lat.masses_amu, T, single_mass=True)
    rel = np.abs(single[1:] - exact[1:]) / exact[1:]
    assert rel.max() > 0.25
    # equal masses: identical to the exact frequencies
    lat_eq = HarmonicLattice.honeycomb(masses_amu=(12.0, 12.0))
    C_eq = exact_covariance(lat_eq, q)
    single_eq = frequencies_from_covariance(C_eq, lat_eq.masses_amu, T, single_mass=True)
    np.testing.assert_allclose(single_eq, lat_eq.frequencies_THz(q), rtol=1e-9, atol=1e-9)
    assert harmonic_mean_mass([10.0, 30.0]) == pytest.approx(15.0)


# ------------------------------------------------------------------ sampled harmonic model


def test_thermal_snapshots_reproduce_exact_honeycomb_dispersion():
    lat = HarmonicLattice.honeycomb()  # B, N: unequal masses
    sc, pos = snapshots(lat, 6, 10000, seed=7)
    cfg = DispersionConfig(T, bootstrap=0)
    d = compute_dispersion(
        pos, sc.cell_index, sc.basis_index, lat.lattice_vectors_A, cfg, species=sc.species
    )
    assert d.cells == (6, 6) and d.masses_amu == {"B": 10.81, "N": 14.007}
    exact = lat.frequencies_THz(d.q_frac)
    rel = np.abs(d.frequencies_THz[1:] - exact[1:]) / exact[1:]
    assert rel.max() < 0.03, rel.max()
    assert np.median(rel) < 0.01
    np.testing.assert_array_equal(d.frequencies_THz[0, :2], 0.0)  # acoustic at Γ
    assert abs(d.frequencies_THz[0, 2:] / exact[0, 2:] - 1).max() < 0.03
    # Γ–M–K–Γ path of a 6 × 6 block: Γ, Γ→M (1/6, 2/6, 1/2), M→K, K, K→Γ
    assert d.path_labels == ("Γ", "M", "K", "Γ")
    np.testing.assert_allclose(
        d.path_q_frac[[0, 3, 5, -1]], [[0, 0], [0.5, 0], [1 / 3, 1 / 3], [0, 0]], atol=1e-12
    )
    exact_avg = exact[np.unique(d.path_q_index)].mean(axis=0)
    np.testing.assert_allclose(d.branch_average_THz, exact_avg, rtol=0.02)
    # the single harmonic-mean mass is measurably off for B/N
    d1 = compute_dispersion(
        pos,
        sc.cell_index,
        sc.basis_index,
        lat.lattice_vectors_A,
        DispersionConfig(T, bootstrap=0, single_mass=True),
        species=sc.species,
    )
    rel1 = np.abs(d1.frequencies_THz[1:] - exact[1:]) / exact[1:]
    assert rel1.max() > 0.05


def test_rigid_shifts_of_states_change_nothing():
    # reconstructions may shift whole states; Γ projects out the mass-weighted translations
    lat = HarmonicLattice.honeycomb()
    sc, pos = snapshots(lat, 4, 200, seed=3)
    cfg = DispersionConfig(T, bootstrap=0)
    args = (sc.cell_index, sc.basis_index, lat.lattice_vectors_A, cfg)
    d0 = compute_dispersion(pos, *args, species=sc.species)
    shifted = pos + np.random.default_rng(0).normal(0, 0.2, (200, 1, 2))
    d1 = compute_dispersion(shifted, *args, species=sc.species)
    np.testing.assert_allclose(d1.frequencies_THz, d0.frequencies_THz, rtol=1e-7, atol=1e-9)


def test_unit_check_single_atom_lattice():
    # Einstein solid, ⟨u_y²⟩ = ⟨u_x²⟩ = 1e-3 Å², 12 amu, 300 K → 22.9 THz at every q ≠ 0
    lat = HarmonicLattice.square(3.0, "C", mass_amu=12.0, k_nn=1.0, t_nn=1.0)
    sc = lat.supercell(3, 3)
    n = 60
    u = np.random.default_rng(1).standard_normal((n, 2 * sc.n_atoms))
    u -= u.mean(axis=0)
    w, v = np.linalg.eigh(u.T @ u / n)
    u = u @ (v / np.sqrt(w)) @ v.T * math.sqrt(1e-3)  # sample covariance exactly 1e-3 I
    pos = sc.positions_A[None] + u.reshape(n, sc.n_atoms, 2)
    d = compute_dispersion(
        pos,
        sc.cell_index,
        sc.basis_index,
        lat.lattice_vectors_A,
        DispersionConfig(T, masses_amu={"C": 12.0}, bootstrap=0),
        species=sc.species,
    )
    expected = 15.6333 * math.sqrt(KB_EV_PER_K * T / (12.0 * 1e-3))
    assert expected == pytest.approx(22.9, abs=0.1)
    np.testing.assert_allclose(d.frequencies_THz[1:], expected, rtol=1e-4)
    np.testing.assert_array_equal(d.frequencies_THz[0], 0.0)
    assert THZ_PER_SQRT_EIGENVALUE == pytest.approx(15.6333, abs=1e-4)


def test_bootstrap_error_shrinks_with_more_states():
    lat = HarmonicLattice.honeycomb()
    errs = []
    for n in (12, 192):
        sc, pos = snapshots(lat, 4, n, seed=11)
        d = compute_dispersion(
            pos,
            sc.cell_index,
            sc.basis_index,
            lat.lattice_vectors_A,
            DispersionConfig(T, bootstrap=100, seed=2),
            species=sc.species,
        )
        assert d.n_bootstrap > 90
        assert np.all(np.isfinite(d.branch_average_err_THz))
        assert np.all(np.isfinite(d.frequencies_err_THz[1:]))
        errs.append(d.branch_average_err_THz)
    # 16 × the states: about 4 × smaller errors
    assert np.all(errs[1] < errs[0] / 2.5), (errs[0], errs[1])
    # the bootstrap error of the 12-state averages is of the right size: their deviation from
    # the exact averages is a few bootstrap sigmas at most
    assert np.mean(errs[0]) > 0.2  # THz: 12 states are visibly noisy


# ------------------------------------------------------------------ crop, path, parsing


def test_crop_to_whole_cells():
    # an 8 × 5 grid of honeycomb cells with holes: a missing atom and a NaN atom
    lat = HarmonicLattice.honeycomb()
    sc = lat.supercell(8, 5)
    cells = sc.cell_index + [3, -2]  # arbitrary integer origin
    keep = np.ones(sc.n_atoms, bool)
    keep[(2 * 5 + 4) * 2 + 1] = False  # cell (2, 4) loses its N atom
    valid = np.ones(sc.n_atoms, bool)
    valid[(6 * 5 + 1) * 2] = False  # cell (6, 1) has a failed refinement
    idx = np.flatnonzero(keep)
    crop = crop_to_cells(cells[idx], sc.basis_index[idx], valid[idx])
    # complete cells: rows 0–5 with columns 0–3 (24), or rows 0–1,3–5 … → the best is 6 × 4
    assert crop.shape == (6, 4)
    np.testing.assert_array_equal(crop.origin, [3, -2])
    used = idx[crop.atom_index]
    np.testing.assert_array_equal(sc.cell_index[used[2, 3, 1]], [2, 3])
    # an atom that could not be indexed (basis −1, as analysis.lattice marks them) is the same
    basis = sc.basis_index.copy()
    basis[(6 * 5 + 1) * 2] = -1
    crop2 = crop_to_cells(cells[idx], basis[idx])
    np.testing.assert_array_equal(crop2.atom_index, crop.atom_index)
    with pytest.raises(InputError, match="share cell_index"):
        crop_to_cells(np.array([[0, 0], [0, 0]]), np.array([0, 0]))


def test_paths():
    lat = HarmonicLattice.honeycomb()
    p = default_path(lat.lattice_vectors_A)
    b = lat.reciprocal_vectors_invA
    K = p.vertices_frac[2] @ b
    # K is a zone corner: |K| = |b|/√3, equidistant from Γ and its nearest images
    assert np.linalg.norm(K) == pytest.approx(np.linalg.norm(b[0]) / math.sqrt(3))
    assert np.linalg.norm(K - b[0]) == pytest.approx(np.linalg.norm(K))
    # a 60° basis gets a different K in reduced coordinates, the same geometry
    a60 = np.array([lat.lattice_vectors_A[0], lat.lattice_vectors_A[0] + lat.lattice_vectors_A[1]])
    p60 = default_path(a60)
    b60 = np.linalg.inv(a60).T
    K60 = p60.vertices_frac[2] @ b60
    assert np.linalg.norm(K60) == pytest.approx(np.linalg.norm(b60[0]) / math.sqrt(3))
    assert np.linalg.norm(K60 - b60[0]) == pytest.approx(np.linalg.norm(K60))
    assert default_path(np.diag([2.0, 3.0])).labels == ("Γ", "X", "S", "Y", "Γ")
    with pytest.raises(InputError, match="give a path"):
        default_path(np.array([[2.0, 0.0], [0.7, 2.5]]))
    user = parse_path("G=0,0; X=1/2,0; M=1/2,1/2; Gamma=0,0")
    assert user.labels == ("Γ", "X", "M", "Γ")
    np.testing.assert_allclose(user.vertices_frac[2], [0.5, 0.5])
    with pytest.raises(InputError, match="LABEL=f1,f2"):
        parse_path("G=0,0; X=half,0")
    pts = path_points(user, commensurate_q_frac(4, 4), np.eye(2) * 3)
    # Γ, (1/4,0), X | X, (1/2,1/4), M | M, (1/4,1/4), Γ
    assert pts.q_index.size == 9 and np.unique(pts.q_index).size == 6
    np.testing.assert_allclose(pts.distance_invA[-1], pts.vertex_distance_invA[-1])


def test_user_path_through_images_of_grid_points():
    path = BrillouinPath(("Γ", "X'"), np.array([[0, 0], [-0.5, 0]]))
    pts = path_points(path, commensurate_q_frac(4, 1), np.eye(2))
    # (-1/4, 0) and (-1/2, 0) are images of the grid points (3/4, 0) and (1/2, 0)
    np.testing.assert_array_equal(pts.q_index, [0, 3, 2])
    np.testing.assert_allclose(pts.q_frac[:, 0], [0, -0.25, -0.5])


def test_fourier_displacements_normalisation():
    # Parseval with 1/√L: Σ_q |ũ|² = Σ_l |u|²; and a single plane wave lands on its q
    rng = np.random.default_rng(0)
    u = rng.standard_normal((3, 4, 5, 2, 2))
    ut = fourier_displacements(u)
    assert ut.shape == (3, 20, 4)
    np.testing.assert_allclose(
        np.sum(np.abs(ut) ** 2, axis=(1, 2)), np.sum(u**2, axis=(1, 2, 3, 4))
    )
    l1, l2 = np.meshgrid(np.arange(4), np.arange(5), indexing="ij")
    wave = np.zeros((4, 5, 1, 2))
    wave[..., 0, 1] = np.cos(2 * np.pi * (1 * l1 / 4 + 2 * l2 / 5))
    ut = fourier_displacements(wave)
    q = commensurate_q_frac(4, 5)
    hit = np.flatnonzero(np.abs(ut[:, 1]) > 1e-9)
    np.testing.assert_allclose(np.sort(q[hit], axis=0), [[0.25, 0.4], [0.75, 0.6]])
    np.testing.assert_allclose(np.abs(ut[hit, 1]), math.sqrt(20) / 2)


def test_parse_masses():
    assert parse_masses(["B=10.81", " N = 14.007"]) == {"B": 10.81, "N": 14.007}
    with pytest.raises(InputError, match="SPECIES=AMU"):
        parse_masses(["B:10"])


# ------------------------------------------------------------------ errors


@pytest.fixture(scope="module")
def honeycomb_states():
    lat = HarmonicLattice.honeycomb()
    sc, pos = snapshots(lat, 3, 12, seed=5)
    return lat, sc, pos


def test_error_too_few_states(honeycomb_states):
    lat, sc, pos = honeycomb_states
    with pytest.raises(InputError, match=r"too few object states: 4, need at least 2κ \+ 1 = 5"):
        compute_dispersion(
            pos[:4],
            sc.cell_index,
            sc.basis_index,
            lat.lattice_vectors_A,
            DispersionConfig(T),
            species=sc.species,
        )


def test_error_fewer_than_two_cells(honeycomb_states):
    lat, sc, pos = honeycomb_states
    one = np.flatnonzero(np.all(sc.cell_index == 0, axis=1))
    with pytest.raises(InputError, match="fewer than two complete unit cells"):
        compute_dispersion(
            pos[:, one],
            sc.cell_index[one],
            sc.basis_index[one],
            lat.lattice_vectors_A,
            DispersionConfig(T),
            species=sc.species[one],
        )


def test_error_missing_mass_names_species(honeycomb_states):
    lat, sc, pos = honeycomb_states
    species = np.where(sc.species == "N", "Qx", sc.species)
    with pytest.raises(InputError, match="no mass for species 'Qx'"):
        compute_dispersion(
            pos,
            sc.cell_index,
            sc.basis_index,
            lat.lattice_vectors_A,
            DispersionConfig(T),
            species=species,
        )
    # given explicitly it works
    d = compute_dispersion(
        pos,
        sc.cell_index,
        sc.basis_index,
        lat.lattice_vectors_A,
        DispersionConfig(T, masses_amu={"Qx": 14.0}, bootstrap=0),
        species=species,
    )
    assert d.masses_amu["Qx"] == 14.0
    with pytest.raises(InputError, match="basis atom 1"):
        compute_dispersion(
            pos,
            sc.cell_index,
            sc.basis_index,
            lat.lattice_vectors_A,
            DispersionConfig(T, masses_amu={"0": 10.8}),
            species=None,
        )


def test_error_static_object(honeycomb_states):
    lat, sc, _ = honeycomb_states
    static = np.broadcast_to(sc.positions_A.astype(np.float32), (12, sc.n_atoms, 2))
    with pytest.raises(InputError, match=r"static object.*G = 0"):
        compute_dispersion(
            static,
            sc.cell_index,
            sc.basis_index,
            lat.lattice_vectors_A,
            DispersionConfig(T),
            species=sc.species,
        )


def test_error_singular_covariance(honeycomb_states):
    # states that only differ by a sublattice-rigid motion do not sample every vibration
    lat, sc, _ = honeycomb_states
    amp = np.random.default_rng(0).normal(0, 0.05, (12, 1, 2))
    pos = sc.positions_A[None] + amp * (sc.basis_index == 1)[None, :, None]
    with pytest.raises(InputError, match="singular"):
        compute_dispersion(
            pos,
            sc.cell_index,
            sc.basis_index,
            lat.lattice_vectors_A,
            DispersionConfig(T),
            species=sc.species,
        )


def test_config_validation_and_table(honeycomb_states):
    with pytest.raises(InputError, match="temperature_K"):
        DispersionConfig(0.0)
    with pytest.raises(InputError, match="mass of 'B'"):
        DispersionConfig(300.0, masses_amu={"B": -1})
    with pytest.raises(InputError, match="bootstrap"):
        DispersionConfig(300.0, bootstrap=-3)
    lat, sc, pos = honeycomb_states
    d = compute_dispersion(
        pos,
        sc.cell_index,
        sc.basis_index,
        lat.lattice_vectors_A,
        DispersionConfig(T, bootstrap=20, slices="0:1"),
        species=sc.species,
    )
    text = format_branch_table(d)
    assert "Γ–M–K–Γ" in text and "± (THz)" in text and text.count("\n") >= 6


def test_bootstrap_chunking_changes_nothing(honeycomb_states, monkeypatch):
    import caviar_napari.analysis.dispersion as module

    lat, sc, pos = honeycomb_states
    args = (
        pos,
        sc.cell_index,
        sc.basis_index,
        lat.lattice_vectors_A,
        DispersionConfig(np.float32(300.0), bootstrap=30, seed=4),
        sc.species,
    )
    whole = compute_dispersion(*args)
    monkeypatch.setattr(module, "BOOTSTRAP_CHUNK_BYTES", 1)  # one replica per chunk
    chunked = compute_dispersion(*args)
    np.testing.assert_allclose(chunked.frequencies_err_THz, whole.frequencies_err_THz, rtol=1e-10)
    np.testing.assert_allclose(
        chunked.branch_average_err_THz, whole.branch_average_err_THz, rtol=1e-10
    )
    assert whole.n_bootstrap == chunked.n_bootstrap == 30
