"""Born–von Kármán force constants fitted to a displacement ensemble (issue 14; conventions §5).

A reconstruction has 10–20 object states.  Inverting a covariance estimated from so few samples
(eq. 6) is biased: the eigenvalues of a small-sample covariance spread apart.  Here the ensemble
is described by a handful of force constants instead, fitted by maximum likelihood.

Model
-----
Bonds are grouped into *orbits* under the crystal's space group
(:mod:`.crystal_symmetry`) and orbits into *shells* by length (shell 1 = nearest neighbours).
Every bond carries a symmetric 2 × 2 stiffness tensor ``K`` (eV/Å²) and the potential is
``½ Σ_bonds (u_i − u_j)ᵀ K (u_i − u_j)``, so the self term of every atom is the sum of its bond
tensors (the acoustic sum rule holds for any parameters).  In the frame of a representative bond
(unit vector ``e``, perpendicular ``e⊥``)

    K = k_L e eᵀ + k_T e⊥ e⊥ᵀ + k_S (e e⊥ᵀ + e⊥ eᵀ),

and the other bonds of its orbit carry ``R K Rᵀ`` (``R`` the operation that maps the
representative onto them).  A mirror that maps the bond onto itself (or its reverse) forbids
``k_S``; the parameters are the ``k_L, k_T`` (and allowed ``k_S``) of every orbit of the chosen
shells, in eV/Å².  Central + transverse springs (:class:`~.phonons.Spring`) are the special case
``k_S = 0``, so the project's harmonic model is inside the fitted family.

Likelihood
----------
Displacements ``u = R − mean over states`` (per slice) are Gaussian with covariance
``k_B T Φ⁺``; with the mean estimated from the same N states, the scatter matrix
``S = Σ_(states, slices) u uᵀ`` is Wishart with ``ν = slices · (N − 1)`` degrees of freedom, so

    −2 log L = ν log det Σ + tr(Σ⁻¹ S) + const.

Two descriptions of the field of view (``boundary``):

* ``"periodic"`` — the block of ``L1 × L2`` whole cells is one period of the crystal (exact for
  periodic simulations).  ``Σ`` is block-diagonal in q and, with ``S(q)`` the Fourier transform
  of the scatter on the commensurate grid,

      −2 log L = Σ_q [ −ν log det Φ̃(q) + tr(Φ̃(q) S(q)) / k_B T ] + const,

  a convex function of the force constants (``Φ̃`` is linear in them).  At Γ the two rigid
  translations (the null space of ``Φ̃(0)`` by the acoustic sum rule) are left out, which also
  removes any rigid shift of a state.
* ``"open"`` — the block is a window cut out of a larger crystal (a reconstruction's field of
  view).  ``Σ`` is the window's block of the crystal's ``k_B T Φ⁺``, computed on a periodic
  crystal of ``crystal_cells`` (default: 8 times the window, which stands for an infinite
  crystal), and the rigid translations of the window are projected out of data and model.
* ``"auto"`` — fit both and keep the one with the higher likelihood.  Both describe the same
  data (all displacements less the block's rigid translation) with the same parameters, so
  their likelihoods compare directly; with 10 states of a 6 × 6 block the difference in
  ``−2 log L`` is about 80 for periodic data and 170–280 for a window of a larger crystal.

The minimum is found by Newton's method (Fisher scoring for ``open``) with a backtracking line
search.  The covariance of the parameters is the inverse observed Fisher information
``2 H⁻¹`` (``H`` the Hessian of ``−2 log L``); a bootstrap over states gives a second error.
A likelihood-ratio test of ``N`` against ``N + 1`` shells (``2 Δ log L`` against χ² with the
number of added parameters) says whether more shells are needed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike

from caviar_napari.analysis.crystal_symmetry import (
    DEFAULT_SYMMETRY_TOLERANCE_A,
    SymmetryOperation,
    space_group,
)
from caviar_napari.analysis.phonons import (
    KB_EV_PER_K,
    bond_force_constants_q,
    commensurate_q_frac,
    eigenvalues_to_THz,
)
from caviar_napari.errors import InputError

__all__ = [
    "BOUNDARIES",
    "BondOrbit",
    "ForceConstantFit",
    "ForceConstantModel",
    "ShellTest",
    "displacement_statistics",
    "fit_force_constants",
]

#: Descriptions of the field of view (module docstring); "auto" fits both and keeps the likelier.
BOUNDARIES: tuple[str, ...] = ("auto", "periodic", "open")

#: Components of a bond tensor in the frame of the bond.
COMPONENTS: tuple[str, ...] = ("longitudinal", "transverse", "shear")

#: The open boundary's stand-in for an infinite crystal: this many times the window per axis.
OPEN_CRYSTAL_FACTOR = 8

#: Smallest stand-in crystal (cells per axis) for an open window.
OPEN_CRYSTAL_MIN = 32

#: Significance level of the likelihood-ratio test for a further shell.
DEFAULT_ALPHA = 0.01

#: Newton iterations at most, and the convergence threshold on the Newton decrement.
MAX_ITERATIONS = 100
DECREMENT_TOL = 1e-9


# --------------------------------------------------------------------------------------------
# The parametrisation
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class BondOrbit:
    """Symmetry-equivalent bonds sharing one tensor up to rotation.

    Attributes
    ----------
    shell
        Neighbour shell (1 = shortest bonds).
    distance_A
        Bond length (mean over the orbit), Å.
    source, target, offset
        The representative directed bond ``(cell 0, source) → (cell offset, target)``.
    vector_A
        Its bond vector ``(y, x)``, Å.
    components
        Allowed tensor components, a subset of :data:`COMPONENTS`.
    frame
        ``(3, 2, 2)`` the tensors ``e eᵀ``, ``e⊥ e⊥ᵀ``, ``e e⊥ᵀ + e⊥ eᵀ`` of the representative.
    bond_source, bond_target, bond_offset
        Every directed bond of the orbit (each bond from both ends).
    bond_rotation
        ``(nb, 2, 2)``: the tensor of bond ``n`` is ``R_n K R_nᵀ``.
    """

    shell: int
    distance_A: float
    source: int
    target: int
    offset: np.ndarray
    vector_A: np.ndarray
    components: tuple[str, ...]
    frame: np.ndarray
    bond_source: np.ndarray
    bond_target: np.ndarray
    bond_offset: np.ndarray
    bond_rotation: np.ndarray

    @property
    def multiplicity(self) -> int:
        """Number of (undirected) bonds per cell."""
        return int(self.bond_source.size // 2)


def _directed_bonds(A: np.ndarray, tau: np.ndarray, radius: float) -> dict[str, np.ndarray]:
    """All directed bonds from cell 0 no longer than ``radius`` (Å)."""
    kappa = tau.shape[0]
    height = abs(np.linalg.det(A)) / np.max(np.linalg.norm(A, axis=1))
    span = float(np.ptp(tau, axis=0).max()) if kappa > 1 else 0.0
    n = int(np.ceil((radius + span) / height)) + 1
    r = np.arange(-n, n + 1)
    off = np.stack(np.meshgrid(r, r, indexing="ij"), axis=-1).reshape(-1, 2)
    s, t, o = (
        a.ravel() for a in np.meshgrid(np.arange(kappa), np.arange(kappa), np.arange(len(off)))
    )
    vec = off[o] @ A + tau[t] - tau[s]
    dist = np.linalg.norm(vec, axis=1)
    keep = (dist <= radius) & ~((s == t) & np.all(off[o] == 0, axis=1))
    return {
        "source": s[keep],
        "target": t[keep],
        "offset": off[o][keep],
        "vector": vec[keep],
        "distance": dist[keep],
    }


def _frame(vector: np.ndarray) -> np.ndarray:
    e = vector / np.linalg.norm(vector)
    p = np.array([-e[1], e[0]])
    return np.stack([np.outer(e, e), np.outer(p, p), np.outer(e, p) + np.outer(p, e)])


def _bond_orbits(
    A: np.ndarray,
    tau: np.ndarray,
    ops: tuple[SymmetryOperation, ...],
    n_shells: int,
    tolerance_A: float,
) -> list[BondOrbit]:
    """The bond orbits of the first ``n_shells`` shells."""
    radius = (n_shells + 1) * float(np.max(np.linalg.norm(A, axis=1))) + 2 * tolerance_A
    bonds = _directed_bonds(A, tau, radius)
    if np.any(bonds["distance"] < max(tolerance_A, 1e-6)):
        i = int(np.argmin(bonds["distance"]))
        raise InputError(
            f"basis atoms {int(bonds['source'][i])} and {int(bonds['target'][i])} coincide in "
            "projection: the in-plane force-constant model needs distinct in-plane positions "
            "(use the green estimator)"
        )
    order = np.lexsort(
        (
            bonds["offset"][:, 1],
            bonds["offset"][:, 0],
            bonds["target"],
            bonds["source"],
            np.round(bonds["distance"] / tolerance_A),
        )
    )
    keys = {
        (int(bonds["source"][i]), int(bonds["target"][i]), *bonds["offset"][i].tolist()): i
        for i in range(bonds["source"].size)
    }
    assigned = np.zeros(bonds["source"].size, dtype=bool)
    raw = []
    for i in order:  # bonds within a few shells: tens to hundreds
        if assigned[i]:
            continue
        s, t, off = int(bonds["source"][i]), int(bonds["target"][i]), bonds["offset"][i]
        rep_keys = {(s, t, *off.tolist()), (t, s, *(-off).tolist())}
        members: dict[tuple[int, ...], np.ndarray] = {}
        proper_only = True
        for op in ops:  # ≤ 12 operations
            for src, tgt, o in ((s, t, off), (t, s, -off)):
                ms, mt, mo = op.map_bond(src, tgt, o)
                key = (int(ms), int(mt), *np.asarray(mo).tolist())
                members.setdefault(key, op.rotation)
                if key in rep_keys and not op.is_proper:
                    proper_only = False
        idx = [keys.get(k) for k in members]
        if any(j is None for j in idx):  # an image beyond the radius: this shell is not whole
            continue
        assigned[idx] = True
        raw.append((float(np.mean(bonds["distance"][idx])), i, list(members.items()), proper_only))
    raw.sort(key=lambda r: r[0])
    orbits: list[BondOrbit] = []
    shell, shell_start = 0, -np.inf
    for dist, i, members, proper_only in raw:
        if dist > shell_start + tolerance_A:
            shell, shell_start = shell + 1, dist
        if shell > n_shells:
            break
        comps = COMPONENTS if proper_only else COMPONENTS[:2]
        mk = np.array([m[0] for m in members], dtype=int)
        orbits.append(
            BondOrbit(
                shell=shell,
                distance_A=dist,
                source=int(bonds["source"][i]),
                target=int(bonds["target"][i]),
                offset=bonds["offset"][i].copy(),
                vector_A=bonds["vector"][i].copy(),
                components=comps,
                frame=_frame(bonds["vector"][i]),
                bond_source=mk[:, 0],
                bond_target=mk[:, 1],
                bond_offset=mk[:, 2:4],
                bond_rotation=np.stack([m[1] for m in members]),
            )
        )
    if shell < n_shells:  # pragma: no cover - the radius always holds n_shells + 1 shells
        raise InputError(f"internal: only {shell} bond shells found within {radius:.2f} Å")
    return orbits


@dataclass(frozen=True, eq=False)
class ForceConstantModel:
    """Symmetric force-constant tensors of the first ``shells`` neighbour shells.

    Build with :meth:`build`.  ``Φ̃(q; θ) = Σ_p θ_p B_p(q)`` is linear in the parameters θ
    (eV/Å²), see the module docstring.

    Attributes
    ----------
    lattice_vectors_A, basis_A, types
        The crystal.
    shells
        Number of neighbour shells.
    operations
        The space group used for the symmetry constraints.
    orbits
        The bond orbits, shell by shell.
    parameter_orbit, parameter_component
        ``(p,)`` orbit index and component (index into :data:`COMPONENTS`) of each parameter.
    tolerance_A
        Tolerance for symmetry and for grouping bond lengths into shells, Å.
    """

    lattice_vectors_A: np.ndarray
    basis_A: np.ndarray
    types: tuple[str, ...]
    shells: int
    operations: tuple[SymmetryOperation, ...]
    orbits: tuple[BondOrbit, ...]
    parameter_orbit: np.ndarray
    parameter_component: np.ndarray
    tolerance_A: float
    _bonds: dict[str, np.ndarray] = field(repr=False)

    @classmethod
    def build(
        cls,
        lattice_vectors_A: ArrayLike,
        basis_A: ArrayLike,
        types: ArrayLike,
        shells: int = 2,
        tolerance_A: float = DEFAULT_SYMMETRY_TOLERANCE_A,
        operations: tuple[SymmetryOperation, ...] | None = None,
    ) -> ForceConstantModel:
        """The model of a crystal with its own space group.

        Parameters
        ----------
        lattice_vectors_A
            ``(2, 2)`` rows a1, a2 as ``(y, x)``, Å.
        basis_A
            ``(κ, 2)`` basis positions, Å.
        types
            ``(κ,)`` species (atoms of equal type may be symmetry-equivalent).
        shells
            Number of neighbour shells (≥ 1).
        tolerance_A
            Tolerance for symmetry and for grouping bond lengths into shells, Å.
        operations
            The space group (default: :func:`~.crystal_symmetry.space_group` of the crystal).
        """
        if isinstance(shells, bool) or int(shells) != shells or shells < 1:
            raise InputError(f"shells must be an integer ≥ 1, got {shells!r}")
        A = np.asarray(lattice_vectors_A, dtype=float)
        tau = np.atleast_2d(np.asarray(basis_A, dtype=float))
        kinds = tuple(str(t) for t in np.asarray(types).ravel())
        if operations is None:
            operations = space_group(A, tau, kinds, tolerance_A)
        orbits = _bond_orbits(A, tau, operations, int(shells), float(tolerance_A))
        p_orbit, p_comp = [], []
        src, tgt, off, K, grp = [], [], [], [], []
        for o, orbit in enumerate(orbits):  # a handful of orbits
            for name in orbit.components:
                c = COMPONENTS.index(name)
                p = len(p_orbit)
                p_orbit.append(o)
                p_comp.append(c)
                R = orbit.bond_rotation
                src.append(orbit.bond_source)
                tgt.append(orbit.bond_target)
                off.append(orbit.bond_offset)
                K.append(R @ orbit.frame[c] @ np.swapaxes(R, -1, -2))
                grp.append(np.full(orbit.bond_source.size, p))
        bonds = {
            "source": np.concatenate(src),
            "target": np.concatenate(tgt),
            "offset": np.concatenate(off),
            "K": np.concatenate(K),
            "group": np.concatenate(grp),
        }
        return cls(
            lattice_vectors_A=A,
            basis_A=tau,
            types=kinds,
            shells=int(shells),
            operations=operations,
            orbits=tuple(orbits),
            parameter_orbit=np.array(p_orbit, dtype=int),
            parameter_component=np.array(p_comp, dtype=int),
            tolerance_A=float(tolerance_A),
            _bonds=bonds,
        )

    @property
    def n_params(self) -> int:
        """Number of parameters p."""
        return int(self.parameter_orbit.size)

    @property
    def n_basis(self) -> int:
        """Number of basis atoms κ."""
        return int(self.basis_A.shape[0])

    @property
    def parameter_names(self) -> tuple[str, ...]:
        """E.g. ``"shell 1 B–N longitudinal"`` (an orbit number is added when a shell has two
        orbits of the same species pair)."""
        labels = []
        for o in self.orbits:
            pair = f"{self.types[o.source]}–{self.types[o.target]}"
            labels.append(f"shell {o.shell} {pair}")
        counts = {lab: labels.count(lab) for lab in labels}
        seen: dict[str, int] = {}
        names = []
        for o, lab in enumerate(labels):
            if counts[lab] > 1:
                seen[lab] = seen.get(lab, 0) + 1
                labels[o] = f"{lab} ({seen[lab]})"
        for o, c in zip(self.parameter_orbit, self.parameter_component):
            names.append(f"{labels[o]} {COMPONENTS[c]}")
        return tuple(names)

    def basis_q(self, q_frac: ArrayLike) -> np.ndarray:
        """``B_p(q) = ∂Φ̃/∂θ_p``: complex ``(..., p, 2κ, 2κ)``."""
        b = self._bonds
        return bond_force_constants_q(
            q_frac,
            b["source"],
            b["target"],
            b["offset"],
            b["K"],
            self.n_basis,
            group=b["group"],
            n_groups=self.n_params,
        )

    def force_constants_q(self, theta: ArrayLike, q_frac: ArrayLike) -> np.ndarray:
        """``Φ̃(q; θ)`` in eV/Å², ``(..., 2κ, 2κ)``."""
        B = self.basis_q(q_frac)
        return np.tensordot(B, np.asarray(theta, dtype=float), axes=(-3, 0))

    def frequencies_THz(
        self, theta: ArrayLike, q_frac: ArrayLike, masses_amu: ArrayLike
    ) -> np.ndarray:
        """Frequencies (THz, ascending) at any q: ``(..., 2κ)``, or ``(n, ..., 2κ)`` for a
        ``(n, p)`` stack of parameter vectors.

        Eigenvalues of ``M^(−½) Φ̃ M^(−½)`` below ``1e−12`` of the largest one at the same q
        (the acoustic modes at Γ) are set to exactly 0.
        """
        theta = np.asarray(theta, dtype=float)
        inv_sqrt_m = np.repeat(1.0 / np.sqrt(np.asarray(masses_amu, dtype=float)), 2)
        B = self.basis_q(q_frac) * inv_sqrt_m[:, None] * inv_sqrt_m[None, :]
        D = np.tensordot(theta, B.reshape(-1, *B.shape[-3:]), axes=(-1, 1))  # (..., q, d, d)
        lam = np.linalg.eigvalsh(D)
        scale = np.max(np.abs(lam), axis=-1, keepdims=True)
        lam = np.where(np.abs(lam) <= 1e-12 * scale, 0.0, lam)
        q_shape = np.shape(q_frac)[:-1]
        return eigenvalues_to_THz(lam).reshape(*theta.shape[:-1], *q_shape, lam.shape[-1])

    def bond_tensors(self, theta: ArrayLike) -> np.ndarray:
        """``(orbits, 2, 2)`` tensor of each orbit's representative bond, eV/Å²."""
        theta = np.asarray(theta, dtype=float)
        out = np.zeros((len(self.orbits), 2, 2))
        for p, (o, c) in enumerate(zip(self.parameter_orbit, self.parameter_component)):
            out[o] += theta[..., p] * self.orbits[o].frame[c]
        return out

    def parameters_of(
        self, source: ArrayLike, target: ArrayLike, offset: ArrayLike, K: ArrayLike
    ) -> tuple[np.ndarray, float]:
        """The parameters of a given bond set (e.g. ``HarmonicLattice.bonds``) and how well the
        model holds it.

        Returns
        -------
        theta : ndarray
            ``(p,)`` components of each orbit's representative tensor (0 where it has none).
        residual : float
            ``max |Φ̃_given(q) − Φ̃(q; θ)|`` over a 7 × 7 q grid, eV/Å² (0: the given bonds are
            inside the model family).
        """
        s = np.asarray(source, dtype=int)
        t = np.asarray(target, dtype=int)
        off = np.asarray(offset, dtype=int)
        tensors = np.asarray(K, dtype=float)
        theta = np.zeros(self.n_params)
        for p, (o, c) in enumerate(zip(self.parameter_orbit, self.parameter_component)):
            orbit = self.orbits[o]
            hit = np.flatnonzero(
                (s == orbit.source) & (t == orbit.target) & np.all(off == orbit.offset, axis=1)
            )
            if hit.size:
                frame = orbit.frame[c]
                norm = 2.0 if c == 2 else 1.0  # (e e⊥ᵀ + e⊥ eᵀ) : (e e⊥ᵀ + e⊥ eᵀ) = 2
                theta[p] = float(np.sum(tensors[hit[0]] * frame)) / norm
        q = commensurate_q_frac(7, 7)
        given = bond_force_constants_q(q, s, t, off, tensors, self.n_basis)[..., 0, :, :]
        return theta, float(np.abs(given - self.force_constants_q(theta, q)).max())


