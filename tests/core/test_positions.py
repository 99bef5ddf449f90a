"""Scan-position refinement: the position map, its gradients through the objective, and a
reconstruction that recovers drifted and jittered positions (issue 15)."""

from __future__ import annotations

import numpy as np
import pytest
from test_engine import ALPHA, DEFOCUS, DK, E_EV, NONE, STEP, K

from caviar_napari.core import optics
from caviar_napari.core.backend import get_backend
from caviar_napari.core.engine import plan_geometry, run_to_end
from caviar_napari.core.holdout import PatternSplit
from caviar_napari.core.multislice import MultisliceModel
from caviar_napari.core.objective import Objective
from caviar_napari.core.positions import AFFINE_SIZE, ScanPositions, nominal_from_refined
from caviar_napari.data.beam import wavelength_A
from caviar_napari.data.config import ReconstructionConfig, StageConfig
from caviar_napari.data.dataset import STEMDataset
from caviar_napari.errors import InputError
from caviar_napari.io.reconstruction import load_reconstruction, save_reconstruction

DOUBLE = get_backend("cpu", "double")


def _fd(fun, x, e, h):
    return (fun(x + h * e) - fun(x - h * e)) / (2 * h)


def test_position_map_is_bounded_mean_free_and_its_chain_rule_is_exact():
    rng = np.random.default_rng(1)
    nominal = np.stack(np.meshgrid(np.arange(4.0), np.arange(5.0), indexing="ij"), -1)
    scan = ScanPositions(nominal.reshape(-1, 2), bound_A=0.3, penalty=0.7)
    u = 2.0 * rng.standard_normal((20, 2))
    a = 0.1 * rng.standard_normal(AFFINE_SIZE)
    delta = scan.jitter_A(u)
    assert np.abs(delta).max() < 0.6 and np.allclose(delta.mean(axis=0), 0, atol=1e-15)
    # a scalar function of the shifts: f = Σ w ⊙ s
    w = rng.standard_normal((20, 2))
    g_u, g_a = scan.chain(w, u)
    e_u, e_a = rng.standard_normal((20, 2)), rng.standard_normal(AFFINE_SIZE)
    fd_u = _fd(lambda v: np.sum(w * scan.shifts_A(v, a)), u, e_u, 1e-6)
    fd_a = _fd(lambda v: np.sum(w * scan.shifts_A(u, v)), a, e_a, 1e-6)
    assert np.sum(g_u * e_u) == pytest.approx(fd_u, rel=1e-7)
    assert np.sum(g_a * e_a) == pytest.approx(fd_a, rel=1e-7)
    value, g_pen = scan.penalty_and_gradient(u)
    assert value == pytest.approx(0.7 * np.mean(np.sum(delta**2, axis=1)))
    fd_p = _fd(lambda v: scan.penalty_and_gradient(v)[0], u, e_u, 1e-6)
    assert np.sum(g_pen * e_u) == pytest.approx(fd_p, rel=1e-7)
    # the affine map: drift over the scan order, distortion about the scan centre
    drift_only = scan.shifts_A(None, [0, 0, 0, 0, 0.4, -0.2])
    np.testing.assert_allclose(drift_only[0], [-0.2, 0.1])
    np.testing.assert_allclose(drift_only[-1], [0.2, -0.1])
    with pytest.raises(InputError, match="position_bound_A"):
        ScanPositions(nominal.reshape(-1, 2), bound_A=0.0)


def _truth_shifts(positions_A: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A drift of 0.3 Å over the scan (along y and x) and 0.05 Å rms jitter, Å."""
    t = np.arange(len(positions_A)) / (len(positions_A) - 1) - 0.5
    drift = np.outer(t, [0.3, -0.2])
    jitter = 0.05 * rng.standard_normal(positions_A.shape)
    return drift + jitter


def grid_model(grid, slice_thickness_A=(1.0,), data: STEMDataset | None = None):
    """The float64 forward model on ``grid`` (with ``data``'s amplitudes when given)."""
    kw = {}
    if data is not None:
        patterns = np.fft.ifftshift(data.intensities, axes=(-2, -1)).reshape(-1, K, K)
        kw["amplitudes"] = np.sqrt(patterns)
    return MultisliceModel(
        DOUBLE,
        wavelength_A=wavelength_A(E_EV),
        pixel_size_A=grid.pixel_size_A,
        slice_thickness_A=list(slice_thickness_A),
        positions_px=grid.positions_px,
        object_shape=grid.object_shape,
        window=(K, K),
        **kw,
    )


def _shifted_dataset(scan=(7, 7), seed=4, step=STEP):
    """Forward data of a few Gaussian atoms recorded at drifted, jittered positions; returns
    (dataset at the nominal positions, true shifts Å, geometry, object)."""
    dummy = STEMDataset(np.ones((*scan, K, K), np.float32), E_EV, ALPHA, step, DK, DEFOCUS)
    grid = plan_geometry(dummy, ReconstructionConfig(**NONE).validate())
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: grid.object_shape[0], : grid.object_shape[1]]
    lo, hi = grid.positions_px.min(0), grid.positions_px.max(0)
    phase = np.zeros(grid.object_shape)
    for y, x in rng.uniform(lo, hi, size=(14, 2)):
        phase += 0.4 * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / 4.0)  # inside the band limit
    obj = np.exp(1j * phase)[None, None]
    probe = optics.make_probe((K, K), grid.pixel_size_A, E_EV, ALPHA, defocus_A=DEFOCUS) * 100.0
    model = grid_model(grid)
    truth = _truth_shifts(grid.positions_A, rng)
    inten = np.asarray(
        model.intensities(obj, probe[None], (0.0, 0.0), shifts_px=truth / grid.pixel_size_A)
    )
    inten = np.fft.fftshift(inten, axes=(-2, -1)).reshape(*scan, K, K)
    return STEMDataset(inten, E_EV, ALPHA, step, DK, DEFOCUS, source="drift.h5"), truth, grid, obj


