"""Engine machinery: geometry, setup, regularisers, stage changes, run control, exact resume."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from caviar_napari.core import engine, optics, states
from caviar_napari.core.backend import Backend, get_backend
from caviar_napari.core.engine import RunControl, initial_state, run, run_to_end
from caviar_napari.core.geometry import measured_amplitudes, plan_geometry
from caviar_napari.core.multislice import MultisliceModel
from caviar_napari.core.objective import l1_absorption, missing_wedge, wedge_weight
from caviar_napari.core.optimise import LBFGS
from caviar_napari.data.beam import wavelength_A
from caviar_napari.data.config import ReconstructionConfig, StageConfig, single_stage
from caviar_napari.data.dataset import STEMDataset
from caviar_napari.errors import InputError, MemoryBudgetError
from caviar_napari.io.reconstruction import checkpoint_writer, load_reconstruction

E_EV, ALPHA, K, DK, STEP, DEFOCUS = 80e3, 25.0, 24, 4.0, 0.8, 30.0
NONE = dict(detector_padding="none", device="cpu")


def _forward_dataset(scan=(5, 5), slices=1, dz=1.0, tilt=(0.0, 0.0), seed=0):
    """Forward-model data of a few random Gaussian atoms; returns (dataset, grid, truth)."""
    dummy = STEMDataset(np.ones((*scan, K, K), np.float32), E_EV, ALPHA, STEP, DK, DEFOCUS)
    grid = plan_geometry(dummy, ReconstructionConfig(**NONE).validate())
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: grid.object_shape[0], : grid.object_shape[1]]
    lo, hi = grid.positions_px.min(0), grid.positions_px.max(0)
    phase = np.zeros((slices, *grid.object_shape))
    for j in range(slices):
        for y, x in rng.uniform(lo, hi, size=(4, 2)):
            phase[j] += 0.3 * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / 2.0)
    obj = np.exp(1j * phase)[None]
    probe = optics.make_probe((K, K), grid.pixel_size_A, E_EV, ALPHA, defocus_A=DEFOCUS) * 100.0
    model = MultisliceModel(
        get_backend("cpu", "double"),
        wavelength_A=wavelength_A(E_EV),
        pixel_size_A=grid.pixel_size_A,
        slice_thickness_A=[dz] * slices,
        positions_px=grid.positions_px,
        object_shape=grid.object_shape,
        window=(K, K),
    )
    inten = np.asarray(model.intensities(obj, probe[None], tilt))
    inten = np.fft.fftshift(inten, axes=(-2, -1)).reshape(*scan, K, K)
    data = STEMDataset(inten, E_EV, ALPHA, STEP, DK, DEFOCUS, source="fm.h5")
    return data, grid, obj


def _two_stage(**kw) -> ReconstructionConfig:
    return ReconstructionConfig(
        stages=[
            StageConfig(name="one", iterations=4, probe_modes=2, refine=("object", "probe")),
            StageConfig(name="two", iterations=5, object_states=3, probe_modes=2),
        ],
        seed=3,
        **NONE,
        **kw,
    ).validate()


# ---------------------------------------------------------------- geometry and setup
def test_geometry_covers_every_window():
    data, _, _ = _forward_dataset(scan=(3, 4))
    cfg = ReconstructionConfig(object_padding_px=2, **NONE).validate()
    g = plan_geometry(data, cfg)
    assert g.window == (K, K)
    d = np.asarray(g.pixel_size_A)
    np.testing.assert_allclose(d, data.pixel_size_A)
    # origin = first probe position − (K//2 + padding) pixels; positions map back exactly
    np.testing.assert_allclose(g.object_origin_A, -(K // 2 + 2) * d)
    np.testing.assert_allclose(g.positions_px * d + g.object_origin_A, g.positions_A, atol=1e-12)
    corners = np.floor(g.positions_px + 0.5) - K // 2
    assert corners.min() == 2
    assert np.all(corners + K + 2 <= np.array(g.object_shape))


def test_scan_rotation_rotates_positions():
    data, _, _ = _forward_dataset(scan=(2, 3))
    data.scan_rotation_deg = 90.0
    g = plan_geometry(data, ReconstructionConfig(**NONE).validate())
    # scan x (0, 2·step) goes to detector-frame y = +2·step, x = 0
    np.testing.assert_allclose(g.positions_A[2] - g.positions_A[0], (2 * STEP, 0.0), atol=1e-12)


def test_detector_padding_when_data_exceed_band_limit():
    ky = 20
    inten = np.zeros((2, 2, ky, ky), np.float32)
    inten[..., 1:-1, 1:-1] = 1.0  # intensity up to the detector edge
    data = STEMDataset(inten, E_EV, ALPHA, STEP, (2.0, 3.0))
    g = plan_geometry(data, ReconstructionConfig(device="cpu").validate())
    assert g.window[0] > ky and g.window[1] > ky and g.window[0] % 2 == 0
    np.testing.assert_allclose(
        g.pixel_size_A, [1 / (n * dk) for n, dk in zip(g.window, data.reciprocal_sampling_invA)]
    )
    amp = measured_amplitudes(data, g)
    # every measured pixel is inside the mask (band limit of the padded window), padding is not
    shifted_mask = np.fft.fftshift(g.detector_mask)
    oy, ox = g.pad_offset
    assert shifted_mask[oy + 1 : oy + ky - 1, ox + 1 : ox + ky - 1].all()
    assert shifted_mask.sum() < shifted_mask.size
    assert np.all(np.fft.fftshift(amp[0])[~shifted_mask] == 0)
    # "none" keeps the window and masks what lies beyond the band limit
    g2 = plan_geometry(data, ReconstructionConfig(**NONE).validate())
    assert g2.window == (ky, ky) and not g2.detector_mask.all()


def test_faint_dark_field_beyond_band_limit_is_padded():
    """Thermal diffuse scattering is faint but is what the object states fit: a dark-field
    ring with 1e-4 of the intensity beyond the band limit must still be brought inside it."""
    ky = 24
    inten = np.zeros((2, 2, ky, ky), np.float32)
    inten[..., ky // 2 - 2 : ky // 2 + 3, ky // 2 - 2 : ky // 2 + 3] = 1.0  # bright field
    qy, qx = np.indices((ky, ky)) - ky // 2
    ring = np.hypot(qy, qx) > 0.9 * ky / 2 * 2 / 3
    inten[..., ring & (np.hypot(qy, qx) < ky / 2)] = 1e-4 * 25 / ring.sum()
    data = STEMDataset(inten, E_EV, ALPHA, STEP, 2.0)
    g = plan_geometry(data, ReconstructionConfig(device="cpu").validate())
    assert g.window[0] > ky and g.window[1] > ky
    shifted_mask = np.fft.fftshift(g.detector_mask)
    oy, ox = g.pad_offset
    measured = np.zeros_like(shifted_mask)
    measured[oy : oy + ky, ox : ox + ky] = inten[0, 0] > 0
    assert shifted_mask[measured].all()  # all the dark field is in the loss


def test_small_disc_is_not_padded_and_amplitudes_are_fft_ordered():
    inten = np.zeros((1, 2, 16, 16), np.float32)
    inten[:, :, 8, 8] = 4.0  # zero angle at [K//2, K//2]
    data = STEMDataset(inten, E_EV, ALPHA, STEP, 2.0)
    g = plan_geometry(data, ReconstructionConfig(device="cpu").validate())
    assert g.window == (16, 16)
    amp = measured_amplitudes(data, g)
    assert amp.shape == (2, 16, 16) and amp[0, 0, 0] == 2.0 and amp.sum() == 4.0


def test_initial_probe_power_equals_mean_counts():
    data, grid, _ = _forward_dataset()
    cfg = single_stage(probe_modes=3, **NONE)
    st = initial_state(data, cfg, grid, np.complex64)
    assert st.probe.shape == (3, K, K) and st.object.shape == (1, 1, *grid.object_shape)
    power = np.sum(np.abs(st.probe) ** 2, axis=(1, 2))
    assert power.sum() == pytest.approx(data.mean_total_intensity, rel=1e-5)
    assert np.all(np.diff(power) < 0)  # decreasing occupancies


# ---------------------------------------------------------------- regularisers
def _fd_check(fun, obj, rng):
    _, g = fun(obj)
    for _ in range(3):
        d = rng.normal(size=obj.shape) + 1j * rng.normal(size=obj.shape)
        eps = 1e-6
        fd = (fun(obj + eps * d)[0] - fun(obj - eps * d)[0]) / (2 * eps)
        assert fd == pytest.approx(2 * np.real(np.vdot(g, d)), rel=1e-6)


def _as_blocks(result):
    value, grad = result
    return value, {"object": grad}


def test_l1_absorption_gradient_and_effect():
    rng = np.random.default_rng(1)
    shape = (2, 2, 6, 5)
    amp = np.exp(rng.normal(scale=0.3, size=shape))
    obj = amp * np.exp(1j * rng.normal(size=shape))
    _fd_check(lambda o: l1_absorption(o, 0.7), obj, rng)
    # descending the penalty alone drives |O| to 1 and leaves the phase alone
    opt = LBFGS()
    x = {"object": obj.copy()}
    f, g = l1_absorption(x["object"], 1.0)
    g = {"object": g}
    for _ in range(150):
        x, f, g, _ = opt.step(lambda b: _as_blocks(l1_absorption(b["object"], 1.0)), x, f, g)
    o = x["object"]
    assert np.abs(np.log(np.abs(o))).max() < 0.01 < np.abs(np.log(amp)).max()
    np.testing.assert_allclose(np.angle(o), np.angle(obj), atol=1e-9)


def test_missing_wedge_gradient_and_effect():
    rng = np.random.default_rng(2)
    be = get_backend("cpu", "double")
    shape = (1, 4, 8, 8)
    obj = np.exp(1j * rng.normal(scale=0.2, size=shape)).astype(complex)
    w = wedge_weight(4, (8, 8), (0.3, 0.3), 2.0, 1.0)
    assert np.all(w[0] == 0) and np.all((w >= 0) & (w <= 1))
    assert w[1, 0, 0] == 1.0  # k_r = 0, k_z ≠ 0: fully in the wedge
    _fd_check(lambda o: missing_wedge(o, 0.3, w, be), obj, rng)
    # descending the penalty removes the in-wedge power and keeps the slice sum (k_z = 0)
    o = obj.copy()
    for _ in range(50):
        _, g = missing_wedge(o, 1.0, w, be)
        o = o - 0.5 * o.size * g

    def cone_power(a):  # power deep in the wedge, W > 1/2
        return np.sum(np.abs(np.fft.fftn(a, axes=(1, 2, 3))[0][w > 0.5]) ** 2)

    assert cone_power(o) < 1e-6 * cone_power(obj)
    np.testing.assert_allclose(o.sum(axis=1), obj.sum(axis=1), atol=1e-12)
    # a laterally smooth variation along z is removed, i.e. the slices become alike
    assert np.std(np.fft.fft2(o)[0, :, 0, 0]) < 1e-3 * np.std(np.fft.fft2(obj)[0, :, 0, 0])


def test_regularised_run_flattens_absorption():
    data, _, _ = _forward_dataset()
    base = single_stage(iterations=6, refine=("object",), **NONE)
    reg = single_stage(iterations=6, refine=("object",), **NONE)
    reg.stages[0].l1_absorption = 0.05
    amp_free = np.abs(run_to_end(data, base).object)
    amp_reg = np.abs(run_to_end(data, reg).object)
    assert np.abs(np.log(amp_reg)).mean() < 0.5 * np.abs(np.log(amp_free)).mean()


# ---------------------------------------------------------------- stage changes
def test_stage_changes_of_states_slices_and_modes():
    rng = np.random.default_rng(0)
    pixel = (0.3, 0.3)
    obj = np.exp(1j * rng.normal(scale=0.3, size=(1, 1, 16, 16))).astype(np.complex64)
    st3 = StageConfig(object_states=3, state_noise_rad=0.05).validate()
    a = states.adapt_object(obj, st3, np.random.default_rng(9), pixel)
    b = states.adapt_object(obj, st3, np.random.default_rng(9), pixel)
    np.testing.assert_array_equal(a, b)  # seeded
    noise = np.angle(a / obj)
    assert noise.std() == pytest.approx(0.05, rel=0.05)
    np.testing.assert_allclose(np.abs(a), np.broadcast_to(np.abs(obj), a.shape), rtol=1e-5)
    # the noise is band limited (2/3 Nyquist), so the model cannot alias it
    spec = np.abs(np.fft.fft2(noise)) ** 2
    assert spec[:, :, optics.band_limit_mask((16, 16), pixel) == 0].sum() < 1e-10 * spec.sum()
    # back to one state: the mean
    one = states.adapt_object(a, StageConfig().validate(), np.random.default_rng(0), pixel)
    np.testing.assert_allclose(one[0], a.mean(axis=0), rtol=1e-6)
    # slices 1 → 3: the product of the slices is the old transmission
    s3 = states.adapt_object(obj, StageConfig(slices=3).validate(), rng, pixel)
    assert s3.shape == (1, 3, 16, 16)
    np.testing.assert_allclose(s3.prod(axis=1), obj[:, 0], rtol=1e-5, atol=1e-6)

    probe = optics.probe_modes(optics.make_probe((16, 16), pixel, E_EV, ALPHA), 2) * 10.0
    p4 = states.adapt_probe(probe.astype(np.complex64), 4)
    assert p4.shape == (4, 16, 16)
    gram = np.einsum("iyx,jyx->ij", p4.conj(), p4)
    np.testing.assert_allclose(gram - np.diag(np.diag(gram)), 0, atol=1e-3 * abs(gram[0, 0]))
    assert np.abs(gram).trace() == pytest.approx(np.sum(np.abs(probe) ** 2), rel=1e-5)
    scale = np.sqrt(np.abs(gram[0, 0]) / np.sum(np.abs(probe[0]) ** 2))
    np.testing.assert_allclose(p4[:2], probe * scale, rtol=1e-4, atol=1e-6)
    p1 = states.adapt_probe(p4, 1)
    np.testing.assert_allclose(p1[0] / p4[0], p1[0, 8, 8] / p4[0, 8, 8], rtol=1e-5)


def test_stages_run_in_order_and_progress_reports():
    data, _, _ = _forward_dataset()
    cfg = _two_stage(update_every=2)
    reports = []
    gen = run(data, cfg)
    while True:
        try:
            reports.append(next(gen))
        except StopIteration as stop:
            final = stop.value
            break
    assert [p.iteration for p in reports] == list(range(1, 10))
    assert [p.stage_index for p in reports] == [0] * 4 + [1] * 5
    assert reports[-1].stage_name == "two" and reports[-1].total_iterations == 9
    with_copies = [p.iteration for p in reports if p.object is not None]
    assert with_copies == [2, 4, 6, 8, 9]  # every 2 and at each stage end
    assert reports[5].object.shape[0] == 3 and reports[5].probe.shape[0] == 2
    assert reports[-1].eta_s == 0 and reports[0].eta_s > 0
    assert final.finished and final.object.shape[0] == 3 and len(final.loss) == 9
    assert final.loss[3] < final.loss[0] and final.loss[-1] < final.loss[4]
    assert final.source == "fm.h5"
    # the separation report of the multi-state stage comes with its last iteration
    assert [p.iteration for p in reports if p.separation is not None] == [9]
    assert reports[-1].separation == final.diagnostics["separation"][0]
    assert reports[-1].separation["stage"] == "two" and reports[-1].separation["n_states"] == 3


def test_stalled_stage_ends_early(monkeypatch):
    from caviar_napari.core import optimise

    def stalled(self, fun, x, f, g):
        return x, f, g, optimise.StepInfo("stalled", 0.0, 1)

    monkeypatch.setattr(optimise.LBFGS, "step", stalled)
    data, _, _ = _forward_dataset()
    st = run_to_end(data, _two_stage())
    assert st.finished and st.iteration == 2 and len(st.loss) == 2  # one try per stage
    assert st.object.shape[0] == 3  # the second stage did start


def test_poisson_loss_run():
    data, _, _ = _forward_dataset()
    st = run_to_end(data, single_stage(iterations=5, loss="poisson", **NONE))
    assert st.config.loss == "poisson"
    assert np.all(np.diff(st.loss) <= 0) and st.loss[-1] < st.loss[0]


def test_tilt_is_refined():
    data, grid, obj = _forward_dataset(slices=3, dz=20.0, tilt=(6.0, -4.0))
    cfg = ReconstructionConfig(
        stages=[StageConfig(iterations=15, slices=3, slice_thickness_A=20.0, refine=("tilt",))],
        precision="double",
        **NONE,
    ).validate()
    start = initial_state(data, cfg, grid, np.complex128)
    start.object = obj.astype(np.complex128)
    start.probe = start.probe * (100.0 / np.sqrt(np.sum(np.abs(start.probe) ** 2)))
    final = run_to_end(data, cfg, state=start)
    np.testing.assert_allclose(final.tilt_mrad, (6.0, -4.0), atol=0.05)


def test_joint_tilt_refinement_from_flat_start_is_well_behaved():
    """The tilt has no gradient over the flat start object: its scale must stay bounded (no
    wild tilt excursions, no long line searches) until it becomes measurable."""
    data, _, _ = _forward_dataset(slices=2, dz=8.0, tilt=(2.0, 1.0))
    stage = StageConfig(
        iterations=8, slices=2, slice_thickness_A=8.0, refine=("object", "probe", "tilt")
    )
    cfg = ReconstructionConfig(stages=[stage], precision="double", update_every=1, **NONE)
    reports, gen = [], run(data, cfg)
    while True:
        try:
            reports.append(next(gen))
        except StopIteration as stop:
            final = stop.value
            break
    assert max(p.n_evals for p in reports) <= 3  # measured: 2
    assert np.all(np.abs(final.tilt_mrad) < 5.0)
    assert final.loss[-1] < 0.1 * final.loss[0]


# ---------------------------------------------------------------- memory
def test_memory_refusal(monkeypatch):
    data, _, _ = _forward_dataset()
    monkeypatch.setattr(Backend, "free_memory_bytes", lambda self: 2 << 20)  # 2 MiB
    cfg = single_stage(object_states=8, **NONE)
    with pytest.raises(MemoryBudgetError) as info:
        next(run(data, cfg))
    msg = str(info.value)
    assert "needs" in msg and "of 2.0 MiB available on the cpu" in msg
    assert "lower 'batch_size' (now " in msg
    est = engine.estimate_run_memory(data, cfg)
    assert est.needed_bytes > 2 << 20 and not est.fits


# ---------------------------------------------------------------- run control and resume
def _collect(gen, stop_after=None, control=None, pause_at=None, pause_s=0.0):
    """Drive ``gen``; optionally stop or pause (resumed from another thread) after iterations."""
    waited = 0.0
    while True:
        try:
            p = next(gen)
        except StopIteration as stop:
            return stop.value, waited
        if pause_at is not None and p.iteration == pause_at:
            control.pause()
            threading.Timer(pause_s, control.resume).start()
            t = time.perf_counter()
            try:
                p = next(gen)
            except StopIteration as stop:
                return stop.value, time.perf_counter() - t
            waited = time.perf_counter() - t
        if stop_after is not None and p.iteration == stop_after:
            control.stop()


def _same(a, b):
    np.testing.assert_array_equal(a.object, b.object)
    np.testing.assert_array_equal(a.probe, b.probe)
    np.testing.assert_array_equal(a.tilt_mrad, b.tilt_mrad)
    assert a.loss == b.loss


def test_stop_pause_resume_equal_uninterrupted_run():
    data, _, _ = _forward_dataset()
    cfg = _two_stage()
    ref = run_to_end(data, cfg)
    for stop_after in (2, 4, 6):  # inside stage 1, at the stage boundary, inside stage 2
        control = RunControl()
        stopped, _ = _collect(run(data, cfg, control=control), stop_after, control)
        assert stopped.iteration == stop_after and not stopped.finished
        resumed = run_to_end(data, cfg, state=stopped)
        _same(resumed, ref)
    control = RunControl()
    paused, waited = _collect(run(data, cfg, control=control), None, control, 3, 0.3)
    assert waited >= 0.3
    _same(paused, ref)


def test_run_control_reports_a_held_run():
    control = RunControl()
    assert not control.checkpoint(0.01) and not control.held  # running: no hold
    control.pause()
    assert control.paused and not control.held  # held only once the run reaches a boundary
    result = []
    engine = threading.Thread(target=lambda: result.append(control.checkpoint(30.0)))
    engine.start()
    deadline = time.perf_counter() + 10.0
    while not control.held and time.perf_counter() < deadline:
        time.sleep(0.005)
    assert control.held and engine.is_alive()
    control.resume()
    engine.join(10.0)
    assert result == [False] and not control.held and not control.paused
    control.pause()  # paused, then stopped: the run is released and told to stop
    engine = threading.Thread(target=lambda: result.append(control.checkpoint(30.0)))
    engine.start()
    while not control.held and time.perf_counter() < deadline:
        time.sleep(0.005)
    control.stop()
    engine.join(10.0)
    assert result == [False, True] and not control.held and control.stopped
    control.pause()  # a stopped run cannot be paused again
    assert not control.paused and control.checkpoint(0.01)


def test_checkpoint_resume_equals_uninterrupted_run(tmp_path):
    data, _, _ = _forward_dataset()
    ckpt = tmp_path / "ck.h5"
    cfg = _two_stage(checkpoint_every=3, checkpoint_path=str(ckpt))
    seen = []
    ref = run_to_end(data, cfg, on_checkpoint=lambda st: seen.append(st.iteration))
    assert seen == [3, 6, 9] and not ckpt.exists()  # the engine itself writes nothing
    control = RunControl()
    run_ckpt = run(data, cfg, control=control, on_checkpoint=checkpoint_writer(ckpt))
    _collect(run_ckpt, 7, control)  # checkpoints at 3 and 6
    state = load_reconstruction(ckpt)
    assert (state.iteration, state.stage_index, state.stage_iteration) == (6, 1, 2)
    assert state.optimiser_state["n_pairs"] >= 1 and state.rng_state is not None
    seen.clear()
    resumed = run_to_end(data, cfg, state=state, on_checkpoint=lambda st: seen.append(st.iteration))
    assert seen == [9]
    _same(resumed, ref)


def test_checkpoints_without_a_writer_are_refused():
    data, _, _ = _forward_dataset()
    cfg = single_stage(iterations=2, checkpoint_every=1, checkpoint_path="ck.h5", **NONE)
    with pytest.raises(InputError, match=r"'checkpoint_every' is 1 but .* no checkpoint writer"):
        run_to_end(data, cfg)


def test_control_stop_while_paused_and_finished_state():
    control = RunControl()
    control.pause()
    assert control.paused and not control.checkpoint(timeout=0.01)
    threading.Timer(0.05, control.stop).start()
    assert control.checkpoint() and control.stopped
    data, _, _ = _forward_dataset()
    cfg = single_stage(iterations=2, **NONE)
    done = run_to_end(data, cfg)
    again = run_to_end(data, cfg, state=done)  # nothing left to do
    _same(again, done)


def test_state_from_another_grid_is_rejected():
    data, grid, _ = _forward_dataset()
    cfg = single_stage(iterations=1, **NONE)
    st = initial_state(data, cfg, grid, np.complex64)
    st.object = st.object[..., :-2]
    with pytest.raises(InputError, match="does not fit this dataset's grid"):
        run_to_end(data, cfg, state=st)


# ---------------------------------------------------------------- GPU
@pytest.mark.gpu
def test_gpu_run_matches_cpu():
    """Same staged, regularised multislice run on cupy and numpy (double precision)."""
    data, _, _ = _forward_dataset(slices=2, dz=8.0, tilt=(2.0, 1.0))
    stage = dict(slices=2, slice_thickness_A=8.0, l1_absorption=0.01, missing_wedge=0.01)
    cfg = ReconstructionConfig(
        stages=[
            StageConfig(iterations=3, probe_modes=2, refine=("object", "probe", "tilt"), **stage),
            StageConfig(iterations=3, object_states=2, probe_modes=2, **stage),
        ],
        precision="double",
        detector_padding="none",
    )
    on_cpu = run_to_end(data, ReconstructionConfig.from_dict({**cfg.to_dict(), "device": "cpu"}))
    on_gpu = run_to_end(data, ReconstructionConfig.from_dict({**cfg.to_dict(), "device": "gpu"}))
    assert isinstance(on_gpu.object, np.ndarray)
    # same iterates to well below what one iteration changes (a perturbation of the data by
    # 1e-7 moves the CPU losses by ~1e-8 relative)
    np.testing.assert_allclose(on_gpu.loss, on_cpu.loss, rtol=1e-6)
    np.testing.assert_allclose(on_gpu.object, on_cpu.object, rtol=0, atol=1e-6)
    np.testing.assert_allclose(on_gpu.probe, on_cpu.probe, rtol=0, atol=1e-6 * 100)
    np.testing.assert_allclose(on_gpu.tilt_mrad, on_cpu.tilt_mrad, atol=1e-6)
