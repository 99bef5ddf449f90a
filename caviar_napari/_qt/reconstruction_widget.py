"""The **Reconstruction** dock widget: live mixed-object ptychography in napari.

Input is a 4D-STEM layer opened by the plugin's reader (its metadata holds the
:class:`~caviar_napari.io.dataset.STEMDataset`) or a file chosen here; the optics and scan
calibration is editable, and *Calibrate* finds the pattern centre, detector transpose, scan
rotation and defocus from the data (issue 15; the calibrated data become a new source, and
*Save calibrated file…* writes the input file of ``caviar calibrate``); the reconstruction
settings are the engine's :class:`~caviar_napari.data.config.ReconstructionConfig` (the
recommended recipe by default, or the paper's with free probe modes), loadable from and savable
to the YAML file ``caviar reconstruct --config`` reads: the detector padding (globally and per
stage), the held-out fraction, the starting source size, mini-batch epochs, and the memory
settings (caps, placements of the data and of the L-BFGS history); per stage, the refinement of
the scan positions and of their affine map (with the global bound and penalty), the tilt
estimate from adjacent slices, the probe's aperture support and fixed intensity (issue 15).
Before Start the dock makes the run's dry run in a worker
(:mod:`caviar_napari.viewmodels.recon_plan`): the memory estimate (one line; a run that does not
fit is refused), each stage's probe window and pixel, and, behind *Plan*, the whole plan as
``caviar reconstruct --dry-run`` prints it.

The dock binds its controls (:mod:`caviar_napari._qt.reconstruction`) to the Qt-free
:class:`~caviar_napari.viewmodels.reconstruction.ReconstructionViewModel`, which holds the state
and the jobs.  Start prepares the run's layers in a worker and creates them once, then runs
:func:`~caviar_napari.viewmodels.reconstruction.reconstruction_job` in a napari generator
worker; the live display (:mod:`caviar_napari._qt.reconstruction.live_display`) shows the layers
``reconstruction phase`` (dims ``(state, slice, y, x)``, Å scale, object origin as translate, so
it sits in the scan frame), ``… amplitude`` (hidden), ``… probe modes`` and ``… scan positions``
(hidden), the loss plot with stage boundaries, a progress bar and a status line with stage,
iteration and ETA.  Start/Pause/Resume/Stop act between iterations; Stop keeps the state reached
as the result, which can be saved, reopened with the plugin's reader and continued ("Start
from").  Worker errors become a napari notification and the dock returns to idle with its inputs
intact.  The status line shows the fitted source size of a partially coherent probe; the
result panel shows which loss ``auto`` chose, the held-out positions and whether the object
states separated, the tilt estimate, and how far the scan positions moved (refined positions
are drawn as ``… refined positions`` with arrows from the nominal ones, ``… position shifts ×F``,
drawn F times longer than the shifts); the warnings a result carries are shown in the dock's
banner.  Each
multi-state stage's separation report is shown as soon as the stage ends, during the run: object
states that did not separate turn the banner red, with the engine's plain sentence saying so.
"""

from __future__ import annotations

from typing import Any

from napari.layers import Image
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QTimer
from qtpy.QtGui import QFontDatabase
from qtpy.QtWidgets import (
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QSizePolicy,
    QVBoxLayout,
)

