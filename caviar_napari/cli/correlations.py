"""``caviar correlations``: Green's tensor and B factors of an ATOMS file, with errors; LSM/CSM
vs a truth.

::

    caviar correlations ATOMS.h5 --out CORR.h5 [--slices A:B] [--zrange LABEL] [--overwrite]
        [--errors jackknife|bootstrap|none] [--bootstrap N] [--seed K]
        [--subtract-offset] [--offset-min-distance-A D] [--noise-floor-A F]
        [--ground-truth DATA.h5 [--reference-atom I] [--neighbours N] [--match-tolerance-A T]]

Prints the number of atoms, the excluded ones, the mean B factor, the rms displacement, the
nearest-neighbour correlation coefficient ρ_nn (conventions §4 asks for it on every dataset) and
the uniform x–x / y–y offset, each as ``value ± error`` (resampling the object states), how many
nearest-neighbour blocks are significant, the table of unit-cell averages (same l' − l, κ, κ';
self, nearest and second neighbours; G_xx, G_yy, G_xy in pm² ± error in the local lattice frame,
and their significance; also in the CORR file's ``unit_cell_averages``), and the positional
noise floor.  With
``--ground-truth`` (a file written by ``caviar simulate``), the reconstruction is compared with
the *realised* Green's tensor of the simulated configurations: LSM as printed in the paper (a
sum over vectors), LSM as a mean, CSM (each ± error), and ρ_nn of both over the same pairs.

A depth-resolved ATOMS file (``caviar atoms --zrange LABEL=A:B …``) is analysed z-range by
z-range, each in its own lattice frame, into one CORR file with a group per range (``--zrange``
picks one); with a layered ground truth each range is compared with the layer it is matched to,
and with every layer (issue 16).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from caviar_napari.cli._common import add_overwrite, print_summary
from caviar_napari.workflows.correlations import (
    ERROR_CHOICES,
    CorrelationsOptions,
    comparison_lines,
    run_correlations,
    summary_lines,
)

__all__ = ["add_parser", "comparison_lines", "options_from_args", "run", "summary_lines"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``correlations`` sub-command."""
    p = subparsers.add_parser(
        "correlations",
        help="Green's tensor, B factors and ρ_nn of an ATOMS file (CORR file)",
        description=(
            "Compute the Green's tensor G = (1/N) Σ_n u uᵀ (paper eq. 2, dof 2i + a, a = 0 y, "
            "1 x, Å²) of per-state atom positions, averaged over the chosen slices, the "
            "B factors 8π²(⟨u_y²⟩ + ⟨u_x²⟩), ρ_nn and the uniform x–x / y–y offset, with "
            "standard errors from resampling the object states and the significance of the "
            "nearest-neighbour blocks, and the blocks averaged over identical unit-cell pairs "
            "in the local lattice frame; optionally compare with the realised ground truth of "
            "a simulated dataset (LSM, CSM, ρ_nn)."
        ),
    )
    p.add_argument("atoms", metavar="ATOMS.h5", help="ATOMS file (caviar atoms)")
    p.add_argument("--out", required=True, metavar="CORR.h5", help="output CORR file")
    p.add_argument(
        "--slices",
        default=None,
        metavar="A:B",
        help="slices to average, Python slice syntax (A included, B excluded) or one index; "
        "default: all (for a z-range, counted from its first slice; default: the slices where "
        "at least half of its atoms refined)",
    )
    p.add_argument(
        "--zrange",
        default=None,
        metavar="LABEL",
        help="analyse only this z-range of a depth-resolved ATOMS file (caviar atoms --zrange); "
        "default: every range, each in its own group of the CORR file",
    )
    p.add_argument(
        "--ground-truth",
        default=None,
        metavar="DATA.h5",
        help="simulated 4D-STEM file with a ground_truth group to compare with",
    )
    p.add_argument(
        "--reference-atom",
        type=int,
        default=None,
        metavar="I",
        help="compare over this atom and its neighbours (default: every atom's self block and "
        "every nearest-neighbour pair)",
    )
    p.add_argument(
        "--neighbours",
        type=int,
        default=6,
        metavar="N",
        help="number of nearest neighbours of the reference atom (default 6)",
    )
    p.add_argument(
        "--match-tolerance-A",
        type=float,
        default=0.5,
        metavar="T",
        help="largest distance (Å) when matching atoms to the ground truth (default 0.5)",
    )
    p.add_argument(
        "--errors",
        choices=ERROR_CHOICES,
        default="jackknife",
        help="standard errors by resampling the object states, each with all its slices: "
        "delete-one jackknife (default; deterministic, best calibrated with few states), "
        "seeded bootstrap, or none",
    )
    p.add_argument(
        "--bootstrap",
        type=int,
        default=200,
        metavar="N",
        help="bootstrap replicas with --errors bootstrap (default 200)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap draws (default 0)")
    p.add_argument(
        "--subtract-offset",
        action="store_true",
        help="subtract the uniform x–x / y–y offset (partial spatial coherence absorbed by the "
        "states) from every y–y and x–x entry of the tensor; it is always estimated and "
        "recorded",
    )
    p.add_argument(
        "--offset-min-distance-A",
        type=float,
        default=0.0,
        metavar="D",
        help="estimate the offset from pairs of atoms at least D Å apart (default 0: every pair "
        "of distinct atoms)",
    )
    p.add_argument(
        "--noise-floor-A",
        type=float,
        default=None,
        metavar="F",
        help="known positional noise per direction in Å, e.g. the rms displacement of a static "
        "control analysed the same way (default: estimated from the spread between slices when "
        "several are used)",
    )
    add_overwrite(p)
    p.set_defaults(func=run)


def options_from_args(args: argparse.Namespace) -> CorrelationsOptions:
    """The workflow options of parsed ``caviar correlations`` arguments."""
    return CorrelationsOptions(
        atoms=Path(args.atoms),
        out=Path(args.out),
        slices=args.slices,
        zrange=args.zrange,
        ground_truth=None if args.ground_truth is None else Path(args.ground_truth),
        reference_atom=args.reference_atom,
        neighbours=args.neighbours,
        match_tolerance_A=args.match_tolerance_A,
        errors=args.errors,
        bootstrap=args.bootstrap,
        seed=args.seed,
        subtract_offset=args.subtract_offset,
        offset_min_distance_A=args.offset_min_distance_A,
        noise_floor_A=args.noise_floor_A,
        overwrite=args.overwrite,
    )


def run(args: argparse.Namespace) -> int:
    """Run ``caviar correlations``; returns the exit status."""
    return print_summary("correlations", run_correlations(options_from_args(args)))
