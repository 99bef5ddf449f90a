"""Phonon dispersion from correlated displacements (paper eqs. 5, 6; conventions §5).

Pipeline (:func:`compute_dispersion`):

1. **Crop** to whole unit cells: atoms are placed on an ``(l1, l2, κ)`` grid by their
   ``cell_index`` and ``basis_index``; a cell is *complete* when every basis atom is present and
   has a finite position in every used state and slice; the largest ``L1 × L2`` block of complete
   cells is kept (:func:`crop_to_cells`).  Everything else is reported in ``excluded_atoms``.
2. **Displacements** ``u = R − mean_n R`` per slice (eq. 1), and their Fourier transform over the
   cells (eq. 5) ``ũ_κα(q) = L^(−1/2) Σ_l u_lκα exp(−i q·r_l)`` with the ideal cell origins
   ``r_l = l1 a1 + l2 a2`` (integer cell indices, never the noisy positions) on the commensurate
   grid ``q = (m1/L1) b1 + (m2/L2) b2`` (``a_i · b_j = δ_ij``).  The block's first cell is taken
   as ``l = 0``: another origin multiplies ũ(q) by one phase for all κ, which cancels in
   ``⟨ũ ũ^H⟩``.
3. ``C(q) = ⟨ũ ũ^H⟩`` — the mean over states and over the used slices (as the correlations do
   for slice ranges): a ``2κ × 2κ`` Hermitian matrix per q, index ``2κ + α`` (α = 0 y, 1 x).
4. **Dynamical matrix** ``D(q) = k_B T · M^(−½) C(q)^(−1) M^(−½)`` (the same as conventions §5's
   ``k_B T (M^½ C M^½)^(−1)``) with one mass per basis atom (default) or, as an option, the
   paper's single harmonic-mean mass ``m̄ = κ / Σ_κ 1/m_κ`` for every atom.  Its eigenvalues
   are ``λ = k_B T / μ`` with μ the eigenvalues of ``W = M^½ C M^½``, so no matrix is inverted
   explicitly.  At Γ the two mass-weighted rigid translations (``M^½ 1_α``) are projected out of
   W before inverting; the two acoustic frequencies at Γ are then exactly 0.
5. **Frequencies** ``ν = sign(λ) sqrt(|λ|)/2π`` in THz, sorted ascending: branches are labelled
   by sorted band index.  A sample covariance is positive semi-definite, so λ < 0 can only come
   from round-off; it is still reported as a negative frequency, never ``abs``.
6. **Path**: Γ–M–K–Γ for hexagonal lattices (M = b1/2, K = (b1 + b2)/3 when the a's are at 120°,
   K = (2 b1 + b2)/3 when they are at 60°), Γ–X–M–Γ (square) or Γ–X–S–Y–Γ (rectangular) for
   90° cells, otherwise a user path.  The commensurate q (and their reciprocal-lattice images)
   lying on the path are the plotted points; per-branch averages are the mean over the
   *distinct* commensurate q on the path (Γ at both ends counts once).
7. **Uncertainty**: bootstrap over object states (states drawn with replacement, displacements
   re-centred on each replica's mean, the whole analysis repeated); the error of every frequency
   and of every branch average is the standard deviation over the replicas.  Replicas whose
   covariance is singular at some q (too few distinct states) are left out and counted.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

from caviar_napari.analysis.correlations import parse_slice_spec
from caviar_napari.analysis.phonons import (
    KB_EV_PER_K,
    STANDARD_ATOMIC_WEIGHTS_AMU,
    commensurate_q_frac,
    eigenvalues_to_THz,
    reciprocal_vectors,
)
from caviar_napari.errors import InputError
from caviar_napari.io.dispersion_file import DispersionData

if TYPE_CHECKING:
    from caviar_napari.io.atoms_file import AtomsData

#: A covariance whose eigenvalue ratio μ_min/μ_max is below this at some q is singular.
SINGULAR_RATIO = 1e-10

#: Displacements below this fraction of the largest position are "no motion" (float32 ulps).
STATIC_RELATIVE = 4.0 * float(np.finfo(np.float32).eps)

#: Memory bound (bytes) of the replica-mean displacements held at once by the bootstrap.
BOOTSTRAP_CHUNK_BYTES = 64 * 2**20

_GAMMA_NAMES = ("G", "GAMMA", "Γ")


# --------------------------------------------------------------------------------------------
# Configuration and paths
# --------------------------------------------------------------------------------------------


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


@dataclass(frozen=True)
class DispersionConfig:
    """Parameters of a dispersion analysis, validated on construction.

    Attributes
    ----------
    temperature_K
        Temperature of the specimen, K (> 0).
    masses_amu
        Masses by species (amu), overriding the standard atomic weights; when the ATOMS file has
        no species, keys are the basis indices as text (``"0"``, ``"1"``, …).
    single_mass
        Use the paper's single harmonic-mean mass for every atom instead of one mass per basis
        atom.
    slices
        Slices to use: ``"A:B"`` text (Python slice semantics), a sequence of indices, or None
        (all slices).
    bootstrap
        Number of bootstrap replicas over object states (0: no error bars).
    path
        The reciprocal-space path; None: :func:`default_path` of the lattice.
    seed
        Seed of the bootstrap draws.
    """

    temperature_K: float
    masses_amu: Mapping[str, float] = field(default_factory=dict)
    single_mass: bool = False
    slices: str | Sequence[int] | None = None
    bootstrap: int = 200
    path: BrillouinPath | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        try:
            t = float(self.temperature_K)
        except (TypeError, ValueError):
            t = math.nan
        if not (math.isfinite(t) and t > 0):
            raise InputError(f"temperature_K must be > 0 K, got {self.temperature_K!r}")
        object.__setattr__(self, "temperature_K", t)
        masses = {}
        for key, value in dict(self.masses_amu).items():
            if not (math.isfinite(float(value)) and float(value) > 0):
                raise InputError(f"mass of {key!r} must be > 0 amu, got {value!r}")
            masses[str(key)] = float(value)
        object.__setattr__(self, "masses_amu", masses)
        if int(self.bootstrap) < 0 or int(self.bootstrap) != self.bootstrap:
            raise InputError(f"bootstrap must be an integer ≥ 0, got {self.bootstrap!r}")
        if self.path is not None and not isinstance(self.path, BrillouinPath):
            raise InputError(f"path must be a BrillouinPath, got {type(self.path).__name__}")


def parse_masses(items: Sequence[str]) -> dict[str, float]:
    """Parse ``["B=10.81", "N=14.007"]`` into ``{"B": 10.81, "N": 14.007}`` (amu).

    Raises
    ------
    InputError
        Naming the malformed item.
    """
    masses = {}
    for item in items:
        key, sep, value = item.partition("=")
        try:
            if not sep or not key.strip():
                raise ValueError
            masses[key.strip()] = float(value)
        except ValueError:
            raise InputError(f"mass {item!r}: expected SPECIES=AMU, e.g. B=10.81") from None
    return masses


# --------------------------------------------------------------------------------------------
# Masses
# --------------------------------------------------------------------------------------------


def basis_species(
    basis_index: np.ndarray, species: np.ndarray | None, n_basis: int
) -> tuple[str, ...]:
    """The species of each basis atom (its basis index as text when species are unknown).

    Raises
    ------
    InputError
        If the atoms of one basis index carry different species.
    """
    if species is None:
        return tuple(str(b) for b in range(n_basis))
    species = np.asarray(species, dtype=str)
    labels = []
    for b in range(n_basis):  # κ basis atoms
        kinds = np.unique(species[basis_index == b])
        if kinds.size != 1:
            raise InputError(
                f"basis atom {b} has species {kinds.tolist()} in the ATOMS 'species' dataset: "
                "each basis index needs exactly one species"
            )
        labels.append(str(kinds[0]))
    return tuple(labels)


def resolve_masses(labels: Sequence[str], overrides: Mapping[str, float]) -> np.ndarray:
    """Masses (amu) of the basis atoms: given ones first, else standard atomic weights.

    Raises
    ------
    InputError
        Naming the species (or basis index) without a mass.
    """
    masses = []
    for label in labels:
        if label in overrides:
            masses.append(float(overrides[label]))
        elif label in STANDARD_ATOMIC_WEIGHTS_AMU:
            masses.append(STANDARD_ATOMIC_WEIGHTS_AMU[label])
        elif label.isdigit():
            raise InputError(
                f"no mass for basis atom {label}: the ATOMS file has no species; give its mass "
                f"in amu (--mass {label}=AMU)"
            )
        else:
            raise InputError(
                f"no mass for species {label!r}: give its mass in amu (--mass {label}=AMU)"
            )
    return np.array(masses, dtype=float)


def harmonic_mean_mass(masses_amu: ArrayLike) -> float:
    """The paper's single mass: the harmonic mean ``κ / Σ 1/m_κ`` (amu)."""
    m = np.asarray(masses_amu, dtype=float)
    return float(m.size / np.sum(1.0 / m))


