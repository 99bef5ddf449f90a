"""The contents of a DISP file (conventions §6): a phonon dispersion inferred from correlations.

Read and written by :mod:`caviar_napari.io.dispersion_file` (whose docstring gives the layout
and the units); computed by :mod:`caviar_napari.analysis.dispersion`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from caviar_napari.errors import InputError

__all__ = ["DispersionData"]


@dataclass(frozen=True, eq=False)
class DispersionData:
    """Contents of a DISP file; shapes validated on construction.

    Attributes
    ----------
    q_frac
        ``(nq, 2)`` commensurate wave vectors, reduced coordinates of b1, b2.
    frequencies_THz, frequencies_err_THz
        ``(nq, nb)`` frequencies ν (THz, ascending) and bootstrap errors (NaN when none).
    path_labels
        Vertex labels of the path.
    path_vertices_frac
        ``(nv, 2)`` path vertices, reduced coordinates.
    path_vertex_distance_invA
        ``(nv,)`` distance of the vertices along the path, 1/Å.
    path_q_index
        ``(np,)`` index into ``q_frac`` of the commensurate points on the path.
    path_q_frac
        ``(np, 2)`` their positions on the path (reciprocal-lattice images of the grid points).
    path_distance_invA
        ``(np,)`` distance along the path, 1/Å.
    path_frequencies_THz, path_frequencies_err_THz
        ``(np, nb)`` frequencies and errors at the path points.
    branch_average_THz, branch_average_err_THz
        ``(nb,)`` per-branch mean over the distinct path q and its bootstrap error.
    temperature_K
        Temperature, K.
    masses_amu
        Species (or basis index) → mass, amu.
    basis_species
        Species of each basis atom.
    basis_masses_amu
        ``(κ,)`` masses of the basis atoms, amu.
    single_mass
        True if the single harmonic-mean mass was used.
    cells
        ``(L1, L2)`` size of the block of whole unit cells.
    cell_origin
        Cell index of the block's first cell.
    lattice_vectors_A
        ``(2, 2)`` rows a1, a2 as ``(y, x)``, Å.
    n_states
        Number of object states.
    slices
        ``(s,)`` slices used.
    n_bootstrap
        Bootstrap replicas behind the errors (0: no errors).
    excluded_atoms
        ``(k,)`` atoms not in the block (outside it, or NaN in a used state/slice).
    source
        The input file.
    """

    q_frac: np.ndarray
    frequencies_THz: np.ndarray
    frequencies_err_THz: np.ndarray
    path_labels: tuple[str, ...]
    path_vertices_frac: np.ndarray
    path_vertex_distance_invA: np.ndarray
    path_q_index: np.ndarray
    path_q_frac: np.ndarray
    path_distance_invA: np.ndarray
    path_frequencies_THz: np.ndarray
    path_frequencies_err_THz: np.ndarray
    branch_average_THz: np.ndarray
    branch_average_err_THz: np.ndarray
    temperature_K: float
    masses_amu: dict[str, float]
    basis_species: tuple[str, ...]
    basis_masses_amu: np.ndarray
    single_mass: bool
    cells: tuple[int, int]
    cell_origin: tuple[int, int]
    lattice_vectors_A: np.ndarray
    n_states: int
    slices: np.ndarray
    n_bootstrap: int
    excluded_atoms: np.ndarray
    source: str = ""

    def __post_init__(self) -> None:
        nq = self.q_frac.shape[0]
        nb = self.frequencies_THz.shape[-1] if self.frequencies_THz.ndim == 2 else -1
        npath = self.path_q_index.shape[0]
        nv = len(self.path_labels)
        kappa = len(self.basis_species)
        checks = {
            "q_frac": (self.q_frac.shape, (nq, 2)),
            "frequencies_THz": (self.frequencies_THz.shape, (nq, nb)),
            "frequencies_err_THz": (self.frequencies_err_THz.shape, (nq, nb)),
            "path_vertices_frac": (self.path_vertices_frac.shape, (nv, 2)),
            "path_vertex_distance_invA": (self.path_vertex_distance_invA.shape, (nv,)),
            "path_q_frac": (self.path_q_frac.shape, (npath, 2)),
            "path_distance_invA": (self.path_distance_invA.shape, (npath,)),
            "path_frequencies_THz": (self.path_frequencies_THz.shape, (npath, nb)),
            "path_frequencies_err_THz": (self.path_frequencies_err_THz.shape, (npath, nb)),
            "branch_average_THz": (self.branch_average_THz.shape, (nb,)),
            "branch_average_err_THz": (self.branch_average_err_THz.shape, (nb,)),
            "basis_masses_amu": (self.basis_masses_amu.shape, (kappa,)),
            "lattice_vectors_A": (self.lattice_vectors_A.shape, (2, 2)),
        }
        for key, (got, want) in checks.items():
            if got != want:
                raise InputError(f"{key}: shape {got}, expected {want}")
        if nb != 2 * kappa:
            raise InputError(f"{nb} branches for {kappa} basis atoms (expected {2 * kappa})")
        if npath and (self.path_q_index.min() < 0 or self.path_q_index.max() >= nq):
            raise InputError(f"path_q_index outside 0..{nq - 1}")
        if tuple(self.cells) and int(self.cells[0]) * int(self.cells[1]) != nq:
            raise InputError(f"cells {tuple(self.cells)} do not give {nq} q points")

    @property
    def n_branches(self) -> int:
        """Number of branches ``2κ``."""
        return int(self.frequencies_THz.shape[1])
