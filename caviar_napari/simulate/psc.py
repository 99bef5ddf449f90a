"""Partial spatial coherence (PSC) of the electron source.

The simulator uses a continuous Gaussian source (:func:`source_offsets_A`,
:func:`source_average`): every pattern is the weighted sum of the patterns of probes displaced
by the points of a 5 × 5 Gauss–Hermite rule of the source distribution (exact for intensities
that are polynomials of degree 9 in the displacement), simulated at those displaced positions.

The paper's own recipe, averaging the patterns of *neighbouring scan points* with Gaussian
weights (:func:`gaussian_scan_average`, kept for data recorded on a fine raster), samples the
source only at multiples of the scan step: with a 0.47 Å FWHM source and a 0.5 Å step it is a
5-point stencil that keeps 92 % of each pattern and adds 2 % of each neighbour's, an effective
FWHM of 0.34 Å with the tails of a scan step, not a Gaussian source.

A finite effective source size makes every recorded pattern an incoherent mixture of patterns of
probes displaced by a Gaussian-distributed offset.  Following the paper ("averaging neighbouring
diffraction patterns with a Gaussian weighting ... effective source size (FWHM of the Gaussian)"),
the blurred pattern at scan point ``p`` is

    I_psc(p) = Σ_q w(r_p − r_q) I(q) / Σ_q w(r_p − r_q),
    w(Δ) = exp(−|Δ|² / (2 σ²)),   σ = FWHM / (2 sqrt(2 ln 2)),

over the scan points ``q`` of a regular raster within ``truncate · σ`` along each axis.  The sum
runs over a rectangle of ``(2 m_y + 1) × (2 m_x + 1)`` neighbours with ``m = ceil(truncate σ /
step)``; the Gaussian is separable, so the average is two small matrix products over the scan
axes (no loop over patterns).

To avoid edge effects the patterns are simulated on a scan extended by ``m`` points on every side
(:func:`psc_margin`) and :func:`gaussian_scan_average` returns the interior points only, each with
its complete neighbourhood.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

from caviar_napari.core.grid import as_pair
from caviar_napari.errors import InputError

__all__ = [
    "FWHM_PER_SIGMA",
    "SOURCE_ORDER",
    "source_average",
    "source_offsets_A",
    "gaussian_scan_average",
    "psc_margin",
    "scan_weights_1d",
]

#: FWHM of a Gaussian in units of its standard deviation, ``2 sqrt(2 ln 2)`` ≈ 2.3548.
FWHM_PER_SIGMA: float = 2.0 * math.sqrt(2.0 * math.log(2.0))

#: Gauss–Hermite points per axis of the simulated source.
SOURCE_ORDER: int = 5

#: Default truncation of the Gaussian, in standard deviations.
DEFAULT_TRUNCATE: float = 3.0


def _check_fwhm(fwhm_A: float) -> float:
    f = float(fwhm_A)
    if not math.isfinite(f) or f < 0:
        raise InputError(f"psc_fwhm_A (source size FWHM) must be ≥ 0 Å, got {fwhm_A!r}")
    return f


def psc_margin(
    scan_step_A: float | ArrayLike, fwhm_A: float, truncate: float = DEFAULT_TRUNCATE
) -> tuple[int, int]:
    """Number of extra scan points needed on each side for a complete Gaussian neighbourhood.

    Parameters
    ----------
    scan_step_A
        Scan step (Å), scalar or ``(dy, dx)``.
    fwhm_A
        Effective source size, FWHM of the Gaussian (Å); 0 means no PSC.
    truncate
        Half-width of the kernel in standard deviations.

    Returns
    -------
    tuple of int
        ``(m_y, m_x)`` = ``ceil(truncate σ / step)`` (0 when ``fwhm_A == 0``).
    """
    fwhm = _check_fwhm(fwhm_A)
    if fwhm == 0:
        return 0, 0
    if not (math.isfinite(truncate) and truncate > 0):
        raise InputError(f"truncate must be > 0 standard deviations, got {truncate!r}")
    step = as_pair(scan_step_A, "scan_step_A")
    if min(step) <= 0:
        raise InputError(f"scan_step_A must be positive, got {step}")
    sigma = fwhm / FWHM_PER_SIGMA
    # a tiny relative tolerance keeps exact multiples (e.g. 3σ = 2 steps) from rounding up
    return tuple(int(math.ceil(truncate * sigma / s - 1e-9)) for s in step)  # type: ignore[return-value]


def scan_weights_1d(n_out: int, margin: int, step_A: float, sigma_A: float) -> np.ndarray:
    """Normalised Gaussian weights along one scan axis.

    Parameters
    ----------
    n_out
        Number of output scan points.
    margin
        Extra input points on each side; the input axis has ``n_out + 2 margin`` points.
    step_A
        Scan step along this axis (Å).
    sigma_A
        Standard deviation of the source distribution (Å).

    Returns
    -------
    numpy.ndarray
        ``(n_out, n_out + 2 margin)`` float64; row ``i`` holds the weights of input points
        ``i … i + 2 margin`` (offsets ``−margin … margin`` steps), summing to 1.
    """
    offsets = np.arange(-margin, margin + 1) * step_A
    kernel = np.exp(-0.5 * (offsets / sigma_A) ** 2)
    kernel /= kernel.sum()
    w = np.zeros((n_out, n_out + 2 * margin))
    rows = np.arange(n_out)[:, None]
    cols = rows + np.arange(2 * margin + 1)[None, :]
    w[rows, cols] = kernel[None, :]
    return w


def gaussian_scan_average(
    intensities: np.ndarray,
    scan_step_A: float | ArrayLike,
    fwhm_A: float,
    truncate: float = DEFAULT_TRUNCATE,
) -> np.ndarray:
    """Gaussian average of patterns over neighbouring scan points (partial spatial coherence).

    Parameters
    ----------
    intensities
        ``(Sy + 2 m_y, Sx + 2 m_x, Ky, Kx)`` unblurred patterns on a regular raster extended by
        the margins ``(m_y, m_x)`` of :func:`psc_margin` on every side.
    scan_step_A
        Scan step (Å), scalar or ``(dy, dx)``.
    fwhm_A
        Effective source size (FWHM, Å); 0 returns the input unchanged (a copy).
    truncate
        Kernel half-width in standard deviations (must match the one used for the margins).

    Returns
    -------
    numpy.ndarray
        ``(Sy, Sx, Ky, Kx)`` blurred patterns of the interior scan points, same dtype as the input.
        The total intensity per pattern is preserved on average (weights sum to 1).
    """
    data = np.asarray(intensities)
    if data.ndim != 4:
        raise InputError(
            f"intensities must have rank 4 (scan_y, scan_x, ky, kx), got shape {data.shape}"
        )
    fwhm = _check_fwhm(fwhm_A)
    if fwhm == 0:
        return data.copy()
    my, mx = psc_margin(scan_step_A, fwhm, truncate)
    sy, sx = data.shape[0] - 2 * my, data.shape[1] - 2 * mx
    if sy < 1 or sx < 1:
        raise InputError(
            f"a scan of {data.shape[:2]} points is too small for a PSC margin of ({my}, {mx}) "
            "points on each side"
        )
    dy, dx = as_pair(scan_step_A, "scan_step_A")
    sigma = fwhm / FWHM_PER_SIGMA
    wy = scan_weights_1d(sy, my, dy, sigma)
    wx = scan_weights_1d(sx, mx, dx, sigma)
    out = np.einsum("ab,bckl->ackl", wy, data, optimize=True)
    out = np.einsum("cd,adkl->ackl", wx, out, optimize=True)
    return out.astype(data.dtype, copy=False)


def source_offsets_A(fwhm_A: float, order: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Probe displacements and weights of a Gaussian source of ``fwhm_A``.

    ``order`` Gauss–Hermite points per axis (default :data:`SOURCE_ORDER`).

    Returns
    -------
    offsets
        ``(J, 2)`` displacements ``(y, x)`` in Å (one point at 0 for a coherent source).
    weights
        ``(J,)`` positive, summing to 1.
    """
    from caviar_napari.core.coherence import gauss_hermite_source

    fwhm = _check_fwhm(fwhm_A)
    if fwhm == 0:
        return np.zeros((1, 2)), np.ones(1)
    rule = gauss_hermite_source(SOURCE_ORDER if order is None else order)
    return rule.nodes * (fwhm / FWHM_PER_SIGMA), rule.weights


def source_average(patterns: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``(P·J, Ky, Kx)`` patterns (J displaced probes per scan point, point-major) → the
    ``(P, Ky, Kx)`` patterns of the partially coherent probe, ``Σ_j w_j I_j``."""
    w = np.asarray(weights, dtype=np.float64)
    data = np.asarray(patterns)
    j = w.size
    if data.shape[0] % j:
        raise InputError(f"{data.shape[0]} patterns are not a multiple of {j} source points")
    grouped = data.reshape(data.shape[0] // j, j, *data.shape[1:])
    return np.einsum("pjkl,j->pkl", grouped, w).astype(data.dtype, copy=False)
