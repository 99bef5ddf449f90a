"""Calibrate panel of the Reconstruction dock (issue 15): calibration from the data's patterns.

Options (fit the defocus, apply the descan, defocus search range), the *Calibrate* button, the
*Save calibrated file…* button and the found values with their confidences.  The dock runs the
jobs of :mod:`caviar_napari.viewmodels.calibration` in workers and keeps the calibrated data as
a new source.
"""

from __future__ import annotations

from qtpy.QtWidgets import QFormLayout, QVBoxLayout, QWidget

from caviar_napari._qt._forms import check_box, double_spin, hrow, push_button, text_label
from caviar_napari.viewmodels.calibration import CalibrationForm, CalibrationOutcome


class CalibratePanel(QWidget):
    """Calibration options, buttons and report (the dock connects the buttons)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        defaults = CalibrationForm()
        self.defocus_check = check_box(
            "fit defocus",
            defaults.fit_defocus,
            "Fit the defocus from the parallax of the bright-field disc (a weak-phase fit); "
            "else keep the stated one.",
        )
        self.descan_check = check_box(
            "apply descan",
            defaults.descan,
            "Centre each pattern on its own zero angle (the fitted linear descan); it is "
            "always measured and reported.",
        )
        self.search_spin = double_spin(
            1.0,
            1e5,
            defaults.defocus_search_A,
            step=50.0,
            decimals=0,
            suffix=" Å",
            tooltip="Half-width of the defocus search around the stated defocus, Å.",
        )
        self.calibrate_button = push_button(
            "Calibrate",
            None,
            "Find the pattern centre, detector transpose, scan rotation and defocus from the "
            "selected data's own patterns (as caviar calibrate), with their confidences; the "
            "calibrated data become a new entry of the Data list and fill these fields.",
        )
        self.save_button = push_button(
            "Save calibrated file…",
            None,
            "Write the calibrated input file of caviar calibrate (the found values as its "
            "attributes, the data linked or copied) for the file the data came from.",
        )
        self.report = text_label(selectable=True, hint=True)
        self.report.setVisible(False)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 4, 0, 0)
        form = QFormLayout()
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("From the data:", hrow(self.defocus_check, self.descan_check))
        form.addRow("Defocus search ±", self.search_spin)
        layout.addLayout(form)
        layout.addLayout(hrow((self.calibrate_button, 1), self.save_button))
        layout.addWidget(self.report)

    def form(self) -> CalibrationForm:
        """The options as set."""
        return CalibrationForm(
            fit_defocus=self.defocus_check.isChecked(),
            descan=self.descan_check.isChecked(),
            defocus_search_A=float(self.search_spin.value()),
        )

    def show_outcome(self, outcome: CalibrationOutcome | None, busy_text: str = "") -> None:
        """Show what a calibration found (None: nothing, or ``busy_text``)."""
        if outcome is None:
            self.report.setText(busy_text)
            self.report.setVisible(bool(busy_text))
            return
        self.report.setText("\n".join(outcome.lines))
        self.report.setVisible(True)
