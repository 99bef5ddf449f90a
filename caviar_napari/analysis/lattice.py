"""Lattice indexing of atom positions: lattice vectors, unit-cell index (l1, l2), basis index κ.

Conventions §3: each atom gets a unit-cell index ``l = (l1, l2)`` and a basis index κ from two
lattice vectors, given or estimated from the positions.  Positions and vectors are ``(y, x)`` in Å;
lattice vectors are the rows of a ``(2, 2)`` array ``[a1, a2]``, so an ideal site is
``origin + l1 a1 + l2 a2 + basis[κ]`` (``l @ L`` in numpy).

Estimation (:func:`estimate_lattice_vectors`)
    Difference vectors from atoms near the centre to their neighbours are clustered; a cluster
    centre ``t`` is a lattice translation when it maps most atoms onto atoms (``r + t`` has an
    atom within the tolerance for ≥ ``min_translation_fraction`` of the atoms whose ``r + t``
    falls inside the convex hull of the positions).  Nearest-neighbour vectors of a honeycomb
    map only one sublattice onto the other (fraction ≈ 1/2) and are rejected.  In 2D the two
    shortest non-collinear translations form a primitive basis; it is refined by least squares
    over all matched translations and put in a canonical form: ``|a1| ≤ |a2|``,
    ``a1 · a2 ≤ 0`` (120° for hexagonal lattices, conventions §5), right-handed where the lengths
    allow it, and ``a1`` as close to the +x direction as possible.

Indexing (:func:`index_lattice`)
    Fractional coordinates modulo 1 are clustered on the torus into basis sites.  Cell indices
    are shifted to start at 0.  With estimated vectors the vectors, the origin and the basis
    offsets are refined by linear least squares over all atoms.

Canonical indexing (:func:`canonical_index`)
    The indexing is then put in a form fixed by the structure itself, not by its orientation in
    the lab, so that two copies of one crystal turned by any angle (the two z-ranges of a
    twisted bilayer) number every unit-cell class ``(l' − l, κ, κ')`` alike.  Among the
    symmetric equivalents of the reduced basis (the shortest ``a1``; the shortest ``a2`` with
    ``a1 · a2 ≤ 0`` that makes a primitive pair, right-handed where the lengths allow it) and
    the choices of the reference site κ = 0 (a site of the first species), the one whose basis
    — each site's species rank and fractional offset from κ = 0 — sorts first is kept.  Choices
    that tie are related by a rotation that maps the crystal onto itself, so they give the same
    classes; among them ``a1`` nearest the +x direction is taken.  With given lattice vectors
    only κ = 0 is chosen so.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import ConvexHull, QhullError, cKDTree

from caviar_napari.errors import InputError
from caviar_napari.io.atoms_file import AtomsData

#: A candidate translation must map at least this fraction of atoms onto atoms.
MIN_TRANSLATION_FRACTION = 0.75


@dataclass(frozen=True)
class LatticeIndex:
    """Result of :func:`index_lattice`.

    Attributes
    ----------
    lattice_vectors_A
        ``(2, 2)`` rows ``a1, a2`` as ``(y, x)``, Å.
    origin_A
        ``(y, x)`` position of the origin of cell ``(0, 0)`` (where basis atom 0 sits), Å.
    basis_A
        ``(basis, 2)`` offsets of the basis atoms from their cell origin, Å (``basis_A[0] = 0``).
    cell_index
        ``(atom, 2)`` int ``(l1, l2)``, starting at 0; ``-1`` for atoms with NaN positions.
    basis_index
        ``(atom,)`` int κ; ``-1`` for atoms with NaN positions.
    """

    lattice_vectors_A: np.ndarray
    origin_A: np.ndarray
    basis_A: np.ndarray
    cell_index: np.ndarray
    basis_index: np.ndarray

    @property
    def n_basis(self) -> int:
        """Number of basis atoms per cell."""
        return int(self.basis_A.shape[0])

    def ideal_positions_A(self) -> np.ndarray:
        """``(atom, 2)`` ideal site of every atom, ``origin + l @ L + basis[κ]``, Å."""
        pos = (
            self.origin_A
            + self.cell_index @ self.lattice_vectors_A
            + self.basis_A[np.maximum(self.basis_index, 0)]
        )
        pos[self.basis_index < 0] = np.nan
        return pos


def _finite_positions(positions_A: ArrayLike, minimum: int) -> tuple[np.ndarray, np.ndarray]:
    pos = np.asarray(positions_A, dtype=float)
    if pos.ndim != 2 or pos.shape[1] != 2:
        raise InputError(f"atom positions must be (atom, 2) as (y, x), got shape {pos.shape}")
    ok = np.all(np.isfinite(pos), axis=1)
    if ok.sum() < minimum:
        raise InputError(
            f"lattice indexing needs at least {minimum} atoms with finite positions, "
            f"got {int(ok.sum())}"
        )
    return pos, ok


def _cluster(points: np.ndarray, radius: float, boxsize: float | None = None) -> np.ndarray:
    """Labels of the connected components of points closer than ``radius`` (transitively)."""
    tree = cKDTree(points, boxsize=boxsize)
    pairs = tree.query_pairs(radius, output_type="ndarray")
    n = len(points)
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """z-component of ``a × b`` with vectors stored as ``(y, x)`` (x right, y down in images)."""
    return a[..., 1] * b[..., 0] - a[..., 0] * b[..., 1]


def canonical_basis(lattice_vectors_A: ArrayLike, rel_tol: float = 0.02) -> np.ndarray:
    """Return an equivalent primitive basis in canonical form.

    ``a1`` is, among the shortest lattice vectors (lengths within ``rel_tol`` of the
    shortest), the one closest to the +x direction; ``a2`` is the shortest vector that forms a
    primitive basis with ``a1`` and makes ``a1 · a2 ≤ 0`` (90° for rectangular, 120° for
    hexagonal lattices), right-handed (``a1 × a2 > 0`` with x right, y down) where the lengths
    allow it.
    """
    a1, a2 = np.asarray(lattice_vectors_A, dtype=float)
    if abs(_cross(a1, a2)) < 1e-9 * max(np.dot(a1, a1), np.dot(a2, a2)):
        raise InputError(f"lattice vectors {a1.tolist()} and {a2.tolist()} are collinear")
    for _ in range(100):  # Gauss-Lagrange reduction (terminates in a few steps)
        if np.dot(a2, a2) < np.dot(a1, a1):
            a1, a2 = a2, a1
        m = round(float(np.dot(a1, a2) / np.dot(a1, a1)))
        if m == 0:
            break
        a2 = a2 - m * a1
    reduced = np.stack([a1, a2])
    grid = np.arange(-2, 3)
    m = np.stack(np.meshgrid(grid, grid, indexing="ij"), -1).reshape(-1, 2)
    m = m[np.any(m != 0, axis=1)]
    v = m @ reduced
    length = np.hypot(v[:, 0], v[:, 1])
    short = np.flatnonzero(length <= length.min() * (1 + rel_tol))
    angle = np.abs(np.arctan2(v[short, 0], v[short, 1]))
    i = short[np.lexsort((v[short, 0], np.round(angle, 6)))[0]]
    b1, m1 = v[i], m[i]
    unimodular = np.abs(m1[0] * m[:, 1] - m1[1] * m[:, 0]) == 1
    obtuse = v @ b1 <= rel_tol * length[i] ** 2
    cand = np.flatnonzero(unimodular & obtuse)
    cand = cand[length[cand] <= length[cand].min() * (1 + rel_tol)]
    j = cand[np.lexsort((length[cand], _cross(b1, v[cand]) <= 0))[0]]
    return np.stack([b1, v[j]])


def _translation_fractions(
    tree: cKDTree, pos: np.ndarray, hull: np.ndarray | None, shifts: np.ndarray, tol: float
) -> np.ndarray:
    """For each shift ``t`` the fraction of atoms ``r`` (with ``r + t`` inside the convex hull
    of the positions) that have an atom within ``tol`` of ``r + t``.

    ``hull`` holds the hull's facet equations ``(n·p + c ≤ 0`` inside), or None.
    """
    moved = pos[None, :, :] + shifts[:, None, :]  # (shift, atom, 2)
    if hull is None:
        inside = np.ones(moved.shape[:2], dtype=bool)
    else:
        slack = 1e-9 * float(np.abs(pos).max() + 1)
        inside = np.all(moved @ hull[:, :2].T + hull[:, 2] <= slack, axis=-1)
    dist, _ = tree.query(moved.reshape(-1, 2), distance_upper_bound=tol)
    matched = np.isfinite(dist).reshape(inside.shape) & inside
    n_inside = inside.sum(axis=1)
    return np.where(n_inside > 0, matched.sum(axis=1) / np.maximum(n_inside, 1), 0.0)


def estimate_lattice_vectors(
    positions_A: ArrayLike,
    *,
    tolerance_A: float | None = None,
    max_length_A: float | None = None,
    n_central: int = 64,
    min_translation_fraction: float = MIN_TRANSLATION_FRACTION,
) -> np.ndarray:
    """Estimate two primitive lattice vectors from atom positions.

    Parameters
    ----------
    positions_A
        ``(atom, 2)`` positions ``(y, x)``, Å (NaN rows ignored); at least 6 atoms, and enough
        cells that the central atoms see whole neighbour shells.
    tolerance_A
        Matching tolerance, Å; default 0.25 × the median nearest-neighbour distance.
    max_length_A
        Longest lattice vector searched, Å; default 6 × the nearest-neighbour distance.
    n_central
        Number of atoms near the centroid whose neighbour vectors give the candidates.
    min_translation_fraction
        Fraction of atoms a candidate must map onto atoms to count as a lattice translation.

    Returns
    -------
    numpy.ndarray
        ``(2, 2)`` rows ``a1, a2`` (``(y, x)``, Å) in canonical form (:func:`canonical_basis`).
    """
    pos, ok = _finite_positions(positions_A, 6)
    pos = pos[ok]
    tree = cKDTree(pos)
    dnn = float(np.median(tree.query(pos, k=2)[0][:, 1]))
    if dnn <= 0:
        raise InputError("atom positions contain duplicates (nearest-neighbour distance 0)")
    tol = 0.25 * dnn if tolerance_A is None else float(tolerance_A)
    r_max = 6.0 * dnn if max_length_A is None else float(max_length_A)
    try:
        hull: np.ndarray | None = ConvexHull(pos).equations
    except QhullError:
        hull = None  # all atoms on a line: no 2D hull
    centroid = pos.mean(axis=0)
    central = np.argsort(np.hypot(*(pos - centroid).T))[: min(n_central, len(pos))]
    neighbours = tree.query_ball_point(pos[central], r_max)
    i_idx = np.repeat(central, [len(nb) for nb in neighbours])
    j_idx = np.concatenate([np.asarray(nb, dtype=int) for nb in neighbours])
    diffs = pos[j_idx] - pos[i_idx]
    diffs = diffs[np.hypot(*diffs.T) > 0.5 * dnn]
    if len(diffs) < 2:
        raise InputError("too few neighbour vectors to estimate lattice vectors")
    labels = _cluster(diffs, 0.5 * tol)
    n_clusters = labels.max() + 1
    counts = np.bincount(labels, minlength=n_clusters)
    centres = (
        np.stack(
            [np.bincount(labels, diffs[:, a], minlength=n_clusters) for a in range(2)], axis=-1
        )
        / counts[:, None]
    )
    # candidates seen from enough central atoms, shortest first; only one of ±t is needed
    keep = counts >= max(2, 0.2 * len(central))
    centres, counts = centres[keep], counts[keep]
    eps = 1e-9 * dnn
    half_plane = (centres[:, 1] > eps) | ((np.abs(centres[:, 1]) <= eps) & (centres[:, 0] > 0))
    centres = centres[half_plane]
    order = np.argsort(np.hypot(*centres.T))
    centres = centres[order]
    fractions = _translation_fractions(tree, pos, hull, centres, tol)
    translations = centres[fractions >= min_translation_fraction]
    if len(translations) < 2:
        raise InputError(
            f"could not find two lattice translations among the positions (tolerance "
            f"{tol:.3g} Å, search radius {r_max:.3g} Å); give the lattice vectors explicitly"
        )
    t_arr = translations
    a1 = t_arr[0]
    sines = np.abs(_cross(a1, t_arr)) / (np.hypot(*a1) * np.hypot(*t_arr.T))
    non_collinear = np.flatnonzero(sines > 0.2)
    if non_collinear.size == 0:
        raise InputError("all lattice translations found are collinear; give the lattice vectors")
    basis = np.stack([a1, t_arr[non_collinear[0]]])
    # least squares over every matched translation: t ≈ m @ L with integer m
    m = np.rint(t_arr @ np.linalg.inv(basis))
    good = np.all(np.abs(t_arr @ np.linalg.inv(basis) - m) < 0.2, axis=1)
    refined, *_ = np.linalg.lstsq(m[good], t_arr[good], rcond=None)
    return canonical_basis(refined)


def _circular_centres(residue: np.ndarray, labels: np.ndarray, n: int) -> np.ndarray:
    """Per-cluster centre of fractional coordinates on the unit torus, in ``[0, 1)``."""
    _, first = np.unique(labels, return_index=True)  # each cluster's first member (labels 0..n-1)
    ref = residue[first]
    delta = residue - ref[labels]
    delta -= np.rint(delta)
    counts = np.bincount(labels, minlength=n)
    mean = np.stack([np.bincount(labels, delta[:, a], minlength=n) for a in range(2)], -1)
    return np.mod(ref + mean / counts[:, None], 1.0)


def index_lattice(
    positions_A: ArrayLike,
    lattice_vectors_A: ArrayLike | None = None,
    *,
    tolerance_A: float | None = None,
    n_basis: int | None = None,
    refine: bool | None = None,
) -> LatticeIndex:
    """Give every atom a unit-cell index ``(l1, l2)`` and a basis index κ.

    Parameters
    ----------
    positions_A
        ``(atom, 2)`` positions ``(y, x)``, Å (e.g. the mean positions).  Rows with NaN get
        index ``-1``.
    lattice_vectors_A
        ``(2, 2)`` rows ``a1, a2`` (Å), used as given; ``None`` estimates them
        (:func:`estimate_lattice_vectors`).
    tolerance_A
        Distance within which atoms belong to the same basis site, Å; default 0.25 × the
        median nearest-neighbour distance.
    n_basis
        Expected number of basis atoms per cell; a different count is an :class:`InputError`.
    refine
        Refine vectors, origin and basis offsets by least squares over all atoms; default: only
        when the vectors were estimated (given vectors are kept exactly).

    Returns
    -------
    LatticeIndex
        In canonical form (:func:`canonical_index` without species: call it again with the
        species once they are known).
    """
    pos, ok = _finite_positions(positions_A, 2 if lattice_vectors_A is not None else 6)
    good = pos[ok]
    tree = cKDTree(good)
    dnn = float(np.median(tree.query(good, k=2)[0][:, 1]))
    tol = 0.25 * dnn if tolerance_A is None else float(tolerance_A)
    if lattice_vectors_A is None:
        L = estimate_lattice_vectors(good, tolerance_A=tolerance_A)
        refine = True if refine is None else refine
    else:
        L = np.asarray(lattice_vectors_A, dtype=float)
        if L.shape != (2, 2) or not np.all(np.isfinite(L)):
            raise InputError(f"'lattice_vectors_A' must be a finite (2, 2) array, got {L.tolist()}")
        if abs(np.linalg.det(L)) < 1e-9 * float((L**2).sum()):
            raise InputError(f"'lattice_vectors_A' rows are collinear: {L.tolist()}")
        refine = False if refine is None else refine
    inv = np.linalg.inv(L)
    ref = int(np.argmin(np.hypot(*(good - good.mean(axis=0)).T)))
    frac = (good - good[ref]) @ inv
    residue = np.mod(frac, 1.0)
    residue[residue >= 1.0] = 0.0
    tol_frac = tol / float(np.sqrt(abs(np.linalg.det(L))))
    labels = _cluster(residue, tol_frac, boxsize=1.0)
    n_sites = int(labels.max()) + 1
    centres = _circular_centres(residue, labels, n_sites)
    # κ = 0 is the reference atom's site; the others by offset from it, (f1, f2) order
    offsets = np.mod(centres - centres[labels[ref]], 1.0)
    offsets[offsets > 1 - 1e-6] = 0.0
    offsets[labels[ref]] = 0.0
    order = np.lexsort((np.round(offsets[:, 1], 6), np.round(offsets[:, 0], 6)))
    rank = np.empty(n_sites, dtype=int)
    rank[order] = np.arange(n_sites)
    kappa = rank[labels]
    basis_frac = offsets[order]
    if n_basis is not None and n_sites != n_basis:
        raise InputError(
            f"found {n_sites} basis sites per cell, expected n_basis={n_basis} (tolerance "
            f"{tol:.3g} Å); check the lattice vectors or the positions"
        )
    cells = np.rint(frac - basis_frac[kappa]).astype(int)
    lmin = cells.min(axis=0)
    cells -= lmin
    origin = good[ref] + lmin @ L
    basis_A = basis_frac @ L
    if refine:
        # r_i = c_κ + l_i @ L : solve for L (2x2) and the site positions c_κ (basis x 2)
        design = np.concatenate([cells.astype(float), np.eye(n_sites)[kappa]], axis=1)
        sol, *_ = np.linalg.lstsq(design, good, rcond=None)
        L = sol[:2]
        sites = sol[2:]
        origin = sites[0]
        basis_A = sites - sites[0]
    cell_index = np.full((len(pos), 2), -1, dtype=int)
    basis_index = np.full(len(pos), -1, dtype=int)
    cell_index[ok] = cells
    basis_index[ok] = kappa
    found = LatticeIndex(
        lattice_vectors_A=np.asarray(L, dtype=float),
        origin_A=np.asarray(origin, dtype=float),
        basis_A=np.asarray(basis_A, dtype=float),
        cell_index=cell_index,
        basis_index=basis_index,
    )
    return canonical_index(found, keep_vectors=lattice_vectors_A is not None)


#: Sites whose fractional offsets differ by less than this are the same in :func:`canonical_index`.
SITE_TOLERANCE_FRAC = 0.05


def _reduced(L: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gauss–Lagrange reduction: ``(T, T @ L)`` with ``T`` integer unimodular."""
    T = np.eye(2, dtype=int)
    R = L.copy()
    for _ in range(100):  # terminates in a few steps
        if np.dot(R[1], R[1]) < np.dot(R[0], R[0]):
            R, T = R[::-1].copy(), T[::-1].copy()
        m = round(float(np.dot(R[0], R[1]) / np.dot(R[0], R[0])))
        if m == 0:
            break
        R[1] -= m * R[0]
        T[1] -= m * T[0]
    return T, R


