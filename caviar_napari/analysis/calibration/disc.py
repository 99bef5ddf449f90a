"""The bright-field disc of the mean pattern: centre, radii, ellipticity, and the check of the
stated convergence angle and detector sampling against it.

The disc's edge is the contour of the mean pattern at half the way from the dark background
to the bright-field plateau (sub-pixel, linear interpolation between pixels); an ellipse is
fitted to it by direct least squares (Fitzgibbon, Pilu & Fisher 1999), which cannot return
anything but an ellipse.  A soft-edged aperture is at its nominal angle at half height, so the
fitted semi-axes measure α in pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from caviar_napari.errors import InputError

__all__ = ["DiscFit", "fit_disc", "mean_pattern"]

#: Relative disagreement between the measured and the expected disc radius that is warned of.
RADIUS_RTOL = 0.05


def mean_pattern(intensities: np.ndarray, block: int = 16) -> np.ndarray:
    """Mean over scan positions of ``(Sy, Sx, Ky, Kx)`` patterns, float64, read in blocks."""
    data = intensities
    total = np.zeros(data.shape[2:], dtype=np.float64)
    for r0 in range(0, data.shape[0], block):
        total += np.asarray(data[r0 : r0 + block], dtype=np.float64).sum(axis=(0, 1))
    return total / float(data.shape[0] * data.shape[1])


@dataclass(frozen=True)
class DiscFit:
    """The bright-field disc of a mean pattern (pixels of the patterns it was fitted on).

    Attributes
    ----------
    centre_px
        ``(ky, kx)`` centre (the zero scattering angle).
    semi_axes_mrad
        ``(a, b)`` semi-major and semi-minor axes (mrad: the ellipse is fitted in angles, so
        pixels of different sizes along ky and kx do not make it elliptical).
    angle_deg
        Direction of the major axis, from +kx towards +ky (in angles).
    extent_px
        ``(ry, rx)`` half-extent of the ellipse along ky and kx (what α / dk predicts).
    expected_px
        ``(α/dky, α/dkx)`` from the stated convergence angle and sampling.
    edge_rms_px
        Rms distance of the edge points from the ellipse (a fit residual).
    n_edge
        Number of edge points.
    """

    centre_px: tuple[float, float]
    semi_axes_mrad: tuple[float, float]
    angle_deg: float
    extent_px: tuple[float, float]
    expected_px: tuple[float, float]
    edge_rms_px: float
    n_edge: int

    @property
    def radius_mrad(self) -> float:
        """Geometric-mean radius ``sqrt(a b)`` (mrad): the measured convergence angle."""
        return math.sqrt(self.semi_axes_mrad[0] * self.semi_axes_mrad[1])

    @property
    def ellipticity(self) -> float:
        """``(a − b) / (a + b)`` (0 for a circle)."""
        a, b = self.semi_axes_mrad
        return (a - b) / (a + b)

    @property
    def centre_stderr_px(self) -> float:
        """Standard error of the centre (edge residual over the square root of the points)."""
        return self.edge_rms_px / math.sqrt(max(self.n_edge / 2.0, 1.0))

    def check(self, convergence_mrad: float, sampling_mrad: tuple[float, float]) -> list[str]:
        """Warnings where the disc disagrees with the stated α and sampling (relative
        :data:`RADIUS_RTOL` plus one pixel)."""
        out = []
        for axis, name in ((0, "ky"), (1, "kx")):
            got, want = self.extent_px[axis], self.expected_px[axis]
            if abs(got - want) > RADIUS_RTOL * want + 1.0:
                out.append(
                    f"the bright-field disc's radius along {name} is {got:.2f} px but the stated "
                    f"convergence angle {convergence_mrad:g} mrad and sampling "
                    f"{sampling_mrad[axis]:.4g} mrad/px predict {want:.2f} px: one of them is "
                    f"wrong (with this α the sampling would be "
                    f"{convergence_mrad / got:.4g} mrad/px)"
                )
        if self.ellipticity > 0.02:
            out.append(
                f"the bright-field disc is elliptical ({self.ellipticity:.3f}, major axis at "
                f"{self.angle_deg:.1f}°): the detector has a projector distortion that the "
                "reconstruction does not model"
            )
        return out


def _edge_points(pattern: np.ndarray) -> np.ndarray:
    """Sub-pixel ``(ky, kx)`` points of the disc's half-height contour (the longest one)."""
    from skimage.measure import find_contours

    top = float(pattern.max())
    if not top > 0:
        raise InputError("the mean pattern is zero: no bright-field disc to fit")
    plateau = float(np.median(pattern[pattern > 0.5 * top]))
    background = (
        float(np.median(pattern[pattern < 0.5 * top])) if np.any(pattern < 0.5 * top) else 0.0
    )
    level = 0.5 * (plateau + background)
    contours = find_contours(pattern, level)
    if not contours:
        raise InputError("no bright-field disc edge found in the mean pattern")
    edge = max(contours, key=len)
    if len(edge) < 8:
        raise InputError(
            f"the bright-field disc edge has only {len(edge)} points: the disc is too small "
            "on this detector to be fitted"
        )
    return edge


