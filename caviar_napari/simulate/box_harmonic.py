"""Harmonic models of arbitrary atom sets in a periodic box (2D layers and 3D slabs).

:class:`~caviar_napari.analysis.phonons.Supercell` samples an ``L1 × L2`` supercell of a 2D
Bravais lattice, which is all a monolayer needs.  The thick presets (issue 16) need two more
geometries: a twisted layer, whose periodic box is a *coincidence* cell that is not an
``L1 × L2`` supercell of the layer's own lattice, and a 3D crystal slab (Si [110]) with free
surfaces along the beam.  :class:`BoxHarmonicModel` is the same physics for any atom set in a
box periodic along some axes:

* springs chosen by distance (:class:`~caviar_napari.analysis.phonons.Spring`), each bond with
  stiffness ``K = k_long e eᵀ + k_trans (I − e eᵀ)`` (eV/Å², ``e`` the unit bond vector) and
  potential energy ``V = ½ Σ_bonds (u_i − u_j)ᵀ K (u_i − u_j)``; every periodic image of a
  partner within a spring's length is a bond of its own (as in ``Supercell``);
* the force-constant matrix is singular along the ``d`` rigid translations (``d`` = 2 or 3
  displacement components), which are excluded as in
  :mod:`~caviar_napari.analysis.phonons`: the mass-weighted centre of mass is fixed and
  ``G = k_B T · M^(−½) D^+ M^(−½)``;
* snapshots are drawn through the Cholesky factor of ``D + s T Tᵀ`` (``T`` the orthonormal
  mass-weighted translations), so they are a fixed function of the normals — the same on every
  machine, BLAS and thread count (no eigenvector of a degenerate mode enters).

For a box that *is* an ``L1 × L2`` supercell this gives exactly
:meth:`Supercell.green_tensor <caviar_napari.analysis.phonons.Supercell.green_tensor>` (tested).

Components are ordered ``(y, x)`` in 2D and ``(y, x, z)`` in 3D (conventions §1, z last); degree
of freedom ``d·i + a``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy import linalg
from scipy.spatial import cKDTree

from caviar_napari.analysis.phonons import KB_EV_PER_K, Spring
from caviar_napari.errors import InputError

__all__ = ["BoxHarmonicModel", "in_plane_green", "springs_from"]


@dataclass(frozen=True, eq=False)
class BoxHarmonicModel:
    """A harmonic spring model of the atoms in a (partly) periodic box.

    Attributes
    ----------
    positions_A
        ``(atoms, d)`` ideal positions, ``d = 2`` (``(y, x)``) or 3 (``(y, x, z)``), Å.
    masses_amu
        ``(atoms,)`` masses, amu.
    periods_A
        ``(d,)`` box period along each axis, Å; 0 for a non-periodic axis (free surfaces).
    springs
        The spring shells (bond lengths and stiffnesses).
    distance_tol_A
        A pair is bonded when its (minimum-image) distance is within this of a spring's length.
    """

    positions_A: np.ndarray
    masses_amu: np.ndarray
    periods_A: tuple[float, ...]
    springs: tuple[Spring, ...]
    distance_tol_A: float = 1e-3

    def __post_init__(self) -> None:
        pos = np.array(self.positions_A, dtype=float)
        if pos.ndim != 2 or pos.shape[1] not in (2, 3) or pos.shape[0] < 2:
            raise InputError(f"positions_A must be (atoms ≥ 2, 2 or 3), got shape {pos.shape}")
        m = np.array(self.masses_amu, dtype=float).ravel()
        if m.shape != (pos.shape[0],) or not np.all(np.isfinite(m) & (m > 0)):
            raise InputError(f"masses_amu must be {pos.shape[0]} positive numbers")
        periods = tuple(float(p) for p in self.periods_A)
        if len(periods) != pos.shape[1] or any(not (p >= 0 and math.isfinite(p)) for p in periods):
            raise InputError(f"periods_A must be {pos.shape[1]} numbers ≥ 0, got {periods}")
        if not self.springs:
            raise InputError("a harmonic model needs at least one spring")
        object.__setattr__(self, "positions_A", pos)
        object.__setattr__(self, "masses_amu", m)
        object.__setattr__(self, "periods_A", periods)
        object.__setattr__(self, "springs", tuple(self.springs))

    # ------------------------------------------------------------------ geometry
    @property
    def n_atoms(self) -> int:
        """Number of atoms."""
        return int(self.positions_A.shape[0])

    @property
    def dim(self) -> int:
        """Displacement components per atom (2 or 3)."""
        return int(self.positions_A.shape[1])

    @functools.cached_property
    def bonds(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(i, j, K)``: bonded pairs ``i < j`` and their ``(d, d)`` stiffness tensors.

        Every periodic image of ``j`` within a spring's distance of ``i`` is a bond of its own
        (in a box shorter than twice a bond, two images of one atom can both be bonded);
        bonds of an atom to its own image do not strain anything and are left out.
        """
        pos = self.positions_A
        reach = max(s.distance_A for s in self.springs) + self.distance_tol_A
        ranges = [
            np.arange(-int(np.ceil(reach / p)), int(np.ceil(reach / p)) + 1) if p > 0 else [0]
            for p in self.periods_A
        ]
        shifts = np.stack(np.meshgrid(*ranges, indexing="ij"), -1).reshape(-1, self.dim)
        shifts = shifts * np.asarray(self.periods_A)
        images = (pos[None] + shifts[:, None]).reshape(-1, self.dim)  # (shift, atom) order
        found = cKDTree(pos).query_ball_tree(cKDTree(images), reach)
        i = np.repeat(np.arange(self.n_atoms), [len(f) for f in found])
        k = np.fromiter((v for f in found for v in f), dtype=np.int64, count=i.size)
        j = k % self.n_atoms
        keep = i < j  # each bond once; an atom's own images are not bonds
        i, j, k = i[keep], j[keep], k[keep]
        vec = images[k] - pos[i]
        dist = np.linalg.norm(vec, axis=1)
        eye = np.eye(self.dim)
        K = np.zeros((i.size, self.dim, self.dim))
        bonded = np.zeros(i.size, dtype=bool)
        for spring in self.springs:  # a handful of shells, not atoms
            hit = np.abs(dist - spring.distance_A) <= self.distance_tol_A
            if not np.any(hit):
                raise InputError(
                    f"no atom pair is {spring.distance_A:.4f} Å apart: the spring matches no bond"
                )
            e = vec[hit] / dist[hit, None]
            ee = e[:, :, None] * e[:, None, :]
            K[hit] += spring.k_long * ee + spring.k_trans * (eye - ee)
            bonded |= hit
        return i[bonded], j[bonded], K[bonded]

    def force_constants(self) -> np.ndarray:
        """The real symmetric ``(d·atoms, d·atoms)`` force-constant matrix Φ (eV/Å²)."""
        i, j, K = self.bonds
        n, d = self.n_atoms, self.dim
        phi = np.zeros((n, d, n, d))
        np.add.at(phi, (i, slice(None), j, slice(None)), -K)
        np.add.at(phi, (j, slice(None), i, slice(None)), -K)
        np.add.at(phi, (i, slice(None), i, slice(None)), K)
        np.add.at(phi, (j, slice(None), j, slice(None)), K)
        return phi.reshape(d * n, d * n)

    def _translations(self) -> np.ndarray:
        """``(d·atoms, d)`` orthonormal mass-weighted rigid translations."""
        d = self.dim
        T = np.zeros((d * self.n_atoms, d))
        sqrt_m = np.sqrt(self.masses_amu)
        for a in range(d):
            T[a::d, a] = sqrt_m
        return T / np.linalg.norm(T, axis=0)

    @functools.cached_property
    def _cholesky(self) -> tuple[np.ndarray, np.ndarray, float]:
        """Cholesky factor of ``D + s T Tᵀ`` (lower), the translations T and the shift s."""
        inv_sqrt_m = np.repeat(1.0 / np.sqrt(self.masses_amu), self.dim)
        D = self.force_constants() * inv_sqrt_m[:, None] * inv_sqrt_m[None, :]
        T = self._translations()
        shift = float(np.trace(D)) / D.shape[0]
        A = D + shift * (T @ T.T)
        # stability: A must be positive definite with a sane condition number (a zero mode
        # besides the translations — a floppy spring network — makes it singular)
        try:
            chol = linalg.cholesky(A, lower=True)
        except linalg.LinAlgError:
            chol = None
        if chol is None or np.min(np.diag(chol)) ** 2 < 1e-9 * shift:
            raise InputError(
                f"the spring model of these {self.n_atoms} atoms is mechanically unstable: a zero "
                "or negative mode besides the rigid translations (add transverse or "
                "next-nearest-neighbour springs)"
            )
        return chol, T, shift

    def green_tensor(self, temperature_K: float) -> np.ndarray:
        """Exact classical Green's tensor ``⟨u uᵀ⟩`` (Å², ``(d·atoms, d·atoms)``, dof ``d i + a``).

        ``G = k_B T · M^(−½) D^+ M^(−½)`` with the rigid translations excluded, computed as
        ``D^+ = A^(−1) − T Tᵀ / s`` from the Cholesky factor of ``A = D + s T Tᵀ``.
        """
        kT = _kT(temperature_K)
        chol, T, shift = self._cholesky
        a_inv = linalg.cho_solve((chol, True), np.eye(chol.shape[0]))
        d_plus = a_inv - (T @ T.T) / shift
        d_plus = 0.5 * (d_plus + d_plus.T)
        inv_sqrt_m = np.repeat(1.0 / np.sqrt(self.masses_amu), self.dim)
        return kT * d_plus * inv_sqrt_m[:, None] * inv_sqrt_m[None, :]

    def sample_snapshots(
        self, temperature_K: float, n: int, rng: np.random.Generator | int | None = None
    ) -> np.ndarray:
        """Exact classical snapshots ``(n, atoms, d)`` of the displacements (Å).

        ``u = sqrt(k_B T) M^(−½) (I − T Tᵀ) L^(−T) z``, ``z ~ N(0, I)`` drawn row by row
        (``n × d·atoms`` normals from ``rng``): Gaussian with covariance :meth:`green_tensor`,
        centre of mass fixed, no eigenvector involved.
        """
        kT = _kT(temperature_K)
        if int(n) < 1 or int(n) != n:
            raise InputError(f"number of snapshots must be an integer ≥ 1, got {n!r}")
        rng = np.random.default_rng(rng)
        chol, T, _ = self._cholesky
        z = rng.standard_normal((int(n), chol.shape[0]))
        x = linalg.solve_triangular(chol, z.T, lower=True, trans="T").T
        x -= (x @ T) @ T.T
        inv_sqrt_m = np.repeat(1.0 / np.sqrt(self.masses_amu), self.dim)
        return (math.sqrt(kT) * x * inv_sqrt_m).reshape(int(n), self.n_atoms, self.dim)


def in_plane_green(green_A2: ArrayLike, dim: int) -> np.ndarray:
    """The ``(y, x)`` part ``(2·atoms, 2·atoms)`` of a ``(d·atoms, d·atoms)`` Green's tensor."""
    g = np.asarray(green_A2, dtype=float)
    n = g.shape[0] // dim
    keep = (dim * np.arange(n)[:, None] + np.arange(2)).ravel()
    return g[np.ix_(keep, keep)]


def springs_from(values: Sequence[tuple[float, float, float]]) -> tuple[Spring, ...]:
    """Springs from ``(distance_A, k_long, k_trans)`` triples, leaving out all-zero shells."""
    return tuple(Spring(d, kl, kt) for d, kl, kt in values if kl > 0 or kt > 0)


def _kT(temperature_K: float) -> float:
    t = float(temperature_K)
    if not (np.isfinite(t) and t > 0):
        raise InputError(f"temperature_K must be > 0 K, got {temperature_K!r}")
    return KB_EV_PER_K * t