def equivalent_bases(lattice_vectors_A: ArrayLike, rel_tol: float = 0.02) -> np.ndarray:
    """Every reduced basis of a lattice: ``(n, 2, 2)`` integer ``M`` with rows ``M @ L``.

    ``a1`` is any of the shortest lattice vectors (lengths within ``rel_tol``); ``a2`` the
    shortest vectors that make a primitive pair with it and ``a1 · a2 ≤ 0``, right-handed
    (``a1 × a2 > 0``, x right, y down) where any of them is.  Six bases for a hexagonal
    lattice, four for a square one, two for a rectangular or oblique one.
    """
    L = np.asarray(lattice_vectors_A, dtype=float)
    T, R = _reduced(L)
    grid = np.arange(-2, 3)
    m = np.stack(np.meshgrid(grid, grid, indexing="ij"), -1).reshape(-1, 2)
    m = m[np.any(m != 0, axis=1)]
    v = m @ R
    length = np.hypot(v[:, 0], v[:, 1])
    out = []
    for i in np.flatnonzero(length <= length.min() * (1 + rel_tol)):
        unimodular = np.abs(m[i, 0] * m[:, 1] - m[i, 1] * m[:, 0]) == 1
        obtuse = v @ v[i] <= rel_tol * length[i] ** 2
        cand = np.flatnonzero(unimodular & obtuse)
        cand = cand[length[cand] <= length[cand].min() * (1 + rel_tol)]
        right = cand[_cross(v[i], v[cand]) > 0]
        for j in right if right.size else cand:
            out.append(np.stack([m[i], m[j]]) @ T)
    return np.asarray(out, dtype=int)