# --------------------------------------------------------------------------------------------
# Likelihoods
# --------------------------------------------------------------------------------------------


def _translation_complement(d: int) -> np.ndarray:
    """``(d, d − 2)`` orthonormal basis orthogonal to the (unweighted) rigid translations."""
    T = np.zeros((d, 2))
    T[0::2, 0] = 1.0
    T[1::2, 1] = 1.0
    q, _ = np.linalg.qr(np.concatenate([T, np.eye(d)], axis=1))
    return q[:, 2:d]


def _trace_products(A: np.ndarray, B: np.ndarray | None = None) -> np.ndarray:
    """``Re tr(A_p B_r)`` for stacks ``(p, ..., n, n)``: a ``(p, r)`` matrix."""
    B = A if B is None else B
    a = A.reshape(A.shape[0], -1)
    b = np.swapaxes(B, -1, -2).reshape(B.shape[0], -1)
    return (a @ b.T).real


def _logdet_and_inverse(M: np.ndarray) -> tuple[float, np.ndarray] | None:
    """``log det`` and inverse of a stack of Hermitian matrices; None if one is not PD."""
    try:
        chol = np.linalg.cholesky(M)
    except np.linalg.LinAlgError:
        return None
    logdet = 2.0 * float(np.sum(np.log(np.abs(np.diagonal(chol, axis1=-2, axis2=-1)))))
    return logdet, np.linalg.inv(M)


