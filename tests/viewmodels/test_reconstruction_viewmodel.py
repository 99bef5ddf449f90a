"""The Reconstruction view-model without Qt: calibration, sources, run control, pacing, jobs,
the dry run (each stage's grid, loss, held-out positions, memory plan) and the live separation
report."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from caviar_napari.core import engine
from caviar_napari.core.separation import SeparationReport
from caviar_napari.data import config as cfg
from caviar_napari.errors import InputError
from caviar_napari.io.dataset import STEMDataset
from caviar_napari.viewmodels import reconstruction as rvm
from caviar_napari.viewmodels.recon_images import reconstruction_images
from caviar_napari.viewmodels.recon_plan import check_dock_run, plan_job, run_plan
from caviar_napari.viewmodels.recon_report import live_report, result_report, separation_warnings


def _finish(gen):
    """Run a job generator to its end; return its value."""
    try:
        while True:
            next(gen)
    except StopIteration as stop:
        return stop.value


def tiny_dataset() -> STEMDataset:
    """4×4 scan, 24×24 detector with a bright-field disc."""
    k = 24
    q = np.hypot(*np.meshgrid(np.arange(k) - k // 2, np.arange(k) - k // 2, indexing="ij"))
    disc = (q <= 6).astype(np.float32)
    scale = 1.0 + 0.1 * np.random.default_rng(3).random((4, 4, 1, 1))
    return STEMDataset(
        intensities=(100 * disc * scale).astype(np.float32),
        energy_eV=60e3,
        convergence_semiangle_mrad=12.0,
        scan_step_A=(0.8, 0.5),
        angular_sampling_mrad=2.0,
        source="tiny.h5",
    )


def tiny_config(iterations=(2, 2)) -> cfg.ReconstructionConfig:
    return cfg.two_stage_preset(
        object_states=3, probe_modes=2, iterations=iterations, update_every=1, device="cpu"
    )


def test_calibration_round_trip_and_rescaled_positions():
    dataset = tiny_dataset()
    calibration = rvm.Calibration.of(dataset)
    same = calibration.apply(dataset)
    assert same.energy_eV == dataset.energy_eV and same.scan_step_A == (0.8, 0.5)
    np.testing.assert_array_equal(same.positions_A, dataset.positions_A)
    assert same.intensities is dataset.intensities  # shared, not copied
    edited = dataclasses.replace(calibration, scan_step_A=(1.6, 0.5), defocus_A=-20.0)
    moved = edited.apply(dataset)
    p0 = dataset.positions_A[0, 0]
    np.testing.assert_allclose(
        moved.positions_A[..., 0] - p0[0], 2 * (dataset.positions_A[..., 0] - p0[0])
    )
    np.testing.assert_allclose(moved.positions_A[..., 1], dataset.positions_A[..., 1])
    assert moved.defocus_A == -20.0 and dataset.defocus_A == 0.0
    with pytest.raises(InputError):  # the dataset validates what the user typed
        dataclasses.replace(calibration, energy_eV=-1.0).apply(dataset)


def test_data_sources_keys_and_lookup():
    sources = rvm.DataSources()
    a, b = tiny_dataset(), tiny_dataset()
    assert sources.add_file("/data/x.h5", a) == "file:/data/x.h5"
    assert sources.keep("scan 4D-STEM", b) == "kept:scan 4D-STEM"
    layer = tiny_dataset()
    assert sources.entries(["l1"]) == [
        ("layer: l1", "layer:l1"),
        ("file: x.h5", "file:/data/x.h5"),
        ("data: scan 4D-STEM (kept here)", "kept:scan 4D-STEM"),
    ]
    assert sources.dataset("file:/data/x.h5", {}) is a
    assert sources.dataset("kept:scan 4D-STEM", {}) is b
    assert sources.dataset("layer:l1", {"l1": layer}) is layer
    assert sources.dataset("layer:gone", {}) is None and sources.dataset(None, {}) is None


def test_buttons_follow_the_run_and_the_estimate():
    vm = rvm.ReconstructionViewModel()
    assert vm.buttons() == rvm.ButtonStates(False, False, False, False, False)  # no data
    with pytest.raises(InputError, match="no 4D-STEM data"):
        vm.begin(None)
    vm.select(tiny_dataset())
    assert vm.buttons().start
    request = vm.begin(None)
    assert request.iterations_left == vm.config.total_iterations and vm.is_running
    assert vm.buttons() == rvm.ButtonStates(False, True, False, True, False)
    vm.pause()
    assert vm.paused and vm.buttons() == rvm.ButtonStates(False, False, True, True, False)
    vm.resume()
    vm.stop()
    assert vm.stopping and vm.buttons() == rvm.ButtonStates(False, False, False, False, False)
    with pytest.raises(InputError, match="already running"):
        vm.begin(None)
    vm.end()
    assert not vm.is_running and vm.buttons().start


def test_estimate_that_does_not_fit_refuses_the_start():
    from caviar_napari.core.memory import MemoryEstimate

    vm = rvm.ReconstructionViewModel()
    vm.select(tiny_dataset())
    text, ok = vm.accept_estimate(
        MemoryEstimate(parts={"data": 100, "object": 50}, available_bytes=10**6, stage="s")
    )
    assert ok and text.startswith("memory: needs ") and vm.buttons().start
    text, ok = vm.accept_estimate(
        MemoryEstimate(parts={"data": 10, "object": 5000}, available_bytes=1000, stage="s")
    )
    assert not ok and "does not fit: lower 'object_states'" in text and not vm.buttons().start
    with pytest.raises(InputError, match="the run needs .* lower 'object_states'"):
        vm.begin(None)
    text, ok = vm.accept_estimate(InputError("no GPU: cupy is not installed"))
    assert not ok and text == "cannot start: no GPU: cupy is not installed"
    assert vm.estimate is None and vm.buttons().start  # unknown: the run may try


def test_result_text_and_warnings_are_kept():
    vm = rvm.ReconstructionViewModel()
    vm.select(tiny_dataset())
    vm.begin(None)
    state = engine.run_to_end(vm.calibrated_dataset(), tiny_config((1, 1)))
    images = reconstruction_images(
        state.object, state.probe, state.pixel_size_A, state.object_origin_A
    )
    text = vm.accept_result(
        rvm.RunResult(state, images, stopped=False, warnings=("states did not separate",))
    )
    assert text.startswith("finished: 2 iterations; loss ")
    assert vm.warnings == ["states did not separate"] and vm.result_source == "tiny.h5"
    vm.end()
    assert vm.buttons().save


def test_jobs_prepare_run_and_stop():
    dataset = tiny_dataset()
    config = tiny_config((2, 2))
    # the layers are prepared in the run's shape: 3 state slots from the start
    gen = rvm.prepare_job(dataset, config, None)
    next(gen)
    with pytest.raises(StopIteration) as stop:
        next(gen)
    images = stop.value.value
    geometry = engine.plan_geometry(dataset, config)
    assert images.phase.shape == (3, 1, *geometry.object_shape) and not images.phase.any()
    assert images.probe_montage.shape[0] == geometry.window[0]
    # the run: one update per iteration, images only while wanted, stage 1 in 3 slots
    import threading

    wanted = threading.Event()
    wanted.set()
    control = engine.RunControl()
    job = rvm.reconstruction_job(dataset, config, control=control, images_wanted=wanted)
    updates = []
    try:
        while True:
            updates.append(next(job))
            wanted.set() if updates[-1].iteration == 2 else None
    except StopIteration as stop:
        result = stop.value
    assert [u.iteration for u in updates] == [1, 2, 3, 4]
    assert [u.images is not None for u in updates] == [True, False, True, False]
    first = updates[0].images.phase
    assert first.shape[0] == 3 and np.array_equal(first[0], first[2])  # one state, 3 slots
    assert result.state.finished and not result.stopped
    assert result.images.phase.shape[0] == 3
    # 2 iterations cannot separate the states: the engine says so, the result carries it
    assert result.warnings == tuple(result.state.diagnostics["warnings"])
    assert any("did not separate" in w for w in result.warnings)
    report = result_report(result.state)
    assert report.lines[0] == "loss: gaussian (chosen by auto: not counts)"
    assert report.lines[1] == "held out: none (auto: the data are not counts)"
    assert "iterations: 4; final loss" in report.lines[-1]
    (row,) = report.rows
    assert row[:2] == ("object states", "3") and row[5] == "✗" and report.separated == (False,)
    spread = result.state.diagnostics["separation"][0]["spread_rad"]
    assert row[2] == f"{1e3 * spread:.1f} mrad" and row[4] == "—"  # nothing held out
    # the same report came with the stage's last update, before the run was over
    (live,) = [u for u in updates if u.separation is not None]
    assert live.iteration == 4 and live.separation == result.state.diagnostics["separation"][0]
    vm = rvm.ReconstructionViewModel()
    vm.select(dataset)
    vm.begin(None)
    report = vm.accept_separation(live.separation)
    assert report.rows == result_report(result.state).rows
    assert vm.unseparated == ("object states",) and vm.report is report
    assert vm.warnings == list(result.warnings)
    assert report.lines[0].startswith("run in progress")


def test_states_shown_counts_the_remaining_stages():
    config = tiny_config()
    assert rvm.states_shown(config, None) == 3
    state = engine.run_to_end(tiny_dataset(), tiny_config((1, 1)))
    assert rvm.states_shown(config, state) == 3


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _update(i: int, images=None, stage: str = "s1") -> rvm.RunUpdate:
    return rvm.RunUpdate(i, 10, 0, 1, stage, i, 10, 1.0 / i, float(i), 1.0, images)


def test_pacer_shows_the_newest_at_most_at_the_intervals():
    clock = FakeClock()
    settings = rvm.PacerSettings(
        text_interval_s=0.5,
        slow_text_interval_s=1.5,
        image_interval_s=0.25,
        slow_image_interval_s=2.0,
        cheap_update_s=0.04,
    )
    pacer = rvm.LivePacer(settings, clock)
    wanted = pacer.begin()
    assert wanted.is_set()
    image_a, image_b = object(), object()
    pacer.offer(_update(1, image_a))
    pacer.offer(_update(2))
    frame = pacer.tick()
    assert frame.update.iteration == 2 and frame.images is image_a  # the newest update
    pacer.images_done(cost_s=0.1)  # a slow display: 0.1 s per layer update
    assert pacer.image_interval_s == 2.0
    wanted.clear()  # (the worker clears it when it hands images over)
    pacer.offer(_update(3, image_b))
    clock.t = 0.3
    frame = pacer.tick()
    assert frame.update is None and frame.images is None  # too soon for both
    clock.t = 0.6
    frame = pacer.tick()
    assert frame.update.iteration == 3 and frame.images is None  # text yes, images not yet
    assert not wanted.is_set()
    clock.t = 2.1
    assert pacer.tick().images is image_b
    pacer.images_done(cost_s=0.01)  # fast again
    assert pacer.image_interval_s == 0.25 and pacer.images_shown == 2
    clock.t = 2.25
    pacer.tick()
    assert wanted.is_set()  # half an interval after the last images: ask for new ones
    # a status update joins a layer update; a slow status repaint slows the status down
    pacer.offer(_update(4))
    pacer.offer(_update(5, image_a))
    clock.t = 2.4
    frame = pacer.tick()
    assert frame.images is image_a and frame.update.iteration == 5  # text not due, joins
    pacer.text_done(cost_s=0.08)
    assert pacer.text_interval_s == 1.5
    pacer.offer(_update(6))
    clock.t = 3.0
    assert pacer.tick().update is None  # 0.6 s after the last: due only after 1.5 s
    clock.t = 3.95
    assert pacer.tick().update.iteration == 6
    assert list(pacer.history.iterations) == [1, 2, 3, 4, 5, 6]
    assert pacer.history.stage_starts == [(1, "s1")]


def test_loss_history_and_ticks():
    history = rvm.LossHistory()
    for i in range(1, 200):
        history.append(i, 1.0 / i, "a" if i < 100 else "b")
    assert len(history) == 199 and history.stage_starts == [(1, "a"), (100, "b")]
    history.set(np.array([3.0, 2.0]), [(1, "x")])
    np.testing.assert_array_equal(history.iterations, [1, 2])
    ticks = rvm.log_ticks(0.003, 0.7)
    assert [t for t, _ in ticks] == pytest.approx([0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5])
    assert ticks[0][1] == "0.005"
    assert len(rvm.log_ticks(1e-9, 1e3)) <= 13 and rvm.log_ticks(1.0, 1.0) == []
    assert rvm.linear_ticks(0, 100) == [0, 20, 40, 60, 80, 100]
    assert rvm.linear_ticks(0, 7) == [0, 2, 4, 6] and rvm.linear_ticks(0, 3) == [0, 1, 2, 3]


def test_texts():
    assert rvm.format_seconds(5) == "0:05"
    assert rvm.format_seconds(3725) == "1:02:05"
    assert rvm.format_seconds(float("nan")) == "–"
    line = rvm.status_text(_update(3), paused=True)
    assert line.startswith("paused — stage 1/1 's1' (3/10) · iteration 3/10 · loss 0.3333")
    assert rvm.device_summary_text("CPU: 2 cores (no GPU: cupy missing)") == (
        "detected: CPU: 2 cores; no usable GPU (hover for why)",
        "CPU: 2 cores (no GPU: cupy missing)",
    )
    assert "scan 4×4, detector 24×24 px" in rvm.describe(tiny_dataset())


def test_presets_default_and_status_with_the_source_size():
    vm = rvm.ReconstructionViewModel()
    assert [s.to_dict() for s in vm.config.stages] == [
        s.to_dict() for s in cfg.recommended_stages(object_states=10, iterations=(50, 100))
    ]  # the recommended recipe, as caviar reconstruct without --config
    recommended = vm.preset_stages(rvm.PRESET_RECOMMENDED, 2, [3.0, 4.0])
    assert recommended[1].partial_coherence == "gaussian" and "source" in recommended[1].refine
    assert recommended[0].slice_thickness_A == [3.0, 4.0]
    paper = vm.preset_stages(rvm.PRESET_PAPER, 2, [3.0, 4.0])
    assert [s.iterations for s in paper] == [120, 200] and paper[1].refine == ("object",)
    assert paper[0].probe_modes == 4 and paper[0].slice_thickness_A == 3.5
    with pytest.raises(InputError, match="unknown preset"):
        vm.preset_stages("fast", 1, 10.0)
    update = rvm.RunUpdate(3, 10, 0, 2, "mean object", 3, 5, 0.01, 1.0, 2.0, None, 0.4321)
    assert "loss 0.01 · source 0.432 Å FWHM ·" in rvm.status_text(update)
    assert "source" not in rvm.status_text(dataclasses.replace(update, source_fwhm_A=0.0))


def test_result_report_of_a_coherent_source_run_with_held_out_counts():
    dataset = dataclasses.replace(tiny_dataset(), dose_e_per_A2=1e4)  # counts: Poisson, held out
    dataset.intensities[...] = np.round(dataset.intensities)
    config = cfg.recommended_recipe(object_states=2, iterations=(2, 2), device="cpu")
    state = engine.run_to_end(dataset, config)
    report = result_report(state)
    assert report.lines[0] == "loss: poisson (chosen by auto: the intensities are counts)"
    held = state.diagnostics["held_out_patterns"]
    assert report.lines[1].startswith(f"held out: {held} of ") and held >= 1
    assert report.lines[2] == (
        f"source size: {state.source_fwhm_A:.3f} Å FWHM (fitted, Gaussian source: partial "
        "spatial coherence)"
    )
    assert state.source_fwhm_A > 0
    assert report.rows[0][4].endswith(" %")  # the held-out gain is measured


def test_data_sources_keep_paths_and_notes():
    sources = rvm.DataSources()
    data = tiny_dataset()
    key = sources.keep("a (calibrated)", data, path="/x/a.h5", note="found by Calibrate")
    assert sources.entries([]) == [("data: a (calibrated) (found by Calibrate)", key)]
    assert sources.path(key) == "/x/a.h5" and sources.dataset(key, {}) is data
    assert sources.path("layer:L", {"L": "/x/l.h5"}) == "/x/l.h5" and sources.path(None) is None
    file_key = sources.add_file("/y/b.h5", data)
    assert sources.path(file_key) == "/y/b.h5" and sources.name(file_key) == "b.h5"


def test_calibrate_job_restores_a_transposed_detector_and_finds_the_defocus(tmp_path):
    """Transposed patterns stated 80 Å off focus: Calibrate finds the transpose and the
    defocus, and its data are the original patterns; the calibrated file is written."""
    from caviar_napari.io.readers import load_stem
    from caviar_napari.viewmodels import calibration as cal

    demo = "caviar_napari/resources/hbn-correlated.h5"
    original = load_stem(demo)
    flipped = dataclasses.replace(
        original,
        intensities=np.ascontiguousarray(original.intensities.swapaxes(2, 3)),
        angular_sampling_mrad=original.angular_sampling_mrad[::-1],
        defocus_A=80.0,
    )
    outcome = _finish(cal.calibrate_job(flipped, cal.CalibrationForm(), demo))
    assert outcome.result.geometry.transposed
    np.testing.assert_array_equal(outcome.dataset.intensities, original.intensities)
    assert outcome.dataset.angular_sampling_mrad == original.angular_sampling_mrad
    assert abs(outcome.dataset.defocus_A) < 10.0 and abs(outcome.dataset.scan_rotation_deg) < 0.5
    assert outcome.dataset.source.endswith(" (calibrated)") and outcome.source_path == demo
    assert (
        "transposed" in outcome.detector_text
        and "found by Calibrate" in (outcome.confidence()["defocus_A"])
    )
    fixed = _finish(cal.calibrate_job(flipped, cal.CalibrationForm(fit_defocus=False)))
    assert fixed.dataset.defocus_A == 80.0 and fixed.result.defocus is None
    with pytest.raises(InputError, match="defocus search"):
        cal.CalibrationForm(defocus_search_A=0.0).options()
    summary = _finish(
        cal.save_calibrated_job(demo, str(tmp_path / "cal.h5"), cal.CalibrationForm())
    )
    again = load_stem(tmp_path / "cal.h5")
    assert again.defocus_A == pytest.approx(summary.values["defocus_A"])
    with pytest.raises(InputError, match="not read from a file"):
        _finish(cal.save_calibrated_job("", str(tmp_path / "x.h5"), cal.CalibrationForm()))


# ------------------------------------------------------------------------------- dry run
def _config(**kw) -> cfg.ReconstructionConfig:
    stages = [
        cfg.StageConfig(name="coarse", iterations=2),
        cfg.StageConfig(name="fine", iterations=2, object_states=2, detector_padding="40x36"),
    ]
    return cfg.ReconstructionConfig(device="cpu", stages=stages, **kw).validate()


def test_plan_gives_each_stage_its_grid_and_the_memory_of_the_largest():
    dataset = tiny_dataset()  # 4×4 scan, 24×24 detector at 2 mrad, 60 kV
    plan = run_plan(dataset, _config(detector_padding="none", holdout_fraction=0.25))
    coarse, fine = plan.grids
    assert (coarse.window, fine.window) == ((24, 24), (40, 36))
    dk = dataset.reciprocal_sampling_invA
    assert coarse.pixel_A == pytest.approx((1 / (24 * dk[0]), 1 / (24 * dk[1])))
    assert fine.pixel_A == pytest.approx((1 / (40 * dk[0]), 1 / (36 * dk[1])))
    assert (coarse.padding, fine.padding) == ("none", "40x36")
    assert plan.n_patterns == 16 and plan.held_out == 4 and plan.detector == (24, 24)
    assert plan.loss == "gaussian" and plan.loss_setting == "auto"  # not counts
    # the memory plan is the run's own: for the larger window of stage 'fine'
    fine_geom = engine.plan_geometry(dataset, _config(), padding="40x36")
    expected = engine.estimate_run_memory(dataset, _config(), geom=fine_geom)
    assert plan.estimate.needed_bytes == expected.needed_bytes
    lines = plan.lines
    assert lines[0] == (
        "data: 16 patterns of 24×24 px; loss gaussian (chosen by auto); "
        "4 of 16 scan positions held out of the fit"
    )
    assert lines[1].startswith("stage 'coarse': 24×24 window (padding none), pixel ")
    assert lines[2].startswith("stage 'fine': 40×36 window (padding 40x36), pixel ")
    assert lines[3:] == plan.estimate.plan_text().splitlines()
    assert plan.grid_text.startswith("grid: 'coarse' 24×24, ")
    same = run_plan(dataset, _config(detector_padding="40x36"))
    assert same.grid_text.startswith("grid: 40×36 window from the 24×24 detector, pixel ")
    assert same.held_out == 0 and "none held out" in same.lines[0]


def test_a_pixel_size_padding_and_a_gaussian_source_in_the_plan():
    dataset = tiny_dataset()
    config = cfg.recommended_recipe(object_states=2, device="cpu", detector_padding=0.1)
    (grid, _) = run_plan(dataset, config).grids
    assert grid.padding == 0.1 and grid.model_modes == 25  # 5 × 5 source points
    assert "(padding 0.1 Å pixel)" in grid.text and "25 model modes" in grid.text
    assert grid.pixel_A[0] == pytest.approx(0.1, rel=0.05)


def test_what_the_dock_refuses_is_yielded_as_the_reason():
    dataset = tiny_dataset()
    config = _config(data_placement="file")
    with pytest.raises(InputError, match="'data_placement' is 'file'"):
        check_dock_run(dataset, config)
    (reason,) = list(plan_job(dataset, config))
    assert isinstance(reason, InputError)
    vm = rvm.ReconstructionViewModel()
    vm.select(dataset)
    text, ok = vm.accept_estimate(reason)
    assert not ok and text.startswith("cannot start: 'data_placement'") and vm.plan is None
    vm.set_config(config)
    with pytest.raises(InputError, match="data_placement"):
        vm.begin(None)
    (bad,) = list(plan_job(dataset, _config(detector_padding="16x16")))  # smaller than 24×24
    assert isinstance(bad, InputError) and "smaller than the 24×24 detector" in str(bad)
    (plan,) = list(plan_job(dataset, _config()))
    text, ok = vm.accept_estimate(plan)
    assert ok and vm.plan is plan and vm.estimate is plan.estimate


def _report(stage: str, separated: bool) -> dict:
    return SeparationReport(
        stage=stage,
        n_states=4,
        spread_rad=0.02,
        loss_states=1.0,
        loss_mean=2.0,
        loss_floor=0.0,
        gain=0.5 if separated else 0.01,
        noise_gain=math.inf,
        trend=0.0,
        separated=separated,
        converged=True,
    ).to_dict()


def test_live_report_of_the_stages_finished_so_far():
    items = [_report("a", True), _report("b", False)]
    report = live_report(items)
    assert [row[0] for row in report.rows] == ["a", "b"]
    assert [row[5] for row in report.rows] == ["✓", "✗"]
    assert report.unseparated == ("b",) and report.separated == (True, False)
    assert report.verdicts == (
        "stage 'b': the object states did NOT separate — their displacements and correlations "
        "are not measurements",
    )
    still = live_report([{**_report("a", True), "converged": False}])
    assert still.unseparated == () and still.verdicts[0].startswith(
        "stage 'a': the object states separated but were still improving"
    )
    assert report.lines == (
        "run in progress: the state separation of the stages finished so far",
        "separated: 'a'",
    )
    (warning,) = separation_warnings(items)
    assert warning.startswith("stage 'b': the 4 object states did not separate")
    # a stage run again (a continued run) counts once, with its last report
    again = live_report([_report("b", False), _report("b", True)])
    assert again.unseparated == () and len(again.rows) == 1
    assert separation_warnings([_report("b", True)]) == []


def _refined_state(u_scale: float = 0.1) -> engine.ReconState:
    """A two-slice state whose positions a stage refined, with a tilt estimate."""
    from caviar_napari.core.positions import ScanPositions

    stage = cfg.StageConfig(
        name="refine", slices=2, refine=("object", "positions", "affine"), tilt_estimate=True
    )
    config = cfg.ReconstructionConfig(stages=[stage], position_bound_A=0.5).validate()
    grid = np.stack(np.meshgrid(np.arange(4.0), np.arange(5.0), indexing="ij"), -1)
    nominal = 0.8 * grid.reshape(-1, 2) + 1.0
    u = u_scale * np.random.default_rng(2).standard_normal((20, 2))
    affine = np.array([0.01, 0.0, 0.0, -0.02, 0.12, 0.0])
    return engine.ReconState(
        object=np.ones((1, 2, 8, 8), np.complex64),
        probe=np.ones((1, 4, 4), np.complex64),
        tilt_mrad=np.array([1.5, -0.5]),
        loss=[1.0, 0.5],
        pixel_size_A=(0.2, 0.2),
        object_origin_A=(0.0, 0.0),
        slice_thickness_A=np.array([5.0, 5.0]),
        config=config,
        iteration=2,
        stage_iteration=2,
        scan_positions_A=nominal + ScanPositions(nominal, 0.5).shifts_A(u, affine),
        positions_u=u,
        affine=affine,
        diagnostics={
            "tilt_estimate": {
                "refine": {
                    "tilt_mrad": [1.5, -0.5],
                    "residual_mrad": [1.5, -0.5],
                    "spread_mrad": [0.2, 0.1],
                    "shift_per_gap_A": [0.0075, -0.0025],
                    "n_gaps": 1,
                }
            }
        },
    )


def test_refined_positions_and_the_tilt_estimate_in_the_report_and_the_layers():
    from caviar_napari.viewmodels import recon_positions as rp
    from caviar_napari.viewmodels.recon_images import layer_tuples
    from caviar_napari.viewmodels.recon_report import state_warnings

    state = _refined_state()
    refinement = rp.scan_refinement(state)
    grid = np.stack(np.meshgrid(np.arange(4.0), np.arange(5.0), indexing="ij"), -1)
    np.testing.assert_allclose(refinement.nominal_A, 0.8 * grid.reshape(-1, 2) + 1.0, atol=1e-12)
    lines = result_report(state).lines
    assert any(line.startswith("scan positions refined: shifts rms") for line in lines)
    assert "drift (+0.120, +0.000) Å over the scan" in "\n".join(lines)
    assert (
        "tilt estimate at the start of 'refine' (adjacent slices, 1 gaps): (α_y, α_x) = "
        "(+1.50, -0.50) mrad, spread (0.20, 0.10) mrad, residual (+1.50, -0.50) mrad" in lines
    )
    assert "tilt used: (+1.50, -0.50) mrad (estimated)" in lines
    assert not state_warnings(state)
    # layers: the nominal grid hidden, the refined positions, the arrows ×F from the grid
    images = reconstruction_images(
        state.object, state.probe, (0.2, 0.2), (0.0, 0.0), state.scan_positions_A,
        refinement=refinement,
    )  # fmt: skip
    tuples = {kw["name"]: (data, kw, kind) for data, kw, kind in layer_tuples(images, name="r")}
    np.testing.assert_allclose(tuples["r scan positions"][0], refinement.nominal_A)
    np.testing.assert_allclose(tuples["r refined positions"][0], state.scan_positions_A)
    factor = rp.arrow_factor(refinement.shifts_A, 0.8)
    vectors, kwargs, kind = tuples[f"r position shifts ×{factor:g}"]
    assert kind == "vectors" and kwargs["metadata"]["caviar_arrow_factor"] == factor
    np.testing.assert_allclose(vectors[:, 1], factor * refinement.shifts_A)
    # shifts at the bound: a warning, in the report's warnings too
    at_bound = _refined_state(30.0)
    assert any("position_bound_A = 0.5" in w for w in state_warnings(at_bound))
    assert any(
        line.startswith("⚠ scan positions: some shifts") for line in result_report(at_bound).lines
    )
    # never refined: nothing
    plain = dataclasses.replace(state, positions_u=None, affine=None, diagnostics={})
    assert rp.scan_refinement(plain) is None
    lines = result_report(plain).lines
    assert not any("refined" in line for line in lines)
    assert "tilt used: (+1.50, -0.50) mrad (given)" in lines
    plain.tilt_mrad = np.zeros(2)
    assert not any("tilt" in line for line in result_report(plain).lines)


def test_the_arrow_factor_is_a_round_number_that_makes_the_longest_arrow_about_a_step():
    from caviar_napari.viewmodels.recon_positions import arrow_factor

    cases = ((0.03, 0.5, 30.0), (0.3, 0.5, 3.0), (0.004, 0.8, 300.0), (0.07, 0.5, 10.0))
    for longest, step, expected in cases:
        shifts = np.array([[0.0, longest], [0.5 * longest, 0.0]])
        factor = arrow_factor(shifts, step)
        assert factor == expected
        assert step <= factor * longest <= 2.0 * step
    assert arrow_factor(np.zeros((2, 2)), 0.5) == 1.0
    assert arrow_factor(np.array([[3.0, 0.0]]), 0.5) == 1.0  # never shorter than the shift
