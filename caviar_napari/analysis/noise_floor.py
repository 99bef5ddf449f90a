"""Are the displacements above the positional noise floor? (issue 12; conventions §4).

A displacement field measured as ``u = v + e`` (the atoms' motion ``v`` and a positional error
``e`` of rms ``σ`` per direction, independent between measurements) has a Green's tensor whose
self entries are ``⟨v²⟩ + σ²``; cross entries of different atoms are not raised.  When ``σ²`` is
a large part of the measured ``⟨u²⟩``, the B factors are noise and the correlations are those of
noise.  The share ``σ² / ⟨u²⟩`` (the **noise fraction**) is reported, and a warning is given when
it reaches :data:`NOISE_FRACTION_LIMIT`.

Where ``σ`` comes from, in this order:

1. **given** (``caviar correlations/dispersion --noise-floor-A``): for example the rms
   displacement per direction of a static control (a static specimen, or the static preset,
   reconstructed and analysed the same way) — for a static sample the states' spread *is* the
   floor;
2. **between slices** (:func:`slice_noise_A`), when two or more slices are used: the slices of
   one state measure the same thermal configuration, so the spread of an atom's displacement
   between the slices of one state, ``σ² = mean over states and atoms of var_slices(u)``, is the
   part of the measurement that is not repeated.  It is exact when the slices image the same
   atoms (a monolayer, or slices thinner than the depth resolution) and an upper bound when
   different slices hold different atoms that move independently (a thick crystal); the message
   says so.

With one slice and no given floor, the positions alone cannot separate noise from motion (both
are random per state and atom): no floor is claimed, and the summary says how to supply one.
The reconstruction's own verdict (its state-separation report, when the RECON file has one) is
checked by the workflows (:mod:`caviar_napari.workflows.noise_floor`).

A physical floor applies whatever the noise (:func:`physical_floor_warnings`): no atom in a solid
moves less than its zero-point motion.  An oscillator of stiffness K has
``⟨u²⟩ ≥ ħ / (2 sqrt(m K))`` per direction (its ground state; temperature only adds), and no atom
feels more than ``K_max = 500 eV/Å²``
(:data:`~caviar_napari.analysis.dispersion_checks.MAX_STIFFNESS_EV_PER_A2`): 2.1 pm for boron,
1.0 pm for the heaviest atoms (240 amu, used when the species are unknown).  Displacements below
:data:`ZERO_POINT_FRACTION` of that cannot be vibrations (classical simulations below ~10 K
excepted, which have no zero-point motion): the states did not separate, or they lost the
amplitude.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike
from scipy import constants

from caviar_napari.analysis.dispersion_checks import MAX_STIFFNESS_EV_PER_A2
from caviar_napari.data.correlations import NoiseFloor
from caviar_napari.errors import InputError

__all__ = [
    "HEAVIEST_ATOM_AMU",
    "NOISE_FRACTION_LIMIT",
    "ZERO_POINT_FRACTION",
    "assess_noise_floor",
    "noise_floor_lines",
    "noise_floor_warnings",
    "physical_floor_warnings",
    "rms_displacement_A",
    "slice_noise_A",
    "zero_point_rms_A",
]

#: Noise fraction σ²/⟨u²⟩ from which the displacements are "at the noise floor".
NOISE_FRACTION_LIMIT = 0.5

#: The method text of the between-slices estimate.
SLICE_METHOD = "spread between the slices of each state"

#: Mass assumed when the species are unknown (amu): the heaviest atoms.
HEAVIEST_ATOM_AMU = 240.0

#: Displacements below this fraction of the smallest zero-point rms cannot be vibrations.
ZERO_POINT_FRACTION = 0.5


def zero_point_rms_A(
    mass_amu: float, stiffness_eV_per_A2: float = MAX_STIFFNESS_EV_PER_A2
) -> float:
    """Zero-point rms displacement per direction of an oscillator, ``sqrt(ħ / (2 sqrt(m K)))``, Å.

    Parameters
    ----------
    mass_amu
        Mass, amu.
    stiffness_eV_per_A2
        Stiffness K, eV/Å² (default: the largest any atom feels in a solid).
    """
    m = float(mass_amu) * constants.atomic_mass
    k = float(stiffness_eV_per_A2) * constants.e / 1e-20
    return float(math.sqrt(constants.hbar / (2.0 * math.sqrt(m * k))) * 1e10)


def physical_floor_warnings(rms_A: float, masses_amu: ArrayLike | None = None) -> list[str]:
    """A warning when the rms displacement is below what any vibration gives (module docstring).

    Parameters
    ----------
    rms_A
        rms displacement per direction, Å.
    masses_amu
        Masses of the atoms (the heaviest sets the floor); None or empty: unknown, the heaviest
        atoms are assumed.
    """
    masses = np.asarray([] if masses_amu is None else masses_amu, dtype=float).ravel()
    masses = masses[np.isfinite(masses) & (masses > 0)]
    heaviest = float(masses.max()) if masses.size else HEAVIEST_ATOM_AMU
    floor = zero_point_rms_A(heaviest)
    if not (math.isfinite(rms_A) and rms_A < ZERO_POINT_FRACTION * floor):
        return []
    which = f"atoms of {heaviest:.4g} amu" if masses.size else "any atom (up to 240 amu)"
    return [
        f"displacements below any vibration: rms {100 * rms_A:.2f} pm per direction, while the "
        f"zero-point motion of {which} in any solid is at least {100 * floor:.2f} pm: the object "
        "states do not describe the vibrations (they did not separate, or lost the amplitude)"
    ]


def rms_displacement_A(u_A: ArrayLike) -> float:
    """rms displacement per direction, Å: ``sqrt(mean u²)`` over states, slices and dofs.

    ``u_A`` are the displacements of eq. 1 (their square's mean is the mean diagonal of G).
    """
    u = np.asarray(u_A, dtype=float)
    return float(np.sqrt(np.mean(u * u))) if u.size else math.nan


def slice_noise_A(u_A: ArrayLike) -> float | None:
    """rms per direction of the part of the displacement not repeated between slices, Å.

    Parameters
    ----------
    u_A
        ``(N, s, D)`` displacements per state, slice and dof.

    Returns
    -------
    float or None
        ``sqrt(mean over states and dofs of the unbiased variance over slices)``; None for one
        slice.
    """
    u = np.asarray(u_A, dtype=float)
    if u.ndim != 3:
        raise InputError(f"displacements must be (state, slice, dof), got shape {u.shape}")
    if u.shape[1] < 2 or u.size == 0:
        return None
    return float(np.sqrt(np.mean(np.var(u, axis=1, ddof=1))))


def assess_noise_floor(
    rms_A: float,
    *,
    given_A: float | None = None,
    given_source: str = "",
    slice_noise: float | None = None,
) -> NoiseFloor:
    """Combine the available estimates of the floor (module docstring) with the rms displacement.

    Parameters
    ----------
    rms_A
        rms displacement per direction of the data, Å.
    given_A
        A floor given by the user (e.g. a static control's rms displacement), Å.
    given_source
        What ``given_A`` is (for the messages).
    slice_noise
        :func:`slice_noise_A` of the data (None for one slice).
    """
    if given_A is not None:
        g = float(given_A)
        if not (math.isfinite(g) and g >= 0):
            raise InputError(f"noise floor must be ≥ 0 Å, got {given_A!r}")
        floor, method = g, f"given ({given_source})" if given_source else "given"
    elif slice_noise is not None:
        floor = float(slice_noise)
        method = SLICE_METHOD
    else:
        floor, method = math.nan, "unknown"
    rms = float(rms_A)
    with np.errstate(invalid="ignore", divide="ignore"):
        fraction = floor**2 / rms**2 if rms > 0 else (math.inf if floor > 0 else math.nan)
    return NoiseFloor(
        floor_A=floor, method=method, rms_displacement_A=rms, noise_fraction=float(fraction)
    )


def noise_floor_lines(floor: NoiseFloor) -> list[str]:
    """The summary lines of a noise-floor assessment."""
    rms_pm = 100 * floor.rms_displacement_A
    if not math.isfinite(floor.floor_A):
        return [
            f"noise floor: unknown (one slice, no floor given): the rms displacement "
            f"{rms_pm:.2f} pm per direction cannot be told from positional noise here; give "
            "--noise-floor-A (e.g. the rms of a static control analysed the same way)"
        ]
    caveat = (
        " (exact when the slices image the same atoms, an upper bound when they hold different "
        "atoms that move independently)"
        if floor.method == SLICE_METHOD
        else ""
    )
    return [
        f"noise floor: {100 * floor.floor_A:.2f} pm per direction, {floor.method}{caveat}; rms "
        f"displacement {rms_pm:.2f} pm; noise fraction σ²/⟨u²⟩ = {floor.noise_fraction:.2f}"
    ]


def noise_floor_warnings(floor: NoiseFloor, limit: float = NOISE_FRACTION_LIMIT) -> list[str]:
    """A warning when the noise fraction reaches ``limit`` (nothing when the floor is unknown)."""
    if not (math.isfinite(floor.floor_A) and floor.noise_fraction >= limit):
        return []
    return [
        f"displacements at the noise floor: rms {100 * floor.rms_displacement_A:.2f} pm per "
        f"direction against a positional noise of {100 * floor.floor_A:.2f} pm "
        f"({floor.method}); noise accounts for {100 * min(floor.noise_fraction, 1.0):.0f} % of "
        "the measured variance, so B factors and correlations are dominated by noise"
    ]