def _site_order(rank: np.ndarray, frac: np.ndarray, first: int) -> np.ndarray:
    """Sites sorted by species rank, then the reference site, then fractional offset."""
    q = np.round(frac / SITE_TOLERANCE_FRAC)
    others = np.arange(rank.size) != first
    return np.lexsort((q[:, 1], q[:, 0], others, rank))


def canonical_index(
    index: LatticeIndex,
    species: ArrayLike | None = None,
    *,
    keep_vectors: bool = False,
    rel_tol: float = 0.02,
) -> LatticeIndex:
    """The same indexing in the canonical form of the module docstring.

    Parameters
    ----------
    index
        An indexing (:func:`index_lattice`).
    species
        ``(atom,)`` species of the atoms (their most common name per basis site labels the
        site; sites are ranked by name), or None: all sites alike.
    keep_vectors
        Keep the lattice vectors; choose only the reference site κ = 0.
    rel_tol
        Relative tolerance on lattice-vector lengths.

    Returns
    -------
    LatticeIndex
        The same sites (``ideal_positions_A`` unchanged) with lattice vectors ``M @ L`` for an
        integer unimodular ``M``, basis sites renumbered and cell indices starting at 0.
    """
    L = np.asarray(index.lattice_vectors_A, dtype=float)
    kappa = np.asarray(index.basis_index, dtype=int)
    n_sites = index.n_basis
    labels = [""] * n_sites
    if species is not None:
        names = np.asarray(species, dtype=str)
        for k in range(n_sites):  # a few basis sites
            found, counts = np.unique(names[kappa == k], return_counts=True)
            if found.size:
                labels[k] = str(found[np.argmax(counts)])
    rank = np.unique(labels, return_inverse=True)[1].reshape(-1)
    bases = np.eye(2, dtype=int)[None] if keep_vectors else equivalent_bases(L, rel_tol)
    tol = SITE_TOLERANCE_FRAC
    choices, keys = [], []
    for M in bases:  # at most six bases × a few reference sites
        new = M @ L
        inv = np.linalg.inv(new)
        for first in np.flatnonzero(rank == rank.min()):
            frac = np.mod((index.basis_A - index.basis_A[first]) @ inv + tol, 1.0) - tol
            order = _site_order(rank, frac, first)
            choices.append((M, first, frac, order))
            keys.append(np.column_stack([rank[order], frac[order]]).ravel())
    keys_arr = np.asarray(keys)
    tied = np.arange(len(choices))
    for col in range(keys_arr.shape[1]):  # tolerant lexicographic minimum
        values = keys_arr[tied, col]
        tied = tied[values <= values.min() + (0.5 if col % 3 == 0 else tol)]
    # ties map the crystal onto itself: a1 nearest +x, as canonical_basis
    a1 = np.stack([(choices[c][0] @ L)[0] for c in tied])
    angle = np.round(np.abs(np.arctan2(a1[:, 0], a1[:, 1])), 6)
    M, first, frac, order = choices[int(tied[np.lexsort((a1[:, 0], angle))[0]])]
    new = M @ L
    renumber = np.empty(n_sites, dtype=int)
    renumber[order] = np.arange(n_sites)
    raw = (index.basis_A - index.basis_A[first]) @ np.linalg.inv(new)
    shift = np.rint(raw - frac).astype(int)  # whole cells moved into the offsets' range
    inverse = np.rint(np.linalg.inv(M)).astype(int)
    ok = kappa >= 0
    cells = np.full_like(np.asarray(index.cell_index), -1)
    cells[ok] = index.cell_index[ok] @ inverse + shift[kappa[ok]]
    lmin = cells[ok].min(axis=0) if ok.any() else np.zeros(2, dtype=int)
    cells[ok] -= lmin
    basis_index = np.where(ok, renumber[np.maximum(kappa, 0)], -1)
    basis_A = np.empty_like(index.basis_A)
    basis_A[renumber] = frac @ new
    return LatticeIndex(
        lattice_vectors_A=new,
        origin_A=index.origin_A + index.basis_A[first] + lmin @ new,
        basis_A=basis_A,
        cell_index=cells,
        basis_index=basis_index,
    )


