"""Which 2×2 Green's-tensor blocks the correlation arrows show (Qt-free analysis).

The arrows of paper Fig. 2 and 4 show, for a reference atom i, the self blocks ``G_jj`` at
chosen atoms and the blocks ``G_ij`` at its neighbours j — per atom pair, or averaged over all
pairs with the same unit-cell relation ``(l_j − l_i, κ_i, κ_j)``.  This module makes that choice
from a Green's tensor, so the dock and the command line draw the same arrows.

This is analysis the CLI should reach too; it is meant to move to
``caviar_napari.analysis.correlations`` (it imports nothing but that module).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from caviar_napari.analysis import correlations as corr
from caviar_napari.analysis.correlation_significance import (
    arrow_significance,
    class_members,
    class_significance,
)


@dataclass(frozen=True)
class CellAverages:
    """Unit-cell averages of a Green's tensor and the pair distance they reach.

    Attributes
    ----------
    averages
        The class means (:func:`caviar_napari.analysis.correlations.unit_cell_averages`).
    max_distance_A
        Pairs up to this separation are averaged, Å.
    """

    averages: corr.UnitCellAverages
    max_distance_A: float


def cell_averages(
    green_A2: ArrayLike,
    cell_index: ArrayLike,
    basis_index: ArrayLike,
    positions_A: ArrayLike,
    max_distance_A: float,
) -> CellAverages:
    """Unit-cell averages of all pairs closer than ``max_distance_A`` (lab frame)."""
    averages = corr.unit_cell_averages(
        green_A2, cell_index, basis_index, positions_A, max_distance_A=max_distance_A
    )
    return CellAverages(averages, float(max_distance_A))


def blocks_of_pairs(
    green_A2: ArrayLike,
    pairs: ArrayLike,
    positions_A: ArrayLike,
    *,
    cell_index: ArrayLike | None = None,
    basis_index: ArrayLike | None = None,
    averages: CellAverages | None = None,
) -> tuple[np.ndarray, CellAverages | None]:
    """The 2×2 blocks ``(P, 2, 2)`` Å² of ``pairs``: per atom pair, or unit-cell averaged.

    Parameters
    ----------
    green_A2
        ``(2N, 2N)`` Green's tensor, Å².
    pairs
        ``(P, 2)`` atom pairs ``(i, j)``.
    positions_A
        ``(N, 2)`` mean positions, Å (NaN for excluded atoms).
    cell_index, basis_index
        Lattice indices ``(N, 2)`` and ``(N,)`` (needed with ``averages``).
    averages
        None: the blocks of each pair.  Else the averaged blocks of each pair's class; when a
        pair is farther apart than the averages reach, they are computed again out to that
        distance (+1 %).  A pair whose class has no member gets NaN.

    Returns
    -------
    blocks
        ``(P, 2, 2)`` Å².
    averages
        The averages used (the given ones, or the ones computed again); None without averages.
    """
    pairs = np.asarray(pairs, dtype=int).reshape(-1, 2)
    if averages is None:
        return corr.pair_blocks(green_A2, pairs), None
    if pairs.size == 0:
        return np.empty((0, 2, 2)), averages
    positions = np.asarray(positions_A, dtype=float)
    distance = float(
        np.max(np.linalg.norm(positions[pairs[:, 1]] - positions[pairs[:, 0]], axis=1))
    )
    if distance > averages.max_distance_A:
        averages = cell_averages(green_A2, cell_index, basis_index, positions, 1.01 * distance)
    classes = averages.averages.class_of(cell_index, basis_index, pairs)
    blocks = averages.averages.lab_blocks_A2[np.where(classes < 0, 0, classes)]
    blocks[classes < 0] = np.nan
    return blocks, averages


def averaged_pair_counts(
    averages: CellAverages, cell_index: ArrayLike, basis_index: ArrayLike, pairs: ArrayLike
) -> tuple[int, int]:
    """Smallest and largest number of atom pairs behind the averaged blocks of ``pairs``
    (``(0, 0)`` when none of them has a class)."""
    classes = averages.averages.class_of(cell_index, basis_index, pairs)
    counts = averages.averages.counts[classes[classes >= 0]]
    if counts.size == 0:
        return 0, 0
    return int(counts.min()), int(counts.max())


def reference_arrow_sigma(
    green_A2: ArrayLike,
    pairs: ArrayLike,
    dof: float,
    rotation: ArrayLike | None = None,
    *,
    cell_index: ArrayLike | None = None,
    basis_index: ArrayLike | None = None,
    averages: CellAverages | None = None,
) -> np.ndarray:
    """Significance (σ) of the two arrows of each reference pair against zero correlation.

    Parameters
    ----------
    green_A2
        ``(2N, 2N)`` Green's tensor, Å².
    pairs
        ``(P, 2)`` pairs ``(reference i, atom j)``.
    dof
        Wishart degrees of freedom of the tensor (``CorrelationsData.uncertainty.green_dof``).
    rotation
        Lab → arrow-frame rotation (None: lab frame).
    cell_index, basis_index, averages
        With ``averages``: the arrows are unit-cell averages, tested over all the atom pairs of
        each pair's class (:func:`~caviar_napari.analysis.correlation_significance.
        class_significance`); else each pair's own block is tested exactly
        (:func:`~caviar_napari.analysis.correlation_significance.arrow_significance`).

    Returns
    -------
    numpy.ndarray
        ``(P, 2)`` σ of the y row and the x row (NaN where the test is not defined: fewer than
        5 object states, or a pair whose class has no member).
    """
    pairs = np.asarray(pairs, dtype=int).reshape(-1, 2)
    if pairs.shape[0] == 0:
        return np.empty((0, 2))
    green = np.asarray(green_A2, dtype=float)
    if averages is None:
        return arrow_significance(green, pairs, dof, rotation)
    classes = averages.averages.class_of(cell_index, basis_index, pairs)
    sigma = np.full((pairs.shape[0], 2), np.nan)
    found = classes >= 0
    if not found.any():
        return sigma
    valid = np.isfinite(np.diagonal(green)).reshape(-1, 2).all(axis=1)
    keys = averages.averages.keys[classes[found]]
    members = class_members(cell_index, basis_index, keys, valid)
    sigma[found] = class_significance(green, members, dof, rotation)[1]
    return sigma


def selection_arrows(
    green_A2: ArrayLike,
    positions_A: ArrayLike,
    reference: int,
    neighbours: ArrayLike,
    self_atoms: ArrayLike,
    scale_A_per_A2: float,
    *,
    rotation: ArrayLike | None = None,
    cell_index: ArrayLike | None = None,
    basis_index: ArrayLike | None = None,
    averages: CellAverages | None = None,
    dof: float | None = None,
) -> tuple[corr.Arrows, CellAverages | None]:
    """The arrows of a selection: self rows at ``self_atoms``, rows of ``G_ij`` at the
    ``neighbours`` j of the ``reference`` i (per pair, or unit-cell averaged, see
    :func:`blocks_of_pairs`), in the frame ``rotation`` and scaled to screen Å; with ``dof``
    each reference arrow carries its significance (:func:`reference_arrow_sigma`).

    Returns
    -------
    arrows
        :func:`caviar_napari.analysis.correlations.correlation_arrows` of the selection
        (``sigma`` None without ``dof``).
    averages
        The averages used (possibly extended), or None.
    """
    nbrs = np.asarray(neighbours, dtype=int).ravel()
    selves = np.asarray(self_atoms, dtype=int).ravel()
    options = {"cell_index": cell_index, "basis_index": basis_index}
    self_blocks, averages = blocks_of_pairs(
        green_A2, np.stack([selves, selves], axis=1), positions_A, averages=averages, **options
    )
    ref_pairs = np.stack([np.full_like(nbrs, int(reference)), nbrs], axis=1)
    ref_blocks, averages = blocks_of_pairs(
        green_A2, ref_pairs, positions_A, averages=averages, **options
    )
    sigma = None
    if dof is not None:
        sigma = reference_arrow_sigma(
            green_A2, ref_pairs, dof, rotation, averages=averages, **options
        )
    arrows = corr.correlation_arrows(
        positions_A, selves, self_blocks, nbrs, ref_blocks, scale_A_per_A2, rotation, sigma
    )
    return arrows, averages