@dataclass(frozen=True, eq=False)
class DisplacementStatistics:
    """Sufficient statistics of centred displacements on an ``L1 × L2`` block of cells.

    Attributes
    ----------
    u
        ``(N, s, L1, L2, κ, 2)`` displacements (Å), centred over states per slice.
    nu
        Degrees of freedom of the scatter, ``s (N − 1)``.
    """

    u: np.ndarray
    nu: int

    @property
    def cells(self) -> tuple[int, int]:
        """``(L1, L2)``."""
        return int(self.u.shape[2]), int(self.u.shape[3])

    @property
    def n_basis(self) -> int:
        """κ."""
        return int(self.u.shape[4])


def displacement_statistics(positions: ArrayLike) -> DisplacementStatistics:
    """Centre positions ``(N, s, L1, L2, κ, 2)`` over states (per slice, eq. 1).

    Raises
    ------
    InputError
        Fewer than two states.
    """
    R = np.asarray(positions, dtype=float)
    if R.ndim != 6 or R.shape[-1] != 2:
        raise InputError(f"positions must be (state, slice, L1, L2, κ, 2), got shape {R.shape}")
    n_states, n_slices = R.shape[:2]
    if n_states < 2:
        raise InputError(f"force constants need at least 2 states, got {n_states}")
    return DisplacementStatistics(u=R - R.mean(axis=0, keepdims=True), nu=n_slices * (n_states - 1))


