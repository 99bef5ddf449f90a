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
    excluded_atoms             (k,)           int      atoms the estimator left out (outside the
                                                       block of whole cells; for force constants
                                                       on the window: without finite positions)
    attrs: temperature_K, masses_amu (JSON species → amu), single_mass, cells (L1, L2),
           cell_origin (l1, l2), lattice_vectors_A (2, 2), n_states, n_bootstrap, source,
           frequency_convention, software, version,
           estimator ("green" | "force-constants"), symmetry_operations (number used: star
           pooling for green, constraints for force constants; 1 = none), error_method (what
           the *_err_THz are), boundary ("periodic" | "open"; "" for green), shells (0 for
           green), crystal_cells (L1, L2) of the crystal the block was cut from (force
           constants), fit_atoms (atoms the force-constant fit used; 0 for green),
           warnings (JSON list of text: unphysical frequencies, a biased green)

Force-constant estimator only (issue 14)::

    frequencies_fisher_err_THz (nq, nb)       float64  errors from the Fisher information
    dense_path/q_frac          (nd, 2)        float64  evenly spaced points along the path
    dense_path/distance_invA   (nd,)          float64
    dense_path/frequencies_THz (nd, nb)       float64
    dense_path/frequencies_err_THz (nd, nb)   float64  as frequencies_err_THz
    dense_path/frequencies_fisher_err_THz (nd, nb)
    dense_path/branch_average_THz (nb,)       float64  arc-length mean along the path
    dense_path/branch_average_err_THz (nb,)   float64
    force_constants/name       (p,)           str      e.g. "shell 1 B–N longitudinal"
    force_constants/shell      (p,)           int      neighbour shell (1 = nearest)
    force_constants/species_pair (p,)         str      e.g. "B–N"
    force_constants/component  (p,)           str      longitudinal | transverse | shear
    force_constants/bond_vector_A (p, 2)      float64  representative bond (y, x), Å
    force_constants/distance_A (p,)           float64  its length, Å
    force_constants/value_eV_per_A2 (p,)      float64  fitted constant (component of the bond
                                                       tensor in the bond frame), eV/Å²
    force_constants/err_fisher_eV_per_A2 (p,) float64  from the curvature of the likelihood
    force_constants/err_bootstrap_eV_per_A2 (p,)       bootstrap over states (NaN: none)
    force_constants/covariance_eV2_per_A4 (p, p)       inverse observed Fisher information
    force_constants attrs: neg2_log_likelihood, dof (ν = slices · (N − 1)), n_bootstrap,
        next_shell_statistic (2 Δ log L for one more shell), next_shell_dof,
        next_shell_p_value, alpha, more_shells_needed, next_shell_note,
        boundary_comparison (−2 log L periodic minus open when both were fitted, "auto"
        boundary; negative favours periodic; NaN otherwise)
