"""Centre-of-mass field: descan, scan rotation (modulo 180°) and detector transpose.

The centre of mass (CoM) of each pattern, measured from the zero scattering angle, is the
deflection of the beam, ``C = (λ/2π) ∇φ`` averaged over the probe's intensity (conventions
§2: it points from the probe towards an atom, where the phase is positive); for a thin object
this holds at any defocus.  In the scan frame this field is a gradient, so it has no curl — but
only once its components are turned from the detector frame into the scan frame with the right
rotation θ (and, for a transposed detector, after swapping them).  This is the standard DPC
calibration; here it is solved in closed form:

for a field ``C`` and ``V_θ = R(θ)ᵀ C`` (the detector→scan turn of conventions §2),

    curl V_θ = cos θ · curl C + sin θ · div C,

so ``Σ (curl V_θ)²`` is a quadratic form in ``(cos θ, sin θ)`` whose smallest eigenvector is the
best θ (modulo 180°), and its eigenvalue, as a fraction of ``Σ (curl² + div²)`` (which does not
depend on θ), is the curl left over.  The same is done with the components swapped; the
smaller residual says whether the detector is transposed, and the ratio of the two residuals is
the confidence.

The derivatives are fourth-order central differences, which misjudge content near the scan's
Nyquist frequency; a defocused probe puts much of the field there (its intensity has fringes
down to ``λ/2α``), and the misjudged part reads as curl and biases θ (by 0.6° at 100 Å
underfocus on a 0.3 Å scan).  The field is therefore smoothed by a Gaussian of one scan pixel
first: a convolution of a gradient field is a gradient field, so this removes the bias and not
the signal.

The curl-free condition cannot tell θ from θ + 180° (both give a gradient field, of ``φ`` and of
``−φ``); :mod:`.halfturn` decides.  A linear descan (the pattern moving with the scan position)
adds a plane ``c0 + G r`` to the CoM, i.e. constants to its curl and divergence: their means
are removed, so the rotation does not depend on it.  The plane itself is fitted by least squares
(:func:`fit_descan`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from caviar_napari.errors import InputError

__all__ = [
    "DescanFit",
    "RotationFit",
    "curl_fraction",
    "fit_descan",
    "fit_rotation",
    "idpc_phase",
    "integrate_gradient",
    "pattern_signals",
]

#: Width (scan pixels) of the Gaussian that smooths the CoM field before its derivatives.
SMOOTHING_PX = 1.0
#: Below this ratio of the curl residuals the transpose choice is called ambiguous.
TRANSPOSE_MIN_RATIO = 2.0
#: Above this fraction of curl the field is not a phase gradient (noise, thick sample).
CURL_MAX = 0.25


def pattern_signals(
    intensities: np.ndarray,
    centre_px: tuple[float, float],
    dark_mask: np.ndarray | None = None,
    block: int = 16,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Centre of mass and dark-field fraction of every pattern, in one pass over the data.

    Parameters
    ----------
    intensities
        ``(Sy, Sx, Ky, Kx)`` patterns (read in blocks of ``block`` scan rows).
    centre_px
        ``(ky, kx)`` zero angle of the patterns' own axes.
    dark_mask
        ``(Ky, Kx)`` bool, the dark-field pixels; None: no dark-field image.

    Returns
    -------
    com_px
        ``(Sy, Sx, 2)`` centre of mass relative to ``centre_px`` (pixels ``(ky, kx)``).
    dark_fraction
        ``(Sy, Sx)`` intensity on ``dark_mask`` over each pattern's total (so that a beam
        current that drifts does not show), or None.
    """
    sy, sx, ky, kx = intensities.shape
    ay = np.arange(ky, dtype=np.float64) - centre_px[0]
    ax = np.arange(kx, dtype=np.float64) - centre_px[1]
    com = np.empty((sy, sx, 2))
    dark = None if dark_mask is None else np.empty((sy, sx))
    for r0 in range(0, sy, block):
        chunk = np.asarray(intensities[r0 : r0 + block], dtype=np.float64)
        total = chunk.sum(axis=(2, 3))
        total = np.where(total > 0, total, 1.0)
        com[r0 : r0 + block, :, 0] = (chunk.sum(axis=3) @ ay) / total
        com[r0 : r0 + block, :, 1] = (chunk.sum(axis=2) @ ax) / total
        if dark is not None:
            dark[r0 : r0 + block] = chunk[..., dark_mask].sum(axis=-1) / total
    return com, dark


@dataclass(frozen=True)
class DescanFit:
    """Linear descan: pattern centre ``c(r) = offset_px + gradient_px_per_A @ r``.

    Attributes
    ----------
    offset_px
        ``(ky, kx)`` CoM shift at the first scan point (relative to the disc centre it was
        measured from).
    gradient_px_per_A
        ``(2, 2)`` rows ky, kx; columns d/dy, d/dx (scan frame).
    span_px
        Largest change of the centre across the scan (pixels).
    """

    offset_px: tuple[float, float]
    gradient_px_per_A: np.ndarray
    span_px: float


