"""The paper's tilt estimate from adjacent slices, and the probe constraints (aperture support,
fixed total intensity): sign conventions against the forward model, gradients against finite
differences, and runs that keep them (issue 15)."""

from __future__ import annotations

import numpy as np
import pytest
from test_engine import ALPHA, DEFOCUS, DK, E_EV, NONE, STEP, K, _collect
from test_positions import _recipe, _shifted_dataset, grid_model

from caviar_napari.core import optics
from caviar_napari.core.backend import get_backend
from caviar_napari.core.engine import RunControl, plan_geometry, run, run_to_end
from caviar_napari.core.objective import Objective
from caviar_napari.core.probe_constraints import ProbeConstraint
from caviar_napari.core.tilt import align_slices, estimate_tilt
from caviar_napari.data.beam import wavelength_A
from caviar_napari.data.config import ReconstructionConfig, StageConfig
from caviar_napari.data.dataset import STEMDataset
from caviar_napari.errors import InputError
from caviar_napari.io.reconstruction import checkpoint_writer, load_reconstruction

DOUBLE = get_backend("cpu", "double")
DZ = 60.0  # about the depth resolution λ/α² of these optics (67 Å)
TILT = (5.0, -3.0)


def _grid(scan=(6, 6)):
    dummy = STEMDataset(np.ones((*scan, K, K), np.float32), E_EV, ALPHA, STEP, DK, DEFOCUS)
    return plan_geometry(dummy, ReconstructionConfig(**NONE).validate())


def _atoms(grid, rng, n=16, width=4.0):
    yy, xx = np.mgrid[: grid.object_shape[0], : grid.object_shape[1]]
    lo, hi = grid.positions_px.min(0) - 2, grid.positions_px.max(0) + 2
    phase = np.zeros(grid.object_shape)
    for y, x in rng.uniform(lo, hi, size=(n, 2)):
        phase += 0.3 * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / width)
    return np.exp(1j * phase)


def _model(grid, slices, data=None):
    return grid_model(grid, [DZ] * slices, data=data)


def test_tilt_estimate_agrees_with_the_propagator_convention():
    """Slices displaced as an untilted reconstruction of a tilted crystal shows them give the
    data of the aligned slices under the estimated tilt (the sign of the propagator's shift)."""
    grid = _grid()
    rng = np.random.default_rng(3)
    base = _atoms(grid, rng)
    tilted = np.stack([base] * 3)[None]  # the crystal: identical slices
    model = _model(grid, 3)
    probe = optics.make_probe((K, K), grid.pixel_size_A, E_EV, ALPHA, defocus_A=DEFOCUS)[None]
    truth = np.asarray(model.intensities(tilted, probe, TILT))
    # the same data as the untilted propagator would have to explain them: slices moved
    d = -DZ * np.tan(np.asarray(TILT) * 1e-3)
    moved = align_slices(tilted, tuple(-d), grid.pixel_size_A)  # slice j moved by +j·d
    flat = np.asarray(model.intensities(moved, probe, (0.0, 0.0)))
    wrong = align_slices(tilted, tuple(d), grid.pixel_size_A)  # the opposite sign
    opposite = np.asarray(model.intensities(wrong, probe, (0.0, 0.0)))
    assert np.abs(flat - truth).max() < 0.1 * np.abs(opposite - truth).max()
    est = estimate_tilt(moved, DZ, grid.pixel_size_A)
    np.testing.assert_allclose(est.tilt_mrad, TILT, atol=0.2)
    np.testing.assert_allclose(est.shift_per_gap_A, d, atol=0.005)
    assert est.n_gaps == 2
    # realigned, the slices agree again
    back = align_slices(moved, est.shift_per_gap_A, grid.pixel_size_A)
    inner = (slice(None), slice(None), slice(8, -8), slice(8, -8))
    assert np.abs(back[inner] - tilted[inner]).max() < 0.02
    # against a tilt already in use, the estimate is the total tilt
    est0 = estimate_tilt(moved, DZ, grid.pixel_size_A, tilt_used_mrad=(1.0, 0.0))
    assert est0.tilt_mrad[0] == pytest.approx(TILT[0] + 1.0, abs=0.2)


