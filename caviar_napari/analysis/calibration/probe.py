"""A starting probe from a vacuum pattern: measured amplitude, defocus phase.

In vacuum the pattern is the probe's intensity in the far field, ``|ψ(k)|² = A(k)²``, so its
square root is the aperture as it really is (shape, soft edge, any contamination); the phase
cannot be measured this way and is the aberration phase ``−χ(k)`` of the calibrated defocus
(conventions §2: ``ψ(k) = A(k) exp(−iχ(k))``).  The probe is returned as the engine holds it:
real space, ``ifft2`` with ``norm="ortho"``, lens axis at ``[Ky//2, Kx//2]``
(:func:`caviar_napari.core.optics.make_probe`), scaled to a given total power.
"""

from __future__ import annotations

import math

import numpy as np

from caviar_napari.core.optics import aberration_chi, spatial_frequencies
from caviar_napari.errors import InputError

__all__ = ["probe_from_vacuum"]


def probe_from_vacuum(
    vacuum_pattern: np.ndarray,
    *,
    sampling_mrad: tuple[float, float],
    wavelength_A: float,
    defocus_A: float,
    total_intensity: float,
) -> np.ndarray:
    """The probe ``(1, Ky, Kx)`` complex128 of a vacuum pattern (module docstring).

    Parameters
    ----------
    vacuum_pattern
        ``(Ky, Kx)`` mean vacuum pattern in the conventions §2 frame (zero angle at
        ``[Ky//2, Kx//2]``), the same detector grid as the data.
    sampling_mrad
        ``(dky, dkx)``.
    wavelength_A
        λ (Å).
    defocus_A
        Δf = −C10 (Å).
    total_intensity
        ``Σ|ψ|²`` of the result (the data's mean total intensity per pattern).
    """
    pattern = np.asarray(vacuum_pattern, dtype=np.float64)
    if pattern.ndim != 2 or not np.all(np.isfinite(pattern)):
        raise InputError(f"the vacuum pattern must be a finite 2D array, got {pattern.shape}")
    amp = np.sqrt(np.clip(pattern, 0.0, None))
    power = float(np.sum(amp**2))
    if not power > 0:
        raise InputError("the vacuum pattern is zero: no probe can be made from it")
    ky, kx = pattern.shape
    pixel = (
        wavelength_A / (ky * sampling_mrad[0] * 1e-3),
        wavelength_A / (kx * sampling_mrad[1] * 1e-3),
    )
    k = spatial_frequencies((ky, kx), pixel)
    chi = aberration_chi(k, wavelength_A, defocus_A)
    psi_k = np.fft.ifftshift(amp) * np.exp(-1j * chi)
    psi = np.fft.fftshift(np.fft.ifft2(psi_k, norm="ortho"))
    return (psi * math.sqrt(total_intensity / power))[None]
