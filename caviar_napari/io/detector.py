"""Stored detector frames → the project's ``(ky, kx)`` frame: transpose, centre, crop, bin.

Every reader turns the stored patterns into conventions §2 patterns with one
:class:`DetectorGeometry`, applied block by block while the file is read
(:func:`read_patterns`), so a large file is never held twice in memory and never converted
whole: only the output (after cropping and binning) is allocated.

The steps, in this order (conventions §2, §6):

1. **Transpose** (``transposed``; a py4DSTEM ``QR_flip``, a ``detector_transposed`` attribute):
   the stored ``(a, b)`` detector axes are ``(kx, ky)``; they are swapped, and so are the
   detector samplings.
2. **Centre** (``centre_px``, optional ``descan_px_per_A``): the zero scattering angle (the
   bright-field disc's centre) of the pattern at scan position ``r`` (scan frame, Å, relative
   to the first scan point) is at pixel ``c(r) = centre_px + descan_px_per_A @ r`` of the
   transposed frame.  Each pattern is cut to a window whose pixel ``[W//2]`` is
   ``round(c(r))``: integer pixel moves only, so counts are never interpolated; the residual
   (< 0.5 px) is a beam tilt that the probe absorbs.  The window is the largest that fits the
   detector for every position.
3. **Crop** (``crop``): at most ``(Wy, Wx)`` stored pixels around the zero angle.
4. **Bin** (``bin``): sums ``b × b`` pixels (counts are kept).  The zero angle stays in the
   centre bin ``[Wb//2]``; for odd ``b`` at its centre, for even ``b`` half a stored pixel
   (``1/(2b)`` of a binned pixel) before it.

Without a centre the zero angle is the stored ``[Ky//2, Kx//2]`` (conventions §2).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from caviar_napari.errors import InputError

__all__ = ["DetectorGeometry", "read_patterns"]

#: Size of a block of patterns read at once (bytes of the stored data).
BLOCK_BYTES = 64 * 2**20


def _pair_int(value: Any, name: str) -> tuple[int, int] | None:
    if value is None:
        return None
    arr = np.ravel(np.asarray(value))
    if arr.size == 1:
        arr = np.repeat(arr, 2)
    if arr.size != 2 or not np.all(np.isfinite(arr.astype(float))) or np.any(arr < 1):
        raise InputError(f"{name} must be one or two integers ≥ 1, got {value!r}")
    if np.any(arr.astype(float) != np.round(arr.astype(float))):
        raise InputError(f"{name} must be whole pixels, got {value!r}")
    return int(arr[0]), int(arr[1])


@dataclass(frozen=True)
class DetectorGeometry:
    """How the stored detector frame becomes the conventions §2 ``(ky, kx)`` frame.

    Attributes
    ----------
    transposed
        The stored detector axes are ``(kx, ky)`` (swap them first).
    centre_px
        ``(ky, kx)`` pixel of the zero scattering angle at the first scan point, in the
        transposed frame; None: ``[Ky//2, Kx//2]``.
    descan_px_per_A
        ``(2, 2)`` matrix: the centre moves by ``descan_px_per_A @ r`` pixels at scan position
        ``r = (y, x)`` Å (scan frame, from the first scan point); None: no descan.
    crop
        ``(Wy, Wx)`` largest window (stored pixels) around the zero angle; None: the largest
        that fits.
    bin
        Detector binning factor (≥ 1).
    """

    transposed: bool = False
    centre_px: tuple[float, float] | None = None
    descan_px_per_A: np.ndarray | None = None
    crop: tuple[int, int] | None = None
    bin: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "transposed", bool(self.transposed))
        if self.centre_px is not None:
            c = np.ravel(np.asarray(self.centre_px, dtype=float))
            if c.size != 2 or not np.all(np.isfinite(c)):
                raise InputError(f"pattern centre must be a finite (ky, kx) pair, got {c}")
            object.__setattr__(self, "centre_px", (float(c[0]), float(c[1])))
        if self.descan_px_per_A is not None:
            g = np.asarray(self.descan_px_per_A, dtype=float)
            if g.shape != (2, 2) or not np.all(np.isfinite(g)):
                raise InputError(f"descan_px_per_A must be a finite 2 × 2 matrix, got {g}")
            object.__setattr__(self, "descan_px_per_A", g)
        object.__setattr__(self, "crop", _pair_int(self.crop, "detector crop"))
        b = self.bin
        if isinstance(b, bool) or not isinstance(b, (int, np.integer)) or b < 1:
            raise InputError(f"detector binning must be an integer ≥ 1, got {b!r}")
        object.__setattr__(self, "bin", int(b))

    @property
    def is_identity(self) -> bool:
        """Whether the stored patterns are already in the project's frame."""
        return (
            not self.transposed
            and self.centre_px is None
            and self.descan_px_per_A is None
            and self.crop is None
            and self.bin == 1
        )

    def angular_sampling(self, stored: Sequence[float]) -> tuple[float, float]:
        """``(dky, dkx)`` of the output from the stored axes' samplings."""
        a, b = float(stored[0]), float(stored[-1])
        if self.transposed:
            a, b = b, a
        return a * self.bin, b * self.bin

    def zero_angle_px(self, detector_shape: tuple[int, int], positions_A: np.ndarray) -> np.ndarray:
        """``(Sy, Sx, 2)`` integer pixel (transposed frame) of the zero angle per pattern."""
        ky, kx = detector_shape
        pos = np.asarray(positions_A, dtype=float)
        if self.centre_px is None:
            centre = np.broadcast_to(np.array([ky // 2, kx // 2], float), pos.shape).copy()
        else:
            centre = np.broadcast_to(np.asarray(self.centre_px), pos.shape).copy()
        if self.descan_px_per_A is not None:
            rel = pos - pos[0, 0]
            centre = centre + rel @ self.descan_px_per_A.T
        # round half away from zero, deterministically
        return np.floor(centre + 0.5).astype(np.int64)

    def windows(
        self, detector_shape: tuple[int, int], positions_A: np.ndarray
    ) -> tuple[np.ndarray, tuple[int, int]]:
        """Per-pattern window start (transposed frame, stored pixels) and the output shape.

        Returns
        -------
        starts
            ``(Sy, Sx, 2)`` int64 top-left pixel of each pattern's window.
        shape
            ``(Wy, Wx)`` output pixels (after binning).

        Raises
        ------
        InputError
            The centre lies so near the detector's edge that no window fits.
        """
        z = self.zero_angle_px(detector_shape, positions_A)
        b = self.bin
        sub = (b - 1) // 2
        starts = np.empty_like(z)
        out = []
        for a in range(2):
            k = detector_shape[a]
            lo, hi = int(z[..., a].min()), int(z[..., a].max())
            limit = k // b if self.crop is None else min(k, self.crop[a]) // b
            wb = limit
            while wb >= 1:
                m = wb // 2
                if lo - sub - m * b >= 0 and hi - sub + (wb - m) * b <= k:
                    break
                wb -= 1
            if wb < 2:
                raise InputError(
                    f"the pattern centre (pixel {lo}…{hi} along detector axis {a} of {k}) is "
                    "at the detector's edge: no window around it fits"
                )
            starts[..., a] = z[..., a] - sub - (wb // 2) * b
            out.append(wb)
        return starts, (out[0], out[1])

    def output_shape(
        self, detector_shape: tuple[int, int], positions_A: np.ndarray
    ) -> tuple[int, int]:
        """``(Ky', Kx')`` of the output patterns."""
        return self.windows(self._transposed_shape(detector_shape), positions_A)[1]

    def _transposed_shape(self, stored: tuple[int, int]) -> tuple[int, int]:
        return (stored[1], stored[0]) if self.transposed else (stored[0], stored[1])


def _block_rows(shape: tuple[int, ...], itemsize: int) -> int:
    row = int(np.prod(shape[1:])) * itemsize
    return max(1, min(shape[0], BLOCK_BYTES // max(row, 1)))


def read_patterns(
    source: Any, geometry: DetectorGeometry, positions_A: np.ndarray | None = None
) -> np.ndarray:
    """Read ``(Sy, Sx, Ky, Kx)`` stored patterns into the project's frame, block by block.

    Parameters
    ----------
    source
        The stored data: anything with ``shape``, ``dtype`` and basic slicing of its first
        axis (numpy array or memory map, ``h5py.Dataset``, dask array).
    geometry
        What to do with the detector axes (see the module docstring).
    positions_A
        ``(Sy, Sx, 2)`` scan-frame positions (needed with a descan); default a unit raster.

    Returns
    -------
    numpy.ndarray
        ``(Sy, Sx, Ky', Kx')`` float32.  With the identity geometry, a float32 numpy
        ``source`` (e.g. a memory map) is returned as it is, without a copy.
    """
    shape = tuple(int(n) for n in source.shape)
    if len(shape) != 4:
        raise InputError(f"the data must have rank 4 (scan_y, scan_x, ky, kx), got shape {shape}")
    if geometry.is_identity and isinstance(source, np.ndarray) and source.dtype == np.float32:
        return source
    sy, sx = shape[:2]
    if positions_A is None:
        iy, ix = np.meshgrid(np.arange(sy), np.arange(sx), indexing="ij")
        positions_A = np.stack([iy, ix], axis=-1).astype(float)
    det = geometry._transposed_shape((shape[2], shape[3]))
    starts, (wy, wx) = geometry.windows(det, positions_A)
    b = geometry.bin
    out = np.empty((sy, sx, wy, wx), dtype=np.float32)
    uniform = bool(np.all(starts == starts[0, 0]))
    rows = _block_rows(shape, np.dtype(source.dtype).itemsize)
    for r0 in range(0, sy, rows):
        r1 = min(sy, r0 + rows)
        block = np.asarray(source[r0:r1])
        if geometry.transposed:
            block = block.swapaxes(-1, -2)
        if uniform:
            y0, x0 = (int(v) for v in starts[0, 0])
            win = block[..., y0 : y0 + wy * b, x0 : x0 + wx * b]
        else:
            win = np.empty((r1 - r0, sx, wy * b, wx * b), dtype=block.dtype)
            for i in range(r1 - r0):
                for j in range(sx):
                    y0, x0 = (int(v) for v in starts[r0 + i, j])
                    win[i, j] = block[i, j, y0 : y0 + wy * b, x0 : x0 + wx * b]
        win = win.astype(np.float32, copy=False)
        if b > 1:
            win = win.reshape(r1 - r0, sx, wy, b, wx, b).sum(axis=(3, 5), dtype=np.float32)
        out[r0:r1] = win
    return out


def describe(geometry: DetectorGeometry) -> str:
    """One line saying what the geometry does (for logs and summaries)."""
    parts = []
    if geometry.transposed:
        parts.append("ky↔kx transposed")
    if geometry.centre_px is not None:
        parts.append(f"centred on ({geometry.centre_px[0]:.2f}, {geometry.centre_px[1]:.2f}) px")
    if geometry.descan_px_per_A is not None:
        g = geometry.descan_px_per_A
        parts.append(f"descan {math.hypot(*g[:, 0]):.3g}/{math.hypot(*g[:, 1]):.3g} px/Å")
    if geometry.crop is not None:
        parts.append(f"cropped to {geometry.crop[0]}×{geometry.crop[1]}")
    if geometry.bin > 1:
        parts.append(f"binned {geometry.bin}×{geometry.bin}")
    return ", ".join(parts) if parts else "as stored"
