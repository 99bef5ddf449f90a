"""View-model of the **Atoms** dock (Qt-free): detection and refinement of atom positions.

Workflow (conventions §3): the phase layer ``(state, slice, y, x)`` is copied into a
:class:`PhaseSource`; :func:`detect_job` finds atoms by Laplacian of Gaussian; the user edits the
points (manual picking); :func:`refine_job` refines them in every state and slice, indexes the
lattice and returns an :class:`AtomsResult` whose layer tuples are ready to draw.  Both work on
one depth range (a :class:`~caviar_napari.data.atoms.ZRange`) when given: the phase of its
slices only, the atoms recording the range; the view-model keeps one result per range
(:attr:`AtomsViewModel.ranges`, :mod:`caviar_napari.viewmodels.atoms_depth`).  Parameters
are the analysis' own typed dataclasses (:class:`~caviar_napari.analysis.atoms.DetectionConfig`,
:class:`~caviar_napari.analysis.atoms.RefineConfig`) and :class:`LatticeRequest`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from caviar_napari.analysis import atoms as am
from caviar_napari.analysis.lattice import (
    LatticeIndex,
    canonical_index,
    index_lattice,
    species_by_strength,
)
from caviar_napari.errors import InputError
from caviar_napari.io.atoms_file import (
    AtomsData,
    read_atoms_zranges,
    read_positions_csv,
    write_atoms,
    write_atoms_zranges,
    write_positions_csv,
)
from caviar_napari.viewmodels import atoms_layers as al
from caviar_napari.viewmodels.atoms_depth import ALL_SLICES, RangeChoice
from caviar_napari.viewmodels.notices import result_warnings

if TYPE_CHECKING:
    from caviar_napari.data.atoms import ZRange

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
    lattice vectors, all coloured by the per-atom spread.  The per-state dots of a z-range sit
    on the phase layer's slices of that range."""
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
    offset = 0 if atoms.zrange is None else atoms.zrange.start  # slices of the phase layer
    states = al.states_points_layer(
        atoms.positions_A, spread_pm, name=STATES_NAME, size_A=size, slice_offset=offset
    )
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


def in_range(
    phase: np.ndarray, slice_index: int | None, zrange: ZRange | None
) -> tuple[np.ndarray, int | None]:
    """The phase of a z-range's slices and a slice of the reconstruction as an index into them
    (``InputError`` when it lies outside the range); unchanged without a range."""
    if zrange is None:
        return phase, slice_index
    if phase.shape[1] != zrange.n_slices_total:
        raise InputError(
            f"z-range {zrange.label!r} is of a {zrange.n_slices_total}-slice reconstruction, "
            f"the phase layer has {phase.shape[1]} slices"
        )
    return phase[:, zrange.start : zrange.stop], range_slice_index(slice_index, zrange)


def range_slice_index(slice_index: int | None, zrange: ZRange | None) -> int | None:
    """A slice of the reconstruction as an index into the slices of ``zrange`` (unchanged
    without a range; ``InputError`` naming the range when it lies outside)."""
    if zrange is None or slice_index is None:
        return slice_index
    j = int(slice_index) % zrange.n_slices_total
    if not zrange.start <= j < zrange.stop:
        raise InputError(
            f"slice {slice_index} is outside the z-range {zrange.label!r} ({zrange.spec}): "
            "detect on a slice of the range, or on the sum over it"
        )
    return j - zrange.start


def detect_job(
    source: PhaseSource,
    config: am.DetectionConfig,
    slice_index: int | None,
    zrange: ZRange | None = None,
) -> Generator[float, None, np.ndarray]:
    """Worker: LoG detection on the detection image (of the slices of ``zrange`` when given);
    yields progress, returns ``(atom, 2)`` Å."""
    yield 0.0
    phase, slice_index = in_range(source.phase, slice_index, zrange)
    image = am.detection_image(phase, slice_index)
    yield 0.5
    return am.detect_atoms(image, source.pixel_size_A, source.origin_A, config)


