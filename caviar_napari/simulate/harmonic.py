"""Re-export shim: the harmonic phonon model now lives in :mod:`caviar_napari.analysis.phonons`.

Kept only so that existing imports (``_qt/dispersion_widget.py``, ``validation.py``, scripts and
tests of other parts) keep working until the lead's final import sweep; new code imports
:mod:`caviar_napari.analysis.phonons` directly.
"""

from __future__ import annotations

from caviar_napari.analysis.phonons import (
    KB_EV_PER_K,
    STANDARD_ATOMIC_WEIGHTS_AMU,
    THZ_PER_SQRT_EIGENVALUE,
    Bonds,
    HarmonicLattice,
    Spring,
    Supercell,
    commensurate_q_frac,
    eigenvalues_to_THz,
    reciprocal_vectors,
    standard_mass_amu,
)

__all__ = [
    "KB_EV_PER_K",
    "STANDARD_ATOMIC_WEIGHTS_AMU",
    "THZ_PER_SQRT_EIGENVALUE",
    "Bonds",
    "HarmonicLattice",
    "Spring",
    "Supercell",
    "commensurate_q_frac",
    "eigenvalues_to_THz",
    "reciprocal_vectors",
    "standard_mass_amu",
]
