"""Screenshot of the Dispersion dock (issue 14): the force-constant model's dense curves over the
eq. 6 points with error bars, in the ``caviar-napari`` window (1280 × 800 by default).

The ATOMS source holds 20 exact thermal snapshots (300 K) of a 12 × 12-cell hBN-like harmonic
lattice (``analysis.phonons.HarmonicLattice.honeycomb``): perfect positions with the number of
object states of a real reconstruction, so the error bars show the statistical error of 20
states, and the eq. 6 points show their small-sample bias.  Both estimators run (force constants,
2 shells, periodic boundary: the lattice is one period; eq. 6), with 100 bootstrap replicas:
``docs/images/dispersion-widget.png``, and the dock scrolled to the fitted force constants ±
errors and the shell test: ``docs/images/dispersion-force-constants.png``.

Run (Xvfb and xvfb-run installed)::

    python scripts/screenshot_dispersion.py [--size 1280x800] [--out PNG]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from screenshot_common import IMAGES, open_window, raise_dock, run_in_screen, save, settle, wait


def make_atoms_file(path: Path, n_states: int = 20, cells: int = 12) -> None:
    """Write an ATOMS file of exact harmonic snapshots of hBN."""
    from caviar_napari.analysis.phonons import HarmonicLattice
    from caviar_napari.io.atoms_file import AtomsData, write_atoms

    lat = HarmonicLattice.honeycomb()
    sc = lat.supercell(cells, cells)
    pos = sc.positions_A[None] + sc.sample_snapshots(300.0, n_states, 2024) + [3.0, 3.0]
    write_atoms(
        path,
        AtomsData(
            positions_A=pos[:, None],
            mean_positions_A=pos.mean(axis=0),
            cell_index=sc.cell_index,
            basis_index=sc.basis_index,
            species=sc.species,
            lattice_vectors_A=lat.lattice_vectors_A,
            source=f"harmonic hBN, {n_states} exact snapshots at 300 K",
        ),
    )


def shoot(args: argparse.Namespace) -> None:
    viewer, widgets = open_window()
    widget = widgets["Dispersion"]
    window = widget.window()
    raise_dock(widget)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "hBN-harmonic.h5"
        make_atoms_file(path)
        widget.open_atoms_file(path)
    widget.form["estimator"].value = "both"
    widget.form["boundary"].value = "periodic"
    widget.form["bootstrap"].value = 100
    widget.compute()
    wait(lambda: widget.worker is None, 600)
    settle(1.0)  # a resize renders the plot again (in a worker)
    wait(lambda: not widget.is_rendering, 60)
    viewer.reset_view()
    # the summary, the plot and the tables below it in view
    widget.scroll.verticalScrollBar().setValue(
        widget.summary_label.mapTo(
            widget.scroll.widget(), widget.summary_label.rect().topLeft()
        ).y()
        - 8
    )
    save(viewer, window, Path(args.out))
    if args.constants_out:  # the fitted force constants and the shell test in view
        widget.scroll.ensureWidgetVisible(widget.fit_label, 0, 8)
        save(viewer, window, Path(args.constants_out))
    if widget.result is not None:
        print(widget.summary_label.text())
        print(
            "force constants, dense path:", np.round(widget.result.dense_path.branch_average_THz, 2)
        )
        print("eq. 6:", np.round(widget.vm.outcome.green.branch_average_THz, 2))
        print(widget.fit_label.text())
    print("warnings:", widget.warning_banner.warnings)
    viewer.close()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default=str(IMAGES / "dispersion-widget.png"))
    parser.add_argument(
        "--constants-out",
        default=str(IMAGES / "dispersion-force-constants.png"),
        help="the dock scrolled to the force-constant table ('' for none)",
    )


if __name__ == "__main__":
    raise SystemExit(run_in_screen(__doc__.split("\n\n")[0], shoot, add_arguments))
