"""Parts every sub-command shares: the ``--overwrite`` flag and printing a workflow summary."""

from __future__ import annotations

import argparse
import sys

from caviar_napari.workflows.summary import StepSummary


def add_overwrite(parser: argparse.ArgumentParser) -> None:
    """Add ``--overwrite``: replace an existing output that this program did not write, or of
    another kind (an output of the same kind is replaced without it)."""
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing output file even if caviar-napari did not write it or it is "
        "another kind of file (a file of the same kind is replaced without this flag; an input "
        "of the command is never replaced)",
    )


def print_summary(command: str, summary: StepSummary) -> int:
    """Print the summary's lines on stdout and each warning on stderr; returns exit status 0."""
    if summary.lines:
        print(summary.text)
    for warning in summary.warnings:
        print(f"caviar {command}: warning: {warning}", file=sys.stderr)
    return 0
