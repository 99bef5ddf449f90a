"""Optics and scan calibration form of the Reconstruction widget.

The fields are filled from a :class:`~caviar_napari.io.dataset.STEMDataset` and edited by the
user; :meth:`OpticsForm.apply` returns a new, validated dataset with the edited calibration
(the intensities are shared, not copied).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from qtpy.QtWidgets import QAbstractSpinBox, QDoubleSpinBox, QFormLayout, QHBoxLayout, QWidget

from caviar_napari.io.dataset import STEMDataset


def _spin(
    lo: float, hi: float, decimals: int, step: float, suffix: str, tip: str, blank: bool = True
) -> QDoubleSpinBox:
    box = QDoubleSpinBox()
    box.setButtonSymbols(QAbstractSpinBox.NoButtons)
    box.setRange(lo, hi)
    if blank:  # the minimum is not physical: show it as "–" (no dataset)
        box.setSpecialValueText("–")
    box.setDecimals(decimals)
    box.setSingleStep(step)
    box.setSuffix(f" {suffix}" if suffix else "")
    box.setToolTip(tip)
    box.setKeyboardTracking(False)
    return box


def _edited(box: QDoubleSpinBox, original: float) -> float:
    """Value of ``box``, or ``original`` exactly when the box only shows it rounded."""
    if abs(box.value() - round(original, box.decimals())) < 0.5 * 10.0 ** -box.decimals():
        return float(original)
    return float(box.value())


def _pair_row(first: QDoubleSpinBox, second: QDoubleSpinBox) -> QWidget:
    row = QWidget()
    layout = QHBoxLayout(row)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.setSpacing(4)
    layout.addWidget(first)
    layout.addWidget(second)
    return row


class OpticsForm(QWidget):
    """Editable beam and scan calibration: energy, α, detector sampling, scan step, Δf, rotation.

    Units are those of conventions §1 (eV, mrad, Å, degrees for the scan rotation).
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.energy_eV = _spin(1e3, 1e6, 0, 1e3, "eV", "Beam energy E in eV (e.g. 60000, 200000).")
        self.convergence_mrad = _spin(
            0.01, 500.0, 3, 0.5, "mrad", "Convergence semi-angle α of the probe-forming aperture."
        )
        tip_det = "Detector pixel size in scattering angle, (ky, kx) in mrad per pixel."
        self.sampling_y_mrad = _spin(1e-4, 100.0, 4, 0.01, "mrad", tip_det + " ky.")
        self.sampling_x_mrad = _spin(1e-4, 100.0, 4, 0.01, "mrad", tip_det + " kx.")
        tip_step = (
            "Scan step (y, x) in Å. Editing it rescales the stored probe positions about the "
            "first scan position."
        )
        self.step_y_A = _spin(1e-4, 1e3, 4, 0.01, "Å", tip_step + " y.")
        self.step_x_A = _spin(1e-4, 1e3, 4, 0.01, "Å", tip_step + " x.")
        self.defocus_A = _spin(
            -1e5,
            1e5,
            2,
            10.0,
            "Å",
            "Probe defocus Δf = −C10 in Å; positive = underfocus "
            "(probe crossover below the entrance surface).",
            blank=False,
        )
        self.rotation_deg = _spin(
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
        form.addRow("Energy (eV):", self.energy_eV)
        form.addRow("Convergence α (mrad):", self.convergence_mrad)
        form.addRow(
            "Detector px (ky, kx) (mrad):", _pair_row(self.sampling_y_mrad, self.sampling_x_mrad)
        )
        form.addRow("Scan step (y, x) (Å):", _pair_row(self.step_y_A, self.step_x_A))
        form.addRow("Defocus Δf (Å):", self.defocus_A)
        form.addRow("Scan rotation (°):", self.rotation_deg)
        self.setEnabled(False)

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

    def set_dataset(self, dataset: STEMDataset | None) -> None:
        """Fill the fields from ``dataset`` (``None`` disables the form)."""
        self.setEnabled(dataset is not None)
        if dataset is None:
            for box in self.fields():
                box.setValue(box.minimum() if box.specialValueText() else 0.0)
            return
        self.energy_eV.setValue(dataset.energy_eV)
        self.convergence_mrad.setValue(dataset.convergence_semiangle_mrad)
        self.sampling_y_mrad.setValue(dataset.angular_sampling_mrad[0])
        self.sampling_x_mrad.setValue(dataset.angular_sampling_mrad[1])
        self.step_y_A.setValue(dataset.scan_step_A[0])
        self.step_x_A.setValue(dataset.scan_step_A[1])
        self.defocus_A.setValue(dataset.defocus_A)
        self.rotation_deg.setValue(dataset.scan_rotation_deg)

    def apply(self, dataset: STEMDataset) -> STEMDataset:
        """Return ``dataset`` with the calibration shown in the form (validated).

        The probe positions are rescaled about the first scan position by the ratio of the new
        to the old scan step, per axis, so a regular grid stays the regular grid of the new step.
        """
        step = (
            _edited(self.step_y_A, dataset.scan_step_A[0]),
            _edited(self.step_x_A, dataset.scan_step_A[1]),
        )
        positions = np.asarray(dataset.positions_A, dtype=np.float64)
        ratio = np.asarray(step) / np.asarray(dataset.scan_step_A)
        if not np.allclose(ratio, 1.0, rtol=1e-12, atol=0.0):
            p0 = positions[:1, :1, :]
            positions = p0 + (positions - p0) * ratio
        return dataclasses.replace(
            dataset,
            energy_eV=_edited(self.energy_eV, dataset.energy_eV),
            convergence_semiangle_mrad=_edited(
                self.convergence_mrad, dataset.convergence_semiangle_mrad
            ),
            angular_sampling_mrad=(
                _edited(self.sampling_y_mrad, dataset.angular_sampling_mrad[0]),
                _edited(self.sampling_x_mrad, dataset.angular_sampling_mrad[1]),
            ),
            scan_step_A=step,
            defocus_A=_edited(self.defocus_A, dataset.defocus_A),
            scan_rotation_deg=_edited(self.rotation_deg, dataset.scan_rotation_deg),
            positions_A=positions,
        )
