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

import h5py
import numpy as np

from caviar_napari.data.dispersion import DispersionData
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

__all__ = ["FREQUENCY_CONVENTION", "DispersionData", "read_dispersion", "write_dispersion"]

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
