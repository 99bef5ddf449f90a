"""The uniform x–x / y–y offset of a Green's tensor, and its subtraction (issue 13, paper §2).

With a single probe mode, partial spatial coherence of the source (a Gaussian spread of probe
positions) is absorbed by the object states as rigid shifts of the whole object: every state is
displaced by its own shift ``s_n``, so every y–y and x–x entry of the tensor, for every pair of
atoms and every atom with itself, gains the same constant ``c_a = var_n(s_n,a)`` — the "uniform
offset" of the paper's Supplementary Fig. S2.  The paper names two remedies: probe modes that
absorb it during the reconstruction, or subtracting it from the recovered correlations "in the
same manner as background subtraction is performed in EELS spectra".  This module is the second.

Estimate: ``c_a`` = the mean of ``G_ij,aa`` over pairs of **distinct** atoms (self entries are
left out: they carry each atom's own variance).  By default every pair of distinct atoms is used;
``min_distance_A`` keeps only pairs at least that far apart.  Why all pairs by default: the
thermal correlations average out over the field of view — with the centre of mass fixed (a
periodic supercell) ``Σ_j G_ij = 0`` exactly, so the mean over distinct pairs is
``−⟨G_ii⟩ / (N − 1)`` (−1.6 % of the self-correlation for the 64-atom hBN presets), while the
positive near-neighbour correlations are balanced by negative ones further out.  Leaving out the
near pairs removes the positive part only: on the hBN model the mean beyond 1.2, 3 and 6
nearest-neighbour distances is −3.5 %, −7.4 % and −10 % of the self-correlation.  A distance cut
helps where correlations are positive at every range (e.g. a field of view much smaller than the
phonon wavelengths that dominate).

Subtraction removes ``c_y`` from every y–y entry and ``c_x`` from every x–x entry of the atoms that
entered the tensor (self blocks included, so B factors drop by ``8π² (c_y + c_x)``).  The errors of
an offset and of a corrected tensor come from the same resampling of the states as everything
else (:mod:`.correlation_errors`): each replica estimates and subtracts its own offset.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy.spatial import cKDTree

from caviar_napari.analysis.correlation_significance import SIGNIFICANCE_SIGMA
from caviar_napari.data.correlations import CorrelationsData, UniformOffset
from caviar_napari.errors import InputError

__all__ = ["OffsetPairs", "offset_pairs", "offset_warning", "offset_warnings", "subtract_offset"]


#: An offset below this fraction of the mean square displacement is not worth a warning (the
#: −⟨u²⟩/(n − 1) of a whole periodic crystal whose net translation is zero, for example).
OFFSET_RELEVANT_FRACTION = 0.05


def offset_warnings(data: CorrelationsData, sigma: float = SIGNIFICANCE_SIGMA) -> list[str]:
    """:func:`offset_warning` of a correlation result (its offset and rms displacement)."""
    rms = None if data.rms_displacement_A is None else data.rms_displacement_A.value
    return offset_warning(data.offset, rms, sigma)


def offset_warning(
    offset: UniformOffset | None,
    rms_displacement_A: float | None,
    sigma: float = SIGNIFICANCE_SIGMA,
) -> list[str]:
    """A warning when an offset that was not subtracted differs from zero by ``sigma`` or more
    and is at least :data:`OFFSET_RELEVANT_FRACTION` of the mean square displacement.

    A rigid shift of each whole state puts the same positive y–y / x–x term into every pair's
    block: uncorrelated (Einstein) vibrations then look correlated, most in the unit-cell
    averages.  Motion longer than the field of view does the same and is real, so the offset is
    reported, not removed.

    Examples
    --------
    >>> import numpy as np
    >>> o = UniformOffset(np.array([1e-4, 2e-4]), np.array([4e-5, 5e-5]), 0.0, 300)
    >>> offset_warning(o, 0.03)[0][:46]
    'a uniform offset (c_y, c_x) = (+1.00, +2.00) ±'
    >>> offset_warning(o, 0.1)  # 2 pm² of 100 pm²: negligible
    []
    >>> small = UniformOffset(np.array([1e-5, 0.0]), np.array([4e-5, 5e-5]), 0.0, 300)
    >>> offset_warning(small, 0.03)  # 0.25σ
    []
    """
    if offset is None or offset.subtracted:
        return []
    value, err = offset.offset_A2, offset.stderr_A2
    if not np.all(np.isfinite(err)) or np.any(err <= 0):
        return []
    z = float(np.max(np.abs(value) / err))
    share = float(np.max(np.abs(value))) / (rms_displacement_A or np.inf) ** 2
    if z < sigma or not share >= OFFSET_RELEVANT_FRACTION:
        return []
    return [
        f"a uniform offset (c_y, c_x) = ({1e4 * value[0]:+.2f}, {1e4 * value[1]:+.2f}) ± "
        f"({1e4 * err[0]:.2f}, {1e4 * err[1]:.2f}) pm² ({z:.1f}σ, {100 * share:.0f} % of the "
        "mean square displacement) is in every pair's y–y and "
        "x–x correlation: rigid shifts of whole states (displaced-atom states that may move "
        "rigidly, partial coherence, drift) put one there, as does motion longer than the field "
        "of view; compare with the offset subtracted (--subtract-offset) before reading weak or "
        "distant correlations, unit-cell averages included"
    ]


@dataclass(frozen=True)
class OffsetPairs:
    """The pairs of distinct atoms whose y–y and x–x entries give the offset.

    Attributes
    ----------
    atoms
        ``(k,)`` the atoms with finite tensor entries and positions (indices of the tensor).
    near
        ``(m, 2)`` pairs ``(i, j)``, ``i < j``, of those atoms closer than ``min_distance_A``
        (left out of the mean).
    min_distance_A
        The distance cut, Å (0: all pairs).
    """

    atoms: np.ndarray
    near: np.ndarray
    min_distance_A: float

    @property
    def n_pairs(self) -> int:
        """Number of pairs ``i < j`` averaged."""
        k = self.atoms.size
        return k * (k - 1) // 2 - self.near.shape[0]

    def offset(self, green_A2: ArrayLike) -> np.ndarray:
        """``(2,)`` ``(c_y, c_x)``, Å², of a tensor indexed like :attr:`atoms` refers to."""
        g = np.asarray(green_A2, dtype=float)
        out = np.empty(2)
        for a in range(2):
            dof = 2 * self.atoms + a
            block = g[np.ix_(dof, dof)]
            distinct = block.sum() - np.trace(block)  # both orders of every pair
            near = g[2 * self.near[:, 0] + a, 2 * self.near[:, 1] + a].sum()
            out[a] = (distinct / 2.0 - near) / self.n_pairs
        return out


def offset_pairs(
    green_A2: ArrayLike, positions_A: ArrayLike, min_distance_A: float = 0.0
) -> OffsetPairs:
    """The pair set of the offset estimate (module docstring).

    Parameters
    ----------
    green_A2
        ``(2N, 2N)`` tensor, Å²; atoms with non-finite diagonal entries are left out.
    positions_A
        ``(N, 2)`` mean positions ``(y, x)``, Å.
    min_distance_A
        Only pairs at least this far apart (0: every pair of distinct atoms).

    Raises
    ------
    InputError
        A negative distance, or no pair left.
    """
    g = np.asarray(green_A2, dtype=float)
    positions = np.asarray(positions_A, dtype=float)
    d = float(min_distance_A)
    if not (np.isfinite(d) and d >= 0):
        raise InputError(f"offset minimum distance must be ≥ 0 Å, got {min_distance_A!r}")
    n = g.shape[0] // 2
    if positions.shape != (n, 2):
        raise InputError(f"positions {positions.shape} do not match the {n} atoms of the tensor")
    ok = np.isfinite(np.diagonal(g)).reshape(n, 2).all(axis=1) & np.isfinite(positions).all(1)
    atoms = np.flatnonzero(ok)
    near = np.empty((0, 2), dtype=int)
    if d > 0 and atoms.size > 1:
        local = cKDTree(positions[atoms]).query_pairs(r=d, output_type="ndarray").reshape(-1, 2)
        close = np.linalg.norm(
            positions[atoms[local[:, 0]]] - positions[atoms[local[:, 1]]], axis=1
        )
        near = np.sort(atoms[local[close < d]], axis=1)
    pairs = OffsetPairs(atoms=atoms, near=near, min_distance_A=d)
    if pairs.n_pairs < 1:
        raise InputError(
            f"no pair of distinct atoms at least {d:g} Å apart to estimate the offset from"
        )
    return pairs


def subtract_offset(green_A2: ArrayLike, offset_A2: ArrayLike) -> np.ndarray:
    """A copy of the tensor with ``c_y`` taken from every y–y and ``c_x`` from every x–x entry.

    Parameters
    ----------
    green_A2
        ``(2N, 2N)`` tensor, Å² (NaN entries of excluded atoms stay NaN).
    offset_A2
        ``(2,)`` ``(c_y, c_x)``, Å².
    """
    g = np.array(green_A2, dtype=float)
    c = np.asarray(offset_A2, dtype=float).reshape(2)
    n = g.shape[0] // 2
    view = g.reshape(n, 2, n, 2)
    view[:, 0, :, 0] -= c[0]
    view[:, 1, :, 1] -= c[1]
    return g
