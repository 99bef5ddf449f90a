"""The Reconstruction view-model without Qt: calibration, sources, run control, pacing, jobs."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from caviar_napari.core import engine
from caviar_napari.data import config as cfg
from caviar_napari.errors import InputError
from caviar_napari.io.dataset import STEMDataset
from caviar_napari.viewmodels import reconstruction as rvm
from caviar_napari.viewmodels.recon_images import reconstruction_images


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
    assert result.images.phase.shape[0] == 3 and result.warnings == tuple(
        getattr(result.state, "warnings", None) or ()
    )


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
