"""Screenshot of the Correlations dock on two z-ranges of the twisted bilayer (issue 16), in the
``caviar-napari`` window (1280 × 800 by default): ``docs/images/correlations-zranges.png``.

Data: the ``hbn-twisted-bilayer`` demo (``resources/hbn-twisted-bilayer.h5``: two hBN layers
120 Å apart, the lower one turned by 13.17°, each with its own correlated displacements, ten
configurations).  The ten configurations the data were simulated from — what a perfect
reconstruction of them gives — are written as a "reconstruction" of four 40 Å slices: the upper
layer's atoms in slice 0, the lower layer's in slice 3 (NaN in the vacuum slices), one ATOMS
file with the z-ranges ``upper`` = 0:2 and ``lower`` = 2:4.  Each range is indexed as ``caviar
atoms`` indexes it (lattice vectors estimated, species from the truth, canonical form), so the
two turned lattices number their unit-cell classes alike (the script checks it).  In the
Correlations dock both ranges are computed — their arrows drawn together over the true
projected phase of both layers — and compared with the demo's layered ground truth: each range
is matched to its own layer and compared with both layers.  The picture shows the ``lower``
range: its comparison with each layer and its unit-cell averages.

Run (Xvfb and xvfb-run installed)::

    python scripts/screenshot_depth_correlations.py [--size 1280x800] [--out PNG]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from screenshot_common import IMAGES, open_window, raise_dock, run_in_screen, save, settle, wait

DEMO = "hbn-twisted-bilayer"
#: Slices of the "reconstruction", Å, and the slice each layer is seen in.
SLICE_A, N_SLICES = 40.0, 4
RANGES = {"upper": (0, 2, 0), "lower": (2, 4, 3)}  # label: start, stop, the layer's slice
#: Arrow scale: pm² of correlation per Å of arrow (nearest-neighbour blocks are a few pm²).
ARROW_SCALE_PM2_PER_A = 5.0


def ranges_file(folder: Path) -> tuple[Path, Path, np.ndarray, np.ndarray, np.ndarray]:
    """The two-range ATOMS file of the demo's configurations; the demo's path and its true
    projected phase (both layers) with origin and pixel (Å)."""
    import h5py

    from caviar_napari._napari.sample_data import demo_path
    from caviar_napari.analysis.lattice import canonical_index, index_lattice
    from caviar_napari.data.atoms import AtomsData, ZRange
    from caviar_napari.io.atoms_file import write_atoms_zranges
    from caviar_napari.io.correlations_file import read_ground_truth
    from caviar_napari.io.truth_layers import read_truth_layers

    path = demo_path(DEMO)
    truth = read_ground_truth(path)
    ranges = []
    for layer, (label, (start, stop, own)) in zip(read_truth_layers(path), RANGES.items()):
        positions = np.asarray(truth.positions_A)[:, layer.atoms]
        species = np.asarray(truth.species)[layer.atoms].astype(str)
        mean = np.asarray(truth.mean_positions_A)[layer.atoms]
        index = canonical_index(index_lattice(mean), species)  # as caviar atoms
        seen = np.full((positions.shape[0], stop - start, *positions.shape[1:]), np.nan)
        seen[:, own - start] = positions
        ranges.append(
            AtomsData(
                positions_A=seen,
                mean_positions_A=mean,
                cell_index=index.cell_index,
                basis_index=index.basis_index,
                species=species,
                lattice_vectors_A=index.lattice_vectors_A,
                source=f"{path.name}: the 10 configurations of layer {layer.name!r}",
                zrange=ZRange(
                    label, start, stop, (SLICE_A,) * (stop - start), start * SLICE_A, N_SLICES
                ),
            )
        )
    out = folder / "twisted-bilayer-atoms.h5"
    write_atoms_zranges(out, ranges)
    with h5py.File(path, "r") as f:
        g = f["ground_truth"]
        phase = np.asarray(g["phase"]).sum(axis=0)
        origin = np.asarray(g.attrs["phase_origin_A"], float)
        pixel = np.asarray(g.attrs["phase_pixel_size_A"], float)
    return out, path, phase, origin, pixel


def phase_centre(phase: np.ndarray, origin: np.ndarray, pixel: np.ndarray) -> np.ndarray:
    """``(1, 2)`` the centre of the phase image, Å."""
    return (origin + pixel * (np.asarray(phase.shape) - 1) / 2)[None]


def shoot(args: argparse.Namespace) -> None:
    from qtpy.QtCore import QPoint

    from caviar_napari.viewmodels.correlations import PAIRS_NN

    viewer, widgets = open_window()
    widget = widgets["Correlations"]
    window = widget.window()
    raise_dock(widget)
    with tempfile.TemporaryDirectory() as tmp:
        atoms_path, truth_path, phase, origin, pixel = ranges_file(Path(tmp))
        viewer.add_image(
            phase,
            name=f"{DEMO} true phase (both layers)",
            scale=pixel,
            translate=origin,
            colormap="gray",
            units=("Å", "Å"),
        )
        widget.open_atoms_file(atoms_path)
        widget.self_combo.setCurrentText("no atoms")
        widget.b_check.setChecked(False)
        widget.n_nearest_spin.setValue(3)
        widget.pairs_combo.setCurrentText(PAIRS_NN)  # every self block and nearest pair
        keys = {}
        centre = np.nanmean(phase_centre(phase, origin, pixel), axis=0)
        for label, side in zip(RANGES, (-1.0, 1.0)):  # the two references apart along x
            widget.source_picker.set_zrange(label)
            widget.compute()
            wait(lambda: widget.worker is None and not widget.is_drawing, args.timeout_s)
            positions = widget.result.positions_A
            target = centre + [0.0, side * 1.6 * widget.result.nn_distance_A]
            widget.set_reference(int(np.nanargmin(np.linalg.norm(positions - target, axis=1))))
            widget.set_scale_pm2_per_A(ARROW_SCALE_PM2_PER_A)
            wait(lambda: not widget.is_drawing, args.timeout_s)
            widget.compare(str(truth_path))
            wait(lambda: widget.worker is None and widget.metrics is not None, args.timeout_s)
            wait(lambda: not widget.is_drawing, args.timeout_s)
            settle(0.5)
            keys[label] = widget.result.data.unit_cell_averages.keys
            print(label, "|", widget.unit_cell_label.text())
            print(widget.truth_label.text().replace("<br>", "\n"))
    same = keys["upper"].shape == keys["lower"].shape and np.all(keys["upper"] == keys["lower"])
    print("unit-cell classes of the two ranges", "agree" if same else "DIFFER")
    for layer in viewer.layers:  # the arrows and markers of both ranges over the phase
        if layer.name.startswith("atoms ("):
            layer.visible = False
    viewer.layers.selection.active = viewer.layers["correlations [lower]: arrows"]
    height, width = viewer.canvas.size  # screen pixels
    viewer.camera.center = tuple(float(v) for v in centre)
    viewer.camera.zoom = 0.9 * min(height, width) / (7.0 * widget.result.nn_distance_A)
    viewer.canvas.overlays["scale_bar"].visible = True
    widget.tabs.setCurrentIndex(1)  # the unit-cell averages
    settle(0.3)
    # the per-layer table at the top of the dock, the unit-cell averages below it
    top = widget.layer_table.mapTo(widget.scroll.widget(), QPoint(0, 0)).y()
    widget.scroll.verticalScrollBar().setValue(top - 8)
    save(viewer, window, Path(args.out))
    viewer.close()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default=str(IMAGES / "correlations-zranges.png"))
    parser.add_argument("--timeout-s", type=float, default=120.0)


if __name__ == "__main__":
    raise SystemExit(run_in_screen(__doc__.split("\n\n")[0], shoot, add_arguments))
