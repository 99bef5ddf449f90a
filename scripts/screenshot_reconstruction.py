"""Screenshots of the Reconstruction dock in the ``caviar-napari`` window (1280 × 800 by default).

On the ``hbn-correlated`` sample, as a user would go through the dock:

1. *Calibrate*: the pattern centre, detector transpose, scan rotation and defocus found from the
   patterns, with their confidences, the calibrated data selected
   (``docs/images/reconstruction-calibrate.png``);
2. the settings: the *Recommended* preset with the detector padding and the grid it gives, the
   memory plan settings opened, the two stages (``docs/images/reconstruction-settings.png``),
   the states stage's details with its states as displaced atoms and their penalty chosen by
   the held-out patterns (``docs/images/reconstruction-state-model.png``), and the *Run* box
   with the dry run shown by *Plan* (``docs/images/reconstruction-plan.png``);
3. a short run of the recommended recipe, then the result panel: the loss ``auto`` chose, the
   fitted source size, and whether the object states separated
   (``docs/images/reconstruction-window.png``).  The run is short (CPU, a few minutes): the
   dock says whether its states separated and whether they were still improving, in the banner
   as soon as the stage ends, and in the result panel;
4. a run far too short for the states to separate: the banner turns red and says so
   (``docs/images/reconstruction-unseparated.png``).

Run (Xvfb and xvfb-run installed)::

    python scripts/screenshot_reconstruction.py [--size 1280x800] [--iterations 12 36]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from screenshot_common import IMAGES, open_window, raise_dock, run_in_screen, save, settle, wait


def scroll_to(widget, child, margin: int = 8) -> None:
    """Scroll the dock so that ``child`` is at the top of its view."""
    top = child.mapTo(widget.scroll.widget(), child.rect().topLeft()).y()
    widget.scroll.verticalScrollBar().setValue(top - margin)
    settle(0.3)


def shoot(args: argparse.Namespace) -> None:
    from caviar_napari._qt import launcher
    from caviar_napari.viewmodels.reconstruction import PRESET_RECOMMENDED

    viewer, widgets = open_window()
    launcher.open_sample(viewer, launcher.DEFAULT_SAMPLE)
    viewer.reset_view()
    widget = widgets["Reconstruction"]
    window = widget.window()
    raise_dock(widget)
    out = Path(args.out_dir)
    wait(lambda: widget.dataset() is not None, 60)

    # 1. calibrate from the data
    widget.calibrate()
    wait(lambda: widget.calibration_outcome() is not None, 300)
    wait(lambda: widget._calibrate_worker is None, 60)
    scroll_to(widget, widget.optics.parentWidget())
    save(viewer, window, out / "reconstruction-calibrate.png")
    print(widget.calibrate_panel.report.text())

    # 2. the recommended recipe and the selected stage's details
    widget.apply_preset(PRESET_RECOMMENDED)
    widget.settings.form["device"].value = "cpu"
    widget.settings.form["update_every"].value = 2
    for row, n in enumerate(args.iterations):
        widget.stage_table.cell(row, "iterations").setValue(n)
    widget.stage_table.cell(1, "object_states").setValue(args.states)
    widget.stage_table.selectRow(1)
    widget.settings.memory_section.setDuration(0)
    widget.settings.memory_section.expand()
    wait(lambda: "needs" in widget.memory_label.text(), 60)
    scroll_to(widget, widget.settings.form["detector_padding"].native)
    save(viewer, window, out / "reconstruction-settings.png")
    widget.settings.memory_section.collapse()
    details = widget.settings.stage_details  # the states stage as displaced atoms
    details["state_model"].value = "displacements"
    details["state_penalty"].value = "auto"  # its weight chosen by the held-out patterns
    settle(0.5)  # the collapsed section's layout
    scroll_to(widget, details["coherence_order"].native)
    save(viewer, window, out / "reconstruction-state-model.png")
    details["state_model"].value = "free"
    details["state_penalty"].value = "0"
    widget.plan_button.click()
    settle(0.5)
    scroll_to(widget, widget.start_combo)
    save(viewer, window, out / "reconstruction-plan.png")
    print(widget.plan_label.text())
    widget.plan_button.click()

    if args.only_settings:
        viewer.close()
        return
    # 3. a short run and its result
    if widget.start() is None:
        raise SystemExit(f"the run did not start: {widget.status_label.text()}")
    wait(lambda: not widget.is_running, args.timeout_s)
    settle(1.0)
    scroll_to(widget, widget.start_combo)  # the Run box, then the result panel
    save(viewer, window, out / "reconstruction-window.png")
    print(widget.status_label.text())
    print(widget.result_panel.label.text())
    print("warnings:", widget.warning_banner.warnings)

    # 4. far too few iterations: the states cannot separate, and the dock says so
    for row, n in enumerate(args.short):
        widget.stage_table.cell(row, "iterations").setValue(n)
    widget.settings.form["update_every"].value = 1
    if widget.start() is None:
        raise SystemExit(f"the short run did not start: {widget.status_label.text()}")
    wait(lambda: not widget.is_running, args.timeout_s)
    settle(1.0)
    scroll_to(widget, widget.result_panel)
    save(viewer, window, out / "reconstruction-unseparated.png")
    print("red banner:", widget.warning_banner.alarm, widget.warning_banner.warnings)
    viewer.close()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out-dir", default=str(IMAGES))
    parser.add_argument("--iterations", type=int, nargs=2, default=(12, 36), metavar=("S1", "S2"))
    parser.add_argument("--states", type=int, default=6, help="object states of stage 2")
    parser.add_argument(
        "--short",
        type=int,
        nargs=2,
        default=(2, 2),
        metavar=("S1", "S2"),
        help="iterations of the run too short to separate the states",
    )
    parser.add_argument("--timeout-s", type=float, default=1200.0)
    parser.add_argument(
        "--only-settings", action="store_true", help="calibrate and settings, no run"
    )


if __name__ == "__main__":
    raise SystemExit(run_in_screen(__doc__.split("\n\n")[0], shoot, add_arguments))
