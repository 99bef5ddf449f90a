"""``caviar atoms``: atom positions in every object state and slice of a reconstruction.

::

    caviar atoms RECON.h5 --out ATOMS.h5 [--positions FILE.csv] [--radius-A R]
        [--sigma-min-A S] [--sigma-max-A S] [--num-sigma K] [--threshold T]
        [--min-distance-A D] [--exclude-border-A B] [--slice J]
        [--lattice-vectors-A A1Y A1X A2Y A2X] [--n-basis K] [--no-lattice]
        [--species NAME ...] [--slices A:B | --zrange LABEL=A:B ...] [--overwrite]

Start positions come from ``--positions`` (CSV ``y_A,x_A[,species]`` or an ATOMS file, in Å in
the scan frame) or, without it, from Laplacian-of-Gaussian detection on the phase summed over
slices and averaged over states (or one slice, ``--slice``).  They are refined by the
phase-weighted centre of mass on that image, then in every state and slice (conventions §3), indexed
on a lattice, given species (``--species``, the start positions' species, or the ground truth of a
simulated source file) and written as a conventions §6 ATOMS file
(:func:`caviar_napari.workflows.atoms.run_atoms`).  Prints the counts of atoms and failures.

Depth ranges: ``--slices A:B`` (Python slice syntax) detects on the phase summed over slices
A:B, refines in every state and slice of that range and indexes in its own lattice; the file
holds that z-range.  ``--zrange LABEL=A:B`` (repeatable) does so for each labelled range and
writes them all into one file (groups ``zrange/<label>``, conventions §6).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from caviar_napari.analysis import atoms as am
from caviar_napari.cli._common import add_overwrite, print_summary
from caviar_napari.errors import InputError
from caviar_napari.workflows.atoms import (
    AtomsOptions,
    describe_lattice,
    parse_species,
    read_start_positions,
    run_atoms,
    scanned_area,
)

__all__ = ["add_parser", "describe_lattice", "options_from_args", "parse_zranges",
           "read_start_positions", "run", "scanned_area"]  # fmt: skip


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
        help="assign species to basis sites by phase strength, weakest first (e.g. B N or B,N); "
        "default: the species column of --positions if any, else the ground truth of the "
        "reconstruction's source data when it is a simulation (nearest ideal site)",
    )
    depth = p.add_argument_group("depth ranges (multislice reconstructions)")
    depth.add_argument(
        "--slices",
        default=None,
        metavar="A:B",
        help="one z-range of slices (Python slice syntax, e.g. 0:4 or -3:): detect on the phase "
        "summed over it, refine in each of its slices, index in its own lattice; the ATOMS file "
        "records the range (default: all slices, no z-range recorded)",
    )
    depth.add_argument(
        "--zrange",
        action="append",
        default=None,
        metavar="LABEL=A:B",
        help="a labelled z-range (repeatable): each is detected, refined and indexed on its own "
        "and all are written to one ATOMS file (groups zrange/LABEL)",
    )
    add_overwrite(p)
    p.set_defaults(func=run)


def parse_zranges(values: list[str] | None) -> tuple[tuple[str, str], ...]:
    """``["upper=0:2", "lower=2:4"]`` → ``(("upper", "0:2"), ("lower", "2:4"))``."""
    out = []
    for item in values or []:
        label, sep, spec = item.partition("=")
        if not sep or not label.strip() or not spec.strip():
            raise InputError(f"--zrange expects LABEL=A:B, got {item!r}")
        out.append((label.strip(), spec.strip()))
    return tuple(out)


def options_from_args(args: argparse.Namespace) -> AtomsOptions:
    """The workflow options of parsed ``caviar atoms`` arguments."""
    detection = am.DetectionConfig()
    if args.positions is None:
        detection = am.DetectionConfig(
            sigma_min_A=args.sigma_min_A,
            sigma_max_A=args.sigma_max_A,
            num_sigma=args.num_sigma,
            threshold_rel=args.threshold,
            min_distance_A=args.min_distance_A,
            exclude_border_A=args.exclude_border_A,
        )
    return AtomsOptions(
        recon=Path(args.recon),
        out=Path(args.out),
        positions=None if args.positions is None else Path(args.positions),
        detection=detection,
        refine=am.RefineConfig(
            radius_A=args.radius_A,
            tol_px=args.tolerance_px,
            max_iter=args.max_iter,
            slice_index=args.slice,
        ),
        lattice_vectors_A=None if args.lattice_vectors_A is None else tuple(args.lattice_vectors_A),
        n_basis=args.n_basis,
        index_lattice=not args.no_lattice,
        species=parse_species(args.species),
        slices=args.slices,
        zranges=parse_zranges(args.zrange),
        overwrite=args.overwrite,
    )


def run(args: argparse.Namespace) -> int:
    """Run ``caviar atoms``; returns the exit status."""
    return print_summary("atoms", run_atoms(options_from_args(args)))
