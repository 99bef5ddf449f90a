"""Screenshots of the Correlations dock showing which arrows are significant (issue 13).

For each demo dataset (``resources/hbn-einstein.h5``: uncorrelated vibrations;
``resources/hbn-correlated.h5``: correlated ones) the script takes the ten atom configurations
the data were simulated from — what a perfect reconstruction of them gives, ten object states of
one slice — as the ATOMS source, shows the true phase under them, computes the correlations with
their errors in the Correlations dock of the ``caviar-napari`` window (1280 × 800 by default)
and draws the reference atom's correlations with its nearest and next-nearest neighbours, the
arrows below 2σ faded: ``docs/images/correlations-significance-hbn-einstein.png`` and
``docs/images/correlations-widget.png`` (the correlated demo).  On the Einstein
demo the neighbours' arrows are drawn per atom pair (about 1 in 20 passes 2σ by chance); on the
correlated one as unit-cell averages (the nearest-neighbour ones are significant).

Run (Xvfb and xvfb-run installed)::

    python scripts/screenshot_correlations.py [--demos DEMO …] [--size 1280x800]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from screenshot_common import IMAGES, open_window, raise_dock, run_in_screen, save, settle, wait

#: Per demo: whether the arrows are unit-cell averages.
DEMOS = {"hbn-einstein": False, "hbn-correlated": True}
#: Per demo: the image written (the correlated one is the README's picture of the dock).
IMAGE_NAMES = {
    "hbn-einstein": "correlations-significance-hbn-einstein.png",
    "hbn-correlated": "correlations-widget.png",
}


def truth_atoms(demo: str, folder: Path):
    """Write the demo's realised configurations as an ATOMS file; return its path and the
    true phase image with its origin and pixel (Å)."""
    import h5py

    from caviar_napari._napari.sample_data import demo_path
    from caviar_napari.io.atoms_file import AtomsData, write_atoms
    from caviar_napari.io.correlations_file import read_ground_truth

    path = demo_path(demo)
    gt = read_ground_truth(path)
    atoms = AtomsData(
        positions_A=gt.positions_A[:, None],
        mean_positions_A=gt.mean_positions_A,
        cell_index=gt.cell_index,
        basis_index=gt.basis_index,
        species=gt.species,
        lattice_vectors_A=gt.lattice_vectors_A,
        source=f"{path.name}: the 10 configurations the data were simulated from",
    )
    out = folder / f"{demo} truth.h5"
    write_atoms(out, atoms)
    with h5py.File(path, "r") as f:
        g = f["ground_truth"]
        phase = np.asarray(g["phase"][0])
        origin = np.asarray(g.attrs["phase_origin_A"], float)
        pixel = np.asarray(g.attrs["phase_pixel_size_A"], float)
    return out, phase, origin, pixel


def shoot_demo(viewer, widgets, demo: str, out: Path) -> None:
    widget = widgets["Correlations"]
    window = widget.window()
    raise_dock(widget)
    for layer in list(viewer.layers):
        viewer.layers.remove(layer)
    with tempfile.TemporaryDirectory() as tmp:
        atoms_path, phase, origin, pixel = truth_atoms(demo, Path(tmp))
        viewer.add_image(
            phase,
            name=f"{demo} true phase",
            scale=pixel,
            translate=origin,
            colormap="gray",
            units=("Å", "Å"),
        )
        widget.open_atoms_file(atoms_path)
        widget.compute()
        wait(lambda: widget.worker is None and widget.result is not None, 60)
    positions = widget.result.positions_A
    centre = np.nanmean(positions, axis=0)
    reference = int(np.nanargmin(np.linalg.norm(positions - centre, axis=1)))
    widget.self_combo.setCurrentText("no atoms")
    widget.averaged_check.setChecked(DEMOS[demo])
    widget.n_nearest_spin.setValue(9)  # 3 nearest + 6 next-nearest neighbours
    widget.set_reference(reference)
    widget.b_check.setChecked(False)
    wait(lambda: not widget.is_drawing, 60)
    widget.set_scale_pm2_per_A(1.0)
    wait(lambda: not widget.is_drawing, 60)
    atoms_layer = next(la for la in viewer.layers if la.name.startswith("atoms ("))
    atoms_layer.visible = False
    viewer.layers.selection.active = viewer.layers["correlations: arrows"]
    # frame the reference and its neighbours
    d_nn = widget.result.nn_distance_A
    height, width = viewer.canvas.size  # screen pixels
    camera = viewer.scene.camera
    camera.center = tuple(float(v) for v in positions[reference])
    camera.zoom = 0.9 * min(height, width) / (7.0 * d_nn)
    viewer.canvas.overlays["scale_bar"].visible = True
    widget.scroll.ensureWidgetVisible(widget.significance_label, 0, 0)
    widget.scroll.ensureWidgetVisible(widget.significance_combo, 0, 40)
    settle(1.0)
    save(viewer, window, out)
    print(widget.significance_label.text())


def shoot(args: argparse.Namespace) -> None:
    viewer, widgets = open_window()
    for demo in args.demos:
        out = Path(args.out_dir) / IMAGE_NAMES[demo]
        shoot_demo(viewer, widgets, demo, out)
    viewer.close()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--demos", nargs="+", default=list(DEMOS), choices=list(DEMOS))
    parser.add_argument("--out-dir", default=str(IMAGES))


if __name__ == "__main__":
    raise SystemExit(run_in_screen(__doc__.split("\n\n")[0], shoot, add_arguments))
