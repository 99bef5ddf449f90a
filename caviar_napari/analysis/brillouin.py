"""Paths through the Brillouin zone of a 2D lattice (conventions §5).

Reduced wave vectors ``q = f1 b1 + f2 b2`` with ``a_i · b_j = δ_ij`` (no 2π).  The standard
paths are Γ–M–K–Γ for hexagonal lattices (M = b1/2, K = (b1 + b2)/3 when the a's are at 120°,
K = (2 b1 + b2)/3 when they are at 60°), Γ–X–M–Γ (square) or Γ–X–S–Y–Γ (rectangular) for 90°
cells; any other path is given as text (:func:`parse_path`).

Two samplings of a path:

* :func:`path_points` — the points of a commensurate grid (and their reciprocal-lattice images)
  that lie on the path: the only q where the Green's-function estimator (eq. 6) is exact;
* :func:`dense_path` — evenly spaced points along the path, for a model that gives frequencies
  at any q (the force-constant estimator).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from numpy.typing import ArrayLike

from caviar_napari.analysis.phonons import reciprocal_vectors
from caviar_napari.errors import InputError

__all__ = [
    "DENSE_PATH_POINTS",
    "BrillouinPath",
    "DensePath",
    "PathPoints",
    "branch_averages",
    "cell_angle_deg",
    "default_path",
    "dense_path",
    "is_hexagonal",
    "parse_path",
    "path_average",
    "path_points",
]

#: Default number of points of a dense path.
DENSE_PATH_POINTS = 301

_GAMMA_NAMES = ("G", "GAMMA", "Γ")


@dataclass(frozen=True, eq=False)
class BrillouinPath:
    """A path through reciprocal space, straight segments between labelled vertices.

    Attributes
    ----------
    labels
        Vertex labels, e.g. ``("Γ", "M", "K", "Γ")``.
    vertices_frac
        ``(nv, 2)`` vertices in reduced coordinates of ``b1, b2``.
    """

    labels: tuple[str, ...]
    vertices_frac: np.ndarray

    def __post_init__(self) -> None:
        v = np.asarray(self.vertices_frac, dtype=float)
        labels = tuple(str(s) for s in self.labels)
        if v.ndim != 2 or v.shape[1] != 2 or v.shape[0] < 2 or not np.all(np.isfinite(v)):
            raise InputError(f"path: need ≥ 2 finite (f1, f2) vertices, got {v.tolist()}")
        if len(labels) != v.shape[0]:
            raise InputError(f"path: {len(labels)} labels for {v.shape[0]} vertices")
        if np.any(np.all(np.diff(v, axis=0) == 0, axis=1)):
            raise InputError(f"path {'–'.join(labels)}: two consecutive vertices coincide")
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "vertices_frac", v)

    @property
    def name(self) -> str:
        """The path as text, e.g. ``Γ–M–K–Γ``."""
        return "–".join(self.labels)


def _label(text: str) -> str:
    return "Γ" if text.strip().upper() in _GAMMA_NAMES else text.strip()


def parse_path(text: str) -> BrillouinPath:
    """Parse a user path ``"LABEL=f1,f2; LABEL=f1,f2; …"`` (reduced coordinates of b1, b2).

    Coordinates may be decimals or fractions (``1/3``); ``G`` or ``Gamma`` is shown as Γ.
    Example: ``"G=0,0; X=1/2,0; M=1/2,1/2; G=0,0"``.

    Raises
    ------
    InputError
        Naming the malformed entry.
    """
    entries = [e for e in text.replace("\n", ";").split(";") if e.strip()]
    labels, vertices = [], []
    for entry in entries:  # a handful of path vertices
        try:
            label, coords = entry.split("=", 1)
            f1, f2 = (float(Fraction(c.strip())) for c in coords.split(","))
        except (ValueError, ZeroDivisionError):
            raise InputError(
                f"path entry {entry.strip()!r}: expected LABEL=f1,f2 (e.g. M=1/2,0)"
            ) from None
        labels.append(_label(label))
        vertices.append((f1, f2))
    return BrillouinPath(tuple(labels), np.array(vertices, dtype=float).reshape(-1, 2))


def cell_angle_deg(lattice_vectors_A: ArrayLike) -> float:
    """Angle between a1 and a2 in degrees."""
    a = np.asarray(lattice_vectors_A, dtype=float)
    c = a[0] @ a[1] / (np.linalg.norm(a[0]) * np.linalg.norm(a[1]))
    return math.degrees(math.acos(float(np.clip(c, -1.0, 1.0))))


def is_hexagonal(lattice_vectors_A: ArrayLike, tol: float = 0.02) -> bool:
    """True if ``|a1| = |a2|`` (relative ``tol``) and the angle is 60° or 120° (±``tol`` rad)."""
    a = np.asarray(lattice_vectors_A, dtype=float)
    n1, n2 = np.linalg.norm(a, axis=1)
    angle = math.radians(cell_angle_deg(a))
    equal = abs(n1 - n2) <= tol * max(n1, n2)
    return bool(equal and min(abs(angle - math.pi / 3), abs(angle - 2 * math.pi / 3)) <= tol)


def default_path(lattice_vectors_A: ArrayLike) -> BrillouinPath:
    """The standard path for a cell: Γ–M–K–Γ (hexagonal), Γ–X–M–Γ (square), Γ–X–S–Y–Γ (90°).

    For a hexagonal cell M = b1/2 and K = (b1 + b2)/3 when a1, a2 are at 120° (b's at 60°), or
    K = (2 b1 + b2)/3 when a1, a2 are at 60° (b's at 120°): both are corners of the zone adjacent
    to M.

    Raises
    ------
    InputError
        For an oblique cell, which has no standard path: give one (:func:`parse_path`).
    """
    a = np.asarray(lattice_vectors_A, dtype=float)
    angle = cell_angle_deg(a)
    if is_hexagonal(a):
        k = (1 / 3, 1 / 3) if angle > 90 else (2 / 3, 1 / 3)
        return BrillouinPath(("Γ", "M", "K", "Γ"), np.array([(0, 0), (0.5, 0), k, (0, 0)]))
    if abs(angle - 90.0) <= 1.0:
        n1, n2 = np.linalg.norm(a, axis=1)
        if abs(n1 - n2) <= 0.02 * max(n1, n2):
            return BrillouinPath(
                ("Γ", "X", "M", "Γ"), np.array([(0, 0), (0.5, 0), (0.5, 0.5), (0, 0)])
            )
        return BrillouinPath(
            ("Γ", "X", "S", "Y", "Γ"),
            np.array([(0, 0), (0.5, 0), (0.5, 0.5), (0, 0.5), (0, 0)]),
        )
    raise InputError(
        f"lattice vectors {a.tolist()} (angle {angle:.1f}°) are neither hexagonal nor "
        "rectangular: give a path, e.g. 'G=0,0; A=1/2,0; B=1/2,1/2; G=0,0'"
    )


@dataclass(frozen=True, eq=False)
class PathPoints:
    """Commensurate q on a path.

    Attributes
    ----------
    q_index
        ``(np,)`` index into the commensurate grid.
    q_frac
        ``(np, 2)`` the point on the path (a reciprocal-lattice image of the grid point).
    distance_invA
        ``(np,)`` distance along the path, 1/Å (no 2π).
    vertex_distance_invA
        ``(nv,)`` distance of each vertex along the path.
    """

    q_index: np.ndarray
    q_frac: np.ndarray
    distance_invA: np.ndarray
    vertex_distance_invA: np.ndarray


def path_points(
    path: BrillouinPath, q_frac: ArrayLike, lattice_vectors_A: ArrayLike, tol: float = 1e-6
) -> PathPoints:
    """The grid points (and their reciprocal-lattice images) lying on the path's segments.

    A grid point at a vertex shared by two segments appears once per segment (twice in the
    plot); :attr:`PathPoints.q_index` tells the distinct ones apart.
    """
    q = np.asarray(q_frac, dtype=float)
    b = reciprocal_vectors(lattice_vectors_A)
    shifts = np.stack(np.meshgrid([-1, 0, 1], [-1, 0, 1], indexing="ij"), -1).reshape(-1, 2)
    cand = (q[:, None, :] + shifts[None, :, :]).reshape(-1, 2)  # (nq*9, 2)
    cand_idx = np.repeat(np.arange(q.shape[0]), shifts.shape[0])
    cart = cand @ b
    verts = path.vertices_frac @ b
    seg_len = np.linalg.norm(np.diff(verts, axis=0), axis=1)
    start = np.concatenate([[0.0], np.cumsum(seg_len)])
    scale = float(np.max(np.linalg.norm(b, axis=1)))
    idx, frac, dist = [], [], []
    for s in range(len(seg_len)):  # a few path segments
        d = verts[s + 1] - verts[s]
        rel = cart - verts[s]
        t = rel @ d / seg_len[s] ** 2
        perp = np.abs(rel[:, 0] * d[1] - rel[:, 1] * d[0]) / seg_len[s]
        on = (perp <= tol * scale) & (t >= -tol) & (t <= 1 + tol)
        order = np.argsort(t[on], kind="stable")
        idx.append(cand_idx[on][order])
        frac.append(cand[on][order])
        dist.append(start[s] + np.clip(t[on][order], 0, 1) * seg_len[s])
    return PathPoints(
        q_index=np.concatenate(idx).astype(int),
        q_frac=np.concatenate(frac).reshape(-1, 2),
        distance_invA=np.concatenate(dist),
        vertex_distance_invA=start,
    )


def branch_averages(frequencies_THz: ArrayLike, q_index: ArrayLike) -> np.ndarray:
    """Mean over the distinct path q of each branch: ``(..., nq, nb) -> (..., nb)``."""
    f = np.asarray(frequencies_THz)
    uniq = np.unique(np.asarray(q_index, dtype=int))
    if uniq.size == 0:
        return np.full(f.shape[:-2] + f.shape[-1:], np.nan)
    return f[..., uniq, :].mean(axis=-2)


@dataclass(frozen=True, eq=False)
class DensePath:
    """Evenly spaced points along a path.

    Attributes
    ----------
    q_frac
        ``(nd, 2)`` points, reduced coordinates; every vertex is one of them.
    distance_invA
        ``(nd,)`` distance along the path, 1/Å (no 2π).
    vertex_distance_invA
        ``(nv,)`` distance of each vertex.
    """

    q_frac: np.ndarray
    distance_invA: np.ndarray
    vertex_distance_invA: np.ndarray


def dense_path(
    path: BrillouinPath, lattice_vectors_A: ArrayLike, n_points: int = DENSE_PATH_POINTS
) -> DensePath:
    """About ``n_points`` points along ``path``, evenly spaced in distance, vertices included.

    Each segment gets a number of intervals proportional to its length (at least one), so the
    spacing is nearly uniform; a vertex shared by two segments appears once.
    """
    n_points = int(n_points)
    if n_points < 2:
        raise InputError(f"a dense path needs at least 2 points, got {n_points}")
    b = reciprocal_vectors(lattice_vectors_A)
    verts = path.vertices_frac
    seg_len = np.linalg.norm(np.diff(verts @ b, axis=0), axis=1)
    start = np.concatenate([[0.0], np.cumsum(seg_len)])
    intervals = np.maximum(1, np.round((n_points - 1) * seg_len / start[-1]).astype(int))
    q, dist = [verts[:1]], [start[:1]]
    for s, n in enumerate(intervals):  # a few path segments
        t = np.arange(1, n + 1)[:, None] / n
        q.append(verts[s] + t * (verts[s + 1] - verts[s]))
        dist.append(start[s] + t[:, 0] * seg_len[s])
    return DensePath(
        q_frac=np.concatenate(q), distance_invA=np.concatenate(dist), vertex_distance_invA=start
    )


def path_average(frequencies_THz: ArrayLike, distance_invA: ArrayLike) -> np.ndarray:
    """Arc-length mean of each branch along a dense path: ``(..., nd, nb) -> (..., nb)``.

    The trapezoidal rule over the path distance (a vertex repeated by a zero-length step adds
    nothing).
    """
    f = np.asarray(frequencies_THz, dtype=float)
    d = np.asarray(distance_invA, dtype=float)
    w = np.zeros_like(d)
    step = np.diff(d)
    w[:-1] += step / 2
    w[1:] += step / 2
    return np.einsum("...qb,q->...b", f, w) / (d[-1] - d[0])