def test_stages_with_tilt_estimate_converge_to_the_crystal_tilt():
    """Multislice data of a tilted crystal, reconstructed untilted first, then short stages
    that each estimate the tilt from their slices. With slices near the depth resolution one
    estimate gives part of the tilt (the slices are not fully resolved); each round closes
    most of what is left."""
    grid = _grid()
    base = _atoms(grid, np.random.default_rng(5))
    probe = optics.make_probe((K, K), grid.pixel_size_A, E_EV, ALPHA, defocus_A=DEFOCUS) * 100
    inten = np.asarray(_model(grid, 3).intensities(np.stack([base] * 3)[None], probe[None], TILT))
    inten = np.fft.fftshift(inten, axes=(-2, -1)).reshape(6, 6, K, K)
    data = STEMDataset(inten, E_EV, ALPHA, STEP, DK, DEFOCUS, source="tilted.h5")
    common = dict(slices=3, slice_thickness_A=DZ, refine=("object", "probe"))
    rounds = [StageConfig(name=f"tilt {i}", iterations=40, tilt_estimate=True, **common)
              for i in range(4)]  # fmt: skip
    cfg = ReconstructionConfig(
        stages=[StageConfig(name="untilted", iterations=60, **common), *rounds],
        precision="double",
        holdout_fraction=0.0,
        **NONE,
    ).validate()
    state = run_to_end(data, cfg)
    found = [state.diagnostics["tilt_estimate"][st.name]["tilt_mrad"] for st in rounds]
    errors = [np.hypot(*(np.asarray(t) - TILT)) for t in found]
    assert all(b < a for a, b in zip(errors, errors[1:])), found
    assert errors[0] < 0.6 * np.hypot(*TILT)
    np.testing.assert_allclose(found[-1], TILT, atol=0.5)
    np.testing.assert_allclose(state.tilt_mrad, found[-1])  # kept fixed in the stage
    with pytest.raises(InputError, match="tilt_estimate' needs slices"):
        StageConfig(name="x", tilt_estimate=True).validate()


def _constraint(grid, intensity=2.5e3):
    return ProbeConstraint(
        DOUBLE, (K, K), grid.pixel_size_A, wavelength_A(E_EV), ALPHA, intensity=intensity
    )


def test_probe_constraints_are_projections_with_exact_gradients():
    data, _, grid, obj = _shifted_dataset(scan=(4, 4))
    pc = _constraint(grid)
    rng = np.random.default_rng(7)
    probe = optics.make_probe((K, K), grid.pixel_size_A, E_EV, ALPHA, defocus_A=DEFOCUS) * 40.0
    free = np.stack([probe, 0.3 * probe.T]) + 0.2 * (
        rng.standard_normal((2, K, K)) + 1j * rng.standard_normal((2, K, K))
    )
    seen = pc.apply(free)
    assert np.sum(np.abs(seen) ** 2) == pytest.approx(2.5e3)
    np.testing.assert_allclose(pc.apply(seen), seen, atol=1e-12 * np.abs(seen).max())
    outside = np.abs(np.fft.fft2(seen)) * (1 - np.asarray(pc.mask))
    assert outside.max() < 1e-9 * np.abs(np.fft.fft2(seen)).max()
    model = grid_model(grid, data=data)
    stage = StageConfig(name="s", probe_modes=2, refine=("object", "probe")).validate()
    fun = Objective(
        model, DOUBLE, stage, {"tilt": np.zeros(2)}, 1e3, grid.pixel_size_A, probe_constraint=pc
    )
    x = {"object": obj, "probe": free}
    _, g = fun(x)
    for _ in range(3):
        e = rng.standard_normal(free.shape) + 1j * rng.standard_normal(free.shape)
        h = 1e-6
        fd = (fun({**x, "probe": free + h * e})[0] - fun({**x, "probe": free - h * e})[0]) / (2 * h)
        assert 2 * np.sum((g["probe"].conj() * e).real) == pytest.approx(fd, rel=1e-6)


def test_a_constrained_run_keeps_its_probe_and_resumes_exactly(tmp_path):
    data, _, grid, _ = _shifted_dataset(scan=(5, 5))
    ckpt = tmp_path / "ck.h5"
    stage = dict(probe_modes=2, probe_support="aperture", fixed_probe_intensity=True)
    cfg = ReconstructionConfig(
        stages=[StageConfig(name="s", iterations=8, refine=("object", "probe"), **stage)],
        precision="double",
        holdout_fraction=0.0,
        checkpoint_every=3,
        checkpoint_path=str(ckpt),
        **NONE,
    ).validate()
    ref = run_to_end(data, cfg, on_checkpoint=lambda st: None)
    assert np.sum(np.abs(ref.probe) ** 2) == pytest.approx(data.mean_total_intensity, rel=1e-9)
    pc = ProbeConstraint(DOUBLE, (K, K), grid.pixel_size_A, wavelength_A(E_EV), ALPHA)
    np.testing.assert_allclose(pc.apply(ref.probe), ref.probe, atol=1e-9 * np.abs(ref.probe).max())
    control = RunControl()
    _collect(run(data, cfg, control=control, on_checkpoint=checkpoint_writer(ckpt)), 5, control)
    state = load_reconstruction(ckpt)
    assert state.probe_variable is not None
    resumed = run_to_end(data, cfg, state=state, on_checkpoint=lambda st: None)
    assert resumed.loss == ref.loss
    np.testing.assert_array_equal(resumed.probe, ref.probe)


def test_constraints_and_positions_compose():
    """Aperture support with position refinement still recovers the positions."""
    data, truth, grid, _ = _shifted_dataset()
    cfg = _recipe(positions=True)
    for st in cfg.stages:
        st.probe_support = "aperture"
    state = run_to_end(data, cfg.validate())
    d = state.scan_positions_A - grid.positions_A - truth
    d -= d.mean(axis=0)
    assert np.sqrt(np.mean(np.sum(d**2, axis=1))) < 0.02
