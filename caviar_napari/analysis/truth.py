"""Comparisons of a reconstruction with a known truth (simulated data; the paper's Fig. 2).

Arrays in, numbers out: nothing here reads or writes files or parses arguments (the module
moved here from ``workflows/truth_metrics.py``).  Every
function works on Green's tensors ``(2N, 2N)`` in Å² with the dof index ``2i + a`` (``a = 0``
y, ``1`` x; conventions §4) and mean positions ``(N, 2)`` ``(y, x)`` in Å; NaN positions or
tensor rows mark excluded atoms.

* Pair sets, fixed by geometry: :func:`nearest_neighbour_pair_set` (every self block and every
  nearest-neighbour pair) and :func:`reference_pair_set` (an atom and its nearest neighbours).
* :func:`compare_pair_sets`: LSM (eq. 3, as a mean over vectors) and CSM (eq. 4) over both
  pair sets and over the nearest-neighbour cross blocks alone (:class:`Comparison`).
* :func:`rms_displacement_A`, :func:`offset_A2`: size of the displacements and the uniform
  x–x / y–y offset that partial spatial coherence leaves in the states.
* :func:`state_recovery`: each object state's displacement field against the configurations.
* :func:`field_of_view`, :func:`inside_field_of_view`: the scanned rectangle.
* :func:`species_from_truth`: species of reconstructed atoms from the nearest ideal site.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from caviar_napari.analysis import correlations as corr
from caviar_napari.analysis.uniform_offset import OffsetPairs
from caviar_napari.errors import InputError

__all__ = [
    "NN_RADIUS_FACTOR",
    "Comparison",
    "SpeciesAssignment",
    "StateRecovery",
    "compare_pair_sets",
    "field_of_view",
    "inside_field_of_view",
    "nearest_neighbour_pair_set",
    "offset_A2",
    "reference_pair_set",
    "rms_displacement_A",
    "species_from_truth",
    "state_recovery",
]

#: Pairs closer than this × the nearest-neighbour distance are nearest neighbours.
NN_RADIUS_FACTOR = 1.15


# ------------------------------------------------------------------------------ geometry
def field_of_view(scan_positions_A: ArrayLike, margin_A: float = 0.0) -> np.ndarray:
    """``[[y_min, x_min], [y_max, x_max]]`` of the scan positions, shrunk by ``margin_A`` (Å)."""
    pos = np.asarray(scan_positions_A, dtype=float).reshape(-1, 2)
    lo, hi = pos.min(axis=0) + margin_A, pos.max(axis=0) - margin_A
    if np.any(hi <= lo):
        raise InputError(
            f"field of view margin {margin_A} Å leaves no area inside the scan "
            f"({pos.min(axis=0)} … {pos.max(axis=0)} Å)"
        )
    return np.stack([lo, hi])


def inside_field_of_view(positions_A: ArrayLike, fov: ArrayLike) -> np.ndarray:
    """``(N,)`` bool: the positions inside the rectangle ``fov`` (edges included)."""
    p = np.asarray(positions_A, dtype=float)
    f = np.asarray(fov, dtype=float)
    return np.all((p >= f[0]) & (p <= f[1]), axis=1)


# ------------------------------------------------------------------------------ pair sets
def nearest_neighbour_pair_set(positions_A: ArrayLike) -> np.ndarray:
    """Every atom's self block and every nearest-neighbour pair, ``(P, 2)`` (NaN atoms left out).

    Nearest neighbours are the pairs within :data:`NN_RADIUS_FACTOR` × the nearest-neighbour
    distance (what ``caviar correlations --ground-truth`` compares by default).
    """
    positions = np.asarray(positions_A, dtype=float)
    radius = NN_RADIUS_FACTOR * corr.nearest_neighbour_distance(positions)
    return corr.pairs_within_radius(positions, radius)


def reference_pair_set(
    positions_A: ArrayLike, reference: int, n_neighbours: int
) -> tuple[np.ndarray, np.ndarray]:
    """The reference atom and its ``n_neighbours`` nearest neighbours, self blocks included.

    Returns
    -------
    pairs
        ``(P, 2)`` atom pairs.
    neighbours
        The neighbours' indices.
    """
    nbrs = corr.neighbours(positions_A, reference, n_nearest=n_neighbours)
    return corr.reference_pairs(reference, nbrs), nbrs


# ------------------------------------------------------------------------------ sizes
def offset_A2(green_A2: ArrayLike) -> float:
    """Uniform x–x / y–y offset: mean over pairs of distinct atoms of ``(G_yy + G_xx) / 2``, Å².

    Atoms with non-finite entries are left out (per direction:
    :mod:`caviar_napari.analysis.uniform_offset`).
    """
    g = np.asarray(green_A2, dtype=float)
    n = g.shape[0] // 2
    valid = np.flatnonzero(np.isfinite(np.diagonal(g)).reshape(n, 2).all(axis=1))
    if valid.size < 2:
        raise InputError("offset needs at least two atoms with finite correlations")
    pairs = OffsetPairs(atoms=valid, near=np.empty((0, 2), dtype=int), min_distance_A=0.0)
    return float(pairs.offset(g).mean())


def rms_displacement_A(green_A2: ArrayLike) -> float:
    """``sqrt(mean diag G)``: rms displacement per direction over atoms with finite entries, Å."""
    d = np.diagonal(np.asarray(green_A2, dtype=float))
    d = d[np.isfinite(d)]
    return float(np.sqrt(d.mean())) if d.size else math.nan


# ------------------------------------------------------------------------------ LSM / CSM
@dataclass(frozen=True)
class Comparison:
    """LSM / CSM of a reconstruction against one truth, over the two pair sets.

    ``None`` entries are undefined (a truth that is identically zero); ``note`` says why.
    LSM is eq. 3 as a mean over vectors (``lsm_sum`` keeps eq. 3 as printed).
    """

    truth: str
    lsm_reference: float | None = None
    csm_reference: float | None = None
    lsm_sum_reference: float | None = None
    lsm_nn: float | None = None
    csm_nn: float | None = None
    lsm_sum_nn: float | None = None
    csm_nn_cross: float | None = None
    n_pairs_reference: int = 0
    n_pairs_nn: int = 0
    note: str = ""


def compare_pair_sets(
    green_A2: np.ndarray,
    positions_A: np.ndarray,
    truth_green_A2: np.ndarray,
    truth_positions_A: np.ndarray,
    reference_pairs: np.ndarray,
    nn_pairs: np.ndarray,
    label: str,
) -> Comparison:
    """LSM/CSM over the reference pair set, the nearest-neighbour set and its cross blocks.

    Parameters
    ----------
    green_A2, positions_A
        Reconstruction.
    truth_green_A2, truth_positions_A
        The truth (atoms matched by nearest mean position).
    reference_pairs, nn_pairs
        :func:`reference_pair_set` and :func:`nearest_neighbour_pair_set` in reconstructed
        indices.
    label
        Name of the truth in the result.
    """
    if not np.any(truth_green_A2):
        return Comparison(truth=label, note="truth is identically zero: LSM/CSM undefined")
    ref = corr.compare_to_truth(
        green_A2, positions_A, truth_green_A2, truth_positions_A, reference_pairs
    )
    nn = corr.compare_to_truth(green_A2, positions_A, truth_green_A2, truth_positions_A, nn_pairs)
    cross_pairs = nn.pairs[nn.pairs[:, 0] != nn.pairs[:, 1]]
    truth_re = corr.reindex_green(truth_green_A2, nn.match.truth_index)
    cross = corr.similarity(green_A2, truth_re, cross_pairs)
    return Comparison(
        truth=label,
        lsm_reference=ref.similarity.lsm_mean,
        csm_reference=ref.similarity.csm,
        lsm_sum_reference=ref.similarity.lsm_sum,
        lsm_nn=nn.similarity.lsm_mean,
        csm_nn=nn.similarity.csm,
        lsm_sum_nn=nn.similarity.lsm_sum,
        csm_nn_cross=cross.csm,
        n_pairs_reference=ref.similarity.n_pairs,
        n_pairs_nn=nn.similarity.n_pairs,
    )


# ------------------------------------------------------------------------------ states
@dataclass(frozen=True)
class StateRecovery:
    """How well the object states reproduce the individual configurations.

    Attributes
    ----------
    assigned_r
        ``(min(N, C),)`` Pearson correlation of each state's displacement field with the
        configuration assigned to it (one-to-one, maximum total correlation).
    null_r
        Mean assigned correlation when the atoms of the configurations are randomly permuted
        (same fields, no relation to the states): what the assignment's selection alone gives.
    assignment
        ``(min(N, C), 2)`` pairs ``(state, configuration)``.
    """

    assigned_r: np.ndarray
    null_r: float
    assignment: np.ndarray

    @property
    def mean_r(self) -> float:
        """Mean correlation of the assigned pairs."""
        return float(self.assigned_r.mean()) if self.assigned_r.size else math.nan


def _pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(N, C)`` correlation of the rows of ``a`` ``(N, D)`` with those of ``b`` ``(C, D)``."""
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (a @ b.T) / np.outer(np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1))
    return np.where(np.isfinite(r), r, 0.0)