class _PeriodicLikelihood:
    """``−2 log L`` of a periodic block (module docstring), block-diagonal in q."""

    def __init__(self, model: ForceConstantModel, stats: DisplacementStatistics, kT: float) -> None:
        L1, L2 = stats.cells
        q = commensurate_q_frac(L1, L2)
        d = 2 * stats.n_basis
        B = model.basis_q(q)  # (nq, p, d, d)
        Q = _translation_complement(d)  # Γ: leave out the rigid translations
        self.Q = Q
        self.kT = kT
        self.B = B[1:]
        self.B0 = np.einsum("ia,pij,jb->pab", Q, B[0], Q)
        self.n_dims = L1 * L2 * d - 2
        self.set_data(stats)

    def set_data(self, stats: DisplacementStatistics) -> None:
        """Use the scatter of other displacements on the same block (bootstrap replicas)."""
        d = self.Q.shape[0]
        ut = np.fft.fft2(stats.u, axes=(2, 3), norm="ortho").reshape(*stats.u.shape[:2], -1, d)
        S = np.einsum("nsqi,nsqj->qij", ut, ut.conj())  # (nq, d, d) scatter
        Q = self.Q
        self.linear = (
            np.einsum("qpij,qji->p", self.B, S[1:]).real
            + np.einsum("pab,ba->p", self.B0, Q.T @ S[0] @ Q).real
        ) / self.kT
        self.nu = stats.nu

    @property
    def offset(self) -> float:
        """Add to ``evaluate``'s value for ``−2 log L`` comparable between boundaries:
        ``ν D log k_B T`` (``log det C = D log k_B T − log det Φ̃``)."""
        return self.nu * self.n_dims * math.log(self.kT)

    def quadratic(self, theta: np.ndarray) -> float:
        """``Σ_q tr(Φ̃ S) / k_B T`` (the data term)."""
        return float(self.linear @ theta)

    def evaluate(
        self, theta: np.ndarray, derivatives: bool = True
    ) -> tuple[float, np.ndarray | None, np.ndarray | None]:
        """``(−2 log L, gradient, Hessian)`` up to a constant; ``inf`` outside the stable set."""
        phi = np.tensordot(theta, self.B, axes=(0, 1))
        phi0 = np.tensordot(theta, self.B0, axes=(0, 0))
        parts = [_logdet_and_inverse(phi), _logdet_and_inverse(phi0[None])]
        if any(part is None for part in parts):
            return math.inf, None, None
        (ld, inv), (ld0, inv0) = parts
        f = -self.nu * (ld + ld0) + self.quadratic(theta)
        if not derivatives:
            return f, None, None
        X = inv[:, None] @ self.B  # Φ̃⁻¹ B_p, (q, p, d, d)
        X0 = inv0[0] @ self.B0
        grad = self.linear - self.nu * (np.einsum("qpii->p", X).real + np.einsum("pii->p", X0).real)
        hess = self.nu * (_trace_products(np.moveaxis(X, 1, 0)) + _trace_products(X0))
        return f, grad, hess

    def observed_hessian(self, theta: np.ndarray) -> np.ndarray:
        """Exact Hessian (the data term is linear, so observed = expected information)."""
        return self.evaluate(theta)[2]


