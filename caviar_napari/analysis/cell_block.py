"""The block of whole unit cells a dispersion is computed from, and its masses (conventions §5).

Atoms are placed on an ``(l1, l2, κ)`` grid by their ``cell_index`` and ``basis_index``; a cell
is *complete* when every basis atom is present and has a finite position in every used state
and slice; the largest ``L1 × L2`` block of complete cells is kept (:func:`crop_to_cells`).
:func:`cell_block` gathers the positions of that block, checks that they vary between states,
and finds the basis positions (mean over states, slices and cells of ``R − l·A``), which the
symmetry analysis and the force-constant model need.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from caviar_napari.analysis.correlations import parse_slice_spec
from caviar_napari.analysis.phonons import STANDARD_ATOMIC_WEIGHTS_AMU
from caviar_napari.errors import InputError

__all__ = [
    "STATIC_RELATIVE",
    "CellBlock",
    "CellCrop",
    "basis_species",
    "cell_block",
    "crop_to_cells",
    "harmonic_mean_mass",
    "resolve_masses",
]

#: Displacements below this fraction of the largest position are "no motion" (float32 ulps).
STATIC_RELATIVE = 4.0 * float(np.finfo(np.float32).eps)


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


@dataclass(frozen=True, eq=False)
class CellBlock:
    """Positions on the block of whole cells, with what the estimators need to know about it.

    Attributes
    ----------
    positions_A
        ``(N, s, L1, L2, κ, 2)`` positions ``(y, x)`` in Å of the used slices.
    crop
        The block (:class:`CellCrop`).
    slices
        ``(s,)`` the slices used.
    labels
        Species (or basis index as text) of each basis atom.
    masses_amu
        ``(κ,)`` basis masses, amu.
    basis_A
        ``(κ, 2)`` mean position of each basis atom relative to its cell origin ``l·A``, Å.
    lattice_vectors_A
        ``(2, 2)``.
    excluded_atoms
        Atoms not in the block.
    window_atoms
        ``(A,)`` every atom with a basis index and finite positions in every used state and
        slice (the block's atoms and those of incomplete cells around it): the *window* the
        force-constant estimator's open description uses.
    window_positions_A
        ``(N, s, A, 2)`` their positions.
    window_cell_index, window_basis_index
        ``(A, 2)`` and ``(A,)`` their lattice indices.
    window_excluded_atoms
        Atoms not in the window (a NaN position in a used state or slice, or no basis index).
    """

    positions_A: np.ndarray
    crop: CellCrop
    slices: np.ndarray
    labels: tuple[str, ...]
    masses_amu: np.ndarray
    basis_A: np.ndarray
    lattice_vectors_A: np.ndarray
    excluded_atoms: np.ndarray
    window_atoms: np.ndarray
    window_positions_A: np.ndarray
    window_cell_index: np.ndarray
    window_basis_index: np.ndarray
    window_excluded_atoms: np.ndarray

    @property
    def window_is_block(self) -> bool:
        """Whether the window holds no atom outside the block of whole cells."""
        return self.window_atoms.size == self.crop.atom_index.size

    @property
    def n_states(self) -> int:
        """Number of object states N."""
        return int(self.positions_A.shape[0])

    @property
    def n_basis(self) -> int:
        """Basis atoms κ."""
        return int(self.positions_A.shape[4])

    @property
    def cells(self) -> tuple[int, int]:
        """``(L1, L2)``."""
        return self.crop.shape


def _slices(spec: str | Sequence[int] | None, n_slices: int) -> np.ndarray:
    if isinstance(spec, str) or spec is None:
        return parse_slice_spec(spec, n_slices)
    slices = np.asarray(spec, dtype=int).ravel()
    if slices.size == 0 or slices.min() < -n_slices or slices.max() >= n_slices:
        raise InputError(f"slices {slices.tolist()} are not within the {n_slices} slices")
    return slices % n_slices


def cell_block(
    positions_A: ArrayLike,
    cell_index: ArrayLike,
    basis_index: ArrayLike,
    lattice_vectors_A: ArrayLike,
    *,
    masses_amu: Mapping[str, float],
    slices: str | Sequence[int] | None = None,
    species: ArrayLike | None = None,
) -> CellBlock:
    """The block of whole cells of per-state positions (module docstring).

    Parameters
    ----------
    positions_A
        ``(state, slice, atom, 2)`` or ``(state, atom, 2)`` positions ``(y, x)`` in Å (NaN where
        refinement failed).
    cell_index, basis_index
        ``(atoms, 2)`` and ``(atoms,)`` int lattice indices.
    lattice_vectors_A
        ``(2, 2)`` rows a1, a2 as ``(y, x)``, Å.
    masses_amu
        Mass overrides by species (or basis index as text), amu.
    slices
        ``"A:B"``, indices, or None (all).
    species
        ``(atoms,)`` species labels, or None.

    Raises
    ------
    InputError
        Malformed input, a missing mass (named), fewer than two complete cells, or a static
        object (no displacement between the states).
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
    used_slices = _slices(slices, n_slices)
    n_basis = int(basis.max()) + 1 if basis.size else 0
    labels = basis_species(basis, None if species is None else np.asarray(species), n_basis)
    masses = resolve_masses(labels, masses_amu)
    used = positions[:, used_slices]  # (N, s, atoms, 2)
    valid = np.all(np.isfinite(used), axis=(0, 1, 3))
    crop = crop_to_cells(cells, basis, valid)
    kept = crop.atom_index.ravel()
    R = used[:, :, crop.atom_index]  # (N, s, L1, L2, κ, 2)
    u = R - R.mean(axis=0, keepdims=True)
    scale = float(np.max(np.abs(R)))
    if not np.any(np.abs(u) > STATIC_RELATIVE * max(scale, 1.0)):
        raise InputError(
            f"static object: the positions of the {kept.size} atoms used do not vary between "
            f"the {n_states} states (G = 0), so there are no vibrations to analyse"
        )
    L1, L2 = crop.shape
    l1, l2 = np.meshgrid(np.arange(L1), np.arange(L2), indexing="ij")
    origins = (np.stack([l1, l2], axis=-1) + crop.origin) @ a  # (L1, L2, 2)
    basis_A = (R.mean(axis=(0, 1)) - origins[:, :, None, :]).mean(axis=(0, 1))
    window = np.flatnonzero(valid & (basis >= 0))
    return CellBlock(
        positions_A=R,
        crop=crop,
        slices=used_slices,
        labels=labels,
        masses_amu=masses,
        basis_A=basis_A,
        lattice_vectors_A=a,
        excluded_atoms=np.setdiff1d(np.arange(n_atoms), kept),
        window_atoms=window,
        window_positions_A=used[:, :, window],
        window_cell_index=cells[window],
        window_basis_index=basis[window],
        window_excluded_atoms=np.setdiff1d(np.arange(n_atoms), window),
    )
