"""Symmetric Born–von Kármán force-constant tensors of a 2D crystal, tied by its space group.

Bonds are grouped into *orbits* under the crystal's space group (:mod:`.crystal_symmetry`) and
orbits into *shells* by length (shell 1 = nearest neighbours).  Every bond carries a symmetric
2 × 2 stiffness tensor ``K`` (eV/Å²) and the potential is ``½ Σ_bonds (u_i − u_j)ᵀ K (u_i −
u_j)``, so the self term of every atom is the sum of its bond tensors (the acoustic sum rule
holds for any parameters).  In the frame of a representative bond (unit vector ``e``,
perpendicular ``e⊥``)

    K = k_L e eᵀ + k_T e⊥ e⊥ᵀ + k_S (e e⊥ᵀ + e⊥ eᵀ),

and the other bonds of its orbit carry ``R K Rᵀ`` (``R`` the operation that maps the
representative onto them).  A mirror that maps the bond onto itself (or its reverse) forbids
``k_S``; the parameters are the ``k_L, k_T`` (and allowed ``k_S``) of every orbit of the chosen
shells, in eV/Å².  Central + transverse springs (:class:`~.phonons.Spring`) are the special case
``k_S = 0``, so the project's harmonic model is inside the family.  ``Φ̃(q; θ) = Σ_p θ_p B_p(q)``
is linear in the parameters (conventions §5 for ``Φ̃``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike

from caviar_napari.analysis.crystal_symmetry import (
    DEFAULT_SYMMETRY_TOLERANCE_A,
    SymmetryOperation,
    space_group,
)
from caviar_napari.analysis.phonons import (
    bond_force_constants_q,
    commensurate_q_frac,
    eigenvalues_to_THz,
)
from caviar_napari.errors import InputError

__all__ = ["COMPONENTS", "BondOrbit", "ForceConstantModel", "embed_parameters"]

#: Components of a bond tensor in the frame of the bond.
COMPONENTS: tuple[str, ...] = ("longitudinal", "transverse", "shear")


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


def _parameter_keys(model: ForceConstantModel) -> list[tuple[int, ...]]:
    return [
        (model.orbits[o].source, model.orbits[o].target, *model.orbits[o].offset.tolist(), c)
        for o, c in zip(model.parameter_orbit, model.parameter_component)
    ]


def embed_parameters(
    model: ForceConstantModel, theta: np.ndarray, bigger: ForceConstantModel
) -> np.ndarray:
    """``theta`` of ``model`` as parameters of ``bigger`` (its further shells at 0)."""
    value = dict(zip(_parameter_keys(model), theta))
    return np.array([value.get(k, 0.0) for k in _parameter_keys(bigger)])