def fit_descan(com_px: np.ndarray, positions_A: np.ndarray) -> DescanFit:
    """Least-squares plane of the CoM over the scan positions (scan frame, from the first)."""
    rel = np.asarray(positions_A, dtype=float) - positions_A[0, 0]
    design = np.column_stack([np.ones(rel[..., 0].size), rel[..., 0].ravel(), rel[..., 1].ravel()])
    coef, *_ = np.linalg.lstsq(design, com_px.reshape(-1, 2), rcond=None)
    gradient = coef[1:].T  # rows ky, kx; columns y, x
    corners = rel.reshape(-1, 2) @ gradient.T
    span = float(np.max(np.linalg.norm(corners - corners[0], axis=1)))
    return DescanFit((float(coef[0, 0]), float(coef[0, 1])), gradient, span)


def _d4(f: np.ndarray, h: float, axis: int) -> np.ndarray:
    """Fourth-order central difference along ``axis`` on the points two away from the edges."""
    n = f.shape[axis]

    def take(a: int, b: int) -> np.ndarray:
        return np.take(f, np.arange(a, n + b), axis=axis)

    d = (-take(4, 0) + 8 * take(3, -1) - 8 * take(1, -3) + take(0, -4)) / (12 * h)
    other = 1 - axis
    return np.take(d, np.arange(2, f.shape[other] - 2), axis=other)


