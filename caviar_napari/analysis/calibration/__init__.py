"""Calibration of a 4D-STEM dataset from its own patterns (issue 15).

:func:`calibrate` runs every step and returns a :class:`CalibrationResult`; the steps are in
:mod:`.disc` (bright-field disc), :mod:`.com` (descan, scan rotation modulo 180°, detector
transpose), :mod:`.halfturn` (the 180° choice: dark field, bright-field phase), :mod:`.defocus`
(bright-field parallax, SSB phase), :mod:`.parallax_rotation` (rotation and transpose from the
parallax where the centre of mass is too noisy) and :mod:`.probe` (probe from a vacuum
pattern).
"""

from caviar_napari.analysis.calibration.calibrate import (
    CalibrationOptions,
    CalibrationResult,
    calibrate,
)

__all__ = ["CalibrationOptions", "CalibrationResult", "calibrate"]
