"""DISP file (conventions §6): the phonon dispersion inferred from correlated displacements.

Layout (HDF5)::

    q_frac                     (nq, 2)        float64  commensurate grid (m1/L1, m2/L2),
                                                       m = 0…L−1, reduced coordinates of b1, b2
                                                       (a_i·b_j = δ_ij)
    frequencies_THz            (nq, nb)       float64  ν = ω/2π, ascending per q (branch =
                                                       sorted band index)
    frequencies_err_THz        (nq, nb)       float64  bootstrap standard deviation (NaN: none)
    path_labels                (nv,)          str      vertex labels, e.g. Γ, M, K, Γ
    path_vertices_frac         (nv, 2)        float64  vertices, reduced coordinates
    path_vertex_distance_invA  (nv,)          float64  distance of each vertex along the path, 1/Å
    path_q_index               (np,)          int      index into q_frac of each point on the path
    path_q_frac                (np, 2)        float64  the points on the path (grid-point images)
    path_distance_invA         (np,)          float64  distance along the path, 1/Å (no 2π)
    path_frequencies_THz       (np, nb)       float64
    path_frequencies_err_THz   (np, nb)       float64
    branch_average_THz         (nb,)          float64  mean over the distinct path q
    branch_average_err_THz     (nb,)          float64  bootstrap standard deviation (NaN: none)
    basis_species              (κ,)           str
    basis_masses_amu           (κ,)           float64
    slices                     (s,)           int      slices whose covariances were averaged
    excluded_atoms             (k,)           int      atoms outside the block of whole cells
    attrs: temperature_K, masses_amu (JSON species → amu), single_mass, cells (L1, L2),
           cell_origin (l1, l2), lattice_vectors_A (2, 2), n_states, n_bootstrap, source,
           frequency_convention, software, version
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import h5py
import numpy as np

from caviar_napari.errors import InputError
from caviar_napari.io._h5util import (
    as_text,
    naming_file,
    open_h5,
    read_attr,
    read_dataset,
    write_stamp,
)
from caviar_napari.io.atomic import atomic_h5

FREQUENCY_CONVENTION = (
    "nu = omega / 2 pi in THz; negative eigenvalues of D reported as negative frequencies; "
    "branches = sorted band index"
)

_ARRAYS = (
    "q_frac",
    "frequencies_THz",
    "frequencies_err_THz",
    "path_vertices_frac",
    "path_vertex_distance_invA",
    "path_q_frac",
    "path_distance_invA",
    "path_frequencies_THz",
    "path_frequencies_err_THz",
    "branch_average_THz",
    "branch_average_err_THz",
    "basis_masses_amu",
)
_INTS = ("path_q_index", "slices", "excluded_atoms")


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


def write_dispersion(path: str | os.PathLike, data: DispersionData) -> None:
    """Write a DISP file atomically (temporary file, then rename)."""
    strings = h5py.string_dtype()
    with atomic_h5(path) as f:
        for key in _ARRAYS:
            f.create_dataset(key, data=np.asarray(getattr(data, key), dtype=np.float64))
        for key in _INTS:
            f.create_dataset(key, data=np.asarray(getattr(data, key), dtype=np.int64))
        f.create_dataset("path_labels", data=list(data.path_labels), dtype=strings)
        f.create_dataset("basis_species", data=list(data.basis_species), dtype=strings)
        f.attrs["temperature_K"] = float(data.temperature_K)
        f.attrs["masses_amu"] = json.dumps(data.masses_amu, ensure_ascii=False)
        f.attrs["single_mass"] = bool(data.single_mass)
        f.attrs["cells"] = np.asarray(data.cells, dtype=np.int64)
        f.attrs["cell_origin"] = np.asarray(data.cell_origin, dtype=np.int64)
        f.attrs["lattice_vectors_A"] = np.asarray(data.lattice_vectors_A, dtype=float)
        f.attrs["n_states"] = int(data.n_states)
        f.attrs["n_bootstrap"] = int(data.n_bootstrap)
        f.attrs["frequency_convention"] = FREQUENCY_CONVENTION
        write_stamp(
            f,
            source=data.source,
            units="frequencies: THz (nu = omega/2pi); distances: 1/Å; masses: amu",
        )


def read_dispersion(path: str | os.PathLike) -> DispersionData:
    """Read a DISP file; a missing or inconsistent item raises InputError naming it."""
    where = str(path)
    with open_h5(path) as f:
        arrays = {k: np.asarray(read_dataset(f, where, k), dtype=float) for k in _ARRAYS}
        ints = {k: np.asarray(read_dataset(f, where, k), dtype=int).ravel() for k in _INTS}
        labels = tuple(as_text(v) for v in read_dataset(f, where, "path_labels"))
        species = tuple(as_text(v) for v in read_dataset(f, where, "basis_species"))
        try:
            masses = json.loads(as_text(read_attr(f, where, "masses_amu")))
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}: attribute 'masses_amu' is not JSON ({exc})") from None
        with naming_file(path):
            return DispersionData(
                **arrays,
                **ints,
                path_labels=labels,
                basis_species=species,
                temperature_K=float(read_attr(f, where, "temperature_K")),
                masses_amu={str(k): float(v) for k, v in masses.items()},
                single_mass=bool(read_attr(f, where, "single_mass")),
                cells=tuple(int(c) for c in read_attr(f, where, "cells")),
                cell_origin=tuple(int(c) for c in read_attr(f, where, "cell_origin")),
                lattice_vectors_A=np.asarray(read_attr(f, where, "lattice_vectors_A"), float),
                n_states=int(read_attr(f, where, "n_states")),
                n_bootstrap=int(read_attr(f, where, "n_bootstrap")),
                source=as_text(f.attrs.get("source", "")),
            )
