"""Reconstruction settings panel: the engine's typed configuration as a compact form.

Global fields (device, precision, loss, seed, update interval, batch size) are a magicgui form
(:class:`~caviar_napari._qt._forms.ParamForm`) over
:class:`~caviar_napari.data.config.ReconstructionConfig`; the stages are the
:class:`~caviar_napari._qt.reconstruction.stage_table.StageTable`.  Fields the panel does not
show (tilt, padding, checkpoints, …) are kept from the last configuration set.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from qtpy.QtCore import Signal
from qtpy.QtWidgets import QGroupBox, QHBoxLayout, QSizePolicy, QVBoxLayout, QWidget

from caviar_napari._qt._file_dialogs import YAML_FILTER, ask_and_run
from caviar_napari._qt._forms import ParamField, ParamForm, push_button, text_label
from caviar_napari._qt.reconstruction.stage_table import StageTable
from caviar_napari.data import config as cfg
from caviar_napari.viewmodels.reconstruction import device_summary_text

#: The global fields of the form.
GLOBAL_FIELDS = (
    ParamField(
        "device",
        "Device",
        {"widget_type": "ComboBox", "choices": cfg.DEVICES},
        tooltip="auto: the GPU when usable, else the CPU.",
    ),
    ParamField(
        "precision",
        "Precision",
        {"widget_type": "ComboBox", "choices": cfg.PRECISIONS},
        tooltip="single: complex64 (fast, default); double: complex128.",
    ),
    ParamField(
        "loss",
        "Loss",
        {"widget_type": "ComboBox", "choices": cfg.LOSS_CHOICES},
        tooltip="gaussian: amplitude loss (paper eq. S8); poisson: counts.",
    ),
    ParamField(
        "seed",
        "Seed",
        {"widget_type": "SpinBox", "min": 0, "max": 2**31 - 1},
        tooltip="Seed of the random phase noise given to new object states.",
    ),
    ParamField(
        "update_every",
        "Show every",
        {"widget_type": "SpinBox", "min": 1, "max": 100000},
        suffix=" it.",
        tooltip=(
            "Show the object and probe every k iterations (at most as fast as the display "
            "takes them)."
        ),
    ),
    ParamField(
        "batch_size",
        "Batch size",
        {"widget_type": "SpinBox", "min": 0, "max": 1_000_000},
        special="auto",
        tooltip=(
            "Scan positions per forward/adjoint batch (bounds memory); 'auto' sizes it from "
            "the CPU cache and cores or the free GPU memory."
        ),
    ),
)


def _form_values(config: cfg.ReconstructionConfig) -> dict[str, Any]:
    return {
        "device": config.device,
        "precision": config.precision,
        "loss": config.loss,
        "seed": int(config.seed),
        "update_every": max(1, int(config.update_every)),
        "batch_size": int(config.batch_size or 0),
    }


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
        self.form = ParamForm(GLOBAL_FIELDS, _form_values(self._base))
        self.form.connect(self.changed.emit)
        layout.addWidget(self.form.native)
        self.device_info = text_label("detecting devices…", hint=True)
        layout.addWidget(self.device_info)

        layout.addWidget(text_label("Stages (run in order, each from the previous result):"))
        self.stage_table = StageTable()
        layout.addWidget(self.stage_table)
        self.add_stage_button = push_button(
            "+", self.stage_table.add_stage, "Add a stage (a copy of the selected one)."
        )
        self.remove_stage_button = push_button(
            "−", self.stage_table.remove_stage, "Remove the selected stage."
        )
        for b in (self.add_stage_button, self.remove_stage_button):
            b.setFixedWidth(28)
        self.preset_button = push_button(
            "Paper 2-stage",
            None,
            "The paper's scheme: (1) 1 object state with 4 probe modes, object and probe "
            "refined; (2) the probe kept, 10 object states fitted.",
        )
        self.load_button = push_button("Load…", None, "Load a configuration YAML (CLI format).")
        self.save_button = push_button(
            "Save…", None, "Save the configuration as YAML (CLI format)."
        )
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
        self.stage_table.changed.connect(self.changed.emit)

    # ------------------------------------------------------------------ configuration
    def config(self, *, validate: bool = True) -> cfg.ReconstructionConfig:
        """The configuration shown (validated: ``InputError`` naming the field otherwise)."""
        values = self.form.values()
        config = dataclasses.replace(
            self._base,
            device=values["device"],
            precision=values["precision"],
            loss=values["loss"],
            seed=int(values["seed"]),
            update_every=int(values["update_every"]),
            batch_size=int(values["batch_size"]) or None,
            stages=self.stage_table.stages(validate=validate),
        )
        return cfg.ReconstructionConfig.from_dict(config.to_dict()) if validate else config

    def show_config(self, config: cfg.ReconstructionConfig) -> None:
        """Show ``config``; the fields it has that the panel does not show are kept."""
        self._base = config
        self.form.set_values(_form_values(config))
        self.stage_table.set_stages(config.stages)
        self.changed.emit()

    def first_stage_slicing(self) -> tuple[int, float]:
        """``(slices, mean slice thickness Å)`` of the first stage shown."""
        first = self.stage_table.stages(validate=False)[0]
        return first.slices, float(np.mean(first.thicknesses_A()))

    def show_devices(self, summary: str) -> None:
        """Show the detected devices (full text, e.g. why there is no GPU, as tooltip)."""
        short, full = device_summary_text(summary)
        self.device_info.setText(short)
        self.device_info.setToolTip(full)

    def set_editable(self, editable: bool) -> None:
        """Enable or disable every input (not the configuration's Save button)."""
        self.form.set_enabled(editable)
        for w in (
            self.stage_table,
            self.add_stage_button,
            self.remove_stage_button,
            self.preset_button,
            self.load_button,
        ):
            w.setEnabled(editable)

    def ask_load(self, load: Any) -> None:
        """Ask for a configuration YAML and pass its path to ``load``."""
        ask_and_run(self, load, "Load configuration", YAML_FILTER)

    def ask_save(self, save: Any) -> None:
        """Ask for a file name and pass it to ``save``."""
        ask_and_run(self, save, "Save configuration", YAML_FILTER, save_as="caviar-config.yaml")
