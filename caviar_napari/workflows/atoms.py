"""Atom positions in every object state and slice of a reconstruction (``caviar atoms``).

Start positions come from a CSV/ATOMS list or from Laplacian-of-Gaussian detection in the
scanned area; they are refined by the phase-weighted centre of mass on the mean image and then
in every state and slice (conventions §3), indexed on a lattice, given species, and written as
an ATOMS file (conventions §6).

Depth ranges (conventions §3): with ``slices`` (``"A:B"``, Python slice syntax) the atoms are
detected on the phase summed over slices A:B, refined in every state and every slice of that
range, and indexed in that range's own lattice; the ATOMS file holds just that z-range (usual
schema, attributes recording the range).  With ``zranges`` (labelled ``"A:B"`` ranges) every
range is done so on its own and the file holds them all, labelled (``io.atoms_file``).

Species, in order of precedence: ``species`` names assigned to the basis sites by phase
strength (weakest first); the species column of the start positions; the ground truth of the
reconstruction's source file when it is a simulation (``caviar simulate``): each atom takes the
species of its nearest ideal site, and every atom of a basis index the species most of them have.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from caviar_napari.analysis import atoms as am
from caviar_napari.analysis.lattice import (
    LatticeIndex,
    canonical_index,
    index_lattice,
    species_by_strength,
)
from caviar_napari.errors import InputError
from caviar_napari.io.outputs import OutputTarget
from caviar_napari.workflows.inputs import index_list
from caviar_napari.workflows.summary import StepSummary

if TYPE_CHECKING:
    from caviar_napari.data.atoms import AtomsData, ZRange
    from caviar_napari.data.recon import ReconState

log = logging.getLogger(__name__)

__all__ = [
    "AtomsOptions",
    "AtomsSummary",
    "atoms_of_state",
    "describe_lattice",
    "parse_species",
    "read_start_positions",
    "run_atoms",
    "scanned_area",
    "source_data_path",
]


def parse_species(values: list[str] | tuple[str, ...] | str | None) -> tuple[str, ...] | None:
    """Species names from ``["B", "N"]``, ``["B,N"]`` or ``"B,N"`` (None stays None)."""
    if values is None:
        return None
    items = [values] if isinstance(values, str) else list(values)
    names = tuple(n.strip() for item in items for n in str(item).split(",") if n.strip())
    if not names:
        raise InputError(f"--species: no species names in {values!r}")
    return names


@dataclass(frozen=True)
class AtomsOptions:
    """Options of :func:`run_atoms`.

    Attributes
    ----------
    recon
        Reconstruction file.
    out
        Output ATOMS file.
    positions
        Start positions (CSV ``y_A,x_A[,species]`` or an ATOMS file; Å, scan frame); None:
        LoG detection with ``detection``.
    detection
        LoG parameters (used without ``positions``).
    refine
        Centre-of-mass parameters (radius, tolerance, iterations, slice of the mean image).
    lattice_vectors_A
        ``(a1y, a1x, a2y, a2x)`` Å, or None to estimate them.
    n_basis
        Expected basis atoms per cell (checked), or None.
    index_lattice
        Index the atoms on a lattice.
    species
        Species names assigned to the basis sites by phase strength, weakest first.
    species_from_truth
        Without ``species`` or species in ``positions``, take them from the ground truth of the
        reconstruction's source file when it has one.
    slices
        One depth range ``"A:B"`` (Python slice syntax, step 1) of the reconstruction's slices,
        or None for all slices (the file then records no z-range, as before z-ranges existed).
    zranges
        Several labelled depth ranges ``(("upper", "0:2"), ("lower", "2:4"))``, each detected,
        refined and indexed on its own and written to one file; excludes ``slices``.
    overwrite
        Replace an existing output that this program did not write, or of another kind.
    """

    recon: Path
    out: Path
    positions: Path | None = None
    detection: am.DetectionConfig = field(default_factory=am.DetectionConfig)
    refine: am.RefineConfig = field(default_factory=am.RefineConfig)
    lattice_vectors_A: tuple[float, float, float, float] | None = None
    n_basis: int | None = None
    index_lattice: bool = True
    species: tuple[str, ...] | None = None
    species_from_truth: bool = True
    slices: str | None = None
    zranges: tuple[tuple[str, str], ...] = ()
    overwrite: bool = False


@dataclass(kw_only=True)
class AtomsSummary(StepSummary):
    """Result of :func:`run_atoms`.

    Attributes
    ----------
    atoms
        The ATOMS contents written (the first z-range of a multi-range file).
    ranges
        Every z-range written, by label (one entry keyed ``""`` without z-ranges).
    n_start
        Start positions used; ``n_start_excluded`` non-finite ones left out of a list.
    n_failed
        Failed (state, slice, atom) refinements.
    lattice
        The lattice indexing, or None.
    species_source
        Where the species came from (``""`` when there are none).
    """

    atoms: AtomsData | None = None
    ranges: dict[str, AtomsData] = field(default_factory=dict)
    n_start: int = 0
    n_start_excluded: int = 0
    n_failed: int = 0
    lattice: LatticeIndex | None = None
    species_source: str = ""


def read_start_positions(path: str | Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Start positions ``(atom, 2)`` Å and optional species from a CSV or ATOMS file."""
    from caviar_napari.io.atoms_file import read_atoms, read_positions_csv

    p = Path(path)
    if p.suffix.lower() in (".h5", ".hdf5"):
        atoms = read_atoms(p)
        return atoms.mean_positions_A, atoms.species
    return read_positions_csv(p)


