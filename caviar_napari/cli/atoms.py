"""``caviar atoms``: atom positions in every object state and slice of a reconstruction.

::

    caviar atoms RECON.h5 --out ATOMS.h5 [--positions FILE.csv] [--radius-A R]
        [--sigma-min-A S] [--sigma-max-A S] [--num-sigma K] [--threshold T]
        [--min-distance-A D] [--exclude-border-A B] [--slice J]
        [--lattice-vectors-A A1Y A1X A2Y A2X] [--n-basis K] [--no-lattice]
        [--species NAME ...]

Start positions come from ``--positions`` (CSV ``y_A,x_A[,species]`` or an ATOMS file, in Å in
the scan frame) or, without it, from Laplacian-of-Gaussian detection on the phase summed over
slices and averaged over states (or one slice, ``--slice``).  They are refined by the
phase-weighted centre of mass on that image, then in every state and slice (conventions §3), indexed
on a lattice, and written as a conventions §6 ATOMS file.  Prints the counts of atoms and failures.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from caviar_napari.analysis import atoms as am
from caviar_napari.analysis.lattice import LatticeIndex, index_lattice, species_by_strength
from caviar_napari.errors import InputError

log = logging.getLogger(__name__)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``atoms`` sub-command."""
    det = am.DetectionConfig()
    p = subparsers.add_parser(
        "atoms",
        help="atom positions in every object state and slice (ATOMS file)",
        description=(
            "Find atoms (Laplacian of Gaussian, or a CSV/ATOMS list of positions in Å), refine "
            "them by the phase-weighted centre of mass in a disc of radius R on the mean phase "
            "and then in every object state and slice, index them on a lattice and write the "
            "ATOMS file (conventions §6). Failed refinements are NaN and counted."
        ),
    )
    p.add_argument("recon", metavar="RECON.h5", help="reconstruction file (caviar reconstruct)")
    p.add_argument("--out", required=True, metavar="ATOMS.h5", help="output ATOMS file")
    p.add_argument(
        "--positions",
        default=None,
        metavar="FILE.csv",
        help="start positions: CSV with columns y_A,x_A[,species] or an ATOMS .h5 file (its "
        "mean positions), Å in the scan frame; default: LoG detection",
    )
    p.add_argument(
        "--radius-A",
        type=float,
        default=None,
        metavar="R",
        help=f"centre-of-mass disc radius, Å (default {am.DEFAULT_RADIUS_FACTOR} × the median "
        "nearest-neighbour distance)",
    )
    g = p.add_argument_group("LoG detection (used when --positions is not given)")
    g.add_argument(
        "--sigma-min-A",
        type=float,
        default=det.sigma_min_A,
        metavar="S",
        help=f"smallest blob σ, Å (default {det.sigma_min_A})",
    )
    g.add_argument(
        "--sigma-max-A",
        type=float,
        default=det.sigma_max_A,
        metavar="S",
        help=f"largest blob σ, Å (default {det.sigma_max_A})",
    )
    g.add_argument(
        "--num-sigma",
        type=int,
        default=det.num_sigma,
        metavar="K",
        help=f"number of σ values tried (default {det.num_sigma})",
    )
    g.add_argument(
        "--threshold",
        type=float,
        default=det.threshold_rel,
        metavar="T",
        help=f"minimum LoG response relative to the strongest, 0–1 (default {det.threshold_rel})",
    )
    g.add_argument(
        "--min-distance-A",
        type=float,
        default=det.min_distance_A,
        metavar="D",
        help=f"merge detections closer than D Å (default {det.min_distance_A})",
    )
    g.add_argument(
        "--exclude-border-A",
        type=float,
        default=det.exclude_border_A,
        metavar="B",
        help="drop detections within B Å of the border (default 0)",
    )
    p.add_argument(
        "--slice",
        type=int,
        default=None,
        metavar="J",
        help="detect and refine the mean positions on slice J (default: phase summed over "
        "slices); the per-state refinement always uses every slice",
    )
    p.add_argument(
        "--tolerance-px",
        type=float,
        default=1e-3,
        metavar="TOL",
        help="stop iterating when the shift is below TOL pixels (default 1e-3)",
    )
    p.add_argument(
        "--max-iter",
        type=int,
        default=50,
        metavar="N",
        help="maximum centre-of-mass iterations (default 50)",
    )
    lat = p.add_argument_group("lattice indexing")
    lat.add_argument(
        "--lattice-vectors-A",
        type=float,
        nargs=4,
        default=None,
        metavar=("A1Y", "A1X", "A2Y", "A2X"),
        help="lattice vectors a1, a2 as (y, x) in Å (default: estimated from the positions)",
    )
    lat.add_argument(
        "--n-basis",
        type=int,
        default=None,
        metavar="K",
        help="expected number of basis atoms per cell (checked)",
    )
    lat.add_argument(
        "--no-lattice", action="store_true", help="do not index the atoms on a lattice"
    )
    lat.add_argument(
        "--species",
        nargs="+",
        default=None,
        metavar="NAME",
        help="assign species to basis sites by phase strength, weakest first (e.g. B N); "
        "default: the CSV's species column if any",
    )
    p.set_defaults(func=run)


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


