"""Space-group operations of a 2D crystal, and what they do to displacements and wave vectors.

A crystal is a lattice (rows ``a1, a2`` as ``(y, x)`` in Å) with ``κ`` basis atoms at Cartesian
positions ``τ_κ`` (atom ``(l, κ)`` at ``l1 a1 + l2 a2 + τ_κ``) and a type per basis atom (its
species, or its mass).  An operation ``x → R x + t`` (``R`` orthogonal, Cartesian ``(y, x)``)
is a symmetry when it maps the crystal onto itself, atoms onto atoms of the same type:

    R τ_κ + t = τ_π(κ) + h_κ · A,       R (l · A) = (l · M) · A,

with ``π`` a permutation of the basis, ``h_κ`` an integer cell shift and ``M`` the integer
matrix of ``R`` on cell indices (row vectors).  Atom ``(l, κ)`` goes to ``(l M + h_κ, π(κ))``.

Displacements then transform as ``u'_(lM + h_κ, π(κ)) = R u_(l, κ)``, and with the Fourier
transform of conventions §5 (``ũ(q) = L^(−½) Σ_l u_l exp(−2πi q·l)``) a thermal ensemble that
is invariant under the operation has

    C(q') = U C(q) U^H,   q' = q M^(−T),   U_(π(κ)α, κβ) = exp(−2πi q'·h_κ) R_αβ,

for the covariance ``C(q) = ⟨ũ ũ^H⟩`` on a periodic ``L1 × L2`` block whose q grid the operation
maps onto itself.  :func:`star_average` uses this to average ``C`` over the star of every q
(issue 14's symmetry pooling); :mod:`.force_constants` uses the operations to tie the force
constants of symmetry-equivalent bonds together.

Operations are found numerically with a tolerance, so a reconstruction's slightly distorted
mean positions keep the symmetry of the ideal crystal; ``R`` is the orthogonal matrix nearest to
``A⁻¹ M A`` (transposed).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from caviar_napari.errors import InputError

__all__ = [
    "DEFAULT_SYMMETRY_TOLERANCE_A",
    "SymmetryOperation",
    "grid_operations",
    "space_group",
    "star_average",
]

#: Default tolerance (Å) for basis positions to count as mapped onto each other.
DEFAULT_SYMMETRY_TOLERANCE_A = 0.1

#: Relative tolerance for a lattice operation ``A⁻¹ M A`` to count as orthogonal.
LATTICE_TOLERANCE = 0.02


@dataclass(frozen=True, eq=False)
class SymmetryOperation:
    """One space-group operation ``x → R x + t`` of a 2D crystal (module docstring).

    Attributes
    ----------
    rotation
        ``(2, 2)`` orthogonal ``R`` acting on Cartesian ``(y, x)`` column vectors.
    cell_matrix
        ``(2, 2)`` int ``M``: cell indices (row vectors) map as ``l → l M + h_κ``.
    translation_A
        ``(2,)`` ``t`` in Å.
    permutation
        ``(κ,)`` int ``π``: basis atom κ goes to ``π(κ)``.
    cell_shift
        ``(κ, 2)`` int ``h_κ``.
    """

    rotation: np.ndarray
    cell_matrix: np.ndarray
    translation_A: np.ndarray
    permutation: np.ndarray
    cell_shift: np.ndarray

    @property
    def is_identity(self) -> bool:
        """True for the identity (no rotation, no permutation, no shift)."""
        kappa = self.permutation.size
        return bool(
            np.array_equal(self.cell_matrix, np.eye(2, dtype=int))
            and np.array_equal(self.permutation, np.arange(kappa))
            and not np.any(self.cell_shift)
        )

    @property
    def is_proper(self) -> bool:
        """True for a rotation (det R = +1), False for a mirror."""
        return bool(np.linalg.det(self.rotation) > 0)

    def map_q(self, q_frac: ArrayLike) -> np.ndarray:
        """Image ``q' = q M^(−T)`` of reduced wave vectors ``(..., 2)`` (``q'·(R r) = q·r``)."""
        return np.asarray(q_frac, dtype=float) @ np.linalg.inv(self.cell_matrix).T

    def map_bond(
        self, source: ArrayLike, target: ArrayLike, offset: ArrayLike
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Image of directed bonds ``(0, source) → (offset, target)``, again from cell 0."""
        s = np.asarray(source, dtype=int)
        t = np.asarray(target, dtype=int)
        off = np.asarray(offset, dtype=int).reshape(-1, 2)
        new_off = off @ self.cell_matrix + self.cell_shift[t] - self.cell_shift[s]
        return self.permutation[s], self.permutation[t], new_off.reshape(np.shape(offset))

    def displacement_matrix(self, q_frac: ArrayLike) -> np.ndarray:
        """``U(q)`` with ``ũ'(q') = U ũ(q)`` for the image ``q'`` of each q: ``(nq, 2κ, 2κ)``."""
        q_image = self.map_q(np.asarray(q_frac, dtype=float).reshape(-1, 2))
        kappa = self.permutation.size
        phase = np.exp(-2j * np.pi * (q_image @ self.cell_shift.T))  # (nq, κ)
        perm = np.zeros((kappa, kappa))
        perm[self.permutation, np.arange(kappa)] = 1.0
        # U[(π(κ), α), (κ, β)] = phase_κ R_αβ
        U = np.einsum("jk,qk,ab->qjakb", perm, phase, self.rotation)
        return U.reshape(-1, 2 * kappa, 2 * kappa)