def _fit_ellipse(points: np.ndarray) -> tuple[float, float, float, float, float]:
    """Direct least-squares ellipse: ``(cy, cx, a, b, angle_rad)``, angle of the major axis
    from +x towards +y."""
    y, x = points[:, 0], points[:, 1]
    my, mx = y.mean(), x.mean()
    sc = max(np.std(y), np.std(x), 1e-12)
    yy, xx = (y - my) / sc, (x - mx) / sc
    d1 = np.column_stack([xx * xx, xx * yy, yy * yy])
    d2 = np.column_stack([xx, yy, np.ones_like(xx)])
    s1, s2, s3 = d1.T @ d1, d1.T @ d2, d2.T @ d2
    t = -np.linalg.solve(s3, s2.T)
    m = s1 + s2 @ t
    m = np.array([m[2] / 2.0, -m[1], m[0] / 2.0])
    _, vecs = np.linalg.eig(m)
    vecs = np.real(vecs)
    cond = 4 * vecs[0] * vecs[2] - vecs[1] ** 2
    if not np.any(cond > 0):
        raise InputError("the bright-field disc edge is not an ellipse")
    a1 = vecs[:, int(np.argmax(cond))]
    A, B, C = a1
    D, E, F = t @ a1
    # centre and axes of A x² + B x y + C y² + D x + E y + F = 0 (scaled coordinates)
    den = B * B - 4 * A * C
    cx = (2 * C * D - B * E) / den
    cy = (2 * A * E - B * D) / den
    f0 = A * cx * cx + B * cx * cy + C * cy * cy + D * cx + E * cy + F
    lam = np.linalg.eigvalsh(np.array([[A, B / 2], [B / 2, C]]))
    axes = np.sqrt(np.abs(-f0 / lam))
    w, v = np.linalg.eigh(np.array([[A, B / 2], [B / 2, C]]))
    major = v[:, int(np.argmin(np.abs(w)))]  # smallest curvature = longest axis
    angle = math.atan2(major[1], major[0]) % math.pi
    a, b = float(np.max(axes)) * sc, float(np.min(axes)) * sc
    return float(cy * sc + my), float(cx * sc + mx), a, b, angle


def fit_disc(
    pattern: np.ndarray, convergence_mrad: float, sampling_mrad: tuple[float, float]
) -> DiscFit:
    """Fit the bright-field disc of a mean pattern.

    Parameters
    ----------
    pattern
        ``(Ky, Kx)`` mean pattern.
    convergence_mrad
        Stated α (mrad).
    sampling_mrad
        Stated ``(dky, dkx)`` (mrad per pixel).

    Returns
    -------
    DiscFit
        Centre, axes and residual; :meth:`DiscFit.check` compares them with α and the sampling.
    """
    edge = _edge_points(np.asarray(pattern, dtype=np.float64))
    samp = np.asarray(sampling_mrad, dtype=float)
    pts = edge * samp  # mrad: the ellipse is physical, whatever the pixels' aspect
    cy, cx, a, b, ang = _fit_ellipse(pts)
    ry = math.sqrt((a * math.sin(ang)) ** 2 + (b * math.cos(ang)) ** 2)
    rx = math.sqrt((a * math.cos(ang)) ** 2 + (b * math.sin(ang)) ** 2)
    # residual: radial mismatch of each edge point, in mrad, then in mean pixels
    dy, dx = pts[:, 0] - cy, pts[:, 1] - cx
    u = dx * math.cos(ang) + dy * math.sin(ang)
    v = -dx * math.sin(ang) + dy * math.cos(ang)
    rho = np.hypot(u, v)
    phi = np.arctan2(v, u)
    r_ell = a * b / np.hypot(b * np.cos(phi), a * np.sin(phi))
    rms = float(np.sqrt(np.mean((rho - r_ell) ** 2))) / float(np.mean(samp))
    return DiscFit(
        centre_px=(cy / samp[0], cx / samp[1]),
        semi_axes_mrad=(a, b),
        angle_deg=math.degrees(ang),
        extent_px=(ry / samp[0], rx / samp[1]),
        expected_px=(convergence_mrad / samp[0], convergence_mrad / samp[1]),
        edge_rms_px=rms,
        n_edge=int(edge.shape[0]),
    )