from caviar_napari._qt._dock import ViewerDock, follow_layers
from caviar_napari._qt._file_dialogs import HDF5_FILTER, ask_and_run, ask_path
from caviar_napari._qt._forms import ERROR_STYLE, check_box, hrow, push_button, text_label
from caviar_napari._qt._plot import ProgressStrip
from caviar_napari._qt._worker import error_message, start_worker
from caviar_napari._qt.reconstruction.calibrate_panel import CalibratePanel
from caviar_napari._qt.reconstruction.data_panel import DataPanel
from caviar_napari._qt.reconstruction.live_display import LiveDisplay
from caviar_napari._qt.reconstruction.loss_plot import LossPlot
from caviar_napari._qt.reconstruction.optics_form import OpticsForm
from caviar_napari._qt.reconstruction.result_panel import ResultPanel
from caviar_napari._qt.reconstruction.settings_panel import SettingsPanel
from caviar_napari.core.engine import ReconState
from caviar_napari.core.memory import MemoryEstimate
from caviar_napari.data import config as cfg
from caviar_napari.errors import CaviarError
from caviar_napari.io.dataset import STEMDataset
from caviar_napari.viewmodels.calibration import (
    CALIBRATED_SUFFIX,
    CalibrationOutcome,
    calibrate_job,
    save_calibrated_job,
)
from caviar_napari.viewmodels.layer_keys import STATE_KEY
from caviar_napari.viewmodels.recon_images import ReconImages
from caviar_napari.viewmodels.recon_plan import RunPlan, plan_job
from caviar_napari.viewmodels.recon_report import result_report
from caviar_napari.viewmodels.reconstruction import (
    NEW_START,
    PRESET_PAPER,
    PRESET_RECOMMENDED,
    LivePacer,
    ReconstructionViewModel,
    RunResult,
    RunUpdate,
    detect_job,
    history_starts,
    prepare_job,
    reconstruction_job,
)

__all__ = ["ReconstructionWidget"]

#: Debounce of the memory estimate after an edit, ms.
ESTIMATE_DELAY_MS = 300


