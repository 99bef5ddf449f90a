"""Screenshot of the Atoms dock on a synthetic graphene reconstruction, in the ``caviar-napari``
window (1280 × 800 by default): ``docs/images/atoms-widget.png``.

The phase is a graphene sheet (Gaussian atoms, C–C 1.42 Å) in 4 object states × 2 slices with
Einstein-like random displacements of 6 pm rms, plus a little noise; Detect and Refine run as a
user would start them.

Run (Xvfb and xvfb-run installed)::

    python scripts/screenshot_atoms.py [--size 1280x800] [--out PNG]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from screenshot_common import IMAGES, open_window, raise_dock, run_in_screen, save, settle, wait

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


def shoot(args: argparse.Namespace) -> None:
    viewer, widgets = open_window()
    widget = widgets["Atoms"]
    window = widget.window()
    raise_dock(widget)
    phase = graphene_phase(np.random.default_rng(0))
    viewer.add_image(
        phase,
        name="graphene phase",
        colormap="gray",
        scale=(1, 1, PIXEL_A, PIXEL_A),
        translate=(0, 0, 0.0, 0.0),
        axis_labels=("state", "slice", "y", "x"),
        units=("pixel", "pixel", "Å", "Å"),
    )
    widget.detection_form["sigma_min_A"].value = 0.15
    widget.detection_form["sigma_max_A"].value = 0.45
    widget.detection_form["exclude_border_A"].value = 0.5
    widget.refine_form["species"].value = "C"
    widget.detect()
    wait(lambda: widget.worker is None, 120)
    widget.refine()
    wait(lambda: widget.worker is None, 120)
    viewer.dims.set_current_step(0, 2)  # show state 2, slice 1
    viewer.dims.set_current_step(1, 1)
    viewer.canvas.overlays["scale_bar"].visible = True
    viewer.reset_view()
    settle(0.5)
    save(viewer, window, Path(args.out))
    print(widget.status_label.text())
    print(widget.lattice_label.text())
    viewer.close()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default=str(IMAGES / "atoms-widget.png"))


if __name__ == "__main__":
    raise SystemExit(run_in_screen(__doc__.split("\n\n")[0], shoot, add_arguments))