def describe_lattice(index: LatticeIndex) -> str:
    """One line describing lattice vectors and basis."""
    a1, a2 = index.lattice_vectors_A
    n1, n2 = np.hypot(*a1), np.hypot(*a2)
    angle = np.degrees(np.arccos(np.clip(a1 @ a2 / (n1 * n2), -1, 1)))
    cells = index.cell_index[index.basis_index >= 0]
    span = (cells.max(axis=0) + 1).tolist() if len(cells) else [0, 0]
    return (
        f"lattice: |a1| = {n1:.4f} Å, |a2| = {n2:.4f} Å, angle {angle:.2f}°, "
        f"{index.n_basis} basis atom(s), {span[0]} × {span[1]} cells"
    )


def scanned_area(
    image: np.ndarray,
    pixel_size_A: tuple[float, float],
    origin_A: tuple[float, float],
    scan_positions_A: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, str]:
    """Crop ``image`` to the rectangle spanned by the scan positions (the probe centres).

    Outside it the object is constrained only by the probe tails and is mostly noise, which
    LoG would take for atoms (and which would set its relative threshold).  Returns the crop,
    the Å position of its pixel ``[0, 0]`` and a description; the whole image when the
    reconstruction stores no scan positions.
    """
    origin = np.asarray(origin_A, dtype=float)
    if scan_positions_A is None or np.size(scan_positions_A) == 0:
        return image, origin, "the whole object (no scan positions stored)"
    px = (np.asarray(scan_positions_A, float).reshape(-1, 2) - origin) / np.asarray(pixel_size_A)
    lo = np.clip(np.floor(px.min(axis=0)).astype(int), 0, None)
    hi = np.minimum(np.ceil(px.max(axis=0)).astype(int) + 1, image.shape[-2:])
    crop = image[..., lo[0] : hi[0], lo[1] : hi[1]]
    extent = (hi - lo) * np.asarray(pixel_size_A)
    return (
        crop,
        origin + lo * np.asarray(pixel_size_A),
        (f"the scanned area ({extent[0]:.1f} × {extent[1]:.1f} Å)"),
    )


def source_data_path(recon: str | os.PathLike, source: str) -> Path | None:
    """The reconstruction's source data file, if it can be found.

    ``source`` (the RECON file's attribute, usually a bare file name) is tried as given
    (absolute, or relative to the working folder) and next to the RECON file.
    """
    if not source:
        return None
    candidates = [Path(source), Path(recon).parent / Path(source).name]
    if not Path(source).is_absolute():
        candidates.insert(1, Path(recon).parent / source)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    return None


def _truth_species(
    recon: Path,
    source: str,
    mean_positions_A: np.ndarray,
    index: LatticeIndex | None,
) -> tuple[np.ndarray | None, str]:
    """Species from the ground truth of the source data, and a line saying what was done."""
    import h5py

    from caviar_napari.analysis.truth import species_from_truth
    from caviar_napari.io.correlations_file import read_ground_truth

    data = source_data_path(recon, source)
    if data is None:
        return None, (
            f"species: none (the source data {source or '(not recorded)'} was not found; give "
            "--species to name them)"
        )
    try:
        has_truth = h5py.is_hdf5(data)
        if has_truth:
            with h5py.File(data, "r") as f:
                has_truth = "ground_truth" in f and "species" in f["ground_truth"]
    except OSError:
        has_truth = False
    if not has_truth:
        return None, f"species: none ({data} has no ground-truth species; give --species)"
    try:
        truth = read_ground_truth(data)
        assigned = species_from_truth(
            mean_positions_A,
            truth.mean_positions_A,
            truth.species,
            None if index is None else index.basis_index,
        )
    except InputError as exc:
        return None, f"species: none (from the ground truth of {data}: {exc}; give --species)"
    detail = (
        ", ".join(f"basis {b} {s}" for b, s in sorted(assigned.by_basis.items()))
        if assigned.by_basis
        else ", ".join(sorted(set(assigned.species.tolist()) - {""}))
    )
    line = (
        f"species: from the ground truth of {data} (nearest ideal site; "
        f"{assigned.n_matched} of {len(mean_positions_A)} atoms matched): {detail}"
    )
    if assigned.n_disagreeing:
        line += f"; {assigned.n_disagreeing} matched atoms disagree with their basis site"
    return assigned.species, line


