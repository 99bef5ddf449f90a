"""A calibrated 4D-STEM dataset (conventions §6): the in-memory model every reader returns.

:class:`STEMDataset` is what the reconstruction engine consumes.  Its fields are validated when
it is built, so an engine never sees a malformed dataset: wrong ranks, non-finite values,
non-positive energies or steps, and scan positions that do not match the scan are
:class:`~caviar_napari.errors.InputError` naming the file and the item.  Negative counts
(detector noise after dark subtraction) are clipped to zero with a logged warning.

Reading and writing files is :mod:`caviar_napari.io` (:mod:`caviar_napari.io.dataset` for the
conventions §6 HDF5 schema, :mod:`caviar_napari.io.readers` for every other format).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from caviar_napari.data.beam import wavelength_A
from caviar_napari.data.checks import finite_scalar, positive_pair, where
from caviar_napari.data.lazy import LazyIntensities, pattern_mean, read_patterns
from caviar_napari.errors import InputError

__all__ = ["STEMDataset", "regular_positions_A", "rotate_positions_A"]

log = logging.getLogger(__name__)


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


def rotate_positions_A(positions_A: np.ndarray, scan_rotation_deg: float) -> np.ndarray:
    """Scan-frame positions turned into the detector-aligned (object) frame (conventions §2).

    ``y' = y cos θ + x sin θ``, ``x' = x cos θ − y sin θ`` for θ = ``scan_rotation_deg``: the
    scan axes are rotated by +θ (from +x towards +y) relative to the detector axes.

    Parameters
    ----------
    positions_A
        ``(..., 2)`` positions ``(y, x)`` in Å, scan frame.
    scan_rotation_deg
        θ in degrees.

    Returns
    -------
    numpy.ndarray
        ``(..., 2)`` float64 positions in the object frame (a copy).
    """
    pos = np.asarray(positions_A, dtype=np.float64)
    theta = np.deg2rad(float(scan_rotation_deg))
    if theta == 0.0:
        return pos.copy()
    c, s = np.cos(theta), np.sin(theta)
    y, x = pos[..., 0], pos[..., 1]
    return np.stack([y * c + x * s, x * c - y * s], axis=-1)


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
    dose_e_per_A2
        Electron dose (e/Å²) when known: the intensities are then counts, or proportional to
        counts with ``dose × scan step area`` electrons per pattern (:meth:`counts_scale`).
    probe_initial
        Optional ``(mode, Ky, Kx)`` complex starting probe on this detector's grid, real space,
        centred (e.g. measured in vacuum by ``caviar calibrate``); the reconstruction starts
        from it instead of the aperture-and-defocus probe.
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
    dose_e_per_A2: float | None = None
    probe_initial: np.ndarray | None = None

    def __post_init__(self) -> None:
        src = self.source
        if isinstance(self.intensities, LazyIntensities):
            self._check_lazy()
            return
        data = np.asarray(self.intensities)
        if data.ndim != 4:
            raise InputError(
                f"{where(src)}'intensities' must have rank 4 (scan_y, scan_x, ky, kx), "
                f"got rank {data.ndim} with shape {data.shape}"
            )
        if not np.issubdtype(data.dtype, np.number) or np.iscomplexobj(data):
            raise InputError(f"{where(src)}'intensities' must be real numbers, got {data.dtype}")
        if min(data.shape) < 1:
            raise InputError(f"{where(src)}'intensities' is empty, shape {data.shape}")
        data = np.asarray(data, dtype=np.float32)
        finite = np.isfinite(data)
        if not finite.all():
            n_bad = int(data.size - np.count_nonzero(finite))
            first = tuple(int(i) for i in np.argwhere(~finite)[0])
            raise InputError(
                f"{where(src)}'intensities' contains {n_bad} non-finite value(s) (NaN or inf), "
                f"first at index {first}"
            )
        negative = data < 0
        n_neg = int(np.count_nonzero(negative))
        if n_neg:
            if not data.flags.writeable or data is self.intensities:
                data = data.copy()
            log.warning(
                "%s'intensities' has %d negative value(s) (min %.4g); clipped to 0",
                where(src),
                n_neg,
                float(data.min()),
            )
            np.maximum(data, 0, out=data)
        if not np.any(data > 0):
            raise InputError(f"{where(src)}'intensities' are all zero")
        self.intensities = data
        self._check_calibration()

    def _check_lazy(self) -> None:
        """A dataset left in its file: shape now, values as they are read (data.lazy)."""
        shape = tuple(self.intensities.shape)
        if len(shape) != 4 or min(shape) < 1:
            raise InputError(
                f"{where(self.source)}'intensities' must have rank 4 (scan_y, scan_x, ky, kx), "
                f"got shape {shape}"
            )
        self._check_calibration()

    def _check_calibration(self) -> None:
        src = self.source
        data = self.intensities
        self.energy_eV = finite_scalar(self.energy_eV, "energy_eV", src, positive=True)
        self.convergence_semiangle_mrad = finite_scalar(
            self.convergence_semiangle_mrad, "convergence_semiangle_mrad", src, positive=True
        )
        self.scan_step_A = positive_pair(self.scan_step_A, "scan_step_A", src)
        self.angular_sampling_mrad = positive_pair(
            self.angular_sampling_mrad, "angular_sampling_mrad", src
        )
        self.defocus_A = finite_scalar(self.defocus_A, "defocus_A", src)
        self.scan_rotation_deg = finite_scalar(self.scan_rotation_deg, "scan_rotation_deg", src)
        if self.probe_initial is not None:
            probe = np.asarray(self.probe_initial)
            if probe.ndim == 2:
                probe = probe[None]
            if probe.ndim != 3 or tuple(probe.shape[1:]) != data.shape[2:]:
                raise InputError(
                    f"{where(src)}'probe_initial' must be (mode, {data.shape[2]}, "
                    f"{data.shape[3]}) on the detector grid, got {probe.shape}"
                )
            self.probe_initial = probe.astype(np.complex128)
        if self.dose_e_per_A2 is not None:
            self.dose_e_per_A2 = finite_scalar(
                self.dose_e_per_A2, "dose_e_per_A2", src, positive=True
            )

        sy, sx = data.shape[:2]
        if self.positions_A is None:
            self.positions_A = regular_positions_A((sy, sx), self.scan_step_A)
        else:
            pos = np.asarray(self.positions_A, dtype=np.float64)
            if pos.shape != (sy, sx, 2):
                raise InputError(
                    f"{where(src)}'scan/positions_A' must have shape (scan_y, scan_x, 2) = "
                    f"({sy}, {sx}, 2) to match 'intensities' {data.shape}, got {pos.shape}"
                )
            if not np.all(np.isfinite(pos)):
                raise InputError(f"{where(src)}'scan/positions_A' contains non-finite values")
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
        return float(pattern_mean(self.intensities).sum())

    @property
    def integer_valued(self) -> bool:
        """Whether the intensities are whole numbers (counts), judged on up to 64 patterns."""
        n = self.scan_shape[0] * self.scan_shape[1]
        sample = read_patterns(self.intensities, np.arange(0, n, max(1, n // 64))[:64])
        return bool(np.all(sample == np.round(sample)))

    @property
    def is_counts(self) -> bool:
        """Whether the intensities are electron counts (whole numbers, or a dose is known)."""
        return self.dose_e_per_A2 is not None or self.integer_valued

    def counts_scale(self) -> float:
        """Factor that turns the intensities into expected electron counts.

        1 for whole-number intensities; ``dose × dy dx / mean total`` when a dose is known and
        the intensities are in other units; 1 (no counts known) otherwise.
        """
        if self.dose_e_per_A2 is None or self.integer_valued:
            return 1.0
        electrons = self.dose_e_per_A2 * self.scan_step_A[0] * self.scan_step_A[1]
        return electrons / self.mean_total_intensity

    def rotated_positions_A(self) -> np.ndarray:
        """Probe positions in the detector-aligned (object) frame, ``(Sy, Sx, 2)`` in Å.

        Sign convention: the scan frame is rotated by ``+scan_rotation_deg`` (counter-clockwise
        for y pointing up, x right; i.e. from +x towards +y) relative to the detector axes, so a
        scan-frame position ``r = (y, x)`` sits in the detector frame at ``R(θ) r`` with
        ``y' = y cos θ + x sin θ`` and ``x' = x cos θ − y sin θ``. With θ = 0 (the default) the
        two frames coincide.
        """
        return rotate_positions_A(self.positions_A, self.scan_rotation_deg)