def refine_job(
    source: PhaseSource,
    start_A: np.ndarray,
    config: am.RefineConfig,
    lattice: LatticeRequest,
    zrange: ZRange | None = None,
) -> Generator[float, None, AtomsResult]:
    """Worker: refinement in every state and slice, lattice indexing, species, and the drawing.

    With ``zrange``, in every state and every slice of that range (``config.slice_index``, the
    slice of the mean image, is a slice of the reconstruction inside it), indexed in the
    range's own lattice; the atoms record the range.  Yields the fraction done; returns the
    :class:`AtomsResult` (its ``atoms`` carry the provenance: phase layer, start, refinement
    parameters, z-range).
    """
    phase, inner = in_range(source.phase, config.slice_index, zrange)
    config = dataclasses.replace(config, slice_index=inner)
    gen = am.iter_refine_states(phase, start_A, source.pixel_size_A, source.origin_A, config)
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
                index = canonical_index(index, species, keep_vectors=lattice.vectors_A is not None)
        except InputError as exc:
            error = str(exc)
    yield 0.95
    provenance = {
        "phase_layer": source.name,
        "start": "Atoms widget points",
        "refine": {k: v for k, v in config.__dict__.items() if k != "chunk_windows"},
    }
    if zrange is not None:
        provenance["zrange"] = {"label": zrange.label, "slices": zrange.spec}
    atoms = result.to_atoms_data(index, species, source=source.name, provenance=provenance)
    if zrange is not None:
        atoms = dataclasses.replace(atoms, zrange=zrange)
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
        summary=(zrange.describe() + "\n" if zrange is not None else "")
        + refinement_summary(result),
        lattice_error=error,
        warnings=tuple(result_warnings(result, atoms)),
    )


def atoms_result(atoms: AtomsData, summary: str) -> AtomsResult:
    """An :class:`AtomsResult` of ATOMS contents read or found elsewhere (a file, the workflow):
    atoms without a finite mean position are left out of it and of its drawing.

    Raises
    ------
    InputError
        If no atom has a finite mean position.
    """
    refined = np.all(np.isfinite(atoms.mean_positions_A), axis=1)
    where = f" in z-range {atoms.zrange.label!r}" if atoms.zrange is not None else ""
    if not refined.any():
        raise InputError(f"{atoms.source or 'atoms'}: no finite mean position{where}")
    keep = refined
    sub = dataclasses.replace(
        atoms,
        positions_A=atoms.positions_A[:, :, keep],
        mean_positions_A=atoms.mean_positions_A[keep],
        cell_index=None if atoms.cell_index is None else atoms.cell_index[keep],
        basis_index=None if atoms.basis_index is None else atoms.basis_index[keep],
        species=None if atoms.species is None else atoms.species[keep],
        status=None if atoms.status is None else atoms.status[:, :, keep],
    )
    return AtomsResult(
        atoms=sub,
        index=None,
        drawing=drawing(sub, sub.mean_positions_A, np.ones(sub.n_atoms, bool)),
        summary=summary,
        warnings=tuple(result_warnings(atoms, atoms.provenance)),
    )


def import_atoms_file(path: str | os.PathLike) -> dict[str, AtomsResult]:
    """Read an ATOMS file for display: every z-range it holds, by label (``""`` for a file
    without z-ranges), in file order.

    Raises
    ------
    InputError
        If a range has no atom with a finite mean position (named).
    """
    results = {}
    for label, atoms in read_atoms_zranges(path).items():
        refined = np.all(np.isfinite(atoms.mean_positions_A), axis=1)
        head = "" if atoms.zrange is None else atoms.zrange.describe() + "\n"
        summary = (
            f"{head}{int(refined.sum())} atoms read from {Path(path).name} "
            f"({int((~refined).sum())} without a mean position left out); {atoms.n_failed} of "
            f"{atoms.positions_A[..., 0].size} state×slice positions are NaN."
        )
        results[label] = atoms_result(atoms, summary)
    return results


# ==================================================================================== ranges
@dataclass(frozen=True)
class RangesOutcome:
    """The atoms of every z-range, found by :func:`ranges_job`.

    Attributes
    ----------
    results
        Label → the range's result (atoms, drawing, summary), in the order of the ranges.
    lines
        What the workflow reported (as ``caviar atoms`` prints it).
    warnings
        Its warnings.
    """

    results: dict[str, AtomsResult]
    lines: tuple[str, ...]
    warnings: tuple[str, ...]