def _nearest_orthogonal(matrix: np.ndarray) -> np.ndarray:
    u, _, vt = np.linalg.svd(matrix)
    return u @ vt


def _lattice_operations(A: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Integer ``M`` (entries −2 … 2, det ±1) whose ``Rᵀ = A⁻¹ M A`` is nearly orthogonal."""
    A_inv = np.linalg.inv(A)
    found = []
    for entries in itertools.product(range(-2, 3), repeat=4):  # 625 candidate matrices
        M = np.array(entries, dtype=int).reshape(2, 2)
        if abs(round(np.linalg.det(M))) != 1:
            continue
        R = (A_inv @ M @ A).T
        if np.abs(R @ R.T - np.eye(2)).max() <= LATTICE_TOLERANCE:
            found.append((M, _nearest_orthogonal(R)))
    return found


def space_group(
    lattice_vectors_A: ArrayLike,
    basis_A: ArrayLike,
    types: ArrayLike,
    tolerance_A: float = DEFAULT_SYMMETRY_TOLERANCE_A,
) -> tuple[SymmetryOperation, ...]:
    """The space-group operations of a 2D crystal (modulo lattice translations).

    Parameters
    ----------
    lattice_vectors_A
        ``(2, 2)`` rows ``a1, a2`` as ``(y, x)``, Å.
    basis_A
        ``(κ, 2)`` Cartesian basis positions ``(y, x)``, Å.
    types
        ``(κ,)`` labels: only atoms of equal type are mapped onto each other.
    tolerance_A
        Largest distance (Å) between an image and the atom it is taken for.

    Returns
    -------
    tuple of SymmetryOperation
        The identity first; at most one operation per ``(M, π)``.  Only the identity when two
        basis atoms coincide in projection (a projected 3D crystal: no in-plane symmetry is
        used then).
    """
    A = np.asarray(lattice_vectors_A, dtype=float)
    tau = np.atleast_2d(np.asarray(basis_A, dtype=float))
    kinds = np.asarray(types).astype(str)
    if A.shape != (2, 2) or abs(np.linalg.det(A)) < 1e-9:
        raise InputError(f"lattice_vectors_A must be two independent (y, x) rows, got {A!r}")
    if tau.ndim != 2 or tau.shape[1] != 2 or kinds.shape != (tau.shape[0],):
        raise InputError(f"basis_A {tau.shape} and types {kinds.shape} do not match")
    if not (np.isfinite(tolerance_A) and tolerance_A > 0):
        raise InputError(f"symmetry tolerance must be > 0 Å, got {tolerance_A!r}")
    A_inv = np.linalg.inv(A)
    kappa = tau.shape[0]
    identity = SymmetryOperation(
        rotation=np.eye(2),
        cell_matrix=np.eye(2, dtype=int),
        translation_A=np.zeros(2),
        permutation=np.arange(kappa),
        cell_shift=np.zeros((kappa, 2), dtype=int),
    )
    frac = (tau[:, None, :] - tau[None, :, :]) @ A_inv
    apart = np.linalg.norm((frac - np.rint(frac)) @ A, axis=-1)
    apart[np.diag_indices(kappa)] = np.inf
    if np.any(apart <= tolerance_A):
        return (identity,)
    ops: list[SymmetryOperation] = []
    seen: set[tuple[int, ...]] = set()
    for M, R in _lattice_operations(A):  # a few dozen lattice operations at most
        image0 = R @ tau[0]
        for k0 in np.flatnonzero(kinds == kinds[0]):  # candidate images of atom 0
            t = tau[k0] - image0
            images = tau @ R.T + t  # (κ, 2)
            # residual of image κ against atom κ' modulo the lattice
            frac = (images[:, None, :] - tau[None, :, :]) @ A_inv  # (κ, κ', 2)
            shift = np.rint(frac)
            resid = np.linalg.norm((frac - shift) @ A, axis=-1)
            # anchored on atom 0, the others' residuals can be twice the distortion
            ok = (resid <= 2 * tolerance_A) & (kinds[:, None] == kinds[None, :])
            if not np.all(ok.any(axis=1)):
                continue
            perm = np.argmin(np.where(ok, resid, np.inf), axis=1)
            if np.unique(perm).size != kappa:
                continue
            # the translation that fits all atoms best, then every residual within tolerance
            h = shift[np.arange(kappa), perm]
            t = t + np.mean(tau[perm] + h @ A - images, axis=0)
            if np.max(np.linalg.norm(tau @ R.T + t - tau[perm] - h @ A, axis=-1)) > tolerance_A:
                continue
            key = (*M.ravel().tolist(), *perm.tolist())
            if key in seen:
                continue
            seen.add(key)
            ops.append(
                SymmetryOperation(
                    rotation=R,
                    cell_matrix=M,
                    translation_A=t,
                    permutation=perm,
                    cell_shift=shift[np.arange(kappa), perm].astype(int),
                )
            )
    ops.sort(key=lambda op: not op.is_identity)
    if not ops or not ops[0].is_identity:  # pragma: no cover - the identity always maps
        raise InputError("internal: the identity is not a symmetry of the crystal")
    return tuple(ops)


def _grid_index(q_frac: np.ndarray, L1: int, L2: int) -> np.ndarray | None:
    """Index on the ``L1 × L2`` grid (order of ``commensurate_q_frac``), None if off-grid."""
    m = q_frac * np.array([L1, L2])
    mi = np.rint(m)
    if np.abs(m - mi).max() > 1e-6:
        return None
    mi = mi.astype(int)
    return np.mod(mi[:, 0], L1) * L2 + np.mod(mi[:, 1], L2)


def grid_operations(
    ops: tuple[SymmetryOperation, ...], q_frac: ArrayLike, L1: int, L2: int
) -> list[tuple[SymmetryOperation, np.ndarray]]:
    """The operations that map the ``L1 × L2`` grid onto itself, each with its index map."""
    q = np.asarray(q_frac, dtype=float).reshape(-1, 2)
    out = []
    for op in ops:  # a handful of operations
        idx = _grid_index(op.map_q(q), L1, L2)
        if idx is not None:
            out.append((op, idx))
    return out


def star_average(
    C: ArrayLike, q_frac: ArrayLike, cells: tuple[int, int], ops: tuple[SymmetryOperation, ...]
) -> tuple[np.ndarray, int]:
    """Average ``C(q) = ⟨ũ ũ^H⟩`` over the star of every q (symmetry pooling, issue 14).

    ``C̄(q') = (1/|G|) Σ_g U_g C(g⁻¹ q') U_g^H`` over the operations ``G`` that map the grid
    onto itself (module docstring).  A covariance that already has the crystal's symmetry is
    unchanged; a sample covariance gets the spread of ``|star|`` times as many samples.

    Parameters
    ----------
    C
        ``(..., nq, 2κ, 2κ)`` on the commensurate grid of ``cells = (L1, L2)``.
    q_frac
        ``(nq, 2)`` the grid (order of ``commensurate_q_frac``).
    cells
        ``(L1, L2)``.
    ops
        From :func:`space_group`.

    Returns
    -------
    pooled : ndarray
        The averaged covariance, same shape as ``C``.
    n_ops : int
        Number of operations used (1: no pooling was possible).
    """
    C = np.asarray(C)
    used = grid_operations(ops, q_frac, *cells)
    pooled = np.zeros_like(C, dtype=complex)
    for op, idx in used:  # |G| ≤ 12 operations
        U = op.displacement_matrix(q_frac)  # (nq, d, d)
        rotated = U @ C @ np.conj(np.swapaxes(U, -1, -2))
        pooled[..., idx, :, :] += rotated
    pooled /= len(used)
    return (pooled if np.iscomplexobj(C) else pooled.real), len(used)
