"""The **Reconstruction** dock widget: live mixed-object ptychography in napari.

Input is a 4D-STEM layer opened by the plugin's reader (its metadata holds the
:class:`~caviar_napari.io.dataset.STEMDataset`) or a file chosen here (:mod:`.recon_data`); the
optics and scan calibration is editable (:mod:`.recon_optics`); the reconstruction settings are
the engine's :class:`~caviar_napari.core.config.ReconstructionConfig`, loadable from and savable
to the YAML file ``caviar reconstruct --config`` reads (:mod:`.recon_settings`). Before Start the
memory estimate and the device are shown, and a run that does not fit is refused.

The run happens in a napari generator worker (:func:`caviar_napari._qt._worker.start_worker`,
job :func:`.recon_run.reconstruction_job`); the worker computes the layer images and the main
thread only shows them (:mod:`.recon_display`): layers ``reconstruction phase`` (dims
``(state, slice, y, x)``, Å scale, object origin as translate, so it sits in the scan frame),
``… amplitude`` (hidden), ``… probe modes`` and ``… scan positions`` (hidden), the loss plot with
stage boundaries, napari's progress bar and a status line with stage, iteration and ETA.
Start/Pause/Resume/Stop act between iterations (:class:`~caviar_napari.core.engine.RunControl`);
Stop keeps the state reached as the result, which can be saved, reopened with the plugin's
reader and continued ("Start from"). Worker errors become a napari notification and the widget
returns to idle with its inputs intact.
"""

from __future__ import annotations

from typing import Any

from napari.layers import Image
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QScrollArea,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from caviar_napari._napari.reconstruction_layers import STATE_KEY
from caviar_napari._napari.stem_layers import DATASET_KEY, PATH_KEY
from caviar_napari._qt._worker import error_message, start_worker
from caviar_napari._qt.recon_data import DataPanel
from caviar_napari._qt.recon_display import (
    RUN_LAYER_NAME,
    LiveDisplay,
    format_seconds,
    history_starts,
)
from caviar_napari._qt.recon_optics import OpticsForm
from caviar_napari._qt.recon_plot import LossPlot
from caviar_napari._qt.recon_run import RunResult, detect_job, estimate_job, reconstruction_job
from caviar_napari._qt.recon_settings import SettingsPanel, button
from caviar_napari.core import config as cfg
from caviar_napari.core.engine import ReconState, RunControl
from caviar_napari.core.memory import MemoryEstimate
from caviar_napari.errors import CaviarError, InputError
from caviar_napari.io.dataset import STEMDataset

__all__ = ["DATASET_KEY", "PATH_KEY", "RUN_LAYER_NAME", "ReconstructionWidget", "format_seconds"]

NEW_START = "new reconstruction (flat object)"
#: The configuration the widget opens with: the paper's two stages, sized for a first try.
DEFAULT_CONFIG = {
    "object_states": 10,
    "probe_modes": 4,
    "iterations": (30, 60),
    "update_every": 5,
}


