"""Simulated datasets: every preset writes the §6 input and the ground truth; the frames,
signs and noise model are the documented ones (checked against the physics, not the code)."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from caviar_napari.analysis.phonons import standard_mass_amu
from caviar_napari.errors import InputError
from caviar_napari.io.dataset import read_stem_h5
from caviar_napari.simulate.presets import (
    PRESETS,
    build_structure,
    preset_config,
    simulate,
    write_simulation,
)

pytest.importorskip("abtem")

#: Tiny versions of the presets (a few seconds in total).
TINY = {
    "hbn-static": {},
    "hbn-einstein": {"n_configs": 2},
    "hbn-correlated": {"n_configs": 2},
    "hbn-correlated-psc": {"n_configs": 2},
    "si110-static": {"cells": (2, 2), "thickness_cells": 3, "detector_shape": (32, 48)},
    # thick specimens (issue 16; tests/simulate/test_thick.py checks their physics)
    "hbn-bilayer-gap": {"n_configs": 2},
    "hbn-twisted-bilayer": {
        "n_configs": 2,
        "twist_mn": (1, 2),
        "cells": (1, 1),
        "detector_shape": (56, 32),
    },
    "si110-correlated": {
        "n_configs": 2,
        "cells": (2, 2),
        "thickness_cells": 2,
        "truth_slices": 4,
        "detector_shape": (32, 48),
    },
}


def tiny(name: str, **extra):
    kw = {"cells": (2, 2), "detector_shape": (40, 24), "scan_shape": (4, 4)}
    kw.update(TINY[name])
    kw.update(extra)
    return preset_config(name, **kw)


def test_preset_names_are_the_fixed_ones():
    assert set(PRESETS) == set(TINY)


@pytest.mark.parametrize("name", sorted(TINY))
def test_preset_writes_spec_input_and_ground_truth(name, tmp_path):
    config = tiny(name)
    result = simulate(config)
    path = tmp_path / f"{name}.h5"
    write_simulation(path, result, command=f"caviar simulate {name} --out {path.name}")
    ds = read_stem_h5(path)  # the conventions §6 reader accepts it
    assert ds.intensities.shape == (4, 4, *config.detector_shape)
    assert ds.energy_eV == config.energy_eV
    assert ds.convergence_semiangle_mrad == config.convergence_semiangle_mrad
    assert ds.scan_step_A == config.scan_step_A
    box = build_structure(config).box_A
    ky, kx = config.detector_shape
    # the detector is the reciprocal of the reconstruction grid: pixel = box / K
    np.testing.assert_allclose(ds.pixel_size_A, (box[0] / ky, box[1] / kx), rtol=1e-9)
    # probabilities: the far field sums to 1, the cropped detector to a little less
    totals = ds.intensities.sum(axis=(2, 3))
    assert np.all(totals <= 1.0 + 1e-5) and np.all(totals > 0.9)
    n_atoms = build_structure(config).n_atoms
    n_cfg = config.n_configs
    with h5py.File(path, "r") as f:
        for item in (
            "energy_eV",
            "convergence_semiangle_mrad",
            "scan_step_A",
            "angular_sampling_mrad",
            "defocus_A",
            "scan_rotation_deg",
        ):
            assert item in f.attrs, item
        np.testing.assert_allclose(f["scan/positions_A"][1, 2], np.array((1, 2)) * ds.scan_step_A)
        g = f["ground_truth"]
        assert g["positions_A"].shape == (n_cfg, n_atoms, 2)
        assert g["mean_positions_A"].shape == (n_atoms, 2)
        assert g["species"].shape == (n_atoms,)
        assert g["cell_index"].shape == (n_atoms, 2) and g["cell_index"].dtype.kind == "i"
        assert g["basis_index"].shape == (n_atoms,)
        assert g.attrs["lattice_vectors_A"].shape == (2, 2)
        assert g["green_model_A2"].shape == (2 * n_atoms, 2 * n_atoms)
        assert g["green_realised_A2"].shape == (2 * n_atoms, 2 * n_atoms)
        assert g["probe"].shape == (1, ky, kx) and g["probe"].dtype == np.complex64
        n_sl = config.truth_slices
        assert g["phase"].ndim == 3 and g["phase"].shape[0] == n_sl
        assert g["phase_configs"].shape == (n_cfg, *g["phase"].shape)
        np.testing.assert_allclose(g.attrs["phase_pixel_size_A"], ds.pixel_size_A)
        assert g.attrs["phase_origin_A"].shape == (2,)
        np.testing.assert_allclose(np.sum(g.attrs["slice_thickness_A"]), box[2])
        assert g.attrs["thermal_model"] == config.thermal_model
        assert g.attrs["preset"] == name
        assert g.attrs["temperature_K"] == config.temperature_K
        masses = json.loads(g.attrs["masses_amu"])
        assert masses == {s: standard_mass_amu(s) for s in set(g["species"].asstr()[()])}
        assert json.loads(g.attrs["parameters"])["n_configs"] == n_cfg
        assert g.attrs["command"].startswith("caviar simulate")
        # the software that made it (issue 12: reproducibility needs the versions)
        for lib in ("python", "numpy", "scipy", "h5py", "abtem", "caviar_napari"):
            assert g.attrs[f"{lib}_version"], lib
        assert g.attrs["numpy_version"] == np.__version__
        # the probe's power equals the data's units (probabilities: 1)
        assert np.sum(np.abs(g["probe"][()]) ** 2) == pytest.approx(1.0, rel=1e-5)
        # the phase is positive on atoms and the mean structure's phase is the static one
        assert g["phase"][()].max() > 0.1 and g["phase"][()].min() > -0.05
        green_m, green_r = g["green_model_A2"][()], g["green_realised_A2"][()]
        pos = g["positions_A"][()]
        if config.thermal_model == "static":
            assert not np.any(green_m) and not np.any(green_r)
            np.testing.assert_array_equal(pos[0], g["mean_positions_A"][()])
        else:
            assert np.all(np.diag(green_m) > 0)
            u = pos - pos.mean(axis=0)
            np.testing.assert_allclose(
                green_r, np.einsum("nia,njb->iajb", u, u).reshape(green_r.shape) / n_cfg, atol=1e-12
            )
        if config.thermal_model == "correlated" and config.structure == "hbn":
            q = g["dispersion/q_frac"][()]
            nu = g["dispersion/frequencies_THz"][()]
            assert nu.shape == (q.shape[0], 4)
            gamma = np.flatnonzero(np.all(q == 0, axis=1))[0]
            # exact dispersion at Γ: two zero (acoustic) branches, the optical ones > 0
            assert np.count_nonzero(nu[gamma] == 0.0) == 2
            assert np.all(nu[gamma, 2:] > 10.0) and np.all(nu[q.any(axis=1)] > 0)
        else:  # the thick specimens have no lattice-dynamics dispersion in their truth
            assert "dispersion" not in g


def test_structures_are_physical():
    hbn = build_structure(preset_config("hbn-static"))
    xy = hbn.positions_A[:, :2]
    box = np.array(hbn.box_A[:2])
    d = xy[:, None] - xy[None]
    d -= np.round(d / box) * box  # minimum image
    r = np.linalg.norm(d, axis=-1) + np.eye(len(xy)) * 99
    np.testing.assert_allclose(r.min(axis=1), 2.504 / np.sqrt(3), rtol=1e-9)  # B–N bond
    assert np.all(np.sum(np.abs(r - 2.504 / np.sqrt(3)) < 1e-6, axis=1) == 3)  # 3 neighbours
    nn = hbn.species[np.argmin(r, axis=1)]
    assert np.all(nn != hbn.species)  # every B's nearest neighbour is N and vice versa
    # positions = l1 a1 + l2 a2 + basis[κ]: the residual is one fixed vector per basis index
    resid = xy - hbn.cell_index @ hbn.lattice_vectors_A
    for kappa in (0, 1):
        r_k = resid[hbn.basis_index == kappa]
        np.testing.assert_allclose(r_k, np.broadcast_to(r_k[0], r_k.shape), atol=1e-9)
    assert hbn.n_atoms == 2 * 2 * 4 * 4  # (ny, nx) = (4, 4) orthogonal cells of 2 B + 2 N
    si = build_structure(preset_config("si110-static"))
    d = si.positions_A[:, None] - si.positions_A[None]
    box3 = np.array(si.box_A)
    d -= np.round(d / box3) * box3
    r = np.linalg.norm(d, axis=-1) + np.eye(len(d)) * 99
    np.testing.assert_allclose(r.min(axis=1), np.sqrt(3) * 5.431 / 4, rtol=1e-9)  # Si–Si bond
    assert np.all(np.sum(np.abs(r - np.sqrt(3) * 5.431 / 4) < 1e-6, axis=1) == 4)  # tetrahedral
    assert si.n_atoms == 5 * 3 * 12 * 4 and si.box_A[2] == pytest.approx(12 * 5.431 / np.sqrt(2))


def test_conventions_atom_phase_adf_and_centre_of_mass():
    """An atom's phase peak and virtual-ADF spot sit at its stored position (scan frame), and
    the pattern's centre of mass points from the probe towards the atom."""
    base = preset_config("hbn-static", cells=(2, 2), detector_shape=(48, 32))
    st = build_structure(base)
    i = int(np.flatnonzero(st.species == "N")[0])
    offset = np.array([0.37, 0.61])  # asymmetric: catches a y/x swap
    config = preset_config(
        "hbn-static",
        cells=(2, 2),
        detector_shape=(48, 32),
        scan_shape=(11, 11),
        scan_step_A=(0.1, 0.1),
        scan_start_A=tuple(st.positions_A[i, :2] - offset),
    )
    result = simulate(config)
    ds, truth = result.dataset, result.truth
    np.testing.assert_allclose(truth.mean_positions_A[i], offset, atol=1e-12)

    def peak(img, j):  # parabolic sub-pixel maximum around integer index j
        out = []
        for axis in range(2):
            lo, hi = list(j), list(j)
            lo[axis] -= 1
            hi[axis] += 1
            m, c, p = img[tuple(lo)], img[j], img[tuple(hi)]
            out.append(j[axis] + 0.5 * (m - p) / (m - 2 * c + p))
        return np.array(out)

    ky, kx = ds.detector_shape
    ay = (np.arange(ky) - ky // 2) * ds.angular_sampling_mrad[0]
    ax = (np.arange(kx) - kx // 2) * ds.angular_sampling_mrad[1]
    theta = np.hypot(ay[:, None], ax[None, :])
    adf = ds.intensities[..., theta > 2 * config.convergence_semiangle_mrad].sum(-1)
    j = np.unravel_index(np.argmax(adf), adf.shape)
    spot = ds.positions_A[0, 0] + peak(adf, j) * np.array(config.scan_step_A)
    np.testing.assert_allclose(spot, truth.mean_positions_A[i], atol=0.02)

    ph = truth.phase[0]
    d, o = np.array(truth.phase_pixel_size_A), np.array(truth.phase_origin_A)
    k = tuple(np.round((truth.mean_positions_A[i] - o) / d).astype(int))
    win = ph[k[0] - 2 : k[0] + 3, k[1] - 2 : k[1] + 3]
    j = np.unravel_index(np.argmax(win), win.shape)
    j = (int(j[0]) + k[0] - 2, int(j[1]) + k[1] - 2)
    np.testing.assert_allclose(o + peak(ph, j) * d, truth.mean_positions_A[i], atol=0.02)

    # centre of mass of each pattern (mrad) vs the direction from the probe to the atom
    inten = ds.intensities.astype(np.float64)
    total = inten.sum(axis=(2, 3))
    com = np.stack([(inten.sum(3) * ay).sum(2), (inten.sum(2) * ax).sum(2)], -1) / total[..., None]
    to_atom = truth.mean_positions_A[i] - ds.positions_A
    dist = np.linalg.norm(to_atom, axis=-1)
    near = (dist > 0.2) & (dist < 0.5)
    cos = np.sum(com * to_atom, axis=-1) / (np.linalg.norm(com, axis=-1) * dist)
    assert near.sum() > 30 and np.min(cos[near]) > 0.95


def test_psc_dataset_is_the_source_average_of_displaced_probes(monkeypatch):
    """A finite source: each pattern is the weighted sum of patterns of probes displaced by
    the points of the source's Gauss–Hermite rule (3 × 3 here, to keep the test short)."""
    from caviar_napari.simulate import psc

    fwhm = 0.47
    offsets, weights = psc.source_offsets_A(fwhm, order=3)
    monkeypatch.setattr(psc, "SOURCE_ORDER", 3)
    blurred = simulate(tiny("hbn-correlated-psc", scan_shape=(2, 2)))
    start = np.array(tiny("hbn-correlated-psc").scan_start_A)
    expected = 0.0
    for offset, weight in zip(offsets, weights, strict=True):
        sharp = simulate(
            tiny("hbn-correlated", scan_shape=(2, 2), scan_start_A=tuple(start + offset))
        )
        np.testing.assert_allclose(
            sharp.truth.positions_A - sharp.truth.mean_positions_A,
            blurred.truth.positions_A - blurred.truth.mean_positions_A,
            atol=1e-12,
        )  # same seed, same configurations
        expected = expected + weight * sharp.dataset.intensities.astype(np.float64)
    np.testing.assert_allclose(blurred.dataset.intensities, expected, rtol=2e-5, atol=1e-9)
    assert np.max(np.abs(expected - sharp.dataset.intensities)) > 1e-4


def test_si110_needs_multislice():
    """The si110 preset is thick enough that one projected slice cannot explain its data: the
    single-slice (projection) patterns differ from the multislice ones by > 15 % (L1)."""
    kw = {"cells": (2, 2), "detector_shape": (32, 48), "scan_shape": (3, 3)}
    multi = simulate(preset_config("si110-static", **kw)).dataset.intensities.astype(float)
    single = simulate(preset_config("si110-static", slice_thickness_A=100.0, **kw))
    diff = np.abs(multi - single.dataset.intensities).sum() / multi.sum()
    assert diff > 0.15


def test_dose_gives_poisson_counts():
    clean = simulate(tiny("hbn-static"))
    dose = 2e4
    noisy = simulate(tiny("hbn-static", dose_e_per_A2=dose))
    counts = noisy.dataset.intensities.astype(np.float64)
    assert np.all(counts == np.round(counts))
    mean = dose * 0.5 * 0.5 * clean.dataset.intensities.astype(np.float64)
    # sum over each pattern: Poisson with mean sum(mean), so z-scores ~ N(0, 1)
    z = (counts.sum(axis=(2, 3)) - mean.sum(axis=(2, 3))) / np.sqrt(mean.sum(axis=(2, 3)))
    assert np.max(np.abs(z)) < 4.5
    np.testing.assert_allclose(np.sum(np.abs(noisy.truth.probe) ** 2), dose * 0.25, rtol=1e-5)


def test_bad_parameters_name_the_item():
    with pytest.raises(InputError, match="unknown simulation preset 'graphene'"):
        preset_config("graphene")
    with pytest.raises(InputError, match="unknown simulation parameter.*'energy'"):
        preset_config("hbn-static", energy=60e3)
    with pytest.raises(InputError, match="'energy_eV'"):
        preset_config("hbn-static", energy_eV=-1.0)
    with pytest.raises(InputError, match="'scan_shape'"):
        preset_config("hbn-static", scan_shape=(0, 4))
    with pytest.raises(InputError, match="'n_configs'"):
        preset_config("hbn-static", n_configs=1.5)
    with pytest.raises(InputError, match="'dose_e_per_A2'"):
        preset_config("hbn-static", dose_e_per_A2=0.0)
    with pytest.raises(InputError, match="correlated si110 needs Si springs"):
        preset_config("si110-static", thermal_model="correlated")
    springs = {k: getattr(preset_config("si110-correlated"), k) for k in ("k_nn", "t_nn")}
    assert preset_config("si110-static", thermal_model="correlated", **springs).k_nn == 5.5
    with pytest.raises(InputError, match="'einstein_rms_A' is required"):
        preset_config("si110-static", thermal_model="einstein")
    with pytest.raises(InputError, match="'thickness_cells'"):
        preset_config("hbn-static", thickness_cells=2)
