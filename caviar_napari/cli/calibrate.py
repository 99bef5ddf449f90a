"""``caviar calibrate DATA --out CALIBRATED.h5``: calibrate a 4D-STEM file from its patterns.

Finds the pattern centre, the bright-field disc (checked against the stated convergence angle
and sampling), the scan rotation and detector transpose (curl-free centre of mass; its
half-turn from the phase's positivity on atoms, located by the virtual dark field or by the
bright-field phase), the defocus (bright-field parallax) and, with a vacuum pattern, a starting
probe, and
writes a conventions §6 input that ``caviar reconstruct`` takes as it is.  Prints the values
and their confidences; ``--json`` prints them as one JSON line instead.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from caviar_napari.cli._common import add_overwrite
from caviar_napari.workflows.calibrate import CalibrateOptions, run_calibrate

__all__ = ["add_parser", "run"]

_CALIBRATION = (
    ("energy_eV", "beam energy (eV) if the file lacks it"),
    ("convergence_semiangle_mrad", "convergence semi-angle α (mrad) if the file lacks it"),
    ("scan_step_A", "scan step (Å) if the file lacks it"),
    ("angular_sampling_mrad", "detector sampling (mrad/px) if the file lacks it"),
    ("defocus_A", "stated defocus Δf (Å): the centre of the defocus search"),
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``calibrate`` sub-command."""
    p = subparsers.add_parser(
        "calibrate",
        help="calibrate a 4D-STEM file from its patterns (centre, rotation, transpose, defocus)",
        description=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("data", type=Path, metavar="DATA", help="4D-STEM input (any readable format)")
    p.add_argument("--out", required=True, type=Path, help="calibrated HDF5 file (conventions §6)")
    p.add_argument("--json", action="store_true", help="print the values as one JSON line")
    p.add_argument("--vacuum", type=Path, help="4D-STEM file of vacuum patterns (probe)")
    p.add_argument(
        "--vacuum-region", metavar="Y0:Y1,X0:X1", help="scan region of DATA that is vacuum"
    )
    p.add_argument(
        "--descan", action="store_true", help="apply the fitted linear descan (per position)"
    )
    p.add_argument(
        "--no-defocus", action="store_true", help="keep the stated defocus (do not fit it)"
    )
    p.add_argument(
        "--defocus-search-A",
        type=float,
        default=500.0,
        help="half-width of the defocus search around the stated value (Å, default 500)",
    )
    p.add_argument(
        "--no-dark-field",
        action="store_true",
        help="do not let the virtual dark field decide the scan rotation's half-turn (a beam "
        "stop or saturated pixels beyond the disc); the bright-field phase decides",
    )
    how = p.add_mutually_exclusive_group()
    how.add_argument("--copy", action="store_true", help="copy the intensities")
    how.add_argument(
        "--link",
        action="store_true",
        help="link the intensities (HDF5 input only; default: link above 256 MiB, else copy)",
    )
    p.add_argument("--crop", type=int, nargs="+", metavar=("WY", "WX"), help="detector crop")
    p.add_argument("--bin", type=int, default=1, help="detector binning factor")
    p.add_argument(
        "--scan-shape", type=int, nargs=2, metavar=("SY", "SX"), help="scan shape if unrecorded"
    )
    for name, text in _CALIBRATION:
        nargs = "+" if name in ("scan_step_A", "angular_sampling_mrad") else None
        p.add_argument("--" + name.replace("_", "-"), type=float, nargs=nargs, help=text)
    add_overwrite(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``caviar calibrate``; returns the exit status."""
    calibration = {}
    for name, _ in _CALIBRATION:
        value = getattr(args, name)
        if value is not None:
            calibration[name] = tuple(value) if isinstance(value, list) else value
    options = CalibrateOptions(
        data=args.data,
        out=args.out,
        vacuum=args.vacuum,
        vacuum_region=args.vacuum_region,
        descan=args.descan,
        defocus=not args.no_defocus,
        defocus_search_A=args.defocus_search_A,
        dark_field=not args.no_dark_field,
        copy=True if args.copy else (False if args.link else None),
        crop=None if args.crop is None else tuple(args.crop),
        bin=args.bin,
        scan_shape=None if args.scan_shape is None else tuple(args.scan_shape),
        calibration=calibration,
        overwrite=args.overwrite,
    )
    summary = run_calibrate(options)
    if args.json:
        print(json.dumps(summary.values, sort_keys=True))
    else:
        print(summary.text)
    for warning in summary.warnings:
        print(f"caviar calibrate: warning: {warning}", file=sys.stderr)
    return 0
