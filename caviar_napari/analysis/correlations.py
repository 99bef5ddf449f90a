"""Correlated atomic displacements: Green's tensor, B factors, pair sets, LSM/CSM (paper eqs. 1–4).

Conventions (conventions §1, §4):

* positions are ``(y, x)`` in Å; per-state positions are ``(state, slice, atom, 2)``;
* the degree-of-freedom (dof) index of atom ``i`` and direction ``a`` is ``2*i + a`` with
  ``a = 0`` for y and ``a = 1`` for x;
* ``u[n] = R[n] − mean_n R`` (eq. 1) and ``G = (1/N) Σ_n u[n] u[n]ᵀ`` (eq. 2, the biased second
  moment, numpy's ``np.cov(..., bias=True)``), a full ``2N × 2N`` matrix in Å²;
* the 2×2 block ``G_ij = G[2i:2i+2, 2j:2j+2]``: its row ``a`` is the correlation of atom i's
  displacement along ``a`` with atom j's ``(y, x)`` displacement.  These rows are the arrows drawn
  at atom ``j`` (self-correlation when ``i = j``);
* Debye–Waller ``B = 8π² (⟨u_y²⟩ + ⟨u_x²⟩)`` per atom (twice the crystallographic isotropic B);
* the nearest-neighbour correlation coefficient ``ρ_ij = ⟨u_i·u_j⟩ / sqrt(⟨u_i²⟩⟨u_j²⟩)
  = tr G_ij / sqrt(tr G_ii tr G_jj)``.

Atoms whose position is NaN in any used state or slice are excluded from the tensor: their rows
and columns are NaN and their indices are reported, never silently dropped.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike
from scipy.spatial import cKDTree

from caviar_napari.errors import InputError
from caviar_napari.io.correlations_file import CorrelationsData

if TYPE_CHECKING:
    from caviar_napari.io.atoms_file import AtomsData

#: Debye–Waller prefactor of B = 8π² (⟨u_y²⟩ + ⟨u_x²⟩).
B_FACTOR_PREFACTOR = 8.0 * np.pi**2

#: An atom whose position moves by no more than this (Å) between the states is motionless: the
#: same position in every state to rounding, not a thermal displacement of zero (any vibration
#: is picometres), so it is excluded like an atom with a NaN position.
MOTIONLESS_A = 1e-9

#: Kinds of correlation arrows, in the order of the codes in :attr:`Arrows.kind`.
ARROW_KINDS = ("self_y", "self_x", "ref_y", "ref_x")


# --------------------------------------------------------------------------------------------
# Slices, displacements, Green's tensor, B factors
# --------------------------------------------------------------------------------------------


def parse_slice_spec(spec: str | None, n_slices: int) -> np.ndarray:
    """Return the slice indices selected by a ``"A:B"`` / ``"A"`` / ``""`` specification.

    ``"A:B"`` follows Python's slice semantics (A included, B excluded, negatives count from the
    end, either side may be omitted); ``"A"`` is the single slice A; ``None`` or ``""`` is every
    slice.

    Raises
    ------
    InputError
        If the text is malformed or selects no slice of ``n_slices``.
    """
    if spec is None or spec.strip() in ("", ":"):
        return np.arange(n_slices)
    text = spec.strip()
    try:
        if ":" in text:
            start_text, stop_text = text.split(":", 1)
            start = int(start_text) if start_text.strip() else None
            stop = int(stop_text) if stop_text.strip() else None
            chosen = np.arange(n_slices)[slice(start, stop)]
        else:
            index = int(text)
            if not -n_slices <= index < n_slices:
                raise IndexError
            chosen = np.array([index % n_slices])
    except (ValueError, IndexError):
        raise InputError(
            f"slices {spec!r}: expected 'A:B' or 'A' with integers within {n_slices} slices"
        ) from None
    if chosen.size == 0:
        raise InputError(f"slices {spec!r} selects no slice of the {n_slices} available")
    return chosen


def displacements(positions_A: ArrayLike) -> np.ndarray:
    """Displacements from the mean over states, paper eq. 1.

    Parameters
    ----------
    positions_A
        Per-state positions ``(state, ..., 2)`` in Å (any axes between state and the last).

    Returns
    -------
    numpy.ndarray
        ``u = R − mean_n R``, same shape as ``positions_A``, Å (NaN stays NaN).
    """
    positions = np.asarray(positions_A, dtype=float)
    return positions - positions.mean(axis=0, keepdims=True)


@dataclass(frozen=True)
class GreenTensor:
    """Green's tensor of one reconstruction (eq. 2) and what it was computed from.

    Attributes
    ----------
    green_A2
        ``(2N, 2N)`` Å², dof ``2i + a``; rows and columns of excluded atoms are NaN.
    b_factor_A2
        ``(N,)`` Å², ``8π²(⟨u_y²⟩ + ⟨u_x²⟩)``; NaN for excluded atoms.
    excluded_atoms
        ``(k,)`` int, atoms with a NaN position in a used state or slice.
    slices
        ``(s,)`` int, the slices whose tensors were averaged.
    n_states
        Number of object states N of eq. 2.
    """

    green_A2: np.ndarray
    b_factor_A2: np.ndarray
    excluded_atoms: np.ndarray
    slices: np.ndarray
    n_states: int

    @property
    def n_atoms(self) -> int:
        """Number of atoms N (excluded ones included)."""
        return self.b_factor_A2.shape[0]

    @property
    def valid(self) -> np.ndarray:
        """``(N,)`` bool, True for the atoms that entered the tensor."""
        mask = np.ones(self.n_atoms, dtype=bool)
        mask[self.excluded_atoms] = False
        return mask


def _as_state_slice_atoms(positions_A: ArrayLike) -> np.ndarray:
    positions = np.asarray(positions_A, dtype=float)
    if positions.ndim == 3:
        positions = positions[:, None]
    if positions.ndim != 4 or positions.shape[-1] != 2:
        raise InputError(
            "positions_A must be (state, slice, atom, 2) or (state, atom, 2) as (y, x), "
            f"got shape {positions.shape}"
        )
    if positions.shape[0] < 2:
        raise InputError(
            f"positions_A has {positions.shape[0]} state(s): correlations need at least 2"
        )
    return positions


@dataclass(frozen=True)
class StateDisplacements:
    """Displacements of eq. 1 of the atoms that enter the tensor, per state and used slice.

    Attributes
    ----------
    u_A
        ``(N, s, 2k)`` Å: ``u = R − mean_n R`` per slice, dof ``2m + a`` over the ``k`` kept
        atoms (``m`` indexes :attr:`kept_atoms`).
    kept_atoms
        ``(k,)`` int, the atoms with finite positions in every used state and slice that move
        between the states.
    excluded_atoms
        ``(n_atoms − k,)`` int, the others: a NaN position, or the same position in every
        state (:data:`MOTIONLESS_A`; such an atom is not a variable of the states, e.g. outside
        every cell of displaced-atom states, and its correlations are undefined).
    slices
        ``(s,)`` int, the slices used.
    n_atoms
        All atoms, kept and excluded.
    """

    u_A: np.ndarray
    kept_atoms: np.ndarray
    excluded_atoms: np.ndarray
    slices: np.ndarray
    n_atoms: int

    @property
    def n_states(self) -> int:
        """Number of object states N."""
        return self.u_A.shape[0]

    @property
    def kept_dof(self) -> np.ndarray:
        """``(2k,)`` dof indices ``2i + a`` of the kept atoms in the full tensor."""
        return dof_indices(self.kept_atoms)

    def green(self) -> np.ndarray:
        """The ``(2k, 2k)`` tensor of eq. 2 of the kept atoms, averaged over the slices."""
        n_states, n_slices = self.u_A.shape[:2]
        return np.einsum("nsp,nsq->pq", self.u_A, self.u_A) / (n_states * n_slices)

    def full_tensor(self, kept_tensor: np.ndarray) -> np.ndarray:
        """Place a ``(2k, 2k)`` tensor of the kept atoms in a ``(2N, 2N)`` one, NaN elsewhere."""
        full = np.full((2 * self.n_atoms, 2 * self.n_atoms), np.nan)
        dof = self.kept_dof
        full[np.ix_(dof, dof)] = kept_tensor
        return full


def state_displacements(
    positions_A: ArrayLike, slices: ArrayLike | None = None
) -> StateDisplacements:
    """Displacements of eq. 1 (mean over the N states of each slice) of the atoms with finite
    positions in every used state and slice, that move between the states (displacements
    above :data:`MOTIONLESS_A` in some state).

    Parameters
    ----------
    positions_A
        ``(state, slice, atom, 2)`` (or ``(state, atom, 2)`` for a single slice), ``(y, x)`` Å.
    slices
        Indices of the slices to use; all slices when None.
    """
    positions = _as_state_slice_atoms(positions_A)
    n_states, n_slices, n_atoms, _ = positions.shape
    chosen = np.arange(n_slices) if slices is None else np.asarray(slices, dtype=int).ravel()
    if chosen.size == 0 or chosen.min() < -n_slices or chosen.max() >= n_slices:
        raise InputError(f"slices {chosen.tolist()} are not within the {n_slices} slices")
    chosen = chosen % n_slices
    used = positions[:, chosen]  # (N, s, atom, 2)
    bad = np.isnan(used).any(axis=(0, 1, 3))
    with np.errstate(invalid="ignore"):
        still = np.nanmax(np.abs(used - used.mean(axis=0)), axis=(0, 1, 3), initial=0.0)
    bad |= still <= MOTIONLESS_A
    keep = np.flatnonzero(~bad)
    u = displacements(used[:, :, keep])  # (N, s, k, 2)
    return StateDisplacements(
        u_A=u.reshape(n_states, chosen.size, 2 * keep.size),  # dof 2m + a
        kept_atoms=keep,
        excluded_atoms=np.flatnonzero(bad),
        slices=chosen,
        n_atoms=n_atoms,
    )


def green_tensor(positions_A: ArrayLike, slices: ArrayLike | None = None) -> GreenTensor:
    """Green's tensor (eq. 2, normalised by 1/N) for one slice or averaged over several.

    For each used slice the tensor ``(1/N) Σ_n u_n u_nᵀ`` is formed from the displacements of
    eq. 1 (mean over the N states of that slice); the tensors of the slices are then averaged,
    as the paper does for its slice ranges.

    Parameters
    ----------
    positions_A
        ``(state, slice, atom, 2)`` (or ``(state, atom, 2)`` for a single slice), ``(y, x)`` Å.
    slices
        Indices of the slices to use; all slices when None.

    Returns
    -------
    GreenTensor
        The tensor with NaN rows/columns for excluded atoms, B factors, excluded atom indices.
    """
    disp = state_displacements(positions_A, slices)
    green = disp.full_tensor(disp.green())
    return GreenTensor(
        green_A2=green,
        b_factor_A2=b_factors(green),
        excluded_atoms=disp.excluded_atoms,
        slices=disp.slices,
        n_states=disp.n_states,
    )


def correlations_from_atoms(
    atoms: AtomsData, slices: ArrayLike | str | None = None
) -> CorrelationsData:
    """Green's tensor, B factors and exclusions of an ATOMS file's positions (CORR contents).

    Parameters
    ----------
    atoms
        Per-state, per-slice positions and lattice indexing (``io.atoms_file.AtomsData``).
    slices
        Slice indices, a ``"A:B"`` text (:func:`parse_slice_spec`), or None for all slices.
    """
    positions = _as_state_slice_atoms(atoms.positions_A)
    if isinstance(slices, str):
        slices = parse_slice_spec(slices, positions.shape[1])
    result = green_tensor(positions, slices)
    return CorrelationsData(
        green_A2=result.green_A2,
        b_factor_A2=result.b_factor_A2,
        slices=result.slices,
        n_states=result.n_states,
        mean_positions_A=np.asarray(atoms.mean_positions_A, dtype=float),
        excluded_atoms=result.excluded_atoms,
        cell_index=None if atoms.cell_index is None else np.asarray(atoms.cell_index, int),
        basis_index=None if atoms.basis_index is None else np.asarray(atoms.basis_index, int),
        species=None if atoms.species is None else np.asarray(atoms.species, dtype=str),
        lattice_vectors_A=(
            None if atoms.lattice_vectors_A is None else np.asarray(atoms.lattice_vectors_A, float)
        ),
        source=str(getattr(atoms, "source", "")),
    )


def b_factors(green_A2: ArrayLike) -> np.ndarray:
    """Debye–Waller factors ``B = 8π² (⟨u_y²⟩ + ⟨u_x²⟩)`` per atom, Å², from ``G`` ``(2N, 2N)``."""
    diagonal = np.diagonal(np.asarray(green_A2, dtype=float))
    return B_FACTOR_PREFACTOR * diagonal.reshape(-1, 2).sum(axis=1)


def pair_blocks(green_A2: ArrayLike, pairs: ArrayLike) -> np.ndarray:
    """The 2×2 blocks ``G_ij`` of a list of atom pairs.

    Parameters
    ----------
    green_A2
        ``(2N, 2N)`` Green's tensor, Å².
    pairs
        ``(P, 2)`` int, pairs ``(i, j)``.

    Returns
    -------
    numpy.ndarray
        ``(P, 2, 2)`` Å²; ``[p, a, :]`` is the correlation vector (row ``a``, components
        ``(y, x)``) of ``⟨u_{i,a} u_j⟩``, the arrow drawn at atom j.
    """
    green = np.asarray(green_A2, dtype=float)
    pairs = np.asarray(pairs, dtype=int).reshape(-1, 2)
    rows = 2 * pairs[:, 0, None] + np.arange(2)  # (P, 2)
    cols = 2 * pairs[:, 1, None] + np.arange(2)
    return green[rows[:, :, None], cols[:, None, :]]


def dof_indices(atoms: ArrayLike) -> np.ndarray:
    """Dof indices ``2i + a`` of atoms ``(k,)``, flattened ``(2k,)`` (y then x per atom)."""
    return (2 * np.asarray(atoms, dtype=int)[:, None] + np.arange(2)).ravel()


def reindex_green(green_A2: ArrayLike, index: ArrayLike) -> np.ndarray:
    """Return the tensor of atoms ``index`` ``(k,)``, in that order; ``-1`` gives NaN rows/cols."""
    green = np.asarray(green_A2, dtype=float)
    index = np.asarray(index, dtype=int)
    dof = dof_indices(np.where(index < 0, 0, index))
    out = green[np.ix_(dof, dof)].copy()
    missing = dof_indices(np.flatnonzero(index < 0))
    out[missing, :] = np.nan
    out[:, missing] = np.nan
    return out


# --------------------------------------------------------------------------------------------
# Neighbours and pair sets
# --------------------------------------------------------------------------------------------


def _valid_tree(positions_A: ArrayLike) -> tuple[np.ndarray, np.ndarray, cKDTree]:
    positions = np.asarray(positions_A, dtype=float)
    if positions.ndim != 2 or positions.shape[1] != 2:
        raise InputError(f"mean positions must be (atom, 2) as (y, x), got {positions.shape}")
    valid = np.flatnonzero(np.isfinite(positions).all(axis=1))
    if valid.size < 2:
        raise InputError(f"need at least 2 atoms with finite positions, got {valid.size}")
    return positions, valid, cKDTree(positions[valid])


def nearest_neighbour_distance(positions_A: ArrayLike) -> float:
    """Median over atoms of the distance to the nearest other atom, Å (NaN atoms ignored)."""
    _, _, tree = _valid_tree(positions_A)
    distances, _ = tree.query(tree.data, k=2)
    return float(np.median(distances[:, 1]))


def neighbours(
    positions_A: ArrayLike,
    reference: int,
    *,
    n_nearest: int | None = None,
    radius_A: float | None = None,
) -> np.ndarray:
    """Neighbours of a reference atom, nearest first (the reference itself not included).

    Exactly one of ``n_nearest`` (the n nearest atoms) and ``radius_A`` (every atom within that
    distance, Å) is given.  Atoms with NaN positions are never neighbours.
    """
    positions, valid, tree = _valid_tree(positions_A)
    if (n_nearest is None) == (radius_A is None):
        raise InputError("give exactly one of n_nearest and radius_A")
    if not 0 <= reference < positions.shape[0] or not np.isfinite(positions[reference]).all():
        raise InputError(f"reference atom {reference} is not a valid atom")
    if n_nearest is not None:
        if n_nearest < 1:
            raise InputError(f"n_nearest must be at least 1, got {n_nearest}")
        k = min(n_nearest + 1, valid.size)
        _, idx = tree.query(positions[reference], k=k)
        found = valid[np.atleast_1d(idx)]
    else:
        if radius_A <= 0:
            raise InputError(f"radius_A must be positive, got {radius_A}")
        idx = np.asarray(tree.query_ball_point(positions[reference], r=radius_A), dtype=int)
        found = valid[idx]
        order = np.argsort(np.linalg.norm(positions[found] - positions[reference], axis=1))
        found = found[order]
    found = found[found != reference]
    return found[:n_nearest] if n_nearest is not None else found


def reference_pairs(
    reference: int, neighbour_atoms: ArrayLike, *, include_self: bool = True
) -> np.ndarray:
    """Pair set of a reference atom and its neighbours.

    Returns ``(P, 2)`` int: ``(reference, j)`` for every neighbour j and, with ``include_self``,
    the self pairs ``(reference, reference)`` and ``(j, j)`` (the arrows that are drawn).
    """
    others = np.asarray(neighbour_atoms, dtype=int).ravel()
    cross = np.stack([np.full_like(others, reference), others], axis=1)
    if not include_self:
        return cross
    selves = np.concatenate([[reference], others])
    return np.concatenate([np.stack([selves, selves], axis=1), cross])


def pairs_within_radius(
    positions_A: ArrayLike, radius_A: float, *, include_self: bool = True
) -> np.ndarray:
    """All pairs ``(i, j)`` with ``i < j`` (and ``i = j`` with ``include_self``) within a radius.

    Returns ``(P, 2)`` int, sorted; NaN atoms never appear.
    """
    _, valid, tree = _valid_tree(positions_A)
    local = tree.query_pairs(r=radius_A, output_type="ndarray")
    pairs = np.sort(valid[local], axis=1) if local.size else np.empty((0, 2), dtype=int)
    if include_self:
        pairs = np.concatenate([np.stack([valid, valid], axis=1), pairs])
    order = np.lexsort((pairs[:, 1], pairs[:, 0]))
    return pairs[order]


def nearest_neighbour_pairs(positions_A: ArrayLike, tolerance: float = 0.15) -> np.ndarray:
    """All nearest-neighbour pairs ``(i, j)``, ``i < j``: distance ≤ (1 + tolerance)·d_nn.

    ``d_nn`` is :func:`nearest_neighbour_distance`.  Returns ``(P, 2)`` int.
    """
    d_nn = nearest_neighbour_distance(positions_A)
    return pairs_within_radius(positions_A, (1.0 + tolerance) * d_nn, include_self=False)


# --------------------------------------------------------------------------------------------
# Correlation coefficients
# --------------------------------------------------------------------------------------------


def correlation_coefficients(green_A2: ArrayLike, pairs: ArrayLike) -> np.ndarray:
    """``ρ_ij = tr G_ij / sqrt(tr G_ii · tr G_jj)`` for pairs ``(P, 2)``; returns ``(P,)``."""
    pairs = np.asarray(pairs, dtype=int).reshape(-1, 2)
    trace = np.trace(pair_blocks(green_A2, pairs), axis1=1, axis2=2)
    self_trace = np.trace(
        pair_blocks(green_A2, np.repeat(pairs.reshape(-1, 1), 2, axis=1)), axis1=1, axis2=2
    ).reshape(-1, 2)
    return trace / np.sqrt(self_trace[:, 0] * self_trace[:, 1])


@dataclass(frozen=True)
class NeighbourCorrelation:
    """Nearest-neighbour correlation coefficient ρ_nn of one Green's tensor.

    Attributes
    ----------
    mean, std
        Mean and standard deviation of ρ over the nearest-neighbour pairs.
    values
        ``(P,)`` ρ per pair.
    pairs
        ``(P, 2)`` the pairs ``(i, j)``.
    distance_A
        The nearest-neighbour distance used, Å.
    """

    mean: float
    std: float
    values: np.ndarray
    pairs: np.ndarray
    distance_A: float


def nearest_neighbour_correlation(
    green_A2: ArrayLike, positions_A: ArrayLike, tolerance: float = 0.15
) -> NeighbourCorrelation:
    """ρ_nn over all nearest-neighbour pairs of atoms with finite tensor entries (conventions §4).

    Parameters
    ----------
    green_A2
        ``(2N, 2N)`` Green's tensor, Å² (NaN rows for excluded atoms).
    positions_A
        ``(N, 2)`` mean positions, Å.
    tolerance
        Relative tolerance on the nearest-neighbour distance.
    """
    positions = np.array(positions_A, dtype=float)
    green = np.asarray(green_A2, dtype=float)
    excluded = ~np.isfinite(np.diagonal(green)).reshape(-1, 2).all(axis=1)
    positions[excluded] = np.nan
    pairs = nearest_neighbour_pairs(positions, tolerance)
    values = correlation_coefficients(green, pairs)
    if values.size == 0:
        raise InputError("no nearest-neighbour pairs among the atoms with finite correlations")
    return NeighbourCorrelation(
        mean=float(values.mean()),
        std=float(values.std()),
        values=values,
        pairs=pairs,
        distance_A=nearest_neighbour_distance(positions),
    )


# --------------------------------------------------------------------------------------------
# Local lattice frame and unit-cell averages
# --------------------------------------------------------------------------------------------


def frame_rotation(x_direction_yx: ArrayLike) -> np.ndarray:
    """Rotation from lab to a local frame whose x axis points along ``x_direction_yx``.

    Parameters
    ----------
    x_direction_yx
        ``(2,)`` direction ``(y, x)`` of the local x axis in lab coordinates.

    Returns
    -------
    numpy.ndarray
        ``R`` ``(2, 2)``, a proper rotation acting on ``(y, x)`` component vectors:
        ``u_local = R @ u_lab``.  Row 0 is the local y axis, row 1 the local x axis, both in lab
        ``(y, x)`` components; the local y axis is the local x axis turned like lab y is from
        lab x (so the identity is returned for the lab x direction).
    """
    d = np.asarray(x_direction_yx, dtype=float)
    norm = np.hypot(d[0], d[1])
    if not np.isfinite(norm) or norm == 0:
        raise InputError(f"frame direction {d.tolist()} is not a finite non-zero vector")
    ey, ex = d / norm
    return np.array([[ex, -ey], [ey, ex]])


def local_frame(positions_A: ArrayLike, atom: int, neighbour: int | None = None) -> np.ndarray:
    """Local lattice frame with x pointing from ``atom`` to ``neighbour`` (its nearest if None).

    Returns the rotation ``R`` of :func:`frame_rotation`.
    """
    positions = np.asarray(positions_A, dtype=float)
    if neighbour is None:
        neighbour = int(neighbours(positions, atom, n_nearest=1)[0])
    return frame_rotation(positions[neighbour] - positions[atom])


def rotate_blocks(blocks_A2: ArrayLike, rotation: ArrayLike) -> np.ndarray:
    """Express 2×2 blocks ``(..., 2, 2)`` in a rotated frame: ``R G Rᵀ``."""
    r = np.asarray(rotation, dtype=float)
    return np.einsum("ab,...bc,dc->...ad", r, np.asarray(blocks_A2, dtype=float), r)


@dataclass(frozen=True)
class UnitCellAverages:
    """Correlations averaged over identical unit-cell pairs (same ``l' − l``, κ, κ').

    Attributes
    ----------
    keys
        ``(C, 4)`` int, ``(Δl1, Δl2, κ, κ')`` with ``Δl = l_j − l_i`` for a pair ``(i, j)``.
    blocks_A2
        ``(C, 2, 2)`` Å², mean block ``⟨G_ij⟩`` in the local frame (``R G Rᵀ``).
    lab_blocks_A2
        ``(C, 2, 2)`` Å², the same means in the lab ``(y, x)`` frame.
    counts
        ``(C,)`` number of atom pairs averaged in each class.
    separation_A
        ``(C, 2)`` mean separation ``r_j − r_i`` in the lab frame, Å.
    rotation
        ``(2, 2)`` lab → local rotation (row 0 local y, row 1 local x, lab ``(y, x)``
        components).
    """

    keys: np.ndarray
    blocks_A2: np.ndarray
    lab_blocks_A2: np.ndarray
    counts: np.ndarray
    separation_A: np.ndarray
    rotation: np.ndarray

    def class_of(
        self, cell_index: ArrayLike, basis_index: ArrayLike, pairs: ArrayLike
    ) -> np.ndarray:
        """Class index ``(P,)`` of each pair ``(i, j)``; -1 where the class is not present."""
        pairs = np.asarray(pairs, dtype=int).reshape(-1, 2)
        query = _pair_keys(np.asarray(cell_index), np.asarray(basis_index), pairs)
        n_classes = self.keys.shape[0]
        _, inverse = np.unique(np.concatenate([self.keys, query]), axis=0, return_inverse=True)
        inverse = inverse.ravel()
        class_of_unique = np.full(inverse.max() + 1, -1)
        class_of_unique[inverse[:n_classes]] = np.arange(n_classes)
        return class_of_unique[inverse[n_classes:]]


def _pair_keys(cell_index: np.ndarray, basis_index: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    i, j = pairs[:, 0], pairs[:, 1]
    dl = cell_index[j] - cell_index[i]
    return np.column_stack([dl, basis_index[i], basis_index[j]]).astype(np.int64)


@dataclass(frozen=True)
class UnitCellClasses:
    """The atom pairs of each unit-cell class ``(l_j − l_i, κ_i, κ_j)`` (fixed by the lattice
    indices and positions alone, so one instance averages any tensor of the same atoms: the
    full sample and every resampling replica alike).

    Attributes
    ----------
    keys
        ``(C, 4)`` int ``(Δl1, Δl2, κ, κ')``, sorted.
    pairs
        ``(P, 2)`` atom pairs ``(i, j)`` averaged (both orders and the self pairs).
    class_index
        ``(P,)`` class of each pair.
    counts
        ``(C,)`` pairs per class.
    separation_A
        ``(C, 2)`` mean separation ``r_j − r_i`` in the lab frame, Å.
    """

    keys: np.ndarray
    pairs: np.ndarray
    class_index: np.ndarray
    counts: np.ndarray
    separation_A: np.ndarray

    def _class_sum(self, values: np.ndarray) -> np.ndarray:
        """Per-class sums of ``(P, k)`` values: ``(C, k)``."""
        n = self.keys.shape[0]
        return np.stack(
            [np.bincount(self.class_index, weights=v, minlength=n) for v in values.T], axis=1
        )

    def mean_blocks(self, green_A2: ArrayLike) -> np.ndarray:
        """``(C, 2, 2)`` Å², the mean block ``⟨G_ij⟩`` of each class (lab ``(y, x)`` frame)."""
        blocks = pair_blocks(green_A2, self.pairs).reshape(-1, 4)
        return (self._class_sum(blocks) / self.counts[:, None]).reshape(-1, 2, 2)

    def members(self) -> list[np.ndarray]:
        """``(P_c, 2)`` pairs of each class (:func:`~.correlation_significance.class_members`
        form)."""
        order = np.argsort(self.class_index, kind="stable")
        return np.split(self.pairs[order], np.cumsum(self.counts)[:-1])


def unit_cell_classes(
    cell_index: ArrayLike,
    basis_index: ArrayLike,
    positions_A: ArrayLike,
    valid: ArrayLike | None = None,
    *,
    max_distance_A: float | None = None,
) -> UnitCellClasses:
    """Group the pairs of valid atoms by ``(l_j − l_i, κ_i, κ_j)``.

    Parameters
    ----------
    cell_index, basis_index
        ``(N, 2)`` and ``(N,)`` int lattice indices (atoms with ``κ < 0``, not indexed, are
        left out).
    positions_A
        ``(N, 2)`` mean positions, Å (NaN rows left out).
    valid
        ``(N,)`` bool, atoms that may enter (default all).
    max_distance_A
        Only pairs closer than this (all pairs when None).

    Raises
    ------
    InputError
        Mismatched shapes, or no valid atom.
    """
    cells = np.asarray(cell_index, dtype=np.int64)
    basis = np.asarray(basis_index, dtype=np.int64).ravel()
    positions = np.asarray(positions_A, dtype=float)
    n_atoms = basis.size
    if cells.shape != (n_atoms, 2) or positions.shape != (n_atoms, 2):
        raise InputError(
            f"cell_index {cells.shape}, basis_index {basis.shape} and positions "
            f"{positions.shape} do not describe the same atoms"
        )
    ok = np.isfinite(positions).all(axis=1) & (basis >= 0)
    if valid is not None:
        ok &= np.asarray(valid, dtype=bool)
    use = np.flatnonzero(ok)
    if use.size == 0:
        raise InputError("no atom with a finite position and a lattice index to average")
    if max_distance_A is None:
        ii, jj = np.meshgrid(use, use, indexing="ij")
        pairs = np.column_stack([ii.ravel(), jj.ravel()])
    else:
        tree = cKDTree(positions[use])
        local = tree.query_pairs(r=max_distance_A, output_type="ndarray").reshape(-1, 2)
        upper = use[local]
        pairs = np.concatenate([np.column_stack([use, use]), upper, upper[:, ::-1]], axis=0)
    keys, inverse, counts = np.unique(
        _pair_keys(cells, basis, pairs), axis=0, return_inverse=True, return_counts=True
    )
    sep = positions[pairs[:, 1]] - positions[pairs[:, 0]]
    classes = UnitCellClasses(
        keys=keys,
        pairs=pairs,
        class_index=inverse.ravel(),
        counts=counts,
        separation_A=np.zeros((keys.shape[0], 2)),
    )
    return dataclasses.replace(classes, separation_A=classes._class_sum(sep) / counts[:, None])


def unit_cell_averages(
    green_A2: ArrayLike,
    cell_index: ArrayLike,
    basis_index: ArrayLike,
    positions_A: ArrayLike,
    rotation: ArrayLike | None = None,
    *,
    max_distance_A: float | None = None,
) -> UnitCellAverages:
    """Average the 2×2 blocks over all pairs with the same ``(l_j − l_i, κ_i, κ_j)``.

    Parameters
    ----------
    green_A2
        ``(2N, 2N)`` Green's tensor, Å² (atoms with NaN diagonal are left out).
    cell_index
        ``(N, 2)`` int unit-cell indices ``l = (l1, l2)``.
    basis_index
        ``(N,)`` int basis indices κ.
    positions_A
        ``(N, 2)`` mean positions, Å (for separations and the distance cut).
    rotation
        Lab → local rotation ``(2, 2)`` (:func:`local_frame`); identity when None.
    max_distance_A
        Only pairs closer than this are averaged (all pairs when None).

    Returns
    -------
    UnitCellAverages
        Classes sorted by key, with their counts, separations and the frame.
    """
    green = np.asarray(green_A2, dtype=float)
    n_atoms = green.shape[0] // 2
    if np.shape(positions_A) != (n_atoms, 2):
        raise InputError(
            f"positions {np.shape(positions_A)} do not match the {n_atoms} atoms of the "
            "Green's tensor"
        )
    r = np.eye(2) if rotation is None else np.asarray(rotation, dtype=float)
    ok = np.isfinite(np.diagonal(green)).reshape(-1, 2).all(axis=1)
    classes = unit_cell_classes(
        cell_index, basis_index, positions_A, ok, max_distance_A=max_distance_A
    )
    lab = classes.mean_blocks(green)
    return UnitCellAverages(
        keys=classes.keys,
        blocks_A2=rotate_blocks(lab, r),
        lab_blocks_A2=lab,
        counts=classes.counts,
        separation_A=classes.separation_A,
        rotation=r,
    )


def distance_shells(distance_A: ArrayLike, gap_A: float) -> np.ndarray:
    """Neighbour shell of each distance: runs of the sorted distances without a gap wider than
    ``gap_A`` are one shell, numbered from 0 (the shortest; 0 is the self shell when zero
    distances are among them).

    Returns ``(n,)`` int.
    """
    d = np.asarray(distance_A, dtype=float).ravel()
    order = np.argsort(d, kind="stable")
    run = np.concatenate([[0], np.cumsum(np.diff(d[order]) > gap_A)])
    shells = np.empty(d.size, dtype=int)
    shells[order] = run
    return shells


def central_frame(positions_A: ArrayLike) -> tuple[np.ndarray, int]:
    """The local lattice frame of a set of atoms (conventions §4): x from the atom nearest
    their centre towards its nearest neighbour.

    Returns
    -------
    rotation
        ``(2, 2)`` lab → local rotation (:func:`frame_rotation`).
    reference
        The central atom.

    Raises
    ------
    InputError
        Fewer than two atoms with finite positions.
    """
    positions = np.asarray(positions_A, dtype=float)
    finite = np.flatnonzero(np.isfinite(positions).all(axis=1))
    if finite.size < 2:
        raise InputError("a local lattice frame needs at least two atoms with finite positions")
    centre = positions[finite].mean(axis=0)
    ref = int(finite[np.argmin(np.linalg.norm(positions[finite] - centre, axis=1))])
    return local_frame(positions, ref), ref


# --------------------------------------------------------------------------------------------
# Arrows (paper Fig. 2 and 4)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Arrows:
    """Correlation arrows: napari Vectors data and what each arrow is.

    Attributes
    ----------
    data
        ``(M, 2, 2)`` ``[start, projection]`` in Å ``(y, x)``: start at the atom, projection =
        block row × scale.
    kind
        ``(M,)`` int code into :data:`ARROW_KINDS` (self_y, self_x, ref_y, ref_x).
    atom
        ``(M,)`` atom at which each arrow is drawn.
    values_A2
        ``(M, 2)`` the correlation vector (block row) itself, Å².
    sigma
        ``(M,)`` significance of each arrow against zero in σ
        (:func:`~caviar_napari.analysis.correlation_significance.arrow_significance`; ``+inf``
        for self arrows), or None when not computed.
    """

    data: np.ndarray
    kind: np.ndarray
    atom: np.ndarray
    values_A2: np.ndarray
    sigma: np.ndarray | None = None


def correlation_arrows(
    positions_A: ArrayLike,
    self_atoms: ArrayLike,
    self_blocks_A2: ArrayLike,
    neighbour_atoms: ArrayLike,
    reference_blocks_A2: ArrayLike,
    scale_A_per_A2: float,
    rotation: ArrayLike | None = None,
    reference_sigma: ArrayLike | None = None,
) -> Arrows:
    """Arrows of paper Fig. 2: block rows drawn at atoms, scaled to lengths on screen.

    Parameters
    ----------
    positions_A
        ``(N, 2)`` mean positions, Å.
    self_atoms
        ``(S,)`` atoms j that get self-correlation arrows (rows of ``G_jj``).
    self_blocks_A2
        ``(S, 2, 2)`` their blocks ``G_jj``, Å².
    neighbour_atoms
        ``(P,)`` atoms j that get their correlation with the reference atom i.
    reference_blocks_A2
        ``(P, 2, 2)`` blocks ``G_ij``, Å² (row a: reference's a with j's (y, x)).
    scale_A_per_A2
        Arrow length on screen (Å) per Å² of correlation.
    rotation
        Optional lab → local frame rotation R: the arrows are then the rows of ``R G`` (the
        reference's displacement along the local y and x axes with j's displacement), still
        drawn in lab coordinates.
    reference_sigma
        Optional ``(P, 2)`` significance (σ) of the rows of ``R G_ij``
        (:func:`~caviar_napari.analysis.correlation_significance.arrow_significance` with the same
        rotation, or ``class_significance`` for unit-cell averages); carried into
        :attr:`Arrows.sigma` (self arrows get ``+inf``).

    Returns
    -------
    Arrows
        Two arrows per atom: row y then row x (``self_y, self_x`` or ``ref_y, ref_x``).
    """
    positions = np.asarray(positions_A, dtype=float)
    r = np.eye(2) if rotation is None else np.asarray(rotation, dtype=float)
    atoms = np.concatenate(
        [np.asarray(self_atoms, dtype=int).ravel(), np.asarray(neighbour_atoms, dtype=int).ravel()]
    )
    blocks = np.concatenate(
        [
            np.asarray(self_blocks_A2, dtype=float).reshape(-1, 2, 2),
            np.asarray(reference_blocks_A2, dtype=float).reshape(-1, 2, 2),
        ]
    )
    rows = np.einsum("ab,pbc->pac", r, blocks).reshape(-1, 2)  # (2P, 2): row y then row x
    n_self = np.asarray(self_atoms).size
    kind = np.tile(np.arange(2), atoms.size) + 2 * np.repeat(np.arange(atoms.size) >= n_self, 2)
    atom = np.repeat(atoms, 2)
    starts = positions[atom]
    keep = np.isfinite(rows).all(axis=1) & np.isfinite(starts).all(axis=1)
    data = np.stack([starts, rows * scale_A_per_A2], axis=1)
    sigma = None
    if reference_sigma is not None:
        ref = np.asarray(reference_sigma, dtype=float).reshape(-1)
        if ref.size != 2 * np.asarray(neighbour_atoms).size:
            raise InputError(
                f"reference_sigma has {ref.size} values for {np.asarray(neighbour_atoms).size} "
                "neighbours (two rows each expected)"
            )
        sigma = np.concatenate([np.full(2 * n_self, np.inf), ref])[keep]
    return Arrows(
        data=data[keep], kind=kind[keep], atom=atom[keep], values_A2=rows[keep], sigma=sigma
    )


# --------------------------------------------------------------------------------------------
# LSM / CSM and matching to a ground truth
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Similarity:
    """Length- and cosine-similarity metrics (paper eqs. 3, 4) of a reconstruction vs a truth.

    Attributes
    ----------
    lsm_sum
        Eq. 3 as printed: ``Σ_ij |V_ij^rec| / |V_ij^GT|`` over pairs i and their two vectors j;
        it grows with the number of vectors.
    lsm_mean
        The same sum divided by the number of vectors (1 = equal lengths on average).
    csm
        Eq. 4: mean over pairs of ``Σ_j V^GT·V^rec / (sqrt(Σ_j |V^GT|²) sqrt(Σ_j |V^rec|²))``.
    n_pairs, n_vectors
        Pairs in the CSM mean and vectors in the LSM sum.
    skipped_vectors, skipped_pairs
        Vectors / pairs left out because the ground truth (or, for CSM, either side) is zero or
        not finite.
    """

    lsm_sum: float
    lsm_mean: float
    csm: float
    n_pairs: int
    n_vectors: int
    skipped_vectors: int
    skipped_pairs: int


def similarity(
    green_reconstructed_A2: ArrayLike, green_truth_A2: ArrayLike, pairs: ArrayLike
) -> Similarity:
    """LSM (eq. 3, sum and mean) and CSM (eq. 4) between two tensors over a pair set.

    Both tensors use the same atom indexing (see :func:`match_atoms` / :func:`reindex_green`).
    Each pair ``(i, j)`` contributes the two vectors of its 2×2 block (rows y and x).
    """
    rec = pair_blocks(green_reconstructed_A2, pairs)
    gt = pair_blocks(green_truth_A2, pairs)
    len_rec = np.linalg.norm(rec, axis=2)  # (P, 2)
    len_gt = np.linalg.norm(gt, axis=2)
    ok_vec = np.isfinite(len_rec) & np.isfinite(len_gt) & (len_gt > 0)
    ratios = len_rec[ok_vec] / len_gt[ok_vec]
    norm_rec = np.sqrt((rec**2).sum(axis=(1, 2)))
    norm_gt = np.sqrt((gt**2).sum(axis=(1, 2)))
    ok_pair = np.isfinite(norm_rec) & np.isfinite(norm_gt) & (norm_rec > 0) & (norm_gt > 0)
    cos = (gt * rec).sum(axis=(1, 2))[ok_pair] / (norm_gt[ok_pair] * norm_rec[ok_pair])
    if ratios.size == 0 or cos.size == 0:
        raise InputError("no pair with finite, non-zero correlations to compare")
    return Similarity(
        lsm_sum=float(ratios.sum()),
        lsm_mean=float(ratios.mean()),
        csm=float(cos.mean()),
        n_pairs=int(cos.size),
        n_vectors=int(ratios.size),
        skipped_vectors=int((~ok_vec).sum()),
        skipped_pairs=int((~ok_pair).sum()),
    )


@dataclass(frozen=True)
class AtomMatch:
    """Reconstructed atoms matched one-to-one to ground-truth atoms by nearest mean position.

    Attributes
    ----------
    truth_index
        ``(N_rec,)`` int, the matched ground-truth atom of each reconstructed atom, -1 if none.
    distance_A
        ``(N_rec,)`` distance to it after removing ``shift_A`` (NaN where unmatched).
    unmatched_reconstructed, unmatched_truth
        Indices left without a partner.
    shift_A
        ``(2,)`` global shift ``(y, x)`` subtracted from the reconstructed positions first.
    """

    truth_index: np.ndarray
    distance_A: np.ndarray
    unmatched_reconstructed: np.ndarray
    unmatched_truth: np.ndarray
    shift_A: np.ndarray


def match_atoms(
    reconstructed_A: ArrayLike,
    truth_A: ArrayLike,
    tolerance_A: float = 0.5,
    *,
    align: bool = True,
) -> AtomMatch:
    """Match atoms by nearest mean position, one-to-one, within a tolerance.

    Parameters
    ----------
    reconstructed_A, truth_A
        ``(N_rec, 2)`` and ``(N_gt, 2)`` mean positions ``(y, x)``, Å (NaN never matches).
    tolerance_A
        Largest accepted distance, Å.
    align
        First remove the median offset between each reconstructed atom and its nearest truth
        atom (a global shift of the reconstruction's frame).

    Returns
    -------
    AtomMatch
        When two reconstructed atoms claim the same truth atom, the nearer one keeps it.
    """
    rec = np.asarray(reconstructed_A, dtype=float)
    truth = np.asarray(truth_A, dtype=float)
    if tolerance_A <= 0:
        raise InputError(f"matching tolerance must be positive, got {tolerance_A} Å")
    _, valid_gt, tree = _valid_tree(truth)
    finite = np.isfinite(rec).all(axis=1)
    shift = np.zeros(2)
    if align and finite.any():
        _, idx = tree.query(rec[finite])
        shift = np.median(rec[finite] - truth[valid_gt[idx]], axis=0)
    distance = np.full(rec.shape[0], np.inf)
    index = np.full(rec.shape[0], -1)
    if finite.any():
        d, idx = tree.query(rec[finite] - shift)
        distance[finite] = d
        index[finite] = valid_gt[idx]
    index[distance > tolerance_A] = -1
    # one-to-one: for each truth atom keep the nearest claimant
    claimed = np.flatnonzero(index >= 0)
    order = claimed[np.argsort(distance[claimed], kind="stable")]
    _, first = np.unique(index[order], return_index=True)
    winners = np.zeros(rec.shape[0], dtype=bool)
    winners[order[first]] = True
    index[~winners] = -1
    distance[index < 0] = np.nan
    unmatched_truth = np.setdiff1d(np.arange(truth.shape[0]), index[index >= 0])
    return AtomMatch(
        truth_index=index,
        distance_A=distance,
        unmatched_reconstructed=np.flatnonzero(index < 0),
        unmatched_truth=unmatched_truth,
        shift_A=shift,
    )


@dataclass(frozen=True)
class TruthComparison:
    """A reconstruction's correlations against a ground truth (e.g. the realised tensor).

    Attributes
    ----------
    similarity
        LSM (sum and mean) and CSM over ``pairs``.
    match
        The atom matching used.
    pairs
        ``(P, 2)`` pairs compared, in reconstructed atom indices (unmatched atoms dropped).
    rho_nn_reconstructed, rho_nn_truth
        ρ_nn of both tensors over the same nearest-neighbour pairs of matched atoms.
    """

    similarity: Similarity
    match: AtomMatch
    pairs: np.ndarray
    rho_nn_reconstructed: NeighbourCorrelation
    rho_nn_truth: NeighbourCorrelation


def compare_to_truth(
    green_A2: ArrayLike,
    positions_A: ArrayLike,
    truth_green_A2: ArrayLike,
    truth_positions_A: ArrayLike,
    pairs: ArrayLike,
    *,
    tolerance_A: float = 0.5,
    nn_tolerance: float = 0.15,
) -> TruthComparison:
    """Match atoms, re-index the truth tensor and compute LSM/CSM and ρ_nn of both.

    Parameters
    ----------
    green_A2, positions_A
        Reconstructed tensor ``(2N, 2N)`` Å² and mean positions ``(N, 2)`` Å.
    truth_green_A2, truth_positions_A
        Ground-truth tensor ``(2M, 2M)`` (the *realised* one of the configurations used) and
        its mean positions ``(M, 2)``.
    pairs
        ``(P, 2)`` pair set in reconstructed indices.
    tolerance_A
        Matching tolerance (:func:`match_atoms`).
    nn_tolerance
        Relative tolerance of the nearest-neighbour distance for ρ_nn.
    """
    match = match_atoms(positions_A, truth_positions_A, tolerance_A)
    truth = reindex_green(truth_green_A2, match.truth_index)
    pairs = np.asarray(pairs, dtype=int).reshape(-1, 2)
    kept = pairs[(match.truth_index[pairs] >= 0).all(axis=1)]
    if kept.size == 0:
        raise InputError(
            f"no pair of the chosen set has both atoms matched to the ground truth within "
            f"{tolerance_A} Å"
        )
    positions = np.array(positions_A, dtype=float)
    green = np.asarray(green_A2, dtype=float)
    positions[match.truth_index < 0] = np.nan
    rho_rec = nearest_neighbour_correlation(green, positions, nn_tolerance)
    rho_truth = _correlation_on_pairs(truth, rho_rec)
    return TruthComparison(
        similarity=similarity(green, truth, kept),
        match=match,
        pairs=kept,
        rho_nn_reconstructed=rho_rec,
        rho_nn_truth=rho_truth,
    )


def _correlation_on_pairs(green_A2: np.ndarray, like: NeighbourCorrelation) -> NeighbourCorrelation:
    values = correlation_coefficients(green_A2, like.pairs)
    return NeighbourCorrelation(
        mean=float(np.nanmean(values)),
        std=float(np.nanstd(values)),
        values=values,
        pairs=like.pairs,
        distance_A=like.distance_A,
    )
