"""The contents of an ATOMS file (conventions §6): atom positions per object state and slice.

Read and written by :mod:`caviar_napari.io.atoms_file`; measured by
:mod:`caviar_napari.analysis.atoms`.  An ATOMS file may hold one depth range (z-range) of a
multislice reconstruction, or several labelled ones (:class:`ZRange`, conventions §3, §6).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from caviar_napari.errors import InputError

__all__ = ["AtomsData", "ZRange"]


@dataclass(frozen=True)
class ZRange:
    """A depth range of a multislice reconstruction: slices ``start:stop`` (conventions §3).

    Attributes
    ----------
    label
        Name of the range (e.g. ``"upper"``); ``""`` for an unnamed range.
    start, stop
        The slices ``start … stop − 1`` of the reconstruction (Python slice semantics, step 1).
    slice_thickness_A
        Thickness of each slice of the range, Å (``stop − start`` values).
    z_top_A
        Depth below the entrance surface of the top of slice ``start`` (the sum of the
        thicknesses of the slices before it), Å.
    n_slices_total
        Number of slices of the reconstruction the range was taken from.
    """

    label: str
    start: int
    stop: int
    slice_thickness_A: tuple[float, ...]
    z_top_A: float
    n_slices_total: int

    def __post_init__(self) -> None:
        if not isinstance(self.label, str) or "/" in self.label:
            raise InputError(f"z-range label must be a string without '/', got {self.label!r}")
        for name in ("start", "stop", "n_slices_total"):
            v = getattr(self, name)
            if isinstance(v, bool) or int(v) != v:
                raise InputError(f"z-range {self.label!r}: {name} must be an integer, got {v!r}")
            object.__setattr__(self, name, int(v))
        if not 0 <= self.start < self.stop <= self.n_slices_total:
            raise InputError(
                f"z-range {self.label!r}: slices {self.start}:{self.stop} are not a non-empty "
                f"range within the {self.n_slices_total} slices"
            )
        dz = tuple(float(v) for v in np.ravel(self.slice_thickness_A))
        if len(dz) != self.stop - self.start or not all(np.isfinite(dz)) or min(dz) <= 0:
            raise InputError(
                f"z-range {self.label!r}: slice_thickness_A must be {self.stop - self.start} "
                f"positive values, got {dz}"
            )
        object.__setattr__(self, "slice_thickness_A", dz)
        object.__setattr__(self, "z_top_A", float(self.z_top_A))

    @property
    def n_slices(self) -> int:
        """Slices in the range."""
        return self.stop - self.start

    @property
    def spec(self) -> str:
        """The range as Python slice text ``"A:B"``."""
        return f"{self.start}:{self.stop}"

    @property
    def z_bottom_A(self) -> float:
        """Depth of the bottom of the range's last slice, Å."""
        return self.z_top_A + float(sum(self.slice_thickness_A))

    @property
    def z_extent_A(self) -> tuple[float, float]:
        """``(top, bottom)`` depths of the range below the entrance surface, Å."""
        return (self.z_top_A, self.z_bottom_A)

    def describe(self) -> str:
        """One line: label, slices and depths."""
        name = f"z-range {self.label!r}" if self.label else "z-range"
        return (
            f"{name}: slices {self.spec} of {self.n_slices_total}, z = {self.z_top_A:.1f} … "
            f"{self.z_bottom_A:.1f} Å"
        )


@dataclass
class AtomsData:
    """Contents of an ATOMS file; shapes validated on construction.

    Attributes
    ----------
    positions_A
        ``(state, slice, atom, 2)`` positions ``(y, x)`` in the scan frame, Å; NaN where the
        refinement failed.
    mean_positions_A
        ``(atom, 2)`` mean positions ``(y, x)``, Å.
    cell_index
        ``(atom, 2)`` int unit-cell index ``(l1, l2)``, or None.
    basis_index
        ``(atom,)`` int basis index κ, or None.
    species
        ``(atom,)`` species names (str), or None.
    lattice_vectors_A
        ``(2, 2)`` rows ``a1, a2`` as ``(y, x)``, Å, or None.
    source
        The file the positions were measured on (e.g. the reconstruction).
    status
        ``(state, slice, atom)`` int8 refinement status codes, or None.
    provenance
        What produced the file (method, parameters); stored as JSON.
    zrange
        The depth range of the reconstruction the positions belong to (its slices are the
        ``slice`` axis of ``positions_A``), or None: every slice of the reconstruction (files
        written before z-ranges existed read as None).
    """

    positions_A: np.ndarray
    mean_positions_A: np.ndarray
    cell_index: np.ndarray | None = None
    basis_index: np.ndarray | None = None
    species: np.ndarray | None = None
    lattice_vectors_A: np.ndarray | None = None
    source: str = ""
    status: np.ndarray | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    zrange: ZRange | None = None

    def __post_init__(self) -> None:
        self.positions_A = np.asarray(self.positions_A, dtype=float)
        self.mean_positions_A = np.asarray(self.mean_positions_A, dtype=float)
        if self.positions_A.ndim != 4 or self.positions_A.shape[-1] != 2:
            raise InputError(
                f"positions_A must be (state, slice, atom, 2), got shape {self.positions_A.shape}"
            )
        n = self.positions_A.shape[2]
        n_states, n_slices = self.positions_A.shape[:2]
        if self.cell_index is not None:
            self.cell_index = np.asarray(self.cell_index, dtype=np.int64)
        if self.basis_index is not None:
            self.basis_index = np.asarray(self.basis_index, dtype=np.int64)
        if self.species is not None:
            self.species = np.asarray(self.species, dtype=str)
        if self.lattice_vectors_A is not None:
            self.lattice_vectors_A = np.asarray(self.lattice_vectors_A, dtype=float)
        if self.status is not None:
            self.status = np.asarray(self.status, dtype=np.int8)
        checks = {
            "mean_positions_A": (self.mean_positions_A, (n, 2)),
            "cell_index": (self.cell_index, (n, 2)),
            "basis_index": (self.basis_index, (n,)),
            "species": (self.species, (n,)),
            "lattice_vectors_A": (self.lattice_vectors_A, (2, 2)),
            "status": (self.status, (n_states, n_slices, n)),
        }
        for key, (value, want) in checks.items():
            if value is not None and value.shape != want:
                raise InputError(f"{key}: shape {value.shape} does not match {want} for {n} atoms")
        if self.zrange is not None and self.zrange.n_slices != n_slices:
            raise InputError(
                f"positions_A has {n_slices} slice(s) but the z-range {self.zrange.spec} has "
                f"{self.zrange.n_slices}"
            )

    @property
    def n_atoms(self) -> int:
        """Number of atoms."""
        return int(self.positions_A.shape[2])

    @property
    def n_failed(self) -> int:
        """Number of NaN (state, slice, atom) positions."""
        return int(np.any(~np.isfinite(self.positions_A), axis=-1).sum())