"""

from __future__ import annotations

import json
import os

import h5py
import numpy as np

from caviar_napari.data.dispersion import (
    DensePathFrequencies,
    DispersionData,
    ForceConstantTable,
)
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


_DENSE_ARRAYS = (
    "q_frac",
    "distance_invA",
    "frequencies_THz",
    "frequencies_err_THz",
    "frequencies_fisher_err_THz",
    "branch_average_THz",
    "branch_average_err_THz",
)
_FC_ARRAYS = (
    "bond_vector_A",
    "distance_A",
    "value_eV_per_A2",
    "err_fisher_eV_per_A2",
    "err_bootstrap_eV_per_A2",
    "covariance_eV2_per_A4",
)
_FC_ATTRS = (
    "neg2_log_likelihood",
    "dof",
    "n_bootstrap",
    "next_shell_statistic",
    "next_shell_dof",
    "next_shell_p_value",
    "alpha",
    "more_shells_needed",
    "next_shell_note",
    "boundary_comparison",
)


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
        f.attrs["estimator"] = data.estimator
        f.attrs["symmetry_operations"] = int(data.symmetry_operations)
        f.attrs["error_method"] = data.error_method
        f.attrs["boundary"] = data.boundary
        f.attrs["shells"] = int(data.shells)
        f.attrs["crystal_cells"] = np.asarray(data.crystal_cells, dtype=np.int64)
        f.attrs["fit_atoms"] = int(data.fit_atoms)
        f.attrs["warnings"] = json.dumps(list(data.warnings), ensure_ascii=False)
        if data.frequencies_fisher_err_THz is not None:
            f.create_dataset(
                "frequencies_fisher_err_THz",
                data=np.asarray(data.frequencies_fisher_err_THz, dtype=np.float64),
            )
        if data.dense_path is not None:
            g = f.create_group("dense_path")
            for key in _DENSE_ARRAYS:
                g.create_dataset(key, data=np.asarray(getattr(data.dense_path, key), float))
        if data.force_constants is not None:
            _write_force_constants(f.create_group("force_constants"), data.force_constants)
        write_stamp(
            f,
            source=data.source,
            units="frequencies: THz (nu = omega/2pi); distances: 1/Å; masses: amu",
        )


def _write_force_constants(g: h5py.Group, fc: ForceConstantTable) -> None:
    strings = h5py.string_dtype()
    g.create_dataset("name", data=list(fc.names), dtype=strings)
    g.create_dataset("species_pair", data=list(fc.species_pair), dtype=strings)
    g.create_dataset("component", data=list(fc.component), dtype=strings)
    g.create_dataset("shell", data=np.asarray(fc.shell, dtype=np.int64))
    for key in _FC_ARRAYS:
        g.create_dataset(key, data=np.asarray(getattr(fc, key), dtype=np.float64))
    for key in _FC_ATTRS:
        value = getattr(fc, key)
        g.attrs[key] = value if isinstance(value, str) else np.asarray(value).item()


def _read_force_constants(f: h5py.File, where: str) -> ForceConstantTable:
    g = f["force_constants"]
    here = f"{where}:force_constants"
    attrs = {}
    for key in _FC_ATTRS:
        value = read_attr(g, here, key)
        attrs[key] = as_text(value) if key == "next_shell_note" else np.asarray(value).item()
    return ForceConstantTable(
        names=tuple(as_text(v) for v in read_dataset(g, here, "name")),
        species_pair=tuple(as_text(v) for v in read_dataset(g, here, "species_pair")),
        component=tuple(as_text(v) for v in read_dataset(g, here, "component")),
        shell=np.asarray(read_dataset(g, here, "shell"), dtype=int).ravel(),
        **{k: np.asarray(read_dataset(g, here, k), dtype=float) for k in _FC_ARRAYS},
        **{
            **attrs,
            "dof": int(attrs["dof"]),
            "n_bootstrap": int(attrs["n_bootstrap"]),
            "next_shell_dof": int(attrs["next_shell_dof"]),
            "more_shells_needed": bool(attrs["more_shells_needed"]),
        },
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
        extra: dict = {}
        if "estimator" in f.attrs:  # files written before issue 14 have none of these
            extra = {
                "estimator": as_text(f.attrs["estimator"]),
                "symmetry_operations": int(read_attr(f, where, "symmetry_operations")),
                "error_method": as_text(read_attr(f, where, "error_method")),
                "boundary": as_text(read_attr(f, where, "boundary")),
                "shells": int(read_attr(f, where, "shells")),
                "crystal_cells": tuple(int(c) for c in read_attr(f, where, "crystal_cells")),
                "fit_atoms": int(f.attrs.get("fit_atoms", 0)),  # added with the window fit
            }
            try:
                extra["warnings"] = tuple(json.loads(as_text(read_attr(f, where, "warnings"))))
            except json.JSONDecodeError as exc:
                raise InputError(f"{path}: attribute 'warnings' is not JSON ({exc})") from None
        if "frequencies_fisher_err_THz" in f:
            extra["frequencies_fisher_err_THz"] = np.asarray(
                read_dataset(f, where, "frequencies_fisher_err_THz"), dtype=float
            )
        with naming_file(path):
            if "dense_path" in f:
                extra["dense_path"] = DensePathFrequencies(
                    **{
                        k: np.asarray(
                            read_dataset(f["dense_path"], f"{where}:dense_path", k), float
                        )
                        for k in _DENSE_ARRAYS
                    }
                )
            if "force_constants" in f:
                extra["force_constants"] = _read_force_constants(f, where)
            return DispersionData(
                **extra,
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
