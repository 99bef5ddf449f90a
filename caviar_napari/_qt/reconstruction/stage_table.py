"""Stage table of the Reconstruction dock: add, remove and edit the stages of a run.

Each row is one :class:`~caviar_napari.data.config.StageConfig`. The table shows the fields a
user changes between stages; the other fields of a stage loaded from YAML (optimiser memory,
missing-wedge slope, state noise, per-slice thicknesses) are kept as they were unless the
corresponding visible cell is edited.
"""

from __future__ import annotations

import dataclasses
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

from caviar_napari._qt._forms import centred, combo, double_spin, int_spin
from caviar_napari.data.config import OPTIMIZERS, StageConfig

#: (key, header, tooltip) of every column, in display order.
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("name", "Stage", "Name of the stage (shown in progress and on the loss plot)."),
    ("iterations", "Iter.", "Optimiser iterations of this stage."),
    ("object_states", "States", "Object states N (thermal snapshots of equal weight)."),
    ("probe_modes", "Modes", "Probe modes M (incoherent; their powers are the occupancies)."),
    ("slices", "Slices", "Multislice slices S."),
    ("slice_thickness_A", "dz (Å)", "Thickness of each slice in Å."),
    ("object", "Obj", "Refine the object in this stage."),
    ("probe", "Prb", "Refine the probe in this stage."),
    ("tilt", "Tilt", "Refine the global crystal tilt (α_y, α_x) in this stage."),
    ("l1_absorption", "l1 abs.", "Weight of the l1 absorption penalty Σ|log|O|| (≥ 0)."),
    ("missing_wedge", "Wedge", "Weight of the missing-wedge penalty (multislice; ≥ 0)."),
    ("optimizer", "Optim.", "lbfgs: L-BFGS with Wolfe line search; gd: gradient descent."),
)
_KEYS = [c[0] for c in COLUMNS]


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
        header.setSectionResizeMode(QHeaderView.ResizeToContents)
        header.setSectionResizeMode(0, QHeaderView.Interactive)
        self.setColumnWidth(0, 110)
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
        for key in ("object", "probe", "tilt"):
            check = QCheckBox()
            check.setChecked(key in stage.refine)
            widgets[key] = (centred(check), check, "toggled")
        for key in ("l1_absorption", "missing_wedge"):
            box = double_spin(
                0.0, 1e9, float(getattr(stage, key)), step=0.01, decimals=4, bare=True
            )
            widgets[key] = (box, box, "valueChanged")
        optim = combo(OPTIMIZERS, current=stage.optimizer)
        widgets["optimizer"] = (optim, optim, "currentIndexChanged")

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
        self._insert_row(dataclasses.replace(template, name=f"stage {len(stages) + 1}"))
        self.selectRow(self.rowCount() - 1)
        self._fit_height()
        self.changed.emit()

    def remove_stage(self) -> None:
        """Remove the selected stage (or the last one); at least one stage always stays."""
        if self.rowCount() <= 1:
            return
        row = self.currentRow() if self.currentRow() >= 0 else self.rowCount() - 1
        self.removeRow(row)
        del self._base[row]
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
                "refine": tuple(k for k in ("object", "probe", "tilt") if self._check(row, k)),
                "l1_absorption": self.cell(row, "l1_absorption").value(),
                "missing_wedge": self.cell(row, "missing_wedge").value(),
                "optimizer": self.cell(row, "optimizer").currentText(),
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