def ranges_job(
    state: Any,
    name: str,
    ranges: Sequence[RangeChoice],
    detection: am.DetectionConfig,
    refine: am.RefineConfig,
    lattice: LatticeRequest,
) -> Generator[float, None, RangesOutcome]:
    """Worker: detect, refine and index the atoms of every range of ``state`` (the workflow of
    ``caviar atoms --zrange``), each in its own lattice.

    Parameters
    ----------
    state
        The reconstruction state of the phase layer.
    name
        The reconstruction's name (its file, or the layer): the atoms' source.
    ranges
        The ranges (at least one).
    detection, refine, lattice
        The dock's parameters; ``refine.slice_index`` (a slice of the reconstruction) must lie
        in every range, or be None (the sum over each range).
    """
    from caviar_napari.workflows.atoms import AtomsOptions, atoms_of_state

    if not ranges:
        raise InputError("no z-ranges: add one (label and slices) first")
    yield 0.0
    vectors = None if lattice.vectors_A is None else tuple(np.ravel(lattice.vectors_A))
    options = AtomsOptions(
        recon=Path(name),
        out=Path(name),
        detection=detection,
        refine=refine,
        lattice_vectors_A=vectors,
        n_basis=lattice.n_basis,
        index_lattice=lattice.enabled,
        species=lattice.species or None,
        zranges=tuple((r.label, r.spec) for r in ranges),
    )
    summary = atoms_of_state(state, options)
    yield 0.9
    results = {}
    for label, atoms in summary.ranges.items():
        results[label] = atoms_result(atoms, "\n".join(_range_lines(summary.lines, atoms.zrange)))
    yield 1.0
    return RangesOutcome(results, tuple(summary.lines), tuple(summary.warnings))


def _range_lines(lines: Sequence[str], zrange: ZRange) -> list[str]:
    """The workflow's lines about one range: from its description to the next range's."""
    head = zrange.describe()
    if head not in lines:
        return [head]
    first = list(lines).index(head)
    rest = [i for i, line in enumerate(lines[first + 1 :], first + 1) if line.startswith("z-range")]
    return list(lines[first : rest[0] if rest else len(lines)])


