"""4D-STEM datasets: the in-memory model and the conventions §6 HDF5 schema.

:class:`STEMDataset` is what every reader returns and what the reconstruction engine consumes.
Its fields are validated when it is built, so an engine never sees a malformed dataset:
wrong ranks, non-finite values, non-positive energies or steps, and scan positions that do not
match the scan are :class:`~caviar_napari.errors.InputError` naming the file and the item.
Negative counts (detector noise after dark subtraction) are clipped to zero with a logged warning.

HDF5 schema (conventions §6)::

    /intensities              (scan_y, scan_x, ky, kx) real, zero angle at [Ky//2, Kx//2]
    /scan/positions_A         optional (scan_y, scan_x, 2) as (y, x), Å
    attrs energy_eV, convergence_semiangle_mrad, scan_step_A (scalar or (dy, dx)),
          angular_sampling_mrad (scalar or (dky, dkx)) or reciprocal_sampling_invA,
          defocus_A (optional, Δf = −C10, default 0), scan_rotation_deg (optional, default 0)
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
from numpy.typing import ArrayLike

from caviar_napari.core.optics import wavelength_A
from caviar_napari.errors import InputError
from caviar_napari.io.atomic import atomic_h5

log = logging.getLogger(__name__)

#: Relative tolerance for ``angular_sampling_mrad`` vs ``reciprocal_sampling_invA`` agreement.
CALIBRATION_RTOL = 1e-3

_REQUIRED_ATTRS = ("energy_eV", "convergence_semiangle_mrad", "scan_step_A")


def _where(source: str) -> str:
    return f"{source}: " if source else ""


def _positive_pair(value: ArrayLike, item: str, source: str) -> tuple[float, float]:
    """Return ``value`` (scalar or pair) as a ``(y, x)`` pair of finite positive floats."""
    try:
        arr = np.asarray(value, dtype=float).ravel()
    except (TypeError, ValueError) as exc:
        raise InputError(f"{_where(source)}'{item}' must be numeric, got {value!r}") from exc
    if arr.size == 1:
        arr = np.repeat(arr, 2)
    if arr.size != 2:
        raise InputError(
            f"{_where(source)}'{item}' must be a scalar or a (y, x) pair, "
            f"got {arr.size} values {arr.tolist()}"
        )
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise InputError(
            f"{_where(source)}'{item}' must be finite and positive, got {arr.tolist()}"
        )
    return float(arr[0]), float(arr[1])


def _finite_scalar(value: ArrayLike, item: str, source: str, *, positive: bool = False) -> float:
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{_where(source)}'{item}' must be numeric, got {value!r}") from exc
    if arr.size != 1:
        raise InputError(f"{_where(source)}'{item}' must be a scalar, got shape {arr.shape}")
    v = float(arr.ravel()[0])
    if not np.isfinite(v):
        raise InputError(f"{_where(source)}'{item}' must be finite, got {v}")
    if positive and v <= 0:
        raise InputError(f"{_where(source)}'{item}' must be positive, got {v}")
    return v


def regular_positions_A(
    scan_shape: tuple[int, int], scan_step_A: tuple[float, float]
) -> np.ndarray:
    """Regular raster of probe positions starting at ``(0, 0)``.

    Parameters
    ----------
    scan_shape
        ``(Sy, Sx)`` number of scan points.
    scan_step_A
        ``(dy, dx)`` step in Å.

    Returns
    -------
    numpy.ndarray
        ``(Sy, Sx, 2)`` float64 positions ``(y, x)`` in Å: ``[iy, ix] -> (iy*dy, ix*dx)``.
    """
    sy, sx = scan_shape
    iy, ix = np.meshgrid(np.arange(sy), np.arange(sx), indexing="ij")
    return np.stack([iy * scan_step_A[0], ix * scan_step_A[1]], axis=-1).astype(np.float64)


@dataclass
class STEMDataset:
    """A calibrated 4D-STEM dataset (conventions §6), validated on construction.

    Attributes
    ----------
    intensities
        ``(Sy, Sx, Ky, Kx)`` float32 diffraction patterns as stored: fft-shifted, zero scattering
        angle at pixel ``[Ky//2, Kx//2]``; any units (counts, probabilities). Negative values are
        clipped to 0 with a warning.
    energy_eV
        Beam energy (eV), > 0.
    convergence_semiangle_mrad
        Probe-forming aperture semi-angle α (mrad), > 0.
    scan_step_A
        ``(dy, dx)`` scan step (Å); a scalar is accepted and used for both axes.
    angular_sampling_mrad
        ``(dky, dkx)`` detector pixel size (mrad); a scalar is accepted.
    defocus_A
        Probe defocus Δf = −C10 (Å); positive = underfocus (crossover below the entrance surface).
    scan_rotation_deg
        Rotation of the scan axes relative to the detector axes (degrees), see
        :meth:`rotated_positions_A`.
    positions_A
        ``(Sy, Sx, 2)`` probe positions ``(y, x)`` in Å in the scan frame; ``None`` builds the
        regular grid from ``scan_step_A`` starting at ``(0, 0)``.
    source
        Name of the file the data came from (used in error messages and recorded in outputs).
    """

    intensities: np.ndarray
    energy_eV: float
    convergence_semiangle_mrad: float
    scan_step_A: tuple[float, float]
    angular_sampling_mrad: tuple[float, float]
    defocus_A: float = 0.0
    scan_rotation_deg: float = 0.0
    positions_A: np.ndarray | None = None
    source: str = field(default="")

    def __post_init__(self) -> None:
        src = self.source
        data = np.asarray(self.intensities)
        if data.ndim != 4:
            raise InputError(
                f"{_where(src)}'intensities' must have rank 4 (scan_y, scan_x, ky, kx), "
                f"got rank {data.ndim} with shape {data.shape}"
            )
        if not np.issubdtype(data.dtype, np.number) or np.iscomplexobj(data):
            raise InputError(f"{_where(src)}'intensities' must be real numbers, got {data.dtype}")
        if min(data.shape) < 1:
            raise InputError(f"{_where(src)}'intensities' is empty, shape {data.shape}")
        data = np.asarray(data, dtype=np.float32)
        finite = np.isfinite(data)
        if not finite.all():
            n_bad = int(data.size - np.count_nonzero(finite))
            first = tuple(int(i) for i in np.argwhere(~finite)[0])
            raise InputError(
                f"{_where(src)}'intensities' contains {n_bad} non-finite value(s) (NaN or inf), "
                f"first at index {first}"
            )
        negative = data < 0
        n_neg = int(np.count_nonzero(negative))
        if n_neg:
            if not data.flags.writeable or data is self.intensities:
                data = data.copy()
            log.warning(
                "%s'intensities' has %d negative value(s) (min %.4g); clipped to 0",
                _where(src),
                n_neg,
                float(data.min()),
            )
            np.maximum(data, 0, out=data)
        if not np.any(data > 0):
            raise InputError(f"{_where(src)}'intensities' are all zero")
        self.intensities = data

        self.energy_eV = _finite_scalar(self.energy_eV, "energy_eV", src, positive=True)
        self.convergence_semiangle_mrad = _finite_scalar(
            self.convergence_semiangle_mrad, "convergence_semiangle_mrad", src, positive=True
        )
        self.scan_step_A = _positive_pair(self.scan_step_A, "scan_step_A", src)
        self.angular_sampling_mrad = _positive_pair(
            self.angular_sampling_mrad, "angular_sampling_mrad", src
        )
        self.defocus_A = _finite_scalar(self.defocus_A, "defocus_A", src)
        self.scan_rotation_deg = _finite_scalar(self.scan_rotation_deg, "scan_rotation_deg", src)

        sy, sx = data.shape[:2]
        if self.positions_A is None:
            self.positions_A = regular_positions_A((sy, sx), self.scan_step_A)
        else:
            pos = np.asarray(self.positions_A, dtype=np.float64)
            if pos.shape != (sy, sx, 2):
                raise InputError(
                    f"{_where(src)}'scan/positions_A' must have shape (scan_y, scan_x, 2) = "
                    f"({sy}, {sx}, 2) to match 'intensities' {data.shape}, got {pos.shape}"
                )
            if not np.all(np.isfinite(pos)):
                raise InputError(f"{_where(src)}'scan/positions_A' contains non-finite values")
            self.positions_A = pos

    # ------------------------------------------------------------------ derived quantities
    @property
    def scan_shape(self) -> tuple[int, int]:
        """``(Sy, Sx)`` number of scan points."""
        return int(self.intensities.shape[0]), int(self.intensities.shape[1])

    @property
    def detector_shape(self) -> tuple[int, int]:
        """``(Ky, Kx)`` detector pixels."""
        return int(self.intensities.shape[2]), int(self.intensities.shape[3])

    @property
    def wavelength_A(self) -> float:
        """Relativistic electron wavelength λ (Å) at ``energy_eV``."""
        return float(wavelength_A(self.energy_eV))

    @property
    def reciprocal_sampling_invA(self) -> tuple[float, float]:
        """``(dky, dkx)`` detector pixel in spatial frequency (1/Å): angle / λ."""
        lam = self.wavelength_A
        return (
            self.angular_sampling_mrad[0] * 1e-3 / lam,
            self.angular_sampling_mrad[1] * 1e-3 / lam,
        )

    @property
    def pixel_size_A(self) -> tuple[float, float]:
        """``(dy, dx)`` real-space pixel of the reconstruction: ``1 / (K * dk)`` (Å)."""
        dk = self.reciprocal_sampling_invA
        ky, kx = self.detector_shape
        return 1.0 / (ky * dk[0]), 1.0 / (kx * dk[1])

    @property
    def mean_total_intensity(self) -> float:
        """Mean over scan positions of the total intensity of a pattern (data units)."""
        return float(self.intensities.sum(axis=(2, 3), dtype=np.float64).mean())

    def rotated_positions_A(self) -> np.ndarray:
        """Probe positions in the detector-aligned (object) frame, ``(Sy, Sx, 2)`` in Å.

        Sign convention: the scan frame is rotated by ``+scan_rotation_deg`` (counter-clockwise
        for y pointing up, x right; i.e. from +x towards +y) relative to the detector axes, so a
        scan-frame position ``r = (y, x)`` sits in the detector frame at ``R(θ) r`` with
        ``y' = y cos θ + x sin θ`` and ``x' = x cos θ − y sin θ``. With θ = 0 (the default) the
        two frames coincide.
        """
        pos = np.asarray(self.positions_A, dtype=np.float64)
        theta = np.deg2rad(self.scan_rotation_deg)
        if theta == 0.0:
            return pos.copy()
        c, s = np.cos(theta), np.sin(theta)
        y, x = pos[..., 0], pos[..., 1]
        return np.stack([y * c + x * s, x * c - y * s], axis=-1)


# ---------------------------------------------------------------------------------- reading
def _read_attr(f: h5py.File, name: str, path: str) -> np.ndarray:
    if name not in f.attrs:
        raise InputError(f"{path}: missing attribute '{name}' (conventions §6)")
    return np.asarray(f.attrs[name])


def _angular_sampling(f: h5py.File, path: str, energy_eV: float) -> tuple[float, float]:
    has_ang = "angular_sampling_mrad" in f.attrs
    has_rec = "reciprocal_sampling_invA" in f.attrs
    if not has_ang and not has_rec:
        raise InputError(
            f"{path}: missing attribute 'angular_sampling_mrad' "
            "(or 'reciprocal_sampling_invA' instead)"
        )
    ang = rec_as_ang = None
    if has_ang:
        ang = _positive_pair(f.attrs["angular_sampling_mrad"], "angular_sampling_mrad", path)
    if has_rec:
        lam = float(wavelength_A(energy_eV))
        rec = _positive_pair(f.attrs["reciprocal_sampling_invA"], "reciprocal_sampling_invA", path)
        rec_as_ang = (rec[0] * lam * 1e3, rec[1] * lam * 1e3)
    if ang is not None and rec_as_ang is not None:
        if not np.allclose(ang, rec_as_ang, rtol=CALIBRATION_RTOL, atol=0):
            raise InputError(
                f"{path}: inconsistent calibration: 'angular_sampling_mrad' = {list(ang)} mrad but "
                f"'reciprocal_sampling_invA' = {list(rec)} 1/Å corresponds to "
                f"{[round(v, 6) for v in rec_as_ang]} mrad at {energy_eV:g} eV"
            )
    return ang if ang is not None else rec_as_ang  # type: ignore[return-value]


def read_stem_h5(path: str | os.PathLike) -> STEMDataset:
    """Read and validate a conventions §6 4D-STEM HDF5 file.

    Parameters
    ----------
    path
        File to read.

    Returns
    -------
    STEMDataset
        The validated dataset, ``source`` set to the file name.

    Raises
    ------
    InputError
        The file is missing, not HDF5, or an item is missing or inconsistent (the message names
        the file and the item).
    """
    p = Path(path)
    name = str(p)
    if not p.exists():
        raise InputError(f"{name}: file not found")
    if not p.is_file():
        raise InputError(f"{name}: not a regular file")
    try:
        f = h5py.File(p, "r")
    except OSError as exc:
        raise InputError(f"{name}: cannot be read as an HDF5 file ({exc})") from exc
    with f:
        if "intensities" not in f:
            raise InputError(f"{name}: missing dataset 'intensities' (conventions §6)")
        dset = f["intensities"]
        if not isinstance(dset, h5py.Dataset):
            raise InputError(f"{name}: 'intensities' must be a dataset, not a group")
        if dset.ndim != 4:
            raise InputError(
                f"{name}: 'intensities' must have rank 4 (scan_y, scan_x, ky, kx), "
                f"got rank {dset.ndim} with shape {dset.shape}"
            )
        for attr in _REQUIRED_ATTRS:
            _read_attr(f, attr, name)
        energy = _finite_scalar(f.attrs["energy_eV"], "energy_eV", name, positive=True)
        angular = _angular_sampling(f, name, energy)
        positions = None
        if "scan" in f and "positions_A" in f["scan"]:
            positions = np.asarray(f["scan/positions_A"][()])
        try:
            intensities = dset.astype(np.float32)[()]
        except (OSError, TypeError, ValueError) as exc:
            raise InputError(
                f"{name}: 'intensities' cannot be read as real numbers ({exc})"
            ) from exc
        return STEMDataset(
            intensities=intensities,
            energy_eV=energy,
            convergence_semiangle_mrad=f.attrs["convergence_semiangle_mrad"],
            scan_step_A=f.attrs["scan_step_A"],
            angular_sampling_mrad=angular,
            defocus_A=f.attrs.get("defocus_A", 0.0),
            scan_rotation_deg=f.attrs.get("scan_rotation_deg", 0.0),
            positions_A=positions,
            source=p.name,
        )


# ---------------------------------------------------------------------------------- writing
def write_stem_h5(
    path: str | os.PathLike,
    dataset: STEMDataset,
    extra: Callable[[h5py.File], None] | None = None,
) -> None:
    """Write ``dataset`` to ``path`` in the conventions §6 schema, atomically.

    Parameters
    ----------
    path
        Output file; it appears only once completely written.
    dataset
        The dataset to store (intensities as float32, positions always written).
    extra
        Optional callback ``extra(h5file)`` that adds more groups (e.g. ``ground_truth``) inside
        the same atomic write.
    """
    with atomic_h5(path) as f:
        chunks = (1, 1, *dataset.detector_shape)
        f.create_dataset(
            "intensities", data=np.asarray(dataset.intensities, dtype=np.float32), chunks=chunks
        )
        f.create_dataset("scan/positions_A", data=np.asarray(dataset.positions_A, dtype=np.float64))
        f.attrs["energy_eV"] = float(dataset.energy_eV)
        f.attrs["convergence_semiangle_mrad"] = float(dataset.convergence_semiangle_mrad)
        f.attrs["scan_step_A"] = np.asarray(dataset.scan_step_A, dtype=np.float64)
        f.attrs["angular_sampling_mrad"] = np.asarray(
            dataset.angular_sampling_mrad, dtype=np.float64
        )
        f.attrs["defocus_A"] = float(dataset.defocus_A)
        f.attrs["scan_rotation_deg"] = float(dataset.scan_rotation_deg)
        if extra is not None:
            extra(f)
