"""Grids of a reconstruction derived from a dataset: probe window, detector padding and mask,
pixel size, scan positions in the object frame and the object grid.

* Detector data are padded (if needed) and ``ifftshift``-ed once into FFT order; the model works
  on amplitudes ``sqrt(I)``.
* The probe window is the detector. When more than :data:`PAD_TOLERANCE` of the mean pattern's
  intensity lies beyond the 2/3-Nyquist band limit of that window (the model's waves cannot
  reach it), the detector is zero-padded in reciprocal space to the smallest FFT-friendly even
  size whose band limit contains the data (``detector_padding: auto``); ``"NxM"`` pads to a
  given window and a number to a given pixel size (:mod:`caviar_napari.data.padding`). Padded
  pixels, and any measured pixel beyond the band limit, are excluded from the loss by the
  detector mask. The reconstruction pixel is ``1 / (K_padded · dk)``.
* Scan positions are rotated into the detector frame by ``scan_rotation_deg``
  (:meth:`STEMDataset.rotated_positions_A`: ``y' = y cos θ + x sin θ``,
  ``x' = x cos θ − y sin θ``); the object lives in that frame, which is the scan frame when
  θ = 0. The object grid covers every probe window (scan extent + half a window on each side)
  plus ``object_padding_px`` (rounded up to FFT-friendly sizes on the far side);
  ``object_origin_A`` is the position of pixel ``[0, 0]``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import scipy.fft

from caviar_napari.core import optics
from caviar_napari.core.optics import BAND_LIMIT
from caviar_napari.data.config import ReconstructionConfig
from caviar_napari.data.dataset import STEMDataset
from caviar_napari.data.lazy import pattern_mean
from caviar_napari.data.padding import padding_kind
from caviar_napari.errors import InputError

log = logging.getLogger(__name__)

__all__ = [
    "PAD_TOLERANCE",
    "Geometry",
    "masked_total",
    "measured_amplitudes",
    "padded_window",
    "plan_geometry",
    "resample_object",
    "resample_probe",
    "stage_padding",
]

#: Largest fraction of the mean pattern's intensity allowed beyond the band limit unpadded (and
#: left beyond the band limit of the padded window).  It must be far below the thermal diffuse
#: signal the object states are fitted to: on the hBN validation data (60 kV, 35 mrad, 300 K) the
#: whole incoherent part of the data is worth about 2e-7 of the loss, and with 1e-3 (84 × 48
#: unpadded, 2e-4 of the intensity beyond the band limit) the band-limited object could not
#: represent the data to better than 3e-6: the states then fitted that misfit instead of the
#: vibrations (docs/validation.md).
PAD_TOLERANCE = 1e-6


@dataclass(frozen=True)
class Geometry:
    """Grids of a reconstruction derived from a dataset.

    Attributes
    ----------
    window
        ``(Ky, Kx)`` probe window (the detector, possibly zero-padded).
    pad_offset
        ``(oy, ox)`` where the measured detector sits inside the (fft-shifted) window.
    pixel_size_A
        ``(dy, dx)`` object pixel, Å.
    detector_mask
        ``(Ky, Kx)`` bool, FFT order: pixels in the loss (measured and inside the band limit).
    positions_A
        ``(P, 2)`` probe positions in the object frame (rotated), Å.
    positions_px
        ``(P, 2)`` probe positions in object pixel coordinates.
    object_shape
        ``(H, W)``.
    object_origin_A
        ``(y, x)`` of pixel ``[0, 0]``, Å.
    """

    window: tuple[int, int]
    pad_offset: tuple[int, int]
    pixel_size_A: tuple[float, float]
    detector_mask: np.ndarray
    positions_A: np.ndarray
    positions_px: np.ndarray
    object_shape: tuple[int, int]
    object_origin_A: tuple[float, float]


def _fast_even(n: int) -> int:
    n = int(n)
    while True:
        m = scipy.fft.next_fast_len(n)
        if m % 2 == 0:
            return m
        n = m + 1


def padded_window(
    dataset: STEMDataset, padding: str | float, mean: np.ndarray | None = None
) -> tuple[int, int]:
    """``(Ky, Kx)`` probe window of ``dataset`` for a ``detector_padding`` value.

    ``mean`` is the mean pattern (:func:`caviar_napari.data.lazy.pattern_mean`), computed when
    ``auto`` needs it and it is not given.
    """
    ky, kx = dataset.detector_shape
    kind, value = padding_kind(padding)
    if kind == "none":
        return ky, kx
    dky, dkx = dataset.reciprocal_sampling_invA
    if kind == "shape":
        if value[0] < ky or value[1] < kx:
            raise InputError(
                f"detector_padding {value[0]}x{value[1]} is smaller than the {ky}×{kx} detector"
            )
        return int(value[0]), int(value[1])
    if kind == "pixel":
        return (
            max(ky, int(round(1.0 / (value * dky)))),
            max(kx, int(round(1.0 / (value * dkx)))),
        )
    if mean is None:
        mean = pattern_mean(dataset.intensities)
    qy = (np.arange(ky) - ky // 2)[:, None] * dky
    qx = (np.arange(kx) - kx // 2)[None, :] * dkx
    q = np.sqrt(qy**2 + qx**2)
    cutoff = BAND_LIMIT * min(ky * dky, kx * dkx) / 2.0
    total = float(mean.sum())
    outside = float(mean[q > cutoff * (1 + 1e-12)].sum()) / total
    if outside <= PAD_TOLERANCE:
        return ky, kx
    order = np.argsort(q, axis=None)
    cum = np.cumsum(mean.ravel()[order]) / total
    r_data = float(q.ravel()[order][min(np.searchsorted(cum, 1 - PAD_TOLERANCE), q.size - 1)])
    new = (
        max(ky, _fast_even(math.ceil(r_data * 2 / (BAND_LIMIT * dky) - 1e-9))),
        max(kx, _fast_even(math.ceil(r_data * 2 / (BAND_LIMIT * dkx) - 1e-9))),
    )
    log.info(
        "%.2g %% of the intensity lies beyond the 2/3 band limit of the %d×%d detector: "
        "zero-padding it to %d×%d (padding excluded from the loss)",
        100 * outside,
        ky,
        kx,
        *new,
    )
    return new


def plan_geometry(
    dataset: STEMDataset,
    config: ReconstructionConfig,
    *,
    padding: str | float | None = None,
    mean_pattern: np.ndarray | None = None,
) -> Geometry:
    """Probe window, pixel size, detector mask, positions and object grid for ``dataset``.

    ``padding`` overrides ``config.detector_padding``; ``mean_pattern`` (the data's mean
    pattern) saves a pass over the data when the padding is ``auto``.
    """
    ky0, kx0 = dataset.detector_shape
    ky, kx = padded_window(
        dataset, config.detector_padding if padding is None else padding, mean_pattern
    )
    dky, dkx = dataset.reciprocal_sampling_invA
    pixel = (1.0 / (ky * dky), 1.0 / (kx * dkx))
    oy, ox = ky // 2 - ky0 // 2, kx // 2 - kx0 // 2
    measured = np.zeros((ky, kx), bool)
    measured[oy : oy + ky0, ox : ox + kx0] = True
    band = optics.band_limit_mask((ky, kx), pixel, BAND_LIMIT) > 0  # FFT order
    mask = np.fft.ifftshift(measured) & band

    pos = dataset.rotated_positions_A().reshape(-1, 2)
    d = np.asarray(pixel)
    half = np.array([ky // 2, kx // 2]) + config.object_padding_px
    origin = pos.min(axis=0) - half * d
    pos_px = (pos - origin) / d
    far = np.floor(pos_px.max(axis=0) + 0.5).astype(int)
    # FFT-friendly sizes (band-limit projections of the object run every evaluation)
    shape = (
        scipy.fft.next_fast_len(int(far[0] + (ky - ky // 2) + config.object_padding_px)),
        scipy.fft.next_fast_len(int(far[1] + (kx - kx // 2) + config.object_padding_px)),
    )
    return Geometry(
        window=(ky, kx),
        pad_offset=(oy, ox),
        pixel_size_A=(float(pixel[0]), float(pixel[1])),
        detector_mask=mask,
        positions_A=pos,
        positions_px=pos_px,
        object_shape=shape,
        object_origin_A=(float(origin[0]), float(origin[1])),
    )


def measured_amplitudes(dataset: STEMDataset, geom: Geometry) -> np.ndarray:
    """``(P, Ky, Kx)`` float32 amplitudes ``sqrt(I)``, zero-padded, in FFT (unshifted) order.

    The whole padded dataset at once (small data, tests); the engine pads per batch
    (:class:`caviar_napari.core.patterns.PatternFeed`).
    """
    sy, sx = dataset.scan_shape
    ky0, kx0 = dataset.detector_shape
    ky, kx = geom.window
    oy, ox = geom.pad_offset
    padded = np.zeros((sy * sx, ky, kx), np.float32)
    padded[:, oy : oy + ky0, ox : ox + kx0] = np.asarray(dataset.intensities).reshape(
        sy * sx, ky0, kx0
    )
    padded = np.fft.ifftshift(padded, axes=(-2, -1))
    return np.sqrt(padded, out=padded)


def masked_total(
    dataset: STEMDataset, geom: Geometry, mean_pattern: np.ndarray | None = None
) -> float:
    """Total measured intensity inside the detector mask (all patterns), the loss normaliser."""
    ky0, kx0 = dataset.detector_shape
    oy, ox = geom.pad_offset
    if mean_pattern is None:
        mean_pattern = pattern_mean(dataset.intensities)
    sy, sx = dataset.scan_shape
    summed = np.zeros(geom.window)
    summed[oy : oy + ky0, ox : ox + kx0] = mean_pattern * (sy * sx)
    total = float(np.sum(np.fft.ifftshift(summed) * geom.detector_mask))
    if not total > 0:
        raise InputError(
            f"{dataset.source or 'dataset'}: no measured intensity inside the band-limited "
            "detector area"
        )
    return total


def stage_padding(config: ReconstructionConfig, stage_index: int) -> str | float:
    """The ``detector_padding`` of a stage: its own, or the configuration's."""
    own = config.stages[stage_index].detector_padding
    return config.detector_padding if own is None else own


