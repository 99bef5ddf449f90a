"""Calibrate a 4D-STEM file from its own patterns (``caviar calibrate``, issue 15).

Reads the data (any format :func:`caviar_napari.io.readers.load_stem` reads), runs
:func:`caviar_napari.analysis.calibration.calibrate` and writes a conventions §6 input with
the found values (:mod:`caviar_napari.io.calibrated_file`): ``caviar reconstruct`` takes it as
it is.  The intensities are linked to the original HDF5 file when the reader returns them as
stored and they are large (``copy=None``: more than :data:`COPY_LIMIT_BYTES`), else copied.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from caviar_napari.io.outputs import OutputTarget
from caviar_napari.workflows.summary import StepSummary

log = logging.getLogger(__name__)

__all__ = ["COPY_LIMIT_BYTES", "CalibrateOptions", "CalibrateSummary", "run_calibrate"]

#: Intensities up to this size are copied into the calibrated file unless told otherwise.
COPY_LIMIT_BYTES = 256 * 2**20


def _region(text: str | None) -> tuple[slice, slice] | None:
    """``"Y0:Y1,X0:X1"`` scan indices → slices (None passes)."""
    from caviar_napari.errors import InputError

    if text is None:
        return None
    try:
        parts = [p.split(":") for p in text.split(",")]
        if len(parts) != 2 or any(len(p) != 2 for p in parts):
            raise ValueError
        (y0, y1), (x0, x1) = ((int(a), int(b)) for a, b in parts)
    except ValueError:
        raise InputError(
            f"--vacuum-region must be Y0:Y1,X0:X1 (scan indices), got {text!r}"
        ) from None
    if y1 <= y0 or x1 <= x0 or min(y0, x0) < 0:
        raise InputError(f"--vacuum-region {text!r} is empty or negative")
    return slice(y0, y1), slice(x0, x1)


@dataclass(frozen=True)
class CalibrateOptions:
    """Options of :func:`run_calibrate`.

    Attributes
    ----------
    data
        The 4D-STEM input.
    out
        The calibrated file (conventions §6).
    vacuum
        Optional 4D-STEM file of vacuum patterns (same detector): its mean pattern gives the
        starting probe.
    vacuum_region
        Optional ``"Y0:Y1,X0:X1"`` scan region of ``data`` that is vacuum (instead of
        ``vacuum``).
    descan
        Apply the fitted linear descan (per-position centring).
    defocus
        Fit the defocus (else keep the stated one).
    defocus_search_A
        Half-width of the defocus search around the stated value (Å).
    dark_field
        Let the virtual dark-field image decide the half-turn of the scan rotation (else the
        bright-field phase decides).
    copy
        True: copy the intensities; False: link them (HDF5 input read as stored); None: link
        when larger than :data:`COPY_LIMIT_BYTES`.
    crop, bin, scan_shape
        Reader options (:func:`~caviar_napari.io.readers.load_stem`).
    calibration
        Calibration items the input lacks or that override it (``energy_eV`` …).
    overwrite
        Replace an existing ``out`` that this program did not write, or of another kind.
    """

    data: Path
    out: Path
    vacuum: Path | None = None
    vacuum_region: str | None = None
    descan: bool = False
    defocus: bool = True
    defocus_search_A: float = 500.0
    dark_field: bool = True
    copy: bool | None = None
    crop: tuple[int, int] | int | None = None
    bin: int = 1
    scan_shape: tuple[int, int] | None = None
    calibration: dict[str, Any] = field(default_factory=dict)
    overwrite: bool = False


@dataclass(kw_only=True)
class CalibrateSummary(StepSummary):
    """Result of :func:`run_calibrate`.

    Attributes
    ----------
    values
        The calibration's values and confidences (the ``--json`` object).
    linked
        Whether the intensities were linked (else copied).
    """

    values: dict[str, Any] = field(default_factory=dict)
    linked: bool = False


def run_calibrate(options: CalibrateOptions) -> CalibrateSummary:
    """Calibrate ``options.data`` and write ``options.out`` (module docstring).

    Raises
    ------
    InputError
        Unreadable input, missing calibration, no bright-field disc, a scan too small.
    OutputError
        The output may not or cannot be written (checked before any computation).
    """
    from caviar_napari.analysis.calibration import CalibrationOptions, calibrate
    from caviar_napari.analysis.calibration.disc import mean_pattern
    from caviar_napari.errors import InputError
    from caviar_napari.io.calibrated_file import IntensityLink, write_calibrated_h5
    from caviar_napari.io.dataset import geometry_attrs
    from caviar_napari.io.readers import load_stem, stored_intensities

    region = _region(options.vacuum_region)
    if region is not None and options.vacuum is not None:
        raise InputError("give --vacuum or --vacuum-region, not both")
    target = OutputTarget.prepare(
        options.out,
        "stem",
        inputs={"DATA": options.data, "--vacuum": options.vacuum},
        overwrite=options.overwrite,
    )
    read = {"crop": options.crop, "bin": options.bin, "scan_shape": options.scan_shape}
    dataset = load_stem(options.data, **read, **options.calibration)
    stored = stored_intensities(options.data)
    as_read = stored is not None and stored[1] and options.crop is None and options.bin == 1
    n_bytes = int(np.prod(dataset.intensities.shape)) * 4
    link = as_read and (
        options.copy is False or (options.copy is None and n_bytes > COPY_LIMIT_BYTES)
    )
    if options.copy is False and not as_read:
        raise InputError(
            f"{options.data}: the intensities cannot be linked (only an HDF5 file read as "
            "stored, without crop or binning, can be); leave out --link to copy them"
        )
    target.require_space(1.1 * n_bytes if not link else 0)

    vacuum = None
    if options.vacuum is not None:
        vac = load_stem(options.vacuum, **read, **options.calibration)
        vacuum = mean_pattern(vac.intensities)
    elif region is not None:
        part = dataset.intensities[region[0], region[1]]
        if part.shape[0] == 0 or part.shape[1] == 0:
            raise InputError(
                f"--vacuum-region {options.vacuum_region} is outside the {dataset.scan_shape} scan"
            )
        vacuum = mean_pattern(part)
    result = calibrate(
        dataset,
        CalibrationOptions(
            descan=options.descan,
            defocus=options.defocus,
            defocus_search_A=options.defocus_search_A,
            dark_field=options.dark_field,
            vacuum_pattern=vacuum,
        ),
    )
    attrs: dict[str, Any] = {
        "energy_eV": float(dataset.energy_eV),
        "convergence_semiangle_mrad": float(dataset.convergence_semiangle_mrad),
        "scan_step_A": np.asarray(dataset.scan_step_A, dtype=np.float64),
        "angular_sampling_mrad": np.asarray(dataset.angular_sampling_mrad, dtype=np.float64),
        "defocus_A": float(result.defocus_A),
        "scan_rotation_deg": float(result.rotation_deg),
        **geometry_attrs(result.geometry),
    }
    values = result.as_dict()
    values.update(out=str(options.out), linked=bool(link), source=str(options.data))
    intensity_link = None
    if link:
        assert stored is not None
        intensity_link = IntensityLink(Path(options.data), stored[0])
    target.write(
        lambda p: write_calibrated_h5(
            p,
            dataset,
            attrs=attrs,
            report=values,
            link=intensity_link,
            probe_initial=result.probe_initial,
        ),
        warnings=result.warnings,
    )
    how = (
        f"intensities linked to {options.data} (keep the two files together)"
        if link
        else f"intensities copied ({n_bytes / 2**20:.1f} MiB)"
    )
    summary = CalibrateSummary(values=values, linked=bool(link), warnings=list(result.warnings))
    summary.out = target.path
    summary.lines = [*result.lines(), f"wrote {options.out}: {how}"]
    return summary