def _check_options(options: AtomsOptions) -> None:
    """The options that exclude each other (``InputError`` naming them)."""
    if parse_species(options.species) and not options.index_lattice:
        raise InputError("--species needs lattice indexing (remove --no-lattice)")
    if options.slices is not None and options.zranges:
        raise InputError("--slices and --zrange exclude each other (give ranges one way)")


def run_atoms(options: AtomsOptions) -> AtomsSummary:
    """Find, refine, index and name the atoms of a reconstruction; write the ATOMS file.

    With ``options.slices`` or ``options.zranges`` each depth range is detected, refined and
    indexed on its own (module docstring).

    Raises
    ------
    InputError
        Unreadable inputs, no atoms to refine, or inconsistent options (named).
    OutputError
        The output may not or cannot be written (checked before anything is computed).
    """
    from caviar_napari.io.atoms_file import write_atoms, write_atoms_zranges
    from caviar_napari.io.reconstruction import load_reconstruction

    target = OutputTarget.prepare(
        options.out,
        "atoms",
        inputs={"RECON": options.recon, "--positions": options.positions},
        overwrite=options.overwrite,
    )
    _check_options(options)
    summary = atoms_of_state(load_reconstruction(options.recon), options)
    written = list(summary.ranges.values())
    if options.zranges:
        summary.out = target.write(
            lambda p: write_atoms_zranges(p, written), warnings=summary.warnings
        )
    else:
        summary.out = target.write(lambda p: write_atoms(p, written[0]), warnings=summary.warnings)
    summary.lines.append(f"wrote {options.out}")
    return summary


def atoms_of_state(state: ReconState, options: AtomsOptions) -> AtomsSummary:
    """:func:`run_atoms` on a reconstruction state in memory, writing nothing.

    ``options.recon`` names the reconstruction (provenance; the source data of the species
    from a ground truth are looked for next to it); ``options.out`` and ``overwrite`` are not
    used.  The Atoms dock calls this on the state its phase layer carries.

    Returns
    -------
    AtomsSummary
        Its ``ranges`` hold every z-range's atoms by label (``""`` without z-ranges); ``out``
        is None.
    """
    from caviar_napari.analysis.depth import zrange_from_spec

    _check_options(options)
    phase = np.angle(np.asarray(state.object)).astype(np.float32)
    pixel = state.pixel_size_A
    summary = AtomsSummary()
    summary.lines.append(
        f"reconstruction: {phase.shape[0]} state(s) × {phase.shape[1]} slice(s) of "
        f"{phase.shape[2]} × {phase.shape[3]} px, pixel ({pixel[0]:.4f}, {pixel[1]:.4f}) Å"
    )
    thickness = np.asarray(state.slice_thickness_A, dtype=float)
    if options.zranges:
        labels = [label for label, _ in options.zranges]
        if len(set(labels)) != len(labels):
            raise InputError(f"--zrange labels must be unique, got {labels}")
        ranges: list = [zrange_from_spec(spec, thickness, label) for label, spec in options.zranges]
    elif options.slices is not None:
        ranges = [zrange_from_spec(options.slices, thickness)]
    else:
        ranges = [None]
    start = given_species = None
    if options.positions is not None:
        start, given_species = read_start_positions(options.positions)
    for zrange in ranges:
        atoms = _atoms_in_range(options, state, phase, zrange, start, given_species, summary)
        summary.ranges["" if zrange is None else zrange.label] = atoms
    summary.atoms = next(iter(summary.ranges.values()))
    return summary


