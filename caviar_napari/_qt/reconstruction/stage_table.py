"""Stage table of the Reconstruction dock: add, remove and edit the stages of a run.

Each row is one :class:`~caviar_napari.data.config.StageConfig`. The table shows the fields a
user changes between stages (iterations, states, modes, slicing, the source model, what is
refined); :class:`StageDetails` below it edits the other fields of the selected stage (stopping
rule, probe orthogonalisation, rigid shifts of the states, source quadrature, regularisers,
optimiser, the refinement of the scan positions and of their affine map, the tilt estimate from
adjacent slices, the probe's aperture support and fixed intensity, the object states' model).
Per-slice thicknesses of a stage loaded from YAML are kept unless the dz cell is edited.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QHeaderView,
    QLineEdit,
    QSpinBox,
    QTableWidget,
    QWidget,
)

from caviar_napari._qt._forms import ParamField, ParamForm, centred, double_spin, int_spin
from caviar_napari.data.config import (
    OPTIMIZERS,
    PARTIAL_COHERENCE,
    PRECISIONS,
    PROBE_SUPPORT,
    STATE_MODELS,
    StageConfig,
    state_penalty_from_text,
)

#: (key, header, tooltip) of every column, in display order: what changes between stages first
#: (a 2D material keeps one slice), so that a narrow dock shows it without scrolling.
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("name", "Stage", "Name of the stage (shown in progress and on the loss plot)."),
    (
        "iterations",
        "Iter.",
        "Most optimiser iterations of this stage; its stopping rule (stage details) may end "
        "it earlier.",
    ),
    ("object_states", "N", "Object states N (thermal snapshots of equal weight)."),
    ("probe_modes", "M", "Probe modes M (incoherent; their powers are the occupancies)."),
    (
        "partial_coherence",
        "Source",
        "Partial spatial coherence: ticked, the probe is seen through a Gaussian source of "
        "fitted size (FWHM in Å at the specimen: one physical number instead of free modes or "
        "states taking up the blur); unticked, each probe mode is coherent.",
    ),
    ("object", "Obj", "Refine the object in this stage."),
    ("probe", "Prb", "Refine the probe in this stage."),
    ("source", "Src", "Refine the source size (needs Source ticked)."),
    ("tilt", "Tilt", "Refine the global crystal tilt (α_y, α_x) in this stage."),
    ("slices", "Slices", "Multislice slices S."),
    ("slice_thickness_A", "dz (Å)", "Thickness of each slice in Å."),
)
_KEYS = [c[0] for c in COLUMNS]
#: The widest text a column shows (its width follows it, or the header's).
_COLUMN_SAMPLES = {
    "name": "mean object",
    "iterations": "1000",
    "object_states": "100",
    "probe_modes": "10",
    "slices": "100",
    "slice_thickness_A": "10.00",
}
#: Room beside the text.
_COLUMN_PADDING = {"name": 12}
#: The source models of the Source check box (unticked, ticked): all of PARTIAL_COHERENCE.
_COHERENCE = ("none", "gaussian")
assert set(_COHERENCE) == set(PARTIAL_COHERENCE), PARTIAL_COHERENCE
#: The refinable blocks with a check-box column, in :data:`REFINABLE` order.
_REFINE_KEYS = ("object", "probe", "tilt", "source")
#: The refinable blocks with a check box in the stage details (the scan positions).
DETAIL_REFINE_KEYS = ("positions", "affine")

#: The precision choice that leaves a stage at the reconstruction's precision.
_RUN_PRECISION = "as the reconstruction's"


#: The fields of the selected stage edited below the table.
DETAIL_FIELDS = (
    ParamField(
        "positions",
        "Refine positions",
        {"widget_type": "CheckBox"},
        tooltip=(
            "Refine a shift of every scan position (bounded by the Bound of 'Scan-position "
            "refinement', pulled towards the nominal grid by its Penalty). The refined "
            "positions carry over to the next stages, go into the result file and are drawn "
            "as a Points layer with arrows from the nominal positions."
        ),
    ),
    ParamField(
        "affine",
        "Refine scan map",
        {"widget_type": "CheckBox"},
        tooltip=(
            "Refine a global affine map of the scan (scale, shear, rotation about its centre) "
            "and a linear drift over the scan."
        ),
    ),
    ParamField(
        "tilt_estimate",
        "Tilt estimate",
        {"widget_type": "CheckBox"},
        tooltip=(
            "At the stage's start, estimate the crystal tilt by cross-correlating adjacent "
            "slices of the current object (the paper's estimate), move the slices back into "
            "line and use the tilted propagator from then on (fixed unless Tilt is refined). "
            "Needs a multislice object from an earlier stage; the result shows the estimate."
        ),
    ),
    ParamField(
        "probe_support",
        "Probe support",
        {"widget_type": "ComboBox", "choices": list(PROBE_SUPPORT)},
        tooltip=(
            "aperture: keep the probe modes inside the condenser aperture in Fourier space (a "
            "soft disc of 1.1 × the convergence angle); none: no support constraint."
        ),
    ),
    ParamField(
        "fixed_probe_intensity",
        "Fixed probe intensity",
        {"widget_type": "CheckBox"},
        tooltip=(
            "Keep the probe's total intensity (all modes) at the data's mean pattern total, "
            "so the object cannot trade absorption for probe power."
        ),
    ),
    ParamField(
        "stop_patience",
        "Stop after",
        {"widget_type": "SpinBox", "min": 0, "max": 100_000},
        suffix=" it.",
        special="never",
        tooltip=(
            "Stopping rule: with held-out positions, end the stage when their loss has not "
            "improved for this many iterations (the fit starts learning the noise); without, "
            "when the misfit fell by less than the tolerance over them. 0: run all iterations."
        ),
    ),
    ParamField(
        "stop_tolerance",
        "Stop tolerance",
        {"widget_type": "FloatSpinBox", "min": 0.0, "max": 1.0, "step": 0.005},
        tooltip=(
            "Without held-out positions: smallest relative decrease of the misfit (0.01 = 1 %) "
            "over 'Stop after' iterations for the stage to go on."
        ),
    ),
    ParamField(
        "remove_state_shifts",
        "No rigid shifts",
        {"widget_type": "CheckBox"},
        tooltip=(
            "Keep the object states from shifting rigidly against each other: a shifted state "
            "is indistinguishable from a finite source or scan jitter and would take up the "
            "source blur as a uniform x–x / y–y correlation offset."
        ),
    ),
    ParamField(
        "orthogonalise_probe_every",
        "Orthogonalise",
        {"widget_type": "SpinBox", "min": 0, "max": 100_000},
        suffix=" it.",
        special="never",
        tooltip=(
            "Make the refined probe modes orthogonal again every this many iterations (a "
            "unitary mixing that leaves the intensity unchanged); 0: only at the stage's start."
        ),
    ),
    ParamField(
        "coherence_order",
        "Source points",
        {"widget_type": "SpinBox", "min": 1, "max": 15},
        suffix=" per axis",
        tooltip=(
            "Gauss–Hermite points per axis of the source quadrature (Source: gaussian): 5 "
            "gives 25 shifted copies of each mode, carried by a few orthogonal modes."
        ),
    ),
    ParamField(
        "state_noise_rad",
        "New-state noise",
        {"widget_type": "FloatSpinBox", "min": 0.0, "max": 1.0, "step": 0.001},
        suffix=" rad",
        tooltip="Standard deviation of the random phase given to new object states, rad.",
    ),
    ParamField(
        "state_model",
        "State model",
        {"widget_type": "ComboBox", "choices": list(STATE_MODELS)},
        tooltip=(
            "free: every object state is a free complex object (the paper's). displacements: "
            "every state is the mean object with its atoms displaced, two numbers per atom "
            "and state, started along the previous stage's states: the states reach the "
            "thermal amplitude in tens of iterations and counting noise has fewer ways in. "
            "Needs N ≥ 2 and Obj refined; a later free stage can add what it cannot hold."
        ),
    ),
    ParamField(
        "state_displacement_A",
        "New-state shifts",
        {"widget_type": "FloatSpinBox", "min": 0.0001, "max": 1.0, "step": 0.001},
        suffix=" Å",
        tooltip=(
            "State model displacements, started from identical states: standard deviation of "
            "the random atom displacements that break the symmetry, Å."
        ),
    ),
    ParamField(
        "state_penalty",
        "State penalty",
        {"widget_type": "LineEdit"},
        placeholder="0, a weight, or auto",
        shown=str,
        stored=state_penalty_from_text,
        tooltip=(
            "Weight λ of a penalty on the object states' deviations from their mean, which "
            "keeps them from fitting counting noise (λ = 1 holds them as firmly as the data "
            "hold the mean object; 0: none). auto: chosen by the held-out patterns: run "
            "unpenalised until they stop improving, then try 0.001, 0.01, 0.1 from the best "
            "state, and keep the state of the lowest held-out loss (0 when nothing is held "
            "out)."
        ),
    ),
    ParamField(
        "l1_absorption",
        "l1 absorption",
        {"widget_type": "FloatSpinBox", "min": 0.0, "max": 1e9, "step": 0.0001},
        tooltip="Weight of the l1 absorption penalty Σ|log|O|| per object pixel (≥ 0).",
    ),
    ParamField(
        "missing_wedge",
        "Missing wedge",
        {"widget_type": "FloatSpinBox", "min": 0.0, "max": 1e9, "step": 0.0001},
        tooltip="Weight of the missing-wedge penalty (multislice only; ≥ 0).",
    ),
    ParamField(
        "optimizer",
        "Optimiser",
        {"widget_type": "ComboBox", "choices": list(OPTIMIZERS)},
        tooltip="lbfgs: L-BFGS with Wolfe line search; gd: gradient descent.",
    ),
    ParamField(
        "lbfgs_memory",
        "L-BFGS memory",
        {"widget_type": "SpinBox", "min": 1, "max": 1000},
        suffix=" pairs",
        tooltip=(
            "Curvature pairs L-BFGS keeps (each pair is two object-sized copies: the memory "
            "plan counts them)."
        ),
    ),
    ParamField(
        "minibatch_epochs",
        "Mini-batch epochs",
        {"widget_type": "SpinBox", "min": 0, "max": 100_000},
        special="none",
        tooltip=(
            "The first iterations of the stage run as stochastic mini-batch epochs (one "
            "preconditioned gradient step per mini-batch) before L-BFGS takes over: for large "
            "scans far from the solution. 0: none."
        ),
    ),
    ParamField(
        "minibatch_size",
        "Mini-batch size",
        {"widget_type": "SpinBox", "min": 1, "max": 1_000_000},
        suffix=" patterns",
        tooltip="Patterns per mini-batch of those epochs.",
    ),
    ParamField(
        "detector_padding",
        "Padding",
        {"widget_type": "LineEdit"},
        placeholder="as the reconstruction's",
        shown=lambda value: "" if value is None else str(value),
        stored=lambda text: str(text).strip() or None,
        tooltip=(
            "This stage's detector padding (empty: the Padding of the reconstruction): auto, "
            "none, a window NxM (pixels) or a pixel size in Å. A stage that pads differently "
            "continues from the previous result resampled onto its grid (e.g. a coarse first "
            "stage, then the paper's fine pixel)."
        ),
    ),
    ParamField(
        "precision",
        "Precision",
        {"widget_type": "ComboBox", "choices": [_RUN_PRECISION, *PRECISIONS]},
        shown=lambda value: value or _RUN_PRECISION,
        stored=lambda text: None if text == _RUN_PRECISION else str(text),
        tooltip=(
            "This stage's floating-point precision (the reconstruction's by default). The "
            "object states fit a signal a few 1e-7 of the loss: in single precision their "
            "line search can stall before the states reach their full amplitude (the result "
            "then says so); double costs up to twice as much per iteration and goes further."
        ),
    ),
)
_DETAIL_KEYS = tuple(f.name for f in DETAIL_FIELDS)


def detail_values(stage: StageConfig) -> dict[str, Any]:
    """The stage's fields as the details form shows them: the dataclass fields, and whether
    each of :data:`DETAIL_REFINE_KEYS` is refined."""
    values = dataclasses.asdict(stage)
    values.update({key: key in stage.refine for key in DETAIL_REFINE_KEYS})
    return values


class StageTable(QTableWidget):
    """Editable table of reconstruction stages.

    Signals
    -------
    changed
        Emitted whenever a cell is edited or a row is added or removed.
    """

    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(0, len(COLUMNS), parent)
        self.setHorizontalHeaderLabels([c[1] for c in COLUMNS])
        for col, (_key, _header, tip) in enumerate(COLUMNS):
            self.horizontalHeaderItem(col).setToolTip(tip)
        header = self.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.Interactive)
        metrics = header.fontMetrics()
        for col, (key, title, _tip) in enumerate(COLUMNS):
            sample = _COLUMN_SAMPLES.get(key, "")
            text = max(metrics.horizontalAdvance(title), metrics.horizontalAdvance(sample))
            self.setColumnWidth(col, text + _COLUMN_PADDING.get(key, 14))
        self.verticalHeader().setDefaultSectionSize(24)
        self.verticalHeader().setVisible(True)
        self.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.setSelectionMode(QAbstractItemView.SingleSelection)
        self.setHorizontalScrollMode(QAbstractItemView.ScrollPerPixel)
        self.setToolTip(
            "Stages run in order; each starts from the previous result. New object states "
            "are the previous mean object with seeded phase noise."
        )
        self._base: list[StageConfig] = []
        self.setVerticalScrollBarPolicy(Qt.ScrollBarAsNeeded)
        self._fit_height()

    def _fit_height(self) -> None:
        """Show up to five rows without empty space below them."""
        rows = min(max(self.rowCount(), 1), 5)
        row_height = self.rowHeight(0) if self.rowCount() else 0
        row_height = max(row_height, self.verticalHeader().defaultSectionSize())
        height = (
            self.horizontalHeader().sizeHint().height()
            + rows * row_height
            + self.horizontalScrollBar().sizeHint().height()
            + 2 * self.frameWidth()
            + 4
        )
        self.setFixedHeight(height)

    # ------------------------------------------------------------------ rows
    def _connect(self, widget: QWidget, signal_name: str) -> None:
        getattr(widget, signal_name).connect(lambda *_: self.changed.emit())

    def cell(self, row: int, key: str) -> Any:
        """The editor of column ``key`` (see :data:`COLUMNS`) in ``row``."""
        widget = self.cellWidget(row, _KEYS.index(key))
        if isinstance(widget, QCheckBox | QSpinBox | QDoubleSpinBox | QComboBox | QLineEdit):
            return widget
        return widget.findChild(QCheckBox)

    def _insert_row(self, stage: StageConfig) -> None:
        stage = dataclasses.replace(stage).validate()
        row = self.rowCount()
        self.insertRow(row)
        self._base.append(stage)
        widgets: dict[str, tuple[QWidget, QWidget, str]] = {}

        name = QLineEdit(stage.name)
        name.setFrame(False)
        widgets["name"] = (name, name, "textChanged")
        for key, hi in (
            ("iterations", 1_000_000),
            ("object_states", 256),
            ("probe_modes", 64),
            ("slices", 512),
        ):
            box = int_spin(0 if key == "iterations" else 1, hi, int(getattr(stage, key)), bare=True)
            widgets[key] = (box, box, "valueChanged")
        dz = double_spin(0.01, 1e4, step=0.5, decimals=2, bare=True)
        thicknesses = stage.thicknesses_A()
        dz.setValue(sum(thicknesses) / len(thicknesses))
        if len(set(thicknesses)) > 1:
            dz.setToolTip(f"per-slice thicknesses {thicknesses} Å (kept unless edited)")
        widgets["slice_thickness_A"] = (dz, dz, "valueChanged")
        coherence = QCheckBox()
        coherence.setChecked(stage.partial_coherence == _COHERENCE[1])
        widgets["partial_coherence"] = (centred(coherence), coherence, "toggled")
        for key in _REFINE_KEYS:
            check = QCheckBox()
            check.setChecked(key in stage.refine)
            widgets[key] = (centred(check), check, "toggled")

        for key, (cell, inner, signal_name) in widgets.items():
            col = _KEYS.index(key)
            cell.setToolTip(inner.toolTip() or COLUMNS[col][2])
            self.setCellWidget(row, col, cell)
            self._connect(inner, signal_name)

    def set_stages(self, stages: list[StageConfig]) -> None:
        """Replace all rows by ``stages``."""
        self.blockSignals(True)
        try:
            self.setRowCount(0)
            self._base = []
            for stage in stages:
                self._insert_row(stage)
        finally:
            self.blockSignals(False)
        self._fit_height()
        self.changed.emit()

    def add_stage(self) -> None:
        """Append a stage: a copy of the selected (or last) stage, named ``stage <n>``."""
        stages = self.stages(validate=False)
        row = self.currentRow() if self.currentRow() >= 0 else len(stages) - 1
        template = stages[row] if stages else StageConfig()
        # quiet while the rows and their stages differ (a slot would read a half-made row)
        self.blockSignals(True)
        try:
            self._insert_row(dataclasses.replace(template, name=f"stage {len(stages) + 1}"))
            self.selectRow(self.rowCount() - 1)
        finally:
            self.blockSignals(False)
        self._fit_height()
        self.changed.emit()

    def remove_stage(self) -> None:
        """Remove the selected stage (or the last one); at least one stage always stays."""
        if self.rowCount() <= 1:
            return
        row = self.currentRow() if self.currentRow() >= 0 else self.rowCount() - 1
        self.blockSignals(True)
        try:
            self.removeRow(row)
            del self._base[row]
        finally:
            self.blockSignals(False)
        self._fit_height()
        self.changed.emit()

    # ----------------------------------------------------------------- reading
    def stages(self, *, validate: bool = True) -> list[StageConfig]:
        """The stages as shown, each validated (``InputError`` names the stage and field)."""
        out = []
        for row, base in enumerate(self._base):
            values: dict[str, Any] = {
                "name": self.cell(row, "name").text().strip() or f"stage {row + 1}",
                "iterations": self.cell(row, "iterations").value(),
                "object_states": self.cell(row, "object_states").value(),
                "probe_modes": self.cell(row, "probe_modes").value(),
                "slices": self.cell(row, "slices").value(),
                "refine": (
                    *(k for k in _REFINE_KEYS if self._check(row, k)),
                    *(k for k in DETAIL_REFINE_KEYS if k in base.refine),
                ),
                "partial_coherence": _COHERENCE[int(self._check(row, "partial_coherence"))],
            }
            dz_box = self.cell(row, "slice_thickness_A")
            old = base.thicknesses_A()
            shown = round(sum(old) / len(old), dz_box.decimals())
            unchanged = abs(dz_box.value() - shown) < 0.5 * 10.0 ** -dz_box.decimals()
            if unchanged and len(old) == values["slices"]:
                values["slice_thickness_A"] = base.slice_thickness_A
            else:
                values["slice_thickness_A"] = float(dz_box.value())
            stage = dataclasses.replace(base, **values)
            out.append(stage.validate(f"stage table row {row + 1}") if validate else stage)
        return out

    def _check(self, row: int, key: str) -> bool:
        return bool(self.cell(row, key).isChecked())

    # ----------------------------------------------------------------- details
    def selected_row(self) -> int:
        """The selected stage (the first when none is selected; -1 without stages)."""
        if not self._base:
            return -1
        row = self.currentRow()
        return row if 0 <= row < len(self._base) else 0

    def base_stage(self, row: int) -> StageConfig:
        """The stage of ``row`` as last set (the fields not in the table as they are)."""
        return self._base[row]

    def set_details(self, row: int, values: dict[str, Any]) -> None:
        """Set fields of the stage of ``row`` that the table does not show (the blocks of
        :data:`DETAIL_REFINE_KEYS` by a bool: refined or not)."""
        unknown = set(values) - set(_DETAIL_KEYS)
        if unknown:
            raise KeyError(f"not a stage detail: {sorted(unknown)}")
        fields = {k: v for k, v in values.items() if k not in DETAIL_REFINE_KEYS}
        base = self._base[row]
        blocks = {k: k in base.refine for k in DETAIL_REFINE_KEYS}
        blocks.update({k: bool(v) for k, v in values.items() if k in DETAIL_REFINE_KEYS})
        refine = (*(k for k in base.refine if k not in DETAIL_REFINE_KEYS), *blocks)
        fields["refine"] = tuple(k for k in refine if blocks.get(k, True))
        self._base[row] = dataclasses.replace(base, **fields)
        self.changed.emit()


class StageDetails(ParamForm):
    """The fields of the selected stage that the table does not show (a magicgui form).

    Parameters
    ----------
    table
        The stage table whose selected row the form edits.
    """

    def __init__(self, table: StageTable) -> None:
        super().__init__(DETAIL_FIELDS, detail_values(StageConfig()))
        self.table = table
        self._row = -1
        for f in self.fields:  # each field alone: a value shown rounded is never written back
            self[f.name].changed.connect(functools.partial(self._edited, f.name))
        table.itemSelectionChanged.connect(self.follow)
        table.changed.connect(self.follow)

    def follow(self) -> None:
        """Show the selected stage's fields (the first stage when none is selected)."""
        row = self.table.selected_row()
        self._row = row
        self.set_enabled(row >= 0 and self.table.isEnabled())
        if row >= 0:
            self.set_values(detail_values(self.table.base_stage(row)))

    def _edited(self, name: str, *_: Any) -> None:
        if self._row >= 0:
            self.table.set_details(self._row, {name: self.value(name)})
