"""napari sample data: the committed demo datasets of every simulation preset.

Each function opens ``resources/<preset>.h5`` (made by ``caviar simulate``, see
``resources/README.md``) and returns its layers (:func:`stem_layer_data`): nothing is simulated
at start-up.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from caviar_napari._napari.stem_layers import LayerDataTuple, stem_layer_data
from caviar_napari.errors import InputError

__all__ = [
    "demo_path",
    "hbn_bilayer_gap",
    "hbn_correlated",
    "hbn_correlated_psc",
    "hbn_einstein",
    "hbn_static",
    "hbn_twisted_bilayer",
    "si110_static",
]


def demo_path(preset: str) -> Path:
    """Path of the committed demo file of ``preset`` (``resources/<preset>.h5``).

    Raises
    ------
    InputError
        If the file is not installed (the message gives the command that makes it).
    """
    path = Path(str(resources.files("caviar_napari") / "resources" / f"{preset}.h5"))
    if not path.is_file():
        raise InputError(
            f"{path}: demo dataset of preset {preset!r} not found; make it with "
            f"`caviar simulate {preset} --out {path}` (see resources/README.md)"
        )
    return path


def _layers(preset: str) -> list[LayerDataTuple]:
    return stem_layer_data(demo_path(preset))


def hbn_static() -> list[LayerDataTuple]:
    """hBN monolayer, 60 kV, no vibrations."""
    return _layers("hbn-static")


def hbn_einstein() -> list[LayerDataTuple]:
    """hBN monolayer, 60 kV, uncorrelated (Einstein) vibrations at 300 K."""
    return _layers("hbn-einstein")


def hbn_correlated() -> list[LayerDataTuple]:
    """hBN monolayer, 60 kV, correlated (harmonic lattice) vibrations at 300 K."""
    return _layers("hbn-correlated")


def hbn_correlated_psc() -> list[LayerDataTuple]:
    """hBN monolayer, correlated vibrations and partial spatial coherence (47 pm FWHM)."""
    return _layers("hbn-correlated-psc")


def si110_static() -> list[LayerDataTuple]:
    """Si [110], about 3 nm thick, 200 kV, static: a multislice test."""
    return _layers("si110-static")


def hbn_bilayer_gap() -> list[LayerDataTuple]:
    """Two hBN layers 120 Å apart along the beam, laterally shifted, different correlations."""
    return _layers("hbn-bilayer-gap")


def hbn_twisted_bilayer() -> list[LayerDataTuple]:
    """Two hBN layers 120 Å apart along the beam, twisted by 13.17°, independent fields."""
    return _layers("hbn-twisted-bilayer")
