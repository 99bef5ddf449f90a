"""Reconstruction settings panel: the engine's typed configuration as a compact Qt form.

Global fields (device, precision, loss, seed, update interval, batch size) and the stage table;
the paper's two-stage preset; load/save of the configuration YAML that ``caviar reconstruct
--config`` reads. Fields of :class:`~caviar_napari.core.config.ReconstructionConfig` the panel
does not show (tilt, padding, checkpoints, …) are kept from the last configuration set.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from napari.utils.notifications import show_error
from qtpy.QtCore import Signal
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from caviar_napari._qt.recon_stages import StageTable
from caviar_napari.core import config as cfg
from caviar_napari.errors import CaviarError

#: Stage iterations of the paper's preset as offered by the widget (stage 1, stage 2): the
#: recipe of the validation study (docs/validation.md), long enough for the mean object to
#: level off and for the states to grow out of their start noise.
PRESET_ITERATIONS = (120, 200)


def button(text: str, tip: str) -> QPushButton:
    """A push button with a tooltip."""
    b = QPushButton(text)
    b.setToolTip(tip)
    return b


def _row(*widgets: QWidget | tuple[QWidget, int]) -> QWidget:
    row = QWidget()
    layout = QHBoxLayout(row)
    layout.setContentsMargins(0, 0, 0, 0)
    for item in widgets:
        widget, stretch = item if isinstance(item, tuple) else (item, 0)
        layout.addWidget(widget, stretch)
    return row


class SettingsPanel(QGroupBox):
    """Group box "Reconstruction" editing a reconstruction configuration.

    Signals
    -------
    changed
        Any field or stage was edited.
    """

    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Reconstruction", parent)
        self.setSizePolicy(QSizePolicy.Preferred, QSizePolicy.Maximum)
        self._base = cfg.ReconstructionConfig()
        layout = QVBoxLayout(self)
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.AllNonFixedFieldsGrow)

        self.device_combo = QComboBox()
        self.device_combo.addItems(list(cfg.DEVICES))
        self.device_combo.setToolTip("auto: the GPU when usable, else the CPU.")
        self.precision_combo = QComboBox()
        self.precision_combo.addItems(list(cfg.PRECISIONS))
        self.precision_combo.setToolTip("single: complex64 (fast, default); double: complex128.")
        self.loss_combo = QComboBox()
        self.loss_combo.addItems(list(cfg.LOSSES))
        self.loss_combo.setToolTip("gaussian: amplitude loss (paper eq. S8); poisson: counts.")
        form.addRow("Device:", _row(self.device_combo, self.precision_combo, self.loss_combo))
        self.device_info = QLabel("detecting devices…")
        self.device_info.setWordWrap(True)
        self.device_info.setStyleSheet("color: #9ba0a8;")
        form.addRow("", self.device_info)

        self.seed_spin = QSpinBox()
        self.seed_spin.setRange(0, 2**31 - 1)
        self.seed_spin.setToolTip("Seed of the random phase noise given to new object states.")
        self.update_spin = QSpinBox()
        self.update_spin.setRange(1, 100000)
        self.update_spin.setSuffix(" it.")
        self.update_spin.setToolTip(
            "Show the object and probe every k iterations (at most as fast as the display "
            "takes them)."
        )
        form.addRow(
            "Run:",
            _row(
                QLabel("seed"), (self.seed_spin, 1), QLabel("update every"), (self.update_spin, 1)
            ),
        )
        self.batch_spin = QSpinBox()
        self.batch_spin.setRange(0, 1_000_000)
        self.batch_spin.setSpecialValueText("auto")
        self.batch_spin.setToolTip(
            "Scan positions per forward/adjoint batch (bounds memory); 'auto' sizes it from "
            "the CPU cache and cores or the free GPU memory."
        )
        form.addRow("Batch size:", self.batch_spin)
        layout.addLayout(form)

        layout.addWidget(QLabel("Stages (run in order, each from the previous result):"))
        self.stage_table = StageTable()
        layout.addWidget(self.stage_table)
        self.add_stage_button = button("+", "Add a stage (a copy of the selected one).")
        self.add_stage_button.clicked.connect(self.stage_table.add_stage)
        self.remove_stage_button = button("−", "Remove the selected stage.")
        self.remove_stage_button.clicked.connect(self.stage_table.remove_stage)
        for b in (self.add_stage_button, self.remove_stage_button):
            b.setFixedWidth(28)
        self.preset_button = button(
            "Paper 2-stage",
            "The paper's scheme: (1) 1 object state with 4 probe modes, object and probe "
            "refined; (2) the probe kept, 10 object states fitted.",
        )
        self.preset_button.clicked.connect(self.apply_two_stage_preset)
        self.load_button = button("Load…", "Load a configuration YAML (CLI format).")
        self.load_button.clicked.connect(self._choose_config_to_load)
        self.save_button = button("Save…", "Save the configuration as YAML (CLI format).")
        self.save_button.clicked.connect(self._choose_config_to_save)
        buttons = QHBoxLayout()
        for b in (
            self.add_stage_button,
            self.remove_stage_button,
            self.preset_button,
            self.load_button,
            self.save_button,
        ):
            buttons.addWidget(b)
        buttons.addStretch(1)
        layout.addLayout(buttons)

        for combo in (self.device_combo, self.precision_combo, self.loss_combo):
            combo.currentIndexChanged.connect(lambda *_: self.changed.emit())
        for spin in (self.seed_spin, self.update_spin, self.batch_spin):
            spin.valueChanged.connect(lambda *_: self.changed.emit())
        self.stage_table.changed.connect(self.changed.emit)

    # ------------------------------------------------------------------ configuration
    def current_config(self) -> cfg.ReconstructionConfig:
        """The configuration shown, validated (``InputError`` naming the field otherwise)."""
        config = dataclasses.replace(
            self._base,
            device=self.device_combo.currentText(),
            precision=self.precision_combo.currentText(),
            loss=self.loss_combo.currentText(),
            seed=self.seed_spin.value(),
            update_every=self.update_spin.value(),
            batch_size=self.batch_spin.value() or None,
            stages=self.stage_table.stages(),
        )
        return cfg.ReconstructionConfig.from_dict(config.to_dict())

    def set_config(self, config: cfg.ReconstructionConfig) -> None:
        """Show ``config`` (validated again); hidden fields are kept for :meth:`current_config`."""
        config = cfg.ReconstructionConfig.from_dict(config.to_dict())
        self._base = config
        self.device_combo.setCurrentText(config.device)
        self.precision_combo.setCurrentText(config.precision)
        self.loss_combo.setCurrentText(config.loss)
        self.seed_spin.setValue(config.seed)
        self.update_spin.setValue(max(1, config.update_every))
        self.batch_spin.setValue(config.batch_size or 0)
        self.stage_table.set_stages(config.stages)
        self.changed.emit()

    def apply_two_stage_preset(self) -> None:
        """Replace the stages by the paper's two-stage scheme (slices and dz kept)."""
        first = self.stage_table.stages(validate=False)[0]
        preset = cfg.two_stage_preset(
            object_states=10,
            probe_modes=4,
            slices=first.slices,
            slice_thickness_A=float(np.mean(first.thicknesses_A())),
            iterations=PRESET_ITERATIONS,
        )
        self.stage_table.set_stages(preset.stages)

    def load_config(self, path: str) -> None:
        """Load a configuration YAML (the CLI's format)."""
        self.set_config(cfg.load_yaml(path))

    def save_config(self, path: str) -> None:
        """Save the configuration shown as YAML (the CLI's format)."""
        cfg.save_yaml(path, self.current_config())

    def show_devices(self, summary: str) -> None:
        """Show the detected devices (full text, e.g. why there is no GPU, as tooltip)."""
        short = summary.split(" (no GPU")[0]
        if short != summary:
            short += "; no usable GPU (hover for why)"
        self.device_info.setText(f"detected: {short}")
        self.device_info.setToolTip(summary)

    def set_editable(self, editable: bool) -> None:
        """Enable or disable every input (not the configuration's Save button)."""
        for w in (
            self.device_combo,
            self.precision_combo,
            self.loss_combo,
            self.seed_spin,
            self.update_spin,
            self.batch_spin,
            self.stage_table,
            self.add_stage_button,
            self.remove_stage_button,
            self.preset_button,
            self.load_button,
        ):
            w.setEnabled(editable)

    # ------------------------------------------------------------------ dialogs
    def _choose_config_to_load(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load configuration", "", "YAML (*.yaml *.yml)")
        if path:
            self._report(self.load_config, path)

    def _choose_config_to_save(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Save configuration", "caviar-config.yaml", "YAML (*.yaml *.yml)"
        )
        if path:
            self._report(self.save_config, path)

    @staticmethod
    def _report(action: Any, path: str) -> None:
        try:
            action(path)
        except (CaviarError, OSError) as exc:
            show_error(str(exc))
