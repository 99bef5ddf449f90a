"""Screenshot of the Diagnostics dock (the paper's Fig. 3 in napari), run under Xvfb.

    xvfb-run -a -s "-screen 0 1280x800x24" python scripts/screenshot_diagnostics.py \\
        [--recon RECON.h5 [--atoms ATOMS.h5]] [--tab power|kz|rz] [--size 1280x800] [OUT.png]

With ``--recon`` the dock diagnoses that reconstruction (its optics from the data file recorded
in it, found next to it) with the columns of the ATOMS file's z-ranges.  ``docs/images/
diagnostics-dock.png`` is the full-size ``hbn-bilayer-gap`` reconstruction of docs/depth.md §3.2
(10 states, 4 slices of 40 Å; ``benchmarks/bench_bilayer_depth.py --workdir /tmp/gt/bfull
--iter2 100``)::

    xvfb-run -a -s "-screen 0 1280x800x24" python scripts/screenshot_diagnostics.py \\
        --recon /tmp/gt/bfull/recon.h5 --atoms /tmp/gt/bfull/atoms.h5 --tab rz

Without ``--recon`` it builds a stand-in from the ground truth of the ``hbn-bilayer-gap`` demo
file (no reconstruction needed): the ten simulated configurations' phases are the ten states, on
31 slices of 4 Å with the upper layer in slice 0 and the lower one 120 Å below in slice 30 — what
a perfect reconstruction would hold — and the layers' atoms are the z-ranges ``upper`` (0:15)
and ``lower`` (15:31).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import h5py
import napari
import numpy as np
from qtpy.QtWidgets import QApplication

from caviar_napari._napari.sample_data import demo_path
from caviar_napari._qt.diagnostics_widget import DiagnosticsWidget
from caviar_napari.data.atoms import AtomsData, ZRange
from caviar_napari.data.config import ReconstructionConfig
from caviar_napari.data.recon import ReconState
from caviar_napari.io.atoms_file import write_atoms_zranges
from caviar_napari.io.reconstruction import save_reconstruction
from caviar_napari.io.truth_layers import read_truth_layers

#: Slices of the stand-in: 4 Å each, the lower layer 120 Å below the upper one.
DZ_A, N_SLICES = 4.0, 31


def make_stand_in(folder: Path) -> tuple[Path, Path]:
    """RECON and ATOMS files of the ``hbn-bilayer-gap`` ground truth (module docstring)."""
    data = demo_path("hbn-bilayer-gap")
    with h5py.File(data, "r") as f:
        g = f["ground_truth"]
        configs = np.asarray(g["phase_configs"])  # (config, 3, H, W): upper, gap, lower
        pixel = tuple(float(v) for v in g.attrs["phase_pixel_size_A"])
        probe = np.asarray(g["probe"], dtype=np.complex64)
        scan = np.asarray(g["scan_positions_A"], dtype=float).reshape(-1, 2)
        mean = np.asarray(g["mean_positions_A"], dtype=float)
    phase = np.zeros((configs.shape[0], N_SLICES, *configs.shape[-2:]), np.float32)
    phase[:, 0], phase[:, -1] = configs[:, 0], configs[:, -1]
    state = ReconState(
        object=np.exp(1j * phase).astype(np.complex64),
        probe=probe,
        tilt_mrad=np.zeros(2),
        loss=[0.0],
        pixel_size_A=pixel,
        object_origin_A=(0.0, 0.0),
        slice_thickness_A=np.full(N_SLICES, DZ_A),
        config=ReconstructionConfig(),
        scan_positions_A=scan,
    )
    recon = folder / "bilayer-truth.h5"
    save_reconstruction(recon, state, source=str(data))
    ranges = []
    for layer, (start, stop) in zip(read_truth_layers(data), ((0, 15), (15, N_SLICES))):
        cols = mean[layer.atoms]
        ranges.append(
            AtomsData(
                positions_A=np.broadcast_to(cols, (2, stop - start, *cols.shape)).copy(),
                mean_positions_A=cols,
                zrange=ZRange(layer.name, start, stop, (DZ_A,) * (stop - start), start * DZ_A,
                              N_SLICES),
            )
        )  # fmt: skip
    atoms = folder / "bilayer-truth-atoms.h5"
    write_atoms_zranges(atoms, ranges)
    return recon, atoms


def wait(widget: DiagnosticsWidget, seconds: float = 300.0) -> None:
    """Process events until the dock's worker and re-renderings are done."""
    deadline = time.monotonic() + seconds
    while (widget.worker is not None or widget.is_rendering) and time.monotonic() < deadline:
        QApplication.processEvents()
        time.sleep(0.02)


def settle(widget: DiagnosticsWidget, rounds: int = 40) -> None:
    """Let resizes render the plots again (debounced, in a worker)."""
    for _ in range(rounds):
        QApplication.processEvents()
        time.sleep(0.02)
    wait(widget)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", nargs="?", default="docs/images/diagnostics-dock.png")
    p.add_argument("--recon", type=Path, default=None, help="a RECON file (default: stand-in)")
    p.add_argument("--atoms", type=Path, default=None, help="ATOMS file of its z-ranges")
    p.add_argument("--tab", choices=("power", "kz", "rz"), default="rz")
    p.add_argument("--size", default="1280x800", help="window size WxH (default 1280x800)")
    args = p.parse_args()
    width, height = (int(v) for v in args.size.split("x"))

    viewer = napari.Viewer(title="CAVIAR — Diagnostics")
    viewer.window.resize(width, height)
    widget = DiagnosticsWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Diagnostics", area="right")
    with tempfile.TemporaryDirectory() as tmp:
        recon, atoms = args.recon, args.atoms
        if recon is None:
            recon, atoms = make_stand_in(Path(tmp))
        widget.open_recon_file(recon)
        wait(widget)
        if atoms is not None:
            widget.open_atoms_file(atoms)
            wait(widget)
        for layer in list(viewer.layers):  # the atoms markers over the phase, the rest hidden
            layer.visible = not any(k in layer.name for k in ("amplitude", "probe", "scan"))
        viewer.dims.set_current_step(0, 0)  # state 0
        viewer.dims.set_current_step(1, 0)  # slice 0: the upper layer
        widget.compute()
        wait(widget)
        if widget.result is None:
            raise SystemExit(f"the diagnostics failed: {widget.summary_label.text()}")
        widget.tabs.setCurrentIndex(list(widget.views).index(args.tab))
        settle(widget)
        widget.scroll.ensureWidgetVisible(widget.tabs, 0, 0)
        settle(widget, 10)
        for w in QApplication.allWidgets():  # hide napari's toasts
            if type(w).__name__ == "NapariQtNotification":
                w.hide()
        viewer.reset_view()
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        viewer.screenshot(args.out, canvas_only=False)
    print(f"wrote {args.out}")
    print(widget.summary_label.text())
    viewer.close()


if __name__ == "__main__":
    main()
