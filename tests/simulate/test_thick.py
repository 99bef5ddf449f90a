"""Thick presets (issue 16): geometry, harmonic models and per-layer ground truth.

The physics is checked against independent statements: the box model reproduces the lattice
supercell's exact Green's tensor, the twist angles are the textbook commensurate angles, the
lateral shift is the best a grid search finds, the truth phases add up to the full phase.
"""

from __future__ import annotations

import math

import h5py
import numpy as np
import pytest
from scipy.spatial import cKDTree

from caviar_napari.analysis.correlations import nearest_neighbour_correlation
from caviar_napari.analysis.phonons import HarmonicLattice, Spring
from caviar_napari.errors import InputError
from caviar_napari.io.truth_layers import read_truth_layers
from caviar_napari.simulate.box_harmonic import BoxHarmonicModel, in_plane_green
from caviar_napari.simulate.presets import (
    PRESETS,
    build_structure,
    preset_config,
    simulate,
    thermal_ensemble,
    write_simulation,
)
from caviar_napari.simulate.thick import (
    LOWER_SPRINGS_DEFAULT,
    coincidence_cell,
    depth_of_field_A,
    depth_resolution_A,
    honeycomb_layer,
    layered_slice_thicknesses,
    max_separation_shift_A,
    twist_angle_deg,
)

A = 2.504
MASSES = {"B": 10.81, "N": 14.007}
UPPER = {"k_nn": 20.0, "t_nn": 6.0, "k_nnn": 4.0, "t_nnn": 0.0}


@pytest.mark.parametrize("cells", [(4, 4), (2, 2), (3, 2)])
def test_box_model_is_the_supercell_model(cells):
    """For a box that is an L1 × L2 supercell the box model gives the supercell's exact G —
    also when the box is shorter than twice a bond (two images of one atom are both bonded)."""
    ny, nx = cells
    lat = HarmonicLattice.honeycomb()
    sc = lat.supercell(math.gcd(nx, ny), 2 * ny)
    box = (ny * A * math.sqrt(3.0), math.gcd(nx, ny) * A)
    pos = np.mod(sc.positions_A, box)
    model = BoxHarmonicModel(pos, sc.masses_amu, box, lat.springs)
    g = model.green_tensor(300.0)
    np.testing.assert_allclose(g, sc.green_tensor(300.0), atol=1e-12 * np.abs(g).max())
    u = model.sample_snapshots(300.0, 4, 0)
    assert u.shape == (4, sc.n_atoms, 2)
    # centre of mass fixed in every snapshot
    com = (u * sc.masses_amu[None, :, None]).sum(axis=1)
    np.testing.assert_allclose(com, 0.0, atol=1e-12)


def test_box_model_sampling_converges_to_its_green_tensor():
    lat = HarmonicLattice.honeycomb()
    sc = lat.supercell(2, 4)
    box = (2 * A * math.sqrt(3.0), 2 * A)
    model = BoxHarmonicModel(np.mod(sc.positions_A, box), sc.masses_amu, box, lat.springs)
    u = model.sample_snapshots(300.0, 20000, 1).reshape(20000, -1)
    g = model.green_tensor(300.0)
    err = np.abs(u.T @ u / 20000 - g).max() / np.abs(g).max()
    assert err < 0.05  # sampling error ~ sqrt(2/N) = 1 %


def test_box_model_refuses_a_floppy_network():
    """Central nearest-neighbour springs alone leave the honeycomb floppy (zero modes)."""
    lat = HarmonicLattice.honeycomb()
    sc = lat.supercell(2, 4)
    box = (2 * A * math.sqrt(3.0), 2 * A)
    model = BoxHarmonicModel(
        np.mod(sc.positions_A, box), sc.masses_amu, box, (Spring(A / math.sqrt(3), 10.0),)
    )
    with pytest.raises(InputError, match="mechanically unstable"):
        model.green_tensor(300.0)


def test_3d_slab_model_has_three_translations_and_free_surfaces():
    """A diamond slab, periodic in y and x, free along z: three zero modes only, and the
    surface atoms (fewer bonds) vibrate more than the middle ones."""
    config = preset_config("si110-correlated", cells=(2, 2), thickness_cells=3)
    s = build_structure(config)
    a = config.lattice_constant
    model = BoxHarmonicModel(
        s.positions_A,
        np.full(s.n_atoms, 28.085),
        (s.box_A[0], s.box_A[1], 0.0),
        (Spring(a * math.sqrt(3) / 4, 5.5, 1.3),),
    )
    phi = model.force_constants()
    w = np.linalg.eigvalsh(phi)
    assert np.sum(w < 1e-8 * w.max()) == 3
    g = model.green_tensor(300.0)
    z = s.positions_A[:, 2]
    msd = np.diag(g).reshape(-1, 3).sum(axis=1)
    surface = (z == z.min()) | (z == z.max())
    assert msd[surface].mean() > 1.1 * msd[~surface].mean()
    assert in_plane_green(g, 3).shape == (2 * s.n_atoms, 2 * s.n_atoms)


