"""Depth-resolved analysis on a synthetic two-layer reconstruction with known truth.

The "reconstruction" holds, in every object state, Gaussian atoms at the displaced positions of
two independent harmonic layers: the upper one in slice 0, the lower one (shifted, or turned by a
commensurate twist) in slice 3, vacuum between.  ``caviar atoms --zrange`` must find each layer
in its own range and lattice frame, :func:`match_layers` must pair ranges and layers, and each
range's correlations must match its own layer's realised Green's tensor and not the other's.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from caviar_napari.analysis import depth
from caviar_napari.data.atoms import ZRange
from caviar_napari.data.config import ReconstructionConfig
from caviar_napari.data.layers import TruthLayer
from caviar_napari.data.recon import ReconState
from caviar_napari.errors import InputError
from caviar_napari.io.reconstruction import save_reconstruction
from caviar_napari.simulate.thermal import realised_green
from caviar_napari.simulate.thick import (
    LOWER_SPRINGS_DEFAULT,
    coincidence_cell,
    honeycomb_layer,
    max_separation_shift_A,
)
from caviar_napari.workflows.atoms import AtomsOptions, run_atoms

A = 2.504
MASSES = {"B": 10.81, "N": 14.007}
UPPER = {"k_nn": 20.0, "t_nn": 6.0, "k_nnn": 4.0, "t_nnn": 0.0}
PIXEL = 0.1
N_STATES = 24
DZ = 30.0


def _layers(kind: str):
    if kind == "gap":
        box = (4 * A * math.sqrt(3), 4 * A)
        rot = (0.0, 0.0)
        shift = max_separation_shift_A(A)
        springs = (UPPER, dict(LOWER_SPRINGS_DEFAULT))
    else:
        L, _, r_up, r_low = coincidence_cell(2, 3, A)
        box = (math.sqrt(3) * L, L)
        rot, shift, springs = (r_up, r_low), np.array([0.4, 0.3]), (UPPER, UPPER)
    made = [
        honeycomb_layer(
            name, a_A=A, box_yx_A=box, rotation_deg=r, shift_A=s, z_A=z, springs=sp,
            masses_amu=MASSES,
        )
        for name, r, s, z, sp in (
            ("upper", rot[0], (0.0, 0.0), 2.0, springs[0]),
            ("lower", rot[1], shift, 92.0, springs[1]),
        )
    ]  # fmt: skip
    return box, made


def _gaussians(positions, shape, origin):
    """Phase (…, y, x) of 0.3-rad Gaussian atoms (σ = 0.2 Å) at ``positions`` (…, atoms, 2)."""
    s = 0.2 / PIXEL
    px = (positions - origin) / PIXEL
    yy, xx = np.arange(shape[0]), np.arange(shape[1])
    gy = np.exp(-((yy[:, None] - px[..., None, :, 0]) ** 2) / (2 * s**2))
    gx = np.exp(-((xx[:, None] - px[..., None, :, 1]) ** 2) / (2 * s**2))
    return 0.3 * np.einsum("...ya,...xa->...yx", gy, gx)


@pytest.fixture(scope="module", params=["gap", "twisted"])
def bilayer(request, tmp_path_factory):
    box, layers = _layers(request.param)
    rng = np.random.default_rng(7)
    # the scan frame: the box itself (origin 0); the object covers the box, periodic images of
    # atoms near the edges are drawn too
    shape = (int(box[0] / PIXEL), int(box[1] / PIXEL))
    origin = np.zeros(2)
    obj = np.zeros((N_STATES, 4, *shape))
    truths, mean_all = [], []
    start = 0
    for slice_index, layer in zip((0, 3), layers):
        u = layer.model.sample_snapshots(300.0, N_STATES, rng) * 3.0  # 9 pm rms: well resolved
        pos = layer.positions_A[None] + u
        images = [pos + np.array([dy, dx]) * box for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
        obj[:, slice_index] = _gaussians(np.concatenate(images, axis=1), shape, origin)
        atoms = np.arange(start, start + layer.n_atoms)
        start += layer.n_atoms
        truths.append(
            TruthLayer(
                name=layer.name,
                atoms=atoms,
                z_A=slice_index * DZ,
                entrance_z_A=slice_index * DZ,
                truth_slices=[slice_index],
                lattice_vectors_A=layer.lattice_vectors_A,
                origin_A=layer.origin_A,
                cell_index=layer.cell_index,
                basis_index=layer.basis_index,
                rotation_deg=layer.rotation_deg,
                green_model_A2=layer.model.green_tensor(300.0) * 9.0,
                green_realised_A2=realised_green(pos),
                phase=_gaussians(layer.positions_A, shape, origin),
                springs=dict(layer.springs),
            )
        )
        mean_all.append(layer.positions_A)
    margin = 1.5
    scan = np.stack(
        np.meshgrid(
            np.linspace(margin, box[0] - margin, 6), np.linspace(margin, box[1] - margin, 6),
            indexing="ij",
        ),
        -1,
    ).reshape(-1, 2)  # fmt: skip
    state = ReconState(
        object=np.exp(1j * obj).astype(np.complex64),
        probe=np.ones((1, 8, 8), np.complex64),
        tilt_mrad=np.zeros(2),
        loss=[1.0],
        pixel_size_A=(PIXEL, PIXEL),
        object_origin_A=(0.0, 0.0),
        slice_thickness_A=np.full(4, DZ),
        config=ReconstructionConfig(),
        scan_positions_A=scan,
    )
    folder = tmp_path_factory.mktemp(f"bilayer_{request.param}")
    recon = folder / "recon.h5"
    save_reconstruction(recon, state, source="none.h5")
    out = folder / "atoms.h5"
    summary = run_atoms(
        AtomsOptions(
            recon=recon,
            out=out,
            zranges=(("top", "0:2"), ("bottom", "2:4")),
            species_from_truth=False,
        )
    )
    return {
        "kind": request.param,
        "box": box,
        "layers": layers,
        "truths": truths,
        "mean": np.concatenate(mean_all),
        "summary": summary,
        "state": state,
    }


def test_each_range_is_found_and_indexed_in_its_own_frame(bilayer):
    ranges = bilayer["summary"].ranges
    assert list(ranges) == ["top", "bottom"]
    for atoms, layer in zip(ranges.values(), bilayer["layers"]):
        assert atoms.zrange.n_slices == 2
        # own lattice vectors: |a| = 2.504 Å and the layer's orientation (mod 60°)
        a1 = atoms.lattice_vectors_A[0]
        assert np.hypot(*a1) == pytest.approx(A, abs=0.02)
        angle = depth._lattice_angle_deg(atoms.lattice_vectors_A, layer.lattice_vectors_A)
        assert angle < 0.5
    matches = depth.match_layers(ranges, bilayer["truths"], bilayer["mean"], bilayer["box"])
    assert [(m.zrange, m.layer) for m in matches] == [("top", "upper"), ("bottom", "lower")]
    for m in matches:
        assert m.depth_offset_A == 0.0 and m.site_fraction > 0.95


def test_occupied_slices_leave_out_the_vacuum(bilayer):
    top, bottom = bilayer["summary"].ranges.values()
    assert depth.occupied_slices(top).tolist() == [0]
    assert depth.occupied_slices(bottom).tolist() == [1]  # slice 3 of the reconstruction


def test_correlations_match_own_layer_not_the_other(bilayer):
    ranges = list(bilayer["summary"].ranges.values())
    upper, lower = bilayer["truths"]
    own, other = [], []
    for atoms, frame, foreign in zip(ranges, (upper, lower), (lower, upper)):
        corr = depth.zrange_correlations(atoms)
        c_own = depth.compare_with_layer(corr, frame, frame, bilayer["mean"], bilayer["box"])
        c_oth = depth.compare_with_layer(corr, frame, foreign, bilayer["mean"], bilayer["box"])
        assert c_own.n_matched >= 0.9 * np.isfinite(atoms.mean_positions_A).all(axis=1).sum()
        own.append(c_own)
        other.append(c_oth)
    for c_own, c_oth in zip(own, other):
        assert c_own.similarity.csm > 0.95
        assert c_oth.similarity.csm < 0.9  # the other, independent field (self blocks ~agree)
        assert c_own.rho_nn_reconstructed == pytest.approx(c_own.rho_nn_truth, abs=0.1)
    if bilayer["kind"] == "gap":  # different springs: ρ_nn ordered as the truth's
        assert own[0].rho_nn_truth > own[1].rho_nn_truth
        assert own[0].rho_nn_reconstructed > own[1].rho_nn_reconstructed


def test_unit_cell_averages_in_own_frames_agree_for_equal_layers(bilayer):
    """Twisted layers with the same springs: the unit-cell averages of the two ranges, each
    in its own local frame, agree class by class (the paper's Fig. 4 a–b)."""
    if bilayer["kind"] != "twisted":
        pytest.skip("the gap bilayer's layers have different springs")
    ranges = list(bilayer["summary"].ranges.values())
    avgs = [
        depth.zrange_unit_cell_averages(a, depth.zrange_correlations(a), max_distance_A=1.6)
        for a in ranges
    ]
    self_blocks = [np.sort(np.trace(av.blocks_A2[av.counts > 3], axis1=1, axis2=2)) for av in avgs]
    n = min(len(s) for s in self_blocks)
    assert n >= 2
    # traces are frame-independent: the classes' mean traces agree within sampling error
    assert np.mean(self_blocks[0]) == pytest.approx(np.mean(self_blocks[1]), rel=0.3)


def test_phase_of_each_range_correlates_with_its_layer(bilayer):
    state, truths = bilayer["state"], bilayer["truths"]
    region = np.stack([state.scan_positions_A.min(0), state.scan_positions_A.max(0)])
    for spec, own in (("0:2", 0), ("2:4", 1)):
        z = depth.zrange_from_spec(spec, state.slice_thickness_A)
        img = depth.zrange_phase(state.object, z)
        r = [
            depth.phase_correlation(
                img, (PIXEL, PIXEL), (0, 0), t.phase, (PIXEL, PIXEL), (0, 0), region
            )  # fmt: skip
            for t in truths
        ]
        assert r[own] > 0.95 and r[1 - own] < 0.3


def test_zrange_from_spec():
    z = depth.zrange_from_spec("1:3", [10.0, 20.0, 30.0, 40.0], "mid")
    assert z == ZRange("mid", 1, 3, (20.0, 30.0), 10.0, 4)
    assert depth.zrange_from_spec("-1:", [5.0, 5.0]).spec == "1:2"
    assert depth.zrange_from_spec(":", [5.0, 5.0]).z_extent_A == (0.0, 10.0)
    with pytest.raises(InputError, match="contiguous"):
        depth.zrange_from_spec("0:4:2", [1.0] * 4)
    with pytest.raises(InputError, match="selects no slice"):
        depth.zrange_from_spec("3:1", [1.0] * 4)


def test_shell_averages_compare_turned_layers(bilayer):
    """Bond-frame shell averages: equal springs (twisted) agree within their errors; the gap
    bilayer's softer-bonded lower layer has a weaker nearest-neighbour longitudinal correlation
    relative to its self term."""
    ranges = list(bilayer["summary"].ranges.values())
    shells = [depth.shell_averages(depth.zrange_correlations(a), n_shells=2) for a in ranges]
    for s in shells:
        assert s.distance_A[1] == pytest.approx(A / math.sqrt(3), abs=0.05)
        assert s.distance_A[2] == pytest.approx(A, abs=0.05)
        assert s.counts[0] > 20 and s.counts[1] > 20
    up, low = shells
    if bilayer["kind"] == "twisted":
        for key in ("longitudinal", "transverse"):
            a, b = getattr(up, f"{key}_A2"), getattr(low, f"{key}_A2")
            ea, eb = getattr(up, f"{key}_stderr_A2"), getattr(low, f"{key}_stderr_A2")
            # same material: within 4 combined standard errors (24 states; pairs share atoms)
            assert np.all(np.abs(a - b) <= 4 * np.hypot(ea, eb) + 0.15 * np.abs(a)), key
    else:
        assert up.longitudinal_A2[1] / up.longitudinal_A2[0] > (
            low.longitudinal_A2[1] / low.longitudinal_A2[0] + 0.1
        )