def _derivatives(field: np.ndarray, step: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Curl and divergence of a ``(Sy, Sx, 2)`` field, smoothed by :data:`SMOOTHING_PX`
    (module docstring), on the points two away from the edges (fourth-order central
    differences), each less its mean.

    A linear field (a descan) adds only constants to both, so the means are removed; its
    least-squares plane is also taken out of each component before the smoothing, whose
    edges would bend a plane (and subtracting a linear field changes curl and divergence by
    constants only, which the means remove).
    """
    from scipy.ndimage import gaussian_filter

    sy, sx = field.shape[:2]
    iy, ix = np.meshgrid(np.arange(sy, dtype=float), np.arange(sx, dtype=float), indexing="ij")
    design = np.column_stack([np.ones(sy * sx), iy.ravel(), ix.ravel()])
    coef, *_ = np.linalg.lstsq(design, field.reshape(-1, 2), rcond=None)
    field = field - (design @ coef).reshape(field.shape)
    field = np.stack(
        [gaussian_filter(field[..., a], SMOOTHING_PX, mode="nearest") for a in range(2)], -1
    )
    curl = _d4(field[..., 1], step[0], 0) - _d4(field[..., 0], step[1], 1)
    div = _d4(field[..., 0], step[0], 0) + _d4(field[..., 1], step[1], 1)
    return curl - curl.mean(), div - div.mean()


def _to_scan_frame(field: np.ndarray, theta_deg: float) -> np.ndarray:
    """``R(θ)ᵀ C``: detector-frame vector components → scan frame (conventions §2)."""
    t = math.radians(theta_deg)
    c, s = math.cos(t), math.sin(t)
    fy, fx = field[..., 0], field[..., 1]
    return np.stack([c * fy - s * fx, s * fy + c * fx], axis=-1)


def integrate_gradient(field: np.ndarray, step: tuple[float, float]) -> np.ndarray:
    """The potential ``φ`` of a gradient field ``∇φ`` on a scan grid (least squares, Fourier).

    The field is mirror-extended to twice its size (``φ`` even across each edge, so ``∂φ/∂y``
    odd across the y edges), which makes it periodic without edge jumps; ``φ`` has zero mean.
    """
    fy, fx = field[..., 0], field[..., 1]
    ey = np.block([[fy, fy[:, ::-1]], [-fy[::-1], -fy[::-1, ::-1]]])
    ex = np.block([[fx, -fx[:, ::-1]], [fx[::-1], -fx[::-1, ::-1]]])
    ny, nx = ey.shape
    qy = np.fft.fftfreq(ny, step[0])[:, None]
    qx = np.fft.fftfreq(nx, step[1])[None, :]
    q2 = qy**2 + qx**2
    q2[0, 0] = 1.0
    phi_q = (qy * np.fft.fft2(ey) + qx * np.fft.fft2(ex)) / (2j * math.pi * q2)
    phi_q[0, 0] = 0.0
    phi = np.real(np.fft.ifft2(phi_q))[: fy.shape[0], : fy.shape[1]]
    return phi - phi.mean()


def idpc_phase(
    field_mrad: np.ndarray,
    rotation_deg: float,
    scan_step_A: tuple[float, float],
    wavelength_A: float,
) -> np.ndarray:
    """The integrated-CoM (iDPC) phase ``(Sy, Sx)`` (rad, zero mean, scan frame) of a
    deflection field ``(Sy, Sx, 2)`` mrad given along the detector's (transposed) axes, for the
    scan rotation θ: the field turned by ``R(θ)ᵀ``, scaled by ``2π/λ`` and integrated."""
    scale = 2 * math.pi / wavelength_A * 1e-3  # mrad → rad/Å of phase gradient
    return integrate_gradient(_to_scan_frame(field_mrad, rotation_deg) * scale, scan_step_A)


@dataclass(frozen=True)
class RotationFit:
    """Scan rotation (modulo 180°) and detector transpose from the CoM field.

    Attributes
    ----------
    rotation_deg
        θ of conventions §2 modulo 180°, in ``(−90, 90]``, after the transpose; the
        half-turn is decided by :mod:`.halfturn`.
    transposed
        Whether the detector axes are swapped.
    curl_fraction
        Curl left at the best θ, as a fraction of ``Σ(curl² + div²)`` (0 for a perfect
        gradient field).
    transpose_ratio
        Curl fraction of the other transpose choice over that of this one (≫ 1: sure).
    field_mrad
        ``(Sy, Sx, 2)`` the deflection field the fit used, along the transposed axes (mrad).
    method
        ``"centre of mass"`` (the curl-free fit), or ``"bright-field parallax"`` where that
        was uncertain (:mod:`.parallax_rotation`; ``curl_fraction`` is then the field's at
        the parallax's θ and ``transpose_ratio`` the parallax's).
    """

    rotation_deg: float
    transposed: bool
    curl_fraction: float
    transpose_ratio: float
    field_mrad: np.ndarray
    method: str = "centre of mass"

    @property
    def uncertain(self) -> bool:
        """Whether the curl-free fit cannot be trusted: more than :data:`CURL_MAX` curl, or
        transpose choices closer than :data:`TRANSPOSE_MIN_RATIO`."""
        return self.curl_fraction > CURL_MAX or self.transpose_ratio < TRANSPOSE_MIN_RATIO

    def warnings(self) -> list[str]:
        """What is uncertain about this fit."""
        out = []
        if self.transpose_ratio < TRANSPOSE_MIN_RATIO:
            out.append(
                f"detector transpose uncertain: the curl residuals of the two choices differ "
                f"only by a factor {self.transpose_ratio:.2f}"
            )
        if self.curl_fraction > CURL_MAX:
            out.append(
                f"{100 * self.curl_fraction:.0f}% of the centre-of-mass field is curl at the best "
                "rotation: the field is not a phase gradient (thick sample, noise, or a "
                "geometry the fit does not model)"
            )
        return out


def curl_fraction(
    com_mrad: np.ndarray, scan_step_A: tuple[float, float], rotation_deg: float, transposed: bool
) -> float:
    """The curl left in a CoM field (stored axes) turned by θ after the transpose, as a
    fraction of ``Σ(curl² + div²)`` (module docstring)."""
    field = com_mrad[..., ::-1] if transposed else com_mrad
    curl, div = _derivatives(field, scan_step_A)
    t = math.radians(rotation_deg)
    total = float(np.sum(curl * curl) + np.sum(div * div))
    left = float(np.sum((math.cos(t) * curl + math.sin(t) * div) ** 2))
    return left / total if total > 0 else 1.0


def fit_rotation(com_mrad: np.ndarray, scan_step_A: tuple[float, float]) -> RotationFit:
    """Scan rotation (modulo 180°) and transpose from a CoM field.

    Parameters
    ----------
    com_mrad
        ``(Sy, Sx, 2)`` deflection (mrad) along the patterns' stored axes; a descan plane
        may be left in it (it does not change θ).
    scan_step_A
        ``(dy, dx)`` of the regular scan (Å).

    Returns
    -------
    RotationFit

    Raises
    ------
    InputError
        A scan smaller than 6 × 6 positions.
    """
    if min(com_mrad.shape[:2]) < 6:
        raise InputError(
            f"the scan ({com_mrad.shape[0]} × {com_mrad.shape[1]}) is too small for the "
            "centre-of-mass calibration: at least 6 × 6 positions"
        )
    results = []
    for transposed in (False, True):
        field = com_mrad[..., ::-1] if transposed else com_mrad
        curl, div = _derivatives(field, scan_step_A)
        m = np.array(
            [[np.sum(curl * curl), np.sum(curl * div)], [np.sum(curl * div), np.sum(div * div)]]
        )
        w, v = np.linalg.eigh(m)
        total = float(w.sum())
        frac = float(w[0] / total) if total > 0 else 1.0
        theta = math.degrees(math.atan2(v[1, 0], v[0, 0])) % 180.0
        results.append((frac, transposed, theta, field))
    results.sort(key=lambda r: r[0])
    frac, transposed, theta, field = results[0]
    ratio = results[1][0] / frac if frac > 0 else math.inf
    if theta > 90.0:
        theta -= 180.0
    return RotationFit(
        rotation_deg=float(theta),
        transposed=bool(transposed),
        curl_fraction=frac,
        transpose_ratio=float(ratio),
        field_mrad=np.array(field),
    )