def state_recovery(
    states_u_A: ArrayLike, configs_u_A: ArrayLike, n_null: int = 50, seed: int = 0
) -> StateRecovery:
    """Assign states to configurations by displacement-field correlation (Hungarian algorithm).

    Parameters
    ----------
    states_u_A
        ``(N, A, 2)`` displacements of the reconstructed states (from their mean), Å.
    configs_u_A
        ``(C, A, 2)`` displacements of the configurations (from their mean), same atoms, Å.
    n_null
        Random atom permutations of the configurations averaged for :attr:`StateRecovery.null_r`.
    seed
        Seed of those permutations.

    Returns
    -------
    StateRecovery
        Atoms with a non-finite displacement in any state are left out.
    """
    from scipy.optimize import linear_sum_assignment

    s = np.asarray(states_u_A, dtype=float)
    c = np.asarray(configs_u_A, dtype=float)
    if s.ndim != 3 or c.ndim != 3 or s.shape[1:] != c.shape[1:] or s.shape[2] != 2:
        raise InputError(f"state recovery needs (N, A, 2) and (C, A, 2), got {s.shape}, {c.shape}")
    ok = np.isfinite(s).all(axis=(0, 2)) & np.isfinite(c).all(axis=(0, 2))
    if ok.sum() < 2:
        raise InputError("state recovery needs at least two atoms with finite positions")
    s, c = s[:, ok], c[:, ok]
    a = s.reshape(s.shape[0], -1)
    r = _pearson(a, c.reshape(c.shape[0], -1))
    rows, cols = linear_sum_assignment(-r)
    rng = np.random.default_rng(seed)
    perms = np.argsort(rng.random((n_null, c.shape[1])), axis=1)  # (n_null, A)
    null = []
    for perm in perms:  # a few dozen small assignments, not a hot path
        rn = _pearson(a, c[:, perm].reshape(c.shape[0], -1))
        i, j = linear_sum_assignment(-rn)
        null.append(rn[i, j].mean())
    return StateRecovery(
        assigned_r=r[rows, cols],
        null_r=float(np.mean(null)),
        assignment=np.stack([rows, cols], axis=1),
    )