class _OpenLikelihood:
    """``−2 log L`` of a window cut out of a periodic crystal of ``crystal`` cells."""

    def __init__(
        self,
        model: ForceConstantModel,
        stats: DisplacementStatistics,
        kT: float,
        crystal: tuple[int, int],
    ) -> None:
        L1, L2 = stats.cells
        M1, M2 = crystal
        d = 2 * stats.n_basis
        q = commensurate_q_frac(M1, M2)
        self.B = model.basis_q(q)  # (Mq, p, d, d)
        self.crystal = (M1, M2)
        self.kT = kT
        self.d = d
        self.Qc = _translation_complement(d)
        # cell differences Δ = l − l' inside the window, and Σ_q exp(2πi q·Δ) / Mq for each
        l1, l2 = np.meshgrid(np.arange(L1), np.arange(L2), indexing="ij")
        l1, l2 = l1.ravel(), l2.ravel()
        d1, d2 = l1[:, None] - l1[None, :], l2[:, None] - l2[None, :]
        self.delta_index = (d1 + L1 - 1) * (2 * L2 - 1) + (d2 + L2 - 1)  # (Lw, Lw)
        g1, g2 = np.meshgrid(np.arange(1 - L1, L1), np.arange(1 - L2, L2), indexing="ij")
        delta = np.stack([g1.ravel(), g2.ravel()], axis=-1)  # (nΔ, 2)
        self.phase = np.exp(2j * np.pi * (delta @ q.T)) / q.shape[0]  # (nΔ, Mq)
        n = L1 * L2 * d
        T = np.zeros((n, 2))
        T[0::2, 0] = 1.0 / math.sqrt(n / 2)
        T[1::2, 1] = 1.0 / math.sqrt(n / 2)
        self.T = T
        self.n = n
        self.n_dims = n - 2
        self.c = 1.0  # Å², fixed: the regulariser c T Tᵀ adds a constant to log det
        self.set_data(stats)

    def set_data(self, stats: DisplacementStatistics) -> None:
        """Use the scatter of other displacements on the same window (bootstrap replicas)."""
        u = stats.u.reshape(-1, self.n)
        u = u - (u @ self.T) @ self.T.T  # the window's rigid translations left out
        self.S = u.T @ u
        self.nu = stats.nu

    # -- covariance and its derivatives in real space --------------------------------------
    def _inverse_q(self, theta: np.ndarray) -> np.ndarray | None:
        phi = np.tensordot(theta, self.B, axes=(0, 1))
        inv = np.zeros_like(phi)
        rest = _logdet_and_inverse(phi[1:])
        phi0 = self.Qc.T @ phi[0] @ self.Qc
        zero = _logdet_and_inverse(phi0[None])
        if rest is None or zero is None:
            return None
        inv[1:] = rest[1]
        inv[0] = self.Qc @ zero[1][0] @ self.Qc.T  # pseudo-inverse: translations left out
        return inv

    def _window(self, kernel_q: np.ndarray) -> np.ndarray:
        """Real-space window of q-space kernels ``(k, Mq, d, d)``: ``P Σ P``, ``(k, n, n)``.

        ``Σ_(l κα, l' κ'β) = (1/Mq) Σ_q K_(κα, κ'β)(q) exp(2πi q·(l − l'))``.
        """
        k, d = kernel_q.shape[0], self.d
        g = kernel_q.reshape(k, -1, d * d).transpose(1, 0, 2).reshape(-1, k * d * d)
        g = (self.phase @ g).real.reshape(-1, k, d, d)  # (nΔ, k, d, d)
        w = g[self.delta_index]  # (Lw, Lw, k, d, d)
        lw = w.shape[0]
        sigma = w.transpose(2, 0, 3, 1, 4).reshape(k, lw * d, lw * d)
        sigma = 0.5 * (sigma + np.swapaxes(sigma, 1, 2))
        T = self.T
        Ts = T @ (T.T @ sigma)  # (k, n, n)
        return sigma - Ts - np.swapaxes(Ts, 1, 2) + T @ (T.T @ sigma @ T) @ T.T

    def _sigma(self, inv_q: np.ndarray) -> np.ndarray:
        return self.kT * self._window(inv_q[None])[0] + self.c * (self.T @ self.T.T)

    def _dsigma(self, inv_q: np.ndarray) -> np.ndarray:
        X = inv_q[:, None] @ self.B  # Φ̃⁻¹ B_p, (q, p, d, d)
        dq = -np.moveaxis(X @ inv_q[:, None], 1, 0)  # (p, q, d, d)
        return self.kT * self._window(dq)

    @property
    def offset(self) -> float:
        """Add to ``evaluate``'s value for ``−2 log L`` comparable between boundaries: the
        regulariser ``c T Tᵀ`` adds ``2 ν log c`` to ``ν log det Σ̃``."""
        return -2.0 * self.nu * math.log(self.c)

    def quadratic(self, theta: np.ndarray) -> float:
        """``tr(Σ⁻¹ S)`` (the data term)."""
        inv_q = self._inverse_q(theta)
        if inv_q is None:
            return math.inf
        return float(np.sum(np.linalg.inv(self._sigma(inv_q)) * self.S))

    def evaluate(
        self, theta: np.ndarray, derivatives: bool = True
    ) -> tuple[float, np.ndarray | None, np.ndarray | None]:
        """``(−2 log L, gradient, expected Fisher Hessian)`` up to a constant."""
        inv_q = self._inverse_q(theta)
        if inv_q is None:
            return math.inf, None, None
        sigma = self._sigma(inv_q)
        part = _logdet_and_inverse(sigma)
        if part is None:
            return math.inf, None, None
        logdet, sinv = part
        f = self.nu * logdet + float(np.sum(sinv * self.S))
        if not derivatives:
            return f, None, None
        ds = self._dsigma(inv_q)  # (p, n, n)
        W = self.nu * sinv - sinv @ self.S @ sinv
        grad = np.sum(W[None] * ds, axis=(1, 2))  # tr(W Σ_p), both symmetric
        Y = sinv @ ds
        hess = self.nu * _trace_products(Y)
        return f, grad, 0.5 * (hess + hess.T)

    def one_step(self, theta: np.ndarray, replicas: list[DisplacementStatistics]) -> np.ndarray:
        """One Fisher-scoring step from ``theta`` for each replica's data: ``(n, p)``.

        ``θ* = θ − F(θ)⁻¹ g*(θ)`` with ``g*_p = tr((ν Σ⁻¹ − Σ⁻¹ S* Σ⁻¹) Σ_p)``: everything but
        the replica's scatter ``S*`` is evaluated once at ``theta`` (a linearised bootstrap).
        """
        inv_q = self._inverse_q(theta)
        sinv = np.linalg.inv(self._sigma(inv_q))
        ds = self._dsigma(inv_q)
        Y = sinv @ ds
        fisher = self.nu * _trace_products(Y)
        base = self.nu * np.trace(Y, axis1=1, axis2=2)  # ν tr(Σ⁻¹ Σ_p)
        A = (Y @ sinv).reshape(Y.shape[0], -1)  # Σ⁻¹ Σ_p Σ⁻¹
        out = []
        for rep in replicas:  # a few hundred replicas, each a matrix–vector product
            u = rep.u.reshape(-1, self.n)
            u = u - (u @ self.T) @ self.T.T
            grad = base * (rep.nu / self.nu) - A @ (u.T @ u).ravel()
            out.append(theta - np.linalg.solve(fisher * (rep.nu / self.nu), grad))
        return np.array(out).reshape(-1, theta.size)

    def observed_hessian(self, theta: np.ndarray) -> np.ndarray:
        """Exact Hessian of ``−2 log L`` (second derivatives of Σ included)."""
        inv_q = self._inverse_q(theta)
        sigma = self._sigma(inv_q)
        sinv = np.linalg.inv(sigma)
        ds = self._dsigma(inv_q)
        p = ds.shape[0]
        W = self.nu * sinv - sinv @ self.S @ sinv
        Y = sinv @ ds
        Z = (sinv @ self.S) @ Y  # Σ⁻¹ S Σ⁻¹ Σ_p
        X = inv_q[:, None] @ self.B  # Φ̃⁻¹ B_p
        hess = -self.nu * _trace_products(Y) + 2.0 * _trace_products(Z, Y)
        a, b = np.triu_indices(p)  # p(p+1)/2 second derivatives of Σ
        d2 = (X[:, a] @ X[:, b] + X[:, b] @ X[:, a]) @ inv_q[:, None]  # (q, pairs, d, d)
        vals = np.sum(W[None] * (self.kT * self._window(np.moveaxis(d2, 1, 0))), axis=(1, 2))
        hess[a, b] += vals
        hess[b[a != b], a[a != b]] += vals[a != b]
        return 0.5 * (hess + hess.T)