def resample_probe(probe: np.ndarray, window: tuple[int, int]) -> np.ndarray:
    """Probe modes ``(M, Ky, Kx)`` on another probe window of the same detector sampling ``dk``.

    The far field ``Ψ = F ψ`` (unitary FFT) is kept at every spatial frequency both windows
    hold: zero-padded (larger window, finer pixel) or cropped (smaller window) about ``k = 0``.
    """
    p = np.asarray(probe)
    spec = np.fft.fftshift(np.fft.fft2(p, norm="ortho"), axes=(-2, -1))
    out = np.zeros((p.shape[0], *window), dtype=spec.dtype)
    src, dst = [], []
    for n_old, n_new in zip(p.shape[-2:], window):
        n = min(n_old, n_new)
        a_old, a_new = n_old // 2 - n // 2, n_new // 2 - n // 2
        src.append(slice(a_old, a_old + n))
        dst.append(slice(a_new, a_new + n))
    out[:, dst[0], dst[1]] = spec[:, src[0], src[1]]
    return np.fft.ifft2(np.fft.ifftshift(out, axes=(-2, -1)), norm="ortho").astype(p.dtype)


def resample_object(obj: np.ndarray, old: Geometry, new: Geometry) -> np.ndarray:
    """Object ``(N, S, H, W)`` on ``old``'s grid, evaluated on ``new``'s grid.

    The engine keeps the object band-limited on its (periodic) grid, so its discrete Fourier
    series is exact; it is evaluated at the new pixel positions (separable matrix products,
    frequencies restricted to the new grid's band), i.e. trigonometric interpolation.
    """
    o = np.asarray(obj)
    spec = np.fft.fft2(o) / (o.shape[-2] * o.shape[-1])
    mats = []
    for ax in range(2):
        n_old, n_new = o.shape[-2 + ax], new.object_shape[ax]
        k = np.fft.fftfreq(n_old, old.pixel_size_A[ax])
        keep = np.abs(k) < 0.5 / new.pixel_size_A[ax] * (1 - 1e-9)
        x = new.object_origin_A[ax] + np.arange(n_new) * new.pixel_size_A[ax]
        x = x - old.object_origin_A[ax]
        mats.append((keep, np.exp(2j * np.pi * x[:, None] * k[None, keep])))
    (ky, ey), (kx, ex) = mats
    coeffs = spec[..., ky, :][..., kx]
    return np.einsum("yk,...kl,xl->...yx", ey, coeffs, ex, optimize=True).astype(o.dtype)
