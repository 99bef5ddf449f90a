"""What every 4D-STEM reader shares: calibration items, reader options, building the dataset.

:class:`Calibration` holds what a file states (any item may be missing) and what the caller
overrides; :class:`ReadOptions` the detector crop and binning (and the scan shape, for formats
that do not record it); :func:`make_dataset` validates a calibration and turns the stored data
into a :class:`~caviar_napari.data.dataset.STEMDataset` through
:func:`caviar_napari.io.detector.read_patterns` (block by block: transpose, crop, bin).

Calibration items describe the detector pixels *as stored but in the project's axis order*
(after a transpose, before binning): a reader swaps a transposed file's values before merging
the caller's.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal

import numpy as np

from caviar_napari.data.beam import wavelength_A
from caviar_napari.data.dataset import STEMDataset
from caviar_napari.errors import InputError
from caviar_napari.io.dataset import CALIBRATION_RTOL
from caviar_napari.io.detector import DetectorGeometry, read_patterns

__all__ = [
    "CALIBRATION_KEYS",
    "Calibration",
    "Kind",
    "ReadOptions",
    "detector_calibration",
    "length_A",
    "make_dataset",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReadOptions:
    """Options every reader honours.

    Attributes
    ----------
    crop
        Largest detector window ``(Wy, Wx)`` (stored pixels) kept around the zero angle.
    bin
        Detector binning factor (sums ``bin × bin`` pixels).
    scan_shape
        ``(Sy, Sx)`` for formats that store a flat list of frames without the scan's shape
        (Merlin without its header, Dectris Arina).
    """

    crop: tuple[int, int] | int | None = None
    bin: int = 1
    scan_shape: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        DetectorGeometry(crop=self.crop, bin=self.bin)  # validates them
        if self.scan_shape is not None:
            arr = np.ravel(np.asarray(self.scan_shape))
            if arr.size != 2 or np.any(arr < 1) or np.any(arr != np.round(arr)):
                raise InputError(f"scan_shape must be two integers ≥ 1, got {self.scan_shape!r}")
            object.__setattr__(self, "scan_shape", (int(arr[0]), int(arr[1])))

    def geometry(self, transposed: bool = False) -> DetectorGeometry:
        """The reader's :class:`DetectorGeometry` (no centring: files carry their own)."""
        return DetectorGeometry(transposed=transposed, crop=self.crop, bin=self.bin)


#: What a file holds: a 4D-STEM dataset, a reconstruction, or an ATOMS file.
Kind = Literal["stem", "reconstruction", "atoms"]

#: Calibration items a user may pass (and a JSON sidecar may hold).
CALIBRATION_KEYS: tuple[str, ...] = (
    "energy_eV",
    "convergence_semiangle_mrad",
    "scan_step_A",
    "angular_sampling_mrad",
    "reciprocal_sampling_invA",
    "defocus_A",
    "scan_rotation_deg",
)
_REQUIRED = ("energy_eV", "convergence_semiangle_mrad", "scan_step_A")

#: Length units → Å.
_LENGTH_TO_A = {
    "a": 1.0,
    "å": 1.0,
    "angstrom": 1.0,
    "ang": 1.0,
    "nm": 10.0,
    "pm": 0.01,
    "µm": 1e4,
    "um": 1e4,
    "m": 1e10,
}
#: Reciprocal length units → 1/Å.
_RECIPROCAL_TO_INVA = {
    "a^-1": 1.0,
    "1/a": 1.0,
    "1/å": 1.0,
    "å^-1": 1.0,
    "1/angstrom": 1.0,
    "nm^-1": 0.1,
    "1/nm": 0.1,
    "1/pm": 100.0,
    "pm^-1": 100.0,
    "1/m": 1e-10,
    "m^-1": 1e-10,
}


def _same(a: Any, b: Any) -> bool:
    """Whether two calibration values are numerically equal (non-numbers compare as text)."""
    try:
        return bool(np.allclose(np.ravel(np.asarray(a, float)), np.ravel(np.asarray(b, float))))
    except (TypeError, ValueError):
        return str(a) == str(b)


@dataclass
class Calibration:
    """Calibration items of a 4D-STEM dataset, any of which may be missing (None).

    Attributes
    ----------
    energy_eV
        Beam energy (eV).
    convergence_semiangle_mrad
        α (mrad).
    scan_step_A
        ``(dy, dx)`` or scalar (Å).
    angular_sampling_mrad
        ``(dky, dkx)`` or scalar (mrad).
    reciprocal_sampling_invA
        ``(dky, dkx)`` or scalar (1/Å), converted to mrad with λ.
    defocus_A
        Δf = −C10 (Å), default 0.
    scan_rotation_deg
        Scan rotation (degrees), default 0.
    """

    energy_eV: Any = None
    convergence_semiangle_mrad: Any = None
    scan_step_A: Any = None
    angular_sampling_mrad: Any = None
    reciprocal_sampling_invA: Any = None
    defocus_A: Any = None
    scan_rotation_deg: Any = None

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], source: str) -> Calibration:
        """Build from a mapping, rejecting unknown keys (named in the error)."""
        unknown = sorted(set(values) - set(CALIBRATION_KEYS))
        if unknown:
            raise InputError(
                f"{source}: unknown calibration item(s) {unknown}; known: {list(CALIBRATION_KEYS)}"
            )
        return cls(**{k: v for k, v in values.items() if v is not None})

    def merged(self, override: Calibration, source: str) -> Calibration:
        """This calibration with every non-None item of ``override`` replacing it (logged)."""
        out = Calibration(**{f.name: getattr(self, f.name) for f in fields(self)})
        for f in fields(self):
            new = getattr(override, f.name)
            if new is None:
                continue
            old = getattr(self, f.name)
            if old is not None and not _same(old, new):
                log.warning("%s: %s = %s in the file overridden by %s", source, f.name, old, new)
            setattr(out, f.name, new)
        if override.angular_sampling_mrad is not None and override.reciprocal_sampling_invA is None:
            out.reciprocal_sampling_invA = None
        if override.reciprocal_sampling_invA is not None and override.angular_sampling_mrad is None:
            out.angular_sampling_mrad = None
        return out

    def missing(self) -> list[str]:
        """Names of the required items that are not set."""
        out = [k for k in _REQUIRED if getattr(self, k) is None]
        if self.angular_sampling_mrad is None and self.reciprocal_sampling_invA is None:
            out.append("angular_sampling_mrad (or reciprocal_sampling_invA)")
        return out