# --------------------------------------------------------------------------------------------
# Crop to whole unit cells
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class CellCrop:
    """The ``L1 × L2`` block of complete unit cells used for the analysis.

    Attributes
    ----------
    atom_index
        ``(L1, L2, κ)`` int: the atom at cell ``(l1, l2)`` (relative to ``origin``), basis κ.
    origin
        ``(2,)`` int, the cell index of the block's first cell.
    """

    atom_index: np.ndarray
    origin: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        """``(L1, L2)``."""
        return int(self.atom_index.shape[0]), int(self.atom_index.shape[1])

    @property
    def n_cells(self) -> int:
        """``L = L1 · L2``."""
        return self.shape[0] * self.shape[1]


def _longest_run(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row of a 2D bool array: length of the longest run of True and its start column."""
    rows, cols = mask.shape
    m = mask.astype(int)
    # run length ending at each column: cumulative count reset at every False
    csum = np.cumsum(m, axis=1)
    last_reset = np.maximum.accumulate(np.where(m == 0, csum, 0), axis=1)
    run = csum - last_reset
    end = np.argmax(run, axis=1)
    length = run[np.arange(rows), end]
    return length, end - length + 1


def crop_to_cells(
    cell_index: ArrayLike, basis_index: ArrayLike, valid: ArrayLike | None = None
) -> CellCrop:
    """The largest rectangular block (in cell-index space) of complete unit cells.

    Parameters
    ----------
    cell_index
        ``(atoms, 2)`` int ``(l1, l2)``.
    basis_index
        ``(atoms,)`` int κ, 0 … κ−1.
    valid
        ``(atoms,)`` bool: atoms that may be used (e.g. finite positions); default all.

    Returns
    -------
    CellCrop
        Ties in area are broken towards the squarer block, then the lowest cell indices.

    Atoms with a negative basis index (not indexed) are left out like invalid ones.

    Raises
    ------
    InputError
        Duplicate (cell, basis) pairs, or fewer than two complete cells.
    """
    cells = np.asarray(cell_index)
    basis = np.asarray(basis_index)
    if cells.ndim != 2 or cells.shape[1] != 2 or basis.shape != (cells.shape[0],):
        raise InputError(
            f"cell_index must be (atoms, 2) and basis_index (atoms,), got {cells.shape} and "
            f"{basis.shape}"
        )
    if not (np.issubdtype(cells.dtype, np.integer) and np.issubdtype(basis.dtype, np.integer)):
        raise InputError("cell_index and basis_index must be integers")
    ok = np.ones(basis.size, bool) if valid is None else np.asarray(valid, bool).copy()
    ok &= basis >= 0  # -1: not indexed (lattice.index_lattice marks NaN atoms so)
    if not np.any(ok):
        raise InputError("no atom has a basis_index ≥ 0 and a finite position")
    n_basis = int(basis.max()) + 1
    origin = cells[ok].min(axis=0)
    rel = np.zeros_like(cells)
    rel[ok] = cells[ok] - origin
    g1, g2 = rel[ok].max(axis=0) + 1
    grid = np.full((g1, g2, n_basis), -1, dtype=np.int64)
    key = np.where(ok, (rel[:, 0] * g2 + rel[:, 1]) * n_basis + basis, -1)
    uniq, counts = np.unique(key[ok], return_counts=True)
    if np.any(counts > 1):
        k = int(uniq[counts > 1][0])
        dup = np.flatnonzero(key == k)
        raise InputError(
            f"atoms {dup.tolist()} share cell_index {cells[dup[0]].tolist()} and basis_index "
            f"{int(basis[dup[0]])}"
        )
    use = np.flatnonzero(ok)
    grid.reshape(-1)[key[use]] = use
    complete = np.all(grid >= 0, axis=2)  # (g1, g2)
    # largest all-True rectangle: for each height h, the columns complete over h rows
    cum = np.concatenate([np.zeros((1, g2), int), np.cumsum(complete, axis=0)])
    best = (0, 0, 0, 0, 0, 0)  # (area, squareness, -i0, -j0, h, w)
    for h in range(1, g1 + 1):  # loop over block heights (cell rows), not atoms
        full = (cum[h:] - cum[:-h]) == h  # (g1-h+1, g2)
        length, start = _longest_run(full)
        i0 = int(np.argmax(length))
        w = int(length[i0])
        cand = (h * w, min(h, w), -i0, -int(start[i0]), h, w)
        if w and cand[:2] > best[:2]:
            best = cand
    area, _, mi0, mj0, h, w = best
    if area < 2:
        raise InputError(
            f"fewer than two complete unit cells ({area} found among {g1} × {g2} cell indices "
            f"with {n_basis} basis atoms): a dispersion needs at least two"
        )
    i0, j0 = -mi0, -mj0
    return CellCrop(atom_index=grid[i0 : i0 + h, j0 : j0 + w], origin=origin + [i0, j0])


# --------------------------------------------------------------------------------------------
# Fourier transform, covariance, frequencies
# --------------------------------------------------------------------------------------------


def fourier_displacements(u_cells: ArrayLike) -> np.ndarray:
    """Eq. 5 on the commensurate grid: ``ũ(q) = L^(−1/2) Σ_l u_l exp(−i q·r_l)``.

    Parameters
    ----------
    u_cells
        ``(..., L1, L2, κ, 2)`` displacements (Å) on the cell grid.

    Returns
    -------
    ndarray, complex, shape ``(..., L1·L2, 2κ)``
        q in the order of :func:`~caviar_napari.analysis.phonons.commensurate_q_frac`; index
        ``2κ + α`` (α = 0 y, 1 x); Å.
    """
    u = np.asarray(u_cells, dtype=float)
    L1, L2, kappa = u.shape[-4:-1]
    ut = np.fft.fft2(u, axes=(-4, -3), norm="ortho")  # exp(−2πi(m1 l1/L1 + m2 l2/L2))/sqrt(L)
    return ut.reshape(*u.shape[:-4], L1 * L2, 2 * kappa)


def _mass_vector(masses_amu: np.ndarray, single_mass: bool) -> np.ndarray:
    m = np.full(masses_amu.size, harmonic_mean_mass(masses_amu)) if single_mass else masses_amu
    return np.repeat(m, 2)  # per dof 2κ + α


def _gamma_complement(m_dof: np.ndarray) -> np.ndarray:
    """``(2κ, 2κ−2)`` orthonormal basis orthogonal to the mass-weighted translations."""
    d = m_dof.size
    T = np.zeros((d, 2))
    T[0::2, 0] = np.sqrt(m_dof[0::2])
    T[1::2, 1] = np.sqrt(m_dof[1::2])
    q, _ = np.linalg.qr(np.concatenate([T, np.eye(d)], axis=1))
    return q[:, 2:d]


def covariance_eigenvalues(
    C: ArrayLike, masses_amu: ArrayLike, single_mass: bool = False, gamma_index: int | None = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues μ of ``W = M^½ C M^½`` (Å² amu), the translations removed at Γ.

    Parameters
    ----------
    C
        ``(..., nq, 2κ, 2κ)`` covariance ``⟨ũ ũ^H⟩`` in Å².
    masses_amu
        ``(κ,)`` basis masses.
    single_mass
        Use the harmonic-mean mass for every atom.
    gamma_index
        Position of Γ along the q axis (None: no Γ).

    Returns
    -------
    mu : ndarray, shape ``(..., nq, 2κ)``
        Ascending; at Γ the last two entries are ``+inf`` (the projected-out translations,
        which become λ = k_B T / μ = 0 exactly).
    singular : ndarray of bool, shape ``(..., nq)``
        True where ``μ_min / μ_max < SINGULAR_RATIO`` (rank-deficient covariance).
    """
    C = np.asarray(C)
    m_dof = _mass_vector(np.asarray(masses_amu, dtype=float), single_mass)
    s = np.sqrt(m_dof)
    W = C * s[:, None] * s[None, :]
    mu = np.linalg.eigvalsh(W)
    if gamma_index is not None:
        Q = _gamma_complement(m_dof)
        mu_g = np.linalg.eigvalsh(np.swapaxes(Q, 0, 1) @ W[..., gamma_index, :, :] @ Q)
        inf = np.full((*mu_g.shape[:-1], 2), np.inf)
        mu[..., gamma_index, :] = np.concatenate([mu_g, inf], axis=-1)
        mu = np.sort(mu, axis=-1)
    finite = np.where(np.isfinite(mu), mu, -np.inf)
    top = np.max(finite, axis=-1)
    low = np.min(np.where(np.isfinite(mu), mu, np.inf), axis=-1)
    has_finite = np.any(np.isfinite(mu), axis=-1)  # κ = 1 at Γ: only the translations
    singular = has_finite & (~(top > 0) | (low <= SINGULAR_RATIO * top))
    return mu, singular


def frequencies_from_eigenvalues(mu: ArrayLike, temperature_K: float) -> np.ndarray:
    """ν (THz) from the eigenvalues μ of ``M^½ C M^½``: ``λ = k_B T / μ``, ν ascending."""
    mu = np.asarray(mu, dtype=float)
    with np.errstate(divide="ignore"):
        lam = KB_EV_PER_K * temperature_K / mu
    return np.sort(eigenvalues_to_THz(lam), axis=-1)


def frequencies_from_covariance(
    C: ArrayLike,
    masses_amu: ArrayLike,
    temperature_K: float,
    single_mass: bool = False,
    gamma_index: int | None = 0,
) -> np.ndarray:
    """Phonon frequencies (THz) from ``⟨ũ ũ^H⟩(q)`` via ``D = k_B T M^(−½) C^(−1) M^(−½)``.

    Parameters
    ----------
    C
        ``(..., nq, 2κ, 2κ)`` covariance in Å² (index ``2κ + α``).
    masses_amu
        ``(κ,)`` basis masses, amu.
    temperature_K
        Temperature, K.
    single_mass
        Use the harmonic-mean mass for every atom (the paper's option).
    gamma_index
        Index of Γ on the q axis, where the rigid translations are projected out.

    Returns
    -------
    ndarray, shape ``(..., nq, 2κ)``
        Ascending frequencies, THz; singular q give ``inf``/NaN (check with
        :func:`covariance_eigenvalues`).
    """
    mu, _ = covariance_eigenvalues(C, masses_amu, single_mass, gamma_index)
    return frequencies_from_eigenvalues(mu, temperature_K)


def dynamical_matrix_from_covariance(
    C: ArrayLike,
    masses_amu: ArrayLike,
    temperature_K: float,
    single_mass: bool = False,
    gamma_index: int | None = 0,
) -> np.ndarray:
    """``D(q) = k_B T M^(−½) C(q)^(−1) M^(−½)`` in eV/(Å² amu), ``(..., nq, 2κ, 2κ)``.

    At Γ the inverse is taken on the complement of the mass-weighted rigid translations (the
    translations get eigenvalue 0).
    """
    C = np.asarray(C)
    m_dof = _mass_vector(np.asarray(masses_amu, dtype=float), single_mass)
    s = np.sqrt(m_dof)
    W = C * s[:, None] * s[None, :]
    kT = KB_EV_PER_K * temperature_K
    Winv = np.linalg.inv(W)
    if gamma_index is not None:
        Q = _gamma_complement(m_dof)
        Wg = np.swapaxes(Q, 0, 1) @ W[..., gamma_index, :, :] @ Q
        Winv[..., gamma_index, :, :] = Q @ np.linalg.inv(Wg) @ np.swapaxes(Q, 0, 1)
    return kT * Winv


# --------------------------------------------------------------------------------------------
# Path
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Whole analysis
# --------------------------------------------------------------------------------------------


def _positions_4d(positions_A: ArrayLike) -> np.ndarray:
    p = np.asarray(positions_A, dtype=float)
    if p.ndim == 3:
        p = p[:, None]
    if p.ndim != 4 or p.shape[-1] != 2:
        raise InputError(
            "positions_A must be (state, slice, atom, 2) or (state, atom, 2) as (y, x), got "
            f"shape {p.shape}"
        )
    return p


def compute_dispersion(
    positions_A: ArrayLike,
    cell_index: ArrayLike,
    basis_index: ArrayLike,
    lattice_vectors_A: ArrayLike,
    config: DispersionConfig,
    species: ArrayLike | None = None,
    source: str = "",
) -> DispersionData:
    """Phonon dispersion of per-state atom positions (see the module docstring).

    Parameters
    ----------
    positions_A
        ``(state, slice, atom, 2)`` or ``(state, atom, 2)`` positions ``(y, x)`` in Å (NaN where
        refinement failed).
    cell_index
        ``(atoms, 2)`` int unit-cell index ``(l1, l2)``.
    basis_index
        ``(atoms,)`` int basis index κ.
    lattice_vectors_A
        ``(2, 2)`` rows a1, a2 as ``(y, x)``, Å.
    config
        :class:`DispersionConfig`.
    species
        ``(atoms,)`` species labels, or None.
    source
        Name of the input (recorded in the result).

    Returns
    -------
    DispersionData

    Raises
    ------
    InputError
        Too few states, fewer than two complete unit cells, a missing mass (named), a static
        object (G = 0), a singular covariance, or malformed input.
    """
    positions = _positions_4d(positions_A)
    n_states, n_slices, n_atoms, _ = positions.shape
    a = np.asarray(lattice_vectors_A, dtype=float)
    if a.shape != (2, 2) or not np.all(np.isfinite(a)) or abs(np.linalg.det(a)) < 1e-9:
        raise InputError(f"lattice_vectors_A must be two independent (y, x) rows, got {a!r}")
    cells = np.asarray(cell_index)
    basis = np.asarray(basis_index)
    if cells.shape != (n_atoms, 2) or basis.shape != (n_atoms,):
        raise InputError(
            f"cell_index {cells.shape} / basis_index {basis.shape} do not match {n_atoms} atoms"
        )
    if isinstance(config.slices, str) or config.slices is None:
        slices = parse_slice_spec(config.slices, n_slices)
    else:
        slices = np.asarray(config.slices, dtype=int).ravel()
        if slices.size == 0 or slices.min() < -n_slices or slices.max() >= n_slices:
            raise InputError(f"slices {slices.tolist()} are not within the {n_slices} slices")
        slices = slices % n_slices
    n_basis = int(basis.max()) + 1 if basis.size else 0
    labels = basis_species(basis, None if species is None else np.asarray(species), n_basis)
    masses = resolve_masses(labels, config.masses_amu)
    d = 2 * n_basis
    if n_states < d + 1:
        raise InputError(
            f"too few object states: {n_states}, need at least 2κ + 1 = {d + 1} for the "
            f"{d} × {d} covariance ⟨ũ ũ^H⟩ of {n_basis} basis atoms to be invertible"
        )
    used = positions[:, slices]  # (N, s, atoms, 2)
    valid = np.all(np.isfinite(used), axis=(0, 1, 3))
    crop = crop_to_cells(cells, basis, valid)
    L1, L2 = crop.shape
    kept = crop.atom_index.ravel()
    excluded = np.setdiff1d(np.arange(n_atoms), kept)

    R = used[:, :, crop.atom_index]  # (N, s, L1, L2, κ, 2)
    u = R - R.mean(axis=0, keepdims=True)
    scale = float(np.max(np.abs(R)))
    if not np.any(np.abs(u) > STATIC_RELATIVE * max(scale, 1.0)):
        raise InputError(
            f"static object: the positions of the {kept.size} atoms used do not vary between "
            f"the {n_states} states (G = 0), so there are no vibrations to analyse"
        )
    ut = fourier_displacements(u)  # (N, s, nq, d)
    per_state = np.einsum("nsqi,nsqj->nqij", ut, ut.conj()) / len(slices)  # (N, nq, d, d)
    C = per_state.mean(axis=0)
    q_frac = commensurate_q_frac(L1, L2)
    mu, singular = covariance_eigenvalues(C, masses, config.single_mass, 0)
    if np.any(singular):
        bad = q_frac[np.flatnonzero(singular)[0]]
        raise InputError(
            f"the displacement covariance ⟨ũ ũ^H⟩ is singular at q = ({bad[0]:.3f}, "
            f"{bad[1]:.3f}) b: the {n_states} states do not sample every vibration (too few "
            "independent states, or atoms that only move together)"
        )
    freqs = frequencies_from_eigenvalues(mu, config.temperature_K)

    path = config.path if config.path is not None else default_path(a)
    pts = path_points(path, q_frac, a)
    averages = branch_averages(freqs, pts.q_index)

    err = np.full_like(freqs, np.nan)
    avg_err = np.full_like(averages, np.nan)
    n_boot = 0
    if config.bootstrap > 0:
        boot = _bootstrap(ut, per_state, masses, config, pts.q_index)
        if boot is not None:
            err, avg_err, n_boot = boot

    return DispersionData(
        q_frac=q_frac,
        frequencies_THz=freqs,
        frequencies_err_THz=err,
        path_labels=path.labels,
        path_vertices_frac=path.vertices_frac,
        path_vertex_distance_invA=pts.vertex_distance_invA,
        path_q_index=pts.q_index,
        path_q_frac=pts.q_frac,
        path_distance_invA=pts.distance_invA,
        path_frequencies_THz=freqs[pts.q_index],
        path_frequencies_err_THz=err[pts.q_index],
        branch_average_THz=averages,
        branch_average_err_THz=avg_err,
        temperature_K=float(config.temperature_K),
        masses_amu=dict(zip(labels, masses.tolist())),
        basis_species=labels,
        basis_masses_amu=masses,
        single_mass=bool(config.single_mass),
        cells=(L1, L2),
        cell_origin=tuple(int(c) for c in crop.origin),
        lattice_vectors_A=a,
        n_states=n_states,
        slices=slices,
        n_bootstrap=n_boot,
        excluded_atoms=excluded,
        source=source,
    )


def _bootstrap(
    ut: np.ndarray,
    per_state: np.ndarray,
    masses: np.ndarray,
    config: DispersionConfig,
    path_q_index: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, int] | None:
    """Bootstrap over states; returns (frequency std, average std, valid replicas)."""
    n_states, n_slices = ut.shape[:2]
    n_boot = int(config.bootstrap)
    rng = np.random.default_rng(config.seed)
    draws = rng.integers(0, n_states, size=(n_boot, n_states))
    # replica covariance: Σ_k w_k P_k − mean_s ū_s ū_s^H, w = multiplicity / N, ū_s = Σ_k w_k ũ_ks
    w = np.zeros((n_boot, n_states))
    np.add.at(w, (np.arange(n_boot)[:, None], draws), 1.0 / n_states)
    chunk = max(1, BOOTSTRAP_CHUNK_BYTES // max(1, ut[0].nbytes))  # bounds ū's memory
    mus, oks = [], []
    for start in range(0, n_boot, chunk):  # chunks of replicas, not single replicas
        wc = w[start : start + chunk]
        mean_u = np.einsum("bn,nsqi->bsqi", wc, ut)
        C = (
            np.einsum("bn,nqij->bqij", wc, per_state)
            - np.einsum("bsqi,bsqj->bqij", mean_u, mean_u.conj()) / n_slices
        )
        mu, singular = covariance_eigenvalues(C, masses, config.single_mass, 0)
        ok = ~np.any(singular, axis=-1)
        mus.append(mu[ok])
        oks.append(ok)
    ok = np.concatenate(oks)
    if np.sum(ok) < 2:
        return None
    freqs = frequencies_from_eigenvalues(np.concatenate(mus), config.temperature_K)
    avgs = branch_averages(freqs, path_q_index)
    return freqs.std(axis=0, ddof=1), avgs.std(axis=0, ddof=1), int(np.sum(ok))


def dispersion_from_atoms(atoms: AtomsData, config: DispersionConfig) -> DispersionData:
    """:func:`compute_dispersion` of an ATOMS file's contents (``io.atoms_file.AtomsData``).

    Cell and basis indices present in the data are used as given (conventions §6); when absent they
    are computed from the mean positions
    (:func:`caviar_napari.analysis.lattice.ensure_lattice_index`).

    Raises
    ------
    InputError
        If the atoms cannot be indexed or the data have no lattice vectors.
    """
    from caviar_napari.analysis.lattice import ensure_lattice_index

    source = str(getattr(atoms, "source", ""))
    atoms = ensure_lattice_index(atoms)  # indices as given; computed only where absent
    for name in ("cell_index", "basis_index", "lattice_vectors_A"):
        if getattr(atoms, name, None) is None:
            raise InputError(
                f"ATOMS data {source!r} have no {name!r}: the dispersion needs the lattice "
                "indexing (give lattice vectors when finding the atoms)"
            )
    return compute_dispersion(
        atoms.positions_A,
        np.asarray(atoms.cell_index),
        np.asarray(atoms.basis_index),
        np.asarray(atoms.lattice_vectors_A, dtype=float),
        config,
        species=None if atoms.species is None else np.asarray(atoms.species, dtype=str),
        source=source,
    )


def format_branch_table(data: DispersionData) -> str:
    """A text table of the branch averages along the path (± bootstrap error)."""
    lines = [
        f"Branch averages along {'–'.join(data.path_labels)} "
        f"({np.unique(data.path_q_index).size} commensurate q of a "
        f"{data.cells[0]} × {data.cells[1]} cell block, {data.n_states} states, "
        f"T = {data.temperature_K:g} K, "
        + ("single harmonic-mean mass" if data.single_mass else "per-atom masses")
        + "):",
        f"{'branch':>6}  {'ν (THz)':>9}  {'± (THz)':>8}",
    ]
    for b, (v, e) in enumerate(zip(data.branch_average_THz, data.branch_average_err_THz)):
        err = f"{e:8.2f}" if np.isfinite(e) else f"{'—':>8}"
        lines.append(f"{b + 1:>6}  {v:9.2f}  {err}")
    if data.n_bootstrap:
        lines.append(f"(± : standard deviation over {data.n_bootstrap} bootstrap replicas)")
    return "\n".join(lines)
