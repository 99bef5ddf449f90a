"""Round trips through the engine on data made with the forward model (known truth).

Small on purpose: an 8×8 scan with 0.8 Å steps, a 32×32 detector (3 mrad pixels, 80 keV,
25 mrad aperture, 40 Å defocus), objects of Gaussian phase peaks (σ = 1 px) at sub-pixel sites.
The data are made by :class:`MultisliceModel` on exactly the grid the engine will plan (same
window, pixel, origin), with ``detector_padding: none`` so that the engine's model is the one
that made the data.
"""

from __future__ import annotations

import numpy as np
import pytest

from caviar_napari.core import optics
from caviar_napari.core.backend import get_backend
from caviar_napari.core.engine import plan_geometry, run_to_end
from caviar_napari.core.multislice import MultisliceModel
from caviar_napari.data.beam import wavelength_A
from caviar_napari.data.config import ReconstructionConfig, StageConfig, single_stage
from caviar_napari.data.dataset import STEMDataset

E_EV, ALPHA, K, DK, STEP, DEFOCUS, SCAN = 80e3, 25.0, 32, 3.0, 0.8, 40.0, (8, 8)


def _grid():
    dummy = STEMDataset(np.ones((*SCAN, K, K), np.float32), E_EV, ALPHA, STEP, DK, DEFOCUS)
    return plan_geometry(dummy, ReconstructionConfig(detector_padding="none").validate())


def _probe(grid, modes=1, decay=0.3):
    p = optics.make_probe((K, K), grid.pixel_size_A, E_EV, ALPHA, defocus_A=DEFOCUS)
    return optics.probe_modes(p * np.sqrt(1e4), modes, decay=decay)  # 1e4 counts per pattern


def _phase(grid, sites, amp=0.4, sigma=1.0):
    yy, xx = np.mgrid[: grid.object_shape[0], : grid.object_shape[1]]
    d2 = (yy[None] - sites[:, 0, None, None]) ** 2 + (xx[None] - sites[:, 1, None, None]) ** 2
    return (amp * np.exp(-d2 / (2 * sigma**2))).sum(0)


def _dataset(grid, objects, probe) -> STEMDataset:
    """Mean-over-states intensities of ``objects`` (N, 1, H, W) with ``probe`` (M, K, K)."""
    model = MultisliceModel(
        get_backend("cpu", "double"),
        wavelength_A=wavelength_A(E_EV),
        pixel_size_A=grid.pixel_size_A,
        slice_thickness_A=[1.0],
        positions_px=grid.positions_px,
        object_shape=grid.object_shape,
        window=(K, K),
    )
    inten = np.fft.fftshift(np.asarray(model.intensities(objects, probe)), axes=(-2, -1))
    return STEMDataset(inten.reshape(*SCAN, K, K), E_EV, ALPHA, STEP, DK, DEFOCUS, source="fm")


def _scanned(grid):
    lo = np.ceil(grid.positions_px.min(0)).astype(int)
    hi = np.floor(grid.positions_px.max(0)).astype(int)
    return slice(lo[0], hi[0] + 1), slice(lo[1], hi[1] + 1)


def _peak(img, site):
    """Sub-pixel maximum near ``site``: Gaussian (log-parabola) 3-point fit per axis."""
    iy, ix = (int(round(v)) for v in site)
    win = img[iy - 1 : iy + 2, ix - 1 : ix + 2]
    jy, jx = np.unravel_index(np.argmax(win), win.shape)
    iy, ix = iy + jy - 1, ix + jx - 1
    v = np.log(np.maximum(img[iy - 1 : iy + 2, ix - 1 : ix + 2], 1e-9))
    dy = 0.5 * (v[0, 1] - v[2, 1]) / (v[0, 1] - 2 * v[1, 1] + v[2, 1])
    dx = 0.5 * (v[1, 0] - v[1, 2]) / (v[1, 0] - 2 * v[1, 1] + v[1, 2])
    return np.array([iy + dy, ix + dx])


