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
defocus is an effective one.  Two limits bias it towards focus by a few per cent: a phase that
is not weak (hBN at 60 kV: 95 Å for 100 Å; exact at 200 kV), and a scan window not much larger
than the defocused probe (``2 α Δf``), whose images at different ``k`` do not share one
periodic object.

The least-squares ``φ(q)`` at the best Δf is the SSB phase image (:meth:`BrightFieldParallax.
phase`): a deconvolved phase, sharp whatever the defocus.  Turning the scan by 180° maps
``q → −q``, and ``T(−q, k; Δf) = −T(q, k; −Δf)`` exactly, so ``F(θ + 180°, Δf) = F(θ, −Δf)``
and the phase image changes sign: the parallax fixes the half-turn and the sign of Δf only
together, and the phase's positivity on atoms (conventions §2) tells which (:mod:`.halfturn`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from caviar_napari.errors import InputError

__all__ = ["BrightFieldParallax", "DefocusFit", "fit_defocus", "skewness"]

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
        Scan rotation θ the fit used.
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
    phase_skewness
        Skewness of the SSB phase image at the fit (> 0: atoms are positive peaks, as they
        must be; < 0: the half-turn of θ and the sign of Δf are both wrong).
    """

    defocus_A: float
    rotation_deg: float
    explained: float
    contrast: float
    width_A: float
    search_A: tuple[float, float]
    phase_skewness: float

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


def skewness(values: np.ndarray) -> float:
    """Sample skewness ``E[(v − μ)³] / σ³`` (0 for a constant)."""
    v = np.ravel(values) - np.mean(values)
    sd = float(np.sqrt(np.mean(v**2)))
    return float(np.mean(v**3) / sd**3) if sd > 0 else 0.0


class BrightFieldParallax:
    """The bright-field fluctuations of a scan in Fourier space, and the weak-phase model of them
    (module docstring) at any scan rotation and defocus.

    Parameters
    ----------
    patterns
        ``(Sy, Sx, Ky, Kx)`` patterns in the conventions §2 frame (transposed if needed); only
        a central window of at most :data:`MAX_SCAN` positions per axis is used.
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

    Raises
    ------
    InputError
        A scan smaller than 6 × 6, a disc of fewer than 8 pixels, fewer than 4 spatial
        frequencies inside 2α.
    """

    def __init__(
        self,
        patterns: np.ndarray,
        *,
        centre_px: tuple[float, float],
        radius_px: tuple[float, float],
        sampling_mrad: tuple[float, float],
        wavelength_A: float,
        scan_step_A: tuple[float, float],
    ) -> None:
        sy, sx = patterns.shape[:2]
        if min(sy, sx) < 6:
            raise InputError(f"the scan ({sy} × {sx}) is too small for the defocus fit")
        window = np.asarray(
            patterns[_central(sy, MAX_SCAN), _central(sx, MAX_SCAN)], dtype=np.float64
        )
        ny, nx, ky, kx = window.shape
        centre = np.asarray(centre_px, dtype=float)
        self.radius_px = np.asarray(radius_px, dtype=float)
        iy, ix = np.meshgrid(np.arange(ky), np.arange(kx), indexing="ij")
        k_px = np.stack([iy - centre[0], ix - centre[1]], axis=-1)
        amp = _disc(k_px, self.radius_px)
        bright = amp > 0.5
        if np.count_nonzero(bright) < 8:
            raise InputError("the bright-field disc has fewer than 8 pixels: no defocus fit")
        mean = window.mean(axis=(0, 1))
        plateau = float(np.median(mean[bright]))
        fluct = (window[..., bright] - mean[bright]) / plateau  # (ny, nx, Nk)
        g = np.fft.fft2(fluct, axes=(0, 1)) / math.sqrt(ny * nx)

        # spatial frequencies of the scan (scan frame); turned into the detector frame later
        qy = np.fft.fftfreq(ny, scan_step_A[0])[:, None] * np.ones((1, nx))
        qx = np.fft.fftfreq(nx, scan_step_A[1])[None, :] * np.ones((ny, 1))
        self.alpha_rad = float(np.mean(self.radius_px * np.asarray(sampling_mrad))) * 1e-3
        qn = np.hypot(qy, qx)
        inside = np.flatnonzero(((qn > 0) & (qn < 2 * self.alpha_rad / wavelength_A)).ravel())
        if inside.size < 4:
            raise InputError("too few spatial frequencies of the scan inside 2α: no defocus fit")
        power = np.sum(np.abs(g) ** 2, axis=-1).ravel()[inside]
        #: indices (into the flattened window spectrum) of every frequency inside 2α …
        self.inside = inside
        #: … and positions in ``inside`` of the :data:`MAX_Q` strongest (used by the fit)
        self.strongest = np.argsort(-power, kind="stable")[:MAX_Q]
        self.g = g.reshape(-1, g.shape[-1])[inside]  # (Nq, Nk)
        self.q_scan = np.stack([qy.ravel()[inside], qx.ravel()[inside]], axis=-1)
        self.window_shape = (ny, nx)
        self.wavelength_A = float(wavelength_A)
        self.dk = np.asarray(sampling_mrad, dtype=float) * 1e-3 / wavelength_A  # 1/Å per px
        self.k_px = k_px[bright]
        self.amp = amp[bright]
        self._cache: dict[tuple[float, int | None], tuple[np.ndarray, ...]] = {}

    @property
    def defocus_step_A(self) -> float:
        """Grid step of the defocus search: the phase at the disc's edge changes by π/4."""
        return 0.25 * self.wavelength_A / self.alpha_rad**2

    def _terms(self, rotation_deg: float, n_q: int | None) -> tuple[np.ndarray, ...]:
        """The Δf-independent parts of ``T`` (cached per rotation) for the ``n_q`` strongest
        frequencies (None: every one inside 2α): the two shifted apertures and the two phase
        factors per unit defocus."""
        key = (float(rotation_deg), n_q)
        if key not in self._cache:
            which = self.strongest[:n_q] if n_q is not None else np.arange(self.inside.size)
            tr = math.radians(rotation_deg)  # q_det = R(θ) q_scan (conventions §2)
            c, s = math.cos(tr), math.sin(tr)
            qs = self.q_scan[which]
            q = np.stack([qs[:, 0] * c + qs[:, 1] * s, qs[:, 1] * c - qs[:, 0] * s], -1)
            q_px = q / self.dk
            a_minus = _disc(self.k_px[None] - q_px[:, None], self.radius_px) * self.amp
            a_plus = _disc(self.k_px[None] + q_px[:, None], self.radius_px) * self.amp
            kq = ((self.k_px * self.dk) @ q.T).T  # (Nq, Nk)
            q2 = np.sum(q * q, axis=1)[:, None]
            lam = self.wavelength_A
            p1 = math.pi * lam * (2 * kq - q2)
            p2 = math.pi * lam * (2 * kq + q2)
            self._cache = {key: (which, a_minus, a_plus, p1, p2)}  # one rotation at a time
        return self._cache[key]

    def _least_squares(
        self, defocus_A: float, rotation_deg: float, n_q: int | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``Σ_k T* G``, ``Σ_k |T|²``, where the latter is not zero, and the frequencies."""
        which, a_minus, a_plus, p1, p2 = self._terms(rotation_deg, n_q)
        tt = 1j * (a_minus * np.exp(-1j * defocus_A * p1) - a_plus * np.exp(-1j * defocus_A * p2))
        num = np.sum(np.conj(tt) * self.g[which], axis=1)
        den = np.sum(np.abs(tt) ** 2, axis=1)
        return num, den, den > 1e-12, which

    def explained(self, defocus_A: float, rotation_deg: float, n_q: int = MAX_Q) -> float:
        """``F(Δf)`` over the ``n_q`` (at most :data:`MAX_Q`) strongest frequencies (module
        docstring); at most :meth:`power`."""
        num, den, good, _ = self._least_squares(defocus_A, rotation_deg, min(n_q, MAX_Q))
        return float(np.sum(np.abs(num[good]) ** 2 / den[good]))

    def explained_grid(
        self, defocus_A: np.ndarray, rotation_deg: float, n_q: int = MAX_Q
    ) -> np.ndarray:
        """:meth:`explained` at every value of a uniform grid of Δf, by a recurrence instead
        of exponentials: with ``u = k·q`` and ``c = πλ|q|²``,
        ``Σ_k T* G = −i (e^{−iΔf c} S₋ − e^{iΔf c} S₊)``, ``S± = Σ_k A(k ∓ q) A(k) G
        e^{2πiλΔf u}``, and ``Σ_k |T|² = Σ_k (A₋² + A₊²) − 2 cos(2Δf c) Σ_k A₋ A₊``; the
        factor ``e^{2πiλΔf u}`` advances by one multiplication per grid step."""
        grid = np.asarray(defocus_A, dtype=float)
        if grid.size == 0:
            return np.zeros(0)
        n = min(n_q, MAX_Q)
        which, a_minus, a_plus, p1, p2 = self._terms(rotation_deg, n)
        g = self.g[which]
        u_phase = 0.5 * (p1 + p2)  # 2πλ u
        c = 0.5 * (p2 - p1)[:, 0]  # πλ|q|², the same for every k
        weights = np.stack([a_minus * g, a_plus * g])  # (2, Nq, Nk)
        amp2 = np.sum(a_minus**2 + a_plus**2, axis=1)
        cross = np.sum(a_minus * a_plus, axis=1)
        step = float(grid[1] - grid[0]) if grid.size > 1 else 0.0
        factor = np.exp(1j * grid[0] * u_phase)
        advance = np.exp(1j * step * u_phase)
        out = np.empty(grid.size)
        for i, df in enumerate(grid):
            s_minus, s_plus = np.einsum("sqk,qk->sq", weights, factor)
            num = np.exp(-1j * df * c) * s_minus - np.exp(1j * df * c) * s_plus
            den = amp2 - 2.0 * np.cos(2.0 * df * c) * cross
            good = den > 1e-12
            out[i] = float(np.sum(np.abs(num[good]) ** 2 / den[good]))
            factor *= advance
        return out

    def power(self, n_q: int = MAX_Q) -> float:
        """``Σ |G|²`` over the ``n_q`` strongest frequencies (what :meth:`explained` can reach
        at most)."""
        return float(np.sum(np.abs(self.g[self.strongest[: min(n_q, MAX_Q)]]) ** 2))

    def phase(self, defocus_A: float, rotation_deg: float) -> np.ndarray:
        """The SSB phase image (rad, zero mean) of the scan window, ``(ny, nx)`` scan frame:
        the least-squares ``φ(q)`` at every frequency inside 2α."""
        num, den, good, which = self._least_squares(defocus_A, rotation_deg, None)
        phi_q = np.zeros(self.window_shape[0] * self.window_shape[1], dtype=np.complex128)
        phi_q[self.inside[which[good]]] = num[good] / den[good]
        phi = np.fft.ifft2(phi_q.reshape(self.window_shape)) * math.sqrt(phi_q.size)
        return np.real(phi)


def fit_defocus(
    parallax: BrightFieldParallax,
    *,
    rotation_deg: float,
    start_A: float,
    search_A: float = 500.0,
) -> DefocusFit:
    """Fit Δf at the scan rotation ``rotation_deg`` (module docstring).

    Parameters
    ----------
    parallax
        The bright-field data.
    rotation_deg
        Scan rotation θ (conventions §2).
    start_A
        Centre of the search (the stated defocus).
    search_A
        Half-width of the search (Å).
    """
    from scipy.optimize import minimize_scalar

    theta = float(rotation_deg)
    step = parallax.defocus_step_A
    lo, hi = start_A - search_A, start_A + search_A
    grid = np.arange(lo, hi + 0.5 * step, step)
    values = parallax.explained_grid(grid, theta)
    i = int(np.argmax(values))
    a, b = grid[max(i - 1, 0)], grid[min(i + 1, grid.size - 1)]
    best = minimize_scalar(lambda d: -parallax.explained(d, theta), bounds=(a, b),
                           method="bounded", options={"xatol": 1e-3 * step})  # fmt: skip
    df = float(best.x)
    f_max = parallax.explained(df, theta)
    f_med = float(np.median(values))
    half = f_med + 0.5 * (f_max - f_med)
    j0 = i
    while j0 > 0 and values[j0 - 1] >= half:
        j0 -= 1
    j1 = i
    while j1 < grid.size - 1 and values[j1 + 1] >= half:
        j1 += 1
    total = parallax.power()
    return DefocusFit(
        defocus_A=df,
        rotation_deg=theta,
        explained=f_max / total if total > 0 else 0.0,
        contrast=(f_max - f_med) / f_max if f_max > 0 else 0.0,
        width_A=float(grid[j1] - grid[j0] + step),
        search_A=(float(lo), float(hi)),
        phase_skewness=skewness(parallax.phase(df, theta)),
    )