def species_by_strength(
    strength: ArrayLike, basis_index: ArrayLike, names: Sequence[str]
) -> np.ndarray:
    """Assign species to basis sites by their mean phase strength.

    The basis sites are sorted by mean strength (e.g. the peak phase from
    :class:`~caviar_napari.analysis.atoms.StateRefinement`) and split at the
    ``len(names) − 1`` largest gaps; ``names`` go from the weakest to the strongest scatterer
    (e.g. ``["B", "N"]`` for hBN, ``["C"]`` for graphene).

    Parameters
    ----------
    strength
        ``(atom,)`` phase strength (NaN ignored).
    basis_index
        ``(atom,)`` κ (``-1`` for unindexed atoms, which get ``""``).
    names
        Species names, weakest first.

    Returns
    -------
    numpy.ndarray
        ``(atom,)`` species names (str).
    """
    names = [str(n) for n in names]
    s = np.asarray(strength, dtype=float)
    kappa = np.asarray(basis_index, dtype=int)
    if s.shape != kappa.shape:
        raise InputError(f"strength {s.shape} and basis_index {kappa.shape} differ in shape")
    if not names:
        raise InputError("at least one species name is needed")
    n_sites = int(kappa.max()) + 1 if kappa.size and kappa.max() >= 0 else 0
    if len(names) > n_sites:
        raise InputError(
            f"{len(names)} species {names} for only {n_sites} basis sites: "
            "give at most one name per site"
        )
    valid = (kappa >= 0) & np.isfinite(s)
    sums = np.bincount(kappa[valid], s[valid], minlength=n_sites)
    counts = np.bincount(kappa[valid], minlength=n_sites)
    if np.any(counts == 0):
        raise InputError("a basis site has no atom with a finite phase strength")
    site_mean = sums / counts
    order = np.argsort(site_mean)
    gaps = np.diff(site_mean[order])
    cuts = np.sort(np.argsort(gaps)[::-1][: len(names) - 1])
    # the site of rank r belongs to the group given by the number of cuts below r
    group_of_rank = np.searchsorted(cuts, np.arange(n_sites), side="left")
    site_group = np.empty(n_sites, dtype=int)
    site_group[order] = group_of_rank
    out = np.full(kappa.shape, "", dtype=object)
    out[kappa >= 0] = np.asarray(names, dtype=object)[site_group[kappa[kappa >= 0]]]
    return out.astype(str)


def ensure_lattice_index(atoms: AtomsData, *, n_basis: int | None = None) -> AtomsData:
    """Return ``atoms`` with cell and basis indices, computing them only where absent.

    Present ``cell_index`` / ``basis_index`` are used as given (conventions §6).  Otherwise the mean
    positions are indexed with the file's ``lattice_vectors_A`` when it has them (kept as
    given), or with estimated vectors, in canonical form with the atoms' species
    (:func:`canonical_index`).

    Parameters
    ----------
    atoms
        An :class:`~caviar_napari.io.atoms_file.AtomsData`.
    n_basis
        Expected number of basis atoms per cell (checked when indexing).
    """
    if atoms.cell_index is not None and atoms.basis_index is not None:
        return atoms
    index = index_lattice(atoms.mean_positions_A, atoms.lattice_vectors_A, n_basis=n_basis)
    if atoms.species is not None:
        index = canonical_index(
            index, atoms.species, keep_vectors=atoms.lattice_vectors_A is not None
        )
    return dataclasses.replace(
        atoms,
        cell_index=index.cell_index,
        basis_index=index.basis_index,
        lattice_vectors_A=index.lattice_vectors_A,
    )