class ReconstructionWidget(QWidget):
    """Dock widget that runs, shows, stops, saves and continues CAVIAR reconstructions.

    Parameters
    ----------
    napari_viewer
        The viewer the widget docks into.
    """

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__()
        self.viewer = napari_viewer
        #: the last finished or stopped state (what Save… writes)
        self.result: ReconState | None = None
        self._result_source = ""
        self._run_source = ""
        self._worker = None
        self._control: RunControl | None = None
        self._estimate: MemoryEstimate | None = None
        self._estimate_worker = None
        self._estimate_again = False
        self._estimate_timer = QTimer(self)
        self._estimate_timer.setSingleShot(True)
        self._estimate_timer.setInterval(300)
        self._estimate_timer.timeout.connect(self._run_estimate)
        self._build()
        self.display = LiveDisplay(
            self.viewer, self.status_label, self.loss_plot, self.progress_check
        )
        self.settings.set_config(cfg.two_stage_preset(**DEFAULT_CONFIG))
        events = self.viewer.layers.events
        events.inserted.connect(self.refresh_inputs)
        events.removed.connect(self.refresh_inputs)
        self.refresh_inputs()
        self._detect_worker = start_worker(detect_job, on_yield=self.settings.show_devices)
        self._set_running(False)

    # ================================================================== layout
    def _build(self) -> None:
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        content = QWidget()
        scroll.setWidget(content)
        outer.addWidget(scroll)
        layout = QVBoxLayout(content)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.setSpacing(6)

        self.data = DataPanel(self.viewer)
        self.data.selection_changed.connect(self._on_input_changed)
        layout.addWidget(self.data)

        optics_box = QGroupBox("Optics and scan")
        optics_box.setSizePolicy(QSizePolicy.Preferred, QSizePolicy.Maximum)
        self.optics = OpticsForm()
        for box in self.optics.fields():
            box.valueChanged.connect(self.schedule_estimate)
        QVBoxLayout(optics_box).addWidget(self.optics)
        layout.addWidget(optics_box)

        self.settings = SettingsPanel()
        self.settings.changed.connect(self.schedule_estimate)
        layout.addWidget(self.settings)

        layout.addWidget(self._build_run_box())
        self.loss_plot = LossPlot()
        self.loss_plot.setToolTip("Loss (log scale) per iteration; dashed lines: stage starts.")
        layout.addWidget(self.loss_plot, 1)
        self.data.message.connect(self.status_label.setText)
        self.setMinimumWidth(
            content.minimumSizeHint().width() + scroll.verticalScrollBar().sizeHint().width()
        )

    def _build_run_box(self) -> QGroupBox:
        box = QGroupBox("Run")
        box.setSizePolicy(QSizePolicy.Preferred, QSizePolicy.Maximum)
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
        self.progress_check = QCheckBox("progress bar in napari's activity dock")
        self.progress_check.setChecked(True)
        self.progress_check.setToolTip(
            "napari's activity indicator animates while a progress bar exists; on displays "
            "without hardware OpenGL (Xvfb, VNC, remote desktops) each frame repaints the "
            "whole window. Untick to keep such displays responsive; the status line below "
            "still shows stage, iteration and ETA."
        )
        form.addRow("", self.progress_check)
        layout.addLayout(form)
        self.memory_label = QLabel("memory: –")
        self.memory_label.setWordWrap(True)
        self.memory_label.setToolTip("Estimated memory of the most demanding stage.")
        layout.addWidget(self.memory_label)
        controls = QHBoxLayout()
        self.start_button = button("Start", "Start the reconstruction.")
        self.start_button.clicked.connect(self.start)
        self.pause_button = button("Pause", "Pause after the current iteration.")
        self.pause_button.clicked.connect(self.pause)
        self.resume_button = button("Resume", "Continue a paused run.")
        self.resume_button.clicked.connect(self.resume)
        self.stop_button = button("Stop", "Stop after the current iteration; keep the result.")
        self.stop_button.clicked.connect(self.stop)
        self.save_button = button("Save…", "Save the result as a reconstruction file (HDF5).")
        self.save_button.clicked.connect(self._choose_result_path)
        for b in (
            self.start_button,
            self.pause_button,
            self.resume_button,
            self.stop_button,
            self.save_button,
        ):
            controls.addWidget(b)
        layout.addLayout(controls)
        self.status_label = QLabel("idle")
        self.status_label.setWordWrap(True)
        self.status_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        layout.addWidget(self.status_label)
        return box

    # ------------------------------------------------------------------ shortcuts
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

    def set_refresh_intervals(self, display_ms: int, image_rest_ms: int) -> None:
        """Period of the live display and the rest between two live layer updates (ms)."""
        self.display.set_intervals(display_ms, image_rest_ms)

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

    def calibrated_dataset(self) -> STEMDataset:
        """The selected dataset with the calibration of the optics form (validated)."""
        dataset = self.dataset()
        if dataset is None:
            raise InputError("no 4D-STEM data selected: open a file or a 4D-STEM layer")
        return self.optics.apply(dataset)

    def open_file(self, path: str) -> Any:
        """Read a 4D-STEM file in a worker and select it as the input; returns the worker."""
        return self.data.open_file(path)

    def _on_input_changed(self) -> None:
        self.optics.set_dataset(self.dataset())
        self._update_buttons()
        self.schedule_estimate()

    # ================================================================== configuration
    def current_config(self) -> cfg.ReconstructionConfig:
        """The configuration shown in the widget, validated (``InputError`` otherwise)."""
        return self.settings.current_config()

    def set_config(self, config: cfg.ReconstructionConfig) -> None:
        """Show ``config`` in the widget (fields the widget does not show are kept)."""
        self.settings.set_config(config)

    def apply_two_stage_preset(self) -> None:
        """Replace the stages by the paper's two-stage scheme (slices and dz kept)."""
        self.settings.apply_two_stage_preset()

    def load_config(self, path: str) -> None:
        """Load a configuration YAML (the CLI's format) into the widget."""
        self.settings.load_config(path)

    def save_config(self, path: str) -> None:
        """Save the widget's configuration as YAML (the CLI's format)."""
        self.settings.save_config(path)

    # ================================================================== memory estimate
    def schedule_estimate(self, *_: Any) -> None:
        """Recompute the memory estimate soon (debounced; runs in a worker)."""
        if self._worker is None:
            self._estimate_timer.start()

    def _run_estimate(self) -> None:
        if self._estimate_worker is not None:
            self._estimate_again = True
            return
        try:
            dataset = self.calibrated_dataset()
            config = self.current_config()
        except CaviarError as exc:
            self._show_estimate(exc)
            return
        self._estimate_again = False
        self._estimate_worker = start_worker(
            estimate_job, dataset, config, on_yield=self._show_estimate, on_done=self._estimate_done
        )

    def _estimate_done(self) -> None:
        self._estimate_worker = None
        if self._estimate_again:
            self._run_estimate()

    def _show_estimate(self, estimate: MemoryEstimate | CaviarError) -> None:
        if isinstance(estimate, MemoryEstimate):
            self._estimate = estimate
            text = f"memory: {estimate.describe()}"
            if not estimate.fits:
                text += f" — does not fit: {estimate.advice()}"
            self.memory_label.setText(text)
            self.memory_label.setStyleSheet("" if estimate.fits else "color: #ff6b6b;")
        else:
            self._estimate = None
            self.memory_label.setText(f"cannot start: {estimate}")
            self.memory_label.setStyleSheet("color: #ff6b6b;")
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
        where = (
            "finished: add iterations or a stage to continue"
            if state.finished
            else f"continues at stage {state.stage_index + 1}/{len(state.config.stages)}, "
            f"iteration {state.iteration}"
        )
        self.status_label.setText(f"{layer.name}: {where}")
        self.loss_plot.set_history(*history_starts(state))

    # ================================================================== run control
    @property
    def is_running(self) -> bool:
        """Whether a reconstruction runs (or is paused)."""
        return self._worker is not None

    def start(self) -> Any:
        """Start (or continue) a reconstruction; returns the worker, or None if refused."""
        if self.is_running:
            return None
        try:
            dataset = self.calibrated_dataset()
            config = self.current_config()
        except CaviarError as exc:
            return self._refuse(str(exc))
        if self._estimate is not None and not self._estimate.fits:
            return self._refuse(f"the run {self._estimate.describe()}; {self._estimate.advice()}")
        start_layer = self._start_layer()
        state = start_layer.metadata[STATE_KEY] if start_layer is not None else None
        self.data.park_selected_layer(dataset)
        if state is None:
            self.loss_plot.clear()
        else:
            self.loss_plot.set_history(*history_starts(state))
        done = state.iteration if state is not None else 0
        control = RunControl()
        self._control = control
        self._run_source = dataset.source
        # everything that may process events (napari's progress bar does) happens before the
        # worker starts, so its signals can only arrive once the widget is in the running state
        images_wanted = self.display.begin(
            source=dataset.source, total=config.total_iterations - done, start_iteration=done
        )
        self._set_running(True)
        self._worker = start_worker(
            reconstruction_job,
            dataset,
            config,
            state=state,
            control=control,
            images_wanted=images_wanted,
            on_yield=self.display.on_update,
            on_return=self._on_result,
            on_error=self._on_error,
            on_done=self._on_done,
        )
        self._update_buttons()
        return self._worker

    def _refuse(self, reason: str) -> None:
        show_error(f"not started: {reason}")
        self.status_label.setText(f"not started: {reason}")

    def pause(self) -> None:
        """Hold the run after the current iteration."""
        if self._control is not None and not self._control.stopped:
            self._control.pause()
            self.display.set_paused(True)
            self._update_buttons()

    def resume(self) -> None:
        """Continue a paused run."""
        if self._control is not None:
            self._control.resume()
            self.display.set_paused(False)
            self._update_buttons()

    def stop(self) -> None:
        """Stop after the current iteration; the state reached becomes the result."""
        if self._control is not None:
            self._control.stop()
            self.status_label.setText("stopping after the current iteration…")
            self._update_buttons()

    def _on_result(self, result: RunResult) -> None:
        self.result = result.state
        self._result_source = self._run_source
        self.display.show_result(result)

    def _on_error(self, exc: BaseException) -> None:
        self.display.refresh()  # show the last live state reached before the failure
        self.status_label.setText(f"failed: {error_message(exc)}")

    def _on_done(self) -> None:
        self._worker = None
        self._control = None
        self.refresh_inputs()
        self._set_running(False)
        self.schedule_estimate()
        self.display.end()  # last: napari's progress bar processes events when it closes

    def _set_running(self, running: bool) -> None:
        for w in (self.data, self.start_combo, self.progress_check):
            w.setEnabled(not running)
        self.settings.set_editable(not running)
        self.optics.setEnabled(not running and self.dataset() is not None)
        self._update_buttons()

    def _update_buttons(self) -> None:
        running = self.is_running
        paused = running and self._control is not None and self._control.paused
        stopping = running and self._control is not None and self._control.stopped
        fits = self._estimate is None or self._estimate.fits
        self.start_button.setEnabled(not running and self.dataset() is not None and fits)
        self.pause_button.setEnabled(running and not paused and not stopping)
        self.resume_button.setEnabled(paused and not stopping)
        self.stop_button.setEnabled(running and not stopping)
        self.save_button.setEnabled(not running and self.result is not None)

    # ================================================================== saving
    def save_result(self, path: str) -> str:
        """Save the last result to ``path`` (conventions §6); returns the path."""
        from caviar_napari.io.reconstruction import save_reconstruction

        if self.result is None:
            raise InputError("no reconstruction to save yet: run or stop a reconstruction first")
        save_reconstruction(path, self.result, source=self._result_source)
        return str(path)

    def _choose_result_path(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Save reconstruction", "reconstruction.h5", "HDF5 (*.h5 *.hdf5)"
        )
        if path:
            try:
                show_info(f"reconstruction saved to {self.save_result(path)}")
            except (CaviarError, OSError) as exc:
                show_error(error_message(exc))

    # ================================================================== teardown
    def shutdown(self) -> None:
        """Stop a running reconstruction and disconnect from the viewer (widget closing)."""
        if self._control is not None:
            self._control.stop()
        self._estimate_timer.stop()
        events = self.viewer.layers.events
        for emitter in (events.inserted, events.removed):
            emitter.disconnect(self.refresh_inputs)

    def closeEvent(self, event: Any) -> None:
        self.shutdown()
        super().closeEvent(event)
