"""The contents of a DIAG file (``caviar diagnostics``, conventions §6 kind ``diag``).

Numbers and curves of the paper's Fig. 3 for one reconstruction: the power spectrum averaged over
slices and states with the information limit, the 3-D power against k_z with the depth
resolution of chosen reflections, the r–z phase maps of z-ranges, and the optics' limits they
are checked against.  Computed by :mod:`caviar_napari.analysis.diagnostics`, written by
:mod:`caviar_napari.io.diagnostics_file`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["DiagnosticsData", "ReflectionDepth", "ZRangeProfile"]


@dataclass(frozen=True)
class ReflectionDepth:
    """Depth resolution from the k_z profile of one reflection
    (:func:`caviar_napari.analysis.diagnostics.depth_resolution`).

    Attributes
    ----------
    q_invA
        Centre of the ring nearest the requested reflection (the frequency measured; the
        optics' value is given for it).
    kz_half_invA
        ``k_z,half``: where the profile falls to half its ``k_z = 0`` value (NaN when it does
        not within the sampled k_z).
    dz_A
        ``1 / k_z,half``; with ``bound = "at most"`` twice the slice thickness (the profile did
        not fall to one half within the sampled k_z); with ``"at least"`` the fall happened
        before the first k_z sample (interpolated towards k_z = 0: a lower bound).
    optics_dz_A
        The bright-field ``Δz(q) = 2 / (q (2α − λq))``.
    single_scattering_dz_A
        ``Δz_ss(q) = 2 / (q (2α + λq))``.
    bound
        ``""``, ``"at most"`` or ``"at least"``.
    profile
        ``(n_z,)`` the profile ``P(q, k_z)`` normalised to 1 at ``k_z = 0``.
    """

    q_invA: float
    kz_half_invA: float
    dz_A: float
    optics_dz_A: float
    bound: str
    profile: np.ndarray
    single_scattering_dz_A: float = float("nan")


@dataclass(frozen=True)
class ZRangeProfile:
    """r–z phase map around the atomic columns of one z-range (``analysis.diagnostics.RZMap``)."""

    label: str
    slices: str
    r_A: np.ndarray
    z_A: np.ndarray
    phase: np.ndarray
    column_profile: np.ndarray
    n_columns: int


@dataclass(frozen=True)
class DiagnosticsData:
    """Everything ``caviar diagnostics`` measures (units: Å, 1/Å, rad, mrad).

    Attributes
    ----------
    numbers
        Scalar results and the optics' limits, by name (JSON-safe): ``wavelength_A``,
        ``alpha_mrad``, ``detector_mrad``, ``information_limit_A``, ``information_limit_pm``,
        ``d_over_wavelength``, ``information_bound``, ``double_aperture_limit_A``,
        ``detector_limit_A``, ``depth_of_field_A``, ``information_criterion``,
        ``depth_criterion`` …
    power
        ``(Ky, Kx)`` fft-shifted power spectrum averaged over slices and states.
    power_pixel_invA
        ``(dky, dkx)``.
    k_invA, radial_mean, radial_max
        Its rings.
    kz_k_r_invA, kz_k_z_invA, kz_power
        ``P(k_r, k_z)`` ``(n_z, n_r)``; empty arrays for a one-slice reconstruction.
    reflections
        Depth resolution per reflection.
    zranges
        r–z maps per z-range.
    source
        The reconstruction file.
    """

    numbers: dict[str, Any]
    power: np.ndarray
    power_pixel_invA: tuple[float, float]
    k_invA: np.ndarray
    radial_mean: np.ndarray
    radial_max: np.ndarray
    kz_k_r_invA: np.ndarray
    kz_k_z_invA: np.ndarray
    kz_power: np.ndarray
    reflections: tuple[ReflectionDepth, ...] = ()
    zranges: tuple[ZRangeProfile, ...] = ()
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
