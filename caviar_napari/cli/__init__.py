"""The ``caviar`` command line: headless access to the same engine as the napari widgets.

Each sub-command lives in its own module with ``add_parser(subparsers)`` and ``run(args)``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from caviar_napari import __version__
from caviar_napari.errors import CaviarError

SUBCOMMANDS = ("simulate", "reconstruct", "atoms", "correlations", "dispersion")


def build_parser() -> argparse.ArgumentParser:
    """Return the ``caviar`` argument parser with every sub-command registered."""
    parser = argparse.ArgumentParser(
        prog="caviar",
        description="CAVIAR: correlated atomic vibrations from 4D-STEM (headless engine).",
    )
    parser.add_argument("--version", action="version", version=f"caviar-napari {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMANDS:
        module = importlib.import_module(f"caviar_napari.cli.{name}")
        module.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``caviar`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except CaviarError as exc:
        print(f"caviar {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"caviar {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
