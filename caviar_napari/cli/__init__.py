"""The ``caviar`` command line: headless access to the same engine as the napari widgets.

Each sub-command lives in its own module with ``add_parser(subparsers)`` and ``run(args)``; ``run``
turns the arguments into the options of a :mod:`caviar_napari.workflows` function, calls it and
prints its summary (warnings on stderr).  Errors are one line on stderr with exit status 2: every
:class:`~caviar_napari.errors.CaviarError` and every :class:`OSError` (named path and reason), never
a traceback; Ctrl-C exits with 130 and says what was kept.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from caviar_napari import __version__
from caviar_napari.errors import CaviarError
from caviar_napari.io.outputs import os_error_message

SUBCOMMANDS = (
    "simulate",
    "calibrate",
    "reconstruct",
    "atoms",
    "correlations",
    "dispersion",
    "validate",
    "diagnostics",
)


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
    except OSError as exc:
        print(f"caviar {args.command}: error: {os_error_message(None, exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        detail = str(exc)
        print(f"caviar {args.command}: interrupted" + (f" {detail}" if detail else ""),
              file=sys.stderr)  # fmt: skip
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
