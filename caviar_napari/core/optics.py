"""Electron optics: probe, probe modes, Fresnel propagator, band limit.

The wavelength and interaction constant are :mod:`caviar_napari.data.beam` (a dataset's
calibration needs them); they are re-exported here.

Conventions (conventions §2; Kirkland's book and abTEM):

* units: Å, mrad, eV; spatial frequencies ``k`` in 1/Å (cycles per Å), scattering angle ``λ|k|``;
* Fourier transform ``Ψ(k) = Σ_r ψ(r) exp(−2πi k·r)`` (numpy's ``fft2``); reciprocal-space
  arrays are in FFT (unshifted) order, real-space probes are centred: the lens axis at pixel
  ``[Ky//2, Kx//2]``;
* probe ``ψ(k) = A(k) exp(−iχ(k))`` with the Krivanek aberration function
  ``χ(α, φ) = (2π/λ) Σ_nm C_nm α^(n+1)/(n+1) cos(m(φ − φ_nm))``, ``α = λ|k|``,
  ``φ = atan2(k_y, k_x)`` (radians, from +x towards +y), and **defocus Δf = −C10**: a positive
  defocus puts the crossover Δf below the entrance surface;
* propagation over ``dz`` with crystal tilt ``(α_y, α_x)`` (mrad):
  ``P(k) = exp(−iπ dz (λ|k|² + 2 (k_y tan α_y + k_x tan α_x)))``, cut to 2/3 of Nyquist.

Every function takes an ``xp`` array module (numpy or cupy) and returns float64/complex128
arrays of that module; callers cast to the backend's precision.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import Any

import numpy as np

from caviar_napari.core.grid import as_pair
from caviar_napari.data.beam import interaction_constant, wavelength_A
from caviar_napari.errors import InputError

__all__ = [
    "ABERRATION_ORDERS",
    "BAND_LIMIT",
    "aberration_chi",
    "aperture",
    "band_limit_mask",
    "fresnel_propagator",
    "interaction_constant",
    "make_probe",
    "probe_modes",
    "spatial_frequencies",
    "wavelength_A",
]

#: Band limit of waves, propagators and object updates, fraction of Nyquist (conventions §2):
#: the circular anti-aliasing cut that keeps products of band-limited waves alias-free.
BAND_LIMIT = 2.0 / 3.0

#: Krivanek coefficient name -> (n, m): χ term ∝ α^(n+1)/(n+1) cos(m(φ − φ_nm)).
ABERRATION_ORDERS: dict[str, tuple[int, int]] = {
    "C10": (1, 0),
    "C12": (1, 2),
    "C21": (2, 1),
    "C23": (2, 3),
    "C30": (3, 0),
    "C32": (3, 2),
    "C34": (3, 4),
    "C41": (4, 1),
    "C43": (4, 3),
    "C45": (4, 5),
    "C50": (5, 0),
    "C52": (5, 2),
    "C54": (5, 4),
    "C56": (5, 6),
}
_ALIASES = {"Cs": "C30", "C3": "C30", "C5": "C50", "astigmatism": "C12", "coma": "C21"}
_ANGLE_ALIASES = {"astigmatism_angle": "phi12", "coma_angle": "phi21"}


def _window(window: Sequence[int], name: str = "window") -> tuple[int, int]:
    try:
        ky, kx = (int(v) for v in window)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name} must be a (Ky, Kx) pair of integers, got {window!r}") from exc
    if ky < 1 or kx < 1:
        raise InputError(f"{name} must be positive, got {window!r}")
    return ky, kx


def _pixel(pixel_size_A: float | Sequence[float]) -> tuple[float, float]:
    try:
        dy, dx = as_pair(pixel_size_A, "pixel_size_A")
    except (TypeError, ValueError) as exc:
        raise InputError(f"pixel_size_A: {exc}") from exc
    if not (dy > 0 and dx > 0 and math.isfinite(dy) and math.isfinite(dx)):
        raise InputError(f"pixel_size_A must be positive, got {pixel_size_A!r}")
    return dy, dx


def spatial_frequencies(
    shape: Sequence[int], pixel_size_A: float | Sequence[float], xp: ModuleType = np
) -> tuple[Any, Any]:
    """Spatial frequencies of a real-space grid, in 1/Å, FFT (unshifted) order.

    Parameters
    ----------
    shape
        Grid shape ``(Ky, Kx)``.
    pixel_size_A
        Real-space pixel size in Å, scalar or ``(dy, dx)``.

    Returns
    -------
    ky, kx
        Float64 arrays of shapes ``(Ky, 1)`` and ``(1, Kx)`` (they broadcast to the grid):
        ``ky[i] = fftfreq(Ky, dy)[i]``.
    """
    ny, nx = _window(shape, "shape")
    dy, dx = _pixel(pixel_size_A)
    ky = xp.asarray(np.fft.fftfreq(ny, dy).reshape(ny, 1))
    kx = xp.asarray(np.fft.fftfreq(nx, dx).reshape(1, nx))
    return ky, kx


def band_limit_mask(
    window: Sequence[int],
    pixel_size_A: float | Sequence[float],
    fraction: float = BAND_LIMIT,
    xp: ModuleType = np,
) -> Any:
    """Circular anti-aliasing mask: 1 where ``|k| ≤ fraction · k_Nyquist``, else 0.

    ``k_Nyquist = min(1/(2 dy), 1/(2 dx))`` so that the disc fits both axes.  FFT order,
    shape ``(Ky, Kx)``, float64.  A hard 0/1 mask, so applying it is an orthogonal projection.
    """
    if not 0 < fraction <= 1.0 + 1e-12:
        raise InputError(f"band-limit fraction must be in (0, 1], got {fraction!r}")
    ky, kx = spatial_frequencies(window, pixel_size_A, xp)
    dy, dx = _pixel(pixel_size_A)
    cutoff = fraction * min(0.5 / dy, 0.5 / dx)
    k2 = ky**2 + kx**2
    return (k2 <= cutoff**2 * (1.0 + 1e-12)).astype(np.float64)


def aperture(
    window: Sequence[int],
    pixel_size_A: float | Sequence[float],
    wavelength_A: float,
    convergence_mrad: float,
    *,
    edge_px: float = 1.0,
    xp: ModuleType = np,
) -> Any:
    """Circular condenser aperture ``A(k)`` with a soft edge, FFT order, shape ``(Ky, Kx)``.

    ``A = clip((α_c − λ|k|) / (edge_px · λ dk) + 1/2, 0, 1)``: 1 inside the convergence
    semi-angle ``α_c``, 0 outside, with a linear ramp ``edge_px`` Fourier pixels wide
    (``dk = min(1/(Ky dy), 1/(Kx dx))``) centred on the edge, which reduces ringing.

    Parameters
    ----------
    wavelength_A
        Electron wavelength, Å.
    convergence_mrad
        Convergence semi-angle α_c, mrad.
    edge_px
        Width of the soft edge in Fourier pixels; 0 gives a hard edge.
    """
    ny, nx = _window(window)
    dy, dx = _pixel(pixel_size_A)
    if not convergence_mrad > 0:
        raise InputError(f"convergence_mrad must be positive, got {convergence_mrad!r}")
    ky, kx = spatial_frequencies((ny, nx), (dy, dx), xp)
    alpha = wavelength_A * xp.sqrt(ky**2 + kx**2)  # rad
    alpha_c = convergence_mrad * 1e-3
    if edge_px <= 0:
        return (alpha <= alpha_c).astype(np.float64)
    dalpha = edge_px * wavelength_A * min(1.0 / (ny * dy), 1.0 / (nx * dx))
    return xp.clip((alpha_c - alpha) / dalpha + 0.5, 0.0, 1.0)


def _normalise_aberrations(
    defocus_A: float, aberrations: Mapping[str, float] | None
) -> dict[str, float]:
    coeffs: dict[str, float] = {}
    for key, value in (aberrations or {}).items():
        name = _ALIASES.get(key, _ANGLE_ALIASES.get(key, key))
        if name.startswith("phi"):
            if "C" + name[3:] not in ABERRATION_ORDERS or name[-1] == "0":
                raise InputError(f"aberrations: unknown angle {key!r}")
        elif name not in ABERRATION_ORDERS:
            known = ", ".join(ABERRATION_ORDERS)
            raise InputError(f"aberrations: unknown coefficient {key!r} (known: {known})")
        try:
            v = float(value)
        except (TypeError, ValueError) as exc:
            raise InputError(f"aberrations[{key!r}] must be a number, got {value!r}") from exc
        if not math.isfinite(v):
            raise InputError(f"aberrations[{key!r}] must be finite, got {value!r}")
        coeffs[name] = coeffs.get(name, 0.0) + v
    coeffs["C10"] = coeffs.get("C10", 0.0) - float(defocus_A)  # Δf = −C10
    return coeffs


def aberration_chi(
    k: tuple[Any, Any],
    wavelength_A: float,
    defocus_A: float = 0.0,
    aberrations: Mapping[str, float] | None = None,
    xp: ModuleType = np,
) -> Any:
    """Aberration phase χ(k) in radians (Krivanek notation).

    ``χ = (2π/λ) Σ_nm C_nm α^(n+1)/(n+1) cos(m(φ − φ_nm))`` with ``α = λ|k|``,
    ``φ = atan2(k_y, k_x)``; the defocus term is ``πλ|k|² C10`` and ``C10 = −Δf``.

    Parameters
    ----------
    k
        ``(ky, kx)`` in 1/Å, broadcastable (e.g. from :func:`spatial_frequencies`).
    wavelength_A
        Wavelength, Å.
    defocus_A
        Defocus Δf in Å (positive = underfocus, crossover below the entrance surface); added
        to ``−aberrations["C10"]``.
    aberrations
        Krivanek coefficients in Å (``C10, C12, C21, C23, C30, C32, C34, C41…C56``; aliases
        ``Cs`` = C30, ``C5`` = C50) and their azimuths ``phi12, phi21, …`` in radians.
    """
    ky, kx = k
    coeffs = _normalise_aberrations(defocus_A, aberrations)
    alpha = wavelength_A * xp.sqrt(ky**2 + kx**2)
    phi = xp.arctan2(ky, kx)
    chi = xp.zeros(xp.broadcast(ky, kx).shape, dtype=np.float64)
    for name, (n, m) in ABERRATION_ORDERS.items():
        c = coeffs.get(name, 0.0)
        if c == 0.0:
            continue
        term = c * alpha ** (n + 1) / (n + 1)
        if m:
            term = term * xp.cos(m * (phi - coeffs.get("phi" + name[1:], 0.0)))
        chi += term
    return chi * (2.0 * math.pi / wavelength_A)


def make_probe(
    window: Sequence[int],
    pixel_size_A: float | Sequence[float],
    energy_eV: float,
    convergence_mrad: float,
    defocus_A: float = 0.0,
    aberrations: Mapping[str, float] | None = None,
    xp: ModuleType = np,
) -> Any:
    """Convergent-beam probe in real space, centred, unit total power.

    ``ψ(k) = A(k) exp(−iχ(k))``, transformed with the inverse FFT (``norm="ortho"``) and
    shifted so that the lens axis sits at pixel ``[Ky//2, Kx//2]``; scaled so ``Σ|ψ|² = 1``.

    Parameters
    ----------
    window
        ``(Ky, Kx)`` probe window (= detector) in pixels.
    pixel_size_A
        Real-space pixel size in Å, scalar or ``(dy, dx)``.
    energy_eV, convergence_mrad, defocus_A, aberrations
        See :func:`wavelength_A`, :func:`aperture`, :func:`aberration_chi`.

    Returns
    -------
    Complex128 array ``(Ky, Kx)``.
    """
    ny, nx = _window(window)
    lam = wavelength_A(energy_eV)
    k = spatial_frequencies((ny, nx), pixel_size_A, xp)
    amp = aperture((ny, nx), pixel_size_A, lam, convergence_mrad, xp=xp)
    chi = aberration_chi(k, lam, defocus_A, aberrations, xp=xp)
    psi_k = amp * xp.exp(-1j * chi)
    power = float(xp.sum(xp.abs(psi_k) ** 2))
    if power <= 0:
        raise InputError(
            f"the aperture ({convergence_mrad} mrad) contains no Fourier pixel of the "
            f"{ny}×{nx} window: the convergence angle is too small for this sampling"
        )
    psi = xp.fft.fftshift(xp.fft.ifft2(psi_k, norm="ortho"))
    return psi / math.sqrt(power)


def probe_modes(probe: Any, n_modes: int, decay: float = 0.3, xp: ModuleType = np) -> Any:
    """Hermite-type incoherent probe modes made from a base probe.

    Mode candidates are ``probe · H_a(ŷ) H_b(x̂)`` (physicists' Hermite polynomials, ŷ, x̂ the
    pixel coordinates relative to the probe's intensity centroid divided by its RMS width along
    each axis), ordered by total order ``a + b`` (then by decreasing ``a``): (0,0), (1,0), (0,1),
    (2,0), (1,1), (0,2), …  They are orthonormalised in that order (QR, so mode 0 is the base
    probe itself), and given the powers ``P · w_i / Σw`` with ``w_i = decay**i``: decreasing,
    mode 0 holding most of the power, total power ``P = Σ|probe|²`` preserved.

    Parameters
    ----------
    probe
        ``(Ky, Kx)`` complex, real space (or ``(M0, Ky, Kx)``: mode 0 is used as the base).
    n_modes
        Number of modes M ≥ 1.
    decay
        Ratio of successive mode powers, in (0, 1].

    Returns
    -------
    Complex128 array ``(M, Ky, Kx)``, mutually orthogonal (``Σ ψ_i* ψ_j = 0`` for i ≠ j).
    """
    if int(n_modes) != n_modes or n_modes < 1:
        raise InputError(f"n_modes must be a positive integer, got {n_modes!r}")
    if not 0 < decay <= 1:
        raise InputError(f"decay must be in (0, 1], got {decay!r}")
    n_modes = int(n_modes)
    base = xp.asarray(probe, dtype=np.complex128)
    if base.ndim == 3:
        base = base[0]
    if base.ndim != 2:
        raise InputError(f"probe must be (Ky, Kx) or (M, Ky, Kx), got shape {probe.shape}")
    ny, nx = base.shape
    intensity = xp.abs(base) ** 2
    total = float(xp.sum(intensity))
    if not total > 0:
        raise InputError("probe_modes: the probe has zero power")
    if n_modes > ny * nx:
        raise InputError(f"n_modes={n_modes} exceeds the {ny}×{nx} probe window")
    y = xp.arange(ny, dtype=np.float64).reshape(ny, 1)
    x = xp.arange(nx, dtype=np.float64).reshape(1, nx)
    cy = float(xp.sum(intensity * y)) / total
    cx = float(xp.sum(intensity * x)) / total
    sy = math.sqrt(max(float(xp.sum(intensity * (y - cy) ** 2)) / total, 1e-12))
    sx = math.sqrt(max(float(xp.sum(intensity * (x - cx) ** 2)) / total, 1e-12))
    yh = (y - cy) / sy
    xh = (x - cx) / sx
    orders = []
    total_order = 0
    while len(orders) < n_modes:
        orders.extend((a, total_order - a) for a in range(total_order, -1, -1))
        total_order += 1
    orders = orders[:n_modes]
    max_order = max(max(a, b) for a, b in orders)
    hy = _hermite_table(yh, max_order, xp)  # (max_order+1, Ky, 1)
    hx = _hermite_table(xh, max_order, xp)  # (max_order+1, 1, Kx)
    ia = xp.asarray(np.array([a for a, _ in orders]))
    ib = xp.asarray(np.array([b for _, b in orders]))
    candidates = base[None] * hy[ia] * hx[ib]  # (M, Ky, Kx)
    q, r = xp.linalg.qr(candidates.reshape(n_modes, -1).T)  # (Ky*Kx, M)
    d = xp.diagonal(r)
    if float(xp.min(xp.abs(d))) <= 1e-12 * float(xp.max(xp.abs(d))):
        raise InputError(
            f"probe_modes: {n_modes} Hermite modes of this probe are linearly dependent; "
            "use fewer modes or a larger window"
        )
    q = q * (d / xp.abs(d))[None, :]  # fix phases so that mode 0 is the base probe
    w = decay ** np.arange(n_modes, dtype=np.float64)
    amps = xp.asarray(np.sqrt(total * w / w.sum()))
    return (q.T * amps[:, None]).reshape(n_modes, ny, nx)


def _hermite_table(t: Any, order: int, xp: ModuleType) -> Any:
    """Physicists' Hermite polynomials ``H_0..H_order`` of ``t``, stacked on a new axis 0."""
    table = [xp.ones_like(t), 2.0 * t]
    for n in range(1, order):
        table.append(2.0 * t * table[n] - 2.0 * n * table[n - 1])
    return xp.stack(table[: order + 1])


def fresnel_propagator(
    window: Sequence[int],
    pixel_size_A: float | Sequence[float],
    wavelength_A: float,
    dz_A: float | Sequence[float] | Any,
    tilt_mrad: Sequence[float] = (0.0, 0.0),
    xp: ModuleType = np,
    band_limit: float | None = BAND_LIMIT,
) -> Any:
    """Fresnel propagator with crystal tilt, times the circular band limit, FFT order.

    ``P(k) = exp(−iπ dz (λ|k|² + 2 (k_y tan α_y + k_x tan α_x))) · mask(k)``.

    Parameters
    ----------
    window
        ``(Ky, Kx)``.
    pixel_size_A
        Real-space pixel size, Å.
    wavelength_A
        Wavelength, Å.
    dz_A
        Propagation distance in Å; a scalar gives ``(Ky, Kx)``, a sequence of S distances
        gives ``(S, Ky, Kx)``.
    tilt_mrad
        Crystal tilt ``(α_y, α_x)`` in mrad.
    band_limit
        Fraction of Nyquist of the circular mask (:func:`band_limit_mask`), or None for none.
    """
    ny, nx = _window(window)
    ky, kx = spatial_frequencies((ny, nx), pixel_size_A, xp)
    ay, ax = (float(v) * 1e-3 for v in tilt_mrad)
    dz = np.asarray(dz_A, dtype=np.float64)
    arg = wavelength_A * (ky**2 + kx**2) + 2.0 * (ky * math.tan(ay) + kx * math.tan(ax))
    if dz.ndim > 1 or not np.all(np.isfinite(dz)):
        raise InputError(f"dz_A must be a finite scalar or a 1-D sequence, got {dz_A!r}")
    dzx = xp.asarray(dz.reshape(dz.shape + (1, 1)))  # () -> (1, 1), (S,) -> (S, 1, 1)
    prop = xp.exp((-1j * math.pi) * dzx * arg)
    if dz.ndim == 0:
        prop = prop.reshape(ny, nx)
    if band_limit is not None:
        prop = prop * band_limit_mask((ny, nx), pixel_size_A, band_limit, xp)
    return prop
