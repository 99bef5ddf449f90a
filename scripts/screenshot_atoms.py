"""Screenshot of the Atoms dock widget on a synthetic graphene reconstruction (docs/images).

Run under a display (e.g. ``xvfb-run -a python scripts/screenshot_atoms.py``).  The phase is a
graphene sheet (Gaussian atoms, C–C 1.42 Å) in 4 object states × 2 slices with Einstein-like
random displacements of 6 pm rms, plus a little noise; Detect and Refine run as a user would
start them, then the window is saved to ``docs/images/atoms-widget.png``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

PIXEL_A = 0.08
SHAPE = (220, 260)
A_CC = 1.42


def graphene_phase(rng: np.random.Generator, n_states: int = 4, n_slices: int = 2) -> np.ndarray:
    """``(state, slice, y, x)`` phase of a rotated graphene sheet with random displacements."""
    a = A_CC * np.sqrt(3)
    theta = np.radians(12.0)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    lattice = np.array([[0.0, a], [a * np.sqrt(3) / 2, -a / 2]]) @ rot.T
    basis = np.array([[0.0, 0.0], [1 / 3, 2 / 3]]) @ lattice
    l = np.stack(np.meshgrid(np.arange(-12, 13), np.arange(-12, 13), indexing="ij"), -1)
    sites = (l.reshape(-1, 2) @ lattice)[:, None] + basis[None]
    sites = sites.reshape(-1, 2) + np.array(SHAPE) * PIXEL_A / 2
    inside = np.all((sites > 0.6) & (sites < np.array(SHAPE) * PIXEL_A - 0.6), axis=1)
    sites = sites[inside]
    disp = rng.normal(0, 0.06, (n_states, n_slices, len(sites), 2))
    pos_px = (sites + disp) / PIXEL_A
    sigma = 0.28 / PIXEL_A
    yy, xx = np.arange(SHAPE[0]), np.arange(SHAPE[1])
    gy = np.exp(-((yy[:, None] - pos_px[..., None, :, 0]) ** 2) / (2 * sigma**2))
    gx = np.exp(-((xx[:, None] - pos_px[..., None, :, 1]) ** 2) / (2 * sigma**2))
    phase = 0.25 * np.einsum("...ya,...xa->...yx", gy, gx)
    return (phase + rng.normal(0, 0.004, phase.shape)).astype(np.float32)


def wait(app, widget, timeout_s: float = 120.0) -> None:
    """Process Qt events until the widget's worker has finished."""
    t0 = time.monotonic()
    while widget.worker is not None:
        app.processEvents()
        time.sleep(0.02)
        if time.monotonic() - t0 > timeout_s:
            raise TimeoutError("worker did not finish")
    for _ in range(20):
        app.processEvents()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--out",
        default=str(Path(__file__).resolve().parents[1] / "docs" / "images" / "atoms-widget.png"),
    )
    args = parser.parse_args()

    import os
    import tempfile

    # a throw-away settings file, so that hiding the toasts does not change the user's settings
    os.environ["NAPARI_CONFIG"] = os.path.join(tempfile.mkdtemp(), "settings.yaml")
    import napari
    from napari.settings import get_settings

    get_settings().application.gui_notification_level = "none"
    from qtpy.QtWidgets import QApplication

    from caviar_napari._qt.atoms_widget import AtomsWidget

    phase = graphene_phase(np.random.default_rng(0))
    viewer = napari.Viewer(title="caviar-napari: Atoms")
    viewer.window.resize(1500, 1000)
    viewer.add_image(
        phase,
        name="graphene phase",
        colormap="gray",
        scale=(1, 1, PIXEL_A, PIXEL_A),
        translate=(0, 0, 0.0, 0.0),
        axis_labels=("state", "slice", "y", "x"),
        units=("pixel", "pixel", "angstrom", "angstrom"),
    )
    widget = AtomsWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Atoms", area="right")
    widget.detection_form["sigma_min_A"].value = 0.15
    widget.detection_form["sigma_max_A"].value = 0.45
    widget.detection_form["exclude_border_A"].value = 0.5
    widget.refine_form["species"].value = "C"
    app = QApplication.instance()
    widget.detect()
    wait(app, widget)
    widget.refine()
    wait(app, widget)
    viewer.dims.set_current_step(0, 2)  # show state 2, slice 1
    viewer.dims.set_current_step(1, 1)
    viewer.canvas.overlays["scale_bar"].visible = True
    viewer.reset_view()
    for w in app.allWidgets():  # close toasts shown before the settings took effect
        if type(w).__name__ == "NapariQtNotification":
            w.close()
    for _ in range(20):
        app.processEvents()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(args.out, canvas_only=False)
    print(f"wrote {args.out}")
    print(widget.status_label.text())
    print(widget.lattice_label.text())
    viewer.close()


if __name__ == "__main__":
    main()
