"""Probe constraints built into the probe the forward model sees.

The optimiser's ``probe`` block holds free modes ``p``; the model sees

    p' = F⁻¹[M · F p]                (``probe_support: aperture``; else p' = p)
    p'' = c p',  c = sqrt(I₀ / Σ_modes |p'|²)   (``fixed_probe_intensity``; else c = 1)

with ``M`` the condenser aperture (:func:`caviar_napari.core.optics.aperture`) widened by
:data:`APERTURE_MARGIN`, and ``I₀`` the data's mean pattern total. Both maps are projections
(``p'' = P(p)`` gives ``P(p'') = p''``), so a probe that satisfies them is left as it is.

Gradients (Wirtinger, conventions §2): with ``g'' = ∂L/∂p''*``

    g' = c g'' − (c / N) Re⟨p', g''⟩ p',   N = Σ|p'|²
    g  = F⁻¹[M · F g']

(``M`` real, so the masking is self-adjoint).
"""

from __future__ import annotations

import math
from typing import Any

from caviar_napari.core import optics
from caviar_napari.core.backend import Backend

__all__ = ["APERTURE_MARGIN", "ProbeConstraint"]

#: The support is the aperture of this many times the convergence semi-angle (room for a
#: slightly larger real aperture or a blurred edge).
APERTURE_MARGIN = 1.1


class ProbeConstraint:
    """The map from free probe modes to the constrained modes the model sees.

    Parameters
    ----------
    backend
        Array backend.
    window
        ``(Ky, Kx)`` probe window.
    pixel_size_A
        ``(dy, dx)``, Å.
    wavelength_A
        Electron wavelength, Å.
    convergence_mrad
        Condenser convergence semi-angle α, mrad; None without a support constraint.
    intensity
        Total intensity ``I₀`` the modes are scaled to; None without that constraint.
    """

    def __init__(
        self,
        backend: Backend,
        window: tuple[int, int],
        pixel_size_A: tuple[float, float],
        wavelength_A: float,
        convergence_mrad: float | None = None,
        intensity: float | None = None,
    ) -> None:
        self.backend = backend
        self.mask = None
        if convergence_mrad is not None:
            m = optics.aperture(
                window, pixel_size_A, wavelength_A, APERTURE_MARGIN * convergence_mrad
            )
            # a hard edge, so that the support is a projection (M² = M)
            self.mask = backend.xp.asarray(m >= 0.5, dtype=backend.real_dtype)
        self.intensity = None if intensity is None else float(intensity)

    @property
    def active(self) -> bool:
        """Whether any constraint is on."""
        return self.mask is not None or self.intensity is not None

    def _support(self, p: Any) -> Any:
        if self.mask is None:
            return p
        be = self.backend
        return be.ifft2(be.fft2(p) * self.mask, overwrite=True).astype(p.dtype, copy=False)

    def _scale(self, p: Any) -> tuple[float, float]:
        """``(c, N)`` of the intensity constraint at the supported modes ``p``."""
        n = float(self.backend.xp.sum(p.real**2 + p.imag**2))
        if self.intensity is None or n <= 0:
            return 1.0, n
        return math.sqrt(self.intensity / n), n

    def apply(self, probe: Any) -> Any:
        """The constrained modes ``p''`` of the free modes ``probe`` ``(M, Ky, Kx)``."""
        p = self._support(probe)
        c, _ = self._scale(p)
        return p * c if c != 1.0 else p

    def gradient(self, probe: Any, g_model: Any) -> Any:
        """``∂L/∂p*`` of the free modes from ``∂L/∂p''*`` (``g_model``)."""
        xp = self.backend.xp
        p = self._support(probe)
        g = g_model
        if self.intensity is not None:
            c, n = self._scale(p)
            overlap = float(xp.sum((p.conj() * g_model).real))
            g = c * g_model - (c / n * overlap) * p
        return self._support(g)