# --------------------------------------------------------------------------------------------
# Fitting
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShellTest:
    """Likelihood-ratio test of the fitted shells against one more shell.

    Attributes
    ----------
    shells
        Shells of the fitted model N.
    statistic
        ``2 (log L_(N+1) − log L_N)`` (NaN when the test could not be made).
    dof
        Parameters added by shell N + 1.
    p_value
        ``P(χ²_dof ≥ statistic)`` under the hypothesis that N shells hold the truth.
    alpha
        Significance level.
    note
        Why the test could not be made ("" when it was).
    """

    shells: int
    statistic: float
    dof: int
    p_value: float
    alpha: float
    note: str = ""

    @property
    def more_shells_needed(self) -> bool:
        """True when N shells are rejected at level ``alpha``."""
        return bool(np.isfinite(self.p_value) and self.p_value < self.alpha)

    def summary(self) -> str:
        """One line for the command line and the dock."""
        if not np.isfinite(self.p_value):
            return (
                f"goodness of fit ({self.shells} vs {self.shells + 1} shells): not tested, "
                f"{self.note}"
            )
        verdict = (
            f"more shells needed (p < {self.alpha:g}): refit with --shells {self.shells + 1}"
            if self.more_shells_needed
            else f"{self.shells} shells suffice"
        )
        return (
            f"goodness of fit, likelihood ratio {self.shells} vs {self.shells + 1} shells: "
            f"2ΔlogL = {self.statistic:.2f} on {self.dof} dof, p = {self.p_value:.3g}; {verdict}"
        )


