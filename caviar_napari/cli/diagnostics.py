"""``caviar diagnostics RECON.h5 --out DIAG.h5``: resolution diagnostics (the paper's Fig. 3).

::

    caviar diagnostics RECON.h5 --out DIAG.h5 [--json] [--no-figures] [--atoms ATOMS.h5]
        [--data DATA.h5 | --energy-eV E --alpha-mrad A] [--reflection-invA Q ...] [--overwrite]

Prints the information limit d (pm, d/λ) of the power spectrum averaged over slices and states,
the depth resolution at the chosen reflections from the azimuthally averaged 3-D power against
k_z, and the optics' limits they are checked against (λ/(2α), λ/(α + θ_det), 2λ/α²,
2/(q(2α ∓ λq))); writes them to the DIAG file, with ``--json`` also to ``DIAG.json``, and the
figures ``DIAG_power.png``, ``DIAG_kz.png``, ``DIAG_rz.png``
(:func:`caviar_napari.workflows.diagnostics.run_diagnostics`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from caviar_napari.cli._common import add_overwrite, print_summary
from caviar_napari.workflows.diagnostics import DiagnosticsOptions, run_diagnostics

__all__ = ["add_parser", "options_from_args", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``diagnostics`` sub-command."""
    p = subparsers.add_parser(
        "diagnostics",
        help="information limit, depth resolution and r–z maps of a reconstruction (DIAG file)",
        description=(
            "Resolution diagnostics of a reconstruction (the paper's Fig. 3): the power spectrum "
            "averaged over slices and states with its information limit, the azimuthally "
            "averaged 3-D power against k_z with the depth resolution of chosen reflections, "
            "and, with --atoms, r–z phase maps around the columns of each z-range; each checked "
            "against what the optics allow."
        ),
    )
    p.add_argument("recon", metavar="RECON.h5", help="reconstruction file (caviar reconstruct)")
    p.add_argument("--out", required=True, metavar="DIAG.h5", help="output DIAG file")
    p.add_argument(
        "--data",
        default=None,
        metavar="DATA",
        help="the 4D-STEM data of the reconstruction, for energy, α and detector angle "
        "(default: the reconstruction's recorded source, when found)",
    )
    p.add_argument("--energy-eV", type=float, default=None, metavar="E", help="beam energy, eV")
    p.add_argument(
        "--alpha-mrad", type=float, default=None, metavar="A", help="convergence semi-angle, mrad"
    )
    p.add_argument(
        "--detector-mrad",
        type=float,
        default=None,
        metavar="T",
        help="largest collected scattering angle, mrad (default: from the data)",
    )
    p.add_argument(
        "--atoms",
        default=None,
        metavar="ATOMS.h5",
        help="ATOMS file (one or several z-ranges): r–z maps around its columns",
    )
    p.add_argument(
        "--reflection-invA",
        type=float,
        nargs="+",
        default=None,
        metavar="Q",
        help="lateral frequencies |k| (1/Å, no 2π) of the reflections for the depth resolution "
        "(default: the two lowest Bragg rings of the power spectrum)",
    )
    p.add_argument(
        "--plateau-start",
        type=float,
        default=0.85,
        metavar="F",
        help="noise plateau band: F × band limit … band limit (default 0.85)",
    )
    p.add_argument(
        "--snr",
        type=float,
        default=1.0,
        metavar="R",
        help="a ring carries information when its azimuthal average exceeds (1 + R) × the noise "
        "plateau (spectral SNR R; default 1)",
    )
    p.add_argument(
        "--margin-A",
        type=float,
        default=0.0,
        metavar="M",
        help="analyse the scanned area widened by M Å on every side (default 0; a larger area "
        "gives finer Fourier rings)",
    )
    p.add_argument("--json", action="store_true", help="also write the numbers as DIAG.json")
    p.add_argument("--no-figures", action="store_true", help="do not write the PNG figures")
    add_overwrite(p)
    p.set_defaults(func=run)


def options_from_args(args: argparse.Namespace) -> DiagnosticsOptions:
    """The workflow options of parsed ``caviar diagnostics`` arguments."""
    return DiagnosticsOptions(
        recon=Path(args.recon),
        out=Path(args.out),
        data=None if args.data is None else Path(args.data),
        energy_eV=args.energy_eV,
        convergence_semiangle_mrad=args.alpha_mrad,
        detector_mrad=args.detector_mrad,
        atoms=None if args.atoms is None else Path(args.atoms),
        reflections_invA=tuple(args.reflection_invA or ()),
        plateau_start=args.plateau_start,
        snr=args.snr,
        margin_A=args.margin_A,
        json=args.json,
        figures=not args.no_figures,
        overwrite=args.overwrite,
    )


def run(args: argparse.Namespace) -> int:
    """Run ``caviar diagnostics``; returns the exit status."""
    return print_summary("diagnostics", run_diagnostics(options_from_args(args)))
