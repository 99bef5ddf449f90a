"""The contents of an ATOMS file (conventions §6): atom positions per object state and slice.

Read and written by :mod:`caviar_napari.io.atoms_file`; measured by
:mod:`caviar_napari.analysis.atoms`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from caviar_napari.errors import InputError

__all__ = ["AtomsData"]


@dataclass
class AtomsData:
    """Contents of an ATOMS file; shapes validated on construction.

    Attributes
    ----------
    positions_A
        ``(state, slice, atom, 2)`` positions ``(y, x)`` in the scan frame, Å; NaN where the
        refinement failed.
    mean_positions_A
        ``(atom, 2)`` mean positions ``(y, x)``, Å.
    cell_index
        ``(atom, 2)`` int unit-cell index ``(l1, l2)``, or None.
    basis_index
        ``(atom,)`` int basis index κ, or None.
    species
        ``(atom,)`` species names (str), or None.
    lattice_vectors_A
        ``(2, 2)`` rows ``a1, a2`` as ``(y, x)``, Å, or None.
    source
        The file the positions were measured on (e.g. the reconstruction).
    status
        ``(state, slice, atom)`` int8 refinement status codes, or None.
    provenance
        What produced the file (method, parameters); stored as JSON.
    """

    positions_A: np.ndarray
    mean_positions_A: np.ndarray
    cell_index: np.ndarray | None = None
    basis_index: np.ndarray | None = None
    species: np.ndarray | None = None
    lattice_vectors_A: np.ndarray | None = None
    source: str = ""
    status: np.ndarray | None = None
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.positions_A = np.asarray(self.positions_A, dtype=float)
        self.mean_positions_A = np.asarray(self.mean_positions_A, dtype=float)
        if self.positions_A.ndim != 4 or self.positions_A.shape[-1] != 2:
            raise InputError(
                f"positions_A must be (state, slice, atom, 2), got shape {self.positions_A.shape}"
            )
        n = self.positions_A.shape[2]
        n_states, n_slices = self.positions_A.shape[:2]
        if self.cell_index is not None:
            self.cell_index = np.asarray(self.cell_index, dtype=np.int64)
        if self.basis_index is not None:
            self.basis_index = np.asarray(self.basis_index, dtype=np.int64)
        if self.species is not None:
            self.species = np.asarray(self.species, dtype=str)
        if self.lattice_vectors_A is not None:
            self.lattice_vectors_A = np.asarray(self.lattice_vectors_A, dtype=float)
        if self.status is not None:
            self.status = np.asarray(self.status, dtype=np.int8)
        checks = {
            "mean_positions_A": (self.mean_positions_A, (n, 2)),
            "cell_index": (self.cell_index, (n, 2)),
            "basis_index": (self.basis_index, (n,)),
            "species": (self.species, (n,)),
            "lattice_vectors_A": (self.lattice_vectors_A, (2, 2)),
            "status": (self.status, (n_states, n_slices, n)),
        }
        for key, (value, want) in checks.items():
            if value is not None and value.shape != want:
                raise InputError(f"{key}: shape {value.shape} does not match {want} for {n} atoms")

    @property
    def n_atoms(self) -> int:
        """Number of atoms."""
        return int(self.positions_A.shape[2])

    @property
    def n_failed(self) -> int:
        """Number of NaN (state, slice, atom) positions."""
        return int(np.any(~np.isfinite(self.positions_A), axis=-1).sum())
