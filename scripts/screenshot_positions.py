"""Screenshot of the Reconstruction dock refining the scan positions (issue 15), in the
``caviar-napari`` window (1280 × 800 by default): ``docs/images/reconstruction-positions.png``.

The data are simulated here as a microscope would give them: ``caviar simulate hbn-static
--scan-shape 12 12 --drift-A 0.3 --position-jitter-A 0.05`` (a smooth drift of 0.3 Å across the
scan plus 0.05 Å jitter; the file states the nominal grid).  A short two-stage run on the CPU:
the mean object with the probe, then the same with the scan positions and their affine map
refined (*Refine positions* and *Refine scan map* in the stage details).  The result shows the
refined positions (orange points) and the arrows from the nominal grid to them, drawn ×F longer
(F in the layer's name), over the phase; the result panel gives the refinement's line.

Run (Xvfb and xvfb-run installed)::

    python scripts/screenshot_positions.py [--size 1280x800] [--iterations 20 40]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from screenshot_common import IMAGES, open_window, raise_dock, run_in_screen, save, settle, wait


def simulate(path: Path) -> None:
    """The drifted, jittered hBN data (a few seconds)."""
    from caviar_napari.cli import main

    main(
        [
            "simulate", "hbn-static", "--out", str(path), "--scan-shape", "12", "12",
            "--drift-A", "0.3", "--position-jitter-A", "0.05",
        ]
    )  # fmt: skip


def shoot(args: argparse.Namespace) -> None:
    from caviar_napari.data import config as cfg

    data = Path(args.data) if args.data else Path(tempfile.mkdtemp()) / "hbn-drift.h5"
    if not data.exists():
        simulate(data)
    viewer, widgets = open_window()
    widget = widgets["Reconstruction"]
    window = widget.window()
    raise_dock(widget)
    viewer.open(str(data), plugin="caviar-napari")
    wait(lambda: widget.dataset() is not None, 60)
    first, second = args.iterations
    stages = [
        cfg.StageConfig(name="mean object", iterations=first, refine=("object", "probe")),
        cfg.StageConfig(
            name="positions",
            iterations=second,
            refine=("object", "probe", "positions", "affine"),
        ),
    ]
    widget.set_config(
        cfg.ReconstructionConfig(stages=stages, device="cpu", update_every=5, position_bound_A=0.5)
    )
    widget.stage_table.selectRow(1)  # its details: Refine positions, Refine scan map ticked
    if widget.start() is None:
        raise SystemExit(f"the run did not start: {widget.status_label.text()}")
    wait(lambda: not widget.is_running, args.timeout_s)
    settle(1.0)
    for layer in viewer.layers:  # the 4D-STEM layers went back to the dock at the start
        if layer.name.startswith("reconstruction") and layer.name.endswith("probe modes"):
            layer.visible = False
    shifts = next(la for la in viewer.layers if "position shifts" in la.name)
    viewer.layers.selection.active = shifts
    scan = shifts.data[:, 0]
    lo, hi = scan.min(axis=0), scan.max(axis=0)
    viewer.camera.center = tuple((lo + hi) / 2)
    height, width = viewer.canvas.size
    viewer.camera.zoom = 0.8 * min(height / (hi - lo)[0], width / (hi - lo)[1])
    widget.scroll.ensureWidgetVisible(widget.result_panel, 0, 0)
    widget.scroll.verticalScrollBar().setValue(widget.scroll.verticalScrollBar().maximum())
    settle(0.5)
    save(viewer, window, Path(args.out))
    print(widget.status_label.text())
    print(widget.result_panel.label.text())
    print("layers:", [la.name for la in viewer.layers])
    print("warnings:", widget.warning_banner.warnings)
    viewer.close()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default=str(IMAGES / "reconstruction-positions.png"))
    parser.add_argument("--data", default="", help="the drifted data (made when missing)")
    parser.add_argument("--iterations", type=int, nargs=2, default=(20, 40), metavar=("S1", "S2"))
    parser.add_argument("--timeout-s", type=float, default=1200.0)


if __name__ == "__main__":
    raise SystemExit(run_in_screen(__doc__.split("\n\n")[0], shoot, add_arguments))
