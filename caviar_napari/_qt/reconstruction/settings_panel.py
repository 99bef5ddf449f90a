"""Reconstruction settings panel: the engine's typed configuration as a compact form.

Global fields (device, precision, loss, held-out fraction, starting source size, detector
padding, seed, update interval, batch size) are a magicgui form
(:class:`~caviar_napari._qt._forms.ParamForm`) over
:class:`~caviar_napari.data.config.ReconstructionConfig`, with the grid the padding gives below
it; the memory settings (caps on host and device memory, where the L-BFGS history and the data
live, the object margin) are a second form in a collapsible section; the stages are the
:class:`~caviar_napari._qt.reconstruction.stage_table.StageTable` with the
:class:`~caviar_napari._qt.reconstruction.stage_table.StageDetails` of the selected stage below
it, and the bound and penalty of the scan-position refinement (for the stages that refine the
positions) in a collapsible section below them; the presets are the recommended recipe and the
paper's (free probe modes).  Fields the panel
does not show (tilt, checkpoints, cluster, …) are kept from the last configuration set.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from qtpy.QtCore import Signal
from qtpy.QtWidgets import QGroupBox, QHBoxLayout, QSizePolicy, QVBoxLayout, QWidget
from superqt import QCollapsible

from caviar_napari._qt._file_dialogs import YAML_FILTER, ask_and_run
from caviar_napari._qt._forms import ParamField, ParamForm, exact_value, push_button, text_label
from caviar_napari._qt.reconstruction.stage_table import StageDetails, StageTable
from caviar_napari.core.memory import DATA_PLACEMENTS, HISTORY_PLACEMENTS
from caviar_napari.data import config as cfg
from caviar_napari.data.padding import PADDING_HELP
from caviar_napari.errors import InputError
from caviar_napari.viewmodels.reconstruction import (
    PRESET_ITERATIONS,
    PRESET_PAPER,
    PRESET_RECOMMENDED,
    device_summary_text,
)

#: Value of the held-out box that means ``holdout_fraction: auto``.
HOLDOUT_AUTO = -0.01

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
        tooltip=(
            "auto: Poisson when the intensities are counts (whole numbers, or a dose in the "
            "file), else Gaussian; the result says which. gaussian: amplitude loss (paper eq. "
            "S8); poisson: the likelihood of counts."
        ),
    ),
    ParamField(
        "holdout_fraction",
        "Held out",
        {"widget_type": "FloatSpinBox", "min": HOLDOUT_AUTO, "max": 0.5, "step": 0.01},
        special="auto",
        tooltip=(
            "Fraction of the scan positions left out of the fit and scored: they end each "
            "stage when the fit starts learning the noise, and test whether the object states "
            "capture signal. auto: 0.1 for counts, none for noise-free data."
        ),
    ),
    ParamField(
        "source_fwhm_A",
        "Source (start)",
        {"widget_type": "FloatSpinBox", "min": 0.0, "max": 10.0, "step": 0.01},
        suffix=" Å",
        tooltip=(
            "Starting source size (FWHM at the specimen, Å) of stages with Source: gaussian; "
            "fitted where Src is ticked (it must not be 0 then). A cold field-emission gun at "
            "60–300 kV gives 0.3–0.6 Å."
        ),
    ),
    ParamField(
        "detector_padding",
        "Padding",
        {"widget_type": "LineEdit"},
        placeholder="auto",
        shown=str,
        stored=lambda text: str(text).strip() or "auto",
        tooltip=(
            f"Detector padding in reciprocal space: {PADDING_HELP}. auto pads only when the "
            "data reach beyond the band limit of the detector's window; a window NxM or a "
            "pixel size sets the reconstruction's pixel (the paper padded 256² to 732²: a "
            "10.89 pm pixel). The window and pixel each stage gets are shown below; a stage "
            "may pad differently (its details)."
        ),
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


def _megabytes(value: float) -> float | None:
    """A memory cap of a spin box: 0 (its special text "free") is no cap."""
    return float(value) or None


#: The memory settings (collapsed by default): caps and placements of the memory plan.
MEMORY_FIELDS = (
    ParamField(
        "host_memory_MB",
        "Host memory",
        {"widget_type": "FloatSpinBox", "min": 0.0, "max": 1e9, "step": 1000.0},
        suffix=" MB",
        special="free",
        shown=lambda value: value or 0.0,
        stored=_megabytes,
        tooltip=(
            "Most host memory the run may plan for (MB = 10⁶ bytes); free: what is free now. "
            "Leave room for napari and other programs."
        ),
    ),
    ParamField(
        "device_memory_MB",
        "GPU memory",
        {"widget_type": "FloatSpinBox", "min": 0.0, "max": 1e9, "step": 1000.0},
        suffix=" MB",
        special="free",
        shown=lambda value: value or 0.0,
        stored=_megabytes,
        tooltip="Most GPU memory the run may plan for (MB); free: what is free now.",
    ),
    ParamField(
        "lbfgs_history",
        "L-BFGS history",
        {"widget_type": "ComboBox", "choices": ["auto", *HISTORY_PLACEMENTS]},
        tooltip=(
            "Where the optimiser's curvature pairs live: auto (the memory plan chooses), "
            "device, host (a GPU run streams them from page-locked host memory) or half (half "
            "precision, half the bytes)."
        ),
    ),
    ParamField(
        "data_placement",
        "Data",
        {"widget_type": "ComboBox", "choices": ["auto", *DATA_PLACEMENTS]},
        tooltip=(
            "Where the measured patterns live: auto, device, host (a GPU run copies them per "
            "batch) or file (out-of-core, read per batch from a chunked HDF5 file: caviar "
            "reconstruct; the dock holds its data in memory)."
        ),
    ),
    ParamField(
        "object_padding_px",
        "Object margin",
        {"widget_type": "SpinBox", "min": 0, "max": 10_000},
        suffix=" px",
        tooltip="Extra object pixels beyond the scanned area plus half a probe window.",
    ),
)


def _penalty(text: str) -> float:
    """The position penalty typed in its line edit (``InputError`` naming it otherwise)."""
    try:
        return float(str(text).strip())
    except ValueError:
        raise InputError(f"'position_penalty' must be a number ≥ 0, got {text!r}") from None


#: The scan-position refinement (global: every stage that refines ``positions``).
POSITION_FIELDS = (
    ParamField(
        "position_bound_A",
        "Bound",
        {"widget_type": "FloatSpinBox", "min": 0.001, "max": 100.0, "step": 0.05},
        suffix=" Å",
        tooltip=(
            "Largest shift of a scan position from its nominal place (B tanh(u/B): no step of "
            "the optimiser can go past it). The result warns when shifts reach it."
        ),
    ),
    ParamField(
        "position_penalty",
        "Penalty",
        {"widget_type": "LineEdit"},
        shown=lambda value: f"{float(value):g}",
        stored=_penalty,
        tooltip=(
            "Weight λ of the penalty λ · mean |shift|² (per Å², in units of the normalised "
            "loss) that pulls the shifts towards the nominal grid where the data say nothing."
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
        "holdout_fraction": (
            HOLDOUT_AUTO if config.holdout_fraction == "auto" else float(config.holdout_fraction)
        ),
        "source_fwhm_A": float(config.source_fwhm_A),
        "detector_padding": config.detector_padding,
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
        self.grid_label = text_label("grid: –", hint=True)
        self.grid_label.setToolTip(
            "Probe window and object pixel of each stage, from the detector padding."
        )
        layout.addWidget(self.grid_label)
        self.device_info = text_label("detecting devices…", hint=True)
        layout.addWidget(self.device_info)
        self.memory_form = ParamForm(MEMORY_FIELDS, self._base)
        self.memory_form.connect(self.changed.emit)
        self.memory_section = QCollapsible("Memory plan settings")
        self.memory_section.setToolTip(
            "Caps on host and GPU memory and where the optimiser's history and the data live; "
            "the plan they give is under Run."
        )
        self.memory_section.addWidget(self.memory_form.native)
        layout.addWidget(self.memory_section)

        self.position_form = ParamForm(POSITION_FIELDS, self._base)
        self.position_form["position_bound_A"].native.setDecimals(3)
        self.position_form.set_values(self._base)
        self.position_form.connect(self.changed.emit)
        self.position_section = QCollapsible("Scan-position refinement (all stages)")
        self.position_section.setToolTip(
            "Bound and penalty of the scan-position shifts, for the stages whose details tick "
            "'Refine positions'."
        )
        self.position_section.addWidget(self.position_form.native)

        self.stages_label = text_label("Stages (run in order, each from the previous result):")
        layout.addWidget(self.stages_label)
        self.stage_table = StageTable()
        layout.addWidget(self.stage_table)
        self.details_label = text_label("Selected stage:", hint=True)
        layout.addWidget(self.details_label)
        self.stage_details = StageDetails(self.stage_table)
        layout.addWidget(self.stage_details.native)
        layout.addWidget(self.position_section)
        self.stage_table.itemSelectionChanged.connect(self._show_details_title)
        self.stage_table.changed.connect(self._show_details_title)
        self.add_stage_button = push_button(
            "+", self.stage_table.add_stage, "Add a stage (a copy of the selected one)."
        )
        self.remove_stage_button = push_button(
            "−", self.stage_table.remove_stage, "Remove the selected stage."
        )
        for b in (self.add_stage_button, self.remove_stage_button):
            b.setFixedWidth(28)
        it = PRESET_ITERATIONS
        self.recommended_button = push_button(
            PRESET_RECOMMENDED,
            None,
            "The recommended recipe (the default; also for partial spatial coherence): (1) the "
            "mean object with one coherent probe seen through a Gaussian source of fitted size; "
            "(2) 10 object states, the probe and the source still refined, no rigid shifts of "
            f"the states. At most {it[PRESET_RECOMMENDED][0]} + {it[PRESET_RECOMMENDED][1]} "
            "iterations, each stage ending by its stopping rule.",
        )
        self.paper_button = push_button(
            PRESET_PAPER,
            None,
            "The paper's scheme: (1) 1 object state with 4 free probe modes, object and probe "
            "refined; (2) the probe kept, 10 object states fitted "
            f"({it[PRESET_PAPER][0]} + {it[PRESET_PAPER][1]} iterations). On data with thermal "
            "diffuse scattering the free modes take up part of what the states should fit.",
        )
        self.load_button = push_button("Load…", None, "Load a configuration YAML (CLI format).")
        self.save_button = push_button(
            "Save…", None, "Save the configuration as YAML (CLI format)."
        )
        buttons = QHBoxLayout()
        for b in (self.add_stage_button, self.remove_stage_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        for b in (self.load_button, self.save_button):
            buttons.addWidget(b)
        layout.addLayout(buttons)
        presets = QHBoxLayout()
        presets.addWidget(text_label("Preset:"))
        presets.addWidget(self.recommended_button)
        presets.addWidget(self.paper_button)
        presets.addStretch(1)
        layout.addLayout(presets)
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
            holdout_fraction=(
                "auto"
                if values["holdout_fraction"] < 0
                else round(float(values["holdout_fraction"]), 4)
            ),
            source_fwhm_A=exact_value(self.form["source_fwhm_A"].native, self._base.source_fwhm_A),
            detector_padding=values["detector_padding"],
            **self.memory_form.values(),
            position_bound_A=exact_value(
                self.position_form["position_bound_A"].native, self._base.position_bound_A
            ),
            position_penalty=self.position_form.value("position_penalty"),
            stages=self.stage_table.stages(validate=validate),
        )
        return cfg.ReconstructionConfig.from_dict(config.to_dict()) if validate else config

    def show_config(self, config: cfg.ReconstructionConfig) -> None:
        """Show ``config``; the fields it has that the panel does not show are kept."""
        self._base = config
        self.form.set_values(_form_values(config))
        self.memory_form.set_values(config)
        self.position_form.set_values(config)
        self.stage_table.set_stages(config.stages)
        self.stage_details.follow()
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
        self.memory_form.set_enabled(editable)
        self.position_form.set_enabled(editable)
        for w in (
            self.stage_table,
            self.add_stage_button,
            self.remove_stage_button,
            self.recommended_button,
            self.paper_button,
            self.load_button,
        ):
            w.setEnabled(editable)
        self.stage_details.follow()

    def show_grids(self, text: str, tooltip: str = "") -> None:
        """Show the probe window and pixel of the stages (from the run's plan)."""
        self.grid_label.setText(text)
        if tooltip:
            self.grid_label.setToolTip(tooltip)

    def _show_details_title(self) -> None:
        row = self.stage_table.selected_row()
        name = self.stage_table.stages(validate=False)[row].name if row >= 0 else ""
        self.details_label.setText(f"Stage '{name}' (selected row):" if name else "")

    def ask_load(self, load: Any) -> None:
        """Ask for a configuration YAML and pass its path to ``load``."""
        ask_and_run(self, load, "Load configuration", YAML_FILTER)

    def ask_save(self, save: Any) -> None:
        """Ask for a file name and pass it to ``save``."""
        ask_and_run(self, save, "Save configuration", YAML_FILTER, save_as="caviar-config.yaml")
