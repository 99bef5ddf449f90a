"""Screenshot of the Correlations dock widget: docs/images/correlations-widget.png.

Builds a small synthetic ATOMS file (an hBN-like honeycomb with correlated harmonic vibrations,
12 states, 2 slices, a little measurement noise), a matching "simulated" file with a
ground_truth group, and a phase-like image (Gaussian atoms), then docks the widget in napari,
computes, picks a reference atom, compares with the truth and saves a screenshot of the window.

Run under a virtual display::

    xvfb-run -a python scripts/screenshot_correlations.py [OUTPUT.png [FIGURE.png|.svg]]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import h5py
import napari
import numpy as np
from qtpy.QtWidgets import QApplication

from caviar_napari._qt.correlations_widget import CorrelationsWidget
from caviar_napari.analysis.phonons import HarmonicLattice
from caviar_napari.io.atoms_file import AtomsData, write_atoms

ROOT = Path(__file__).resolve().parents[1]
OFFSET_A = np.array([2.0, 6.0])


def make_inputs(folder: Path) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    """Write ATOMS.h5 and DATA.h5 (ground truth) into ``folder``; return paths and sites."""
    cell = HarmonicLattice.honeycomb().supercell(5, 5)
    sites = cell.positions_A + OFFSET_A
    n_states, n_slices = 12, 2
    u = cell.sample_snapshots(300.0, n_states, rng=3)  # (state, atom, 2)
    rng = np.random.default_rng(4)
    truth = sites + u
    measured = truth[:, None] + rng.normal(0, 0.006, (n_states, n_slices, *sites.shape))
    atoms = AtomsData(
        positions_A=measured,
        mean_positions_A=measured.mean(axis=(0, 1)),
        cell_index=cell.cell_index,
        basis_index=cell.basis_index,
        species=cell.species,
        lattice_vectors_A=cell.lattice.lattice_vectors_A,
        source="synthetic honeycomb",
    )
    atoms_path = folder / "atoms.h5"
    write_atoms(atoms_path, atoms)
    du = (truth - truth.mean(0)).reshape(n_states, -1)
    truth_path = folder / "hbn-correlated.h5"
    with h5py.File(truth_path, "w") as f:
        g = f.create_group("ground_truth")
        g["positions_A"] = truth
        g["mean_positions_A"] = sites
        g["green_realised_A2"] = du.T @ du / n_states
        g["green_model_A2"] = cell.green_tensor(300.0)
        g["cell_index"] = cell.cell_index
        g["basis_index"] = cell.basis_index
        g.attrs["lattice_vectors_A"] = cell.lattice.lattice_vectors_A
    return atoms_path, truth_path, sites, cell.basis_index


def phase_image(sites: np.ndarray, basis: np.ndarray, pixel_A: float = 0.1):
    """A phase-like image: a Gaussian per atom (sublattice 1 brighter); returns image, origin."""
    lo = sites.min(axis=0) - 1.2
    hi = sites.max(axis=0) + 1.2
    y = np.arange(lo[0], hi[0], pixel_A)
    x = np.arange(lo[1], hi[1], pixel_A)
    weights = np.where(basis == 1, 1.0, 0.8)
    dy = y[:, None] - sites[:, 0]  # (H, atoms)
    dx = x[:, None] - sites[:, 1]  # (W, atoms)
    gy = np.exp(-(dy**2) / (2 * 0.25**2)) * weights
    gx = np.exp(-(dx**2) / (2 * 0.25**2))
    return gy @ gx.T, lo


def wait_for(widget: CorrelationsWidget, timeout_s: float = 30.0) -> None:
    start = time.monotonic()
    while (widget.worker is not None or widget.is_drawing) and time.monotonic() - start < timeout_s:
        QApplication.processEvents()
        time.sleep(0.01)
    QApplication.processEvents()


def main(out: Path, figure: Path | None = None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        atoms_path, truth_path, sites, basis = make_inputs(Path(tmp))
        viewer = napari.Viewer(show=True)
        viewer.window.resize(1900, 1200)
        image, origin = phase_image(sites, basis)
        viewer.add_image(
            image, name="phase (synthetic)", scale=(0.1, 0.1), translate=origin, colormap="gray"
        )
        widget = CorrelationsWidget(viewer)
        viewer.window.add_dock_widget(widget, name="Correlations", area="right")
        widget.open_atoms_file(atoms_path)
        widget.compute()
        wait_for(widget)
        widget.set_reference(24)
        widget.self_combo.setCurrentText("all atoms")
        widget.set_scale_pm2_per_A(10.0)
        wait_for(widget)
        widget.compare(str(truth_path))
        wait_for(widget)
        viewer.layers["atoms (atoms)"].visible = False
        viewer.layers.selection.active = viewer.layers["correlations: arrows"]
        viewer.reset_view()
        for toast in QApplication.allWidgets():  # notifications would cover the canvas
            if type(toast).__name__ == "NapariQtNotification":
                toast.close()
        for _ in range(5):
            QApplication.processEvents()
            time.sleep(0.05)
        out.parent.mkdir(parents=True, exist_ok=True)
        viewer.screenshot(str(out), canvas_only=False)
        if figure is not None:
            widget.export_figure(figure)
        print(widget.summary_label.text())
        print(widget.truth_label.text())
        viewer.close()


if __name__ == "__main__":
    main(
        Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs/images/correlations-widget.png",
        Path(sys.argv[2]) if len(sys.argv) > 2 else None,
    )