class AtomsViewModel:
    """State of the Atoms dock.

    Attributes
    ----------
    detection
        LoG detection parameters.
    refine
        Refinement parameters (``radius_A`` None: automatic).
    ranges
        The labelled z-ranges defined (in order).
    active
        Label of the range the dock works on (:data:`ALL_SLICES`: every slice, no range).
    results
        Label → the last refinement (or imported ATOMS data) of that range.
    warnings
        Warnings of :attr:`result`.
    """

    def __init__(self) -> None:
        self.detection = am.DetectionConfig()
        self.refine = am.RefineConfig()
        self.ranges: list[RangeChoice] = []
        self.active: str = ALL_SLICES
        self.results: dict[str, AtomsResult] = {}
        self.warnings: list[str] = []

    @property
    def result(self) -> AtomsResult | None:
        """The result of the active range; None after its points were edited."""
        return self.results.get(self.active)

    @property
    def atoms(self) -> AtomsData | None:
        """The AtomsData of the active range's result."""
        return None if self.result is None else self.result.atoms

    def accept(self, result: AtomsResult | None) -> None:
        """Keep a result of the active range (None: the points no longer match it)."""
        if result is None:
            self.results.pop(self.active, None)
        else:
            self.results[self.active] = result
        self.warnings = [] if result is None else list(result.warnings)

    # ------------------------------------------------------------------ z-ranges
    def range(self, label: str) -> RangeChoice | None:
        """The range of ``label`` (None for :data:`ALL_SLICES` or an unknown label)."""
        return next((r for r in self.ranges if r.label == label), None)

    @property
    def active_range(self) -> RangeChoice | None:
        """The active range (None: every slice)."""
        return self.range(self.active)

    def add_range(self, choice: RangeChoice) -> None:
        """Add a range (its label must be new) and make it the active one."""
        if self.range(choice.label) is not None or choice.label == ALL_SLICES:
            raise InputError(f"a z-range named {choice.label!r} exists already")
        self.ranges.append(choice)
        self.set_active(choice.label)

    def remove_range(self, label: str) -> None:
        """Forget a range and its result; every slice becomes active if it was."""
        self.ranges = [r for r in self.ranges if r.label != label]
        self.results.pop(label, None)
        if self.active == label:
            self.set_active(ALL_SLICES)

    def move_range(self, label: str, start: int, stop: int) -> bool:
        """Give range ``label`` the slices ``start:stop``; its result is dropped when they
        changed.  Returns whether they changed."""
        old = self.range(label)
        if old is None or (old.start, old.stop) == (int(start), int(stop)):
            return False
        if not 0 <= int(start) < int(stop):
            raise InputError(f"z-range {label!r}: slices {start}:{stop} are empty")
        self.ranges = [
            RangeChoice(label, int(start), int(stop)) if r.label == label else r
            for r in self.ranges
        ]
        self.results.pop(label, None)
        if label == self.active:
            self.warnings = []
        return True

    def set_active(self, label: str) -> None:
        """Work on range ``label`` (:data:`ALL_SLICES`: every slice) from now on."""
        if label != ALL_SLICES and self.range(label) is None:
            raise InputError(f"no z-range named {label!r}")
        self.active = label
        self.warnings = [] if self.result is None else list(self.result.warnings)

    def active_zrange(self, slice_thickness_A: Any | None) -> ZRange | None:
        """The :class:`ZRange` of the active range (None: every slice).

        Raises
        ------
        InputError
            A range is active but the slice thicknesses are unknown.
        """
        choice = self.active_range
        if choice is None:
            return None
        if slice_thickness_A is None:
            raise InputError(
                "the phase layer carries no slice thicknesses (it is not a reconstruction's "
                "result or file): z-ranges need them"
            )
        return choice.zrange(slice_thickness_A)

    def accept_ranges(self, outcome: RangesOutcome) -> None:
        """Keep the results of :func:`ranges_job` (one per range)."""
        self.results.update(outcome.results)
        if self.active not in outcome.results:
            self.active = next(iter(outcome.results))
        self.warnings = list(
            dict.fromkeys([*outcome.warnings, *(self.result.warnings if self.result else ())])
        )

    def accept_import(self, results: dict[str, AtomsResult]) -> None:
        """Keep the z-ranges of an imported ATOMS file (:func:`import_atoms_file`): ranges of
        the same labels are replaced; an unnamed range gets its slices as label; the first
        becomes active."""
        first = None
        for label, result in results.items():
            zrange = result.atoms.zrange
            if zrange is None:
                key = ALL_SLICES
            else:
                key = label or f"slices {zrange.spec}"
                if zrange.label != key:  # its file label must be its label here
                    atoms = dataclasses.replace(
                        result.atoms, zrange=dataclasses.replace(zrange, label=key)
                    )
                    result = dataclasses.replace(result, atoms=atoms)
                self.ranges = [r for r in self.ranges if r.label != key]
                self.ranges.append(RangeChoice(key, zrange.start, zrange.stop))
            self.results[key] = result
            first = key if first is None else first
        self.set_active(first if first is not None else ALL_SLICES)

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

    def export_atoms(self, path: str | os.PathLike) -> str:
        """Write an ATOMS file; returns what it holds.

        With every slice active: that result, in the usual schema.  With a z-range active:
        every range that has a result, labelled (``caviar atoms --zrange``'s file; a single
        range is the usual schema with its range recorded).
        """
        if self.active == ALL_SLICES:
            if self.atoms is None:
                raise InputError("nothing to export: Refine first (or import an ATOMS file)")
            write_atoms(path, self.atoms)
            return "the atoms of every slice"
        done = [r.label for r in self.ranges if r.label in self.results]
        if not done:
            raise InputError("nothing to export: Refine a z-range first (or import an ATOMS file)")
        ranges = [self.results[label].atoms for label in done]
        if len(ranges) == 1:
            write_atoms(path, ranges[0])
        else:
            write_atoms_zranges(path, ranges)
        return "z-range" + ("s " if len(done) > 1 else " ") + ", ".join(repr(x) for x in done)
