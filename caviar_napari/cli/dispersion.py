"""``caviar dispersion``: phonon dispersion from the correlated displacements of an ATOMS file.

::

    caviar dispersion ATOMS.h5 --out DISP.h5 --temperature-K T [--mass SPECIES=AMU]...
        [--estimator force-constants|green] [--shells N] [--boundary auto|open|periodic]
        [--crystal-cells L1 L2] [--slices A:B] [--zrange LABEL] [--single-mass] [--bootstrap N]
        [--path "G=0,0; M=1/2,0; …"] [--seed K] [--noise-floor-A F] [--overwrite]

Masses default to the standard atomic weights of the species in the ATOMS file; ``--mass``
(repeatable) overrides them, and a species with no known mass is an error naming it.  Prints the
block of whole unit cells used, the commensurate q on the path and the table of branch averages
± error (conventions §5); with force constants (the default) also the dense-path averages, the
fitted constants in eV/Å² and the test for more shells.  Warnings (stderr and the DISP file): a
biased green estimate, unphysical frequencies, displacements at the noise floor, and a
reconstruction whose object states did not separate.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from caviar_napari.analysis import dispersion as disp
from caviar_napari.analysis.force_constants import BOUNDARIES
from caviar_napari.cli._common import add_overwrite, print_summary
from caviar_napari.workflows.dispersion import DispersionOptions, run_dispersion, summary_lines

__all__ = ["add_parser", "options_from_args", "run", "summary_lines"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``dispersion`` sub-command."""
    p = subparsers.add_parser(
        "dispersion",
        help="phonon dispersion from the correlations of an ATOMS file (DISP file)",
        description=(
            "Infer the phonon dispersion of the displacements: by default a Born–von Kármán "
            "force-constant model fitted by maximum likelihood (unbiased with 10–20 states), or "
            "eq. 6, D(q) = k_B T M^-1/2 <ũ ũ^H>^-1 M^-1/2, on the q grid commensurate with the "
            "largest block of whole unit cells; phonon frequencies ν = ω/2π in THz along a path "
            "(Γ-M-K-Γ for hexagonal lattices), with bootstrap errors over the object states."
        ),
    )
    p.add_argument("atoms", metavar="ATOMS.h5", help="ATOMS file (caviar atoms)")
    p.add_argument("--out", required=True, metavar="DISP.h5", help="output DISP file")
    p.add_argument(
        "--temperature-K",
        type=float,
        required=True,
        metavar="T",
        help="specimen temperature in K",
    )
    p.add_argument(
        "--mass",
        action="append",
        default=[],
        metavar="SPECIES=AMU",
        help="mass of a species in amu (repeatable, e.g. --mass B=10.81 --mass N=14.007); "
        "default: standard atomic weights; without species in the file use the basis index "
        "(--mass 0=10.81)",
    )
    p.add_argument(
        "--slices",
        default=None,
        metavar="A:B",
        help="slices whose covariances are averaged, Python slice syntax or one index; "
        "default: all (for a z-range, counted from its first slice; default: the slices where "
        "at least half of its atoms refined)",
    )
    p.add_argument(
        "--zrange",
        default=None,
        metavar="LABEL",
        help="the z-range of a depth-resolved ATOMS file (caviar atoms --zrange) to analyse; "
        "required when the file holds several",
    )
    p.add_argument(
        "--single-mass",
        action="store_true",
        help="use the paper's single harmonic-mean mass for every atom (default: one mass per "
        "basis atom)",
    )
    p.add_argument(
        "--bootstrap",
        type=int,
        default=200,
        metavar="N",
        help="bootstrap replicas over object states for the error bars (0: none; default 200)",
    )
    p.add_argument(
        "--path",
        default=None,
        metavar="PATH",
        help="reciprocal-space path 'LABEL=f1,f2; …' in reduced coordinates of b1, b2 "
        "(fractions allowed, G = Γ); default: Γ-M-K-Γ (hexagonal), Γ-X-M-Γ / Γ-X-S-Y-Γ (90°)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap draws (default 0)")
    p.add_argument(
        "--estimator",
        choices=disp.ESTIMATORS,
        default="force-constants",
        help="force-constants (default): a force-constant model fitted to the states, unbiased "
        "with few states; green: eq. 6, which needs hundreds of states to be unbiased",
    )
    p.add_argument(
        "--shells",
        type=int,
        default=2,
        metavar="N",
        help="force constants: neighbour shells fitted (default 2)",
    )
    p.add_argument(
        "--boundary",
        choices=BOUNDARIES,
        default="auto",
        help="force constants: the atoms are a window of a larger crystal (open; every atom "
        "found is fitted), the block of whole cells is one period of a periodic crystal "
        "(periodic), or auto (default: both on the block when no atom lies outside it, else open)",
    )
    p.add_argument(
        "--crystal-cells",
        type=int,
        nargs=2,
        default=None,
        metavar=("L1", "L2"),
        help="force constants, open boundary: cells of the periodic crystal the field of view "
        "was cut from (default: an infinite crystal)",
    )
    p.add_argument(
        "--noise-floor-A",
        type=float,
        default=None,
        metavar="F",
        help="known positional noise per direction in Å, e.g. the rms displacement of a static "
        "control (default: estimated from the spread between slices when several are used)",
    )
    add_overwrite(p)
    p.set_defaults(func=run)


def options_from_args(args: argparse.Namespace) -> DispersionOptions:
    """The workflow options of parsed ``caviar dispersion`` arguments."""
    return DispersionOptions(
        atoms=Path(args.atoms),
        out=Path(args.out),
        temperature_K=args.temperature_K,
        masses_amu=disp.parse_masses(args.mass),
        single_mass=args.single_mass,
        slices=args.slices,
        zrange=args.zrange,
        bootstrap=args.bootstrap,
        path=args.path,
        seed=args.seed,
        estimator=args.estimator,
        shells=args.shells,
        boundary=args.boundary,
        crystal_cells=None if args.crystal_cells is None else tuple(args.crystal_cells),
        noise_floor_A=args.noise_floor_A,
        overwrite=args.overwrite,
    )


def run(args: argparse.Namespace) -> int:
    """Run ``caviar dispersion``; returns the exit status."""
    return print_summary("dispersion", run_dispersion(options_from_args(args)))
