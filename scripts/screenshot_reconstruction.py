"""Screenshot of the whole napari window during a reconstruction (for docs/images/).

Opens the window as ``caviar-napari`` does (the four docks, the ``hbn-correlated`` sample),
starts a small two-stage reconstruction from the Reconstruction dock, waits until the second
stage (several object states) has updated the layers, and saves
``docs/images/reconstruction-window.png`` with ``viewer.screenshot(canvas_only=False)``.

Run under a display (Xvfb on a headless machine)::

    xvfb-run -a -s "-screen 0 1680x1050x24" python scripts/screenshot_reconstruction.py [--out PATH]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out", default=str(ROOT / "docs" / "images" / "reconstruction-window.png")
    )
    parser.add_argument("--timeout-s", type=float, default=600.0)
    args = parser.parse_args()

    import napari
    from qtpy.QtWidgets import QApplication, QWidget

    from caviar_napari._qt import launcher
    from caviar_napari.data import config as cfg

    viewer = napari.Viewer(title="CAVIAR — napari")
    widget = launcher.open_window(viewer, sample=launcher.DEFAULT_SAMPLE)["Reconstruction"]
    window = widget.window()  # fitted to the screen
    app = QApplication.instance()

    def wait(condition, seconds: float) -> None:
        end = time.monotonic() + seconds
        while not condition() and time.monotonic() < end:
            app.processEvents()
            time.sleep(0.01)

    wait(lambda: widget.dataset() is not None, 30)
    widget.set_config(
        cfg.two_stage_preset(
            object_states=6, probe_modes=3, iterations=(12, 40), update_every=2, device="auto"
        )
    )
    wait(lambda: "needs" in widget.memory_label.text(), 30)
    if widget.start() is None:
        raise SystemExit(f"the run did not start: {widget.status_label.text()}")
    # well into stage 2 (several object states), with a few live updates of it
    wait(lambda: widget.loss_plot.iterations.size >= 40 or not widget.is_running, args.timeout_s)
    shown = widget.images_shown
    wait(lambda: widget.images_shown >= shown + 1 or not widget.is_running, args.timeout_s)
    # close napari's notification toasts (they would cover the canvas) and let it repaint
    for toast in window.findChildren(QWidget):
        if type(toast).__name__ == "NapariQtNotification":
            toast.close()
    wait(lambda: False, 0.5)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(out), canvas_only=False)
    print(f"saved {out} at iteration {widget.loss_plot.iterations[-1]}")
    widget.stop()
    wait(lambda: not widget.is_running, 120)
    viewer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
