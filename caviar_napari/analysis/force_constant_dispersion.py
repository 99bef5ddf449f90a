"""The force-constant estimator's dispersion: fit, frequencies, errors and the DISP items.

:func:`force_constant_dispersion` fits :mod:`.force_constants` to the atoms of a
:func:`~.cell_block.cell_block` and evaluates the fitted model on the commensurate grid of its
block of whole cells (the DISP schema shared with eq. 6), at the commensurate points of the
path, and on a dense path.

Which atoms (:func:`fit_statistics`): the open description needs no whole cells, so it uses
every atom found with finite positions (the *window*), not only the largest block of whole
cells.  A square field of view of a hexagonal lattice holds a block of whole cells of about a
third of its atoms (the README's hBN: 8 of 28), and three times the atoms give three times the
information on the constants.  The periodic description needs the block.  ``auto`` fits both on
the block when the window has no atom outside it, and the open one on the window otherwise (a
field of view with atoms outside its whole cells is not one period of the crystal).

Errors of frequencies and branch averages are the spread of the same quantities over parameter
vectors: the bootstrap refits over states when there are any (``error_method`` says so), else
400 draws from ``N(θ̂, covariance)`` (the Fisher information).  The Fisher spread is always
stored as well (``frequencies_fisher_err_THz``).
"""

from __future__ import annotations

import numpy as np

from caviar_napari.analysis.brillouin import (
    BrillouinPath,
    PathPoints,
    branch_averages,
    dense_path,
    path_average,
)
from caviar_napari.analysis.cell_block import CellBlock
from caviar_napari.analysis.crystal_symmetry import SymmetryOperation
from caviar_napari.analysis.force_constants import (
    COMPONENTS,
    DEFAULT_ALPHA,
    DisplacementStatistics,
    ForceConstantFit,
    ForceConstantModel,
    displacement_statistics,
    fisher_draws,
    fit_force_constants,
    window_statistics,
)
from caviar_napari.data.dispersion import DensePathFrequencies, ForceConstantTable

__all__ = ["FISHER_DRAWS", "force_constant_dispersion", "force_constant_table"]

#: Parameter vectors drawn from the Fisher covariance to propagate errors to frequencies.
FISHER_DRAWS = 400


def force_constant_table(fit: ForceConstantFit) -> ForceConstantTable:
    """The DISP file's record of a fit (constants, errors, goodness of fit)."""
    model = fit.model
    orbits = [model.orbits[o] for o in model.parameter_orbit]
    test = fit.shell_test
    return ForceConstantTable(
        names=model.parameter_names,
        shell=np.array([o.shell for o in orbits], dtype=int),
        species_pair=tuple(f"{model.types[o.source]}–{model.types[o.target]}" for o in orbits),
        component=tuple(COMPONENTS[c] for c in model.parameter_component),
        bond_vector_A=np.array([o.vector_A for o in orbits]).reshape(-1, 2),
        distance_A=np.array([o.distance_A for o in orbits]),
        value_eV_per_A2=fit.theta,
        err_fisher_eV_per_A2=fit.err_fisher,
        err_bootstrap_eV_per_A2=fit.err_bootstrap,
        covariance_eV2_per_A4=fit.covariance,
        neg2_log_likelihood=float(fit.neg2_log_likelihood),
        dof=int(fit.nu),
        n_bootstrap=int(fit.theta_bootstrap.shape[0]),
        next_shell_statistic=np.nan if test is None else float(test.statistic),
        next_shell_dof=0 if test is None else int(test.dof),
        next_shell_p_value=np.nan if test is None else float(test.p_value),
        alpha=DEFAULT_ALPHA if test is None else float(test.alpha),
        more_shells_needed=False if test is None else test.more_shells_needed,
        next_shell_note="not tested" if test is None else test.note,
        boundary_comparison=float(fit.boundary_comparison),
    )


def fit_statistics(block: CellBlock, boundary: str) -> tuple[DisplacementStatistics, str]:
    """The displacements the fit uses, and the boundary to fit them with (module docstring).

    Returns
    -------
    stats : DisplacementStatistics
        The block of whole cells (``periodic``, or ``auto`` with no atom outside the block) or
        the window of every usable atom (``open``, or ``auto`` with atoms outside the block).
    boundary : str
        ``boundary``, or ``"open"`` for ``auto`` on a window that is not a block.
    """
    if boundary == "periodic" or (boundary == "auto" and block.window_is_block):
        return displacement_statistics(block.positions_A), boundary
    stats = window_statistics(
        block.window_positions_A,
        block.window_cell_index,
        block.window_basis_index,
        block.n_basis,
    )
    return stats, "open"