def test_depth_of_field_and_depth_resolution():
    assert depth_of_field_A(60e3, 35.0) == pytest.approx(79.45, abs=0.05)
    # the best depth resolution is the depth of field, at q = α/λ
    lam = 0.048661
    q = np.linspace(0.05, 1.4, 2000)
    dz = depth_resolution_A(q, 60e3, 35.0)
    assert dz.min() == pytest.approx(depth_of_field_A(60e3, 35.0), rel=1e-4)
    assert q[np.argmin(dz)] == pytest.approx(0.035 / lam, rel=1e-2)
    assert np.isinf(depth_resolution_A(2 * 0.035 / lam * 1.01, 60e3, 35.0))


@pytest.mark.parametrize(("mn", "angle", "length"), [((1, 2), 21.787, 7), ((2, 3), 13.174, 19)])
def test_commensurate_twist(mn, angle, length):
    L, twist, _, _ = coincidence_cell(*mn, A)
    assert L == pytest.approx(A * math.sqrt(length))
    assert abs(twist) == pytest.approx(angle, abs=1e-3)
    assert twist_angle_deg(*mn) == pytest.approx(angle, abs=1e-3)
    with pytest.raises(InputError, match="coprime"):
        coincidence_cell(2, 4, A)


def test_twisted_layers_fill_the_coincidence_box():
    L, twist, r_up, r_low = coincidence_cell(2, 3, A)
    box = (math.sqrt(3) * L, L)
    layers = [
        honeycomb_layer(
            name, a_A=A, box_yx_A=box, rotation_deg=r, shift_A=(0.3, 0.2), z_A=2.0,
            springs=UPPER, masses_amu=MASSES,
        )
        for name, r in (("upper", r_up), ("lower", r_low))
    ]  # fmt: skip
    for layer in layers:
        assert layer.n_atoms == 2 * 2 * 19  # the √3L × L box: 2 coincidence cells × 19 × 2 atoms
        # positions = origin + l A + basis[κ] modulo the box: indices in the layer's own frame
        basis = layer.positions_A[layer.basis_index == 0][0] - layer.origin_A
        rebuilt = layer.origin_A + layer.cell_index @ layer.lattice_vectors_A
        rebuilt[layer.basis_index == 1] += (
            layer.positions_A[layer.basis_index == 1][0]
            - layer.origin_A
            - layer.cell_index[layer.basis_index == 1][0] @ layer.lattice_vectors_A
        )
        d = layer.positions_A - rebuilt
        d -= np.asarray(box) * np.rint(d / np.asarray(box))
        assert np.abs(basis - np.asarray(box) * np.rint(basis / np.asarray(box))).max() < 1e-9
        assert np.abs(d).max() < 1e-8
    a_up, a_low = layers[0].lattice_vectors_A[0], layers[1].lattice_vectors_A[0]
    angle = math.degrees(math.atan2(a_low[0], a_low[1]) - math.atan2(a_up[0], a_up[1]))
    assert abs(angle) == pytest.approx(abs(twist), abs=1e-6)
    with pytest.raises(InputError, match="not a period"):
        honeycomb_layer(
            "x", a_A=A, box_yx_A=box, rotation_deg=r_up + 5.0, shift_A=(0, 0), z_A=2.0,
            springs=UPPER, masses_amu=MASSES,
        )  # fmt: skip


def test_lateral_shift_keeps_projected_atoms_apart():
    box = (4 * A * math.sqrt(3), 4 * A)
    layer = honeycomb_layer(
        "upper", a_A=A, box_yx_A=box, rotation_deg=0.0, shift_A=(0, 0), z_A=2.0,
        springs=UPPER, masses_amu=MASSES,
    )  # fmt: skip
    tree = cKDTree(layer.positions_A, boxsize=box)

    def smallest(shift):
        return tree.query(np.mod(layer.positions_A + shift, box))[0].min()

    best = smallest(max_separation_shift_A(A))
    assert best == pytest.approx(A / 3, abs=1e-9)
    grid = [
        smallest((y, x))
        for y in np.linspace(0, A * math.sqrt(3), 40)
        for x in np.linspace(0, A, 25)
    ]
    assert max(grid) <= best + 1e-9