def make_dataset(
    intensities: Any,
    calibration: Calibration,
    source: str,
    *,
    options: ReadOptions | None = None,
    transposed: bool = False,
    positions_A: np.ndarray | None = None,
    how: str = "",
) -> STEMDataset:
    """Validate the calibration and build the :class:`STEMDataset`.

    Parameters
    ----------
    intensities
        The stored ``(Sy, Sx, a, b)`` data (numpy array, memory map, ``h5py.Dataset``, dask
        array): read block by block through the reader's detector geometry.
    calibration
        In the project's axis order (after ``transposed``), before binning.
    source
        The file's name (messages, ``STEMDataset.source``).
    options
        Crop and binning.
    transposed
        The stored detector axes are ``(kx, ky)``.
    positions_A
        Optional scan positions.
    how
        Hint appended to the message of missing calibration items.
    """
    opts = options or ReadOptions()
    missing = calibration.missing()
    if missing:
        hint = how or "pass them as keyword arguments, e.g. load_stem(path, energy_eV=60e3, ...)"
        raise InputError(f"{source}: missing calibration item(s) {', '.join(missing)}; {hint}")
    angular = calibration.angular_sampling_mrad
    if calibration.reciprocal_sampling_invA is not None:
        try:
            rec = np.asarray(calibration.reciprocal_sampling_invA, dtype=float)
            lam = wavelength_A(float(np.asarray(calibration.energy_eV, dtype=float)))
        except (TypeError, ValueError) as exc:
            raise InputError(
                f"{source}: 'reciprocal_sampling_invA' and 'energy_eV' must be numbers ({exc})"
            ) from exc
        from_rec = rec * lam * 1e3
        if angular is None:
            angular = from_rec
        elif not np.allclose(
            np.broadcast_to(np.ravel(np.asarray(angular, dtype=float)), (2,)),
            np.broadcast_to(np.ravel(from_rec), (2,)),
            rtol=CALIBRATION_RTOL,
        ):
            raise InputError(
                f"{source}: inconsistent calibration: 'angular_sampling_mrad' = {angular} mrad "
                f"but 'reciprocal_sampling_invA' = {rec.tolist()} 1/Å is "
                f"{np.round(from_rec, 6).tolist()} mrad at the given energy_eV; give only one"
            )
    shape = tuple(np.shape(intensities))
    if len(shape) != 4:
        raise InputError(
            f"{source}: the data must have rank 4 (scan_y, scan_x, ky, kx), got rank "
            f"{len(shape)} with shape {shape}"
        )
    dtype = np.dtype(getattr(intensities, "dtype", np.float32))
    if not np.issubdtype(dtype, np.number) or np.issubdtype(dtype, np.complexfloating):
        raise InputError(f"{source}: the intensities must be real numbers, got {dtype}")
    geometry = opts.geometry(transposed)
    try:
        data = read_patterns(intensities, geometry)
    except (OSError, TypeError, ValueError) as exc:
        raise InputError(f"{source}: the intensities cannot be read ({exc})") from exc
    if opts.bin > 1:
        pair = np.broadcast_to(np.ravel(np.asarray(angular, dtype=float)), (2,))
        angular = (float(pair[0]) * opts.bin, float(pair[1]) * opts.bin)
    return STEMDataset(
        intensities=data,
        energy_eV=calibration.energy_eV,
        convergence_semiangle_mrad=calibration.convergence_semiangle_mrad,
        scan_step_A=calibration.scan_step_A,
        angular_sampling_mrad=angular,
        defocus_A=0.0 if calibration.defocus_A is None else calibration.defocus_A,
        scan_rotation_deg=(
            0.0 if calibration.scan_rotation_deg is None else calibration.scan_rotation_deg
        ),
        positions_A=positions_A,
        source=source,
    )


def length_A(value: float, units: str, item: str, source: str) -> float | None:
    u = units.strip().lower()
    if u in ("pixels", "pixel", "px", "", "unknown"):
        return None
    if u not in _LENGTH_TO_A:
        raise InputError(f"{source}: unknown length unit {units!r} of {item}")
    return float(value) * _LENGTH_TO_A[u]


def detector_calibration(
    value: float, units: str, item: str, source: str
) -> tuple[float | None, float | None]:
    """(angular mrad, reciprocal 1/Å) from a detector pixel size and its unit."""
    u = units.strip().lower()
    if u in ("pixels", "pixel", "px", "", "unknown"):
        return None, None
    if u == "mrad":
        return float(value), None
    if u == "rad":
        return float(value) * 1e3, None
    if u in _RECIPROCAL_TO_INVA:
        return None, float(value) * _RECIPROCAL_TO_INVA[u]
    raise InputError(f"{source}: unknown detector unit {units!r} of {item}")
