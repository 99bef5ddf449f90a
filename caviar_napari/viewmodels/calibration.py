"""The Reconstruction dock's "Calibrate" step (issue 15), Qt-free.

:func:`calibrate_job` runs :func:`caviar_napari.analysis.calibration.calibrate` on the selected
4D-STEM data in a worker: the bright-field disc's centre, the detector transpose and scan
rotation from the centre-of-mass field, the defocus from the bright-field parallax, each with
its confidence.  It returns the data as the calibration says they are
(:func:`calibrated_dataset`: the patterns transposed and centred as a reader with the found
detector attributes would deliver them, with the found rotation and defocus), which the dock
keeps as a new source, and the lines and warnings to show.  :func:`save_calibrated_job` writes
the calibrated input file of ``caviar calibrate`` (:func:`caviar_napari.workflows.calibrate.
run_calibrate`) for a source read from a file.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from caviar_napari.analysis.calibration import (
    CalibrationOptions,
    CalibrationResult,
    calibrate,
)
from caviar_napari.data.dataset import STEMDataset
from caviar_napari.errors import InputError
from caviar_napari.io.detector import describe, read_patterns

__all__ = [
    "CalibrationForm",
    "CalibrationOutcome",
    "calibrate_job",
    "calibrated_dataset",
    "save_calibrated_job",
]

#: Suffix of the name of a calibrated source.
CALIBRATED_SUFFIX = " (calibrated)"


@dataclass(frozen=True)
class CalibrationForm:
    """The dock's calibration options.

    Attributes
    ----------
    fit_defocus
        Fit the defocus from the bright-field parallax (else keep the stated one).
    descan
        Apply the fitted linear descan (each pattern centred on its own zero angle).
    defocus_search_A
        Half-width of the defocus search around the stated value, Å.
    """

    fit_defocus: bool = True
    descan: bool = False
    defocus_search_A: float = 500.0

    def options(self) -> CalibrationOptions:
        """The analysis options (``InputError`` naming a bad value)."""
        return CalibrationOptions(
            descan=bool(self.descan),
            defocus=bool(self.fit_defocus),
            defocus_search_A=float(self.defocus_search_A),
        )


@dataclass(frozen=True)
class CalibrationOutcome:
    """A calibration and the data it gives.

    Attributes
    ----------
    result
        Everything the calibration found, with the confidences.
    dataset
        The calibrated data (:func:`calibrated_dataset`).
    source_path
        The file the data were read from (None: not from a file), for "Save calibrated file…".
    form
        The options used.
    """

    result: CalibrationResult
    dataset: STEMDataset
    source_path: str | None
    form: CalibrationForm

    @property
    def lines(self) -> list[str]:
        """The values and confidences, one per line (as ``caviar calibrate`` prints them)."""
        return self.result.lines()

    @property
    def warnings(self) -> list[str]:
        """What is uncertain or disagrees with the stated calibration."""
        return list(self.result.warnings)

    @property
    def detector_text(self) -> str:
        """The detector frame of the calibrated data in a few words."""
        d = self.result.disc
        return f"{describe(self.result.geometry)}; pattern centre ± {d.centre_stderr_px:.3f} px"

    def confidence(self) -> dict[str, str]:
        """Tooltip text per optics field the calibration filled (``scan_rotation_deg``,
        ``defocus_A``)."""
        r, h = self.result.rotation, self.result.half_turn
        out = {
            "scan_rotation_deg": (
                f"found by Calibrate: {self.result.rotation_deg:.2f}° from the {r.method} "
                f"(curl left {100 * r.curl_fraction:.2f} %, transpose ratio "
                f"{r.transpose_ratio:.1f}); half-turn by the {h.decided_by} "
                f"({h.confidence:+.2f})"
            )
        }
        f = self.result.defocus
        if f is not None:
            out["defocus_A"] = (
                f"found by Calibrate: {self.result.defocus_A:.1f} Å (parallax fit, width "
                f"{f.width_A:.0f} Å, explains {100 * f.explained:.0f} % of the bright-field signal)"
            )
        return out


def calibrated_dataset(dataset: STEMDataset, result: CalibrationResult) -> STEMDataset:
    """``dataset`` as the calibration says it is: the patterns transposed and centred (a copy,
    unless the detector frame was already right), the detector sampling of the new frame, the
    found scan rotation and defocus, and the probe from a vacuum pattern when there is one."""
    patterns = read_patterns(dataset.intensities, result.geometry, dataset.positions_A)
    return dataclasses.replace(
        dataset,
        intensities=patterns,
        angular_sampling_mrad=tuple(float(v) for v in result.angular_sampling_mrad),
        defocus_A=float(result.defocus_A),
        scan_rotation_deg=float(result.rotation_deg),
        source=f"{dataset.source}{CALIBRATED_SUFFIX}" if dataset.source else "calibrated",
        probe_initial=(
            result.probe_initial if result.probe_initial is not None else dataset.probe_initial
        ),
    )


def calibrate_job(
    dataset: STEMDataset, form: CalibrationForm, source_path: str | None = None
) -> Generator[str, None, CalibrationOutcome]:
    """Worker: calibrate ``dataset`` from its patterns and build the calibrated data."""
    options = form.options()
    yield "calibrating"
    result = calibrate(dataset, options)
    yield "applying"
    return CalibrationOutcome(result, calibrated_dataset(dataset, result), source_path, form)


def save_calibrated_job(
    source_path: str, out: str, form: CalibrationForm, calibration: dict[str, Any] | None = None
) -> Generator[str, None, Any]:
    """Worker: ``caviar calibrate SOURCE --out OUT`` with the form's options and the dock's
    calibration items (energy, α, detector sampling, scan step) as overrides; returns the
    workflow's summary (its ``warnings``, ``lines``)."""
    from caviar_napari.workflows.calibrate import CalibrateOptions, run_calibrate

    if not source_path:
        raise InputError(
            "the selected data were not read from a file: open the 4D-STEM file to save a "
            "calibrated copy of it"
        )
    search = float(form.defocus_search_A)
    if not (math.isfinite(search) and search > 0):
        raise InputError(f"defocus search must be a positive number of Å, got {search!r}")
    yield "calibrating and writing"
    return run_calibrate(
        CalibrateOptions(
            data=Path(source_path),
            out=Path(out),
            descan=bool(form.descan),
            defocus=bool(form.fit_defocus),
            defocus_search_A=search,
            calibration=dict(calibration or {}),
        )
    )
