"""Optics and scan calibration form of the Reconstruction dock.

The fields show a :class:`~caviar_napari.viewmodels.reconstruction.Calibration`;
:meth:`OpticsForm.calibration` returns the edited one, with the stored values kept exactly where
the user did not change what the box shows (a box shows a value rounded to its decimals).
"""

from __future__ import annotations

from qtpy.QtWidgets import QAbstractSpinBox, QDoubleSpinBox, QFormLayout, QWidget

from caviar_napari._qt._forms import double_spin, exact_value, row_widget, text_label
from caviar_napari.viewmodels.reconstruction import Calibration


def _field(
    lo: float,
    hi: float,
    decimals: int,
    step: float,
    suffix: str,
    tip: str,
    blank: bool = True,
    prefix: str = "",
) -> QDoubleSpinBox:
    """A calibration box: no arrows, no keyboard tracking; the minimum (not physical) is shown
    as "–" (no dataset) when ``blank``; ``prefix`` names the axis of a pair's box."""
    box = double_spin(
        lo,
        hi,
        step=step,
        decimals=decimals,
        suffix=f" {suffix}" if suffix else "",
        special="–" if blank else "",
        tooltip=tip,
    )
    box.setButtonSymbols(QAbstractSpinBox.NoButtons)
    box.setKeyboardTracking(False)
    if prefix:
        box.setPrefix(prefix)
    return box


#: The detector frame of data not calibrated in the dock.
AS_STORED = "as stored (zero angle at the centre pixel)"


class OpticsForm(QWidget):
    """Editable beam and scan calibration: energy, α, detector sampling, scan step, Δf, rotation.

    Units are those of conventions §1 (eV, mrad, Å, degrees for the scan rotation).
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._shown: Calibration | None = None
        self.energy_eV = _field(1e3, 1e6, 0, 1e3, "eV", "Beam energy E in eV (e.g. 60000, 200000).")
        self.convergence_mrad = _field(
            0.01, 500.0, 3, 0.5, "mrad", "Convergence semi-angle α of the probe-forming aperture."
        )
        tip_det = "Detector pixel size in scattering angle, (ky, kx) in mrad per pixel."
        self.sampling_y_mrad = _field(1e-3, 100.0, 3, 0.01, "", tip_det, prefix="ky ")
        self.sampling_x_mrad = _field(1e-3, 100.0, 3, 0.01, "", tip_det, prefix="kx ")
        tip_step = (
            "Scan step (y, x) in Å. Editing it rescales the stored probe positions about the "
            "first scan position."
        )
        self.step_y_A = _field(1e-4, 1e3, 4, 0.01, "Å", tip_step, prefix="y ")
        self.step_x_A = _field(1e-4, 1e3, 4, 0.01, "Å", tip_step, prefix="x ")
        self.defocus_A = _field(
            -1e5,
            1e5,
            2,
            10.0,
            "Å",
            "Probe defocus Δf = −C10 in Å; positive = underfocus "
            "(probe crossover below the entrance surface).",
            blank=False,
        )
        self.rotation_deg = _field(
            -360.0,
            360.0,
            3,
            0.5,
            "°",
            "Rotation of the scan axes relative to the detector axes, in degrees.",
            blank=False,
        )
        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        form.setFieldGrowthPolicy(QFormLayout.AllNonFixedFieldsGrow)
        form.addRow("Energy:", self.energy_eV)
        form.addRow("Convergence α:", self.convergence_mrad)
        form.addRow("Detector (mrad):", row_widget(self.sampling_y_mrad, self.sampling_x_mrad))
        form.addRow("Scan step:", row_widget(self.step_y_A, self.step_x_A))
        form.addRow("Defocus Δf:", self.defocus_A)
        form.addRow("Scan rotation:", self.rotation_deg)
        self.detector_label = text_label(AS_STORED, hint=True)
        self.detector_label.setToolTip(
            "How the patterns sit on the detector: as stored (zero angle at the centre pixel "
            "[Ky//2, Kx//2]), or transposed and centred by Calibrate."
        )
        form.addRow("Detector:", self.detector_label)
        self._tooltips = {
            "scan_rotation_deg": self.rotation_deg.toolTip(),
            "defocus_A": self.defocus_A.toolTip(),
        }
        self.setEnabled(False)

    def show_found(self, detector: str | None, confidences: dict[str, str] | None) -> None:
        """Show the detector frame of the data (None: as stored) and, as the tooltips of the
        fields Calibrate filled, what it found and how sure it is (None: the usual tooltips)."""
        self.detector_label.setText(detector or AS_STORED)
        boxes = {"scan_rotation_deg": self.rotation_deg, "defocus_A": self.defocus_A}
        for key, box in boxes.items():
            extra = (confidences or {}).get(key)
            box.setToolTip(self._tooltips[key] + (f"\n{extra}" if extra else ""))

    def fields(self) -> list[QDoubleSpinBox]:
        """All spin boxes of the form, in display order."""
        return [
            self.energy_eV,
            self.convergence_mrad,
            self.sampling_y_mrad,
            self.sampling_x_mrad,
            self.step_y_A,
            self.step_x_A,
            self.defocus_A,
            self.rotation_deg,
        ]

    def show_calibration(self, calibration: Calibration | None) -> None:
        """Fill the fields from ``calibration`` (None disables the form)."""
        self._shown = calibration
        self.setEnabled(calibration is not None)
        boxes = self.fields()
        for box in boxes:
            box.blockSignals(True)
        try:
            if calibration is None:
                for box in boxes:
                    box.setValue(box.minimum() if box.specialValueText() else 0.0)
                return
            c = calibration
            values = (
                c.energy_eV,
                c.convergence_semiangle_mrad,
                *c.angular_sampling_mrad,
                *c.scan_step_A,
                c.defocus_A,
                c.scan_rotation_deg,
            )
            for box, value in zip(boxes, values, strict=True):
                box.setValue(value)
        finally:
            for box in boxes:
                box.blockSignals(False)

    def calibration(self) -> Calibration | None:
        """The calibration as edited (values the user did not change are kept exactly)."""
        c = self._shown
        if c is None:
            return None
        return Calibration(
            energy_eV=exact_value(self.energy_eV, c.energy_eV),
            convergence_semiangle_mrad=exact_value(
                self.convergence_mrad, c.convergence_semiangle_mrad
            ),
            angular_sampling_mrad=(
                exact_value(self.sampling_y_mrad, c.angular_sampling_mrad[0]),
                exact_value(self.sampling_x_mrad, c.angular_sampling_mrad[1]),
            ),
            scan_step_A=(
                exact_value(self.step_y_A, c.scan_step_A[0]),
                exact_value(self.step_x_A, c.scan_step_A[1]),
            ),
            defocus_A=exact_value(self.defocus_A, c.defocus_A),
            scan_rotation_deg=exact_value(self.rotation_deg, c.scan_rotation_deg),
        )
