"""Relativistic wavelength and interaction constant against known values (conventions §1–2)."""

from __future__ import annotations

import pytest

from caviar_napari.core import optics
from caviar_napari.data.beam import interaction_constant, wavelength_A
from caviar_napari.errors import InputError

# Reference values printed by abTEM 1.0.11 (abtem.core.energy.energy2wavelength / energy2sigma),
# an independent implementation of the same relativistic formulas (Kirkland eq. 2.5, 5.6).
ABTEM_WAVELENGTH_200KEV = 0.025079340317328468
ABTEM_SIGMA_200KEV = 0.0007288401085927866
ABTEM_SIGMA_60KEV = 0.0011356905381324882


def test_wavelength_known_values():
    assert wavelength_A(200e3) == pytest.approx(0.02508, abs=5e-6)
    assert wavelength_A(60e3) == pytest.approx(0.04866, abs=5e-6)
    assert wavelength_A(300e3) == pytest.approx(0.01969, abs=5e-6)
    assert wavelength_A(200e3) == pytest.approx(ABTEM_WAVELENGTH_200KEV, rel=1e-7)


def test_interaction_constant_known_values():
    assert interaction_constant(200e3) == pytest.approx(0.000729, rel=2e-3)
    assert interaction_constant(200e3) == pytest.approx(ABTEM_SIGMA_200KEV, rel=1e-7)
    assert interaction_constant(60e3) == pytest.approx(ABTEM_SIGMA_60KEV, rel=1e-7)
    # higher energy: weaker interaction
    assert interaction_constant(300e3) < interaction_constant(200e3)


@pytest.mark.parametrize("bad", [0.0, -5.0, float("nan")])
def test_energy_must_be_positive(bad):
    with pytest.raises(InputError, match="energy_eV"):
        wavelength_A(bad)


def test_core_optics_uses_the_data_layer_formulas():
    assert optics.wavelength_A is wavelength_A
    assert optics.interaction_constant is interaction_constant