def test_objective_gradient_of_positions_and_affine_matches_finite_differences():
    data, _, grid, obj = _shifted_dataset(scan=(4, 4))
    probe = optics.make_probe((K, K), grid.pixel_size_A, E_EV, ALPHA, defocus_A=DEFOCUS) * 90.0
    model = grid_model(grid, data=data)
    stage = StageConfig(name="s", iterations=1, refine=("object", "positions", "affine"))
    stage.validate()
    scan = ScanPositions(grid.positions_A, bound_A=0.5, penalty=1e-3)
    rng = np.random.default_rng(2)
    n = len(grid.positions_A)
    split = PatternSplit(
        fit=np.arange(n - 3), held=np.arange(n - 3, n), fit_norm=1e3, held_norm=1e2
    )
    fixed = {"probe": probe[None], "tilt": np.zeros(2)}
    fun = Objective(model, DOUBLE, stage, fixed, 1e3, grid.pixel_size_A, split=split, scan=scan)
    x = {
        "object": obj * np.exp(0.05j * rng.standard_normal(obj.shape)),
        "positions": 0.3 * rng.standard_normal((n, 2)),
        "affine": 0.02 * rng.standard_normal(AFFINE_SIZE),
    }
    f, g = fun(x)
    assert set(g) == {"object", "positions", "affine"}
    for key in ("positions", "affine"):
        e = rng.standard_normal(x[key].shape)

        def at(v, key=key):
            return fun({**x, key: v})[0]

        fd = _fd(at, x[key], e, 1e-6)
        assert np.sum(g[key] * e) == pytest.approx(fd, rel=1e-6), key
    # the held-out loss sees the refined positions too
    moved = fun.held_out_loss(x)
    assert moved != pytest.approx(fun.held_out_loss({**x, "affine": np.zeros(AFFINE_SIZE)}))


def _recipe(*, positions: bool) -> ReconstructionConfig:
    """Object and probe first, then (with ``positions``) the scan positions with them."""
    second = ("object", "probe", "positions", "affine") if positions else ("object", "probe")
    return ReconstructionConfig(
        stages=[
            StageConfig(name="object", iterations=40, refine=("object", "probe")),
            StageConfig(name="positions", iterations=80, refine=second),
        ],
        precision="double",
        holdout_fraction=0.0,
        **NONE,
    ).validate()


def _rms_after_common_shift(a: np.ndarray, b: np.ndarray) -> float:
    d = a - b
    d -= d.mean(axis=0)
    return float(np.sqrt(np.mean(np.sum(d**2, axis=1))))


def test_drifting_jittered_positions_are_recovered(tmp_path):
    data, truth, grid, obj = _shifted_dataset()
    nominal = run_to_end(data, _recipe(positions=False))
    state = run_to_end(data, _recipe(positions=True))
    found = state.scan_positions_A - grid.positions_A
    before = _rms_after_common_shift(np.zeros_like(truth), truth)
    after = _rms_after_common_shift(found, truth)
    assert before > 0.1
    assert after < 0.02, (before, after)
    # the refined positions fit the data better than the nominal ones at equal iterations
    assert state.loss[-1] < 0.5 * nominal.loss[-1]
    # the refinement travels with the reconstruction file and resumes exactly
    save_reconstruction(tmp_path / "r.h5", state)
    back = load_reconstruction(tmp_path / "r.h5")
    np.testing.assert_array_equal(back.positions_u, state.positions_u)
    np.testing.assert_array_equal(back.affine, state.affine)
    np.testing.assert_array_equal(back.scan_positions_A, state.scan_positions_A)