@dataclass(frozen=True, eq=False)
class ForceConstantFit:
    """Maximum-likelihood force constants and their errors.

    Attributes
    ----------
    model
        The parametrisation.
    theta
        ``(p,)`` fitted parameters, eV/Å².
    covariance
        ``(p, p)`` inverse observed Fisher information, (eV/Å²)².
    theta_bootstrap
        ``(n_boot, p)`` refits on bootstrap replicas of the states (empty: none).
    neg2_log_likelihood
        ``−2 log L`` at the optimum, up to a constant that depends only on the data (the same
        for both boundaries).
    nu
        Degrees of freedom of the scatter, ``slices (N − 1)``.
    boundary
        ``"periodic"`` or ``"open"`` (the one chosen, for ``"auto"``).
    boundary_comparison
        ``−2 log L`` of the periodic minus that of the open description (``"auto"``; NaN
        when only one was fitted): negative favours periodic.
    crystal_cells
        The periodic crystal the window was cut from (``open``), or the block itself.
    iterations
        Newton iterations of the main fit.
    shell_test
        Likelihood-ratio test against one more shell, or None when not asked for.
    """

    model: ForceConstantModel
    theta: np.ndarray
    covariance: np.ndarray
    theta_bootstrap: np.ndarray
    neg2_log_likelihood: float
    nu: int
    boundary: str
    boundary_comparison: float
    crystal_cells: tuple[int, int]
    iterations: int
    shell_test: ShellTest | None

    @property
    def err_fisher(self) -> np.ndarray:
        """``(p,)`` standard errors from the curvature of the likelihood, eV/Å²."""
        return np.sqrt(np.clip(np.diag(self.covariance), 0, None))

    @property
    def err_bootstrap(self) -> np.ndarray:
        """``(p,)`` standard deviation over the bootstrap refits (NaN without them), eV/Å²."""
        if self.theta_bootstrap.shape[0] < 2:
            return np.full(self.theta.size, np.nan)
        return self.theta_bootstrap.std(axis=0, ddof=1)

    def table(self) -> str:
        """The fitted constants as a text table."""
        names = self.model.parameter_names
        width = max(len(n) for n in names)
        lines = [
            f"Force constants ({self.model.shells} shells, {len(self.model.operations)} symmetry "
            f"operations, {self.boundary} boundary), eV/Å²:",
            f"{'constant':<{width}}  {'value':>9}  {'± Fisher':>9}  {'± bootstrap':>11}",
        ]
        for n, v, e, b in zip(names, self.theta, self.err_fisher, self.err_bootstrap):
            boot = f"{b:11.3f}" if np.isfinite(b) else f"{'—':>11}"
            lines.append(f"{n:<{width}}  {v:9.3f}  {e:9.3f}  {boot}")
        if self.shell_test is not None:
            lines.append(self.shell_test.summary())
        return "\n".join(lines)


def _likelihood(
    model: ForceConstantModel,
    stats: DisplacementStatistics,
    kT: float,
    boundary: str,
    crystal_cells: tuple[int, int] | None,
) -> _PeriodicLikelihood | _OpenLikelihood:
    if boundary == "periodic":
        return _PeriodicLikelihood(model, stats, kT)
    return _OpenLikelihood(model, stats, kT, _crystal(stats.cells, crystal_cells))


def _crystal(cells: tuple[int, int], crystal_cells: tuple[int, int] | None) -> tuple[int, int]:
    if crystal_cells is None:
        return tuple(max(OPEN_CRYSTAL_MIN, OPEN_CRYSTAL_FACTOR * c) for c in cells)
    M = tuple(int(c) for c in crystal_cells)
    if len(M) != 2 or M[0] < cells[0] or M[1] < cells[1]:
        raise InputError(
            f"crystal_cells {tuple(crystal_cells)} must be at least the block of cells {cells}"
        )
    return M


def _start(model: ForceConstantModel, lik) -> np.ndarray:
    """Isotropic springs on the shortest shells that hold the lattice, scaled to the data."""
    for shells in range(1, model.shells + 1):
        theta = np.zeros(model.n_params)
        for p, (o, c) in enumerate(zip(model.parameter_orbit, model.parameter_component)):
            if model.orbits[o].shell <= shells and c < 2:
                theta[p] = 1.0
        f, _, _ = lik.evaluate(theta, derivatives=False)
        if np.isfinite(f):
            data = lik.quadratic(theta)
            return theta * (lik.nu * lik.n_dims / data)  # the best scale along θ
    raise InputError(
        f"springs of {model.shells} shell(s) do not hold this lattice together (a mode of zero "
        "frequency remains): use more shells"
    )


def _minimise(
    lik, theta: np.ndarray, max_iterations: int | None = None
) -> tuple[np.ndarray, float, int]:
    """Damped Newton (Fisher scoring) with backtracking; returns (θ, f, iterations).

    With ``max_iterations`` given, stops there without complaint (a fixed number of steps).
    """
    f, grad, hess = lik.evaluate(theta)
    if not np.isfinite(f):
        raise InputError("internal: the force-constant fit started outside the stable set")
    limit = MAX_ITERATIONS if max_iterations is None else int(max_iterations)
    for it in range(1, limit + 1):
        w, v = np.linalg.eigh(hess)
        if w.min() <= 1e-12 * max(w.max(), 1e-300):
            raise InputError(
                "the force constants are not determined by these data (the information matrix "
                "is singular): the block of cells is too small for this many shells, or the "
                "states do not vary"
            )
        step = v @ ((v.T @ grad) / w)
        decrement = float(grad @ step)
        if decrement < DECREMENT_TOL:
            return theta, f, it
        t = 1.0
        while True:
            trial = theta - t * step
            f_trial, _, _ = lik.evaluate(trial, derivatives=False)
            if np.isfinite(f_trial) and f_trial <= f - 0.25 * t * decrement:
                break
            t *= 0.5
            if t < 1e-12:
                return theta, f, it  # no further decrease possible at machine precision
        theta = trial
        if it == limit and max_iterations is not None:
            return theta, f_trial, it  # no derivatives needed after the last step
        f, grad, hess = lik.evaluate(theta)
    raise InputError(  # pragma: no cover - Newton on a smooth convex problem converges
        f"the force-constant fit did not converge in {MAX_ITERATIONS} iterations"
    )