def _spread(values: np.ndarray) -> np.ndarray:
    if values.shape[0] < 2:
        return np.full(values.shape[1:], np.nan)
    return values.std(axis=0, ddof=1)


def force_constant_dispersion(
    block: CellBlock,
    *,
    temperature_K: float,
    masses_amu: np.ndarray,
    operations: tuple[SymmetryOperation, ...],
    q_frac: np.ndarray,
    path: BrillouinPath,
    points: PathPoints,
    shells: int,
    boundary: str,
    crystal_cells: tuple[int, int] | None,
    bootstrap: int,
    seed: int,
    dense_points: int,
    tolerance_A: float,
    alpha: float = DEFAULT_ALPHA,
) -> tuple[dict, ForceConstantFit]:
    """Fit force constants to ``block`` and give the estimator-specific DISP items.

    Parameters
    ----------
    block
        Positions on the block of whole cells.
    temperature_K
        Temperature, K.
    masses_amu
        ``(κ,)`` masses used for the frequencies (per atom, or the harmonic mean repeated).
    operations
        Space group for the constraints (the identity alone: no symmetry).
    q_frac
        ``(nq, 2)`` commensurate grid of the block.
    path, points
        The path and its commensurate points.
    shells, boundary, crystal_cells, bootstrap, seed, alpha
        As :func:`~.force_constants.fit_force_constants`.
    dense_points
        Points of the dense path.
    tolerance_A
        Tolerance for grouping bonds into shells, Å.

    Returns
    -------
    items : dict
        Keyword arguments of :class:`~caviar_napari.data.dispersion.DispersionData` that
        depend on the estimator.
    fit : ForceConstantFit
        The fit itself (for tables and warnings).
    """
    model = ForceConstantModel.build(
        block.lattice_vectors_A,
        block.basis_A,
        block.labels,
        shells,
        tolerance_A=tolerance_A,
        operations=operations,
    )
    stats, boundary = fit_statistics(block, boundary)
    fit = fit_force_constants(
        stats,
        model,
        temperature_K,
        boundary=boundary,
        crystal_cells=crystal_cells,
        bootstrap=bootstrap,
        seed=seed,
        alpha=alpha,
    )
    dense = dense_path(path, block.lattice_vectors_A, dense_points)
    freqs = model.frequencies_THz(fit.theta, q_frac, masses_amu)
    dense_freqs = model.frequencies_THz(fit.theta, dense.q_frac, masses_amu)

    def spreads(thetas: np.ndarray) -> tuple[np.ndarray, ...]:
        grid = model.frequencies_THz(thetas, q_frac, masses_amu)
        along = model.frequencies_THz(thetas, dense.q_frac, masses_amu)
        return (
            _spread(grid),
            _spread(branch_averages(grid, points.q_index)),
            _spread(along),
            _spread(path_average(along, dense.distance_invA)),
        )

    fisher = spreads(fisher_draws(fit, FISHER_DRAWS, seed))
    n_boot = int(fit.theta_bootstrap.shape[0])
    if n_boot >= 2:
        primary = spreads(fit.theta_bootstrap)
        method = f"bootstrap over states ({n_boot} refits)"
    else:
        primary = fisher
        method = f"Fisher information (curvature of the likelihood; {FISHER_DRAWS} draws)"
    items = {
        "frequencies_THz": freqs,
        "frequencies_err_THz": primary[0],
        "branch_average_THz": branch_averages(freqs, points.q_index),
        "branch_average_err_THz": primary[1],
        "n_bootstrap": n_boot,
        "error_method": method,
        "boundary": fit.boundary,
        "shells": int(shells),
        "crystal_cells": tuple(int(c) for c in fit.crystal_cells),
        "frequencies_fisher_err_THz": fisher[0],
        "dense_path": DensePathFrequencies(
            q_frac=dense.q_frac,
            distance_invA=dense.distance_invA,
            frequencies_THz=dense_freqs,
            frequencies_err_THz=primary[2],
            frequencies_fisher_err_THz=fisher[2],
            branch_average_THz=path_average(dense_freqs, dense.distance_invA),
            branch_average_err_THz=primary[3],
        ),
        "force_constants": force_constant_table(fit),
        "fit_atoms": stats.n_sites,
        "excluded_atoms": (
            block.excluded_atoms if stats.block is not None else block.window_excluded_atoms
        ),
    }
    return items, fit
