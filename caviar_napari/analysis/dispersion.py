"""Phonon dispersion from correlated displacements (paper eqs. 5, 6; issue 14; conventions §5).

Pipeline (:func:`compute_dispersion`):

1. **Crop** to whole unit cells (:func:`~.cell_block.cell_block`): the largest ``L1 × L2`` block
   of complete cells, with finite positions in every used state and slice, gives the
   commensurate grid and eq. 6's data; the force constants' open description uses every atom
   with finite positions instead.  The atoms an estimator did not use are reported in
   ``excluded_atoms``.  The basis positions (mean of ``R − l·A``) give the crystal's
   space group (:func:`~.crystal_symmetry.space_group`), unless ``symmetry=False``.
2. **Displacements** ``u = R − mean_n R`` per slice (eq. 1), and their Fourier transform over the
   cells (eq. 5) ``ũ_κα(q) = L^(−1/2) Σ_l u_lκα exp(−i q·r_l)`` with the ideal cell origins
   ``r_l = l1 a1 + l2 a2`` (integer cell indices, never the noisy positions) on the commensurate
   grid ``q = (m1/L1) b1 + (m2/L2) b2`` (``a_i · b_j = δ_ij``).  The block's first cell is taken
   as ``l = 0``: another origin multiplies ũ(q) by one phase for all κ, which cancels in
   ``⟨ũ ũ^H⟩``.
3. One of two estimators (``DispersionConfig.estimator``):

   ``green`` — eq. 6.  ``C(q) = ⟨ũ ũ^H⟩``, the mean over states and used slices, averaged over
   the star of q by the space group (symmetry pooling, :func:`~.crystal_symmetry.star_average`;
   a covariance with the crystal's symmetry is unchanged, a sample covariance gets the spread of
   more samples).  ``D(q) = k_B T · M^(−½) C(q)^(−1) M^(−½)`` with one mass per basis atom
   (default) or the paper's single harmonic-mean mass ``m̄ = κ / Σ_κ 1/m_κ``.  Its eigenvalues
   are ``λ = k_B T / μ`` with μ the eigenvalues of ``W = M^½ C M^½``; at Γ the two mass-weighted
   rigid translations (``M^½ 1_α``) are projected out of W first (acoustic ν = 0 exactly).
   With few states this is biased (:func:`~.dispersion_checks.green_bias`).

   ``force-constants`` — Born–von Kármán force constants of the first ``shells`` neighbour shells,
   symmetric tensors tied together by the space group, acoustic sum rule built in, fitted by
   maximum likelihood (:mod:`.force_constants`; the block is one period of the crystal with
   ``boundary="periodic"``, a window of any atoms cut out of a larger one with ``"open"``, and
   ``"auto"`` fits both on the block and keeps the likelier when no atom lies outside it, else
   ``"open"``; :func:`~.force_constant_dispersion.fit_statistics`).  Frequencies at
   any q follow from the fitted constants: the commensurate grid, the path's commensurate points
   and a dense path.  A likelihood-ratio test says whether one more shell is needed.
4. **Frequencies** ``ν = sign(λ) sqrt(|λ|)/2π`` in THz, sorted ascending: branches are labelled
   by sorted band index.  A negative eigenvalue is reported as a negative frequency, never
   ``abs``.
5. **Path**: Γ–M–K–Γ for hexagonal lattices, Γ–X–M–Γ (square) or Γ–X–S–Y–Γ (rectangular), or a
   user path (:mod:`.brillouin`).  Per-branch averages are the mean over the *distinct*
   commensurate q on the path (Γ at both ends counts once), for both estimators; the
   force-constant estimator adds the arc-length mean along the dense path.
6. **Uncertainty**: bootstrap over object states (states drawn with replacement, displacements
   re-centred on each replica's mean, the whole estimate repeated); errors are standard
   deviations over the replicas.  Green replicas whose covariance is singular at some q are
   left out and counted.  The force-constant estimator also gives errors from the Fisher
   information.
7. **Checks** (:mod:`.dispersion_checks`): a warning when the states are too few for green to
   be unbiased, and when frequencies are outside any physical range for the masses; both are
   recorded in the result's ``warnings``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

from caviar_napari.analysis.brillouin import (
    DENSE_PATH_POINTS,
    BrillouinPath,
    PathPoints,
    branch_averages,
    cell_angle_deg,
    default_path,
    is_hexagonal,
    parse_path,
    path_points,
)
from caviar_napari.analysis.cell_block import (
    STATIC_RELATIVE,
    CellBlock,
    CellCrop,
    basis_species,
    cell_block,
    crop_to_cells,
    harmonic_mean_mass,
    resolve_masses,
)
from caviar_napari.analysis.crystal_symmetry import (
    DEFAULT_SYMMETRY_TOLERANCE_A,
    SymmetryOperation,
    grid_operations,
    space_group,
    star_average,
)
from caviar_napari.analysis.dispersion_checks import frequency_warnings, green_states_warning
from caviar_napari.analysis.force_constant_dispersion import force_constant_dispersion
from caviar_napari.analysis.force_constants import BOUNDARIES, DEFAULT_ALPHA, ShellTest
from caviar_napari.analysis.phonons import (
    KB_EV_PER_K,
    commensurate_q_frac,
    eigenvalues_to_THz,
)
from caviar_napari.data.dispersion import ESTIMATORS, DispersionData
from caviar_napari.errors import InputError

if TYPE_CHECKING:
    from caviar_napari.io.atoms_file import AtomsData

__all__ = [
    "ESTIMATORS",
    "BrillouinPath",
    "CellCrop",
    "DispersionConfig",
    "PathPoints",
    "basis_species",
    "branch_averages",
    "cell_angle_deg",
    "compute_dispersion",
    "covariance_eigenvalues",
    "crop_to_cells",
    "default_path",
    "dispersion_from_atoms",
    "dynamical_matrix_from_covariance",
    "format_branch_table",
    "format_dispersion_report",
    "fourier_displacements",
    "frequencies_from_covariance",
    "frequencies_from_eigenvalues",
    "harmonic_mean_mass",
    "is_hexagonal",
    "parse_masses",
    "parse_path",
    "path_points",
    "resolve_masses",
]

#: A covariance whose eigenvalue ratio μ_min/μ_max is below this at some q is singular.
SINGULAR_RATIO = 1e-10

#: Memory bound (bytes) of the replica-mean displacements held at once by the bootstrap.
BOOTSTRAP_CHUNK_BYTES = 64 * 2**20

__all__ += ["STATIC_RELATIVE", "SINGULAR_RATIO"]


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


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
        Number of bootstrap replicas over object states (0: no bootstrap errors).
    path
        The reciprocal-space path; None: :func:`default_path` of the lattice.
    seed
        Seed of the bootstrap draws (and of the Fisher draws of the force-constant errors).
    estimator
        ``"green"`` (eq. 6 with symmetry pooling) or ``"force-constants"`` (issue 14).
    shells
        Force constants: number of neighbour shells fitted (≥ 1).
    boundary
        Force constants: ``"open"`` (the block is a window of a larger crystal, as in a
        reconstruction's field of view), ``"periodic"`` (the block is one whole period of a
        periodic crystal, as a simulation's supercell) or ``"auto"`` (default: both fitted, the
        one with the higher likelihood kept; the DISP file records which).
    crystal_cells
        Force constants, ``open`` (and ``auto``): the ``(L1, L2)`` cells of the periodic
        crystal the window was cut from; None: an infinite crystal.
    symmetry
        Use the crystal's space group: star pooling for green, tied constants for force
        constants.  False: neither.
    symmetry_tolerance_A
        Tolerance for recognising symmetry-equivalent atoms and bond shells, Å.
    alpha
        Force constants: significance level of the test for one more shell.
    dense_points
        Force constants: points of the dense path.
    """

    temperature_K: float
    masses_amu: Mapping[str, float] = field(default_factory=dict)
    single_mass: bool = False
    slices: str | Sequence[int] | None = None
    bootstrap: int = 200
    path: BrillouinPath | None = None
    seed: int = 0
    estimator: str = "green"
    shells: int = 2
    boundary: str = "auto"
    crystal_cells: tuple[int, int] | None = None
    symmetry: bool = True
    symmetry_tolerance_A: float = DEFAULT_SYMMETRY_TOLERANCE_A
    alpha: float = DEFAULT_ALPHA
    dense_points: int = DENSE_PATH_POINTS

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
        if self.estimator not in ESTIMATORS:
            raise InputError(f"estimator must be one of {ESTIMATORS}, got {self.estimator!r}")
        if isinstance(self.shells, bool) or int(self.shells) != self.shells or self.shells < 1:
            raise InputError(f"shells must be an integer ≥ 1, got {self.shells!r}")
        if self.boundary not in BOUNDARIES:
            raise InputError(f"boundary must be one of {BOUNDARIES}, got {self.boundary!r}")
        if self.crystal_cells is not None:
            cc = tuple(self.crystal_cells)
            if len(cc) != 2 or any(int(c) != c or c < 1 for c in cc):
                raise InputError(f"crystal_cells must be two integers ≥ 1, got {cc!r}")
            object.__setattr__(self, "crystal_cells", (int(cc[0]), int(cc[1])))
        tol = float(self.symmetry_tolerance_A)
        if not (math.isfinite(tol) and tol > 0):
            raise InputError(f"symmetry_tolerance_A must be > 0 Å, got {tol!r}")
        if not (0 < float(self.alpha) < 1):
            raise InputError(f"alpha must be between 0 and 1, got {self.alpha!r}")
        if int(self.dense_points) != self.dense_points or self.dense_points < 2:
            raise InputError(f"dense_points must be an integer ≥ 2, got {self.dense_points!r}")


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
        True where ``μ_min / μ_max < SINGULAR_RATIO`` (rank-deficient covariance), or where
        ``μ_max`` is below ``SINGULAR_RATIO`` of the largest ``μ_max`` over q (a covariance
        that is round-off only).
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
    overall = np.max(np.where(has_finite, top, 0.0), axis=-1, keepdims=True)  # over q
    singular = has_finite & (
        ~(top > 0) | (low <= SINGULAR_RATIO * top) | (top <= SINGULAR_RATIO * overall)
    )
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
# Whole analysis
# --------------------------------------------------------------------------------------------


