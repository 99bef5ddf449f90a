"""Reading the inputs the analysis steps share, with the checks every step needs.

An ATOMS file with no atoms is an error; positions that are not finite (``±Inf`` in a file
written by another program, NaN where a refinement failed) are excluded explicitly and counted,
never passed on as numbers.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

import numpy as np

from caviar_napari.errors import InputError
from caviar_napari.io.atoms_file import AtomsData

__all__ = ["CheckedAtoms", "index_list", "range_slices", "read_checked_atoms"]


def index_list(indices: np.ndarray, limit: int = 20) -> str:
    """``"3, 7, 9"`` (the first ``limit``, then the count)."""
    shown = ", ".join(str(i) for i in indices[:limit])
    return shown + (f", … ({indices.size} in all)" if indices.size > limit else "")


@dataclass(frozen=True)
class CheckedAtoms:
    """An ATOMS file's contents with infinite positions turned into NaN (excluded).

    Attributes
    ----------
    atoms
        The data; every ``±Inf`` position (per state and slice, or mean) is NaN.
    infinite_atoms
        Indices of the atoms that had an infinite position anywhere.
    """

    atoms: AtomsData
    infinite_atoms: np.ndarray

    def exclusion_lines(self) -> list[str]:
        """The counted exclusion of the infinite positions (nothing when there are none)."""
        n = self.infinite_atoms.size
        if n == 0:
            return []
        return [
            f"{n} atom{'' if n == 1 else 's'} excluded: non-finite position (±Inf in the ATOMS "
            f"file): {index_list(self.infinite_atoms)}"
        ]


def read_checked_atoms(path: str | os.PathLike, zrange: str | None = None) -> CheckedAtoms:
    """Read an ATOMS file (one z-range of it) for an analysis step.

    Parameters
    ----------
    path
        ATOMS file.
    zrange
        Label of the z-range to read (required for a multi-range file, whose labels the error
        then names with the option ``--zrange``).

    Raises
    ------
    InputError
        The file is unreadable (named), has no atoms, or the z-range is missing or not chosen.
    """
    from caviar_napari.io.atoms_file import read_atoms

    atoms = read_atoms(path, zrange)
    if atoms.n_atoms == 0:
        where = f"{path}" + (f" z-range {zrange!r}" if zrange else "")
        raise InputError(f"{where}: the ATOMS file has no atoms (nothing to analyse)")
    positions = np.array(atoms.positions_A, dtype=float)
    mean = np.array(atoms.mean_positions_A, dtype=float)
    infinite = np.isinf(positions).any(axis=(0, 1, 3)) | np.isinf(mean).any(axis=1)
    if infinite.any():
        positions[np.isinf(positions).any(axis=-1)] = np.nan
        positions[:, :, infinite] = np.nan
        mean[infinite] = np.nan
        atoms = dataclasses.replace(atoms, positions_A=positions, mean_positions_A=mean)
    return CheckedAtoms(atoms=atoms, infinite_atoms=np.flatnonzero(infinite))


def range_slices(atoms: AtomsData, slices: str | None) -> tuple[str | list[int] | None, list[str]]:
    """The slices of an ATOMS file's contents to analyse, and a line saying which.

    For a z-range (``atoms.zrange``) without ``slices`` given: the slices where at least half of
    the atoms refined in every state (:func:`~caviar_napari.analysis.depth.occupied_slices`;
    all of them: None), so that a range spanning vacuum or part of another layer does not lose
    every atom.  Otherwise ``slices`` unchanged.
    """
    from caviar_napari.analysis.depth import occupied_slices

    z = atoms.zrange
    if z is None:
        return slices, []
    if slices is not None:
        return slices, [f"slices used: {slices} of the range (--slices)"]
    occupied = occupied_slices(atoms)
    if occupied.size == atoms.positions_A.shape[1]:
        return None, []
    absolute = ", ".join(str(z.start + i) for i in occupied)
    return occupied.tolist(), [
        f"slices used: {index_list(occupied)} of the range (slice {absolute} of the "
        "reconstruction): the others have fewer than half of the atoms refined in every state "
        "(vacuum or another layer); --slices chooses"
    ]
