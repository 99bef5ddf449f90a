"""Unit-cell averages of the Green's tensor with errors and significance (conventions §4).

The paper reads its correlations as averages over identical unit-cell pairs: every pair of atoms
with the same cell offset ``l' − l`` and basis atoms ``κ, κ'`` shows the same 2 × 2 block in a
periodic crystal, so their mean is the block of the class with far less noise (Fig. 4 a–b).  This
module makes the table that ``caviar correlations`` prints and writes:

* the classes are those of :func:`~.correlations.unit_cell_classes` over the atoms used, out to
  :data:`TABLE_RADIUS_FACTOR` × the nearest-neighbour distance (self blocks, nearest and second
  neighbours on the hexagonal and square lattices), each listed once (a class and its reverse
  hold the same pairs);
* blocks are rotated into the local lattice frame whose x axis points along the bond of the
  first nearest-neighbour class (its mean separation; the classes are in key order), so the
  frame is fixed by the lattice indexing, not by which atom happens to lie in the middle: two
  z-ranges of turned lattices (a twisted bilayer), indexed alike, compare class by class;
* the standard errors come from the same resampling of the object states as every other error
  of the analysis (:class:`TablePlan` is evaluated on each replica's tensor);
* the significance of each averaged cross block and of its two rows is the calibrated test of
  :func:`~.correlation_significance.class_significance`;
* shells are runs of the sorted class separations with no gap wider than
  :data:`SHELL_GAP_FACTOR` × the nearest-neighbour distance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from caviar_napari.analysis import correlations as corr
from caviar_napari.analysis.correlation_significance import class_significance
from caviar_napari.data.correlations import UnitCellTable
from caviar_napari.errors import InputError

__all__ = ["SHELL_GAP_FACTOR", "TABLE_RADIUS_FACTOR", "TablePlan", "plan_table"]

#: Pairs up to this many nearest-neighbour distances are averaged: the second shell of the
#: hexagonal (√3) and square (√2) lattices, not the third (2).
TABLE_RADIUS_FACTOR = 1.8
#: Separations closer than this many nearest-neighbour distances belong to one shell.
SHELL_GAP_FACTOR = 0.08


def _canonical(keys: np.ndarray) -> np.ndarray:
    """Whether each key ``(Δl, κ, κ')`` is the smaller of itself and its reverse
    ``(−Δl, κ', κ)`` (self keys are their own reverse)."""
    reverse = np.column_stack([-keys[:, 0], -keys[:, 1], keys[:, 3], keys[:, 2]])
    differ = keys != reverse
    col = np.argmax(differ, axis=1)
    rows = np.arange(keys.shape[0])
    return ~differ.any(axis=1) | (keys[rows, col] < reverse[rows, col])


@dataclass(frozen=True)
class TablePlan:
    """The classes of one set of atoms and their frame; evaluates any tensor of those atoms.

    Attributes
    ----------
    classes
        The unit-cell classes (atom indices into the tensor it is evaluated on).
    listed
        ``(C,)`` the classes listed (one of each class and its reverse), in table order.
    shell
        ``(C,)`` neighbour shell of each listed class.
    rotation
        Lab → local frame rotation.
    frame_class
        The class (index into ``classes``) whose bond sets the local x axis.
    max_distance_A
        The distance cut.
    """

    classes: corr.UnitCellClasses
    listed: np.ndarray
    shell: np.ndarray
    rotation: np.ndarray
    frame_class: int
    max_distance_A: float

    def local_blocks(self, green_A2: ArrayLike) -> np.ndarray:
        """``(C, 2, 2)`` Å²: the listed classes' mean blocks of ``green_A2`` in the local
        frame."""
        return corr.rotate_blocks(self.classes.mean_blocks(green_A2)[self.listed], self.rotation)

    def table(
        self,
        blocks_A2: np.ndarray,
        stderr_A2: np.ndarray,
        green_A2: np.ndarray,
        dof: float,
        atom_index: np.ndarray,
    ) -> UnitCellTable:
        """The table of blocks (from :meth:`local_blocks`, with their errors) and their
        significance in ``green_A2``.

        Parameters
        ----------
        blocks_A2, stderr_A2
            ``(C, 2, 2)`` local-frame means and standard errors.
        green_A2
            The full tensor (all atoms) the significance is tested on.
        dof
            Its Wishart degrees of freedom.
        atom_index
            ``(n,)`` the atom of the full tensor behind each atom of the plan.
        """
        members = self.classes.members()
        full = [atom_index[members[c]] for c in self.listed]
        block_sigma, arrow_sigma = class_significance(green_A2, full, dof, self.rotation)
        listed = self.listed
        return UnitCellTable(
            keys=self.classes.keys[listed],
            shell=self.shell,
            counts=self.classes.counts[listed],
            separation_A=self.classes.separation_A[listed],
            blocks_A2=np.asarray(blocks_A2, dtype=float).reshape(-1, 2, 2),
            stderr_A2=np.asarray(stderr_A2, dtype=float).reshape(-1, 2, 2),
            block_sigma=block_sigma,
            arrow_sigma=arrow_sigma,
            rotation=self.rotation,
            frame_key=self.classes.keys[self.frame_class],
            max_distance_A=self.max_distance_A,
        )


def plan_table(
    cell_index: ArrayLike, basis_index: ArrayLike, positions_A: ArrayLike
) -> TablePlan | None:
    """The classes, shells and frame of a unit-cell table over a set of atoms.

    Parameters
    ----------
    cell_index, basis_index
        ``(n, 2)``, ``(n,)`` lattice indices of the atoms (κ < 0: not indexed, left out).
    positions_A
        ``(n, 2)`` mean positions, Å.

    Returns
    -------
    TablePlan or None
        None when fewer than two indexed atoms have finite positions.
    """
    positions = np.asarray(positions_A, dtype=float)
    indexed = np.asarray(basis_index).ravel() >= 0
    usable = positions.copy()
    usable[~indexed] = np.nan
    try:
        d_nn = corr.nearest_neighbour_distance(usable)
    except InputError:
        return None
    cut = TABLE_RADIUS_FACTOR * d_nn
    classes = corr.unit_cell_classes(
        cell_index, basis_index, positions, indexed, max_distance_A=cut
    )
    distance = np.hypot(*classes.separation_A.T)
    shells = corr.distance_shells(distance, SHELL_GAP_FACTOR * d_nn)
    canonical = np.flatnonzero(_canonical(classes.keys))
    order = canonical[np.lexsort((*classes.keys[canonical].T[::-1], shells[canonical]))]
    bonds = order[shells[order] > 0]
    if bonds.size == 0:
        return None  # no pair within the cut: nothing but self blocks
    frame = int(bonds[0])
    return TablePlan(
        classes=classes,
        listed=order,
        shell=shells[order],
        rotation=corr.frame_rotation(classes.separation_A[frame]),
        frame_class=frame,
        max_distance_A=float(cut),
    )
