"""The contents of a CORR file (conventions §6): the Green's tensor of correlated displacements.

Read and written by :mod:`caviar_napari.io.correlations_file`; computed by
:mod:`caviar_napari.analysis.correlations`.  Degrees of freedom: index ``2*i + a`` with
``a = 0`` for y and ``a = 1`` for x (docs/ARCHITECTURE.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from caviar_napari.errors import InputError

__all__ = ["CorrelationsData"]


@dataclass(frozen=True)
class CorrelationsData:
    """Contents of a CORR file; validated on construction.

    Attributes
    ----------
    green_A2
        ``(2N, 2N)`` Green's tensor (eq. 2), Å².
    b_factor_A2
        ``(N,)`` Debye–Waller B factors, Å².
    slices
        ``(s,)`` int, slices used.
    n_states
        Number of object states N.
    mean_positions_A
        ``(N, 2)`` mean positions ``(y, x)``, Å.
    excluded_atoms
        ``(k,)`` int, atoms left out of the tensor.
    cell_index, basis_index, species, lattice_vectors_A
        Lattice indexing copied from the ATOMS file (optional).
    source
        Name of the file the positions came from.
    """

    green_A2: np.ndarray
    b_factor_A2: np.ndarray
    slices: np.ndarray
    n_states: int
    mean_positions_A: np.ndarray
    excluded_atoms: np.ndarray
    cell_index: np.ndarray | None = None
    basis_index: np.ndarray | None = None
    species: np.ndarray | None = None
    lattice_vectors_A: np.ndarray | None = None
    source: str = ""

    def __post_init__(self) -> None:
        n = self.b_factor_A2.shape[0] if self.b_factor_A2.ndim == 1 else -1
        checks = {
            "green_A2": (self.green_A2.shape, (2 * n, 2 * n)),
            "mean_positions_A": (self.mean_positions_A.shape, (n, 2)),
        }
        if self.cell_index is not None:
            checks["cell_index"] = (self.cell_index.shape, (n, 2))
        if self.basis_index is not None:
            checks["basis_index"] = (self.basis_index.shape, (n,))
        if self.species is not None:
            checks["species"] = (self.species.shape, (n,))
        if self.lattice_vectors_A is not None:
            checks["lattice_vectors_A"] = (self.lattice_vectors_A.shape, (2, 2))
        if n < 0:
            raise InputError(f"b_factor_A2 must be (atoms,), got {self.b_factor_A2.shape}")
        for key, (got, want) in checks.items():
            if got != want:
                raise InputError(f"{key}: shape {got} does not match {want} for {n} atoms")
        if self.excluded_atoms.size and (
            self.excluded_atoms.min() < 0 or self.excluded_atoms.max() >= n
        ):
            raise InputError(f"excluded_atoms {self.excluded_atoms.tolist()} outside 0..{n - 1}")
        if self.n_states < 2:
            raise InputError(f"n_states must be at least 2, got {self.n_states}")

    @property
    def n_atoms(self) -> int:
        """Number of atoms N."""
        return self.b_factor_A2.shape[0]
