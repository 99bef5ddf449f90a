"""The Reconstruction dock widget, its layers, reader/writer hooks and run control (Xvfb)."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest

from caviar_napari._napari import reconstruction_layers as rl
from caviar_napari._qt import _worker
from caviar_napari._qt import reconstruction_widget as rw
from caviar_napari._qt.reconstruction import live_display
from caviar_napari.core import engine
from caviar_napari.data import config as cfg
from caviar_napari.errors import InputError
from caviar_napari.io.config_file import load_yaml
from caviar_napari.io.dataset import STEMDataset
from caviar_napari.io.reconstruction import load_reconstruction
from caviar_napari.viewmodels import recon_images as ri
from caviar_napari.viewmodels.layer_keys import DATASET_KEY, PATH_KEY, STATE_KEY

WAIT_MS = 20000


# ------------------------------------------------------------------------------- fixtures
def tiny_dataset(seed: int = 0) -> STEMDataset:
    """6×6 scan, 24×24 detector: a bright-field disc (α = 12 mrad = 6 px) with variations."""
    rng = np.random.default_rng(seed)
    k = 24
    q = np.hypot(*np.meshgrid(np.arange(k) - k // 2, np.arange(k) - k // 2, indexing="ij"))
    disc = (q <= 6).astype(np.float32)
    shifts = rng.integers(-1, 2, size=(6, 6, 2))
    patterns = np.stack(
        [np.roll(disc, tuple(s), axis=(0, 1)) for s in shifts.reshape(-1, 2)]
    ).reshape(6, 6, k, k)
    patterns = patterns * (100.0 * (1.0 + 0.1 * rng.random((6, 6, 1, 1))))
    return STEMDataset(
        intensities=patterns.astype(np.float32),
        energy_eV=60e3,
        convergence_semiangle_mrad=12.0,
        scan_step_A=0.8,
        angular_sampling_mrad=2.0,
        defocus_A=20.0,
        source="tiny.h5",
    )


def tiny_config(iterations=(3, 4), update_every=2) -> cfg.ReconstructionConfig:
    return cfg.two_stage_preset(
        object_states=2,
        probe_modes=2,
        iterations=iterations,
        update_every=update_every,
        device="cpu",
        batch_size=36,
    )


@pytest.fixture(scope="module")
def shared_viewer(qapp):
    """One viewer for the module (a viewer costs seconds to make); layers cleared per test."""
    import napari

    viewer = napari.Viewer(show=False)
    yield viewer
    viewer.close()


@pytest.fixture
def viewer_widget(shared_viewer, qtbot):
    viewer = shared_viewer
    for layer in [layer for layer in viewer.layers if layer.name != "tiny 4D-STEM"]:
        viewer.layers.remove(layer)
    if not viewer.layers:  # adding layers costs; the data layer is kept between tests
        dataset = tiny_dataset()
        viewer.add_image(
            dataset.intensities.sum(axis=(2, 3)),
            name="tiny 4D-STEM",
            metadata={DATASET_KEY: dataset, PATH_KEY: "tiny.h5"},
        )
    dataset = viewer.layers["tiny 4D-STEM"].metadata[DATASET_KEY]
    widget = rw.ReconstructionWidget(viewer)
    qtbot.waitUntil(
        lambda: widget.settings.device_info.text().startswith("detected"), timeout=WAIT_MS
    )
    yield viewer, widget, dataset
    if widget.is_running:
        widget.stop()
        qtbot.waitUntil(lambda: not widget.is_running, timeout=WAIT_MS)
    qtbot.waitUntil(lambda: widget._estimate_worker is None, timeout=WAIT_MS)
    widget.shutdown()
    widget.deleteLater()


def _layer(viewer, name):
    return next(layer for layer in viewer.layers if layer.name == name)


def _wait_idle(qtbot, widget):
    qtbot.waitUntil(lambda: not widget.is_running, timeout=WAIT_MS)


# ------------------------------------------------------------------------------- runs
def test_run_updates_phase_layer_and_finishes(viewer_widget, qtbot, monkeypatch):
    viewer, widget, dataset = viewer_widget
    assert widget.optics.energy_eV.value() == 60000.0  # filled from the layer's metadata
    assert widget.optics.step_x_A.value() == pytest.approx(0.8)
    widget.set_config(tiny_config(iterations=(4, 6), update_every=2))
    widget.set_refresh_intervals(20, 0.0, 0.0)
    real_run = engine.run

    def paced_run(*args, **kwargs):
        """The engine, paced by the display: an update with images is handed over only when
        the display wants images, and the next iteration waits until it showed them (5 s at
        most each), so every update must reach the layers."""
        gen = real_run(*args, **kwargs)

        def wait(condition):
            deadline = time.monotonic() + 5.0
            while not condition() and time.monotonic() < deadline:
                time.sleep(0.005)

        while True:
            try:
                progress = next(gen)
            except StopIteration as stop:
                return stop.value
            shown = widget.images_shown
            if progress.object is not None:
                wait(widget.display.images_wanted.is_set)
            yield progress
            if progress.object is not None:
                wait(lambda shown=shown: widget.images_shown > shown)

    monkeypatch.setattr(engine, "run", paced_run)
    updates = []
    original = live_display.apply_layer_tuples

    arrays = []  # the phase layer's own array after each update

    def spy(viewer_, tuples, **options):
        updates.append({kw["name"]: (data, kw["metadata"]) for data, kw, _ in tuples})
        out = original(viewer_, tuples, **options)
        arrays.append(_layer(viewer_, "reconstruction phase").data)
        return out

    monkeypatch.setattr(live_display, "apply_layer_tuples", spy)
    worker = widget.start()
    assert worker is not None and widget.is_running, widget.status_label.text()
    assert not widget.start_button.isEnabled() and widget.stop_button.isEnabled()
    _wait_idle(qtbot, widget)

    geometry = engine.plan_geometry(dataset, widget.current_config())
    h, w = geometry.object_shape
    # the layers are created before the run, from a flat object, in the run's 2 state slots
    first, _meta = updates[0]["reconstruction phase"]
    assert first.shape == (2, 1, h, w) and not first.any()
    # images every 2nd iteration (as fast as the display takes them), then the result
    live = [u["reconstruction phase"] for u in updates[1:]]
    live = [data for data, meta in live if STATE_KEY not in meta and data is not first]
    distinct = [a for i, a in enumerate(live) if all(a is not b for b in live[:i])]
    assert len(distinct) == widget.images_shown == 5  # iterations 2, 4, ..., 10
    # stage 1 has one object state, shown in both slots: the layer keeps its shape (napari's
    # dims never change during the run) and its own array (updated in place)
    assert distinct[0].shape == (2, 1, h, w) and np.array_equal(distinct[0][0], distinct[0][1])
    assert not np.allclose(distinct[-1][0], distinct[-1][1])  # stage 2: two states
    assert not np.allclose(distinct[0][0], distinct[1][0])  # the object changes between updates
    assert all(a is arrays[0] for a in arrays)
    assert not any(a is arrays[0] for a in distinct)  # never the worker's array
    phase = _layer(viewer, "reconstruction phase")
    assert phase.data.shape == (2, 1, h, w)
    assert phase.axis_labels == ("state", "slice", "y", "x")
    dy, dx = dataset.pixel_size_A
    np.testing.assert_allclose(phase.scale, (1, 1, dy, dx))
    np.testing.assert_allclose(phase.translate, (0, 0, *geometry.object_origin_A))
    # the object frame is the scan frame: scan point (0, 0) sits inside the object
    assert geometry.object_origin_A[0] < 0 and geometry.object_origin_A[1] < 0
    assert phase.visible and not _layer(viewer, "reconstruction amplitude").visible
    probe = _layer(viewer, "reconstruction probe modes")
    assert probe.data.ndim == 2 and probe.data.shape[0] == geometry.window[0]
    state = phase.metadata[STATE_KEY]
    assert state.iteration == 10 and state.finished
    np.testing.assert_allclose(phase.data, np.angle(state.object), atol=1e-6)
    # contrast from the scanned area (over all states), the range from all the data
    rows, cols = ri.scanned_window(
        geometry.positions_A, geometry.pixel_size_A, geometry.object_origin_A, (h, w)
    )
    px = (geometry.positions_A - geometry.object_origin_A) / geometry.pixel_size_A
    for axis, window in enumerate((rows, cols)):  # the smallest pixel box around the scan
        assert window.start == np.floor(px[:, axis].min())
        assert window.stop == np.ceil(px[:, axis].max()) + 1
    inside = phase.data[..., rows, cols]
    np.testing.assert_allclose(
        phase.contrast_limits, np.percentile(inside, [0.5, 99.5]), rtol=1e-5, atol=1e-7
    )
    np.testing.assert_allclose(
        phase.contrast_limits_range, (phase.data.min(), phase.data.max()), rtol=1e-5
    )
    points = _layer(viewer, "reconstruction scan positions")
    np.testing.assert_allclose(points.data, geometry.positions_A)
    assert not points.visible
    # loss plot: every iteration, a boundary at the start of stage 2
    np.testing.assert_array_equal(widget.loss_plot.iterations, np.arange(1, 11))
    np.testing.assert_allclose(widget.loss_plot.losses, state.loss)
    assert widget.loss_plot.stage_starts == [(1, "mean object"), (5, "object states")]
    lo, hi = widget.loss_plot.y_range()  # log axis around the losses
    assert 0 < lo < min(state.loss) and hi > max(state.loss)
    assert widget.status_label.text().startswith("finished: 10 iterations")
    assert widget.start_button.isEnabled() and widget.save_button.isEnabled()
    assert not widget.stop_button.isEnabled() and not widget.pause_button.isEnabled()


def test_stop_mid_run_save_reopen_and_continue(
    viewer_widget, qtbot, tmp_path, click, answer_dialogs
):
    viewer, widget, dataset = viewer_widget
    widget.set_config(tiny_config(iterations=(2, 100000), update_every=1))
    click(widget.start_button)
    assert widget.is_running and not widget.start_button.isEnabled()
    qtbot.waitUntil(lambda: widget.loss_plot.iterations.size >= 4, timeout=WAIT_MS)
    click(widget.stop_button)
    assert "stopping" in widget.status_label.text() and not widget.stop_button.isEnabled()
    _wait_idle(qtbot, widget)
    state = widget.result
    assert state is not None and not state.finished
    stopped_at = state.iteration
    assert 4 <= stopped_at < 100000
    assert widget.status_label.text().startswith(f"stopped at iteration {stopped_at}")
    assert np.all(np.isfinite(state.object)) and state.object.shape[0] == 2

    # the Save… button and the napari writer hook give the same, reopenable file
    saved = str(tmp_path / "stopped.h5")
    assert answer_dialogs(saved) == []
    click(widget.save_button)
    assert load_reconstruction(saved).iteration == stopped_at
    phase = _layer(viewer, "reconstruction phase")
    data, attributes, _ = phase.as_layer_data_tuple()
    written = rl.write_reconstruction(str(tmp_path / "writer.h5"), data, attributes)
    assert written == [str(tmp_path / "writer.h5")]
    for path in (saved, written[0]):
        loaded = load_reconstruction(path)
        np.testing.assert_array_equal(loaded.object, state.object)
        assert loaded.iteration == stopped_at
        assert loaded.source == "tiny.h5"

    # reopen with the reader and continue from the reopened layer
    tuples = rl.reconstruction_layer_data(written[0])
    assert [kw["name"] for _, kw, _ in tuples] == [
        "writer phase",
        "writer amplitude",
        "writer probe modes",
        "writer scan positions",
    ]
    for layer_data, kwargs, layer_type in tuples:
        getattr(viewer, f"add_{layer_type}")(layer_data, **kwargs)
    reopened = _layer(viewer, "writer phase")
    np.testing.assert_allclose(reopened.scale, phase.scale)
    np.testing.assert_allclose(reopened.translate, phase.translate)
    assert reopened.axis_labels == ("state", "slice", "y", "x")
    index = widget.start_combo.findData("writer phase")
    assert index > 0
    widget.start_combo.setCurrentIndex(index)
    assert f"iteration {stopped_at}" in widget.status_label.text()
    # what the reopened reconstruction says about itself
    assert widget.result_panel.isVisibleTo(widget)
    assert widget.result_panel.title() == "Start from: writer phase"
    assert f"iterations: {stopped_at}" in widget.result_panel.label.text()
    assert widget.stage_table.rowCount() == 2  # the state's configuration is shown
    widget.stage_table.cell(1, "iterations").setValue(stopped_at - 2 + 3)  # 3 more
    np.testing.assert_allclose(widget.loss_plot.losses, state.loss)
    widget.start()
    _wait_idle(qtbot, widget)
    final = widget.result
    assert final.iteration == stopped_at + 3 and final.finished
    np.testing.assert_allclose(final.loss[:stopped_at], state.loss)  # history continued
    np.testing.assert_array_equal(widget.loss_plot.iterations, np.arange(1, stopped_at + 4))


def test_4d_stem_layers_leave_the_view_and_the_view_frames_the_scan(viewer_widget, qtbot):
    from caviar_napari._napari.stem_layers import stem_layers_from_dataset

    viewer, widget, dataset = viewer_widget
    for data, kwargs, layer_type in stem_layers_from_dataset(dataset, "park", "park.h5"):
        getattr(viewer, f"add_{layer_type}")(data, **kwargs)
    assert viewer.dims.axis_labels == ("scan_y", "scan_x", "ky", "kx")
    widget.input_combo.setCurrentIndex(widget.input_combo.findData("layer:park 4D-STEM"))
    widget.optics.defocus_A.setValue(-15.0)  # the calibration in use is what is kept
    widget.set_config(tiny_config(iterations=(2, 2), update_every=1))
    widget.progress_check.setChecked(False)  # the run without napari's progress bar
    widget.start()
    names = [layer.name for layer in viewer.layers]
    assert "park 4D-STEM" not in names and "park virtual BF" not in names
    assert widget.input_combo.currentData() == "kept:park 4D-STEM"
    assert widget.dataset().defocus_A == -15.0 and widget.optics.defocus_A.value() == -15.0
    assert widget.dataset().intensities is dataset.intensities
    _wait_idle(qtbot, widget)
    assert widget.result.iteration == 4 and widget.display.progress_bar is None
    assert viewer.dims.axis_labels == ("state", "slice", "y", "x")
    # the first view frames the scanned area (0..4 Å), not the whole object
    np.testing.assert_allclose(viewer.scene.camera.center[-2:], (2.0, 2.0), atol=1e-6)
    assert viewer.canvas.overlays["scale_bar"].visible
    assert viewer.layers.selection.active.name == "reconstruction phase"


def test_pause_and_resume(viewer_widget, qtbot, click):
    _viewer, widget, _dataset = viewer_widget
    widget.set_config(tiny_config(iterations=(100000, 1), update_every=50))
    click(widget.start_button)
    qtbot.waitUntil(lambda: widget.loss_plot.iterations.size >= 2, timeout=WAIT_MS)
    click(widget.pause_button)
    assert widget.resume_button.isEnabled() and not widget.pause_button.isEnabled()
    assert widget.status_label.text().startswith("paused — ")
    # the iteration in flight ends, then the engine holds; its last update reaches the plot
    qtbot.waitUntil(lambda: widget.vm.request.control.held, timeout=WAIT_MS)
    qtbot.wait(300)
    held = widget.loss_plot.iterations.size
    qtbot.wait(400)
    assert widget.loss_plot.iterations.size == held and widget.vm.request.control.held
    assert widget.is_running
    click(widget.resume_button)
    assert widget.pause_button.isEnabled() and not widget.resume_button.isEnabled()
    qtbot.waitUntil(lambda: widget.loss_plot.iterations.size > held + 2, timeout=WAIT_MS)
    click(widget.pause_button)
    click(widget.stop_button)  # stop while paused ends the run
    _wait_idle(qtbot, widget)
    assert widget.result is not None and widget.result.iteration >= held + 2


def _raising_run(exc):
    def run(dataset, config, *, state=None, control=None):
        raise exc
        yield  # pragma: no cover

    return run


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (RuntimeError("CUDA error: out of memory"), "RuntimeError: CUDA error: out of memory"),
        (MemoryError("cannot allocate 12 GiB"), "MemoryError: cannot allocate 12 GiB"),
        (InputError("tiny.h5: 'energy_eV' must be positive"), "'energy_eV' must be positive"),
    ],
)
def test_worker_error_notifies_and_returns_to_idle(
    viewer_widget, qtbot, monkeypatch, exc, expected
):
    _viewer, widget, _dataset = viewer_widget
    widget.set_config(tiny_config())
    widget.optics.defocus_A.setValue(35.0)
    before = (widget.current_config().to_dict(), widget.optics.defocus_A.value())
    shown = []
    monkeypatch.setattr(_worker, "show_error", shown.append)
    monkeypatch.setattr(engine, "run", _raising_run(exc))
    with qtbot.capture_exceptions():
        widget.start()
        _wait_idle(qtbot, widget)
    assert len(shown) == 1 and expected in shown[0]
    assert (
        widget.status_label.text().startswith("failed:") and expected in widget.status_label.text()
    )
    assert widget.start_button.isEnabled() and not widget.stop_button.isEnabled()
    assert widget.stage_table.isEnabled() and widget.optics.isEnabled()
    assert (widget.current_config().to_dict(), widget.optics.defocus_A.value()) == before
    assert widget.result is None


def test_runtime_error_midway_keeps_live_layers_and_idles(viewer_widget, qtbot, monkeypatch):
    viewer, widget, _dataset = viewer_widget
    widget.set_config(tiny_config(iterations=(6, 1), update_every=1))
    real_run = engine.run

    def failing_after_three(dataset, config, *, state=None, control=None):
        gen = real_run(dataset, config, state=state, control=control)
        for _ in range(3):
            yield next(gen)
        raise RuntimeError("cuFFT failed: CUFFT_INTERNAL_ERROR")

    shown = []
    monkeypatch.setattr(_worker, "show_error", shown.append)
    monkeypatch.setattr(engine, "run", failing_after_three)
    with qtbot.capture_exceptions():
        widget.start()
        _wait_idle(qtbot, widget)
    assert shown and "CUFFT_INTERNAL_ERROR" in shown[0]
    assert widget.loss_plot.iterations.size == 3
    assert "reconstruction phase" in [layer.name for layer in viewer.layers]
    assert widget.start_button.isEnabled()


def test_bad_file_notifies(viewer_widget, qtbot, monkeypatch, tmp_path):
    _viewer, widget, _dataset = viewer_widget
    bad = tmp_path / "broken.h5"
    bad.write_bytes(b"not an hdf5 file")
    shown = []
    monkeypatch.setattr(_worker, "show_error", shown.append)
    with qtbot.capture_exceptions():
        widget.open_file(str(bad))
        qtbot.waitUntil(widget.data.open_button.isEnabled, timeout=WAIT_MS)
    assert shown and "broken.h5" in shown[0]
    assert "could not read broken.h5" in widget.status_label.text()
    assert widget.data.open_button.isEnabled()
    assert widget.input_combo.currentData() == "layer:tiny 4D-STEM"


def test_open_button_reads_and_selects_the_file(
    viewer_widget, qtbot, tmp_path, click, answer_dialogs
):
    from caviar_napari.io.dataset import write_stem_h5

    _viewer, widget, dataset = viewer_widget
    path = tmp_path / "other.h5"
    write_stem_h5(path, dataclasses.replace(dataset, energy_eV=80e3))
    asked = answer_dialogs(path)
    click(widget.data.open_button)
    assert asked == ["Open 4D-STEM data"]
    qtbot.waitUntil(widget.data.open_button.isEnabled, timeout=WAIT_MS)
    assert widget.input_combo.currentData() == f"file:{path}"
    assert widget.optics.energy_eV.value() == 80000.0


def test_memory_refusal(viewer_widget, qtbot, monkeypatch):
    from caviar_napari.core import backend

    _viewer, widget, _dataset = viewer_widget
    monkeypatch.setattr(backend.Backend, "free_memory_bytes", lambda self: 1000)
    widget.set_config(tiny_config())
    qtbot.waitUntil(lambda: "does not fit" in widget.memory_label.text(), timeout=WAIT_MS)
    assert "of 0.0 MiB available on the cpu" in widget.memory_label.text()
    assert not widget.start_button.isEnabled()
    shown = []
    monkeypatch.setattr(rw, "show_error", shown.append)
    assert widget.start() is None
    assert shown and "not started" in shown[0] and not widget.is_running


def test_memory_estimate_and_device_shown(viewer_widget, qtbot):
    _viewer, widget, _dataset = viewer_widget
    widget.set_config(tiny_config())
    qtbot.waitUntil(lambda: "needs" in widget.memory_label.text(), timeout=WAIT_MS)
    assert "available on the cpu" in widget.memory_label.text()
    assert (
        "CPU:" in widget.settings.device_info.text() or "GPU:" in widget.settings.device_info.text()
    )
    widget.settings.form["device"].value = "gpu"
    try:
        import cupy  # noqa: F401

        has_cupy = True
    except ImportError:
        has_cupy = False
    if not has_cupy:  # a GPU request without cupy is refused before Start, with the reason
        qtbot.waitUntil(lambda: "cannot start" in widget.memory_label.text(), timeout=WAIT_MS)
        assert "cupy" in widget.memory_label.text()


# ------------------------------------------------------------------------------- settings
def test_config_buttons_save_preset_and_load(viewer_widget, tmp_path, click, answer_dialogs):
    """Save… writes the YAML the CLI reads, the presets replace the stages, Load… reads the
    YAML back (hidden fields kept)."""
    _viewer, widget, _dataset = viewer_widget
    config = tiny_config(iterations=(5, 7))
    config.stages[1].lbfgs_memory = 4  # not shown in the table: must be kept
    config.stages[1].slice_thickness_A = 2.5
    config.checkpoint_every = 0
    config.tilt_mrad = (0.5, -0.25)
    widget.set_config(config)
    widget.settings.form["seed"].value = 11
    widget.stage_table.cell(0, "probe_modes").setValue(3)
    path = tmp_path / "config.yaml"
    assert answer_dialogs(path) == []
    click(widget.settings.save_button)
    loaded = load_yaml(path)  # the CLI's reader
    assert loaded.seed == 11 and loaded.tilt_mrad == (0.5, -0.25)
    assert loaded.stages[0].probe_modes == 3 and loaded.stages[1].lbfgs_memory == 4
    assert loaded.stages[1].slice_thickness_A == 2.5
    assert loaded.to_dict() == widget.current_config().to_dict()

    click(widget.settings.paper_button)
    stages = widget.current_config().stages
    assert [s.object_states for s in stages] == [1, 10]
    assert [s.probe_modes for s in stages] == [4, 4]
    assert [s.iterations for s in stages] == [120, 200]
    assert stages[0].refine == ("object", "probe") and stages[1].refine == ("object",)
    assert {s.partial_coherence for s in stages} == {"none"}
    click(widget.settings.recommended_button)
    stages = widget.current_config().stages
    expected = cfg.recommended_stages(object_states=10, iterations=(50, 100))
    assert [s.to_dict() for s in stages] == [s.to_dict() for s in expected]
    assert widget.stage_table.cell(1, "partial_coherence").isChecked()  # a Gaussian source
    assert widget.stage_table.cell(1, "source").isChecked()

    click(widget.settings.load_button)
    assert widget.current_config().to_dict() == loaded.to_dict()
    assert widget.settings.form["seed"].value == 11


def test_add_and_remove_stage_buttons(viewer_widget, click):
    _viewer, widget, _dataset = viewer_widget
    widget.set_config(tiny_config())
    table = widget.stage_table
    table.selectRow(0)
    click(widget.settings.add_stage_button)  # a copy of the selected stage, appended
    stages = widget.current_config().stages
    assert [s.name for s in stages] == ["mean object", "object states", "stage 3"]
    assert stages[2].object_states == stages[0].object_states == 1
    table.selectRow(1)
    click(widget.settings.remove_stage_button)
    assert [s.name for s in widget.current_config().stages] == ["mean object", "stage 3"]


def test_stage_table_edit_add_remove(viewer_widget):
    _viewer, widget, _dataset = viewer_widget
    table = widget.stage_table
    table.set_stages([cfg.StageConfig(name="a", slices=3, slice_thickness_A=[1.0, 2.0, 3.0])])
    assert table.stages()[0].slice_thickness_A == [1.0, 2.0, 3.0]  # kept unless edited
    table.cell(0, "slice_thickness_A").setValue(4.0)
    assert table.stages()[0].slice_thickness_A == 4.0
    table.cell(0, "tilt").setChecked(True)
    table.selectRow(0)
    widget.settings.stage_details["optimizer"].value = "gd"  # the selected stage's details
    table.add_stage()
    stages = table.stages()
    assert len(stages) == 2 and stages[1].name == "stage 2"
    assert stages[1].refine == ("object", "probe", "tilt") and stages[1].optimizer == "gd"
    table.selectRow(0)
    table.remove_stage()
    table.remove_stage()  # the last stage stays
    assert [s.name for s in table.stages()] == ["stage 2"]
    for key in ("object", "probe", "tilt"):
        table.cell(0, key).setChecked(False)
    with pytest.raises(InputError, match="refine"):
        widget.current_config()


def test_optics_edits_reach_the_dataset(viewer_widget):
    _viewer, widget, dataset = viewer_widget
    same = widget.calibrated_dataset()
    for field in (
        "energy_eV",
        "convergence_semiangle_mrad",
        "angular_sampling_mrad",
        "scan_step_A",
        "defocus_A",
        "scan_rotation_deg",
    ):
        assert getattr(same, field) == getattr(dataset, field)  # exact, no display rounding
    np.testing.assert_array_equal(same.positions_A, dataset.positions_A)
    widget.optics.energy_eV.setValue(80000)
    widget.optics.step_y_A.setValue(1.6)
    widget.optics.rotation_deg.setValue(12.5)
    edited = widget.calibrated_dataset()
    assert edited.energy_eV == 80000 and edited.scan_rotation_deg == 12.5
    assert edited.scan_step_A == (1.6, 0.8)
    np.testing.assert_allclose(edited.positions_A[..., 0], 2 * dataset.positions_A[..., 0])
    np.testing.assert_allclose(edited.positions_A[..., 1], dataset.positions_A[..., 1])
    assert edited.intensities is dataset.intensities  # shared, not copied
    assert dataset.energy_eV == 60e3  # the layer's dataset is untouched


# ------------------------------------------------------------------------------- pure helpers
def test_probe_montage_and_images():
    ky, kx = 8, 6
    probe = np.zeros((3, ky, kx), np.complex64)
    probe[0, 4, 3] = 2.0  # power 4
    probe[1, 1, 1] = 1.0j  # power 1 + 1
    probe[1, 2, 2] = 1.0
    probe[2, 0, 0] = 0.0
    montage, powers = ri.probe_montage(probe, gap=2)
    assert montage.shape == (ky, 3 * kx + 2 * 2)
    np.testing.assert_allclose(powers, [4 / 6, 2 / 6, 0.0])
    assert montage[4, 3] == 1.0 and montage[1, kx + 2 + 1] == 1.0 and montage[2, kx + 2 + 2] == 1
    assert montage[:, kx : kx + 2].max() == 0.0  # the gap
    assert montage[:, 2 * (kx + 2) :].max() == 0.0  # an empty mode stays 0, not NaN

    obj = np.exp(1j * np.linspace(-1, 1, 2 * 3 * 5 * 7).reshape(2, 3, 5, 7)) * 0.9
    images = ri.reconstruction_images(obj, probe, (0.5, 0.25), (-1.0, -2.0))
    np.testing.assert_allclose(images.phase, np.angle(obj), atol=1e-6)
    np.testing.assert_allclose(images.amplitude, 0.9, atol=1e-6)
    tuples = ri.layer_tuples(images, name="r")
    phase_kw = tuples[0][1]
    assert phase_kw["scale"] == (1.0, 1.0, 0.5, 0.25)
    assert phase_kw["translate"] == (0.0, 0.0, -1.0, -2.0)
    assert tuples[1][1]["visible"] is False
    # the probe montage sits to the right of the object, same Å scale
    assert tuples[2][1]["scale"] == (0.5, 0.25)
    assert tuples[2][1]["translate"][1] > -2.0 + 7 * 0.25
    with pytest.raises(InputError, match="state, slice"):
        ri.reconstruction_images(obj[0], probe, 1.0, (0, 0))


def test_writer_refuses_layer_without_state(tmp_path):
    with pytest.raises(InputError, match="no reconstruction state"):
        rl.write_reconstruction(str(tmp_path / "x.h5"), np.zeros((2, 2)), {"name": "vbf"})
    assert not (tmp_path / "x.h5").exists()


def test_warnings_of_the_result_show_in_the_banner(viewer_widget, qtbot, monkeypatch):
    """A warning the engine puts on the state (e.g. states that did not separate) appears
    above the dock and as a napari notification."""
    from caviar_napari._qt import _dock

    _viewer, widget, _dataset = viewer_widget
    widget.set_config(tiny_config(iterations=(1, 1), update_every=1))
    real_run = engine.run
    warning = "the object states did not separate: spread at the noise floor (test)"

    def warned_run(*args, **kwargs):
        state = yield from real_run(*args, **kwargs)
        state.diagnostics["warnings"] = [warning]
        return state

    notified = []
    monkeypatch.setattr(engine, "run", warned_run)
    monkeypatch.setattr(_dock, "show_warning", notified.append)
    assert not widget.warning_banner.isVisibleTo(widget)
    widget.start()
    _wait_idle(qtbot, widget)
    assert widget.vm.warnings == [warning] and notified[-1] == warning
    assert widget.warning_banner.isVisibleTo(widget)
    assert widget.warning_banner.text() == f"⚠ {warning}"


def test_recommended_run_shows_the_source_size_live_and_the_result_panel(
    viewer_widget, qtbot, monkeypatch
):
    """The recommended recipe fits a source size: shown in the status line during the run;
    afterwards the result panel gives the loss auto chose, the source size and whether the
    states separated."""
    _viewer, widget, _dataset = viewer_widget
    widget.set_config(
        cfg.recommended_recipe(
            object_states=2, iterations=(2, 2), update_every=1, device="cpu", batch_size=36
        )
    )
    widget.set_refresh_intervals(10, 0.0, 0.0)
    shown = []
    real_status = live_display.status_text
    monkeypatch.setattr(
        live_display, "status_text", lambda *a, **k: shown.append(real_status(*a, **k)) or shown[-1]
    )
    assert not widget.result_panel.isVisibleTo(widget)
    widget.start()
    _wait_idle(qtbot, widget)
    assert shown and all(" Å FWHM · " in text for text in shown)
    state = widget.result
    assert state.source_fwhm_A > 0
    panel = widget.result_panel
    assert panel.isVisibleTo(widget) and panel.title() == "Result"
    text = panel.label.text()
    assert "loss: gaussian (chosen by auto: not counts)" in text
    assert f"source size: {state.source_fwhm_A:.3f} Å FWHM (fitted" in text
    assert panel.table.rowCount() == 1 and panel.table.item(0, 0).text() == "object states"
    assert panel.table.item(0, 5).text() in ("✓", "✗")
    assert (panel.table.item(0, 5).text() == "✗") == any(
        "did not separate" in w for w in widget.warning_banner.warnings
    )


def test_settings_holdout_source_coherence_and_stage_details(viewer_widget):
    _viewer, widget, _dataset = viewer_widget
    widget.set_config(cfg.recommended_recipe(object_states=3, device="cpu"))
    form, table = widget.settings.form, widget.stage_table
    assert form["holdout_fraction"].native.text() == "auto"
    assert form["source_fwhm_A"].value == pytest.approx(0.2)
    form["holdout_fraction"].value = 0.2
    form["source_fwhm_A"].value = 0.45
    config = widget.current_config()
    assert config.holdout_fraction == 0.2 and config.source_fwhm_A == 0.45
    form["holdout_fraction"].value = form["holdout_fraction"].min
    assert widget.current_config().holdout_fraction == "auto"
    # the selected stage's details: stopping rule, orthogonalisation, rigid shifts, order
    details = widget.settings.stage_details
    table.selectRow(1)
    assert details["remove_state_shifts"].value is True
    details["stop_patience"].value = 7
    details["orthogonalise_probe_every"].value = 0
    details["remove_state_shifts"].value = False
    details["coherence_order"].value = 3
    stages = widget.current_config().stages
    assert (stages[1].stop_patience, stages[1].orthogonalise_probe_every) == (7, 0)
    assert stages[1].remove_state_shifts is False and stages[1].coherence_order == 3
    assert stages[0].stop_patience == 20 and stages[0].remove_state_shifts is True  # untouched
    details["state_model"].value = "displacements"  # the object states as displaced atoms
    details["state_displacement_A"].value = 0.01
    stages = widget.current_config().stages
    assert (stages[1].state_model, stages[1].state_displacement_A) == ("displacements", 0.01)
    assert stages[0].state_model == "free"
    details["state_penalty"].value = "auto"  # the states' penalty, chosen by held-out patterns
    assert widget.current_config().stages[1].state_penalty == "auto"
    details["state_penalty"].value = "0.01"
    assert widget.current_config().stages[1].state_penalty == 0.01
    details["state_penalty"].value = "strong"
    with pytest.raises(InputError, match="'state_penalty' must be a number ≥ 0 or auto"):
        widget.current_config()
    details["state_penalty"].value = "0"
    assert "object states" in widget.settings.details_label.text()
    table.selectRow(0)
    assert details["stop_patience"].value == 20  # the form follows the selection
    # a source refined without a source model is refused, naming the stage
    table.cell(0, "partial_coherence").setChecked(False)  # coherent probe modes
    with pytest.raises(InputError, match="'source'"):
        widget.current_config()
    table.cell(0, "source").setChecked(False)
    assert widget.current_config().stages[0].refine == ("object", "probe")


def test_calibrate_and_save_calibrated_file(viewer_widget, qtbot, tmp_path, click, answer_dialogs):
    """Calibrate on transposed patterns stated 80 Å off focus: the calibrated data become the
    selected source, the fields show the found values; Save calibrated file… writes the input
    file of caviar calibrate."""
    from caviar_napari.io.dataset import write_stem_h5
    from caviar_napari.io.readers import load_stem

    viewer, widget, _dataset = viewer_widget
    original = load_stem("caviar_napari/resources/hbn-correlated.h5")
    flipped = dataclasses.replace(
        original,
        intensities=np.ascontiguousarray(original.intensities.swapaxes(2, 3)),
        angular_sampling_mrad=original.angular_sampling_mrad[::-1],
        defocus_A=80.0,
        source="flipped.h5",
    )
    path = tmp_path / "flipped.h5"
    write_stem_h5(path, flipped)
    viewer.add_image(
        flipped.intensities,  # (scan_y, scan_x, ky, kx), as the reader's 4D-STEM layer
        name="flipped 4D-STEM",
        metadata={DATASET_KEY: load_stem(path), PATH_KEY: str(path)},
    )
    widget.data.select("layer:flipped 4D-STEM")
    assert widget.optics.defocus_A.value() == 80.0
    assert not widget.calibrate_panel.save_button.isEnabled()  # nothing calibrated yet
    click(widget.calibrate_panel.calibrate_button)
    assert not widget.calibrate_panel.calibrate_button.isEnabled()  # one at a time
    qtbot.waitUntil(lambda: widget.calibration_outcome() is not None, timeout=WAIT_MS)
    qtbot.waitUntil(lambda: widget._calibrate_worker is None, timeout=WAIT_MS)
    assert widget.data.key() == "kept:flipped 4D-STEM (calibrated)"
    assert (
        widget.input_combo.currentText()
        == "data: flipped 4D-STEM (calibrated) (found by Calibrate)"
    )
    calibrated = widget.dataset()
    np.testing.assert_array_equal(calibrated.intensities, original.intensities)
    assert abs(widget.optics.defocus_A.value()) < 10.0
    assert abs(widget.optics.rotation_deg.value()) < 0.5
    assert widget.optics.sampling_y_mrad.value() == pytest.approx(
        original.angular_sampling_mrad[0], abs=1e-3
    )
    assert "transposed" in widget.optics.detector_label.text()
    assert "found by Calibrate" in widget.optics.defocus_A.toolTip()
    assert "detector transposed: yes" in widget.calibrate_panel.report.text()
    assert widget.calibrated_dataset().defocus_A == pytest.approx(calibrated.defocus_A)
    # back to the stored data: stored values, as stored
    widget.data.select("layer:flipped 4D-STEM")
    assert (
        widget.optics.defocus_A.value() == 80.0
        and "as stored" in widget.optics.detector_label.text()
    )
    widget.data.select("kept:flipped 4D-STEM (calibrated)")
    out = tmp_path / "calibrated.h5"
    answer_dialogs(out)
    click(widget.calibrate_panel.save_button)
    qtbot.waitUntil(lambda: widget._calibrate_worker is None, timeout=WAIT_MS)
    saved = load_stem(out)
    np.testing.assert_array_equal(saved.intensities, original.intensities)
    assert abs(saved.defocus_A) < 10.0
    assert f"wrote {out}" in widget.status_label.text()
    # a run from the calibrated data takes the file's 4D-STEM layer out of the view too
    assert widget.data.park_selected_layer(widget.dataset()) == ["flipped 4D-STEM"]
    assert "flipped 4D-STEM" not in [layer.name for layer in viewer.layers]
    assert widget.data.key() == "kept:flipped 4D-STEM (calibrated)"  # still selected
    assert widget.vm.sources.dataset("kept:flipped 4D-STEM", {}) is not None  # still there


# ------------------------------------------------------------------------------- engine options
def test_padding_memory_and_stage_options_reach_the_configuration_and_the_yaml(
    viewer_widget, qtbot, tmp_path, click, answer_dialogs
):
    """The engine's options in the dock: detector padding (global and per stage), memory caps
    and placements, object margin, mini-batch epochs, L-BFGS memory; saved as the CLI's YAML
    and loaded back; a bad padding or an out-of-core placement is refused with the reason."""
    _viewer, widget, _dataset = viewer_widget
    widget.set_config(tiny_config())
    form, memory = widget.settings.form, widget.settings.memory_form
    details, table = widget.settings.stage_details, widget.stage_table
    assert form["detector_padding"].value == "auto" and memory["host_memory_MB"].value == 0
    assert memory["host_memory_MB"].native.text() == "free"
    form["detector_padding"].value = "32x32"
    memory["host_memory_MB"].value = 5000
    memory["lbfgs_history"].value = "half"
    memory["object_padding_px"].value = 6
    table.selectRow(1)
    details["detector_padding"].value = "40x40"
    details["minibatch_epochs"].value = 2
    details["minibatch_size"].value = 8
    details["lbfgs_memory"].value = 5
    config = widget.current_config()
    assert config.detector_padding == "32x32" and config.host_memory_MB == 5000
    assert config.device_memory_MB is None and config.lbfgs_history == "half"
    assert config.object_padding_px == 6
    first, second = config.stages
    assert first.detector_padding is None and first.minibatch_epochs == 0  # untouched
    assert (second.detector_padding, second.minibatch_epochs) == ("40x40", 2)
    assert (second.minibatch_size, second.lbfgs_memory) == (8, 5)
    path = tmp_path / "options.yaml"
    answer_dialogs(path)
    click(widget.settings.save_button)
    assert load_yaml(path).to_dict() == config.to_dict()  # what caviar reconstruct reads
    widget.set_config(tiny_config())
    assert form["detector_padding"].value == "auto" and memory["lbfgs_history"].value == "auto"
    click(widget.settings.load_button)
    assert widget.current_config().to_dict() == config.to_dict()
    table.selectRow(1)
    assert details["detector_padding"].value == "40x40"
    assert form["detector_padding"].value == "32x32"
    table.selectRow(0)
    assert details["detector_padding"].value == ""  # the reconstruction's padding
    # refused with the reason, before Start
    form["detector_padding"].value = "wide"
    with pytest.raises(InputError, match="detector_padding"):
        widget.current_config()
    qtbot.waitUntil(lambda: "cannot start" in widget.memory_label.text(), timeout=WAIT_MS)
    assert "'detector_padding'" in widget.memory_label.text()
    form["detector_padding"].value = "auto"
    memory["data_placement"].value = "file"
    memory_text = widget.memory_label.text
    qtbot.waitUntil(lambda: "'data_placement' is 'file'" in memory_text(), timeout=WAIT_MS)
    assert widget.start() is None and not widget.is_running
    assert "not started: 'data_placement' is 'file'" in widget.status_label.text()


def test_plan_button_shows_the_dry_run_and_the_grid_follows_the_padding(
    viewer_widget, qtbot, click
):
    _viewer, widget, _dataset = viewer_widget
    config = tiny_config()
    config.detector_padding = "none"
    config.stages[1].detector_padding = "40x36"
    widget.set_config(config)
    grid = widget.settings.grid_label.text
    qtbot.waitUntil(lambda: "'mean object' 24×24" in grid(), timeout=WAIT_MS)
    assert "'object states' 40×36" in grid()
    assert "stage 'object states'" in widget.memory_label.text()  # the larger window's stage
    assert not widget.plan_label.isVisibleTo(widget)
    click(widget.plan_button)
    assert widget.plan_label.isVisibleTo(widget)
    lines = widget.plan_label.text().splitlines()
    assert lines[0].startswith("data: 36 patterns of 24×24 px; loss gaussian (chosen by auto)")
    assert lines[2].startswith("stage 'object states': 40×36 window (padding 40x36), pixel")
    assert lines[3].startswith("memory plan (stage 'object states', cpu")
    assert lines == widget.vm.plan.lines
    widget.settings.form["detector_padding"].value = "48x48"
    qtbot.waitUntil(lambda: "'mean object' 48×48" in grid(), timeout=WAIT_MS)
    qtbot.waitUntil(lambda: "(padding 48x48)" in widget.plan_label.text(), timeout=WAIT_MS)
    click(widget.plan_button)
    assert not widget.plan_label.isVisibleTo(widget)


def test_unseparated_states_turn_the_banner_red_as_soon_as_their_stage_ends(
    viewer_widget, qtbot, monkeypatch
):
    """One iteration cannot separate the object states: when that stage ends, while the run
    is still going, the dock says so plainly — the engine's sentence in a red banner and a ✗
    in the result panel — and the result keeps saying it."""
    import threading

    _viewer, widget, _dataset = viewer_widget
    widget.set_config(tiny_config(iterations=(1, 1), update_every=1))
    real_run = engine.run
    release = threading.Event()

    def held_after_the_report(*args, **kwargs):
        gen = real_run(*args, **kwargs)
        while True:
            try:
                progress = next(gen)
            except StopIteration as stop:
                return stop.value
            yield progress
            if progress.separation is not None:  # the run goes on only when the test says
                release.wait(WAIT_MS / 1000)

    monkeypatch.setattr(engine, "run", held_after_the_report)
    banner, panel = widget.warning_banner, widget.result_panel
    assert widget.progress.caption() == "no run yet"
    widget.start()
    try:
        qtbot.waitUntil(lambda: banner.alarm, timeout=WAIT_MS)
        assert widget.is_running and widget.result is None  # the run is not over
        (warning,) = banner.warnings
        assert warning.startswith("stage 'object states': the 2 object states did not separate")
        assert banner.isVisibleTo(widget) and banner.text() == f"⚠ {warning}"
        assert "#5c1111" in banner.styleSheet()  # red, not the amber of other warnings
        assert panel.isVisibleTo(widget) and panel.title() == "Run in progress"
        assert panel.table.item(0, 0).text() == "object states"
        assert panel.table.item(0, 5).text() == "✗"
        assert panel.verdict.isVisibleTo(widget)
        assert panel.verdict.text().startswith(
            "stage 'object states': the object states did NOT separate"
        )
    finally:
        release.set()
    _wait_idle(qtbot, widget)
    assert panel.title() == "Result" and banner.alarm and warning in banner.warnings
    assert widget.progress.caption() == "2 / 2 iterations"


def test_position_tilt_and_probe_options_reach_the_configuration_and_the_yaml(
    viewer_widget, tmp_path, click, answer_dialogs
):
    """Issue 15's stage options in the stage details (refined positions and scan map, tilt
    estimate, probe support, fixed probe intensity) and the global bound and penalty of the
    positions: in the configuration, in the YAML the CLI reads, and back."""
    _viewer, widget, _dataset = viewer_widget
    widget.set_config(tiny_config())
    details, table = widget.settings.stage_details, widget.stage_table
    positions = widget.settings.position_form
    table.selectRow(0)
    assert details["positions"].value is False and details["probe_support"].value == "none"
    assert positions["position_bound_A"].value == pytest.approx(1.0)
    details["positions"].value = True
    details["affine"].value = True
    details["probe_support"].value = "aperture"
    table.selectRow(1)
    table.cell(1, "slices").setValue(2)  # the tilt estimate needs slices
    details["tilt_estimate"].value = True
    details["fixed_probe_intensity"].value = True
    positions["position_bound_A"].value = 0.125
    positions["position_penalty"].value = "2.5e-7"
    table.cell(0, "probe").setChecked(False)  # a table edit keeps the detail blocks
    config = widget.current_config()
    first, second = config.stages
    assert first.refine == ("object", "positions", "affine")
    assert first.probe_support == "aperture" and not first.tilt_estimate
    assert second.refine == ("object",) and second.probe_support == "none"
    assert second.tilt_estimate and second.fixed_probe_intensity
    assert not first.fixed_probe_intensity
    assert config.position_bound_A == 0.125 and config.position_penalty == 2.5e-7
    path = tmp_path / "positions.yaml"
    answer_dialogs(path)
    click(widget.settings.save_button)
    loaded = load_yaml(path)  # what caviar reconstruct reads
    assert loaded.to_dict() == config.to_dict()
    assert loaded.stages[0].refine == ("object", "positions", "affine")
    widget.set_config(tiny_config())
    assert widget.current_config().stages[0].refine == ("object", "probe")
    click(widget.settings.load_button)
    assert widget.current_config().to_dict() == config.to_dict()
    table.selectRow(0)
    assert details["positions"].value is True and details["affine"].value is True
    details["affine"].value = False  # unticked in the details: only the shifts are refined
    assert widget.current_config().stages[0].refine == ("object", "positions")
    assert positions["position_penalty"].value == "2.5e-07"
    positions["position_penalty"].value = "small"
    with pytest.raises(InputError, match="position_penalty"):
        widget.current_config()


def test_refined_positions_are_drawn_with_arrows_and_the_result_says_so(
    viewer_widget, qtbot, tmp_path
):
    """A run that refines the scan positions and estimates the tilt: the result panel gives
    the refinement's line and the tilt estimate; the refined positions are a Points layer and
    the shifts, scaled by the factor the layer's name states, arrows from the nominal grid;
    a saved file reopened with the reader gives the same layers."""
    viewer, widget, dataset = viewer_widget
    stages = [
        cfg.StageConfig(name="mean object", iterations=3, slices=2, slice_thickness_A=5.0),
        cfg.StageConfig(
            name="positions",
            iterations=3,
            slices=2,
            slice_thickness_A=5.0,
            refine=("object", "probe", "positions", "affine"),
            tilt_estimate=True,
        ),
    ]
    widget.set_config(cfg.ReconstructionConfig(stages=stages, device="cpu", batch_size=36))
    widget.start()
    _wait_idle(qtbot, widget)
    state = widget.result
    assert state is not None and state.finished, widget.status_label.text()
    nominal = engine.plan_geometry(dataset, state.config).positions_A
    shifts = state.scan_positions_A - nominal
    assert np.abs(shifts).max() > 1e-4  # the positions moved
    text = widget.result_panel.label.text()
    assert "scan positions refined: shifts rms" in text and "drift (" in text
    assert "tilt estimate at the start of 'positions' (adjacent slices, 1 gaps)" in text
    assert "tilt used:" in text
    refined = _layer(viewer, "reconstruction refined positions")
    np.testing.assert_allclose(refined.data, state.scan_positions_A)
    arrows = [la for la in viewer.layers if la.name.startswith("reconstruction position shifts")]
    assert len(arrows) == 1 and arrows[0].visible
    factor = arrows[0].metadata["caviar_arrow_factor"]
    assert arrows[0].name == f"reconstruction position shifts ×{factor:g}" and factor >= 1
    np.testing.assert_allclose(arrows[0].data[:, 0], nominal, atol=1e-9)  # from the grid
    np.testing.assert_allclose(arrows[0].data[:, 1], factor * shifts, atol=1e-9)
    longest = factor * np.linalg.norm(shifts, axis=1).max()
    assert 0.8 <= longest <= 2 * 0.8 * (1 + 1e-9)  # one to two scan steps (0.8 Å)
    scan = _layer(viewer, "reconstruction scan positions")
    np.testing.assert_allclose(scan.data, nominal, atol=1e-9)  # the nominal grid
    # a second result with other shifts replaces the arrows (the factor in the name may differ)
    widget.stage_table.cell(1, "iterations").setValue(5)
    widget.start_combo.setCurrentIndex(widget.start_combo.findData("reconstruction phase"))
    widget.start()
    _wait_idle(qtbot, widget)
    arrows = [la for la in viewer.layers if la.name.startswith("reconstruction position shifts")]
    assert len(arrows) == 1
    # the reader hook: the same layers from the file, the nominal grid recovered from it
    path = tmp_path / "refined.h5"
    widget.save_result(str(path))
    tuples = {kw["name"]: (data, kw, kind) for data, kw, kind in rl.reconstruction_layer_data(path)}
    data, kwargs, kind = tuples["refined refined positions"]
    assert kind == "points"
    np.testing.assert_allclose(data, widget.result.scan_positions_A)
    (name,) = [n for n in tuples if n.startswith("refined position shifts ×")]
    data, kwargs, kind = tuples[name]
    assert kind == "vectors"
    np.testing.assert_allclose(data[:, 0], nominal, atol=1e-9)
