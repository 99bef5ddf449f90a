"""Reproduce the logic of the CAVIAR paper's Fig. 2 b–e on simulated hBN data (issue 8).

``caviar validate`` with the repository's document as its default: runs
:func:`caviar_napari.workflows.study.run_study` — simulate → reconstruct (two stages) → atoms →
correlations against the ground truth, for the presets ``hbn-static``, ``hbn-einstein``,
``hbn-correlated`` and ``hbn-correlated-psc`` (the last with one probe mode and with several) —
and writes the tables, the arrow figures and the Green's-tensor figures into
``docs/validation.md`` and ``docs/images/validation-*.png``.

::

    python benchmarks/reproduce_fig2.py                    # --size cpu: < 30 min on 2 cores
    python benchmarks/reproduce_fig2.py --size gpu --device gpu   # the paper's scale
    python benchmarks/reproduce_fig2.py --size test --workdir /tmp/fig2 --doc /tmp/v.md

Only the part of the document between ``<!-- BEGIN GENERATED size=… -->`` and
``<!-- END GENERATED size=… -->`` is rewritten; the discussion written around it is kept.
Matplotlib only (Agg), no Qt.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
from pathlib import Path

from caviar_napari.cli.validate import add_arguments, run_validation
from caviar_napari.errors import CaviarError

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    """Run the study and write the document; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser, doc_default=ROOT / "docs" / "validation.md")
    args = parser.parse_args(argv)
    if args.images is None and args.doc == ROOT / "docs" / "validation.md":
        args.images = ROOT / "docs" / "images"
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    command = "python " + shlex.join([os.path.relpath(__file__, Path.cwd()), *argv])
    try:
        return run_validation(args, command)
    except CaviarError as exc:
        print(f"reproduce_fig2: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