# ------------------------------------------------------------------------------ species
@dataclass(frozen=True)
class SpeciesAssignment:
    """Species of reconstructed atoms taken from a truth's ideal sites.

    Attributes
    ----------
    species
        ``(atom,)`` names; ``""`` where unknown (unmatched atoms outside the indexed basis).
    n_matched
        Atoms matched to an ideal site.
    by_basis
        ``{basis index: species}`` when a basis index was given.
    n_disagreeing
        Matched atoms whose own site has another species than the one of their basis index.
    """

    species: np.ndarray
    n_matched: int
    by_basis: dict[int, str]
    n_disagreeing: int = 0


def species_from_truth(
    mean_positions_A: ArrayLike,
    truth_positions_A: ArrayLike,
    truth_species: ArrayLike,
    basis_index: ArrayLike | None = None,
    *,
    tolerance_A: float = 0.5,
) -> SpeciesAssignment:
    """Species of each atom from its nearest ideal site of the truth.

    Atoms are matched one-to-one by mean position within ``tolerance_A`` after removing the
    global shift (:func:`caviar_napari.analysis.correlations.match_atoms`).  With a basis index
    every atom of a basis site gets the species most of its matched atoms have (so that each
    basis index has one species, as the dispersion needs), unmatched ones included.

    Raises
    ------
    InputError
        When no atom matches an ideal site.
    """
    names = np.asarray(truth_species, dtype=str)
    match = corr.match_atoms(mean_positions_A, truth_positions_A, tolerance_A)
    matched = match.truth_index >= 0
    if not matched.any():
        raise InputError(
            f"no atom lies within {tolerance_A} Å of an ideal site of the ground truth"
        )
    species = np.full(match.truth_index.shape, "", dtype=names.dtype)
    species[matched] = names[match.truth_index[matched]]
    by_basis: dict[int, str] = {}
    disagreeing = 0
    if basis_index is not None:
        basis = np.asarray(basis_index, dtype=int)
        for b in np.unique(basis[basis >= 0]):
            own = species[(basis == b) & matched]
            if own.size == 0:
                continue
            kinds, counts = np.unique(own, return_counts=True)
            name = str(kinds[np.argmax(counts)])
            disagreeing += int(own.size - counts.max())
            by_basis[int(b)] = name
            species[basis == b] = name
    return SpeciesAssignment(
        species=species.astype(str),
        n_matched=int(matched.sum()),
        by_basis=by_basis,
        n_disagreeing=disagreeing,
    )
