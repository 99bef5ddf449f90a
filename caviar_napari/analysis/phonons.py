"""Harmonic lattice dynamics of 2D crystals: exact dispersion, Green's tensor and thermal snapshots.

The phonon model of the analysis layer: the dispersion analysis (:mod:`.dispersion`) uses its
constants and force-constant conventions, the force-constant estimator (:mod:`.force_constants`)
fits it, and the simulator (:mod:`caviar_napari.simulate.thermal`) draws its correlated
configurations from it.  Everything is in-plane (two displacement components per
atom, ``(y, x)``), classical, and in the project's units (conventions §1): Å, amu, eV, K, THz.

Model
-----
A Bravais lattice with rows ``a1, a2`` (each ``(y, x)`` in Å) and ``κ`` basis atoms at Cartesian
positions ``basis_A[b]`` inside the cell.  Atoms are joined by springs chosen by distance: every
pair of atoms whose distance equals a :class:`Spring`'s ``distance_A`` (within
``distance_tol_A``) is joined by a bond with stiffness tensor

    K = k_long · e eᵀ + k_trans · (I − e eᵀ)      [eV/Å²],  e = unit bond vector,

and the potential energy is ``V = ½ Σ_bonds (u_i − u_j)ᵀ K (u_i − u_j)``.  ``k_long`` is the
central (longitudinal) spring, ``k_trans`` the optional transverse (bond-bending) one.

Conventions
-----------
- Reduced wave vectors ``q_frac = (f1, f2)`` mean ``q = f1 b1 + f2 b2`` with the reciprocal
  vectors ``b`` defined by ``a_i · b_j = δ_ij`` (no 2π; 1/Å), so ``exp(−i q·r_l)`` with
  ``r_l = l1 a1 + l2 a2`` is ``exp(−2πi (f1 l1 + f2 l2))``.
- Fourier transform over cells (conventions §5, eq. 5): ``ũ_κ(q) = L^(−1/2) Σ_l u_lκ exp(−i q·r_l)``
  with the ideal cell origins ``r_l``.  With this convention the force-constant matrix in
  reciprocal space is ``Φ̃_κκ'(q) = Σ_R Φ_κκ'(R) exp(−i q·R)`` (``R = r_l − r_l'`` the cell of κ
  minus the cell of κ'), the dynamical matrix is ``D(q) = M^(−½) Φ̃(q) M^(−½)`` (eV/(Å² amu)), and
  equipartition gives ``⟨ũ ũ^H⟩(q) = k_B T Φ̃(q)^(−1)``.
- Matrix index inside a cell: ``2 b + a`` (``a = 0`` y, ``a = 1`` x), so ``D(q)`` is ``2κ × 2κ``.
- Frequencies: ``ν = sign(λ) sqrt(|λ|) · THZ_PER_SQRT_EIGENVALUE`` with λ the eigenvalues of
  ``D`` (THz, ``ν = ω / 2π``), sorted ascending.
- Supercells: ``L1 × L2`` cells with periodic boundaries.  Atom order is cell-major:
  ``i = (l1 * L2 + l2) * κ + b``; degrees of freedom ``2 i + a``.

Zero modes
----------
The force-constant matrix of a periodic supercell is singular along the two rigid translations.
:meth:`Supercell.green_tensor` and :meth:`Supercell.sample_snapshots` **exclude** those two modes:
the centre of mass (mass-weighted mean displacement) is fixed at zero in every snapshot, and the
Green's tensor is ``G = k_B T · M^(−½) D^+ M^(−½)`` with ``D^+`` the pseudo-inverse of the
mass-weighted supercell dynamical matrix on the complement of the mass-weighted translations.
Any further zero mode means the spring model is mechanically unstable, which is an error.

Reproducible sampling
---------------------
Snapshots are drawn without any eigenvector: with ``T`` the two orthonormal mass-weighted
translations and ``s > 0`` a shift, ``A = D + s T Tᵀ`` is positive definite and
``A^(−1) = D^+ + T Tᵀ / s``.  Its Cholesky factor ``A = L Lᵀ`` is unique, so

    u = sqrt(k_B T) · M^(−½) (I − T Tᵀ) L^(−T) z,      z ~ N(0, I)  (2·atoms numbers)

has covariance ``G`` exactly and is a fixed function of ``z`` — the same on every machine, BLAS
and thread count to within rounding (~1e−15 relative).  A sampler through the normal modes would
depend on how LAPACK orders, signs and rotates the eigenvectors of degenerate modes (issue 12).
The normals ``z`` come from numpy's PCG64 ``standard_normal``, row by row in snapshot order.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np
from numpy.typing import ArrayLike
from scipy import constants, linalg

from caviar_napari.errors import InputError

#: Boltzmann constant in eV/K.
KB_EV_PER_K: float = constants.k / constants.e

#: ν[THz] = THZ_PER_SQRT_EIGENVALUE · sqrt(λ[eV / (Å² amu)]), ν = ω / 2π  (≈ 15.6333).
THZ_PER_SQRT_EIGENVALUE: float = math.sqrt(constants.e / (constants.atomic_mass * 1e-20)) / (
    2.0 * math.pi * 1e12
)

#: Standard atomic weights (amu, IUPAC conventional values) of common elements.
STANDARD_ATOMIC_WEIGHTS_AMU: Mapping[str, float] = MappingProxyType(
    {
        "H": 1.008,
        "He": 4.0026,
        "Li": 6.94,
        "Be": 9.0122,
        "B": 10.81,
        "C": 12.011,
        "N": 14.007,
        "O": 15.999,
        "F": 18.998,
        "Na": 22.990,
        "Mg": 24.305,
        "Al": 26.982,
        "Si": 28.085,
        "P": 30.974,
        "S": 32.06,
        "Cl": 35.45,
        "K": 39.098,
        "Ca": 40.078,
        "Ti": 47.867,
        "V": 50.942,
        "Cr": 51.996,
        "Mn": 54.938,
        "Fe": 55.845,
        "Co": 58.933,
        "Ni": 58.693,
        "Cu": 63.546,
        "Zn": 65.38,
        "Ga": 69.723,
        "Ge": 72.630,
        "As": 74.922,
        "Se": 78.971,
        "Sr": 87.62,
        "Y": 88.906,
        "Zr": 91.224,
        "Nb": 92.906,
        "Mo": 95.95,
        "Ru": 101.07,
        "Pd": 106.42,
        "Ag": 107.87,
        "In": 114.82,
        "Sn": 118.71,
        "Sb": 121.76,
        "Te": 127.60,
        "Ba": 137.33,
        "La": 138.91,
        "Hf": 178.49,
        "Ta": 180.95,
        "W": 183.84,
        "Pt": 195.08,
        "Au": 196.97,
        "Pb": 207.2,
        "Bi": 208.98,
    }
)


def standard_mass_amu(species: str) -> float:
    """Return the standard atomic weight (amu) of an element symbol.

    Raises
    ------
    InputError
        If the symbol is not in :data:`STANDARD_ATOMIC_WEIGHTS_AMU` (give the mass explicitly).
    """
    try:
        return STANDARD_ATOMIC_WEIGHTS_AMU[species]
    except KeyError:
        raise InputError(
            f"no standard atomic mass known for species {species!r}: give it explicitly "
            f"(e.g. --mass {species}=AMU)"
        ) from None


def eigenvalues_to_THz(eigenvalues: ArrayLike) -> np.ndarray:
    """Convert eigenvalues λ of a dynamical matrix (eV/(Å² amu)) to frequencies ν in THz.

    Negative eigenvalues become negative frequencies, ``ν = sign(λ) sqrt(|λ|) · 15.6333``,
    never their absolute value (conventions §5).
    """
    lam = np.asarray(eigenvalues, dtype=float)
    return np.sign(lam) * np.sqrt(np.abs(lam)) * THZ_PER_SQRT_EIGENVALUE


def reciprocal_vectors(lattice_vectors_A: ArrayLike) -> np.ndarray:
    """Reciprocal vectors ``b`` (rows, ``(y, x)``, 1/Å, no 2π) with ``a_i · b_j = δ_ij``."""
    a = np.asarray(lattice_vectors_A, dtype=float)
    return np.linalg.inv(a).T


def commensurate_q_frac(L1: int, L2: int) -> np.ndarray:
    """The ``L1 · L2`` wave vectors commensurate with an ``L1 × L2`` supercell.

    Returns
    -------
    ndarray, shape (L1 * L2, 2)
        ``(m1 / L1, m2 / L2)`` with ``m1 = 0 … L1−1`` (slow) and ``m2 = 0 … L2−1`` (fast): the
        order of ``numpy.fft.fft2`` output over axes ``(l1, l2)`` flattened.
    """
    m1, m2 = np.meshgrid(np.arange(L1) / L1, np.arange(L2) / L2, indexing="ij")
    return np.stack([m1.ravel(), m2.ravel()], axis=-1)


def bond_force_constants_q(
    q_frac: ArrayLike,
    source: ArrayLike,
    target: ArrayLike,
    offset: ArrayLike,
    K: ArrayLike,
    n_basis: int,
    group: ArrayLike | None = None,
    n_groups: int = 1,
) -> np.ndarray:
    """``Φ̃(q)`` (eV/Å²) of bonds with stiffness tensors, the acoustic sum rule built in.

    Every bond must be listed from both ends (as :class:`Bonds` does).  Bond ``n`` joins atom
    ``(cell 0, source[n])`` to ``(cell offset[n], target[n])`` with the tensor ``K[n]``; the
    potential is ``½ Σ (u_i − u_j)ᵀ K (u_i − u_j)`` over bonds, so ``Φ(0s; Δt) = −K`` and the
    self term is ``Σ K`` over the bonds of the atom (the acoustic sum rule).

    Parameters
    ----------
    q_frac
        ``(..., 2)`` reduced wave vectors.
    source, target, offset, K
        ``(nb,)``, ``(nb,)``, ``(nb, 2)`` int and ``(nb, 2, 2)`` (eV/Å²).
    n_basis
        Number of basis atoms κ.
    group, n_groups
        Optional ``(nb,)`` index in ``0 … n_groups − 1``: the bonds of each group give one
        matrix (the derivative of Φ̃ with respect to a force-constant parameter).

    Returns
    -------
    ndarray, complex, shape ``(..., n_groups, 2κ, 2κ)``
        Hermitian per group; index ``2 b + a``.
    """
    q = np.asarray(q_frac, dtype=float)
    if q.shape[-1:] != (2,):
        raise InputError(f"q_frac must have a last axis of length 2, got shape {q.shape}")
    kappa = int(n_basis)
    src = np.asarray(source, dtype=int)
    tgt = np.asarray(target, dtype=int)
    off_cells = np.asarray(offset, dtype=float).reshape(-1, 2)
    tensors = np.asarray(K, dtype=float).reshape(-1, 2, 2)
    grp = np.zeros(src.size, dtype=int) if group is None else np.asarray(group, dtype=int)
    lead = q.shape[:-1]
    qf = q.reshape(-1, 2)
    # row of atom (0, s): Φ(0s; Δ t) = −K, exp(−i q·R) with R = 0 − Δ → exp(+2πi q·Δ)
    phase = np.exp(2j * np.pi * (qf @ off_cells.T))  # (nq, nb)
    onehot_g = np.eye(int(n_groups))[grp]  # (nb, p)
    onehot_s = np.eye(kappa)[src]  # (nb, κ)
    onehot_t = np.eye(kappa)[tgt]
    weights = np.einsum("np,ns,nt,nab->npsatb", onehot_g, onehot_s, onehot_t, tensors)
    out = -np.tensordot(phase, weights, axes=(1, 0))  # (nq, p, κ, 2, κ, 2)
    diag = np.einsum("np,ns,nab->psab", onehot_g, onehot_s, tensors)  # Σ K of atom s
    out += np.einsum("st,psab->psatb", np.eye(kappa), diag)[None]
    return out.reshape(*lead, int(n_groups), 2 * kappa, 2 * kappa)


@dataclass(frozen=True)
class Spring:
    """Springs joining every pair of atoms at one distance.

    Attributes
    ----------
    distance_A
        Bond length in Å selecting the pairs.
    k_long
        Central (longitudinal) spring constant, eV/Å².
    k_trans
        Transverse (bond-bending) spring constant, eV/Å²; 0 for purely central forces.
    """

    distance_A: float
    k_long: float
    k_trans: float = 0.0

    def __post_init__(self) -> None:
        if not (np.isfinite(self.distance_A) and self.distance_A > 0):
            raise InputError(f"Spring.distance_A must be > 0 Å, got {self.distance_A!r}")
        for name in ("k_long", "k_trans"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value >= 0):
                raise InputError(f"Spring.{name} must be a finite value ≥ 0 eV/Å², got {value!r}")


@dataclass(frozen=True, eq=False)
class Bonds:
    """The bonds leaving the atoms of one primitive cell.

    Every bond appears twice, once from each end.  Bond ``n`` joins atom ``(cell 0, basis
    source[n])`` to atom ``(cell offset[n], basis target[n])`` with stiffness ``K[n]``.

    Attributes
    ----------
    source, target
        ``(nbonds,)`` basis indices.
    offset
        ``(nbonds, 2)`` integer cell offset ``(Δl1, Δl2)`` of the target.
    vector_A
        ``(nbonds, 2)`` bond vector (target − source) as ``(y, x)`` in Å.
    K
        ``(nbonds, 2, 2)`` stiffness tensors in eV/Å², ``(y, x)`` components.
    """

    source: np.ndarray
    target: np.ndarray
    offset: np.ndarray
    vector_A: np.ndarray
    K: np.ndarray


def _readonly(array: ArrayLike, dtype: type = float) -> np.ndarray:
    out = np.array(array, dtype=dtype, copy=True)
    out.flags.writeable = False
    return out


@dataclass(frozen=True, eq=False)
class HarmonicLattice:
    """A 2D crystal with harmonic springs (see the module docstring for the conventions).

    Attributes
    ----------
    lattice_vectors_A
        ``(2, 2)`` rows ``a1, a2``, each ``(y, x)`` in Å.
    basis_A
        ``(κ, 2)`` Cartesian positions ``(y, x)`` of the basis atoms in the cell, Å.
    species
        ``κ`` element symbols (or any labels).
    masses_amu
        ``(κ,)`` masses in amu.
    springs
        The :class:`Spring` shells.
    distance_tol_A
        Tolerance (Å) for matching pair distances to a spring's ``distance_A``.
    """

    lattice_vectors_A: np.ndarray
    basis_A: np.ndarray
    species: tuple[str, ...]
    masses_amu: np.ndarray
    springs: tuple[Spring, ...]
    distance_tol_A: float = 1e-3
    _bonds: Bonds = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        a = np.asarray(self.lattice_vectors_A, dtype=float)
        if a.shape != (2, 2) or not np.all(np.isfinite(a)):
            raise InputError(f"lattice_vectors_A must be a finite (2, 2) array, got {a!r}")
        if abs(np.linalg.det(a)) < 1e-6:
            raise InputError(f"lattice_vectors_A are (nearly) parallel: {a.tolist()}")
        basis = np.atleast_2d(np.asarray(self.basis_A, dtype=float))
        if basis.ndim != 2 or basis.shape[1] != 2 or not np.all(np.isfinite(basis)):
            raise InputError(f"basis_A must be a finite (κ, 2) array, got shape {basis.shape}")
        kappa = basis.shape[0]
        species = tuple(str(s) for s in self.species)
        if len(species) != kappa:
            raise InputError(f"species has {len(species)} entries for {kappa} basis atoms")
        masses = np.asarray(self.masses_amu, dtype=float).reshape(-1)
        if masses.shape != (kappa,) or not np.all(np.isfinite(masses) & (masses > 0)):
            raise InputError(
                f"masses_amu must be {kappa} positive values (amu), got {masses.tolist()}"
            )
        springs = tuple(self.springs)
        if not springs or not all(isinstance(s, Spring) for s in springs):
            raise InputError("springs must be a non-empty sequence of Spring")
        object.__setattr__(self, "lattice_vectors_A", _readonly(a))
        object.__setattr__(self, "basis_A", _readonly(basis))
        object.__setattr__(self, "species", species)
        object.__setattr__(self, "masses_amu", _readonly(masses))
        object.__setattr__(self, "springs", springs)
        object.__setattr__(self, "_bonds", self._find_bonds())

    # ------------------------------------------------------------------ geometry
    @property
    def n_basis(self) -> int:
        """Number of basis atoms κ."""
        return int(self.basis_A.shape[0])

    @property
    def n_branches(self) -> int:
        """Number of in-plane phonon branches, ``2κ``."""
        return 2 * self.n_basis

    @property
    def reciprocal_vectors_invA(self) -> np.ndarray:
        """``(2, 2)`` rows ``b1, b2`` as ``(y, x)`` in 1/Å with ``a_i · b_j = δ_ij`` (no 2π)."""
        return reciprocal_vectors(self.lattice_vectors_A)

    @property
    def bonds(self) -> Bonds:
        """The bonds leaving one primitive cell (each bond listed from both ends)."""
        return self._bonds

    def _find_bonds(self) -> Bonds:
        a = self.lattice_vectors_A
        kappa = self.n_basis
        d_max = max(s.distance_A for s in self.springs) + self.distance_tol_A
        # smallest height of the cell parallelogram bounds how many cells a bond can span
        height = abs(np.linalg.det(a)) / np.max(np.linalg.norm(a, axis=1))
        span = np.ptp(self.basis_A, axis=0).max() if kappa > 1 else 0.0
        n = int(np.ceil((d_max + span) / height)) + 1
        r = np.arange(-n, n + 1)
        off = np.stack(np.meshgrid(r, r, indexing="ij"), axis=-1).reshape(-1, 2)  # (no, 2)
        src, tgt, o = np.meshgrid(np.arange(kappa), np.arange(kappa), np.arange(len(off)))
        src, tgt, o = src.ravel(), tgt.ravel(), o.ravel()
        vec = off[o] @ a + self.basis_A[tgt] - self.basis_A[src]
        dist = np.linalg.norm(vec, axis=1)
        parts = []
        for spring in self.springs:  # a handful of shells, not atoms
            hit = np.abs(dist - spring.distance_A) <= self.distance_tol_A
            if not np.any(hit):
                raise InputError(
                    f"no atom pair is {spring.distance_A:.4f} Å apart: the spring matches no bond"
                )
            e = vec[hit] / dist[hit, None]
            ee = e[:, :, None] * e[:, None, :]
            K = spring.k_long * ee + spring.k_trans * (np.eye(2) - ee)
            parts.append((src[hit], tgt[hit], off[o[hit]], vec[hit], K))
        cat = [np.concatenate(p) for p in zip(*parts)]
        return Bonds(
            source=_readonly(cat[0], int),
            target=_readonly(cat[1], int),
            offset=_readonly(cat[2], int),
            vector_A=_readonly(cat[3]),
            K=_readonly(cat[4]),
        )

    # ------------------------------------------------------------------ dynamics
    def force_constants_q(self, q_frac: ArrayLike) -> np.ndarray:
        """Force-constant matrix in reciprocal space ``Φ̃(q)`` (eV/Å²).

        Parameters
        ----------
        q_frac
            ``(..., 2)`` reduced wave vectors (coordinates on ``b1, b2``).

        Returns
        -------
        ndarray, complex, shape ``(..., 2κ, 2κ)``
            Hermitian; index ``2 b + a``.
        """
        bonds = self._bonds
        return bond_force_constants_q(
            q_frac, bonds.source, bonds.target, bonds.offset, bonds.K, self.n_basis
        )[..., 0, :, :]

    def dynamical_matrix(self, q_frac: ArrayLike) -> np.ndarray:
        """Dynamical matrix ``D(q) = M^(−½) Φ̃(q) M^(−½)``, eV/(Å² amu), ``(..., 2κ, 2κ)``."""
        inv_sqrt_m = np.repeat(1.0 / np.sqrt(self.masses_amu), 2)
        return self.force_constants_q(q_frac) * inv_sqrt_m[:, None] * inv_sqrt_m[None, :]

    def frequencies_THz(self, q_frac: ArrayLike) -> np.ndarray:
        """Exact phonon frequencies ν (THz, ν = ω/2π) at any wave vectors.

        Parameters
        ----------
        q_frac
            ``(..., 2)`` reduced wave vectors.

        Returns
        -------
        ndarray, shape ``(..., 2κ)``
            Sorted ascending (branches by sorted band index); negative eigenvalues (an unstable
            model) give negative frequencies.  Eigenvalues below ``1e-12`` of the largest one
            at the same q (round-off of the acoustic modes at Γ) are set to exactly 0.
        """
        lam = np.linalg.eigvalsh(self.dynamical_matrix(q_frac))
        scale = np.max(np.abs(lam), axis=-1, keepdims=True)
        lam = np.where(np.abs(lam) <= 1e-12 * scale, 0.0, lam)
        return eigenvalues_to_THz(lam)

    def supercell(self, L1: int, L2: int) -> Supercell:
        """The periodic ``L1 × L2`` supercell of this lattice (see :class:`Supercell`)."""
        return Supercell(self, int(L1), int(L2))

    # ------------------------------------------------------------------ constructors
    @classmethod
    def honeycomb(
        cls,
        a_A: float = 2.504,
        species: Sequence[str] = ("B", "N"),
        masses_amu: Sequence[float] | None = None,
        k_nn: float = 20.0,
        k_nnn: float = 4.0,
        t_nn: float = 6.0,
        t_nnn: float = 0.0,
    ) -> HarmonicLattice:
        """An hBN-like honeycomb lattice with nearest- and next-nearest-neighbour springs.

        ``a1 = a (0, 1)`` and ``a2 = a (√3/2, −1/2)`` as ``(y, x)`` (120° between them), basis
        atoms at ``0`` and ``(2 a1 + a2) / 3`` (nearest-neighbour distance ``a/√3``).  With the
        defaults (B, N; 20, 6 eV/Å² NN longitudinal/transverse, 4 eV/Å² NNN longitudinal) the
        optical branches at Γ are at 39.5 THz and the acoustic branches reach 20–33 THz at M
        and K, the order of real hBN.

        Parameters
        ----------
        a_A
            Lattice constant, Å.
        species
            The two species (sublattice A at the origin, sublattice B).
        masses_amu
            Their masses; default: the standard atomic weights of ``species``.
        k_nn, k_nnn, t_nn, t_nnn
            Longitudinal (k) and transverse (t) springs for nearest (``a/√3``) and next-nearest
            (``a``) neighbours, eV/Å².
        """
        a1 = np.array([0.0, a_A])
        a2 = np.array([a_A * math.sqrt(3.0) / 2.0, -a_A / 2.0])
        species = tuple(species)
        if len(species) != 2:
            raise InputError(f"honeycomb needs two species, got {species!r}")
        if masses_amu is None:
            masses_amu = [standard_mass_amu(s) for s in species]
        springs = [Spring(a_A / math.sqrt(3.0), k_nn, t_nn)]
        if k_nnn > 0 or t_nnn > 0:
            springs.append(Spring(a_A, k_nnn, t_nnn))
        return cls(
            lattice_vectors_A=np.stack([a1, a2]),
            basis_A=np.stack([np.zeros(2), (2 * a1 + a2) / 3.0]),
            species=species,
            masses_amu=np.asarray(masses_amu, dtype=float),
            springs=tuple(springs),
        )

    @classmethod
    def rectangular(
        cls,
        a_y_A: float,
        a_x_A: float,
        species: str = "C",
        mass_amu: float | None = None,
        k_y: float = 10.0,
        k_x: float = 10.0,
        k_diag: float = 0.0,
        t_y: float = 0.0,
        t_x: float = 0.0,
        t_diag: float = 0.0,
    ) -> HarmonicLattice:
        """A monatomic rectangular lattice ``a1 = (a_y, 0)``, ``a2 = (0, a_x)`` as ``(y, x)``.

        Parameters
        ----------
        a_y_A, a_x_A
            Cell edges along y and x, Å.
        species, mass_amu
            The atom; mass default: the standard atomic weight of ``species``.
        k_y, k_x, k_diag, t_y, t_x, t_diag
            Longitudinal (k) and transverse (t) springs along y, along x and along the cell
            diagonals, eV/Å².  If ``a_y == a_x`` the y and x bonds are one shell and must have
            equal constants (use :meth:`square`).
        """
        if mass_amu is None:
            mass_amu = standard_mass_amu(species)
        if abs(a_y_A - a_x_A) < 1e-3 and (k_y != k_x or t_y != t_x):
            raise InputError("a square cell needs k_y == k_x and t_y == t_x (use square())")
        springs = [Spring(a_y_A, k_y, t_y)]
        if abs(a_y_A - a_x_A) >= 1e-3:
            springs.append(Spring(a_x_A, k_x, t_x))
        if k_diag > 0 or t_diag > 0:
            springs.append(Spring(math.hypot(a_y_A, a_x_A), k_diag, t_diag))
        return cls(
            lattice_vectors_A=np.array([[a_y_A, 0.0], [0.0, a_x_A]]),
            basis_A=np.zeros((1, 2)),
            species=(species,),
            masses_amu=np.array([mass_amu]),
            springs=tuple(springs),
        )

    @classmethod
    def square(
        cls,
        a_A: float = 3.0,
        species: str = "C",
        mass_amu: float | None = None,
        k_nn: float = 10.0,
        k_nnn: float = 0.0,
        t_nn: float = 0.0,
        t_nnn: float = 0.0,
    ) -> HarmonicLattice:
        """A monatomic square lattice with NN (``a``) and NNN (``a√2``) springs (eV/Å²).

        With NN springs only, ``D_yy(q) = (2/m)[k_nn (1 − cos 2πf1) + t_nn (1 − cos 2πf2)]`` and
        ``D_xx`` with f1 ↔ f2, ``D_yx = 0`` (the analytic case used in the tests).
        """
        return cls.rectangular(a_A, a_A, species, mass_amu, k_nn, k_nn, k_nnn, t_nn, t_nn, t_nnn)


@dataclass(frozen=True)
class Supercell:
    """A periodic ``L1 × L2`` supercell of a :class:`HarmonicLattice`.

    Atom order is cell-major, ``i = (l1 * L2 + l2) * κ + b``; degrees of freedom ``2 i + a``
    (``a = 0`` y, ``a = 1`` x).  Ideal positions start at cell ``(0, 0)`` at the origin.
    """

    lattice: HarmonicLattice
    L1: int
    L2: int

    def __post_init__(self) -> None:
        if self.L1 < 1 or self.L2 < 1:
            raise InputError(f"supercell size must be ≥ 1 × 1, got {self.L1} × {self.L2}")

    @property
    def n_cells(self) -> int:
        """Number of cells ``L = L1 · L2``."""
        return self.L1 * self.L2

    @property
    def n_atoms(self) -> int:
        """Number of atoms ``L · κ``."""
        return self.n_cells * self.lattice.n_basis

    @property
    def cell_index(self) -> np.ndarray:
        """``(atoms, 2)`` int: ``(l1, l2)`` of every atom."""
        l1, l2 = np.meshgrid(np.arange(self.L1), np.arange(self.L2), indexing="ij")
        cells = np.stack([l1.ravel(), l2.ravel()], axis=-1)
        return np.repeat(cells, self.lattice.n_basis, axis=0)

    @property
    def basis_index(self) -> np.ndarray:
        """``(atoms,)`` int: basis index κ of every atom."""
        return np.tile(np.arange(self.lattice.n_basis), self.n_cells)

    @property
    def positions_A(self) -> np.ndarray:
        """``(atoms, 2)`` ideal positions ``l1 a1 + l2 a2 + basis_b`` as ``(y, x)`` in Å."""
        lat = self.lattice
        return self.cell_index @ lat.lattice_vectors_A + lat.basis_A[self.basis_index]

    @property
    def species(self) -> np.ndarray:
        """``(atoms,)`` species labels (str)."""
        return np.asarray(self.lattice.species, dtype=str)[self.basis_index]

    @property
    def masses_amu(self) -> np.ndarray:
        """``(atoms,)`` masses in amu."""
        return self.lattice.masses_amu[self.basis_index]

    @property
    def q_frac(self) -> np.ndarray:
        """``(L, 2)`` commensurate wave vectors, see :func:`commensurate_q_frac`."""
        return commensurate_q_frac(self.L1, self.L2)

    def force_constants(self) -> np.ndarray:
        """The real symmetric ``(2·atoms, 2·atoms)`` force-constant matrix Φ (eV/Å²).

        Bonds wrap periodically; bonds of an atom to its own periodic image cancel exactly.
        """
        lat = self.lattice
        bonds = lat.bonds
        kappa, n = lat.n_basis, self.n_atoms
        l1, l2 = np.meshgrid(np.arange(self.L1), np.arange(self.L2), indexing="ij")
        l1, l2 = l1.ravel(), l2.ravel()  # (L,)
        i = (l1[:, None] * self.L2 + l2[:, None]) * kappa + bonds.source[None, :]  # (L, nb)
        t1 = (l1[:, None] + bonds.offset[None, :, 0]) % self.L1
        t2 = (l2[:, None] + bonds.offset[None, :, 1]) % self.L2
        j = (t1 * self.L2 + t2) * kappa + bonds.target[None, :]
        K = np.broadcast_to(bonds.K, (self.n_cells, *bonds.K.shape)).reshape(-1, 2, 2)
        i, j = i.ravel(), j.ravel()
        phi = np.zeros((n, 2, n, 2))
        np.add.at(phi, (i, slice(None), j, slice(None)), -K)
        np.add.at(phi, (i, slice(None), i, slice(None)), K)
        return phi.reshape(2 * n, 2 * n)

    def _translations(self) -> np.ndarray:
        """``(2·atoms, 2)`` orthonormal mass-weighted rigid translations (columns y, x)."""
        T = np.zeros((2 * self.n_atoms, 2))
        sqrt_m = np.sqrt(self.masses_amu)
        T[0::2, 0] = sqrt_m
        T[1::2, 1] = sqrt_m
        return T / np.linalg.norm(T, axis=0)

    def check_stable(self) -> None:
        """Raise if the supercell has zero or negative modes besides the two translations.

        Uses the Bloch eigenvalues on the commensurate grid (they are exactly the supercell's
        normal-mode eigenvalues), which do not depend on any eigenvector gauge.

        Raises
        ------
        InputError
            Naming the number of soft modes.
        """
        lam = np.sort(np.linalg.eigvalsh(self.lattice.dynamical_matrix(self.q_frac)).ravel())
        tol = 1e-9 * max(float(np.max(np.abs(lam))), 1e-300)
        n_soft = int(np.sum(lam <= tol)) - 2  # the two translations at Γ
        if n_soft > 0:
            raise InputError(
                f"the spring model is mechanically unstable: {n_soft} zero or negative modes "
                f"besides the two rigid translations in the {self.L1} × {self.L2} supercell "
                "(add transverse or next-nearest-neighbour springs)"
            )

    @functools.cached_property
    def _cholesky(self) -> tuple[np.ndarray, np.ndarray, float]:
        """Cholesky factor of ``A = D + s T Tᵀ`` (lower), the translations T, and the shift s.

        ``D`` is the mass-weighted supercell dynamical matrix (eV/(Å² amu)).
        """
        self.check_stable()
        inv_sqrt_m = np.repeat(1.0 / np.sqrt(self.masses_amu), 2)
        D = self.force_constants() * inv_sqrt_m[:, None] * inv_sqrt_m[None, :]
        T = self._translations()
        shift = float(np.trace(D)) / D.shape[0]  # the mean eigenvalue: A stays well-conditioned
        A = D + shift * (T @ T.T)
        try:
            chol = linalg.cholesky(A, lower=True)
        except linalg.LinAlgError:
            raise InputError(
                f"the spring model of the {self.L1} × {self.L2} supercell is not positive "
                "definite besides the rigid translations (mechanically unstable)"
            ) from None
        return chol, T, shift

    def mode_frequencies_THz(self) -> np.ndarray:
        """``(2·atoms − 2,)`` frequencies of the supercell's non-translational modes, ascending."""
        self.check_stable()
        lam = np.sort(np.linalg.eigvalsh(self.lattice.dynamical_matrix(self.q_frac)).ravel())
        return eigenvalues_to_THz(lam[2:])

    def green_tensor(self, temperature_K: float) -> np.ndarray:
        """Exact classical Green's tensor ``G = ⟨u uᵀ⟩`` of the supercell (Å²).

        ``G = k_B T · M^(−½) D^+ M^(−½)``: the two rigid translations are excluded (centre of mass
        fixed), see the module docstring.  Computed as ``D^+ = A^(−1) − T Tᵀ / s`` from the
        Cholesky factor of ``A = D + s T Tᵀ`` (no eigenvectors).

        Returns
        -------
        ndarray, shape ``(2·atoms, 2·atoms)``
            Symmetric positive semi-definite, dof ``2 i + a``.
        """
        kT = _kT(temperature_K)
        chol, T, shift = self._cholesky
        a_inv = linalg.cho_solve((chol, True), np.eye(chol.shape[0]))
        d_plus = a_inv - (T @ T.T) / shift
        d_plus = 0.5 * (d_plus + d_plus.T)
        inv_sqrt_m = np.repeat(1.0 / np.sqrt(self.masses_amu), 2)
        return kT * d_plus * inv_sqrt_m[:, None] * inv_sqrt_m[None, :]

    def sample_snapshots(
        self, temperature_K: float, n: int, rng: np.random.Generator | int | None = None
    ) -> np.ndarray:
        """Exact classical thermal snapshots of the displacements, independent of any gauge.

        ``u = sqrt(k_B T) M^(−½) (I − T Tᵀ) L^(−T) z`` with ``L`` the Cholesky factor of
        ``D + s T Tᵀ`` (module docstring, *Reproducible sampling*): Gaussian with covariance
        :meth:`green_tensor`, centre of mass fixed at zero, and a fixed function of the normals
        ``z`` (no eigenvector of degenerate modes enters), so a seed gives the same snapshots on
        every machine, BLAS and thread count.

        Parameters
        ----------
        temperature_K
            Temperature in K (> 0).
        n
            Number of snapshots.
        rng
            A numpy Generator or a seed; ``n × 2·atoms`` standard normals are drawn from it.

        Returns
        -------
        ndarray, shape ``(n, atoms, 2)``
            Displacements ``(y, x)`` in Å from the ideal positions.
        """
        kT = _kT(temperature_K)
        if int(n) < 1 or int(n) != n:
            raise InputError(f"number of snapshots must be an integer ≥ 1, got {n!r}")
        rng = np.random.default_rng(rng)
        chol, T, _ = self._cholesky
        z = rng.standard_normal((int(n), chol.shape[0]))
        x = linalg.solve_triangular(chol, z.T, lower=True, trans="T").T  # rows: L^(−T) z
        x -= (x @ T) @ T.T  # remove the mass-weighted translations exactly
        inv_sqrt_m = np.repeat(1.0 / np.sqrt(self.masses_amu), 2)
        u = math.sqrt(kT) * x * inv_sqrt_m
        return u.reshape(int(n), self.n_atoms, 2)


def _kT(temperature_K: float) -> float:
    t = float(temperature_K)
    if not (np.isfinite(t) and t > 0):
        raise InputError(f"temperature_K must be > 0 K, got {temperature_K!r}")
    return KB_EV_PER_K * t
