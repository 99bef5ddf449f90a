"""napari reader hook of ATOMS files: the layers of :mod:`caviar_napari.viewmodels.atoms_layers`.

The layers are ``<name> atoms`` (mean positions, carrying the whole
:class:`~caviar_napari.io.atoms_file.AtomsData` under ``metadata["caviar_atoms"]``, the source the
Correlations and Dispersion docks read), ``<name> atoms per state`` and ``<name> lattice``.  A
file of several z-ranges (``caviar atoms --zrange``) gives these three layers for every range,
``<name> [<label>] atoms`` …; the per-state points of a range sit on its slices.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from caviar_napari.viewmodels.atoms_layers import (
    LayerDataTuple,
    lattice_layer,
    mean_points_layer,
    point_size_A,
    states_points_layer,
)
from caviar_napari.viewmodels.layer_keys import ATOMS_METADATA_KEY, PATH_KEY

if TYPE_CHECKING:
    from caviar_napari.data.atoms import AtomsData

__all__ = ["ATOMS_METADATA_KEY", "atoms_layer_data"]


def atoms_layer_data(path: str | os.PathLike) -> list[LayerDataTuple]:
    """Reader hook: the layers of a conventions §6 ATOMS file (see the module docstring)."""
    from caviar_napari.io.atoms_file import read_atoms_zranges

    ranges = read_atoms_zranges(path)
    stem = Path(path).stem
    layers = []
    for label, atoms in ranges.items():
        name = f"{stem} [{label}]" if len(ranges) > 1 else stem
        layers += _range_layers(atoms, name, str(path))
    return layers


def _range_layers(atoms: AtomsData, name: str, path: str) -> list[LayerDataTuple]:
    """The layers of one z-range (or of a file without z-ranges)."""
    from caviar_napari.analysis.atoms import rms_spread_A

    spread_pm = 100.0 * rms_spread_A(atoms.positions_A)
    refined = np.all(np.isfinite(atoms.mean_positions_A), axis=1)
    shown = np.where(refined[:, None], atoms.mean_positions_A, 0.0)
    size = point_size_A(atoms.mean_positions_A)
    mean_layer = mean_points_layer(
        shown[refined],
        name=f"{name} atoms",
        spread_pm=spread_pm[refined],
        refined=refined[refined],
        cell_index=None if atoms.cell_index is None else atoms.cell_index[refined],
        basis_index=None if atoms.basis_index is None else atoms.basis_index[refined],
        species=None if atoms.species is None else atoms.species[refined],
        size_A=size,
    )
    mean_layer[1]["features"]["atom"] = np.flatnonzero(refined)  # index into the file's atoms
    mean_layer[1]["metadata"][ATOMS_METADATA_KEY] = atoms
    mean_layer[1]["metadata"][PATH_KEY] = path
    offset = 0 if atoms.zrange is None else atoms.zrange.start
    layers = [
        mean_layer,
        states_points_layer(
            atoms.positions_A,
            spread_pm,
            name=f"{name} atoms per state",
            size_A=size,
            slice_offset=offset,
        ),
    ]
    if atoms.lattice_vectors_A is not None:
        layers.append(
            lattice_layer(atoms.lattice_vectors_A, atoms.mean_positions_A, name=f"{name} lattice")
        )
    for _data, kwargs, _kind in layers:  # positions in Å: the scale bar says so
        kwargs.setdefault(
            "units", ("pixel",) * (len(kwargs.get("axis_labels", "yx")) - 2) + ("Å", "Å")
        )
    return layers
