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

__all__ = ["CheckedAtoms", "index_list", "read_checked_atoms"]


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


def read_checked_atoms(path: str | os.PathLike) -> CheckedAtoms:
    """Read an ATOMS file for an analysis step.

    Raises
    ------
    InputError
        The file is unreadable (named), or has no atoms.
    """
    from caviar_napari.io.atoms_file import read_atoms

    atoms = read_atoms(path)
    if atoms.n_atoms == 0:
        raise InputError(f"{path}: the ATOMS file has no atoms (nothing to analyse)")
    positions = np.array(atoms.positions_A, dtype=float)
    mean = np.array(atoms.mean_positions_A, dtype=float)
    infinite = np.isinf(positions).any(axis=(0, 1, 3)) | np.isinf(mean).any(axis=1)
    if infinite.any():
        positions[np.isinf(positions).any(axis=-1)] = np.nan
        positions[:, :, infinite] = np.nan
        mean[infinite] = np.nan
        atoms = dataclasses.replace(atoms, positions_A=positions, mean_positions_A=mean)
    return CheckedAtoms(atoms=atoms, infinite_atoms=np.flatnonzero(infinite))