class ReconstructionWidget(ViewerDock):
    """Dock widget that runs, shows, stops, saves and continues CAVIAR reconstructions.

    Parameters
    ----------
    napari_viewer
        The viewer the widget docks into.

    Attributes
    ----------
    vm
        The view-model: state, validation, jobs.
    """

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__(napari_viewer)
        self.vm = ReconstructionViewModel()
        self._estimate_worker = None
        self._estimate_again = False
        self._run_worker = None
        self._calibrate_worker = None
        self._launching = False
        self._estimate_timer = QTimer(self)
        self._estimate_timer.setSingleShot(True)
        self._estimate_timer.setInterval(ESTIMATE_DELAY_MS)
        self._estimate_timer.timeout.connect(self._run_estimate)
        pacer = LivePacer()
        self._build(pacer)
        self.display = LiveDisplay(
            self.viewer, self.status_label, self.progress, self.loss_plot, pacer,
            self.progress_check,
        )  # fmt: skip
        self.settings.show_config(self.vm.config)
        follow_layers(self, self.viewer, self.refresh_inputs)
        self.refresh_inputs()
        self._detect_worker = start_worker(detect_job, on_yield=self.settings.show_devices)
        self._set_running(False)
        self.fit_width()

    # ================================================================== layout
    def _build(self, pacer: LivePacer) -> None:
        layout = self.body
        self.data = DataPanel(self.viewer, self.vm.sources)
        self.data.selection_changed.connect(self._on_input_changed)
        layout.addWidget(self.data)

        optics_box = QGroupBox("Optics and scan")
        optics_box.setSizePolicy(QSizePolicy.Preferred, QSizePolicy.Maximum)
        self.optics = OpticsForm()
        for box in self.optics.fields():
            box.valueChanged.connect(self.schedule_estimate)
        optics_layout = QVBoxLayout(optics_box)
        optics_layout.addWidget(self.optics)
        self.calibrate_panel = CalibratePanel()
        self.calibrate_panel.calibrate_button.clicked.connect(lambda *_: self.calibrate())
        self.calibrate_panel.save_button.clicked.connect(lambda *_: self._choose_calibrated_path())
        optics_layout.addWidget(self.calibrate_panel)
        layout.addWidget(optics_box)

        self.settings = SettingsPanel()
        self.settings.changed.connect(self.schedule_estimate)
        self.settings.recommended_button.clicked.connect(
            lambda *_: self.apply_preset(PRESET_RECOMMENDED)
        )
        self.settings.paper_button.clicked.connect(lambda *_: self.apply_preset(PRESET_PAPER))
        self.settings.load_button.clicked.connect(
            lambda *_: self.settings.ask_load(self.load_config)
        )
        self.settings.save_button.clicked.connect(
            lambda *_: self.settings.ask_save(self.save_config)
        )
        layout.addWidget(self.settings)

        layout.addWidget(self._build_run_box())
        self.result_panel = ResultPanel()
        layout.addWidget(self.result_panel)
        layout.addStretch(1)
        self._build_footer(pacer)
        self.data.message.connect(self.status_label.setText)
        self.fit_width()

    def _build_run_box(self) -> QGroupBox:
        box = QGroupBox("Run")  # as tall as its wrapped texts need (the plan, the memory)
        box.setSizePolicy(QSizePolicy.Preferred, QSizePolicy.Preferred)
        layout = QVBoxLayout(box)
        form = QFormLayout()
        self.start_combo = QComboBox()
        self.start_combo.setToolTip(
            "Start a new reconstruction, or continue a reconstruction layer (a finished or "
            "stopped run, or a reconstruction file opened in napari) from its stage and "
            "iteration with its optimiser memory."
        )
        self.start_combo.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.start_combo.currentIndexChanged.connect(self._on_start_from_changed)
        form.addRow("Start from:", self.start_combo)
        self.progress_check = check_box(
            "progress also in napari's activity dock",
            False,
            "napari's activity indicator animates while a progress bar exists; on displays "
            "without hardware OpenGL (Xvfb, VNC, remote desktops) each frame repaints the "
            "whole window and the GUI stalls. The dock's own progress bar is always shown.",
        )
        layout.addLayout(form)
        layout.addWidget(self.progress_check)
        self.memory_label = text_label("memory: –")
        self.memory_label.setToolTip("Estimated memory of the most demanding stage.")
        self.plan_button = push_button(
            "Plan",
            self._toggle_plan,
            "Show the dry run (caviar reconstruct --dry-run): the data loss, the held-out "
            "positions, each stage's probe window and pixel, and the memory plan (where the "
            "data and the L-BFGS history go, bytes per part).",
        )
        self.plan_button.setCheckable(True)
        layout.addLayout(hrow((self.memory_label, 1), self.plan_button))
        self.plan_label = text_label(selectable=True)  # wrapped: the dock keeps its width
        self.plan_label.setFont(QFontDatabase.systemFont(QFontDatabase.FixedFont))
        self.plan_label.setVisible(False)
        layout.addWidget(self.plan_label)
        return box

    def _toggle_plan(self) -> None:
        self.plan_label.setVisible(self.plan_button.isChecked())

    def _build_footer(self, pacer: LivePacer) -> None:
        """Run buttons, progress, status and loss plot: below the scroll area, always seen."""
        footer = self.footer
        controls = QHBoxLayout()
        self.start_button = push_button("Start", self.start, "Start the reconstruction.")
        self.pause_button = push_button("Pause", self.pause, "Pause after the current iteration.")
        self.resume_button = push_button("Resume", self.resume, "Continue a paused run.")
        self.stop_button = push_button(
            "Stop", self.stop, "Stop after the current iteration; keep the result."
        )
        for b in (self.start_button, self.pause_button, self.resume_button, self.stop_button):
            controls.addWidget(b)
        footer.addLayout(controls)
        self.progress = ProgressStrip()
        self.save_button = push_button(
            "Save result…",
            self._choose_result_path,
            "Save the result as a reconstruction file (HDF5).",
        )
        footer.addLayout(hrow((self.progress, 1), self.save_button))
        self.status_label = text_label("idle", selectable=True)
        footer.addWidget(self.status_label)
        self.loss_plot = LossPlot(pacer.history)
        self.loss_plot.setMinimumHeight(120)
        self.loss_plot.setMaximumHeight(320)
        footer.addWidget(self.loss_plot, 1)
        # a tall dock gives a third of the extra height to the plot
        outer = self.layout()
        outer.setStretchFactor(self.scroll, 2)
        outer.setStretchFactor(footer, 1)

    # ------------------------------------------------------------------ shortcuts
    @property
    def result(self) -> ReconState | None:
        """The last finished or stopped state (what Save… writes)."""
        return self.vm.result

    @property
    def stage_table(self):
        """The stage table of the settings panel."""
        return self.settings.stage_table

    @property
    def input_combo(self) -> QComboBox:
        """The list of 4D-STEM sources."""
        return self.data.combo

    @property
    def images_shown(self) -> int:
        """Live layer updates shown during the current (or last) run."""
        return self.display.images_shown

    @property
    def is_running(self) -> bool:
        """Whether a reconstruction is being prepared, runs, or is paused."""
        return self.vm.is_running

    def set_refresh_intervals(self, tick_ms: int, text_s: float, image_s: float) -> None:
        """Display timer period (ms) and the shortest times between status and between layer
        updates (s)."""
        self.display.set_intervals(tick_ms, text_s, image_s)

    # ================================================================== inputs
    def _state_layers(self) -> list[Any]:
        return [
            layer
            for layer in self.viewer.layers
            if isinstance(layer, Image) and layer.metadata.get(STATE_KEY) is not None
        ]

    def refresh_inputs(self, *_: Any) -> None:
        """Refill the data and start-from lists from the viewer's layers (keeps the choices)."""
        self.data.refresh()
        current = self.start_combo.currentData()
        self.start_combo.blockSignals(True)
        self.start_combo.clear()
        self.start_combo.addItem(NEW_START, None)
        for layer in self._state_layers():
            state = layer.metadata[STATE_KEY]
            self.start_combo.addItem(f"{layer.name} (it. {state.iteration})", layer.name)
        index = self.start_combo.findData(current) if current is not None else 0
        self.start_combo.setCurrentIndex(max(index, 0))
        self.start_combo.blockSignals(False)

    def dataset(self) -> STEMDataset | None:
        """The selected dataset as stored (before the calibration edits), or None."""
        return self.data.dataset()

    def _sync(self) -> None:
        """Hand the controls' values to the view-model (``InputError`` if invalid)."""
        if self.vm.dataset is not self.dataset():
            self.vm.select(self.dataset())
        self.vm.calibration = self.optics.calibration()
        self.vm.set_config(self.settings.config())

    def calibrated_dataset(self) -> STEMDataset:
        """The selected dataset with the calibration of the optics form (validated)."""
        self._sync()
        return self.vm.calibrated_dataset()

    def open_file(self, path: str) -> Any:
        """Read a 4D-STEM file in a worker and select it as the input; returns the worker."""
        return self.data.open_file(path)

    def _on_input_changed(self) -> None:
        self.vm.select(self.dataset())
        self.optics.show_calibration(self.vm.calibration)
        outcome = self.calibration_outcome()
        self.optics.show_found(
            None if outcome is None else outcome.detector_text,
            None if outcome is None else outcome.confidence(),
        )
        self.calibrate_panel.show_outcome(outcome)
        self.optics.setEnabled(self.vm.calibration is not None and not self.is_running)
        self._update_buttons()
        self.schedule_estimate()

    # ================================================================== calibration
    def calibration_outcome(self) -> CalibrationOutcome | None:
        """The calibration that made the selected data (None: not calibrated here)."""
        return self.vm.calibrations.get(self.data.key())

    def calibrate(self) -> Any:
        """Calibrate the selected data from their patterns in a worker (pattern centre,
        detector transpose, scan rotation, defocus); the calibrated data become a new source,
        selected, whose fields show what was found.  Returns the worker (None if refused)."""
        if self.is_running or self._calibrate_worker is not None:
            return None
        try:
            self._sync()
            dataset = self.vm.calibrated_dataset()
        except CaviarError as exc:
            return self._refuse_calibration(str(exc))
        key, path = self.data.key(), self.data.source_path()
        outcome = self.calibration_outcome()
        if outcome is not None:  # calibrating calibrated data: start from what they came from
            path = outcome.source_path
        name = self.vm.sources.name(key).removesuffix(CALIBRATED_SUFFIX) + CALIBRATED_SUFFIX
        self.calibrate_panel.show_outcome(None, "calibrating from the patterns…")
        self._calibrate_worker = start_worker(
            calibrate_job,
            dataset,
            self.calibrate_panel.form(),
            path,
            on_return=lambda out: self._on_calibrated(name, out),
            on_error=lambda exc: self.calibrate_panel.show_outcome(
                None, f"calibration failed: {error_message(exc)}"
            ),
            on_done=self._calibration_done,
        )
        self._update_buttons()
        return self._calibrate_worker

    def _refuse_calibration(self, reason: str) -> None:
        show_error(f"not calibrated: {reason}")
        self.calibrate_panel.show_outcome(None, f"not calibrated: {reason}")

    def _on_calibrated(self, name: str, outcome: CalibrationOutcome) -> None:
        key = self.vm.sources.keep(
            name, outcome.dataset, path=outcome.source_path, note="found by Calibrate"
        )
        self.vm.calibrations[key] = outcome
        self.data.refresh()
        self.data.select(key)
        self.show_warnings(outcome.warnings)
        self.status_label.setText(f"calibrated: '{name}' selected, the fields show what was found")

    def _calibration_done(self) -> None:
        self._calibrate_worker = None
        self._update_buttons()

    def save_calibrated(self, path: str) -> Any:
        """Write the calibrated input file of ``caviar calibrate`` for the file the selected
        (calibrated) data came from, in a worker; returns the worker."""
        outcome = self.calibration_outcome()
        if outcome is None:
            raise CaviarError("calibrate the data first (Calibrate), then save them")
        d = outcome.result
        overrides = {
            "energy_eV": float(self.vm.calibration.energy_eV),
            "convergence_semiangle_mrad": float(self.vm.calibration.convergence_semiangle_mrad),
            "scan_step_A": tuple(self.vm.calibration.scan_step_A),
        }
        if not d.geometry.transposed:  # the stored detector frame: same axes
            overrides["angular_sampling_mrad"] = tuple(self.vm.calibration.angular_sampling_mrad)
        self.status_label.setText(f"writing {path}…")
        self._calibrate_worker = start_worker(
            save_calibrated_job,
            outcome.source_path or "",
            str(path),
            outcome.form,
            overrides,
            on_return=self._on_calibrated_saved,
            on_error=lambda exc: self.status_label.setText(f"not saved: {error_message(exc)}"),
            on_done=self._calibration_done,
        )
        self._update_buttons()
        return self._calibrate_worker

    def _on_calibrated_saved(self, summary: Any) -> None:
        self.show_warnings([*self.warning_banner.warnings, *summary.warnings])
        self.status_label.setText(summary.lines[-1] if summary.lines else "saved")
        show_info(summary.lines[-1] if summary.lines else "calibrated file saved")

    def _choose_calibrated_path(self) -> None:
        path = ask_path(self, "Save calibrated 4D-STEM file", HDF5_FILTER, save_as="calibrated.h5")
        if path:
            self.save_calibrated(path)

    # ================================================================== configuration
    def current_config(self) -> cfg.ReconstructionConfig:
        """The configuration shown in the widget, validated (``InputError`` otherwise)."""
        return self.vm.set_config(self.settings.config())

    def set_config(self, config: cfg.ReconstructionConfig) -> None:
        """Show ``config`` in the widget (fields the widget does not show are kept)."""
        self.settings.show_config(self.vm.set_config(config))

    def apply_preset(self, name: str) -> None:
        """Replace the stages by those of preset ``name`` (the recommended recipe or the
        paper's with free probe modes; slices and dz kept)."""
        stages = self.vm.preset_stages(name, *self.settings.first_stage_slicing())
        self.stage_table.set_stages(stages)
        self.settings.stage_details.follow()

    def load_config(self, path: str) -> None:
        """Load a configuration YAML (the CLI's format) into the widget."""
        self.settings.show_config(self.vm.load_config(path))

    def save_config(self, path: str) -> None:
        """Save the widget's configuration as YAML (the CLI's format)."""
        self.current_config()
        self.vm.save_config(path)

    # ================================================================== memory estimate
    def schedule_estimate(self, *_: Any) -> None:
        """Recompute the memory estimate soon (debounced; runs in a worker)."""
        if not self.is_running:
            self._estimate_timer.start()

    def _run_estimate(self) -> None:
        if self._estimate_worker is not None:
            self._estimate_again = True
            return
        try:
            dataset = self.calibrated_dataset()
            config = self.vm.config
        except CaviarError as exc:
            self._show_estimate(exc)
            return
        self._estimate_again = False
        self._estimate_worker = start_worker(
            plan_job, dataset, config, on_yield=self._show_estimate, on_done=self._estimate_done
        )

    def _estimate_done(self) -> None:
        self._estimate_worker = None
        if self._estimate_again:
            self._run_estimate()

    def _show_estimate(self, estimate: RunPlan | MemoryEstimate | CaviarError) -> None:
        text, ok = self.vm.accept_estimate(estimate)
        self.memory_label.setText(text)
        self.memory_label.setStyleSheet("" if ok else ERROR_STYLE)
        plan = self.vm.plan
        if plan is not None:
            self.plan_label.setText("\n".join(plan.lines))
            self.settings.show_grids(plan.grid_text, "\n".join(g.text for g in plan.grids))
        else:
            self.plan_label.setText(text)
            self.settings.show_grids("grid: –")
        self._update_buttons()

    # ================================================================== start from
    def _start_layer(self) -> Any:
        name = self.start_combo.currentData()
        if name is None:
            return None
        return next((la for la in self._state_layers() if la.name == name), None)

    def _on_start_from_changed(self, *_: Any) -> None:
        layer = self._start_layer()
        if layer is None:
            return
        state: ReconState = layer.metadata[STATE_KEY]
        self.set_config(state.config)
        self.status_label.setText(self.vm.continue_text(layer.name, state))
        self.loss_plot.set_history(*history_starts(state))
        self.result_panel.show_report(result_report(state), f"Start from: {layer.name}")

    # ================================================================== run control
    def start(self) -> Any:
        """Start (or continue) a reconstruction; returns the worker, or None if refused.

        The run's layers are prepared in a worker and created once before the run starts.
        """
        if self.is_running:
            return None
        start_layer = self._start_layer()
        state = start_layer.metadata[STATE_KEY] if start_layer is not None else None
        try:
            self._sync()
            request = self.vm.begin(state)
        except CaviarError as exc:
            return self._refuse(str(exc))
        self.data.park_selected_layer(request.dataset)
        if state is None:
            self.loss_plot.clear()
        else:
            self.loss_plot.set_history(*history_starts(state))
        self._set_running(True)
        self.show_warnings(self.vm.warnings)  # none yet: the run's own come as its stages end
        self.status_label.setText("preparing the run's layers…")
        self._run_worker = None
        self.worker = start_worker(
            prepare_job,
            request.dataset,
            request.config,
            request.state,
            on_return=self._launch,
            on_error=self._on_error,
            on_done=self._prepare_done,
        )
        return self.worker

    def _launch(self, images: ReconImages) -> None:
        """The layers' images are ready: create the layers (one per event-loop turn), then
        start the run."""
        request = self.vm.request
        if request is None or request.control.stopped:
            return
        self._launching = True
        self._create_layers(images)

    def _create_layers(self, images: ReconImages) -> None:
        request = self.vm.request
        if request is None or request.control.stopped:  # stopped while the layers were made
            self._launching = False
            self._on_done()
            return
        if not self.display.create_layers(images, request.dataset.source):
            QTimer.singleShot(0, lambda: self._create_layers(images))
            return
        self._launching = False
        # everything that may process events (napari's progress bar does) happens before the
        # worker starts, so its signals can only arrive once the widget is in the running state
        images_wanted = self.display.begin(
            source=request.dataset.source,
            total=request.iterations_left,
            start_iteration=request.start_iteration,
        )
        self._run_worker = start_worker(
            reconstruction_job,
            request.dataset,
            request.config,
            state=request.state,
            control=request.control,
            images_wanted=images_wanted,
            on_yield=self._on_update,
            on_return=self._on_result,
            on_error=self._on_error,
            on_done=self._on_done,
        )
        self.worker = self._run_worker
        self._update_buttons()

    def _prepare_done(self) -> None:
        if self._run_worker is None and not self._launching:  # failed or stopped before
            self._on_done()

    def _refuse(self, reason: str) -> None:
        show_error(f"not started: {reason}")
        self.status_label.setText(f"not started: {reason}")

    def pause(self) -> None:
        """Hold the run after the current iteration."""
        if self.is_running and not self.vm.stopping:
            self.vm.pause()
            self.display.set_paused(True)
            self._update_buttons()

    def resume(self) -> None:
        """Continue a paused run."""
        if self.is_running:
            self.vm.resume()
            self.display.set_paused(False)
            self._update_buttons()

    def stop(self) -> None:
        """Stop after the current iteration; the state reached becomes the result."""
        if self.is_running:
            self.vm.stop()
            self.status_label.setText("stopping after the current iteration…")
            self._update_buttons()

    def _on_update(self, update: RunUpdate) -> None:
        """Yield slot: the live display's bookkeeping; a multi-state stage that just ended
        shows its state separation at once (result panel, banner: red when the states did
        not separate)."""
        self.display.on_update(update)
        if update.separation is not None:
            self.vm.accept_separation(update.separation)
            self.result_panel.show_report(self.vm.report, "Run in progress")
            self.show_warnings(self.vm.warnings, alarm=bool(self.vm.unseparated))

    def _on_result(self, result: RunResult) -> None:
        text = self.vm.accept_result(result)
        self.display.show_result(result, text)
        self.result_panel.show_report(self.vm.report)
        self.show_warnings(self.vm.warnings, alarm=bool(self.vm.unseparated))

    def _on_error(self, exc: BaseException) -> None:
        self.display.refresh(force=True)  # show the last live state reached before the failure
        self.status_label.setText(f"failed: {error_message(exc)}")

    def _on_done(self) -> None:
        self.worker = None
        self._run_worker = None
        # the rest in a later event-loop turn, so the result's repaint comes first; the dock
        # counts as running until then
        QTimer.singleShot(0, self._after_run)

    def _after_run(self) -> None:
        self.vm.end()
        self.refresh_inputs()
        self._set_running(False)
        self.schedule_estimate()
        self.display.end()  # last: napari's progress bar processes events when it closes

    def _set_running(self, running: bool) -> None:
        for w in (self.data, self.start_combo, self.progress_check, self.calibrate_panel):
            w.setEnabled(not running)
        self.settings.set_editable(not running)
        self.optics.setEnabled(not running and self.dataset() is not None)
        self._update_buttons()

    def _update_buttons(self) -> None:
        states = self.vm.buttons()
        calibrating = self._calibrate_worker is not None
        has_data = self.dataset() is not None
        self.calibrate_panel.calibrate_button.setEnabled(
            has_data and not calibrating and not self.is_running
        )
        outcome = self.calibration_outcome()
        self.calibrate_panel.save_button.setEnabled(
            outcome is not None and bool(outcome.source_path) and not calibrating
        )
        self.start_button.setEnabled(states.start and not calibrating)
        self.pause_button.setEnabled(states.pause)
        self.resume_button.setEnabled(states.resume)
        self.stop_button.setEnabled(states.stop)
        self.save_button.setEnabled(states.save)

    # ================================================================== saving
    def save_result(self, path: str) -> str:
        """Save the last result to ``path`` (conventions §6); returns the path."""
        return self.vm.save_result(path)

    def _choose_result_path(self) -> None:
        path = ask_and_run(
            self, self.save_result, "Save reconstruction", HDF5_FILTER, save_as="reconstruction.h5"
        )
        if path:
            show_info(f"reconstruction saved to {path}")

    # ================================================================== teardown
    def shutdown(self) -> None:
        """Stop a running reconstruction and the timers (the widget is closing)."""
        self.vm.stop()
        self._estimate_timer.stop()

    def closeEvent(self, event: Any) -> None:
        self.shutdown()
        super().closeEvent(event)
