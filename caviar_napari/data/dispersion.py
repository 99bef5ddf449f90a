"""The contents of a DISP file (conventions §6): a phonon dispersion inferred from correlations.

Read and written by :mod:`caviar_napari.io.dispersion_file` (whose docstring gives the layout
and the units); computed by :mod:`caviar_napari.analysis.dispersion`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from caviar_napari.errors import InputError

__all__ = ["ESTIMATORS", "DensePathFrequencies", "DispersionData", "ForceConstantTable"]


@dataclass(frozen=True, eq=False)
class ForceConstantTable:
    """Fitted force constants (issue 14), as stored in a DISP file.

    Attributes
    ----------
    names, species_pair, component
        ``p`` texts per constant.
    shell
        ``(p,)`` neighbour shell of each constant.
    bond_vector_A, distance_A
        ``(p, 2)`` representative bond vector ``(y, x)`` and ``(p,)`` its length, Å.
    value_eV_per_A2, err_fisher_eV_per_A2, err_bootstrap_eV_per_A2
        ``(p,)`` constants and their errors (bootstrap NaN when none), eV/Å².
    covariance_eV2_per_A4
        ``(p, p)`` inverse observed Fisher information.
    neg2_log_likelihood
        ``−2 log L`` at the optimum (up to a data-only constant).
    dof
        Degrees of freedom ν of the scatter, ``slices · (N − 1)``.
    n_bootstrap
        Bootstrap replicas behind ``err_bootstrap``.
    next_shell_statistic, next_shell_dof, next_shell_p_value, alpha, more_shells_needed,
    next_shell_note
        Likelihood-ratio test against one more shell (NaN and a note when not made).
    boundary_comparison
        ``−2 log L`` of the periodic minus the open description of the block when both were
        fitted (negative favours periodic), NaN otherwise.
    """

    names: tuple[str, ...]
    shell: np.ndarray
    species_pair: tuple[str, ...]
    component: tuple[str, ...]
    bond_vector_A: np.ndarray
    distance_A: np.ndarray
    value_eV_per_A2: np.ndarray
    err_fisher_eV_per_A2: np.ndarray
    err_bootstrap_eV_per_A2: np.ndarray
    covariance_eV2_per_A4: np.ndarray
    neg2_log_likelihood: float
    dof: int
    n_bootstrap: int
    next_shell_statistic: float
    next_shell_dof: int
    next_shell_p_value: float
    alpha: float
    more_shells_needed: bool
    next_shell_note: str = ""
    boundary_comparison: float = float("nan")

    def __post_init__(self) -> None:
        p = len(self.names)
        checks = {
            "shell": (np.shape(self.shell), (p,)),
            "bond_vector_A": (np.shape(self.bond_vector_A), (p, 2)),
            "distance_A": (np.shape(self.distance_A), (p,)),
            "value_eV_per_A2": (np.shape(self.value_eV_per_A2), (p,)),
            "err_fisher_eV_per_A2": (np.shape(self.err_fisher_eV_per_A2), (p,)),
            "err_bootstrap_eV_per_A2": (np.shape(self.err_bootstrap_eV_per_A2), (p,)),
            "covariance_eV2_per_A4": (np.shape(self.covariance_eV2_per_A4), (p, p)),
        }
        if len(self.species_pair) != p or len(self.component) != p:
            raise InputError(f"force_constants: {p} names but other item counts differ")
        for key, (got, want) in checks.items():
            if got != want:
                raise InputError(f"force_constants/{key}: shape {got}, expected {want}")


@dataclass(frozen=True, eq=False)
class DensePathFrequencies:
    """Frequencies of a fitted model along a densely sampled path.

    Attributes
    ----------
    q_frac
        ``(nd, 2)`` points, reduced coordinates.
    distance_invA
        ``(nd,)`` distance along the path, 1/Å.
    frequencies_THz, frequencies_err_THz, frequencies_fisher_err_THz
        ``(nd, nb)`` frequencies and errors (as the grid's).
    branch_average_THz, branch_average_err_THz
        ``(nb,)`` arc-length mean along the path and its error.
    """

    q_frac: np.ndarray
    distance_invA: np.ndarray
    frequencies_THz: np.ndarray
    frequencies_err_THz: np.ndarray
    frequencies_fisher_err_THz: np.ndarray
    branch_average_THz: np.ndarray
    branch_average_err_THz: np.ndarray

    def __post_init__(self) -> None:
        nd = np.shape(self.q_frac)[0]
        nb = np.shape(self.frequencies_THz)[-1]
        checks = {
            "q_frac": (np.shape(self.q_frac), (nd, 2)),
            "distance_invA": (np.shape(self.distance_invA), (nd,)),
            "frequencies_THz": (np.shape(self.frequencies_THz), (nd, nb)),
            "frequencies_err_THz": (np.shape(self.frequencies_err_THz), (nd, nb)),
            "frequencies_fisher_err_THz": (np.shape(self.frequencies_fisher_err_THz), (nd, nb)),
            "branch_average_THz": (np.shape(self.branch_average_THz), (nb,)),
            "branch_average_err_THz": (np.shape(self.branch_average_err_THz), (nb,)),
        }
        for key, (got, want) in checks.items():
            if got != want:
                raise InputError(f"dense_path/{key}: shape {got}, expected {want}")


#: Estimators a DISP file can come from.
ESTIMATORS: tuple[str, ...] = ("green", "force-constants")


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
        ``(k,)`` atoms the estimator did not use: outside the block of whole cells (green, and
        force constants fitted on the block), or without finite positions in every used
        state and slice or without a basis index (force constants fitted on the window of
        every usable atom).
    source
        The input file.
    estimator
        ``"green"`` (eq. 6) or ``"force-constants"`` (issue 14).
    symmetry_operations
        Space-group operations used (star pooling or constraints; 1 = none).
    error_method
        What the ``*_err_THz`` are (bootstrap over states, or the Fisher information).
    boundary
        Force constants: ``"periodic"`` or ``"open"``; ``""`` for green.
    shells
        Force constants: neighbour shells fitted; 0 for green.
    crystal_cells
        Force constants: the periodic crystal the fitted atoms were taken from (``(0, 0)`` for
        green).
    fit_atoms
        Force constants: the atoms whose displacements the fit used (0 for green).
    frequencies_fisher_err_THz
        Force constants: ``(nq, nb)`` errors from the Fisher information; None for green.
    dense_path
        Force constants: :class:`DensePathFrequencies`; None for green.
    force_constants
        Force constants: :class:`ForceConstantTable`; None for green.
    warnings
        Warnings about the result (unphysical frequencies, too few states for green).
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
    estimator: str = "green"
    symmetry_operations: int = 1
    error_method: str = "bootstrap over states"
    boundary: str = ""
    shells: int = 0
    crystal_cells: tuple[int, int] = (0, 0)
    fit_atoms: int = 0
    frequencies_fisher_err_THz: np.ndarray | None = None
    dense_path: DensePathFrequencies | None = None
    force_constants: ForceConstantTable | None = None
    warnings: tuple[str, ...] = ()

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
        if self.estimator not in ESTIMATORS:
            raise InputError(f"estimator must be one of {ESTIMATORS}, got {self.estimator!r}")
        fisher = self.frequencies_fisher_err_THz
        if fisher is not None and np.shape(fisher) != (nq, nb):
            raise InputError(
                f"frequencies_fisher_err_THz: shape {np.shape(fisher)}, expected {(nq, nb)}"
            )
        if self.dense_path is not None and self.dense_path.frequencies_THz.shape[-1] != nb:
            raise InputError(f"dense_path has {self.dense_path.frequencies_THz.shape[-1]} branches")

    @property
    def n_branches(self) -> int:
        """Number of branches ``2κ``."""
        return int(self.frequencies_THz.shape[1])
