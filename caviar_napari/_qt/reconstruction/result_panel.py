"""Result panel of the Reconstruction dock: what the last run says about itself.

Shows a :class:`~caviar_napari.viewmodels.recon_report.ResultReport`: the data loss used (and
whether ``auto`` chose it), the held-out scan positions, the fitted source size, the iterations
and final loss, and one row per stage with several object states — how far the states moved
apart, how much of the mean object's misfit they explain, whether they also lower the loss of
the held-out positions, and whether they separated and converged.
"""

from __future__ import annotations

from qtpy.QtCore import Qt
from qtpy.QtGui import QColor
from qtpy.QtWidgets import (
    QAbstractItemView,
    QGroupBox,
    QHeaderView,
    QSizePolicy,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from caviar_napari._qt._forms import ERROR_STYLE, text_label
from caviar_napari.viewmodels.recon_report import SEPARATION_COLUMNS, ResultReport

#: Colours of a verdict cell.
GOOD_COLOUR, BAD_COLOUR = "#7bd88f", "#ff6b6b"


class ResultPanel(QGroupBox):
    """Group box "Result": the report lines and the state-separation table (hidden until a
    result or a reconstruction to continue is shown)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Result", parent)
        self.setSizePolicy(QSizePolicy.Preferred, QSizePolicy.Maximum)
        layout = QVBoxLayout(self)
        self.label = text_label(selectable=True)
        layout.addWidget(self.label)
        self.table = QTableWidget(0, len(SEPARATION_COLUMNS))
        self.table.setHorizontalHeaderLabels([h for h, _ in SEPARATION_COLUMNS])
        for col, (_h, tip) in enumerate(SEPARATION_COLUMNS):
            self.table.horizontalHeaderItem(col).setToolTip(tip)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.setHorizontalScrollMode(QAbstractItemView.ScrollPerPixel)
        self.table.setTextElideMode(Qt.ElideRight)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeToContents)
        header.setSectionResizeMode(0, QHeaderView.Stretch)  # the name takes what is left
        header.setMinimumSectionSize(24)
        self.table.setToolTip(
            "Whether the object states of each multi-state stage separated: the engine's "
            "state-separation report (also in the reconstruction file)."
        )
        layout.addWidget(self.table)
        self.verdict = text_label()
        layout.addWidget(self.verdict)
        self.setVisible(False)

    def show_report(self, report: ResultReport | None, title: str = "Result") -> None:
        """Show ``report`` under ``title`` (None hides the panel)."""
        self.setVisible(report is not None)
        if report is None:
            return
        self.setTitle(title)
        self.label.setText("\n".join(report.lines))
        self.table.setRowCount(len(report.rows))
        for r, cells in enumerate(report.rows):
            for c, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setToolTip(f"{SEPARATION_COLUMNS[c][0]}: {text}")
                item.setTextAlignment(Qt.AlignCenter if c else Qt.AlignLeft | Qt.AlignVCenter)
                if text.startswith(("✓", "✗")):
                    item.setForeground(QColor(GOOD_COLOUR if text[0] == "✓" else BAD_COLOUR))
                self.table.setItem(r, c, item)
        self.table.setVisible(bool(report.rows))
        if report.rows:
            header = self.table.horizontalHeader().sizeHint().height()
            rows = sum(self.table.rowHeight(r) for r in range(self.table.rowCount()))
            scroll = self.table.horizontalScrollBar().sizeHint().height()
            self.table.setFixedHeight(header + rows + scroll + 2 * self.table.frameWidth())
        self.verdict.setVisible(bool(report.verdicts))
        self.verdict.setStyleSheet(ERROR_STYLE)
        self.verdict.setText("\n".join(report.verdicts))