def _atoms_in_range(
    options: AtomsOptions,
    state: ReconState,
    phase: np.ndarray,
    zrange: ZRange | None,
    start_positions: np.ndarray | None,
    given_species: np.ndarray | None,
    summary: AtomsSummary,
) -> AtomsData:
    """Detect (or take), refine, index and name the atoms of one depth range (all slices when
    ``zrange`` is None); adds its lines and counts to ``summary``."""
    refine_cfg = options.refine
    pixel, origin = state.pixel_size_A, state.object_origin_A
    lines = summary.lines
    provenance: dict = {"reconstruction": str(options.recon), "slice_index": refine_cfg.slice_index}
    if zrange is not None:
        lines.append(zrange.describe())
        provenance["zrange"] = {"label": zrange.label, "slices": zrange.spec}
        phase = phase[:, zrange.start : zrange.stop]
        if refine_cfg.slice_index is not None:
            j = int(refine_cfg.slice_index) % zrange.n_slices_total
            if not zrange.start <= j < zrange.stop:
                raise InputError(
                    f"--slice {refine_cfg.slice_index} is outside the z-range {zrange.spec}"
                )
            refine_cfg = replace(refine_cfg, slice_index=j - zrange.start)
    given = None
    if start_positions is not None:
        finite = np.all(np.isfinite(start_positions), axis=1)
        n_excluded = int((~finite).sum())
        summary.n_start_excluded += n_excluded
        start = start_positions[finite]
        given = None if given_species is None else given_species[finite]
        line = f"start positions: {len(start)} read from {options.positions}"
        if n_excluded:
            line += (
                f" ({n_excluded} excluded: non-finite position; entries "
                f"{index_list(np.flatnonzero(~finite))} of the list, counted from 0)"
            )
        lines.append(line)
        provenance["start"] = str(options.positions)
    else:
        det_cfg = options.detection
        image = am.detection_image(phase, refine_cfg.slice_index)
        image, det_origin, area = scanned_area(image, pixel, origin, state.scan_positions_A)
        start = am.detect_atoms(image, pixel, det_origin, det_cfg)
        where = "" if zrange is None else f" on the phase summed over slices {zrange.spec}"
        lines.append(f"start positions: {len(start)} found by LoG in {area}{where}")
        provenance["start"] = "LoG"
        provenance["detection"] = det_cfg.__dict__
    if len(start) == 0:
        raise InputError(
            f"{options.recon}: no atoms to refine (LoG found none: lower --threshold or check "
            "the sigma range)"
            if options.positions is None
            else f"{options.positions}: no finite positions"
        )
    summary.n_start += len(start)
    result = am.refine_states(phase, start, pixel, origin, refine_cfg)
    provenance["refine"] = {k: v for k, v in refine_cfg.__dict__.items() if k != "chunk_windows"}
    n_win = result.status.size
    summary.n_failed += int(result.n_failed)
    lines.append(
        f"atoms: {result.n_atoms}; radius {result.radius_A:.4f} Å; failed on the mean image: "
        f"{result.n_failed_mean}"
    )
    lines.append(
        f"failures: {result.n_failed} of {n_win} state×slice positions"
        + "".join(f"; {k}: {v}" for k, v in result.counts().items() if k != "refined")
    )
    index = None
    if options.index_lattice:
        vectors = (
            None
            if options.lattice_vectors_A is None
            else np.reshape(options.lattice_vectors_A, (2, 2))
        )
        try:
            index = index_lattice(result.mean_positions_A, vectors, n_basis=options.n_basis)
        except InputError as exc:
            if vectors is not None or options.n_basis is not None:
                raise
            log.warning("lattice indexing failed: %s", exc)
            lines.append(f"lattice: not indexed ({exc})")
    species = None
    species_names = parse_species(options.species)
    if species_names:
        if index is None:
            raise InputError("--species needs lattice indexing (the lattice was not indexed)")
        species = species_by_strength(result.strength, index.basis_index, species_names)
        provenance["species"] = "by phase strength, weakest first: " + " ".join(species_names)
    elif given is not None:
        species = given
        provenance["species"] = f"given in {options.positions}"
    elif options.species_from_truth:
        species, line = _truth_species(options.recon, state.source, result.mean_positions_A, index)
        lines.append(line)
        if species is not None:
            provenance["species"] = line.removeprefix("species: ")
    summary.species_source = str(provenance.get("species", ""))
    if index is not None:  # the species fix κ = 0 and the basis: classes compare across ranges
        index = canonical_index(index, species, keep_vectors=options.lattice_vectors_A is not None)
        lines.append(describe_lattice(index))
    if summary.lattice is None:
        summary.lattice = index
    atoms = result.to_atoms_data(index, species, source=str(options.recon), provenance=provenance)
    if zrange is not None:
        atoms = replace(atoms, zrange=zrange)
    return atoms