def test_lower_layer_has_a_shorter_correlation_length():
    """The lower layer's default springs give a lower ρ_nn at the same rms displacement."""
    box = (4 * A * math.sqrt(3), 4 * A)
    rho, rms = [], []
    for springs in (UPPER, dict(LOWER_SPRINGS_DEFAULT)):
        layer = honeycomb_layer(
            "x", a_A=A, box_yx_A=box, rotation_deg=0.0, shift_A=(0, 0), z_A=2.0,
            springs=springs, masses_amu=MASSES,
        )  # fmt: skip
        g = layer.model.green_tensor(300.0)
        rho.append(nearest_neighbour_correlation(g, layer.positions_A).mean)
        rms.append(math.sqrt(np.diag(g).mean()))
    assert rho[0] == pytest.approx(0.43, abs=0.01)
    assert rho[1] == pytest.approx(0.20, abs=0.01)
    assert rms[1] == pytest.approx(rms[0], rel=0.03)


def test_layered_slices():
    assert layered_slice_thicknesses((2.0, 122.0), 4.0) == (4.0, 116.0, 4.0)
    with pytest.raises(InputError, match="overlap"):
        layered_slice_thicknesses((2.0, 4.0), 4.0)


def test_thick_presets_are_registered_and_validated():
    for name in ("hbn-bilayer-gap", "hbn-twisted-bilayer", "si110-correlated"):
        assert name in PRESETS
    with pytest.raises(InputError, match="truth_slices"):
        preset_config("hbn-bilayer-gap", truth_slices=1)
    with pytest.raises(InputError, match="lower_springs"):
        preset_config("hbn-bilayer-gap", lower_springs={"k_x": 1.0})
    with pytest.raises(InputError, match="layer_gap_A"):
        preset_config("hbn-bilayer-gap", layer_gap_A=2.0)
    with pytest.raises(InputError, match="coprime"):
        preset_config("hbn-twisted-bilayer", twist_mn=(2, 4))
    gap = preset_config("hbn-bilayer-gap")
    assert gap.layer_gap_A >= 1.5 * depth_of_field_A(gap.energy_eV, 35.0)
    assert gap.defocus_A == pytest.approx(gap.layer_gap_A / 2)


def test_bilayer_ensembles_are_independent_per_layer():
    config = preset_config("hbn-bilayer-gap", cells=(2, 2), n_configs=3)
    s = build_structure(config)
    ens = thermal_ensemble(config, s)
    n_up = s.layers[0].n_atoms
    g = ens.green_model_A2
    assert np.all(g[: 2 * n_up, 2 * n_up :] == 0)  # no correlation between the layers
    # the same seed gives the same configurations
    np.testing.assert_array_equal(ens.displacements_A, thermal_ensemble(config).displacements_A)


@pytest.mark.parametrize(
    ("name", "kw"),
    [
        ("hbn-bilayer-gap", {"cells": (2, 2), "detector_shape": (40, 24)}),
        ("hbn-twisted-bilayer", {"twist_mn": (1, 2), "detector_shape": (56, 32)}),
    ],
)
def test_bilayer_truth_per_layer(name, kw, tmp_path):
    """The file holds each layer's atoms, slices, frame, Green's tensors and phase; the two
    layer phases add up to the full projected phase, and each sits in its own truth slice."""
    pytest.importorskip("abtem")
    config = preset_config(name, scan_shape=(3, 3), n_configs=2, **kw)
    result = simulate(config)
    path = tmp_path / "bilayer.h5"
    write_simulation(path, result, command="test")
    layers = read_truth_layers(path)
    assert [ly.name for ly in layers] == ["upper", "lower"]
    with h5py.File(path, "r") as f:
        phase = f["ground_truth/phase"][()]
        positions = f["ground_truth/positions_A"][()]
        dz = f["ground_truth"].attrs["slice_thickness_A"]
    assert phase.shape[0] == 3 and np.allclose(dz, (4.0, config.layer_gap_A - 4.0, 4.0))
    upper, lower = layers
    assert upper.entrance_z_A == 0.0 and lower.entrance_z_A == pytest.approx(config.layer_gap_A)
    assert list(upper.truth_slices) == [0] and list(lower.truth_slices) == [2]
    assert np.abs(phase[1]).max() < 1e-6  # vacuum
    scale = np.abs(phase).max()
    np.testing.assert_allclose(upper.phase, phase[0], atol=1e-3 * scale)
    np.testing.assert_allclose(lower.phase, phase[2], atol=1e-3 * scale)
    # realised tensors are those of each layer's own atoms
    from caviar_napari.simulate.thermal import realised_green

    np.testing.assert_allclose(
        lower.green_realised_A2, realised_green(positions[:, lower.atoms]), atol=1e-15
    )
    assert upper.springs["k_nn"] == 20.0
    # the gap bilayer's lower layer has its own springs; the twisted one is one material
    want = dict(LOWER_SPRINGS_DEFAULT) if name == "hbn-bilayer-gap" else upper.springs
    assert lower.springs == want
