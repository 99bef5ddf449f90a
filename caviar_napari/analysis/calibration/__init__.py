"""Calibration of a 4D-STEM dataset from its own patterns (issue 15).

:func:`calibrate` runs every step and returns a :class:`CalibrationResult`; the steps are in
:mod:`.disc` (bright-field disc), :mod:`.com` (descan, scan rotation, detector transpose, sign),
:mod:`.defocus` (bright-field parallax) and :mod:`.probe` (probe from a vacuum pattern).
"""

from caviar_napari.analysis.calibration.calibrate import (
    CalibrationOptions,
    CalibrationResult,
    calibrate,
)

__all__ = ["CalibrationOptions", "CalibrationResult", "calibrate"]