def fit_force_constants(
    stats: DisplacementStatistics,
    model: ForceConstantModel,
    temperature_K: float,
    *,
    boundary: str = "auto",
    crystal_cells: tuple[int, int] | None = None,
    bootstrap: int = 0,
    seed: int = 0,
    test_next_shell: bool = True,
    alpha: float = DEFAULT_ALPHA,
) -> ForceConstantFit:
    """Maximum-likelihood force constants of a displacement ensemble (module docstring).

    Parameters
    ----------
    stats
        Centred displacements on the block of whole cells (:func:`displacement_statistics`).
    model
        The parametrisation (:meth:`ForceConstantModel.build` of the same crystal).
    temperature_K
        Temperature, K.
    boundary
        ``"periodic"`` (the block is one period of the crystal), ``"open"`` (a window of a
        larger crystal) or ``"auto"`` (both fitted, the likelier kept).
    crystal_cells
        ``open``: the periodic crystal the window is cut from; default: 8 × the window (an
        infinite crystal to within ~0.1 %).
    bootstrap
        Refits on this many bootstrap replicas of the states (0: none).
    seed
        Seed of the bootstrap draws.
    test_next_shell
        Also fit ``model.shells + 1`` shells for the likelihood-ratio test.
    alpha
        Significance level of that test.

    Returns
    -------
    ForceConstantFit

    Raises
    ------
    InputError
        An unknown boundary, a block too small for the shells, or too few states.
    """
    if boundary not in BOUNDARIES:
        raise InputError(f"boundary must be one of {BOUNDARIES}, got {boundary!r}")
    if stats.n_basis != model.n_basis:
        raise InputError(f"data have {stats.n_basis} basis atoms, the model {model.n_basis}")
    t = float(temperature_K)
    if not (math.isfinite(t) and t > 0):
        raise InputError(f"temperature_K must be > 0 K, got {temperature_K!r}")
    kT = KB_EV_PER_K * t
    fits, failures = {}, {}
    for name in ("periodic", "open") if boundary == "auto" else (boundary,):
        try:
            lik = _likelihood(model, stats, kT, name, crystal_cells)
            theta, f, iterations = _minimise(lik, _start(model, lik))
        except InputError as exc:
            failures[name] = exc
            continue
        fits[name] = (lik, theta, f + lik.offset, iterations)
    if not fits:
        raise failures.get("open", next(iter(failures.values())))
    boundary = min(fits, key=lambda name: fits[name][2])
    lik, theta, f, iterations = fits[boundary]
    comparison = fits["periodic"][2] - fits["open"][2] if len(fits) == 2 else math.nan
    covariance = 2.0 * np.linalg.inv(lik.observed_hessian(theta))

    replicas = _bootstrap(lik, stats, theta, int(bootstrap), seed) if bootstrap > 0 else []

    shell_test = None
    if test_next_shell:
        shell_test = _shell_test(model, stats, kT, boundary, crystal_cells, theta, f, alpha)
    return ForceConstantFit(
        model=model,
        theta=theta,
        covariance=0.5 * (covariance + covariance.T),
        theta_bootstrap=np.array(replicas).reshape(-1, model.n_params),
        neg2_log_likelihood=f,
        nu=stats.nu,
        boundary=boundary,
        boundary_comparison=comparison,
        crystal_cells=stats.cells if boundary == "periodic" else lik.crystal,
        iterations=iterations,
        shell_test=shell_test,
    )


def _bootstrap(
    lik: _PeriodicLikelihood | _OpenLikelihood,
    stats: DisplacementStatistics,
    theta: np.ndarray,
    n_boot: int,
    seed: int,
) -> list[np.ndarray]:
    """Parameters refitted on replicas of the states drawn with replacement.

    Periodic blocks are refitted fully (warm-started at θ̂).  Open windows, whose likelihood is
    costlier, take two Fisher-scoring steps: the first from θ̂ for all replicas at once
    (:meth:`_OpenLikelihood.one_step`), the second from there with each replica's own
    curvature (a full refit moves on by about 1 % of the first step).
    """
    rng = np.random.default_rng(seed)
    n_states = stats.u.shape[0]
    draws = rng.integers(0, n_states, size=(n_boot, n_states))
    reps = []
    for draw in draws:  # replicas of the states (a view each, no copy of the data)
        R = stats.u[draw]
        reps.append(DisplacementStatistics(u=R - R.mean(axis=0, keepdims=True), nu=stats.nu))
    open_window = isinstance(lik, _OpenLikelihood)
    starts = lik.one_step(theta, reps) if open_window else [theta] * len(reps)
    out = []
    for rep, start in zip(reps, starts):  # one refit (or one more step) per replica
        lik.set_data(rep)
        if not np.isfinite(lik.evaluate(start, derivatives=False)[0]):
            start = theta  # the first step left the stable set: step from θ̂ instead
        try:
            out.append(_minimise(lik, start.copy(), 1 if open_window else None)[0])
        except InputError:
            continue  # a replica with too few distinct states: left out
    lik.set_data(stats)
    return out


def _shell_test(
    model: ForceConstantModel,
    stats: DisplacementStatistics,
    kT: float,
    boundary: str,
    crystal_cells: tuple[int, int] | None,
    theta: np.ndarray,
    f: float,
    alpha: float,
) -> ShellTest:
    from scipy import stats as sps

    bigger = ForceConstantModel.build(
        model.lattice_vectors_A,
        model.basis_A,
        model.types,
        model.shells + 1,
        tolerance_A=model.tolerance_A,
        operations=model.operations,
    )
    dof = bigger.n_params - model.n_params
    try:
        lik = _likelihood(bigger, stats, kT, boundary, crystal_cells)
        _, f_big, _ = _minimise(lik, _embed(model, theta, bigger))
        f_big += lik.offset
    except InputError as exc:
        return ShellTest(model.shells, math.nan, dof, math.nan, alpha, note=str(exc))
    statistic = max(0.0, f - f_big)
    return ShellTest(model.shells, statistic, dof, float(sps.chi2.sf(statistic, dof)), alpha)


def _parameter_keys(model: ForceConstantModel) -> list[tuple[int, ...]]:
    return [
        (model.orbits[o].source, model.orbits[o].target, *model.orbits[o].offset.tolist(), c)
        for o, c in zip(model.parameter_orbit, model.parameter_component)
    ]


def _embed(model: ForceConstantModel, theta: np.ndarray, bigger: ForceConstantModel) -> np.ndarray:
    """``theta`` of ``model`` as parameters of ``bigger`` (its further shells at 0)."""
    value = dict(zip(_parameter_keys(model), theta))
    return np.array([value.get(k, 0.0) for k in _parameter_keys(bigger)])


def frequency_spread(
    model: ForceConstantModel, thetas: np.ndarray, q_frac: ArrayLike, masses_amu: ArrayLike
) -> np.ndarray:
    """Standard deviation of the frequencies over parameter vectors ``(n, p)``: ``(..., 2κ)``."""
    if thetas.shape[0] < 2:
        return np.full((*np.shape(q_frac)[:-1], 2 * model.n_basis), np.nan)
    return model.frequencies_THz(thetas, q_frac, masses_amu).std(axis=0, ddof=1)


def fisher_draws(fit: ForceConstantFit, n: int = 400, seed: int = 0) -> np.ndarray:
    """``(n, p)`` parameter vectors drawn from ``N(θ̂, covariance)`` (to propagate the Fisher
    errors to frequencies; seeded, eigenvector-free: Cholesky of the covariance)."""
    rng = np.random.default_rng(seed)
    chol = np.linalg.cholesky(fit.covariance + 1e-30 * np.eye(fit.theta.size))
    return fit.theta + rng.standard_normal((int(n), fit.theta.size)) @ chol.T