def _corr(a, b):
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def test_atoms_round_trip_from_flat_start():
    grid = _grid()
    centre = grid.positions_px.mean(0)
    sites = centre + np.array([(-3.3, -2.7), (2.6, 3.2), (3.1, -3.4), (-2.8, 3.6)])
    truth = _phase(grid, sites)
    data = _dataset(grid, np.exp(1j * truth)[None, None], _probe(grid))
    cfg = single_stage(
        iterations=30, refine=("object", "probe"), device="cpu", detector_padding="none"
    )
    state = run_to_end(data, cfg)

    assert state.object.shape == (1, 1, *grid.object_shape)
    assert state.object_origin_A == grid.object_origin_A
    assert state.loss[-1] < 0.02 * state.loss[0]  # after the first iteration
    rec = np.angle(state.object[0, 0])
    area = _scanned(grid)
    corr = _corr(rec[area], truth[area])
    assert corr > 0.95, corr  # measured 0.997
    background = np.median(rec[area])
    found = np.array([_peak(rec - background, s) for s in sites])
    # the estimator is exact on the truth itself, so any error is the reconstruction's
    np.testing.assert_allclose([_peak(truth, s) for s in sites], sites, atol=1e-3)
    err = np.abs(found - sites).max()
    assert err < 0.1, err  # measured 0.026 px
    # phase positive on the atoms
    assert all(rec[tuple(np.round(s).astype(int))] > background + 0.2 for s in sites)


@pytest.mark.parametrize("seed", [0, 1])
def test_two_configurations_give_two_states(seed):
    """Data = mean of two configurations (centre atom shifted ±2.5 px in x, four fixed atoms).

    The shifted atom is one probe footprint: beyond a footprint the data only fix each
    region's states up to their order, so a far-apart sublattice could legally mix.
    """
    grid = _grid()
    centre = grid.positions_px.mean(0)
    fixed = centre + np.array([(-3.0, -3.0), (3.0, 3.0), (-3.0, 3.0), (3.0, -3.0)])
    shift = np.array([(0.0, 2.5)])
    configs = [_phase(grid, np.concatenate([fixed, centre + s]), amp=0.8) for s in (shift, -shift)]
    data = _dataset(grid, np.exp(1j * np.stack(configs))[:, None], _probe(grid))
    cfg = ReconstructionConfig(
        device="cpu",
        detector_padding="none",
        seed=seed,
        stages=[
            StageConfig(name="mean", iterations=20, refine=("object",)),
            StageConfig(
                name="states",
                iterations=100,
                object_states=2,
                refine=("object",),
                state_noise_rad=0.05,
            ),
        ],
    )
    state = run_to_end(data, cfg)
    assert state.object.shape[0] == 2
    rec = np.angle(state.object[:, 0])
    area = _scanned(grid)
    c = np.array([[_corr(rec[i][area], t[area]) for t in configs] for i in range(2)])
    order = (0, 1) if c[0, 0] + c[1, 1] > c[0, 1] + c[1, 0] else (1, 0)
    matched = [c[i, order[i]] for i in range(2)]
    crossed = [c[i, 1 - order[i]] for i in range(2)]
    assert min(matched) > 0.97, c  # measured ≥ 0.99
    assert max(crossed) < min(matched) - 0.15, c
    # the shifted atom sits at +2.5 px in one state and −2.5 px in the other
    diff_rec = (rec[0] - rec[1])[area]
    diff_true = (configs[order[0]] - configs[order[1]])[area]
    assert _corr(diff_rec, diff_true) > 0.9
    x_found = [
        _peak(rec[i] - np.median(rec[i][area]), centre + s)[1]
        for i, s in zip(
            range(2), (shift[0], -shift[0]) if order == (0, 1) else (-shift[0], shift[0])
        )
    ]
    assert abs(x_found[0] - x_found[1]) == pytest.approx(5.0, abs=0.5)


def test_partially_coherent_probe_needs_modes():
    grid = _grid()
    centre = grid.positions_px.mean(0)
    sites = centre + np.array([(-3.3, -2.7), (2.6, 3.2), (3.1, -3.4), (-2.8, 3.6), (0.2, 0.1)])
    probe = _probe(grid, modes=3, decay=0.5)
    data = _dataset(grid, np.exp(1j * _phase(grid, sites))[None, None], probe)
    final = {}
    for modes in (1, 3):
        cfg = single_stage(
            iterations=40,
            probe_modes=modes,
            refine=("object", "probe"),
            device="cpu",
            detector_padding="none",
        )
        state = run_to_end(data, cfg)
        assert state.probe.shape == (modes, K, K)
        final[modes] = state.loss[-1]
        # total probe power stays the data's mean counts per pattern
        assert np.sum(np.abs(state.probe) ** 2) == pytest.approx(1e4, rel=0.05)
    assert final[3] < 0.1 * final[1], final  # measured 9.6e-6 vs 3.4e-4
