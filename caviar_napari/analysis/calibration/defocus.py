"""Defocus from the parallax of the bright-field disc, by a weak-phase fit of all its pixels.

Every bright-field pixel ``k`` of a 4D-STEM scan sees the object through the two beams that
interfere there, so that, for a weak phase object ``O = 1 + iφ`` and a probe
``ψ(k) = A(k) exp(−iχ(k))`` (conventions §2), the Fourier transform over the scan positions of
the pattern intensity is exactly linear in the object:

    G(q, k) = φ(q) · T(q, k),
    T(q, k) = i A(k) [A(k − q) e^{i(χ(k) − χ(k−q))} − A(k + q) e^{−i(χ(k) − χ(k+q))}],

with ``χ(k) = −π λ Δf |k|²``.  The phase difference ``χ(k) − χ(k − q) ≈ ∇χ · q`` is the
parallax: the image of pixel ``k`` is shifted by ``−λ Δf k`` (tilt-corrected bright field
undoes exactly these shifts).  Instead of registering the shifted images one by one (which
fails for small defocus and for periodic crystals), the defocus is the one value for which the
data are best explained by a single object: for each ``q`` the least-squares ``φ(q)`` is
``Σ_k T* G / Σ_k |T|²`` and the explained power

    F(Δf) = Σ_q |Σ_k T*(q, k; Δf) G(q, k)|² / Σ_k |T(q, k; Δf)|²

is maximised over Δf (a grid fine enough for the phase to change by < 0.3 rad per step, then a
bounded scalar refinement).  This is the single-side-band (SSB) ptychography model used as a
calibration; it needs the scan rotation (the spatial frequencies ``q`` of the scan are turned
into the detector frame) and holds for thin, weakly scattering samples; for thick crystals the
defocus is an effective one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from caviar_napari.errors import InputError

__all__ = ["DefocusFit", "fit_defocus"]

#: Largest number of scan positions per axis used (a central window).
MAX_SCAN = 64
#: Largest number of spatial frequencies used (those with the most signal).
MAX_Q = 512


@dataclass(frozen=True)
class DefocusFit:
    """Result of :func:`fit_defocus`.

    Attributes
    ----------
    defocus_A
        Δf = −C10 (Å).
    rotation_deg
        Scan rotation θ the fit used (from the centre of mass).
    explained
        Fraction of the bright-field fluctuation power that the weak-phase model explains at
        the best Δf (1 = all).
    contrast
        ``(F_max − F_median) / F_max`` over the searched range (≈ 1: a sharp optimum).
    width_A
        Full width of the optimum at half its height above the median (Å): the resolution
        of the estimate.
    search_A
        ``(low, high)`` range searched.
    """

    defocus_A: float
    rotation_deg: float
    explained: float
    contrast: float
    width_A: float
    search_A: tuple[float, float]

    def warnings(self) -> list[str]:
        """What is uncertain about this fit."""
        out = []
        lo, hi = self.search_A
        step = (hi - lo) / 100.0
        if min(self.defocus_A - lo, hi - self.defocus_A) < step:
            out.append(
                f"the defocus {self.defocus_A:.1f} Å is at the edge of the searched range "
                f"[{lo:.0f}, {hi:.0f}] Å: widen the search"
            )
        if self.contrast < 0.3:
            out.append(
                f"the defocus fit has a flat optimum (contrast {self.contrast:.2f}): the "
                "bright-field parallax is too weak (noise, or no structure in the field of view)"
            )
        return out


def _central(n: int, m: int) -> slice:
    start = max(0, (n - m) // 2)
    return slice(start, start + min(n, m))


def _disc(k_px: np.ndarray, radius_px: np.ndarray) -> np.ndarray:
    """Soft-edged disc (one pixel ramp) at pixel offsets ``k_px`` ``(..., 2)`` from the centre,
    radii ``(ry, rx)`` pixels (an ellipse in pixels where the samplings differ)."""
    r = np.hypot(k_px[..., 0] / radius_px[0], k_px[..., 1] / radius_px[1])
    edge = 1.0 / float(np.min(radius_px))
    return np.clip((1.0 - r) / edge + 0.5, 0.0, 1.0)


def fit_defocus(
    patterns: np.ndarray,
    *,
    centre_px: tuple[float, float],
    radius_px: tuple[float, float],
    sampling_mrad: tuple[float, float],
    wavelength_A: float,
    scan_step_A: tuple[float, float],
    rotation_deg: float,
    start_A: float,
    search_A: float = 500.0,
) -> DefocusFit:
    """Fit Δf to the bright-field pixels of ``patterns`` (module docstring).

    Parameters
    ----------
    patterns
        ``(Sy, Sx, Ky, Kx)`` patterns in the conventions §2 frame (transposed if needed);
        only a central window of at most :data:`MAX_SCAN` positions per axis is used.
    centre_px
        ``(ky, kx)`` zero angle (sub-pixel).
    radius_px
        ``(ry, rx)`` bright-field disc half-extents (pixels).
    sampling_mrad
        ``(dky, dkx)``.
    wavelength_A
        λ.
    scan_step_A
        ``(dy, dx)`` of the regular scan.
    rotation_deg
        Scan rotation θ (conventions §2).
    start_A
        Centre of the search (the stated defocus).
    search_A
        Half-width of the search (Å).
    """
    sy, sx = patterns.shape[:2]
    if min(sy, sx) < 6:
        raise InputError(f"the scan ({sy} × {sx}) is too small for the defocus fit")
    window = np.asarray(patterns[_central(sy, MAX_SCAN), _central(sx, MAX_SCAN)], dtype=np.float64)
    ny, nx, ky, kx = window.shape
    centre = np.asarray(centre_px, dtype=float)
    radius = np.asarray(radius_px, dtype=float)
    iy, ix = np.meshgrid(np.arange(ky), np.arange(kx), indexing="ij")
    k_px = np.stack([iy - centre[0], ix - centre[1]], axis=-1)
    amp = _disc(k_px, radius)
    bright = amp > 0.5
    if np.count_nonzero(bright) < 8:
        raise InputError("the bright-field disc has fewer than 8 pixels: no defocus fit")
    mean = window.mean(axis=(0, 1))
    plateau = float(np.median(mean[bright]))
    fluct = (window[..., bright] - mean[bright]) / plateau  # (ny, nx, Nk)
    g = np.fft.fft2(fluct, axes=(0, 1)) / math.sqrt(ny * nx)

    # spatial frequencies of the scan (scan frame); turned into the detector frame in terms()
    qy = np.fft.fftfreq(ny, scan_step_A[0])[:, None] * np.ones((1, nx))
    qx = np.fft.fftfreq(nx, scan_step_A[1])[None, :] * np.ones((ny, 1))
    alpha = float(np.mean(radius * np.asarray(sampling_mrad))) * 1e-3  # rad
    qmax = 2 * alpha / wavelength_A
    qn = np.hypot(qy, qx)
    ok = (qn > 0) & (qn < qmax)
    power = np.sum(np.abs(g) ** 2, axis=-1)
    idx = np.flatnonzero(ok.ravel())
    idx = idx[np.argsort(-power.ravel()[idx], kind="stable")[:MAX_Q]]
    if idx.size < 4:
        raise InputError("too few spatial frequencies of the scan inside 2α: no defocus fit")
    gq = g.reshape(-1, g.shape[-1])[idx]  # (Nq, Nk)
    q_scan = np.stack([qy.ravel()[idx], qx.ravel()[idx]], axis=-1)  # (Nq, 2) scan frame
    dk = np.asarray(sampling_mrad) * 1e-3 / wavelength_A  # 1/Å per pixel
    kk = k_px[bright] * dk  # (Nk, 2)
    a_k = amp[bright]
    total = float(np.sum(np.abs(gq) ** 2))

    def terms(theta_deg: float) -> tuple[np.ndarray, ...]:
        tr = math.radians(theta_deg)  # q_det = R(θ) q_scan (conventions §2)
        c, s = math.cos(tr), math.sin(tr)
        q = np.stack([q_scan[:, 0] * c + q_scan[:, 1] * s, q_scan[:, 1] * c - q_scan[:, 0] * s], -1)
        q_px = q / dk
        a_minus = _disc(k_px[bright][None] - q_px[:, None], radius) * a_k
        a_plus = _disc(k_px[bright][None] + q_px[:, None], radius) * a_k
        kq = (kk @ q.T).T  # (Nq, Nk)
        q2 = np.sum(q * q, axis=1)[:, None]
        p1 = math.pi * wavelength_A * (2 * kq - q2)
        p2 = math.pi * wavelength_A * (2 * kq + q2)
        return a_minus, a_plus, p1, p2

    def power_of(df: float, parts: tuple[np.ndarray, ...]) -> float:
        a_minus, a_plus, p1, p2 = parts
        tt = 1j * (a_minus * np.exp(-1j * df * p1) - a_plus * np.exp(-1j * df * p2))
        num = np.abs(np.sum(np.conj(tt) * gq, axis=1)) ** 2
        den = np.sum(np.abs(tt) ** 2, axis=1)
        good = den > 1e-12
        return float(np.sum(num[good] / den[good]))

    fixed = terms(rotation_deg)

    def explained(df: float) -> float:
        return power_of(df, fixed)

    step = 0.25 * wavelength_A / alpha**2
    lo, hi = start_A - search_A, start_A + search_A
    grid = np.arange(lo, hi + 0.5 * step, step)
    values = np.array([explained(float(d)) for d in grid])
    i = int(np.argmax(values))
    from scipy.optimize import minimize_scalar

    a, b = grid[max(i - 1, 0)], grid[min(i + 1, grid.size - 1)]
    best = minimize_scalar(lambda d: -explained(d), bounds=(a, b), method="bounded",
                           options={"xatol": 1e-3 * step})  # fmt: skip
    df = float(best.x)
    theta = float(rotation_deg)
    f_max = power_of(df, terms(theta))
    f_med = float(np.median(values))
    half = f_med + 0.5 * (f_max - f_med)
    j0 = i
    while j0 > 0 and values[j0 - 1] >= half:
        j0 -= 1
    j1 = i
    while j1 < grid.size - 1 and values[j1 + 1] >= half:
        j1 += 1
    return DefocusFit(
        defocus_A=df,
        rotation_deg=theta,
        explained=f_max / total if total > 0 else 0.0,
        contrast=(f_max - f_med) / f_max if f_max > 0 else 0.0,
        width_A=float(grid[j1] - grid[j0] + step),
        search_A=(float(lo), float(hi)),
    )
