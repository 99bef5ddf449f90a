"""View-model of the **Atoms** dock (Qt-free): detection and refinement of atom positions.

Workflow (conventions §3): the phase layer ``(state, slice, y, x)`` is copied into a
:class:`PhaseSource`; :func:`detect_job` finds atoms by Laplacian of Gaussian; the user edits the
points (manual picking); :func:`refine_job` refines them in every state and slice, indexes the
lattice and returns an :class:`AtomsResult` whose layer tuples are ready to draw.  Parameters
are the analysis' own typed dataclasses (:class:`~caviar_napari.analysis.atoms.DetectionConfig`,
:class:`~caviar_napari.analysis.atoms.RefineConfig`) and :class:`LatticeRequest`.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from caviar_napari.analysis import atoms as am
from caviar_napari.analysis.lattice import LatticeIndex, index_lattice, species_by_strength
from caviar_napari.errors import InputError
from caviar_napari.io.atoms_file import (
    AtomsData,
    read_atoms,
    read_positions_csv,
    write_atoms,
    write_positions_csv,
)
from caviar_napari.viewmodels import atoms_layers as al
from caviar_napari.viewmodels.notices import result_warnings

#: Names of the layers the dock owns.
POINTS_NAME = "atoms"
STATES_NAME = "atoms per state"
LATTICE_NAME = "lattice vectors"
#: Shown before anything was detected.
NO_ATOMS = "No atoms yet: Detect, or add points to the 'atoms' layer."


@dataclass(frozen=True)
class PhaseSource:
    """Host copy of what the jobs need from the phase layer.

    Attributes
    ----------
    phase
        ``(state, slice, y, x)`` phase, rad.
    pixel_size_A
        ``(dy, dx)``, Å.
    origin_A
        ``(y, x)`` of pixel ``[0, 0]``, Å.
    name
        Layer name (recorded as the source of the ATOMS data).
    """

    phase: np.ndarray
    pixel_size_A: tuple[float, float]
    origin_A: tuple[float, float]
    name: str


@dataclass(frozen=True)
class LatticeRequest:
    """Lattice options of a refinement.

    Attributes
    ----------
    enabled
        Index the lattice after the refinement.
    vectors_A
        ``(2, 2)`` given lattice vectors (rows a1, a2 as ``(y, x)``, Å), None to estimate.
    n_basis
        Expected basis atoms per cell, None for any.
    species
        Species of the basis sites, weakest phase first (empty: unknown).
    """

    enabled: bool = True
    vectors_A: np.ndarray | None = None
    n_basis: int | None = None
    species: tuple[str, ...] = ()

    @classmethod
    def parse(
        cls, *, enabled: bool, vectors_text: str, n_basis: int, species_text: str
    ) -> LatticeRequest:
        """From the dock's texts: ``"a1y a1x a2y a2x"`` (Å, blank: estimate), ``n_basis``
        (0: any), species names separated by blanks or commas (``InputError`` if malformed)."""
        text = vectors_text.replace(",", " ").split()
        vectors = None
        if text:
            try:
                values = [float(v) for v in text]
            except ValueError:
                raise InputError(f"lattice vectors: not numbers: {vectors_text!r}") from None
            if len(values) != 4:
                raise InputError(
                    f"lattice vectors: give 4 numbers a1y a1x a2y a2x (Å), got {len(values)}"
                )
            vectors = np.reshape(values, (2, 2))
        return cls(
            enabled=bool(enabled),
            vectors_A=vectors,
            n_basis=int(n_basis) or None,
            species=tuple(species_text.replace(",", " ").split()),
        )


@dataclass(frozen=True)
class AtomsDrawing:
    """The layers and texts of a set of atoms, ready to draw.

    Attributes
    ----------
    points
        ``(data, kwargs, "points")`` of the editable ``atoms`` layer.
    states
        The 4D ``atoms per state`` layer tuple.
    lattice
        The ``lattice vectors`` layer tuple, None when the lattice is not indexed.
    spread_limits_pm
        Colour limits of the per-atom spread (the colour bar).
    lattice_text
        One line on the lattice (or why it is not indexed).
    """

    points: al.LayerDataTuple
    states: al.LayerDataTuple
    lattice: al.LayerDataTuple | None
    spread_limits_pm: tuple[float, float]
    lattice_text: str


@dataclass(frozen=True)
class AtomsResult:
    """A refinement (or an imported ATOMS file) and its drawing."""

    atoms: AtomsData
    index: LatticeIndex | None
    drawing: AtomsDrawing
    summary: str
    lattice_error: str = ""
    warnings: tuple[str, ...] = field(default=())


def drawing(atoms: AtomsData, shown_A: np.ndarray, refined: np.ndarray) -> AtomsDrawing:
    """The layers of ``atoms``: mean rings at ``shown_A`` (failed ones red), per-state dots,
    lattice vectors, all coloured by the per-atom spread."""
    spread_pm = 100.0 * am.rms_spread_A(atoms.positions_A)
    size = al.point_size_A(shown_A)
    points = al.mean_points_layer(
        shown_A,
        name=POINTS_NAME,
        spread_pm=spread_pm,
        refined=refined,
        cell_index=atoms.cell_index,
        basis_index=atoms.basis_index,
        species=atoms.species,
        size_A=size,
    )
    states = al.states_points_layer(atoms.positions_A, spread_pm, name=STATES_NAME, size_A=size)
    lattice = None
    text = "Lattice not indexed."
    if atoms.lattice_vectors_A is not None:
        lattice = al.lattice_layer(
            atoms.lattice_vectors_A, atoms.mean_positions_A, name=LATTICE_NAME
        )
        text = lattice_text(atoms)
    return AtomsDrawing(points, states, lattice, al.spread_limits(spread_pm), text)


def lattice_text(atoms: AtomsData) -> str:
    """Lengths and angle of the lattice vectors, basis size and species."""
    a1, a2 = atoms.lattice_vectors_A
    n1, n2 = np.hypot(*a1), np.hypot(*a2)
    angle = np.degrees(np.arccos(np.clip(a1 @ a2 / (n1 * n2), -1, 1)))
    n_basis = int(atoms.basis_index.max()) + 1 if atoms.basis_index is not None else 0
    text = (
        f"Lattice: |a1| = {n1:.3f} Å (orange), |a2| = {n2:.3f} Å (cyan), "
        f"angle {angle:.1f}°, {n_basis} basis atom(s)"
    )
    if atoms.species is not None:
        text += f", species {' '.join(sorted(set(atoms.species.tolist()) - {''}))}"
    return text + "."


def refinement_summary(result: am.StateRefinement) -> str:
    """Three lines: atoms and disc radius, the mean image, every state and slice."""
    n_states, n_slices, n_atoms = result.status.shape
    n_win = result.status.size
    reasons = ", ".join(f"{k} {v}" for k, v in result.counts().items() if k != "refined")
    lines = [
        f"{n_atoms} atoms, disc radius {result.radius_A:.3f} Å.",
        f"Mean image: {n_atoms - result.n_failed_mean} refined, {result.n_failed_mean} failed.",
        f"States × slices ({n_states} × {n_slices}): {n_win - result.n_failed} of {n_win} "
        f"refined, {result.n_failed} failed (NaN)" + (f": {reasons}." if reasons else "."),
    ]
    return "\n".join(lines)


def detect_job(
    source: PhaseSource, config: am.DetectionConfig, slice_index: int | None
) -> Generator[float, None, np.ndarray]:
    """Worker: LoG detection on the detection image; yields progress, returns ``(atom, 2)`` Å."""
    yield 0.0
    image = am.detection_image(source.phase, slice_index)
    yield 0.5
    return am.detect_atoms(image, source.pixel_size_A, source.origin_A, config)


def refine_job(
    source: PhaseSource, start_A: np.ndarray, config: am.RefineConfig, lattice: LatticeRequest
) -> Generator[float, None, AtomsResult]:
    """Worker: refinement in every state and slice, lattice indexing, species, and the drawing.

    Yields the fraction done; returns the :class:`AtomsResult` (its ``atoms`` carry the
    provenance: phase layer, start, refinement parameters).
    """
    gen = am.iter_refine_states(source.phase, start_A, source.pixel_size_A, source.origin_A, config)
    try:
        while True:
            yield 0.9 * next(gen)
    except StopIteration as stop:
        result: am.StateRefinement = stop.value
    index, species, error = None, None, ""
    if lattice.enabled:
        try:
            index = index_lattice(
                result.mean_positions_A, lattice.vectors_A, n_basis=lattice.n_basis
            )
            if lattice.species:
                species = species_by_strength(result.strength, index.basis_index, lattice.species)
        except InputError as exc:
            error = str(exc)
    yield 0.95
    provenance = {
        "phase_layer": source.name,
        "start": "Atoms widget points",
        "refine": {k: v for k, v in config.__dict__.items() if k != "chunk_windows"},
    }
    atoms = result.to_atoms_data(index, species, source=source.name, provenance=provenance)
    refined = np.all(np.isfinite(result.mean_positions_A), axis=1)
    shown = np.where(refined[:, None], result.mean_positions_A, start_A)
    draw = drawing(atoms, shown, refined)
    if error:
        draw = AtomsDrawing(
            draw.points, draw.states, None, draw.spread_limits_pm, f"Lattice not indexed: {error}"
        )
    yield 1.0
    return AtomsResult(
        atoms=atoms,
        index=index,
        drawing=draw,
        summary=refinement_summary(result),
        lattice_error=error,
        warnings=tuple(result_warnings(result, atoms)),
    )


def import_atoms_file(path: str | os.PathLike) -> AtomsResult:
    """Read an ATOMS file for display: atoms without a finite mean position are left out.

    Raises
    ------
    InputError
        If no atom has a finite mean position.
    """
    atoms = read_atoms(path)
    refined = np.all(np.isfinite(atoms.mean_positions_A), axis=1)
    if not refined.any():
        raise InputError(f"{path}: no finite mean position")
    keep = refined
    sub = AtomsData(
        positions_A=atoms.positions_A[:, :, keep],
        mean_positions_A=atoms.mean_positions_A[keep],
        cell_index=None if atoms.cell_index is None else atoms.cell_index[keep],
        basis_index=None if atoms.basis_index is None else atoms.basis_index[keep],
        species=None if atoms.species is None else atoms.species[keep],
        lattice_vectors_A=atoms.lattice_vectors_A,
        source=atoms.source,
        status=None if atoms.status is None else atoms.status[:, :, keep],
        provenance=atoms.provenance,
    )
    summary = (
        f"{sub.n_atoms} atoms read from {Path(path).name} ({int((~refined).sum())} without a "
        f"mean position left out); {sub.n_failed} of {sub.positions_A[..., 0].size} "
        "state×slice positions are NaN."
    )
    return AtomsResult(
        atoms=sub,
        index=None,
        drawing=drawing(sub, sub.mean_positions_A, np.ones(sub.n_atoms, bool)),
        summary=summary,
        warnings=tuple(result_warnings(atoms, atoms.provenance)),
    )


class AtomsViewModel:
    """State of the Atoms dock.

    Attributes
    ----------
    detection
        LoG detection parameters.
    refine
        Refinement parameters (``radius_A`` None: automatic).
    result
        The last refinement or imported ATOMS file; None after the points were edited.
    warnings
        Warnings of :attr:`result`.
    """

    def __init__(self) -> None:
        self.detection = am.DetectionConfig()
        self.refine = am.RefineConfig()
        self.result: AtomsResult | None = None
        self.warnings: list[str] = []

    @property
    def atoms(self) -> AtomsData | None:
        """The AtomsData of the last result."""
        return None if self.result is None else self.result.atoms

    def accept(self, result: AtomsResult | None) -> None:
        """Keep a result (None: the points no longer match any result)."""
        self.result = result
        self.warnings = [] if result is None else list(result.warnings)

    def detected_text(self, n: int) -> str:
        """Status after a detection of ``n`` atoms."""
        return f"{n} atoms detected. Add, move or delete points in the 'atoms' layer, then Refine."

    @staticmethod
    def start_positions(points_A: np.ndarray | None) -> np.ndarray:
        """The refinement's start ``(atom, 2)`` Å from the points (``InputError`` if none)."""
        if points_A is None or len(points_A) == 0:
            raise InputError("no atoms to refine: Detect, import, or add points to 'atoms'")
        return np.asarray(points_A, dtype=float)[:, -2:]

    # ------------------------------------------------------------------ files
    @staticmethod
    def export_csv(
        path: str | os.PathLike, points_A: np.ndarray | None, species: np.ndarray | None
    ) -> None:
        """Write the positions ``(atom, 2)`` Å (and species) as CSV."""
        if points_A is None or len(points_A) == 0:
            raise InputError("no atoms to export: the 'atoms' layer is empty")
        write_positions_csv(path, np.asarray(points_A)[:, -2:], species)

    @staticmethod
    def import_csv(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray | None]:
        """Read a CSV position list: ``(finite positions (atom, 2) Å, species or None)``."""
        positions, species = read_positions_csv(path)
        pos = np.asarray(positions, dtype=float).reshape(-1, 2)
        ok = np.all(np.isfinite(pos), axis=1)
        return pos[ok], None if species is None else np.asarray(species)[ok]

    def export_atoms(self, path: str | os.PathLike) -> None:
        """Write the last refinement (or imported ATOMS data) as an ATOMS file."""
        if self.atoms is None:
            raise InputError("nothing to export: Refine first (or import an ATOMS file)")
        write_atoms(path, self.atoms)