def test_caviar_reconstruct_refine_positions(tmp_path):
    """``caviar reconstruct --refine-positions`` recovers the positions into the RECON file."""
    from caviar_napari.cli import main
    from caviar_napari.io.config_file import save_yaml
    from caviar_napari.io.dataset import write_stem_h5

    data, truth, grid, _ = _shifted_dataset()
    write_stem_h5(tmp_path / "drift.h5", data)
    save_yaml(tmp_path / "recipe.yaml", _recipe(positions=False))
    out = tmp_path / "recon.h5"
    argv = ["reconstruct", str(tmp_path / "drift.h5"), "--out", str(out)]
    assert main([*argv, "--config", str(tmp_path / "recipe.yaml"), "--refine-positions"]) == 0
    state = load_reconstruction(out)
    assert [set(st.refine) >= {"positions", "affine"} for st in state.config.stages] == [True] * 2
    found = state.scan_positions_A - grid.positions_A
    assert _rms_after_common_shift(found, truth) < 0.02


def test_a_checkpointed_position_refinement_resumes_exactly(tmp_path):
    from test_engine import _collect

    from caviar_napari.core.engine import RunControl, run
    from caviar_napari.io.reconstruction import checkpoint_writer

    data, _, _, _ = _shifted_dataset(scan=(5, 5))
    ckpt = tmp_path / "ck.h5"
    cfg = _recipe(positions=True)
    cfg.stages[0].iterations, cfg.stages[1].iterations = 4, 6
    cfg.checkpoint_every, cfg.checkpoint_path = 3, str(ckpt)
    cfg = cfg.validate()
    ref = run_to_end(data, cfg, on_checkpoint=lambda st: None)
    control = RunControl()
    _collect(run(data, cfg, control=control, on_checkpoint=checkpoint_writer(ckpt)), 8, control)
    state = load_reconstruction(ckpt)
    assert state.iteration == 6 and state.positions_u is not None
    resumed = run_to_end(data, cfg, state=state, on_checkpoint=lambda st: None)
    assert resumed.loss == ref.loss
    np.testing.assert_array_equal(resumed.scan_positions_A, ref.scan_positions_A)
    np.testing.assert_array_equal(resumed.object, ref.object)


def test_positions_refine_through_minibatch_epochs_too():
    data, truth, grid, _ = _shifted_dataset()
    cfg = _recipe(positions=True)
    cfg.stages[1].minibatch_epochs, cfg.stages[1].minibatch_size = 10, 16
    state = run_to_end(data, cfg.validate())
    found = state.scan_positions_A - grid.positions_A
    assert _rms_after_common_shift(found, truth) < 0.02


def test_nominal_positions_are_recovered_from_the_refined_ones_and_the_variables():
    rng = np.random.default_rng(3)
    nominal = np.stack(np.meshgrid(np.arange(5.0), np.arange(6.0), indexing="ij"), -1)
    nominal = 0.7 * nominal.reshape(-1, 2) + np.array([3.0, -1.0])
    scan = ScanPositions(nominal, bound_A=0.4)
    u = rng.standard_normal((30, 2))
    affine = np.array([0.02, -0.01, 0.015, -0.03, 0.3, -0.2])
    refined = nominal + scan.shifts_A(u, affine)
    assert np.abs(refined - nominal).max() > 0.2  # the shifts are not negligible
    back = nominal_from_refined(refined, u, affine, 0.4)
    np.testing.assert_allclose(back, nominal, atol=1e-12)
    # one block only, or none
    np.testing.assert_allclose(
        nominal_from_refined(nominal + scan.shifts_A(u, None), u, None, 0.4), nominal, atol=1e-12
    )
    np.testing.assert_allclose(
        nominal_from_refined(nominal + scan.shifts_A(None, affine), None, affine, 0.4),
        nominal,
        atol=1e-12,
    )
    with pytest.raises(InputError, match="u has shape"):
        nominal_from_refined(refined, u[:3], affine, 0.4)


def test_refinement_summary_names_the_drift_and_warns_at_the_bound():
    from caviar_napari.core.positions import describe_refinement

    line, warnings = describe_refinement(np.array([[3.0, 0.0], [-3.0, 0.0]]), None, 0.5)
    assert "max 0.500 Å" in line and len(warnings) == 1 and "position_bound_A = 0.5" in warnings[0]
    line, warnings = describe_refinement(np.zeros((2, 2)), np.zeros(AFFINE_SIZE), 0.5)
    assert "drift (+0.000, +0.000)" in line and not warnings


def test_refine_flag_sets_every_stage_and_names_a_bad_block(tmp_path, capsys):
    from caviar_napari.cli import main

    data, _, _, _ = _shifted_dataset(scan=(3, 3))
    from caviar_napari.io.dataset import write_stem_h5

    write_stem_h5(tmp_path / "d.h5", data)
    argv = ["reconstruct", str(tmp_path / "d.h5"), "--out", str(tmp_path / "r.h5")]
    assert main([*argv, "--refine", "object,probe,positions", "--iterations", "2"]) == 0
    state = load_reconstruction(tmp_path / "r.h5")
    assert {tuple(st.refine) for st in state.config.stages} == {("object", "probe", "positions")}
    assert "scan positions refined" in capsys.readouterr().out
    assert main([*argv, "--refine", "object,wobble", "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert "wobble" in err and len(err.strip().splitlines()) == 1
