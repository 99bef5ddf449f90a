"""The conventions §6 4D-STEM HDF5 file: read and write :class:`STEMDataset`.

:class:`~caviar_napari.data.dataset.STEMDataset` itself lives in the data layer; it is
re-exported here for the code that imports it from this module.

HDF5 schema (conventions §6)::

    /intensities              (scan_y, scan_x, ky, kx) real, zero angle at [Ky//2, Kx//2]
    /scan/positions_A         optional (scan_y, scan_x, 2) as (y, x), Å
    /probe_initial            optional (mode, Ky', Kx') complex, real space, centred: a
                              measured starting probe (see below)
    attrs energy_eV, convergence_semiangle_mrad, scan_step_A (scalar or (dy, dx)),
          angular_sampling_mrad (scalar or (dky, dkx)) or reciprocal_sampling_invA,
          defocus_A (optional, Δf = −C10, default 0), scan_rotation_deg (optional, default 0)
    detector attrs (optional; written by ``caviar calibrate``), all in the *stored* axis order:
          detector_transposed   bool: the stored axes are (kx, ky); swapped on read, with the
                                angular samplings
          pattern_centre_px     (2,) pixel of the zero angle at the first scan point
          descan_px_per_A       (2, 2) centre shift per Å of scan position (scan frame)

The detector attributes are applied on read, in one place (:mod:`caviar_napari.io.detector`):
transpose, then cut every pattern to a window centred on its zero angle (integer pixels), then
the reader's optional crop and binning.  The patterns of the returned dataset are always in the
conventions §2 frame (zero angle at ``[Ky'//2, Kx'//2]``, ky ∥ scan y before the rotation).

``probe_initial`` is on the detector grid *after* these steps (``Ky' × Kx'``, the probe window
of an unpadded reconstruction), as ``ifft2(ψ(k))`` with ``norm="ortho"`` shifted so that the lens
axis is at ``[Ky'//2, Kx'//2]`` (as :func:`caviar_napari.core.optics.make_probe`), scaled so
that ``Σ|ψ|²`` is the data's mean total intensity per pattern.  :func:`read_probe_initial`
returns it.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from caviar_napari.data.beam import wavelength_A
from caviar_napari.data.checks import finite_scalar, positive_pair
from caviar_napari.data.dataset import STEMDataset, regular_positions_A
from caviar_napari.data.lazy import LazyIntensities
from caviar_napari.errors import InputError
from caviar_napari.io._h5util import get_dataset, open_h5, read_attr
from caviar_napari.io.atomic import atomic_h5
from caviar_napari.io.detector import DetectorGeometry, read_patterns

log = logging.getLogger(__name__)

__all__ = [
    "CALIBRATION_RTOL",
    "DETECTOR_ATTRS",
    "H5Intensities",
    "STEMDataset",
    "detector_geometry",
    "geometry_attrs",
    "read_probe_initial",
    "stem_h5_nbytes",
    "read_stem_h5",
    "regular_positions_A",
    "write_stem_h5",
]

#: Relative tolerance for ``angular_sampling_mrad`` vs ``reciprocal_sampling_invA`` agreement.
CALIBRATION_RTOL = 1e-3

_REQUIRED_ATTRS = ("energy_eV", "convergence_semiangle_mrad", "scan_step_A")
#: Appended to the message of a missing item.
_HINT = " (conventions §6)"


# ---------------------------------------------------------------------------------- reading
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
        ang = positive_pair(f.attrs["angular_sampling_mrad"], "angular_sampling_mrad", path)
    if has_rec:
        lam = float(wavelength_A(energy_eV))
        rec = positive_pair(f.attrs["reciprocal_sampling_invA"], "reciprocal_sampling_invA", path)
        rec_as_ang = (rec[0] * lam * 1e3, rec[1] * lam * 1e3)
    if ang is not None and rec_as_ang is not None:
        if not np.allclose(ang, rec_as_ang, rtol=CALIBRATION_RTOL, atol=0):
            raise InputError(
                f"{path}: inconsistent calibration: 'angular_sampling_mrad' = {list(ang)} mrad but "
                f"'reciprocal_sampling_invA' = {list(rec)} 1/Å corresponds to "
                f"{[round(v, 6) for v in rec_as_ang]} mrad at {energy_eV:g} eV"
            )
    return ang if ang is not None else rec_as_ang  # type: ignore[return-value]


#: Detector attributes of a conventions §6 file (stored axis order), see the module docstring.
DETECTOR_ATTRS = ("detector_transposed", "pattern_centre_px", "descan_px_per_A")


def detector_geometry(
    attrs: Any,
    source: str,
    *,
    crop: tuple[int, int] | int | None = None,
    bin: int = 1,
    transposed: bool | None = None,
) -> DetectorGeometry:
    """The :class:`DetectorGeometry` of a file's detector attributes (stored axis order).

    Parameters
    ----------
    attrs
        Mapping holding the :data:`DETECTOR_ATTRS` that are present.
    source
        Named in error messages.
    crop, bin
        The reader's options.
    transposed
        Overrides ``detector_transposed`` when given (py4DSTEM's ``QR_flip``).
    """
    flip = bool(np.asarray(attrs.get("detector_transposed", False)))
    if transposed is not None:
        flip = bool(transposed)
    centre = attrs.get("pattern_centre_px")
    descan = attrs.get("descan_px_per_A")
    try:
        if centre is not None:
            centre = np.ravel(np.asarray(centre, dtype=float))
            if centre.size != 2:
                raise ValueError(f"shape {centre.shape}")
            if flip:
                centre = centre[::-1]
        if descan is not None:
            descan = np.asarray(descan, dtype=float)
            if descan.shape != (2, 2):
                raise ValueError(f"shape {descan.shape}")
            if flip:
                descan = descan[::-1]
        return DetectorGeometry(
            transposed=flip, centre_px=centre, descan_px_per_A=descan, crop=crop, bin=bin
        )
    except (TypeError, ValueError, InputError) as exc:
        raise InputError(f"{source}: invalid detector attributes ({exc})") from exc


def geometry_attrs(geometry: DetectorGeometry) -> dict[str, Any]:
    """The :data:`DETECTOR_ATTRS` that store ``geometry`` (stored axis order; crop and bin are
    reader options, not attributes)."""
    out: dict[str, Any] = {"detector_transposed": bool(geometry.transposed)}
    flip = geometry.transposed
    if geometry.centre_px is not None:
        c = np.asarray(geometry.centre_px, dtype=np.float64)
        out["pattern_centre_px"] = c[::-1] if flip else c
    if geometry.descan_px_per_A is not None:
        g = np.asarray(geometry.descan_px_per_A, dtype=np.float64)
        out["descan_px_per_A"] = g[::-1] if flip else g
    return out


def read_probe_initial(path: str | os.PathLike) -> np.ndarray | None:
    """The file's ``probe_initial`` ``(mode, Ky', Kx')`` complex128 (module docstring), or None.

    Raises
    ------
    InputError
        The dataset is there but not finite complex of rank 2 or 3.
    """
    with open_h5(path) as f:
        return _probe_initial(f, str(path))


class H5Intensities(LazyIntensities):
    """The ``intensities`` of a conventions §6 HDF5 file, read pattern by pattern (out-of-core).

    The file is opened (read-only) at the first read and kept open by this process; the store
    pickles as its path and shape, so a distributed worker opens the file itself and reads its
    own patterns.  Reads go one scan row at a time (a contiguous run of flat indices), touching
    only the chunks that hold them.
    """

    def __init__(self, path: str | os.PathLike, shape: tuple[int, ...]) -> None:
        self.path = str(path)
        self.source = Path(path).name
        self.shape = tuple(int(v) for v in shape)  # type: ignore[assignment]
        self._lock = threading.Lock()
        self._file: h5py.File | None = None

    def _dataset(self) -> h5py.Dataset:
        if self._file is None:
            try:
                self._file = h5py.File(self.path, "r")
            except OSError as exc:
                raise InputError(f"{self.path}: cannot be read ({exc})") from exc
        return get_dataset(self._file, self.path, "intensities", hint=_HINT)

    def _read_sorted(self, flat: np.ndarray) -> np.ndarray:
        sx = self.shape[1]
        out = np.empty((flat.size, *self.shape[2:]), dtype=np.float32)
        rows = flat // sx
        with self._lock:  # one reader at a time (the model's batch threads share the store)
            dset = self._dataset()
            for iy in np.unique(rows):
                sel = rows == iy
                cols = flat[sel] - iy * sx
                block = dset[int(iy), int(cols[0]) : int(cols[-1]) + 1]
                out[sel] = block[cols - cols[0]]
        return out

    def close(self) -> None:
        """Close the file (reopened by the next read)."""
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def __reduce__(self) -> tuple:
        return (H5Intensities, (self.path, self.shape))


def stem_h5_nbytes(path: str | os.PathLike) -> int:
    """Bytes of a conventions §6 file's intensities as float32 (0 when it has none)."""
    with open_h5(Path(path)) as f:
        dset = f.get("intensities")
        return 0 if dset is None else int(np.prod(dset.shape)) * 4


def read_stem_h5(
    path: str | os.PathLike,
    *,
    crop: tuple[int, int] | int | None = None,
    bin: int = 1,
    lazy: bool = False,
) -> STEMDataset:
    """Read and validate a conventions §6 4D-STEM HDF5 file.

    The detector attributes are applied (module docstring): the returned patterns are in the
    conventions §2 frame.

    Parameters
    ----------
    path
        File to read.
    crop
        Optional largest detector window ``(Wy, Wx)`` (stored pixels) around the zero angle.
    bin
        Optional detector binning factor.
    lazy
        Leave the intensities in the file (:class:`H5Intensities`, read by pattern: out-of-core
        reconstruction); their values are checked as they are read. A file with detector
        attributes (transpose, centre, descan) or a crop/bin is read into memory instead, with
        a log message.

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
    with open_h5(p) as f:
        dset = get_dataset(f, name, "intensities", hint=_HINT)
        if dset.ndim != 4:
            raise InputError(
                f"{name}: 'intensities' must have rank 4 (scan_y, scan_x, ky, kx), "
                f"got rank {dset.ndim} with shape {dset.shape}"
            )
        for attr in _REQUIRED_ATTRS:
            read_attr(f, name, attr, hint=_HINT)
        energy = finite_scalar(f.attrs["energy_eV"], "energy_eV", name, positive=True)
        geometry = detector_geometry(f.attrs, name, crop=crop, bin=bin)
        angular = geometry.angular_sampling(_angular_sampling(f, name, energy))
        positions = None
        if "scan" in f and "positions_A" in f["scan"]:
            positions = np.asarray(f["scan/positions_A"][()])
        step = positive_pair(f.attrs["scan_step_A"], "scan_step_A", name)
        raster = (
            positions
            if positions is not None and positions.shape == (*dset.shape[:2], 2)
            else regular_positions_A(dset.shape[:2], step)
        )
        plain = (
            not geometry.transposed
            and geometry.centre_px is None
            and geometry.descan_px_per_A is None
            and geometry.crop is None
            and geometry.bin == 1
        )
        if lazy and not plain:
            log.info("%s: detector attributes or crop/bin: read into memory, not lazily", name)
        if lazy and plain:
            kind = np.empty(0, dset.dtype)
            if not np.issubdtype(dset.dtype, np.number) or np.iscomplexobj(kind):
                raise InputError(f"{name}: 'intensities' must be real numbers, got {dset.dtype}")
            intensities = H5Intensities(p, dset.shape)
        else:
            try:
                intensities = read_patterns(dset, geometry, raster)
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
            dose_e_per_A2=f.attrs.get("dose_e_per_A2"),
            probe_initial=_probe_initial(f, name),
        )


def _probe_initial(f: h5py.File, name: str) -> np.ndarray | None:
    """``probe_initial`` of an open file as complex128 ``(mode, Ky, Kx)``, or None."""
    if "probe_initial" not in f:
        return None
    probe = np.asarray(f["probe_initial"][()])
    if probe.ndim == 2:
        probe = probe[None]
    if probe.ndim != 3 or not np.iscomplexobj(probe) or not np.all(np.isfinite(probe)):
        raise InputError(
            f"{name}: 'probe_initial' must be finite complex (mode, Ky, Kx), got {probe.dtype} "
            f"{probe.shape}"
        )
    return probe.astype(np.complex128)


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
