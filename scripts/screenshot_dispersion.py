"""Screenshot of the Dispersion dock widget on a simulated hBN ATOMS file (run under Xvfb).

    xvfb-run -a python scripts/screenshot_dispersion.py [docs/images/dispersion-widget.png]

The ATOMS file holds 20 exact thermal snapshots (300 K) of a 12 × 12-cell hBN-like harmonic
lattice (``analysis.phonons.HarmonicLattice.honeycomb``), i.e. perfect positions with the number
of object states of a real reconstruction: the error bars show the statistical error of 20 states.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import napari
import numpy as np
from qtpy.QtWidgets import QApplication

from caviar_napari._qt.dispersion_widget import DispersionWidget
from caviar_napari.analysis.phonons import HarmonicLattice
from caviar_napari.io.atoms_file import AtomsData, write_atoms


def make_atoms_file(path: Path, n_states: int = 20, cells: int = 12) -> None:
    """Write an ATOMS file of exact harmonic snapshots of hBN."""
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
            source="harmonic hBN, 20 exact snapshots at 300 K",
        ),
    )


def main(out: str = "docs/images/dispersion-widget.png") -> None:
    viewer = napari.Viewer(title="CAVIAR — Dispersion")
    viewer.window.resize(1500, 1050)
    widget = DispersionWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Dispersion", area="right")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "hBN_atoms.h5"
        make_atoms_file(path)
        widget.open_atoms_file(path)
        widget.compute()
        deadline = time.monotonic() + 60
        while (widget.worker is not None or widget.is_rendering) and time.monotonic() < deadline:
            QApplication.processEvents()
            time.sleep(0.02)
    for _ in range(40):  # a resize renders the plot again (debounced, in a worker)
        QApplication.processEvents()
        time.sleep(0.02)
    while widget.is_rendering and time.monotonic() < deadline:
        QApplication.processEvents()
        time.sleep(0.02)
    for w in QApplication.allWidgets():  # hide napari's toasts (the PyQt5 deprecation notice)
        if type(w).__name__ == "NapariQtNotification":
            w.hide()
    viewer.reset_view()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(out, canvas_only=False)
    print(f"wrote {out}")
    if widget.result is not None:
        print(np.round(widget.result.branch_average_THz, 2))
    viewer.close()


if __name__ == "__main__":
    main(*sys.argv[1:2])
