"""Screenshot of the depth tools on the ``hbn-bilayer-gap`` demo (issue 16), in the
``caviar-napari`` window (1280 × 800 by default): ``docs/images/atoms-depth.png``.

The demo (two hBN layers 120 Å apart, resources/README.md) is reconstructed first, small and
fast on the CPU, unless ``--recon`` names a reconstruction of it: 4 slices of 40 Å, stage 1 the
mean object with the probe (60 iterations), stage 2 ten object states (150 iterations;
docs/depth.md §3.1 uses more).  In the Atoms dock two z-ranges are named on the slice axis,
``upper`` = slices 0:2 and ``lower`` = 2:4, and *Detect and refine every range* finds each
layer's atoms in its own lattice; the ranges are written to one ATOMS file, which the
Correlations dock opens as one source per range: the arrows of both layers are computed and
shown together, over the phase summed over all slices (the range slider's slab), with the side
view of the phase (x–z) and the two ranges marked in the Atoms dock.

Run (Xvfb and xvfb-run installed)::

    python scripts/screenshot_depth.py [--size 1280x800] [--recon RECON.h5]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from screenshot_common import (
    IMAGES,
    ROOT,
    open_window,
    raise_dock,
    run_in_screen,
    save,
    settle,
    wait,
)

#: The small recipe of the demo's reconstruction (``caviar reconstruct --config``).
RECIPE = """\
device: cpu
stages:
  - {name: mean object, iterations: 60, slices: 4, slice_thickness_A: 40.0,
     refine: [object, probe]}
  - {name: object states, iterations: 150, object_states: 10, slices: 4,
     slice_thickness_A: 40.0, refine: [object]}
"""


def reconstruct(out: Path) -> None:
    """The demo's reconstruction (a few minutes on two cores)."""
    from caviar_napari.cli import main

    config = out.with_suffix(".yaml")
    config.write_text(RECIPE)
    data = ROOT / "resources" / "hbn-bilayer-gap.h5"
    main(["reconstruct", str(data), "--out", str(out), "--config", str(config)])


def shoot(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp())
    recon = Path(args.recon) if args.recon else work / "bilayer-recon.h5"
    if not recon.exists():
        reconstruct(recon)
    viewer, widgets = open_window()
    atoms_dock, corr_dock = widgets["Atoms"], widgets["Correlations"]
    window = atoms_dock.window()
    opened = viewer.open(str(recon), plugin="caviar-napari")
    for layer in opened:  # the phase only (amplitude, probe, scan positions hidden)
        layer.visible = layer.name.endswith(" phase")
    phase = next(layer for layer in opened if layer.name.endswith(" phase"))
    raise_dock(atoms_dock)
    atoms_dock.set_phase_layer(phase.name)
    atoms_dock.add_range("upper", 0, 1)
    atoms_dock.add_range("lower", 2, 3)
    atoms_dock.refine_all_ranges()
    wait(lambda: atoms_dock.worker is None, args.timeout_s)
    print(atoms_dock.status_label.text())
    ranges = work / "bilayer-atoms.h5"
    atoms_dock.export_atoms(ranges)

    # both layers' correlation arrows, each range analysed in its own frame
    raise_dock(corr_dock)
    corr_dock.open_atoms_file(ranges)
    for label in ("upper", "lower"):
        corr_dock.source_picker.set_zrange(label)
        corr_dock.compute()
        wait(lambda: corr_dock.worker is None and not corr_dock.is_drawing, args.timeout_s)
        settle(0.5)
        print(label, "|", corr_dock.summary_label.text()[:300])
    for layer in viewer.layers:  # the arrows and the reference markers; atoms and B rings hidden
        if layer.name.startswith("atoms") or "B factor" in layer.name:
            layer.visible = False

    # the Atoms dock: every slice summed in the view, the ranges beside the side view
    raise_dock(atoms_dock)
    atoms_dock.set_active_range("")
    atoms_dock.depth.set_slab(0, 3)
    atoms_dock.depth.slab_changed.emit(0, 3)
    atoms_dock.depth.show_check.setChecked(True)
    wait(lambda: not atoms_dock._side_view.busy, 60)
    atoms_dock.scroll.ensureWidgetVisible(atoms_dock.depth.plot, 0, 0)
    viewer.layers.selection.active = viewer.layers["correlations [lower]: arrows"]
    viewer.reset_view()
    positions = phase.metadata["caviar_state"].scan_positions_A
    lo, hi = positions.min(axis=0), positions.max(axis=0)
    viewer.camera.center = tuple((lo + hi) / 2)
    height, width = viewer.canvas.size
    viewer.camera.zoom = 0.75 * min(height / (hi - lo)[0], width / (hi - lo)[1])
    settle(1.0)
    save(viewer, window, Path(args.out))
    print("layers:", [la.name for la in viewer.layers if la.visible])
    print("warnings:", atoms_dock.warning_banner.warnings, corr_dock.warning_banner.warnings)
    viewer.close()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default=str(IMAGES / "atoms-depth.png"))
    parser.add_argument("--recon", default="", help="a reconstruction of hbn-bilayer-gap")
    parser.add_argument("--timeout-s", type=float, default=900.0)


if __name__ == "__main__":
    raise SystemExit(run_in_screen(__doc__.split("\n\n")[0], shoot, add_arguments))
