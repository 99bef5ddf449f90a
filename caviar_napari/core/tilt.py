"""Crystal tilt from the reconstructed slices (the paper's estimate, supplement S1).

A crystal tilted by ``α`` against the beam, reconstructed with the propagator of a tilt
``α₀`` (:func:`caviar_napari.core.optics.fresnel_propagator`, which shifts the wave by
``+dz·tan α`` per gap), comes out with each slice displaced against the one above it by

    d = −dz (tan α − tan α₀)        (slice j+1 ≈ slice j moved by d),

so cross-correlating adjacent slices measures the residual tilt. :func:`estimate_tilt` gives
``α`` with its spread over the gaps; :func:`align_slices` moves the slices back so that the
object agrees with the new propagator (slice ``j`` by ``−j·d``). A stage with
``tilt_estimate: true`` does both when it starts and then keeps the tilted propagator fixed
(unless it also refines ``tilt``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from caviar_napari.errors import InputError

__all__ = ["TiltEstimate", "align_slices", "estimate_tilt"]


@dataclass(frozen=True)
class TiltEstimate:
    """Result of :func:`estimate_tilt`.

    Attributes
    ----------
    tilt_mrad
        ``(α_y, α_x)``: the tilt the slices imply, mrad (``tilt_used_mrad`` plus the residual).
    residual_mrad
        ``(Δα_y, Δα_x)`` against the tilt the object was reconstructed with.
    spread_mrad
        Standard error of the residual over the gaps (NaN with one gap).
    shift_per_gap_A
        ``(d_y, d_x)``: mean displacement of a slice against the one above, Å.
    n_gaps
        Number of adjacent slice pairs.
    """

    tilt_mrad: tuple[float, float]
    residual_mrad: tuple[float, float]
    spread_mrad: tuple[float, float]
    shift_per_gap_A: tuple[float, float]
    n_gaps: int

    def to_dict(self) -> dict[str, object]:
        """JSON-safe dictionary (the RECON file's diagnostics)."""
        return {
            "tilt_mrad": list(self.tilt_mrad),
            "residual_mrad": list(self.residual_mrad),
            "spread_mrad": list(self.spread_mrad),
            "shift_per_gap_A": list(self.shift_per_gap_A),
            "n_gaps": self.n_gaps,
        }


def _slice_phases(obj: np.ndarray, region: tuple[slice, slice] | None) -> np.ndarray:
    """``(S, h, w)`` phase of the mean object over the states, mean removed, in ``region``."""
    o = np.asarray(obj)
    if o.ndim != 4:
        raise InputError(f"the object must be (state, slice, y, x), got shape {o.shape}")
    mean = o.mean(axis=0)
    if region is not None:
        mean = mean[(slice(None), *region)]
    phase = np.angle(mean)
    return phase - phase.mean(axis=(1, 2), keepdims=True)


def estimate_tilt(
    obj: np.ndarray,
    slice_thickness_A: float | np.ndarray,
    pixel_size_A: tuple[float, float],
    tilt_used_mrad: tuple[float, float] = (0.0, 0.0),
    region: tuple[slice, slice] | None = None,
    upsample: int = 50,
) -> TiltEstimate:
    """The crystal tilt implied by the displacement of adjacent slices.

    Parameters
    ----------
    obj
        ``(state, slice, y, x)`` complex object (at least two slices).
    slice_thickness_A
        Thickness of each slice (a number or ``(S,)``), Å; the gap ``j → j+1`` is the
        thickness of slice ``j``.
    pixel_size_A
        ``(dy, dx)``, Å.
    tilt_used_mrad
        The tilt ``α₀`` of the propagator the object was reconstructed with, mrad.
    region
        Object pixels to compare (the scanned area); default the whole object.
    upsample
        Sub-pixel precision of the cross-correlation peak (1/upsample pixel).

    Returns
    -------
    TiltEstimate

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> base = np.exp(0.3j * rng.standard_normal((64, 64)))
    >>> stack = np.stack([np.roll(base, (j, 0), axis=(0, 1)) for j in range(3)])[None]
    >>> est = estimate_tilt(stack, 10.0, (0.1, 0.1))  # 0.1 Å per 10 Å gap along y
    >>> [round(v, 3) for v in est.shift_per_gap_A], [round(v, 2) for v in est.tilt_mrad]
    ([0.1, 0.0], [-10.0, 0.0])
    """
    from skimage.registration import phase_cross_correlation

    phase = _slice_phases(obj, region)
    n_slices = phase.shape[0]
    if n_slices < 2:
        raise InputError("a tilt estimate needs at least two slices")
    dz = np.broadcast_to(np.asarray(slice_thickness_A, dtype=np.float64).ravel(), (n_slices,))
    pixel = np.asarray(pixel_size_A, dtype=np.float64)
    shifts, slopes = [], []
    for j in range(n_slices - 1):
        # phase_cross_correlation gives the shift that registers the moving image with the
        # reference: −d when slice j+1 is slice j moved by d
        found, _, _ = phase_cross_correlation(
            phase[j], phase[j + 1], upsample_factor=upsample, normalization=None
        )
        d = -np.asarray(found, dtype=np.float64) * pixel
        shifts.append(d)
        slopes.append(-d / dz[j])  # tan α − tan α₀
    slopes = np.asarray(slopes)
    mean_slope = slopes.mean(axis=0)
    spread = (
        slopes.std(axis=0, ddof=1) / math.sqrt(len(slopes)) if len(slopes) > 1 else [np.nan] * 2
    )
    tan0 = np.tan(np.asarray(tilt_used_mrad, dtype=np.float64) * 1e-3)
    tilt = np.arctan(tan0 + mean_slope) * 1e3
    residual = tilt - np.asarray(tilt_used_mrad, dtype=np.float64)
    return TiltEstimate(
        tilt_mrad=(float(tilt[0]), float(tilt[1])),
        residual_mrad=(float(residual[0]), float(residual[1])),
        spread_mrad=(float(spread[0] * 1e3), float(spread[1] * 1e3)),
        shift_per_gap_A=tuple(float(v) for v in np.mean(shifts, axis=0)),
        n_gaps=n_slices - 1,
    )


def align_slices(
    obj: np.ndarray, shift_per_gap_A: tuple[float, float], pixel_size_A: tuple[float, float]
) -> np.ndarray:
    """Move slice ``j`` of every state by ``−j·d`` (Fourier shift), undoing the displacement
    :func:`estimate_tilt` measured; the object then agrees with the estimated propagator."""
    o = np.asarray(obj)
    h, w = o.shape[-2:]
    ky = np.fft.fftfreq(h, pixel_size_A[0])[:, None]
    kx = np.fft.fftfreq(w, pixel_size_A[1])[None, :]
    out = np.empty_like(o)
    for j in range(o.shape[1]):
        a = -j * np.asarray(shift_per_gap_A, dtype=np.float64)  # f(r − a) ↔ e^{−2πik·a} F
        ramp = np.exp(-2j * np.pi * (ky * a[0] + kx * a[1]))
        out[:, j] = np.fft.ifft2(np.fft.fft2(o[:, j]) * ramp)
    return out.astype(o.dtype, copy=False)
