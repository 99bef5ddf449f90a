"""The electron beam: relativistic wavelength and interaction constant (conventions §1–2).

Units: energies in eV, lengths in Å.  These formulas are part of the data layer because a
dataset's calibration needs them (detector angles ↔ spatial frequencies,
:attr:`caviar_napari.data.dataset.STEMDataset.reciprocal_sampling_invA`);
:mod:`caviar_napari.core.optics` builds the probe and propagators on them.
"""

from __future__ import annotations

import math

from caviar_napari.errors import InputError

__all__ = ["ELECTRON_REST_ENERGY_EV", "HC_EV_A", "interaction_constant", "wavelength_A"]

# physical constants (CODATA 2018)
#: h·c in eV·Å.
HC_EV_A = 12398.419843320026
#: Electron rest energy m0·c² in eV.
ELECTRON_REST_ENERGY_EV = 510998.95000


def _check_energy(energy_eV: float) -> float:
    e = float(energy_eV)
    if not math.isfinite(e) or e <= 0:
        raise InputError(f"energy_eV must be a positive number of eV, got {energy_eV!r}")
    return e


def wavelength_A(energy_eV: float) -> float:
    """Relativistic electron wavelength in Å.

    ``λ = h c / sqrt(E (2 m0c² + E))``; e.g. 0.02508 Å at 200 keV, 0.04866 Å at 60 keV.

    Parameters
    ----------
    energy_eV
        Kinetic energy of the beam electrons, eV.

    Raises
    ------
    InputError
        ``energy_eV`` is not a finite positive number.
    """
    e = _check_energy(energy_eV)
    return HC_EV_A / math.sqrt(e * (2.0 * ELECTRON_REST_ENERGY_EV + e))


def interaction_constant(energy_eV: float) -> float:
    """Relativistic interaction constant σ in rad/(V·Å) (Kirkland eq. 5.6).

    ``σ = 2π m e λ / h² = (2π / (λ E)) (m0c² + E) / (2 m0c² + E)``, with E in eV so that
    ``e·V`` is in eV; σ(200 keV) ≈ 7.29e-4 rad/(V·Å).  The transmission of a slice of projected
    potential ``V`` (V·Å) is ``exp(iσV)``: the phase is positive on atoms.

    Parameters
    ----------
    energy_eV
        Kinetic energy of the beam electrons, eV.
    """
    e = _check_energy(energy_eV)
    lam = wavelength_A(e)
    mc2 = ELECTRON_REST_ENERGY_EV
    return 2.0 * math.pi / (lam * e) * (mc2 + e) / (2.0 * mc2 + e)