def identity_operations(n_basis: int) -> tuple[SymmetryOperation, ...]:
    """The trivial group (no symmetry used)."""
    return (
        SymmetryOperation(
            rotation=np.eye(2),
            cell_matrix=np.eye(2, dtype=int),
            translation_A=np.zeros(2),
            permutation=np.arange(n_basis),
            cell_shift=np.zeros((n_basis, 2), dtype=int),
        ),
    )


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
        :class:`DispersionConfig` (the estimator and its options).
    species
        ``(atoms,)`` species labels, or None.
    source
        Name of the input (recorded in the result).

    Returns
    -------
    DispersionData
        With ``warnings`` for a biased green estimate or unphysical frequencies (print them).

    Raises
    ------
    InputError
        Too few states, fewer than two complete unit cells, a missing mass (named), a static
        object (G = 0), a singular covariance (green), a block too small for the shells (force
        constants), or malformed input.
    """
    block = cell_block(
        positions_A,
        cell_index,
        basis_index,
        lattice_vectors_A,
        masses_amu=config.masses_amu,
        slices=config.slices,
        species=species,
    )
    a = block.lattice_vectors_A
    masses = block.masses_amu
    freq_masses = np.full_like(masses, harmonic_mean_mass(masses)) if config.single_mass else masses
    if config.symmetry:
        ops = space_group(a, block.basis_A, block.labels, config.symmetry_tolerance_A)
    else:
        ops = identity_operations(block.n_basis)
    L1, L2 = block.cells
    q_frac = commensurate_q_frac(L1, L2)
    path = config.path if config.path is not None else default_path(a)
    pts = path_points(path, q_frac, a)
    warnings: list[str] = []
    if config.estimator == "green":
        items = _green(block, config, ops, q_frac, pts)
        pooling = _mean_star_size(ops, q_frac, block.cells) if config.symmetry else 1.0
        message = green_states_warning(block.n_states, block.n_basis, len(block.slices), pooling)
        if message:
            warnings.append(message)
    else:
        items, fit = force_constant_dispersion(
            block,
            temperature_K=config.temperature_K,
            masses_amu=freq_masses,
            operations=ops,
            q_frac=q_frac,
            path=path,
            points=pts,
            shells=config.shells,
            boundary=config.boundary,
            crystal_cells=config.crystal_cells,
            bootstrap=config.bootstrap,
            seed=config.seed,
            dense_points=config.dense_points,
            tolerance_A=config.symmetry_tolerance_A,
            alpha=config.alpha,
        )
        if fit.shell_test is not None and fit.shell_test.more_shells_needed:
            warnings.append(fit.shell_test.summary())
    n_ops = items.pop("symmetry_operations", len(ops))
    items.setdefault("excluded_atoms", block.excluded_atoms)
    freqs = items["frequencies_THz"]
    warnings += frequency_warnings(
        freqs, freq_masses, items["frequencies_err_THz"], "frequencies on the grid"
    )
    if items.get("dense_path") is not None:
        dense = items["dense_path"]
        warnings += frequency_warnings(
            dense.frequencies_THz, freq_masses, dense.frequencies_err_THz, "frequencies on the path"
        )
    return DispersionData(
        q_frac=q_frac,
        path_labels=path.labels,
        path_vertices_frac=path.vertices_frac,
        path_vertex_distance_invA=pts.vertex_distance_invA,
        path_q_index=pts.q_index,
        path_q_frac=pts.q_frac,
        path_distance_invA=pts.distance_invA,
        path_frequencies_THz=freqs[pts.q_index],
        path_frequencies_err_THz=items["frequencies_err_THz"][pts.q_index],
        temperature_K=float(config.temperature_K),
        masses_amu=dict(zip(block.labels, masses.tolist())),
        basis_species=block.labels,
        basis_masses_amu=masses,
        single_mass=bool(config.single_mass),
        cells=(L1, L2),
        cell_origin=tuple(int(c) for c in block.crop.origin),
        lattice_vectors_A=a,
        n_states=block.n_states,
        slices=block.slices,
        source=source,
        estimator=config.estimator,
        symmetry_operations=n_ops,
        warnings=tuple(warnings),
        **items,
    )


def _mean_star_size(
    ops: tuple[SymmetryOperation, ...], q_frac: np.ndarray, cells: tuple[int, int]
) -> float:
    """Mean number of independent covariances pooled per q (q and −q count once)."""
    maps = [idx for _, idx in grid_operations(ops, q_frac, *cells)]
    L1, L2 = cells
    m = np.rint(q_frac * [L1, L2]).astype(int)
    minus = np.mod(-m[:, 0], L1) * L2 + np.mod(-m[:, 1], L2)
    sizes = []
    for q in range(q_frac.shape[0]):  # the grid's q points
        star = {int(idx[q]) for idx in maps}
        pairs = {min(k, int(minus[k])) for k in star}
        sizes.append(len(pairs))
    return float(np.mean(sizes))


def _green(
    block: CellBlock,
    config: DispersionConfig,
    ops: tuple[SymmetryOperation, ...],
    q_frac: np.ndarray,
    pts: PathPoints,
) -> dict:
    """Eq. 6 with symmetry pooling: the estimator-specific DISP items."""
    n_states, d = block.n_states, 2 * block.n_basis
    if n_states < d + 1:
        raise InputError(
            f"too few object states: {n_states}, need at least 2κ + 1 = {d + 1} for the "
            f"{d} × {d} covariance ⟨ũ ũ^H⟩ of {block.n_basis} basis atoms to be invertible"
        )
    R = block.positions_A
    n_slices = R.shape[1]
    ut = fourier_displacements(R - R.mean(axis=0, keepdims=True))  # (N, s, nq, d)
    per_state = np.einsum("nsqi,nsqj->nqij", ut, ut.conj()) / n_slices  # (N, nq, d, d)
    C = per_state.mean(axis=0)
    pool = _pooling(ops, q_frac, block.cells) if config.symmetry else None
    if pool is not None:
        C = pool(C)
    masses = block.masses_amu
    mu, singular = covariance_eigenvalues(C, masses, config.single_mass, 0)
    if np.any(singular):
        bad = q_frac[np.flatnonzero(singular)[0]]
        raise InputError(
            f"the displacement covariance ⟨ũ ũ^H⟩ is singular at q = ({bad[0]:.3f}, "
            f"{bad[1]:.3f}) b: the {n_states} states do not sample every vibration (too few "
            "independent states, or atoms that only move together)"
        )
    freqs = frequencies_from_eigenvalues(mu, config.temperature_K)
    averages = branch_averages(freqs, pts.q_index)
    err = np.full_like(freqs, np.nan)
    avg_err = np.full_like(averages, np.nan)
    n_boot = 0
    if config.bootstrap > 0:
        boot = _bootstrap(ut, per_state, masses, config, pts.q_index, pool)
        if boot is not None:
            err, avg_err, n_boot = boot
    n_ops = len(grid_operations(ops, q_frac, *block.cells)) if pool is not None else 1
    return {
        "frequencies_THz": freqs,
        "frequencies_err_THz": err,
        "branch_average_THz": averages,
        "branch_average_err_THz": avg_err,
        "n_bootstrap": n_boot,
        "error_method": f"bootstrap over states ({n_boot} replicas)" if n_boot else "none",
        "symmetry_operations": n_ops,
    }


def _pooling(ops: tuple[SymmetryOperation, ...], q_frac: np.ndarray, cells: tuple[int, int]):
    """The star average as a function of ``C`` (None when only the identity maps the grid)."""
    if len(grid_operations(ops, q_frac, *cells)) < 2:
        return None
    return lambda C: star_average(C, q_frac, cells, ops)[0]


def _bootstrap(
    ut: np.ndarray,
    per_state: np.ndarray,
    masses: np.ndarray,
    config: DispersionConfig,
    path_q_index: np.ndarray,
    pool=None,
) -> tuple[np.ndarray, np.ndarray, int] | None:
    """Bootstrap over states; returns (frequency std, average std, valid replicas).

    ``pool`` (the star average, or None) is applied to every replica's covariance.
    """
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
        if pool is not None:
            C = pool(C)
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
    """A text table of the branch averages along the path (± their error)."""
    lines = [
        f"Branch averages ({data.estimator}) along {'–'.join(data.path_labels)} "
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
    if data.n_bootstrap or data.estimator != "green":
        lines.append(f"(± : {data.error_method})")
    return "\n".join(lines)


def format_dispersion_report(data: DispersionData) -> str:
    """Branch table, and for force constants the fitted constants, the dense-path averages and
    the goodness of fit; then the warnings (one per line, prefixed ``warning:``)."""
    parts = [format_branch_table(data)]
    if data.dense_path is not None:
        dense = data.dense_path
        lines = [
            f"Branch averages along the dense path ({dense.q_frac.shape[0]} points, arc-length "
            "mean of the force-constant model):",
            f"{'branch':>6}  {'ν (THz)':>9}  {'± (THz)':>8}",
        ]
        for b, (v, e) in enumerate(zip(dense.branch_average_THz, dense.branch_average_err_THz)):
            err = f"{e:8.2f}" if np.isfinite(e) else f"{'—':>8}"
            lines.append(f"{b + 1:>6}  {v:9.2f}  {err}")
        parts.append("\n".join(lines))
    fc = data.force_constants
    if fc is not None:
        width = max(len(n) for n in fc.names)
        lines = [
            f"Force constants ({data.shells} shells, {data.boundary} boundary, "
            f"{data.symmetry_operations} symmetry operations"
            + (
                f", fitted to {data.fit_atoms} atoms, {data.excluded_atoms.size} left out"
                if data.fit_atoms
                else ""
            )
            + "), eV/Å²:",
            f"{'constant':<{width}}  {'value':>9}  {'± Fisher':>9}  {'± bootstrap':>11}",
        ]
        for n, v, e, b in zip(
            fc.names, fc.value_eV_per_A2, fc.err_fisher_eV_per_A2, fc.err_bootstrap_eV_per_A2
        ):
            boot = f"{b:11.3f}" if np.isfinite(b) else f"{'—':>11}"
            lines.append(f"{n:<{width}}  {v:9.3f}  {e:9.3f}  {boot}")
        if np.isfinite(fc.boundary_comparison):
            lines.append(
                f"boundary: {data.boundary}, chosen by likelihood (−2 log L periodic − open = "
                f"{fc.boundary_comparison:+.1f})"
            )
        test = ShellTest.of_fit(data.shells, fc)
        lines.append(test.summary())
        parts.append("\n".join(lines))
    parts += [f"warning: {w}" for w in data.warnings]
    return "\n".join(parts)