def run(args: argparse.Namespace) -> int:
    """Run ``caviar atoms``; returns the exit status."""
    from caviar_napari.io.atoms_file import write_atoms
    from caviar_napari.io.reconstruction import load_reconstruction

    refine_cfg = am.RefineConfig(
        radius_A=args.radius_A,
        tol_px=args.tolerance_px,
        max_iter=args.max_iter,
        slice_index=args.slice,
    )
    state = load_reconstruction(args.recon)
    phase = np.angle(np.asarray(state.object)).astype(np.float32)
    pixel, origin = state.pixel_size_A, state.object_origin_A
    lines = [
        f"reconstruction: {phase.shape[0]} state(s) × {phase.shape[1]} slice(s) of "
        f"{phase.shape[2]} × {phase.shape[3]} px, pixel ({pixel[0]:.4f}, {pixel[1]:.4f}) Å"
    ]
    provenance: dict = {"reconstruction": str(args.recon), "slice_index": args.slice}
    given_species = None
    if args.positions is not None:
        start, given_species = read_start_positions(args.positions)
        finite = np.all(np.isfinite(start), axis=1)
        start = start[finite]
        given_species = None if given_species is None else given_species[finite]
        lines.append(f"start positions: {len(start)} read from {args.positions}")
        provenance["start"] = str(args.positions)
    else:
        det_cfg = am.DetectionConfig(
            sigma_min_A=args.sigma_min_A,
            sigma_max_A=args.sigma_max_A,
            num_sigma=args.num_sigma,
            threshold_rel=args.threshold,
            min_distance_A=args.min_distance_A,
            exclude_border_A=args.exclude_border_A,
        )
        image = am.detection_image(phase, args.slice)
        image, det_origin, area = scanned_area(image, pixel, origin, state.scan_positions_A)
        start = am.detect_atoms(image, pixel, det_origin, det_cfg)
        lines.append(f"start positions: {len(start)} found by LoG in {area}")
        provenance["start"] = "LoG"
        provenance["detection"] = det_cfg.__dict__
    if len(start) == 0:
        raise InputError(
            f"{args.recon}: no atoms to refine (LoG found none: lower --threshold or check the "
            "sigma range)"
            if args.positions is None
            else f"{args.positions}: no finite positions"
        )
    result = am.refine_states(phase, start, pixel, origin, refine_cfg)
    provenance["refine"] = {k: v for k, v in refine_cfg.__dict__.items() if k != "chunk_windows"}
    n_win = result.status.size
    lines.append(
        f"atoms: {result.n_atoms}; radius {result.radius_A:.4f} Å; failed on the mean image: "
        f"{result.n_failed_mean}"
    )
    lines.append(
        f"failures: {result.n_failed} of {n_win} state×slice positions"
        + "".join(f"; {k}: {v}" for k, v in result.counts().items() if k != "refined")
    )
    index = None
    if not args.no_lattice:
        vectors = (
            None if args.lattice_vectors_A is None else np.reshape(args.lattice_vectors_A, (2, 2))
        )
        try:
            index = index_lattice(result.mean_positions_A, vectors, n_basis=args.n_basis)
            lines.append(describe_lattice(index))
        except InputError as exc:
            if vectors is not None or args.n_basis is not None:
                raise
            log.warning("lattice indexing failed: %s", exc)
            lines.append(f"lattice: not indexed ({exc})")
    species = None
    if args.species:
        if index is None:
            raise InputError("--species needs lattice indexing (remove --no-lattice)")
        species = species_by_strength(result.strength, index.basis_index, args.species)
        provenance["species"] = "by phase strength, weakest first: " + " ".join(args.species)
    elif given_species is not None:
        species = given_species
        provenance["species"] = f"given in {args.positions}"
    write_atoms(
        args.out,
        result.to_atoms_data(index, species, source=str(args.recon), provenance=provenance),
    )
    lines.append(f"wrote {args.out}")
    print("\n".join(lines))
    return 0
